"""``actorlib start``, ``stop`` and ``status``: a cluster's daemons on this machine.

``start --head`` creates a session directory (token, logs, the head's address), starts
the head daemon and, unless ``--num-cpus 0``, a node on this machine; ``start --address``
joins a node to a head. Daemons run in the background in sessions of their own.
``init(address="auto")`` finds the newest local session through ``session_latest``.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from actorlib.backends import state_socket
from actorlib.backends.cluster import daemons, sessions
from actorlib.backends.process import shm_store
from actorlib.backends.transport import auth as cluster_auth
from actorlib.backends.transport import tokens, wire
from actorlib.backends.transport.messages import Status, StatusQuery
from actorlib.core.labels import parse_labels_arg


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
    start.add_argument("--object-spilling-directory",
                       help="where this node's store spills objects once full "
                       "(default: the temporary directory)")
    start.add_argument("--labels", help="this node's labels for label_selector: 'zone=a,disk=ssd'")
    start.add_argument("--token-file", help="the cluster token (default: generated for a "
                       "head; else $ACTORLIB_CLUSTER_TOKEN or the local session's)")
    start.add_argument("--dashboard-port", type=int, help="a head: serve the web dashboard "
                       "on this port (Ray's is 8265; 0 picks a free one); its URL is printed")
    start.add_argument("--dashboard-host", default="127.0.0.1",
                       help="the dashboard's interface (default 127.0.0.1)")
    sub.add_parser("stop", help="stop every daemon this machine started")
    status = sub.add_parser("status", help="nodes, resources, workers, actors, queued tasks")
    status.add_argument("--address", help="HOST:PORT of the head, or 'auto' (default: the "
                        "local session)")
    status.add_argument("--token-file", help="the cluster token (default: "
                        "$ACTORLIB_CLUSTER_TOKEN or the local session's)")
    status.add_argument("--pid", type=int, help="a local driver (a script that called "
                        "init() without a cluster) by its process id; without --pid and "
                        "--address: the local cluster if there is one, else the newest "
                        "local driver")
    status.add_argument("--json", action="store_true", help="print the raw status as JSON")
    from actorlib.state_cli import add_timeout_argument

    add_timeout_argument(status)


class UsageError(Exception):
    """A bad command line: reported on one line, exit code 2 (as argparse does)."""


class CLIError(Exception):
    """A failure to report on one line (exit code 1): no traceback, nothing left behind."""


def _non_negative(value: float | None, flag: str) -> None:
    if value is not None and not value >= 0:  # NaN too
        raise UsageError(f"{flag} must be a number >= 0, got {value:g}")


def _parse_resources(text: str | None) -> dict[str, float] | None:
    if not text:
        return None
    try:
        resources = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--resources is not valid JSON ({exc.msg}): {text!r}") from None
    if not isinstance(resources, dict) or not all(
        isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
        and v >= 0 for k, v in resources.items()
    ):
        raise UsageError(
            f"--resources must be a JSON object of names to numbers >= 0, like "
            f'\'{{"accel": 2}}\', got {text!r}'
        )
    return {k: float(v) for k, v in resources.items()}


def _parse_address(address: str) -> tuple[str, int]:
    """``host:port``, checked now: a typo fails here rather than in a node's log."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UsageError(f"--address must be HOST:PORT, got {address!r}")
    try:
        socket.getaddrinfo(host, int(port_text), type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UsageError(f"--address {address}: cannot resolve host {host!r} "
                         f"({exc.strerror})") from None
    return host, int(port_text)


def _check_dashboard(args: argparse.Namespace) -> None:
    """``--dashboard-port``: a head's, in range, with the dashboard extra installed."""
    if args.dashboard_port is None:
        return
    if not args.head:
        raise UsageError("--dashboard-port is for a head (start --head); a node serves none")
    if not 0 <= args.dashboard_port < 65536:
        raise UsageError(f"--dashboard-port must be 0..65535, got {args.dashboard_port}")
    from actorlib.backends.dashboard.server import load_aiohttp

    try:
        load_aiohttp()
    except ImportError as exc:
        raise CLIError(str(exc)) from None


def _check_port_free(host: str, port: int, flag: str = "--port") -> None:
    """Fail early, with a plain message, when the head's port is taken.

    The probe binds as the head's server does (``SO_REUSEADDR``), so a port that only
    lingers in TIME_WAIT counts as free.
    """
    if port == 0:
        return
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise CLIError(f"port {port} is in use on {host}: pick another with "
                               f"{flag} (0 picks a free one), or stop what holds it") from None
            raise CLIError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def _running_head() -> tuple[str, str] | None:
    """The address and session of a head ``auto`` would reach, if it is still running."""
    session = sessions.latest_session()
    if session is None:
        return None
    try:
        info = json.loads(sessions.read_private(os.path.join(session, "cluster.json")))
        with open(os.path.join(session, "head.pid")) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return None
    return (info["address"], session) if sessions.is_daemon(pid) else None


def _new_session() -> str:
    root = sessions.checked_root(create=True)
    assert root is not None
    path = os.path.join(root, f"session_{time.strftime('%Y%m%d-%H%M%S')}_{os.getpid()}")
    os.mkdir(path, 0o700)
    return path


def _record(session: str, name: str, pid: int) -> None:
    sessions.write_private(os.path.join(session, f"{name}.pid"), str(pid).encode())


def _log_tail(session: str, name: str, lines: int = 5) -> str:
    try:
        with open(os.path.join(session, "logs", f"{name}.log")) as f:
            tail = [line for line in f.read().splitlines() if line.strip()][-lines:]
    except OSError:
        return ""
    return "\n".join("  " + line for line in tail)


def _spill_root(given: str | None) -> str | None:
    """``--object-spilling-directory`` as an absolute path, made if missing."""
    if given is None:
        return None
    from actorlib.session import directory_argument

    try:
        return directory_argument(given, "--object-spilling-directory")
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from exc


def start(args: argparse.Namespace) -> int:
    resources = _parse_resources(args.resources)
    try:
        labels = parse_labels_arg(args.labels or "")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    _non_negative(args.num_cpus, "--num-cpus")
    _non_negative(args.num_gpus, "--num-gpus")
    if args.object_store_memory is not None and args.object_store_memory <= 0:
        raise UsageError(f"--object-store-memory must be > 0 bytes, got "
                         f"{args.object_store_memory}")
    if not 0 <= args.port < 65536:
        raise UsageError(f"--port must be 0..65535, got {args.port}")
    _check_dashboard(args)
    if args.head:
        running = _running_head()
        if running is not None:
            # A second head would take over what init(address="auto") reaches.
            raise CLIError(
                f"an actorlib head is already running here at {running[0]} (session "
                f"{running[1]}), and init(address='auto') connects to it; run "
                "`actorlib stop` first (or start the new head with TMPDIR set to another "
                "directory)"
            )
        _check_port_free(args.host, args.port)
        if args.dashboard_port is not None:
            _check_port_free(args.dashboard_host, args.dashboard_port, "--dashboard-port")
    else:
        host, port = _parse_address(args.address)
        try:
            socket.create_connection((host, port), timeout=5).close()
        except OSError as exc:
            reason = "connection refused" if isinstance(exc, ConnectionRefusedError) else (
                exc.strerror or str(exc))
            raise CLIError(f"cannot reach the head at {args.address}: {reason}") from None
    session = _new_session()
    try:
        return _start_in(session, args, resources, labels)
    except BaseException:
        shutil.rmtree(session, ignore_errors=True)
        raise


def _start_in(session: str, args: argparse.Namespace,
              resources: dict[str, float] | None, labels: dict[str, str]) -> int:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        if args.head:
            token_file = args.token_file or os.path.join(session, "token")
            if not args.token_file:
                tokens.write_token_file(token_file, tokens.new_token())
            dashboard = (None if args.dashboard_port is None
                         else (args.dashboard_host, args.dashboard_port))
            try:
                head, address = daemons.start_head(session, token_file, args.host, args.port,
                                                   detach=True, dashboard=dashboard)
            except (RuntimeError, TimeoutError) as exc:
                tail = _log_tail(session, "head")
                if "Address already in use" in tail:
                    raise CLIError(f"port {args.port} is in use on {args.host}") from None
                raise CLIError(f"the head failed to start: {exc}\n{tail}") from None
            procs.append(head)
            _record(session, "head", head.pid)
            sessions.write_private(
                os.path.join(session, "cluster.json"),
                json.dumps({"address": address, "token_file": token_file}).encode(),
            )
        else:
            address = args.address
            token_file = args.token_file or sessions.resolve_address(address)[1]
            if token_file is None:
                token = tokens.resolve_token()  # from the environment, or a clear error
                token_file = os.path.join(session, "token")
                tokens.write_token_file(token_file, token.decode())
        if not (args.head and args.num_cpus == 0):
            node = daemons.start_node(
                session, token_file, address, num_cpus=args.num_cpus,
                num_gpus=args.num_gpus, resources=resources,
                object_store_memory=args.object_store_memory, host=args.host, detach=True,
                labels=labels, spill_root=_spill_root(args.object_spilling_directory),
            )
            procs.append(node)
            _record(session, "node", node.pid)
            try:  # joined, so a driver that connects next sees it in nodes()
                daemons.wait_for_file(os.path.join(session, "node.json"), node, "node",
                                      os.path.join(session, "logs", "node.log"))
            except (RuntimeError, TimeoutError) as exc:
                raise CLIError(
                    f"the node failed to start: {exc}\n{_log_tail(session, 'node')}"
                ) from None
    except BaseException:
        daemons.stop_processes(procs)
        raise
    if args.head:
        sessions.link_latest(session)  # only now: auto never reaches a half-started head
        print(f"actorlib head started at {address} (session {session})")
        print("  connect from this machine:  actorlib.init(address='auto')")
        print(f"  join a node:                actorlib start --address {address} "
              f"--token-file {token_file}")
        dashboard_url = _dashboard_url(session)
        if dashboard_url is not None:
            print(f"  dashboard (keep the URL private: its token opens it):  {dashboard_url}")
    else:
        print(f"actorlib node started, joining {address} (session {session})")
    return 0


def _dashboard_url(session: str) -> str | None:
    """The head's dashboard, token included, as its ready file says (None: none)."""
    try:
        with open(os.path.join(session, "head.json")) as f:
            url = json.load(f).get("dashboard_url")
    except (OSError, ValueError):
        return None
    return url if isinstance(url, str) else None


def _pids() -> list[tuple[str, int]]:
    found: list[tuple[str, int]] = []
    root = sessions.checked_root()
    if root is None:
        return found
    for entry in sorted(os.listdir(root)):
        path = os.path.join(root, entry)
        if entry.startswith("session_") and os.path.isdir(path) and not os.path.islink(path):
            for name in sorted(os.listdir(path)):
                if name.endswith(".pid"):
                    with open(os.path.join(path, name)) as f:
                        found.append((os.path.join(path, name), int(f.read().strip())))
    return found


def stop(args: argparse.Namespace) -> int:
    targets = _pids()
    alive = [(path, pid) for path, pid in targets if sessions.is_daemon(pid)]
    # Nodes first, so they do not report the head's loss; then heads.
    alive.sort(key=lambda item: item[0].endswith("head.pid"))
    for _, pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while any(sessions.is_daemon(pid) for _, pid in alive) and time.monotonic() < deadline:
        time.sleep(0.05)
    for _, pid in alive:
        if sessions.is_daemon(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    for path, _ in targets:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    root = sessions.checked_root()
    if root is not None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(root, sessions.LATEST_NAME))
    shm_store.remove_dead_sessions()  # what daemons killed earlier left in /dev/shm
    print(f"stopped {len(alive)} actorlib daemon(s)")
    return 0


def query_status(address: str | None = None, token_file: str | None = None,
                 timeout: float = 10.0) -> dict[str, Any]:
    """Ask a head for its status (nodes, usage, actors, queued tasks)."""
    host_port, reply = ask_head(address, token_file, StatusQuery(1), Status, timeout)
    result: dict[str, Any] = reply.status
    result["address"] = host_port
    return result


def ask_head(
    address: str | None, token_file: str | None, query: Any, reply_type: type,
    timeout: float = 10.0,
) -> tuple[str, Any]:
    """Send ``query`` to a head as a CLI peer; its address and its first ``reply_type``."""
    host_port, session_token = sessions.resolve_address(address)
    host, _, port = host_port.rpartition(":")
    try:
        token = tokens.resolve_token(token_file=token_file or session_token)
    except tokens.AuthError:
        # Nothing listening is the likelier news, and the token cannot fix that.
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except ConnectionRefusedError:
            raise ConnectionRefusedError(_refused(host_port)) from None
        raise
    tls = cluster_auth.TLSConfig.from_env()
    try:
        sock = cluster_auth.connect(host, int(port), token, "cli",
                                    tls=tls.client_context() if tls else None,
                                    timeout=timeout)
    except ConnectionRefusedError:
        raise ConnectionRefusedError(_refused(host_port)) from None
    try:
        sock.sendall(wire.encode(query))
        decoder = wire.Decoder()
        sock.settimeout(timeout)
        while True:
            try:
                data = sock.recv(1 << 16)
            except TimeoutError:
                raise TimeoutError(
                    f"the head at {host_port} did not answer within {timeout:g} s: it is "
                    "stopped or too busy to answer; try again, or give it longer "
                    "(--timeout)") from None
            if not data:
                raise ConnectionError("the head closed the connection")
            for message in decoder.feed(data):
                if type(message) is reply_type:
                    return host_port, message
    finally:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


def _refused(host_port: str) -> str:
    message = (f"connection refused at {host_port}: no actorlib head is listening there "
               "(start one with `actorlib start --head`)")
    if sessions.latest_session() is not None and sessions.live_session() is None:
        message += ("; the cluster last started on this machine is gone (its head and "
                    "node no longer run): `actorlib stop` clears what it left")
    return message


def status(args: argparse.Namespace) -> int:
    if args.address and args.address != "auto":  # auto: this machine's cluster, as `list`
        _parse_address(args.address)
    if args.pid is not None and args.address:
        raise UsageError("--pid (a local driver) and --address (a cluster) exclude each other")
    from actorlib import state_cli  # the local driver's rows, as `actorlib list` reads them

    local = args.pid is not None or not (
        args.address or os.environ.get(sessions.ADDRESS_ENV) or sessions.live_session()
    )
    try:
        info = (state_cli.local_status(args.pid, args.timeout) if local
                else query_status(args.address, args.token_file, args.timeout))
    except (ConnectionError, OSError, tokens.AuthError) as exc:
        if local and args.pid is None and isinstance(exc, state_socket.NoDriverError):
            exc = ConnectionError(
                "no actorlib cluster (`actorlib start --head`) and no local driver (a "
                "script that called init()) found on this machine, under "
                f"{sessions.sessions_root()}; a cluster or driver started with another "
                "TMPDIR or XDG_RUNTIME_DIR keeps its files elsewhere"
            )
        print(f"actorlib status: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # the driver's or head's answer was an error
        print(f"actorlib status: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    where = (f"local driver pid {info['driver_pid']}" if local
             else f"cluster at {info['address']}")
    print(f"{where}: {len(info['nodes'])} node(s), "
          f"{info['drivers']} driver(s), {info['actors']} actor(s), "
          f"{info['tasks']} task(s) of which {info['queued_tasks']} queued")
    for label, key in (("actors", "actors_by_state"), ("tasks", "tasks_by_state")):
        counts = info.get(key)
        if counts:
            print(f"  {label} by state: " + ", ".join(
                f"{state} {n}" for state, n in sorted(counts.items())))
    for line in demand_lines(info.get("demand") or []):
        print(f"  {line}")
    for node in info["nodes"]:
        print(f"  node {node['node_id']} at {node['address']}")
        print(f"    resources {resource_usage(node['resources'], node['available'])}")
        store = human_bytes(node.get("object_store_bytes", 0))
        if node.get("object_store_capacity"):
            store += f"/{human_bytes(node['object_store_capacity'])}"
        print(f"    workers {node.get('workers', '?')} (idle {node.get('idle_workers', '?')}), "
              f"running tasks {node['running_tasks']}, actors {node['actors']}, "
              f"object store {store}")
    print(f"  objects spilled to disk: {human_bytes(info.get('spilled_bytes', 0))}")
    return 0


def demand_lines(demand: list[dict[str, Any]]) -> list[str]:
    """``pending demand: 3x {CPU: 1}``, with infeasible shapes and why, one per line."""
    if not demand:
        return ["pending demand: none"]
    lines = ["pending demand (waiting for resources):"]
    for row in demand:
        shape = "{" + ", ".join(
            f"{k}: {human_bytes(v) if k in BYTE_RESOURCES else f'{v:g}'}"
            for k, v in sorted(row["resources"].items())) + "}"
        strategy = "" if row["strategy"] == "DEFAULT" else f" ({row['strategy']})"
        line = f"  {row['count']}x {shape}{strategy}"
        if row["infeasible"]:
            line += f" INFEASIBLE: {row['infeasible']}"
        lines.append(line)
    return lines


#: Resources counted in bytes, shown in binary units.
BYTE_RESOURCES = frozenset({"memory", "object_store_memory"})


def human_bytes(n: float) -> str:
    """``1.5 GiB``, ``512 B``: bytes in the largest binary unit that keeps them >= 1."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def resource_usage(total: dict[str, float], available: dict[str, float]) -> str:
    """``CPU 1/4, memory 2.0 GiB/15.0 GiB``: used of total per resource."""
    parts = []
    for key in sorted(total):
        used = max(total[key] - available.get(key, total[key]), 0.0)
        if key in BYTE_RESOURCES:
            parts.append(f"{key} {human_bytes(used)}/{human_bytes(total[key])}")
        else:
            parts.append(f"{key} {used:g}/{total[key]:g}")
    return ", ".join(parts) + " used" if parts else "none"


def run(args: argparse.Namespace) -> int:
    """Run a subcommand; expected failures become one line on stderr, not a traceback."""
    try:
        return {"start": start, "stop": stop, "status": status}[args.command](args)
    except UsageError as exc:
        print(f"actorlib {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # stdout's reader left: __main__ ends quietly
        raise
    except (CLIError, OSError, tokens.AuthError) as exc:  # OSError: an unsafe root too
        print(f"actorlib {args.command}: {exc}", file=sys.stderr)
        return 1


__all__ = ["add_arguments", "query_status", "run"]
