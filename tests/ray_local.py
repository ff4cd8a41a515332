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


#: Where Ray writes its processes' logs: the test clusters' own temp dirs, and Ray's
#: default one (a Ray a test starts with ``init``, an Executor's own).
RAY_LOG_GLOBS = ("/tmp/rtk-*/session_*/logs/python-core-*.log",
                 "/tmp/ray/session_*/logs/python-core-*.log")
#: A line Ray logs at its fatal level, as a failed check does before it aborts.
_FATAL = re.compile(r"^\[[^\]]* C \d+ \d+\] ")


def ray_fatal_lines(since: float, globs: tuple[str, ...] = RAY_LOG_GLOBS,
                    most: int = 10) -> list[str]:
    """The last ``most`` fatal lines Ray logged in files written since ``since`` (a time):
    Ray aborts a process on a failed check and says why only in its log file, so a
    pytest worker it ended reports nothing of it."""
    import glob

    found: list[tuple[float, str]] = []
    for pattern in globs:
        for path in glob.glob(pattern):
            with contextlib.suppress(OSError):
                written = os.path.getmtime(path)
                if written < since:
                    continue
                with open(path, errors="replace") as f:
                    found.extend((written, f"{os.path.basename(path)}: {line.rstrip()[:400]}")
                                 for line in f if _FATAL.match(line))
    return [line for _, line in sorted(found)[-most:]]


class LocalRay:
    """A head (and optionally more nodes) started with ``ray start``; ``stop()`` ends them."""

    def __init__(self, port: int | None = None) -> None:
        self.temp_dir = tempfile.mkdtemp(prefix="rtk-", dir="/tmp")
        self.port = port or free_port()
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
        _, alive = psutil.wait_procs(procs, timeout=3)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(alive, timeout=5)
        deadline = time.monotonic() + 5
        while self.processes() and time.monotonic() < deadline:
            time.sleep(0.1)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


class SharedRay:
    """The run's 4-CPU cluster and this process's connection to it (see ``shared_cluster``)."""

    def __init__(self, shared_threads: set[threading.Thread]) -> None:
        self.shared_threads = shared_threads
        self.cluster: LocalRay | None = None

    def start(self, port: int | None = None) -> str:
        """Start a cluster (on ``port``, or a free one) and connect this process to it;
        its address."""
        os.environ.update(RAY_ENV)
        import ray

        from actorlib.backends.ray.address import check_address
        from actorlib.backends.ray.connector import driver_job_config

        # A start that fails on a busy machine gets a second and third try (a fresh
        # cluster each) before every ray test errors on it.
        for attempt in range(3):
            cluster = LocalRay(port if attempt == 0 else None)
            try:
                cluster.start_head(4)
                before = set(threading.enumerate())
                # Ray may have been imported before RAY_ENV was set (a test module's
                # importorskip at collection): without this, Ray dials this machine's
                # address instead of loopback and ray.init hangs ("Timed out while
                # waiting for GCS").
                check_address(ray, cluster.address)
                sigterm = signal.getsignal(signal.SIGTERM)  # ray.init's would outlive us
                ray.init(address=cluster.address, include_dashboard=False,
                         log_to_driver=True, job_config=driver_job_config())
                signal.signal(signal.SIGTERM, sigterm)
                break
            except Exception:
                ray.shutdown()
                cluster.stop()
                if attempt == 2:
                    raise
        self.shared_threads.update(set(threading.enumerate()) - before)
        self.cluster = cluster
        return cluster.address

    def stop(self) -> None:
        import ray

        ray.shutdown()
        if self.cluster is not None:
            self.cluster.stop()
            self.cluster = None

    def busy_workers(self) -> list[psutil.Process]:
        """The cluster's worker processes running something (a task, an actor)."""
        assert self.cluster is not None
        busy = []
        for proc in self.cluster.processes():
            with contextlib.suppress(psutil.Error):
                title = (proc.cmdline() or [""])[0].strip()
                if title.startswith("ray::") and title not in _NOT_WORK:
                    busy.append(proc)
        return busy


