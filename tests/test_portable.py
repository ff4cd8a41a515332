"""The process backend with its portable stand-ins forced on (what macOS runs).

``ACTORLIB_PORTABLE=1`` makes the process backend do without pidfds, ``PR_SET_PDEATHSIG``
and ``/dev/shm`` on Linux too: worker deaths are seen by waiter threads, workers die with
their driver through its lifeline pipe, and object files live in a private directory
under ``$TMPDIR``. Here the flag is flipped in this process and set for every child, and a
representative part of ``test_process_backend`` and of the shared behavioural suite runs
again (imported below, so pytest collects them here too, with this module's fixtures).
First, tests that the stand-ins really are in force, so the reruns cannot pass on the
Linux mechanisms by accident.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import test_process_backend as pb
from test_actors import (  # noqa: F401 - collected here
    test_counter_state_and_order,
    test_handle_passed_to_actor,
    test_later_call_with_ready_args_waits_for_earlier_slow_one,
)
from test_nested import test_put_inside_task_get_in_driver, test_task_creates_actor  # noqa: F401
from test_objects import (  # noqa: F401
    test_big_numpy_object_freed,
    test_big_numpy_put_get_read_only_zero_copy,
    test_ref_in_actor_state_keeps_object_alive,
)
from test_process_backend import (  # noqa: F401
    test_a_small_task_result_is_a_file_of_its_own,
    test_actor_sigkilled_while_holding_large_objects_leaves_no_file,
    test_arena_extent_of_a_task_result_is_freed_after_last_ref,
    test_call_in_flight_is_retried_with_max_task_retries,
    test_crashed_actor_restarts_in_a_new_process,
    test_crashed_task_is_retried_in_a_new_worker,
    test_crashed_task_without_retries_fails_naming_the_cause,
    test_force_cancel_kills_the_running_worker,
    test_kill_actor_ends_its_process,
    test_kill_with_restart_starts_a_new_process,
    test_large_array_get_in_driver_is_read_only_and_fast,
    test_large_array_is_read_zero_copy_in_a_task,
    test_no_shm_file_survives_shutdown,
    test_sigkilled_driver_takes_its_workers_and_shm_files_with_it,
    test_task_dying_while_holding_a_large_object_leaves_no_file,
    test_tasks_and_actors_run_in_worker_processes,
)
from test_tasks import test_arguments_are_passed_by_value, test_task_result_ref_chains  # noqa: F401
from testkit import T

import actorlib
from actorlib.backends.process import portable
from actorlib.backends.process.shm_files import fallback_dir

pytestmark = pytest.mark.slow


def _fallback_entries() -> set[str]:
    try:
        return {n for n in os.listdir(fallback_dir()) if n.startswith("actorlib-")}
    except FileNotFoundError:
        return set()


@pytest.fixture(autouse=True)
def portable_mode(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Force the stand-ins here and in every child; no object file may outlive a test.

    (The shared leak check watches ``/dev/shm``; here the files live elsewhere.)
    """
    monkeypatch.setenv("ACTORLIB_PORTABLE", "1")
    monkeypatch.setattr(portable, "FORCED", True)
    monkeypatch.setattr(pb, "SHM_DIR", Path(fallback_dir()))
    before = _fallback_entries()
    yield
    deadline = time.monotonic() + 2
    while (left := _fallback_entries() - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"object files outlived the test in {fallback_dir()}: {sorted(left)}"


@pytest.fixture
def backend_name() -> str:
    """The shared behavioural tests imported above run on the process backend only."""
    return "process"


prt = pb.prt


# --------------------------------------------------------------------------- in force


@actorlib.remote
def worker_mechanisms() -> dict[str, Any]:
    # (PR_GET_PDEATHSIG cannot tell: the setting is per thread, and this is not the main one.)
    return {"threads": [t.name for t in threading.enumerate()], "forced": portable.FORCED}


def test_the_stand_ins_are_in_force(prt: Any) -> None:
    """Waiter threads instead of pidfds, a lifeline instead of PDEATHSIG, no /dev/shm."""
    got = actorlib.get(worker_mechanisms.remote(), timeout=T)
    assert got["forced"] and "actorlib-lifeline" in got["threads"], got
    waiters = [t.name for t in threading.enumerate() if t.name.startswith("actorlib-wait-")]
    children = psutil.Process().children()
    assert waiters and len(waiters) == len(children), (waiters, children)
    links = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            links.append(os.readlink(f"/proc/self/fd/{fd}"))
    assert not any("pidfd" in link for link in links), links
    store = actorlib.put(np.ones(1 << 17))
    assert pb._shm_files() and not list(Path("/dev/shm").glob(f"actorlib-{os.getpid()}-*"))
    del store


def test_without_the_flag_linux_mechanisms_are_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """The opposite check: the flag, not the platform, switched them above."""
    monkeypatch.setattr(portable, "FORCED", False)
    monkeypatch.delenv("ACTORLIB_PORTABLE")
    with actorlib.init(backend="process", num_cpus=1):
        got = actorlib.get(worker_mechanisms.remote(), timeout=T)
        waiters = [t for t in threading.enumerate() if t.name.startswith("actorlib-wait-")]
    assert not got["forced"] and "actorlib-lifeline" not in got["threads"], got
    assert not waiters


# --------------------------------------------------------------------------- promptness


@actorlib.remote(max_restarts=0)
class Victim:
    def pid(self) -> int:
        return os.getpid()


def death_latency() -> float:
    """Seconds from SIGKILLing an actor's process to the driver failing its next call."""
    v = Victim.remote()
    pid = actorlib.get(v.pid.remote(), timeout=T)
    t0 = time.perf_counter()
    os.kill(pid, 9)
    while True:
        try:
            actorlib.get(v.pid.remote(), timeout=T)
        except actorlib.exceptions.ActorDiedError:
            return time.perf_counter() - t0
        time.sleep(0.001)


def test_a_worker_death_is_seen_at_once(prt: Any) -> None:
    """No polling: the waiter thread wakes as the process exits (the socket's EOF alone
    would leave it unseen for 2 s, see ``WorkerProcess``)."""
    latencies = sorted(death_latency() for _ in range(3))
    assert latencies[1] < 0.5, latencies


# --------------------------------------------------------------------------- lifeline


def test_a_lifeline_reader_sees_eof_when_its_driver_dies(tmp_path: Path) -> None:
    """Any child given the lifeline ends with its parent, killed or not, not before."""
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent("""
        import subprocess, sys, time
        from actorlib.backends.process import portable
        fd = portable.lifeline_fd()
        child = subprocess.Popen([sys.executable, "-c", (
            "import os, sys, time; from actorlib.backends.process import portable; "
            f"portable.on_lifeline_cut({fd}, lambda: os._exit(7), 'x'); time.sleep(600)"
        )], pass_fds=[fd])
        print(child.pid, flush=True)
        time.sleep(600)
    """))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    child_pid = 0
    try:
        assert parent.stdout is not None
        ready, _, _ = select.select([parent.stdout], [], [], T)
        assert ready, "the parent never started its child"
        child_pid = int(parent.stdout.readline())
        child = psutil.Process(child_pid)
        time.sleep(0.3)
        assert child.is_running() and child.status() != psutil.STATUS_ZOMBIE
        parent.kill()
        parent.wait()
        t0 = time.monotonic()
        while time.monotonic() - t0 < 5 and not pb._pid_dead(child_pid):
            time.sleep(0.01)
        assert pb._pid_dead(child_pid), "the child outlived its SIGKILLed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
        if child_pid and not pb._pid_dead(child_pid):
            psutil.Process(child_pid).kill()


