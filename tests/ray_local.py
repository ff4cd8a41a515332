"""A Ray cluster on this machine for the tests: ``ray start`` on loopback, stopped by pid.

``ray start`` leaves its daemons running after it returns (they are not this process's
children), so the leak check never counts them; the cluster is stopped by ending exactly
the processes whose command line names its own temporary directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator

import psutil

#: Every Ray process here binds to loopback, without token authentication (a local test).
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           # A driver here keeps its address on loopback (Ray would swap 127.0.0.1 for
           # the machine's address); the second node of a multi-node test sets it to 1.
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def free_port(low: int = 6400, high: int = 9900) -> int:
    """A free TCP port below Ray's worker port range (10002-19999)."""
    for _ in range(200):
        port = low + int.from_bytes(os.urandom(2), "big") % (high - low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


# ``ray start``, except that a loopback address stays loopback: with the cluster switch
# on (a second node), Ray swaps 127.0.0.1 for the machine's own address, and this test
# talks to loopback only.
_RAY_START = (
    "import sys; import ray._private.services as s; "
    "s.resolve_ip_for_localhost = lambda host: host; "
    "from ray.scripts.scripts import main; sys.argv[0] = 'ray'; main()"
)


class LocalRay:
    """A head (and optionally more nodes) started with ``ray start``; ``stop()`` ends them."""

    def __init__(self) -> None:
        self.temp_dir = tempfile.mkdtemp(prefix="rtk-", dir="/tmp")
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {**os.environ, **RAY_ENV}

    def start_head(self, num_cpus: float, resources: dict[str, float] | None = None,
                   num_gpus: float = 0) -> None:
        self._run([
            "--head", "--node-ip-address", "127.0.0.1", "--port", str(self.port),
            "--temp-dir", self.temp_dir, "--include-dashboard", "false",
            "--disable-usage-stats", "--num-cpus", str(num_cpus),
            "--num-gpus", str(num_gpus), "--resources", json.dumps(resources or {}),
            "--object-store-memory", str(400 * 1024 * 1024),
        ])

    def add_node(self, num_cpus: float, resources: dict[str, float] | None = None) -> None:
        """Another node on this machine (Ray calls a second node on one machine a
        cluster: the one place the cluster switch is on)."""
        self._run([
            "--address", self.address, "--node-ip-address", "127.0.0.1",
            "--num-cpus", str(num_cpus), "--resources", json.dumps(resources or {}),
            "--object-store-memory", str(400 * 1024 * 1024),
        ], RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="1")

    def _run(self, args: list[str], **env: str) -> None:
        subprocess.run([sys.executable, "-c", _RAY_START, "start", *args],
                       env={**self.env, **env}, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=180)

    def processes(self) -> list[psutil.Process]:
        """This cluster's processes: those naming its temp dir or its GCS address, and
        everything they started."""
        found: dict[int, psutil.Process] = {}
        gcs = re.compile(rf"127\.0\.0\.1:{self.port}(?!\d)")  # not :{port}1 of another
        for proc in psutil.process_iter(["cmdline"]):
            cmd = " ".join(proc.info.get("cmdline") or ())
            if self.temp_dir in cmd or gcs.search(cmd):
                found[proc.pid] = proc
                with contextlib.suppress(psutil.Error):
                    for child in proc.children(recursive=True):
                        found[child.pid] = child
        found.pop(os.getpid(), None)
        return list(found.values())

    def stop(self) -> None:
        procs = self.processes()
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        _, alive = psutil.wait_procs(procs, timeout=10)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(alive, timeout=5)
        deadline = time.monotonic() + 5
        while self.processes() and time.monotonic() < deadline:
            time.sleep(0.1)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def shared_cluster(shared_threads: set[threading.Thread]) -> Iterator[str]:
    """Start a 4-CPU cluster, connect this process to it, and stop both at the end.

    The connection's threads go into ``shared_threads`` (the leak check leaves them be).
    """
    os.environ.update(RAY_ENV)
    import ray

    from actorlib.backends.ray.address import check_address
    from actorlib.backends.ray.connector import driver_job_config

    # A start that fails on a busy machine gets a second and third try (a fresh cluster
    # each) before every ray test errors on it.
    for attempt in range(3):
        cluster = LocalRay()
        try:
            cluster.start_head(4)
            before = set(threading.enumerate())
            # Ray may have been imported before RAY_ENV was set (a test module's
            # importorskip at collection): without this, Ray dials this machine's address
            # instead of loopback and ray.init hangs ("Timed out while waiting for GCS").
            check_address(ray, cluster.address)
            sigterm = signal.getsignal(signal.SIGTERM)  # ray.init's own would outlive us
            ray.init(address=cluster.address, include_dashboard=False, log_to_driver=True,
                     job_config=driver_job_config())
            signal.signal(signal.SIGTERM, sigterm)
            break
        except Exception:
            ray.shutdown()
            cluster.stop()
            if attempt == 2:
                raise
    try:
        shared_threads.update(set(threading.enumerate()) - before)
        yield cluster.address
    finally:
        ray.shutdown()
        cluster.stop()


def reset_cluster() -> None:
    """Between tests: kill the named actors a test left (detached ones outlive a driver)."""
    import ray

    if not ray.is_initialized():
        return
    for entry in ray.util.list_named_actors(all_namespaces=True):
        if entry["name"].startswith("actorlib-actor-"):
            continue  # an unnamed actor's: it dies with its handles
        with contextlib.suppress(Exception):
            ray.kill(ray.get_actor(entry["name"], namespace=entry["namespace"]))