#: A node's processes that run no user work: its agents and its idle workers.
_NOT_WORK = frozenset({"ray::IDLE", "ray::DashboardAgent", "ray::RuntimeEnvAgent"})

#: The run's shared cluster while it is up (``reset_cluster`` ends what tests leave in it).
_SHARED: list[SharedRay] = []


def shared_cluster(shared_threads: set[threading.Thread]) -> Iterator[str]:
    """Start a 4-CPU cluster, connect this process to it, and stop both at the end.

    The connection's threads go into ``shared_threads`` (the leak check leaves them be).
    """
    shared = SharedRay(shared_threads)
    address = shared.start()
    _SHARED.append(shared)
    try:
        yield address
    finally:
        _SHARED.remove(shared)
        shared.stop()


def _held() -> dict[str, tuple[float, float]]:
    """The cluster's resources not all available: name -> (available, total). Ray's
    memory and object store are counted too (an actor or task may reserve them)."""
    import ray

    total, available = ray.cluster_resources(), ray.available_resources()
    return {name: (available.get(name, 0.0), amount) for name, amount in total.items()
            if not name.startswith("node:") and available.get(name, 0.0) < amount - 1e-9}


def _end_actors_and_groups() -> None:
    """Kill every live actor (detached ones, those made in tasks, Ray's own made by a
    test calling Ray directly) and remove every placement group."""
    import ray
    from ray._private import state
    from ray._raylet import ActorID, PlacementGroupID
    from ray.util.placement_group import PlacementGroup

    worker = ray._private.worker.global_worker
    for actor_id, info in state.actors().items():
        if info.get("State") != "DEAD":
            with contextlib.suppress(Exception):
                worker.core_worker.kill_actor(ActorID.from_hex(actor_id), True)
    for group_id, info in ray.util.placement_group_table().items():
        if info.get("state") != "REMOVED":
            with contextlib.suppress(Exception):
                ray.util.remove_placement_group(
                    PlacementGroup(PlacementGroupID.from_hex(group_id)))


def _wait_released(deadline: float) -> dict[str, tuple[float, float]]:
    """Wait until every resource is available again, or ``deadline``; what is held."""
    while True:
        held = _held()
        if not held or time.monotonic() >= deadline:
            return held
        time.sleep(0.05)


def reset_cluster(grace: float = 10.0) -> list[str]:
    """Between tests, after the test's ``shutdown()``: end what it left in the shared
    cluster, so that no later test waits for its CPUs; what held resources beyond that.

    Every actor is killed and every placement group removed (detached ones outlive a
    driver's ``shutdown()`` on purpose). Then every resource must be available again
    within ``grace`` seconds. Work still holding some (a task ``shutdown()`` did not
    end) is a leak of the test: the cluster is restarted on the same port to end it for
    good (a killed worker's task would be retried by its owner, maybe this process).
    """
    import ray

    if not ray.is_initialized() or not _SHARED:
        return []
    shared = _SHARED[0]
    _end_actors_and_groups()
    held = _wait_released(time.monotonic() + grace)
    if not held:
        return []
    running = []
    for proc in shared.busy_workers():
        with contextlib.suppress(psutil.Error):
            running.append(f"{proc.pid} {(proc.cmdline() or [''])[0].strip()}")
    text = ", ".join(f"{name} {free:g} of {total:g} available"
                     for name, (free, total) in sorted(held.items()))
    assert shared.cluster is not None
    port = shared.cluster.port
    shared.stop()
    shared.start(port)
    return [f"the test left work holding the shared Ray cluster's resources after "
            f"shutdown() and after its actors and placement groups ended ({text}); "
            f"Ray's workers running work then: {running or 'none found'}; the shared Ray "
            "cluster was restarted to end it"]
