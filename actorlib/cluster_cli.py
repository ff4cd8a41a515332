"""``actorlib start``, ``stop`` and ``status``: a cluster's daemons on this machine.

``start --head`` creates a session directory (token, logs, the head's address), starts
the head daemon and, unless ``--num-cpus 0``, a node on this machine; ``start --address``
joins a node to a head. Daemons run in the background in sessions of their own.
``init(address="auto")`` finds the newest local session through ``session_latest``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import sys
import time
from typing import Any

from actorlib.backends import cluster, cluster_auth, shm_store, wire


def add_arguments(sub: Any) -> None:
    start = sub.add_parser("start", help="start a cluster head, or a node joining one")
    role = start.add_mutually_exclusive_group(required=True)
    role.add_argument("--head", action="store_true", help="start a head (and a local node)")
    role.add_argument("--address", help="join the head at HOST:PORT as a node")
    start.add_argument("--port", type=int, default=6390, help="the head's port (default 6390)")
    start.add_argument("--host", default="127.0.0.1",
                       help="interface to bind and advertise (default 127.0.0.1)")
    start.add_argument("--num-cpus", type=float, help="CPUs of this node (default: all)")
    start.add_argument("--num-gpus", type=float, help="GPUs of this node (default: detected)")
    start.add_argument("--resources", help="custom resources, JSON: '{\"accel\": 2}'")
    start.add_argument("--object-store-memory", type=int, help="bytes for this node's store")
    start.add_argument("--token-file", help="the cluster token (default: generated for a "
                       "head; else $ACTORLIB_CLUSTER_TOKEN or the local session's)")
    sub.add_parser("stop", help="stop every daemon this machine started")
    status = sub.add_parser("status", help="nodes, resources, workers, actors, queued tasks")
    status.add_argument("--address", help="HOST:PORT of the head (default: local session)")
    status.add_argument("--json", action="store_true", help="print the raw status as JSON")


def _new_session() -> str:
    os.makedirs(cluster.SESSIONS_ROOT, mode=0o700, exist_ok=True)
    path = os.path.join(
        cluster.SESSIONS_ROOT, f"session_{time.strftime('%Y%m%d-%H%M%S')}_{os.getpid()}"
    )
    os.makedirs(path, mode=0o700)
    return path


def _record(session: str, name: str, pid: int) -> None:
    with open(os.path.join(session, f"{name}.pid"), "w") as f:
        f.write(str(pid))


def start(args: argparse.Namespace) -> int:
    resources = json.loads(args.resources) if args.resources else None
    session = _new_session()
    if args.head:
        token_file = args.token_file or os.path.join(session, "token")
        if not args.token_file:
            cluster_auth.write_token_file(token_file, cluster_auth.new_token())
        head, address = cluster.start_head(session, token_file, args.host, args.port,
                                           detach=True)
        _record(session, "head", head.pid)
        with open(os.path.join(session, "cluster.json"), "w") as f:
            json.dump({"address": address, "token_file": token_file}, f)
        latest = cluster.LATEST
        with contextlib.suppress(FileNotFoundError):
            os.unlink(latest)
        os.symlink(session, latest)
    else:
        address = args.address
        token_file = args.token_file or cluster.resolve_address(address)[1]
        if token_file is None:
            token = cluster_auth.resolve_token()  # from the environment, or a clear error
            token_file = os.path.join(session, "token")
            cluster_auth.write_token_file(token_file, token.decode())
    if args.head and args.num_cpus == 0:
        node = None
    else:
        node = cluster.start_node(
            session, token_file, address, num_cpus=args.num_cpus, num_gpus=args.num_gpus,
            resources=resources, object_store_memory=args.object_store_memory,
            host=args.host, detach=True,
        )
        _record(session, "node", node.pid)
        time.sleep(0.2)
        if node.poll() is not None:
            print(f"the node failed to start; see {session}/logs/node.log", file=sys.stderr)
            return 1
    if args.head:
        print(f"actorlib head started at {address} (session {session})")
        print("  connect from this machine:  actorlib.init(address='auto')")
        print(f"  join a node:                actorlib start --address {address} "
              f"--token-file {token_file}")
    else:
        print(f"actorlib node started, joining {address} (session {session})")
    return 0


def _pids() -> list[tuple[str, int]]:
    found = []
    root = cluster.SESSIONS_ROOT
    for entry in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        path = os.path.join(root, entry)
        if entry.startswith("session_") and os.path.isdir(path) and not os.path.islink(path):
            for name in sorted(os.listdir(path)):
                if name.endswith(".pid"):
                    with open(os.path.join(path, name)) as f:
                        found.append((os.path.join(path, name), int(f.read().strip())))
    return found


def _is_daemon(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"actorlib.backends.cluster_" in f.read()
    except OSError:
        return False


def stop(args: argparse.Namespace) -> int:
    targets = _pids()
    alive = [(path, pid) for path, pid in targets if _is_daemon(pid)]
    # Nodes first, so they do not report the head's loss; then heads.
    alive.sort(key=lambda item: item[0].endswith("head.pid"))
    for _, pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while any(_is_daemon(pid) for _, pid in alive) and time.monotonic() < deadline:
        time.sleep(0.05)
    for _, pid in alive:
        if _is_daemon(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    for path, _ in targets:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(cluster.LATEST)
    shm_store.remove_dead_sessions()  # what daemons killed earlier left in /dev/shm
    print(f"stopped {len(alive)} actorlib daemon(s)")
    return 0


def query_status(address: str | None = None) -> dict[str, Any]:
    """Ask a head for its status (nodes, usage, actors, queued tasks)."""
    host_port, token_file = cluster.resolve_address(address)
    token = cluster_auth.resolve_token(token_file=token_file)
    host, _, port = host_port.rpartition(":")
    tls = cluster_auth.TLSConfig.from_env()
    sock = cluster_auth.connect(host, int(port), token, "cli",
                                tls=tls.client_context() if tls else None)
    try:
        sock.sendall(wire.encode((wire.STATUS, 1)))
        decoder = wire.Decoder()
        sock.settimeout(10)
        while True:
            data = sock.recv(1 << 16)
            if not data:
                raise ConnectionError("the head closed the connection")
            for message in decoder.feed(data):
                if message[0] == wire.STATUS:
                    result: dict[str, Any] = message[2]
                    result["address"] = host_port
                    return result
    finally:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


def status(args: argparse.Namespace) -> int:
    try:
        info = query_status(args.address)
    except (ConnectionError, OSError, cluster_auth.AuthError) as exc:
        print(f"actorlib status: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    print(f"cluster at {info['address']}: {len(info['nodes'])} node(s), "
          f"{info['drivers']} driver(s), {info['actors']} actor(s), "
          f"{info['tasks']} task(s) of which {info['queued_tasks']} queued")

    def fmt(resources: dict[str, float]) -> str:
        return ", ".join(f"{k}={v:g}" for k, v in sorted(resources.items()))

    for node in info["nodes"]:
        print(f"  node {node['node_id']} at {node['address']}")
        print(f"    total     {fmt(node['resources'])}")
        print(f"    available {fmt(node['available'])}")
        print(f"    workers {node.get('workers', '?')} (idle {node.get('idle_workers', '?')}), "
              f"running tasks {node['running_tasks']}, actors {node['actors']}, "
              f"object store {node.get('object_store_bytes', 0) / 2**20:.1f} MiB")
    return 0


def run(args: argparse.Namespace) -> int:
    return {"start": start, "stop": stop, "status": status}[args.command](args)


__all__ = ["add_arguments", "query_status", "run"]
