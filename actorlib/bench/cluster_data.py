"""The cluster's data plane: ``cluster_transfer`` and ``cluster_driver_get``.

Both start a cluster of their own on this machine (a head and two nodes of one CPU each,
on loopback) with ``actorlib start`` in a private sessions directory, run a driver
against it in a fresh interpreter (``python -m actorlib.bench.cluster_data``, the driver
of this module), and stop it with ``actorlib stop``; whatever ``--backend`` says. Separate from
:mod:`actorlib.bench.workloads` because this is process plumbing (daemons, a driver
process), and because the benchmark's own runtime cannot be the cluster's driver too.

- ``cluster_transfer``: an array made by a task on one node, read by a task on the other
  (the bytes stream between the nodes' stores), against a plain socket copy of the same
  bytes between two processes over loopback, measured in turn in each round.
- ``cluster_driver_get``: a driver's ``put`` of an array (into the store of a node on its
  machine), its ``get`` (zero-copy from that store), and the ``get`` of an array a task
  made on a node.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import mmap
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from actorlib.bench.workload_kit import Env, need_numpy, need_psutil

if TYPE_CHECKING:
    from actorlib.bench.runner import Harness

__all__ = ["cluster_driver_get", "cluster_transfer"]

DEFAULT_TRANSFER_MB = 1024
DEFAULT_DRIVER_GET_MB = 200  # decimal: the "200 MB"


# --------------------------------------------------------------------------- the workloads


def _run_driver(kind: str, size: int, runs: int) -> list[dict[str, Any]]:
    """Run ``runs`` measurements in a driver process of a fresh cluster; one dict each."""
    with _local_cluster() as env:
        proc = subprocess.run(
            [sys.executable, "-m", "actorlib.bench.cluster_data", kind, str(size), str(runs)],
            capture_output=True, text=True, timeout=600 + 60 * runs, env=env,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"the cluster driver failed:\n{proc.stderr[-3000:]}")
    rows: list[dict[str, Any]] = json.loads(proc.stdout.strip().splitlines()[-1])
    return rows


def _sample(h: Harness, rows: list[dict[str, Any]], units: dict[str, str], note: str) -> None:
    """Record precomputed rounds through ``h.sample`` (warm-up rounds first, discarded)."""
    left = iter(rows)

    def measure() -> tuple[dict[str, float], dict[str, Any]]:
        row = next(left)
        return {k: row[k] for k in units}, row.get("extras", {})

    h.sample(measure, units=units, note=note)


def cluster_transfer(env: Env, h: Harness) -> None:
    need_numpy()
    size = env.large_bytes(DEFAULT_TRANSFER_MB)
    rows = _run_driver("transfer", size, h.settings.warmup + h.settings.rounds)
    _sample(h, rows, {
        "cluster_transfer": "GB/s", "cluster_transfer.socket": "GB/s",
        "cluster_transfer.ratio": "x", "cluster_transfer.node_cpu": "s/GiB",
    }, f"{size >> 20} MiB, node to node; ratio = nodes / plain socket copy, per round; "
       "node_cpu = the node daemons' CPU time (user + system) per GiB moved")


def cluster_driver_get(env: Env, h: Harness) -> None:
    need_numpy()
    need_psutil()
    size = DEFAULT_DRIVER_GET_MB * 10**6 if env.large_mb is None else env.large_bytes(0)
    rows = _run_driver("driver_get", size, h.settings.warmup + h.settings.rounds)
    _sample(h, rows, {
        "cluster_driver_get": "ms", "cluster_driver_get.task_result": "ms",
        "cluster_driver_get.put": "GB/s",
    }, f"{size / 1e6:.0f} MB, a driver beside the nodes")


# --------------------------------------------------------------------------- the driver


@contextlib.contextmanager
def _local_cluster() -> Iterator[dict[str, str]]:
    """A head and two nodes of 1 CPU, in a sessions directory of their own."""
    root = tempfile.mkdtemp(prefix="actorlib-bench-cluster-")
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    env["TMPDIR"] = root
    for name in ("ACTORLIB_ADDRESS", "ACTORLIB_CLUSTER_TOKEN", "ACTORLIB_CLUSTER_TOKEN_FILE"):
        env.pop(name, None)

    def cli(*args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "actorlib", *args], env=env,
                             capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"actorlib {' '.join(args)} failed:\n{out.stderr}")
        return out.stdout

    try:
        started = cli("start", "--head", "--port", "0", "--num-cpus", "1")
        address = started.split(" started at ", 1)[1].split()[0]
        cli("start", "--address", address, "--num-cpus", "1")
        yield env
    finally:
        with contextlib.suppress(Exception):
            cli("stop")
        shutil.rmtree(root, ignore_errors=True)


def _socket_copy(size: int, fresh: bool) -> float:
    """Seconds to copy ``size`` bytes from another process over loopback (one stream).

    Into a buffer allocated and touched before the clock starts, or (``fresh``) into a new
    file in ``/dev/shm``, mapped: what a copy into a store must pay for its pages too.
    """
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        sender = subprocess.Popen([sys.executable, "-c", (
            "import socket, sys\n"
            f"data = bytes({size})\n"
            f"s = socket.create_connection(('127.0.0.1', {port}))\n"
            "s.recv(1)\n"
            "s.sendall(data)\n"
            "s.recv(1)\n"
        )])
        try:
            conn, _ = server.accept()
            with conn, contextlib.ExitStack() as stack:
                target = stack.enter_context(
                    tempfile.TemporaryFile(dir="/dev/shm")) if fresh else None
                buffer: Any = None if fresh else bytearray(size)
                t0 = time.perf_counter()
                if target is not None:
                    os.ftruncate(target.fileno(), size)
                    buffer = mmap.mmap(target.fileno(), size)
                view = memoryview(buffer)
                conn.sendall(b"g")
                got = 0
                while got < size:
                    n = conn.recv_into(view[got:])
                    if not n:
                        raise EOFError("the sender stopped early")
                    got += n
                elapsed = time.perf_counter() - t0
                view.release()
                conn.sendall(b"d")
        finally:
            sender.wait(60)
    return elapsed


def _node_cpu() -> float:
    """CPU seconds used so far by this cluster's node daemons (not their workers).

    A transfer's cost in CPU holds still when other jobs load the machine; its rate does
    not. The nodes are found by the pid files ``actorlib start`` wrote in our sessions
    directory (under our ``TMPDIR``).
    """
    import psutil

    root = os.path.join(tempfile.gettempdir(), f"actorlib-{os.getuid()}")
    total = 0.0
    for path in glob.glob(os.path.join(root, "session_*", "node*.pid")):
        try:
            with open(path) as f:
                cpu = psutil.Process(int(f.read().strip())).cpu_times()
        except (OSError, ValueError, psutil.Error):
            continue
        total += cpu.user + cpu.system
    return total


def _make(n: int) -> Any:
    import numpy as np

    return np.ones(n, dtype=np.uint8)


def _nbytes(a: Any) -> int:
    return memoryview(a).nbytes


def _driver(kind: str, size: int, runs: int) -> list[dict[str, Any]]:
    import numpy as np
    import psutil

    import actorlib
    from actorlib import NodeAffinitySchedulingStrategy

    actorlib.init(address="auto")
    try:
        deadline = time.monotonic() + 60
        while len(actorlib.nodes()) < 2:
            if time.monotonic() > deadline:
                raise TimeoutError("the two nodes did not join")
            time.sleep(0.05)
        first, second = sorted(n["NodeID"] for n in actorlib.nodes())[:2]

        def on(node: str) -> Any:
            return NodeAffinitySchedulingStrategy(node, soft=False)

        make = actorlib.remote(_make)
        nbytes = actorlib.remote(_nbytes)
        actorlib.get([nbytes.options(scheduling_strategy=on(n)).remote(b"") for n in
                      (first, second)])  # both nodes' workers up
        rows: list[dict[str, Any]] = []
        proc = psutil.Process()
        for _ in range(runs):
            if kind == "transfer":
                ref = make.options(scheduling_strategy=on(first)).remote(size)
                actorlib.wait([ref])
                cpu0 = _node_cpu()
                t0 = time.perf_counter()
                assert actorlib.get(nbytes.options(scheduling_strategy=on(second))
                                    .remote(ref)) == size
                nodes = size / (time.perf_counter() - t0) / 1e9
                cpu_per_gib = (_node_cpu() - cpu0) / (size / 2**30)
                del ref
                plain = size / _socket_copy(size, fresh=False) / 1e9
                into_shm = size / _socket_copy(size, fresh=True) / 1e9
                rows.append({
                    "cluster_transfer": nodes, "cluster_transfer.socket": plain,
                    "cluster_transfer.ratio": nodes / plain,
                    "cluster_transfer.node_cpu": cpu_per_gib,
                    "extras": {"socket_into_new_shm_gbps": round(into_shm, 3),
                               "ratio_to_that": round(nodes / into_shm, 3)},
                })
            else:
                array = np.full(size // 8, 1.0)
                t0 = time.perf_counter()
                ref = actorlib.put(array)
                put_s = time.perf_counter() - t0
                rss0 = proc.memory_info().rss
                t0 = time.perf_counter()
                value = actorlib.get(ref)
                get_s = time.perf_counter() - t0
                grew = proc.memory_info().rss - rss0
                read_only = not value.flags.writeable
                del value, ref
                made = make.options(scheduling_strategy=on(first)).remote(size)
                actorlib.wait([made])
                t0 = time.perf_counter()
                value = actorlib.get(made)
                task_s = time.perf_counter() - t0
                del value, made
                rows.append({
                    "cluster_driver_get": get_s * 1000,
                    "cluster_driver_get.task_result": task_s * 1000,
                    "cluster_driver_get.put": size / put_s / 1e9,
                    "extras": {"read_only": read_only, "copied": grew > size / 2,
                               "rss_growth_mb": round(grew / 1e6, 1)},
                })
        return rows
    finally:
        actorlib.shutdown()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m actorlib.bench.cluster_data")
    parser.add_argument("kind", choices=("transfer", "driver_get"))
    parser.add_argument("size", type=int)
    parser.add_argument("runs", type=int)
    args = parser.parse_args(argv)
    print(json.dumps(_driver(args.kind, args.size, args.runs)), flush=True)


if __name__ == "__main__":
    main()