def test_a_forked_child_does_not_hold_the_lifeline() -> None:
    """A user's fork (multiprocessing "fork") must not keep a dead driver's workers alive."""
    portable.lifeline_fd()
    assert portable._lifeline is not None
    ends = portable._lifeline
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        for fd in ends:
            try:
                os.fstat(fd)
                os._exit(1)  # still open
            except OSError:
                pass
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the forked child kept the lifeline"


CLUSTER_DRIVER = """
import json, os, sys, time
import actorlib

actorlib.init(backend="cluster", num_cpus=1)

@actorlib.remote
def pid_of():
    return os.getpid()

worker = actorlib.get(pid_of.remote())
with open(sys.argv[1] + ".tmp", "w") as f:
    json.dump({"worker": worker}, f)
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(600)
"""


def test_a_private_cluster_stops_with_its_sigkilled_driver(tmp_path: Path) -> None:
    """Its head and node follow the driver through the lifeline, not a pidfd."""
    script = tmp_path / "driver.py"
    script.write_text(CLUSTER_DRIVER)
    out = tmp_path / "ready.json"
    env = dict(os.environ, TMPDIR=str(tmp_path))  # what the killed driver leaves stays here
    driver = subprocess.Popen(
        [sys.executable, str(script), str(out)], env=env, cwd=str(tmp_path),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    procs: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 60
        while not out.exists():
            assert driver.poll() is None, "the driver failed to start its cluster"
            assert time.monotonic() < deadline, "the private cluster never got ready"
            time.sleep(0.05)
        procs = psutil.Process(driver.pid).children(recursive=True)
        assert len(procs) >= 3, procs  # head, node, the node's worker
        for p in procs:
            fds = f"/proc/{p.pid}/fd"
            links = [os.readlink(f"{fds}/{fd}") for fd in os.listdir(fds)]
            assert not any("pidfd" in link for link in links), (p.cmdline(), links)
        driver.kill()
        driver.wait()
        _, alive = psutil.wait_procs(procs, timeout=10)
        assert not alive, f"outlived their SIGKILLed driver: {[p.cmdline() for p in alive]}"
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        for p in procs:  # only the processes this test started
            with contextlib.suppress(psutil.Error):
                p.kill()


FORKING_DRIVER = """
import json, os, sys, time
import actorlib

actorlib.init(backend="process", num_cpus=2)

@actorlib.remote
def pid_of():
    return os.getpid()

@actorlib.remote(num_cpus=0)
class A:
    def pid(self):
        return os.getpid()

a = A.remote()
workers = set(actorlib.get([pid_of.remote() for _ in range(2)])) | {actorlib.get(a.pid.remote())}
child = os.fork()  # a user's fork: it inherits the driver's ends of the workers' sockets
if child == 0:
    time.sleep(600)
    os._exit(0)
with open(sys.argv[1] + ".tmp", "w") as f:
    json.dump({"workers": sorted(workers), "child": child}, f)
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(600)
"""


@pytest.mark.parametrize("forced", [True, False], ids=["lifeline", "pdeathsig"])
def test_workers_die_with_their_driver_though_a_fork_of_it_lives(
    tmp_path: Path, forced: bool
) -> None:
    """The forked child keeps the workers' sockets open, so they see no EOF there: only
    the death signal or the lifeline (which the fork drops) ends them."""
    script = tmp_path / "driver.py"
    script.write_text(FORKING_DRIVER)
    out = tmp_path / "ready.json"
    env = dict(os.environ, ACTORLIB_PORTABLE="1" if forced else "0")
    driver = subprocess.Popen([sys.executable, str(script), str(out)], env=env,
                              cwd=str(tmp_path), stderr=subprocess.DEVNULL)
    info: dict[str, Any] = {"workers": [], "child": 0}
    try:
        deadline = time.monotonic() + T
        while not out.exists():
            assert driver.poll() is None, "the driver script failed"
            assert time.monotonic() < deadline, "the driver script never got ready"
            time.sleep(0.05)
        info = json.loads(out.read_text())
        driver.kill()
        driver.wait()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not all(map(pb._pid_dead, info["workers"])):
            time.sleep(0.02)
        alive = [p for p in info["workers"] if not pb._pid_dead(p)]
        assert not alive, f"workers outlived their SIGKILLed driver: {alive}"
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        for pid in [*info["workers"], info["child"]]:  # only what this test started
            if pid:
                with contextlib.suppress(psutil.Error):
                    psutil.Process(pid).kill()


def test_the_default_backend_is_process_with_the_stand_ins(monkeypatch: pytest.MonkeyPatch) -> None:
    """``init()`` picks process, and it runs with the stand-ins (as on macOS, where the
    default used to be thread; on Linux this cannot tell the old choice from the new)."""
    monkeypatch.delenv("ACTORLIB_BACKEND", raising=False)
    monkeypatch.delenv("ACTORLIB_ADDRESS", raising=False)
    with actorlib.init(num_cpus=1) as info:
        assert info.backend == "process"
        assert actorlib.get(worker_mechanisms.remote(), timeout=T)["forced"]
