"""Process-backend specifics: real worker processes that really die, and shared memory.

The shared behavioural suite (``rt``) checks the semantics every backend shares; these
tests check what only the process backend can show: worker processes crashing
(``os._exit``, SIGKILL) and being retried or restarted in *new* processes, ``kill`` and
``cancel(force=True)`` ending real processes, zero-copy reads of large numpy arrays from
``/dev/shm``, the lifetime of the ``/dev/shm/actorlib-<driverpid>-*`` files, a SIGKILLed
driver taking its workers with it, ``runtime_env`` / ``CUDA_VISIBLE_DEVICES`` set inside
the worker only, and functions from an unguarded ``__main__`` shipped without re-running
the script.

Tests never share Python objects with tasks: attempts are counted in files under
``tmp_path`` or in a ``Recorder`` actor (both outlive a crashed worker).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import gc
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import types
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
from testkit import Recorder, Sync, T, live_objects, run_script, wait_until

import actorlib
from actorlib import exceptions as exc
from actorlib import options, session
from actorlib.backends.process import portable
from actorlib.backends.process.shm_files import fallback_dir
from actorlib.backends.process.worker_process import settle_socket
from actorlib.backends.transport import wire
from actorlib.core.loop import new_event_loop

# Where object files live: the fallback directory when the portable stand-ins are forced
# (test_portable.py reruns tests of this module that way; workers import it with the flag).
SHM_DIR = Path(fallback_dir() if portable.FORCED else "/dev/shm")
MiB = 1 << 20
BIG = 200 * MiB  # the zero-copy array
LARGE = 4 * MiB  # comfortably above the 64 KiB shared-memory threshold


def _process_runtime(request: pytest.FixtureRequest) -> Iterator[Any]:
    kwargs: dict[str, Any] = {"num_cpus": 2}
    for marker in reversed(list(request.node.iter_markers("init_kwargs"))):
        kwargs.update(marker.kwargs)
    info = actorlib.init(backend="process", **kwargs)
    try:
        yield info
    finally:
        actorlib.shutdown()


@pytest.fixture
def prt(request: pytest.FixtureRequest, _leak_check: None) -> Iterator[Any]:
    """An initialized process-backend runtime with 2 CPUs; shut down after the test.

    ``@pytest.mark.init_kwargs(...)`` adds init() arguments (as for ``rt``).
    """
    yield from _process_runtime(request)


# --------------------------------------------------------------------------- helpers


def _die(how: str) -> None:
    """End the current process abruptly: no cleanup, no exception, no reply."""
    if how == "exit":
        os._exit(3)
    elif how == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(10)  # never reached
    raise AssertionError(f"unknown way to die: {how}")


# What a WorkerCrashedError message must say for each way to die.
CRASH_DETAIL = {
    "exit": re.compile(r"(exit|code|status)\D{0,15}\b3\b", re.IGNORECASE),
    "sigkill": re.compile(r"SIGKILL|signal\D{0,5}\b9\b|-9\b", re.IGNORECASE),
}


def _attempt(path: str) -> int:
    """Log this attempt's pid to ``path``; return the attempt number (1-based)."""
    with open(path, "a") as f:
        f.write(f"{os.getpid()}\n")
    with open(path) as f:
        return len(f.read().split())


def _attempt_pids(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def _pid_gone(pid: int) -> bool:
    return not psutil.pid_exists(pid)


def _pid_dead(pid: int) -> bool:
    """Gone, or a zombie waiting for a parent that is not us (after reparenting)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _shm_files(driver_pid: int | None = None) -> dict[str, int]:
    """``/dev/shm/actorlib-<driver_pid>-*`` files (this process by default) and their sizes."""
    prefix = f"actorlib-{os.getpid() if driver_pid is None else driver_pid}-"
    found: dict[str, int] = {}
    for entry in os.scandir(SHM_DIR):
        if entry.name.startswith(prefix):
            with contextlib.suppress(FileNotFoundError):
                found[entry.name] = entry.stat().st_size
    return found


def _private_bytes() -> int:
    """Resident memory not backed by a file or shared memory (anonymous, private)."""
    m = psutil.Process().memory_info()
    return m.rss - m.shared


def _shm_mappings() -> dict[str, int]:
    """Bytes of this process's address space mapped from /dev/shm/actorlib-* files."""
    sizes: dict[str, int] = {}
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and parts[5].startswith(f"{SHM_DIR}/actorlib-"):
                start, end = (int(x, 16) for x in parts[0].split("-"))
                sizes[parts[5]] = sizes.get(parts[5], 0) + end - start
    return sizes


# --------------------------------------------------------------------------- remote code


@actorlib.remote
def pid_of() -> int:
    return os.getpid()


@actorlib.remote
def crash_until(path: str, how: str, ok_at: int | None) -> tuple[int, int]:
    """Die on every attempt before attempt ``ok_at`` (never succeeds if ``ok_at`` is None)."""
    n = _attempt(path)
    if ok_at is None or n < ok_at:
        _die(how)
    return n, os.getpid()


@actorlib.remote
def sleep_reporting(rec: Any, seconds: float) -> str:
    actorlib.get(rec.append.remote(os.getpid()), timeout=T)
    time.sleep(seconds)  # blocked in C: only killing the process stops it early
    return "not cancelled"


@actorlib.remote
def probe_array(arr: Any) -> dict[str, Any]:
    """How a large array argument arrived: mapped or copied, writable or not."""
    private0 = _private_bytes()
    mapped = _shm_mappings()
    total = float(np.sum(arr[:]))  # a view; reads every page
    private1 = _private_bytes()
    copy = arr.copy()
    copy[0] += 1  # make sure the copy is real and resident
    private2 = _private_bytes()
    try:
        arr[0] = -1.0
        wrote = True
    except ValueError:
        wrote = False
    return {
        "pid": os.getpid(),
        "writeable": bool(arr.flags.writeable),
        "wrote": wrote,
        "sum": total,
        "private_at_start": private0,
        "access_growth": private1 - private0,
        "copy_growth": private2 - private1,
        "largest_mapping": max(mapped.values(), default=0),
    }


@actorlib.remote
def array_sum(arr: Any) -> float:
    return float(np.sum(arr))


@actorlib.remote
def make_array(nbytes: int, fill: float = 1.0) -> Any:
    return np.full(nbytes // 8, fill, dtype=np.float64)


@actorlib.remote
def put_large_then_die(nbytes: int, how: str) -> None:
    ref = actorlib.put(np.ones(nbytes // 8))
    arr = actorlib.get(ref, timeout=T)  # mapped here too
    assert arr.nbytes == nbytes
    _die(how)


@actorlib.remote
def read_env(name: str, sync: Any = None) -> tuple[str | None, int]:
    if sync is not None:
        actorlib.get(sync.arrive.remote("running"), timeout=T)
        actorlib.get(sync.wait.remote("done"), timeout=T)
    return os.environ.get(name), os.getpid()


@actorlib.remote
def gpu_env(sync: Any = None, n: int = 0) -> tuple[list[int], str | None]:
    if sync is not None:
        actorlib.get(sync.barrier.remote(n), timeout=T)
    return list(actorlib.get_gpu_ids()), os.environ.get("CUDA_VISIBLE_DEVICES")


@actorlib.remote(num_cpus=0)
class Phoenix:
    """An actor that can crash its own process; every __init__ is logged in ``rec``."""

    def __init__(self, rec: Any) -> None:
        self.rec = rec
        self.calls = 0
        actorlib.get(rec.append.remote(["init", os.getpid()]), timeout=T)

    def pid(self) -> int:
        self.calls += 1
        return os.getpid()

    def ncalls(self) -> int:
        return self.calls

    def crash(self, how: str) -> None:
        _die(how)

    def crash_once(self, key: str, how: str = "exit") -> int:
        """Crash the first attempt (counted in ``rec``, which survives us), then succeed."""
        if actorlib.get(self.rec.incr.remote(key), timeout=T) == 1:
            _die(how)
        return os.getpid()

    def step(self, i: int, crash_at: int) -> int:
        if i == crash_at and actorlib.get(self.rec.incr.remote("attempts"), timeout=T) == 1:
            _die("exit")
        actorlib.get(self.rec.append.remote(i), timeout=T)
        return i


@actorlib.remote(num_cpus=0)
class Holder:
    """Holds large objects in its process: one it put itself, one it was given."""

    def __init__(self) -> None:
        self.kept: list[Any] = []

    def make_and_hold(self, nbytes: int) -> int:
        ref = actorlib.put(np.ones(nbytes // 8))
        self.kept += [ref, actorlib.get(ref, timeout=T)]
        return os.getpid()

    def hold(self, arrays: list[Any]) -> int:
        self.kept += [arrays[0], actorlib.get(arrays[0], timeout=T)]  # a nested ref
        return os.getpid()


@actorlib.remote(num_cpus=0)
class EnvActor:
    def read(self, name: str) -> tuple[str | None, int]:
        return os.environ.get(name), os.getpid()


@actorlib.remote(num_cpus=0)
class GpuActor:
    def ids(self) -> tuple[list[int], str | None]:
        return list(actorlib.get_gpu_ids()), os.environ.get("CUDA_VISIBLE_DEVICES")


# --------------------------------------------------------------------------- processes


@pytest.mark.slow
def test_tasks_and_actors_run_in_worker_processes(prt):
    me = os.getpid()
    task_pids = actorlib.get([pid_of.remote() for _ in range(20)], timeout=T)
    assert me not in task_pids
    children = {p.pid for p in psutil.Process().children(recursive=True)}
    assert set(task_pids) <= children, "task workers must be this driver's descendants"
    assert len(set(task_pids)) < 10, f"task workers are pooled and reused: {set(task_pids)}"
    rec = Recorder.remote()
    a, b = Phoenix.remote(rec), Phoenix.remote(rec)
    pa, pb = actorlib.get([a.pid.remote(), b.pid.remote()], timeout=T)
    assert len({pa, pb, me}) == 3, "each actor gets a process of its own"
    later = actorlib.get([pid_of.remote() for _ in range(20)], timeout=T)
    assert not ({pa, pb} & set(later)), "an actor's process never runs plain tasks"


# --------------------------------------------------------------------------- task crashes


@pytest.mark.slow
@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_crashed_task_is_retried_in_a_new_worker(prt, tmp_path, how):
    log = tmp_path / "attempts"
    ref = crash_until.options(max_retries=3).remote(str(log), how, 3)
    attempt, pid = actorlib.get(ref, timeout=T)
    assert attempt == 3
    pids = _attempt_pids(log)
    assert len(pids) == 3 and pids[-1] == pid
    assert len(set(pids)) == 3, f"each attempt after a crash runs in a new process: {pids}"
    assert os.getpid() not in pids
    for dead in pids[:2]:
        wait_until(lambda dead=dead: _pid_gone(dead), what=f"crashed worker {dead} reaped")


@actorlib.remote
def die_when(path: str) -> None:
    """Hold a CPU (no ``get``) until ``path`` exists, then kill the worker."""
    deadline = time.monotonic() + 2 * T
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.005)
    _die("exit")


@pytest.mark.slow
def test_tasks_queued_on_a_dying_worker_run_elsewhere_without_using_a_retry(prt, tmp_path):
    """With every CPU busy, the next tasks wait on the workers of the running ones; those
    workers die, and the waiting tasks (max_retries=0) still run: they never started."""
    release = tmp_path / "release"
    dying = [die_when.options(max_retries=0).remote(str(release)) for _ in range(2)]
    waiting = [pid_of.options(max_retries=0).remote() for _ in range(4)]
    actorlib.wait(dying + waiting, timeout=0.2)  # let them reach the workers
    release.touch()
    for ref in dying:
        with pytest.raises(exc.WorkerCrashedError):
            actorlib.get(ref, timeout=T)
    pids = actorlib.get(waiting, timeout=T)
    assert os.getpid() not in pids


@actorlib.remote
def mark_run(path: str, i: int) -> int:
    with open(path, "a") as marks:
        marks.write(f"{i}\n")
    return i


@actorlib.remote
def die_first_time(path: str, release: str) -> str:
    """Hold the CPU until ``release`` exists; the first attempt then kills its worker."""
    with open(path, "a") as marks:
        marks.write("head\n")
    deadline = time.monotonic() + 2 * T
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.005)
    with open(path) as marks:
        if sum(line == "head\n" for line in marks) == 1:
            _die("sigkill")
    return "head"


@pytest.mark.slow
@pytest.mark.init_kwargs(num_cpus=1)
def test_a_worker_killed_with_a_chain_of_tasks_reruns_each_once(prt, tmp_path):
    """One CPU: the worker holds its running task and several queued behind it when it
    is killed. The running one is retried once (its one retry); each queued one never
    started, so it runs exactly once afterwards, without a retry of its own."""
    marks, release = str(tmp_path / "marks"), tmp_path / "release"
    head = die_first_time.options(max_retries=1).remote(marks, str(release))
    queued = [mark_run.options(max_retries=0).remote(marks, i) for i in range(5)]
    actorlib.wait([head, *queued], timeout=0.2)  # let them reach the worker
    release.touch()
    assert actorlib.get(head, timeout=T) == "head"
    assert actorlib.get(queued, timeout=T) == list(range(5))
    with open(marks) as lines:
        runs = collections.Counter(line.strip() for line in lines)
    assert runs == {"head": 2, **{str(i): 1 for i in range(5)}}


@pytest.mark.slow
@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_crashed_task_without_retries_fails_naming_the_cause(prt, tmp_path, how):
    log = tmp_path / "attempts"
    ref = crash_until.options(max_retries=0).remote(str(log), how, None)
    with pytest.raises(exc.WorkerCrashedError) as info:
        actorlib.get(ref, timeout=T)
    assert isinstance(info.value, exc.ActorlibError)
    msg = str(info.value)
    assert CRASH_DETAIL[how].search(msg), f"message should name the {how} cause: {msg!r}"
    assert len(_attempt_pids(log)) == 1, "max_retries=0: exactly one attempt"
    # The runtime is unharmed: the next task gets a fresh worker.
    ok = crash_until.options(max_retries=0).remote(str(tmp_path / "ok"), how, 1)
    assert actorlib.get(ok, timeout=T)[0] == 1


@pytest.mark.slow
def test_default_max_retries_is_three(prt, tmp_path):
    log = tmp_path / "attempts"
    with pytest.raises(exc.WorkerCrashedError) as info:
        actorlib.get(crash_until.remote(str(log), "exit", None), timeout=T)
    assert len(_attempt_pids(log)) == 4, "1 attempt + 3 retries"
    assert CRASH_DETAIL["exit"].search(str(info.value)), str(info.value)


def test_application_errors_are_not_worker_crashes(prt):
    """An exception leaves the worker alive and is not retried as a crash."""

    @actorlib.remote(max_retries=3)
    def boom() -> None:
        raise KeyError("nope")

    with pytest.raises(KeyError) as info:
        actorlib.get(boom.remote(), timeout=T)
    assert not isinstance(info.value, exc.WorkerCrashedError)


# --------------------------------------------------------------------------- actor crashes


@pytest.mark.slow
@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_crashed_actor_restarts_in_a_new_process(prt, how):
    rec = Recorder.remote()
    a = Phoenix.options(max_restarts=1).remote(rec)
    pid1 = actorlib.get(a.pid.remote(), timeout=T)
    with pytest.raises(exc.ActorDiedError):  # in flight, max_task_retries=0
        actorlib.get(a.crash.remote(how), timeout=T)
    pid2 = actorlib.get(a.pid.remote(), timeout=T)
    assert pid2 != pid1
    assert actorlib.get(a.ncalls.remote(), timeout=T) == 1, "state is fresh after a restart"
    inits = actorlib.get(rec.items.remote(), timeout=T)
    assert [list(x) for x in inits] == [["init", pid1], ["init", pid2]], "__init__ ran again"
    wait_until(lambda: _pid_gone(pid1), what=f"old actor process {pid1} reaped")
    # Restarts exhausted: the next crash is final.
    with pytest.raises(exc.ActorDiedError):
        actorlib.get(a.crash.remote(how), timeout=T)
    with pytest.raises(exc.ActorDiedError):
        actorlib.get(a.pid.remote(), timeout=T)
    wait_until(lambda: _pid_gone(pid2), what=f"dead actor process {pid2} reaped")


@pytest.mark.slow
def test_call_in_flight_is_retried_with_max_task_retries(prt):
    rec = Recorder.remote()
    a = Phoenix.options(max_restarts=1, max_task_retries=1).remote(rec)
    pid1 = actorlib.get(a.pid.remote(), timeout=T)
    pid2 = actorlib.get(a.crash_once.remote("k", "sigkill"), timeout=T)
    assert pid2 != pid1
    assert actorlib.get(rec.value.remote("k"), timeout=T) == 2
    assert len(actorlib.get(rec.items.remote(), timeout=T)) == 2  # two __init__ runs


@pytest.mark.slow
def test_call_in_flight_fails_without_max_task_retries(prt):
    rec = Recorder.remote()
    a = Phoenix.options(max_restarts=1, max_task_retries=0).remote(rec)
    pid1 = actorlib.get(a.pid.remote(), timeout=T)
    with pytest.raises(exc.ActorDiedError):
        actorlib.get(a.crash_once.remote("k"), timeout=T)
    assert actorlib.get(rec.value.remote("k"), timeout=T) == 1, "not retried"
    pid2 = actorlib.get(a.pid.remote(), timeout=T)  # later calls reach the new instance
    assert pid2 != pid1


@pytest.mark.slow
def test_per_caller_order_survives_a_real_crash(prt):
    """Calls queued behind the call that crashed the process run after its retry, in order."""
    rec = Recorder.remote()
    a = Phoenix.options(max_restarts=1, max_task_retries=2).remote(rec)
    refs = [a.step.remote(i, 3) for i in range(10)]
    assert actorlib.get(refs, timeout=T) == list(range(10))
    log = actorlib.get(rec.items.remote(), timeout=T)
    inits = [x for x in log if isinstance(x, list)]
    steps = [x for x in log if not isinstance(x, list)]
    assert steps == list(range(10))
    assert len(inits) == 2 and inits[0][1] != inits[1][1]
    assert actorlib.get(rec.value.remote("attempts"), timeout=T) == 2


def test_kill_actor_ends_its_process(prt):
    a = Phoenix.remote(Recorder.remote())
    pid = actorlib.get(a.pid.remote(), timeout=T)
    assert psutil.pid_exists(pid)
    actorlib.kill(a)
    wait_until(lambda: _pid_gone(pid), what=f"killed actor process {pid} to disappear")
    with pytest.raises(exc.ActorDiedError):
        actorlib.get(a.pid.remote(), timeout=T)


@pytest.mark.slow
def test_kill_with_restart_starts_a_new_process(prt):
    rec = Recorder.remote()
    a = Phoenix.options(max_restarts=1).remote(rec)
    pid1 = actorlib.get(a.pid.remote(), timeout=T)
    actorlib.kill(a, no_restart=False)
    pid2 = actorlib.get(a.pid.remote(), timeout=T)
    assert pid2 != pid1
    wait_until(lambda: _pid_gone(pid1), what=f"killed actor process {pid1} to disappear")


@pytest.mark.slow
def test_force_cancel_kills_the_running_worker(prt):
    rec = Recorder.remote()
    ref = sleep_reporting.options(max_retries=3).remote(rec, 60)
    wait_until(lambda: actorlib.get(rec.items.remote(), timeout=T), what="task to start")
    [pid] = actorlib.get(rec.items.remote(), timeout=T)
    t0 = time.monotonic()
    actorlib.cancel(ref, force=True)
    with pytest.raises(exc.TaskCancelledError):
        actorlib.get(ref, timeout=T)
    assert time.monotonic() - t0 < 10, "force-cancel must not wait for the task"
    wait_until(lambda: _pid_gone(pid), what=f"force-cancelled worker {pid} to disappear")
    time.sleep(0.3)
    assert actorlib.get(rec.items.remote(), timeout=T) == [pid], "a cancel is not retried"
    assert actorlib.get(pid_of.remote(), timeout=T) != pid  # the pool recovered


# --------------------------------------------------------------------------- zero-copy


@pytest.mark.slow
def test_large_array_is_read_zero_copy_in_a_task(prt):
    arr = np.arange(BIG // 8, dtype=np.float64)
    expected = float(np.sum(arr))
    ref = actorlib.put(arr)
    del arr
    gc.collect()
    files = _shm_files()
    assert max(files.values(), default=0) >= BIG, f"the array lives in /dev/shm: {files}"
    probe = actorlib.get(probe_array.remote(ref), timeout=T)
    assert probe["pid"] != os.getpid()
    assert probe["sum"] == expected
    assert not probe["writeable"] and not probe["wrote"], "arguments from the store are read-only"
    assert probe["largest_mapping"] >= BIG, "the worker maps the /dev/shm file"
    assert probe["private_at_start"] < BIG * 3 // 4, f"argument was copied: {probe}"
    assert probe["access_growth"] < BIG // 4, f"reading the array copied it: {probe}"
    assert probe["copy_growth"] > BIG * 3 // 4, f"measurement sanity (a real copy): {probe}"
    # Many readers, still one copy in /dev/shm.
    sums = actorlib.get([array_sum.remote(ref) for _ in range(4)], timeout=T)
    assert sums == [expected] * 4
    assert BIG <= session.runtime().backend.store.in_use() < 2 * BIG


def test_large_array_get_in_driver_is_read_only_and_fast(prt):
    arr = np.arange(BIG // 8, dtype=np.float64)
    expected = float(np.sum(arr))
    ref = actorlib.put(arr)
    del arr
    gc.collect()
    before = _private_bytes()
    t0 = time.perf_counter()
    out = actorlib.get(ref, timeout=T)
    elapsed = time.perf_counter() - t0
    assert isinstance(out, np.ndarray) and out.nbytes == BIG
    assert not out.flags.writeable
    with pytest.raises(ValueError):
        out[0] = 1.0
    assert float(np.sum(out)) == expected
    growth = _private_bytes() - before
    assert growth < BIG // 4, f"get copied the array ({growth} bytes of private memory)"
    assert elapsed < 1.0, f"get of a {BIG} byte array took {elapsed:.3f}s"
    assert max(_shm_mappings().values(), default=0) >= BIG
    del out


def test_large_result_from_a_task_is_read_only_in_the_driver(prt):
    out = actorlib.get(make_array.remote(LARGE, 2.0), timeout=T)
    assert out.nbytes == LARGE and not out.flags.writeable
    assert float(out[0]) == 2.0 and float(out[-1]) == 2.0


# --------------------------------------------------------------------------- /dev/shm lifecycle


def test_small_objects_do_not_use_shm_files(prt):
    base = set(_shm_files())
    ref = actorlib.put(np.ones(1000))  # 8 KB, below the 64 KiB threshold
    assert actorlib.get(array_sum.remote(ref), timeout=T) == 1000.0
    assert set(_shm_files()) == base
    del ref


def _arena() -> Any:
    """The driver's object arena."""
    arena = session.runtime().backend.store.arena
    assert arena is not None
    return arena


def test_arena_extent_lives_while_a_ref_lives(prt):
    before = set(_arena().live())
    ref = actorlib.put(np.ones(LARGE // 8))
    hex_id = ref.hex()
    new = set(_arena().live()) - before
    assert new, "a large put goes into the arena"
    assert any("-arena-" in name for name in _shm_files()), "the arena is in /dev/shm"
    assert actorlib.get(array_sum.remote(ref), timeout=T) == LARGE / 8
    assert set(_arena().live()) >= new, "still alive while the ref lives"
    del ref
    wait_until(lambda: hex_id not in live_objects(), what="object to be released")
    wait_until(lambda: not (set(_arena().live()) & new), what="its extent to be freed")


def test_arena_extent_of_a_task_result_is_freed_after_last_ref(prt):
    before = set(_arena().live())
    ref = make_array.remote(LARGE)
    assert actorlib.get(array_sum.remote(ref), timeout=T) == LARGE / 8
    new = set(_arena().live()) - before
    assert new, "a large result lives in the driver's arena"
    assert session.runtime().backend.store.granted() == 0, "adopted with the result"
    hex_id = ref.hex()
    del ref
    wait_until(lambda: hex_id not in live_objects(), what="result to be released")
    wait_until(lambda: not (set(_arena().live()) & new), what="its extent to be freed")


def test_a_small_task_result_is_a_file_of_its_own(prt):
    base = set(_shm_files())
    ref = make_array.remote(256 * 1024)  # shared memory, too small to ask for an extent
    assert actorlib.get(array_sum.remote(ref), timeout=T) == 256 * 1024 / 8
    new = set(_shm_files()) - base
    assert new and not any("-arena-" in n for n in new)
    hex_id = ref.hex()
    del ref
    wait_until(lambda: hex_id not in live_objects(), what="result to be released")
    wait_until(lambda: not (set(_shm_files()) & new), what="its /dev/shm file to be removed")


@actorlib.remote
def die_while_writing(nbytes: int, marker: str, how: str) -> Any:
    """Die during the copy of a large result into its granted extent (first attempt)."""
    from actorlib.backends.process import arena

    if not os.path.exists(marker):
        Path(marker).touch()
        if how == "mid-copy":
            def half_then_die(mapped: Any, offset: int, raw: memoryview) -> None:
                mapped[offset:offset + raw.nbytes // 2] = raw[:raw.nbytes // 2]
                os.kill(os.getpid(), signal.SIGKILL)

            arena.copy_into = half_then_die
        else:  # written whole, killed before the result is sent
            real = arena.copy_into

            def copy_then_die(mapped: Any, offset: int, raw: memoryview) -> None:
                real(mapped, offset, raw)
                os.kill(os.getpid(), signal.SIGKILL)

            arena.copy_into = copy_then_die
    return np.random.default_rng(nbytes).random(nbytes // 8)


def test_malformed_arena_requests_are_refused_clearly(prt):
    backend = session.runtime().backend
    answers: list[tuple[bool, Any]] = []

    def answered(ok: bool, value: Any) -> None:
        answers.append((ok, value))

    for bad in [(), ("big",), (["big"],), ([-1],), ([1.5],), ([1], [2])]:
        backend._grant(None, bad, answered)
    for bad in [(), ("path",), ([1],)]:
        backend._return_grants(None, bad, answered)
    assert len(answers) == 9
    assert all(not ok and isinstance(err, ValueError) for ok, err in answers)
    assert "arena_extents takes a list of sizes" in str(answers[0][1])
    assert "arena_return takes a list of paths" in str(answers[-1][1])
    assert backend.store.granted() == 0
    assert actorlib.get(make_array.remote(LARGE, 3.0), timeout=T)[-1] == 3.0  # still fine


@pytest.mark.parametrize("how", ["mid-copy", "before-send"])
def test_a_worker_killed_writing_a_result_leaks_no_extent_and_corrupts_nothing(
    prt, tmp_path, how
):
    store = session.runtime().backend.store
    before = set(_arena().live())
    marker = str(tmp_path / "died-once")
    ref = die_while_writing.options(max_retries=1).remote(LARGE, marker, how)
    out = actorlib.get(ref, timeout=T)
    assert os.path.exists(marker), "the first attempt died"
    want = np.random.default_rng(LARGE).random(LARGE // 8)
    assert np.array_equal(out, want) and not out.flags.writeable  # the retry's, whole
    assert store.granted() == 0, "the dead worker's extent was given back"
    assert len(set(_arena().live()) - before) == 1, "only the retry's result is live"
    del out, ref
    with pytest.raises(exc.WorkerCrashedError):  # no retry: the error, never half a value
        actorlib.get(die_while_writing.options(max_retries=0).remote(
            LARGE, str(tmp_path / "again"), how), timeout=T)
    wait_until(lambda: store.granted() == 0, what="the extent given back")
    wait_until(lambda: set(_arena().live()) <= before, what="nothing left in the arena")


def test_no_shm_file_survives_shutdown():
    actorlib.init(backend="process", num_cpus=2)
    try:
        refs = [actorlib.put(np.ones(LARGE // 8)) for _ in range(3)]
        refs.append(make_array.remote(LARGE))
        actorlib.get(refs[-1], timeout=T)
        names = _shm_files()
        assert any("-arena-" in n for n in names), "the puts and the result are in the arena"
        assert any("-pins-" in n for n in names), "the worker pins the result it wrote"
    finally:
        actorlib.shutdown()
    assert _shm_files() == {}
    del refs


def _arena_blocks() -> int:
    """Bytes of this driver's arena segments that hold pages (what they cost in memory)."""
    prefix = f"actorlib-{os.getpid()}-"
    return sum(
        entry.stat().st_blocks * 512 for entry in os.scandir(SHM_DIR)
        if entry.name.startswith(prefix) and "-arena-" in entry.name
        and not entry.name.endswith("-index")
    )


def test_after_a_burst_the_arena_gives_its_memory_back(monkeypatch, _leak_check):
    monkeypatch.setenv("ACTORLIB_ARENA_TRIM_S", "0.5")
    actorlib.init(backend="process", num_cpus=2)
    try:
        refs = [make_array.remote(32 * MiB, float(i)) for i in range(6)]  # 192 MiB burst
        assert [float(a[-1]) for a in actorlib.get(refs, timeout=T)] == [0.0, 1, 2, 3, 4, 5]
        peak = _arena_blocks()
        assert peak >= 192 * MiB
        del refs
        # Idle for a while: all but 64 MiB (kept warm for the next burst) is given back.
        wait_until(lambda: _arena_blocks() <= 64 * MiB + 4096,
                   what="the arena's free pages to be given back", timeout=T)
        # The next burst reuses the space (populated again) with every byte right.
        arrays = [np.random.default_rng(i).random(4 * MiB) for i in range(4)]  # 32 MiB each
        refs = [actorlib.put(a) for a in arrays]
        outs = actorlib.get([make_array.remote(32 * MiB, 9.0) for _ in range(3)], timeout=T)
        assert all(float(o.sum()) == 9.0 * 4 * MiB for o in outs)
        for ref, a in zip(refs, arrays, strict=True):
            assert np.array_equal(actorlib.get(ref, timeout=T), a)
            assert actorlib.get(array_sum.remote(ref), timeout=T) == pytest.approx(float(a.sum()))
        del refs, outs
    finally:
        actorlib.shutdown()
    assert _shm_files() == {}


def test_a_bad_trim_delay_fails_init_clearly(monkeypatch, _leak_check):
    monkeypatch.setenv("ACTORLIB_ARENA_TRIM_S", "later")
    with pytest.raises(ValueError, match="ACTORLIB_ARENA_TRIM_S"):
        actorlib.init(backend="process", num_cpus=1)
    assert not actorlib.is_initialized()
    assert _shm_files() == {}


@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_task_dying_while_holding_a_large_object_leaves_no_file(how):
    actorlib.init(backend="process", num_cpus=2)
    try:
        ref = put_large_then_die.options(max_retries=0).remote(LARGE, how)
        with pytest.raises(exc.WorkerCrashedError):
            actorlib.get(ref, timeout=T)
    finally:
        actorlib.shutdown()
    assert _shm_files() == {}


def test_actor_sigkilled_while_holding_large_objects_leaves_no_file():
    actorlib.init(backend="process", num_cpus=2)
    try:
        h = Holder.remote()
        pid = actorlib.get(h.make_and_hold.remote(LARGE), timeout=T)
        given = actorlib.put(np.ones(LARGE // 8))
        assert actorlib.get(h.hold.remote([given]), timeout=T) == pid
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: _pid_gone(pid), what=f"killed actor process {pid} reaped")
        with pytest.raises(exc.ActorDiedError):
            actorlib.get(h.make_and_hold.remote(LARGE), timeout=T)
        del given
    finally:
        actorlib.shutdown()
    assert _shm_files() == {}


# --------------------------------------------------------------------------- capacity


STORE = 96 * MiB


def _spill_dirs() -> list[str]:
    tmp = tempfile.gettempdir()
    prefix = f"actorlib-{os.getpid()}-"
    return [n for n in os.listdir(tmp) if n.startswith(prefix) and n.endswith("-spill")]


def test_store_capacity_spills_least_recently_used_objects():
    chunk = 32 * MiB
    actorlib.init(backend="process", num_cpus=2, object_store_memory=STORE)
    try:
        refs = []
        for i in range(5):  # 160 MiB of objects in a 96 MiB store
            refs.append(actorlib.put(np.full(chunk // 8, float(i))))
            in_shm = sum(_shm_files().values())
            assert in_shm <= STORE + MiB, f"/dev/shm use {in_shm} exceeds the capacity {STORE}"
        assert _spill_dirs(), "objects over the capacity are spilled to disk"
        # Every object is still readable, spilled or not, in the driver and in tasks.
        for i, ref in enumerate(refs):
            arr = actorlib.get(ref, timeout=T)
            assert arr.nbytes == chunk and float(arr[0]) == i and float(arr[-1]) == i
            assert not arr.flags.writeable
            del arr
        sums = actorlib.get([array_sum.remote(r) for r in refs], timeout=T)
        assert sums == [float(i) * chunk / 8 for i in range(5)]
        assert sum(_shm_files().values()) <= STORE + MiB
        del refs
    finally:
        actorlib.shutdown()
    assert not _spill_dirs(), "the spill directory does not survive shutdown()"


@pytest.mark.init_kwargs(object_store_memory=STORE)
def test_object_larger_than_the_store_raises(prt):
    with pytest.raises(exc.ObjectStoreFullError):
        actorlib.put(np.ones((STORE + 16 * MiB) // 8))
    with pytest.raises(exc.ObjectStoreFullError):
        actorlib.get(make_array.remote(STORE + 16 * MiB), timeout=T)
    # Still usable afterwards.
    assert actorlib.get(array_sum.remote(actorlib.put(np.ones(LARGE // 8))), timeout=T) == (
        LARGE / 8
    )


# --------------------------------------------------------------------------- driver death


DRIVER_SCRIPT = """
import json, os, sys, time
import numpy as np
import actorlib

actorlib.init(backend="process", num_cpus=2)

@actorlib.remote
def pid_of():
    return os.getpid()

@actorlib.remote
def hold(arr, seconds):
    time.sleep(seconds)
    return float(arr.sum())

@actorlib.remote(num_cpus=0)
class A:
    def pid(self):
        return os.getpid()

big = actorlib.put(np.ones({nbytes} // 8))
busy = hold.remote(big, 600)          # a worker maps the array and keeps running
a = A.remote()
pids = set(actorlib.get([pid_of.remote() for _ in range(4)])) | {{actorlib.get(a.pid.remote())}}
with open({out!r} + ".tmp", "w") as f:
    json.dump({{"driver": os.getpid(), "workers": sorted(pids)}}, f)
os.rename({out!r} + ".tmp", {out!r})
print("ready", flush=True)
time.sleep(600)
"""


@pytest.mark.slow
def test_sigkilled_driver_takes_its_workers_and_shm_files_with_it(tmp_path, _leak_check):
    out = tmp_path / "pids.json"
    script = tmp_path / "driver.py"
    script.write_text(DRIVER_SCRIPT.format(nbytes=LARGE, out=str(out)))
    stderr = open(tmp_path / "stderr", "w")  # noqa: SIM115 - closed in finally
    driver = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        cwd=str(tmp_path),
    )
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + T
        while not out.exists():
            assert driver.poll() is None, (tmp_path / "stderr").read_text()
            assert time.monotonic() < deadline, "driver script never got ready"
            time.sleep(0.05)
        info = json.loads(out.read_text())
        assert info["driver"] == driver.pid
        workers = set(info["workers"])
        workers |= {p.pid for p in psutil.Process(driver.pid).children(recursive=True)}
        assert len(workers) >= 2, workers  # the busy task's worker, the actor, ...
        names = _shm_files(driver.pid)
        assert any("-arena-" in n for n in names), f"the large object is in the arena: {names}"
        assert any("-pins-" in n for n in names), f"a worker pins what it maps: {names}"
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=T)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not all(_pid_dead(p) for p in workers):
            time.sleep(0.05)
        alive = [p for p in workers if not _pid_dead(p)]
        assert not alive, f"workers outlived their SIGKILLed driver: {alive}"
        # Nobody could unlink the dead driver's files; the next start must.
        with actorlib.init(backend="process", num_cpus=1):
            pass
        left = _shm_files(driver.pid)
        assert not left, f"stale /dev/shm files of dead driver {driver.pid}: {sorted(left)}"
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        for pid in workers:  # only ever the processes this test started
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
        stderr.close()


# --------------------------------------------------------------------------- env and GPUs


def test_env_vars_apply_inside_the_worker_only(prt):
    name = f"ACTORLIB_TEST_{uuid.uuid4().hex[:8].upper()}"
    sync = Sync.remote()
    ref = read_env.options(runtime_env={"env_vars": {name: "inside"}}).remote(name, sync)
    actorlib.get(sync.wait_count.remote(1, "running"), timeout=T)
    assert name not in os.environ, "the driver's environment never changes"
    actorlib.get(sync.set.remote("done"), timeout=T)
    value, pid = actorlib.get(ref, timeout=T)
    assert value == "inside" and pid != os.getpid()
    assert name not in os.environ
    # Tasks without the env var never see it, on whichever pooled worker they land.
    plain = actorlib.get([read_env.remote(name) for _ in range(8)], timeout=T)
    assert [v for v, _ in plain] == [None] * 8
    actor = EnvActor.options(runtime_env={"env_vars": {name: "actor"}}).remote()
    assert actorlib.get(actor.read.remote(name), timeout=T)[0] == "actor"
    assert name not in os.environ


@pytest.mark.init_kwargs(num_gpus=2)
def test_cuda_visible_devices_matches_gpu_ids(prt):
    driver_cuda = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids, cuda = actorlib.get(gpu_env.options(num_gpus=1).remote(), timeout=T)
    assert len(ids) == 1 and cuda == str(ids[0])
    ids, cuda = actorlib.get(gpu_env.options(num_gpus=2).remote(), timeout=T)
    assert sorted(ids) == [0, 1] and cuda == ",".join(str(i) for i in ids)
    sync = Sync.remote()
    both = actorlib.get([gpu_env.options(num_gpus=1).remote(sync, 2) for _ in range(2)], timeout=T)
    assert sorted(i for ids, _ in both for i in ids) == [0, 1]
    for ids, cuda in both:
        assert cuda == ",".join(str(i) for i in ids)
    actor = GpuActor.options(num_gpus=1).remote()
    ids, cuda = actorlib.get(actor.ids.remote(), timeout=T)
    assert len(ids) == 1 and cuda == str(ids[0])
    assert os.environ.get("CUDA_VISIBLE_DEVICES") == driver_cuda


# --------------------------------------------------------------------------- __main__ code


MAIN_SCRIPT = """
import os
from dataclasses import dataclass

import actorlib

# Unguarded top level: a worker that re-ran this script would log itself here.
with open({marker!r}, "a") as f:
    f.write(f"{{os.getpid()}}\\n")
print("TOP LEVEL RAN", flush=True)

OFFSET = 100

@dataclass
class Point:
    x: int
    y: int

def helper(p):
    return p.x * p.y + OFFSET

@actorlib.remote
def area(p):
    return helper(p), os.getpid()

@actorlib.remote
class Acc:
    def __init__(self):
        self.total = 0
    def add(self, p):
        self.total += helper(p)
        return self.total, os.getpid()

actorlib.init(backend="process", num_cpus=2)
res = actorlib.get([area.remote(Point(i, 2)) for i in range(6)])
acc = Acc.remote()
totals = actorlib.get([acc.add.remote(Point(1, 1)) for _ in range(3)])
print("AREAS", [r[0] for r in res])
print("TOTALS", [t[0] for t in totals])
print("DRIVER", os.getpid())
print("WORKERS", sorted({{r[1] for r in res}} | {{t[1] for t in totals}}))
actorlib.shutdown()
"""


def test_main_module_functions_run_without_rerunning_the_script(tmp_path):
    marker = tmp_path / "toplevel.log"
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent(MAIN_SCRIPT.format(marker=str(marker))))
    proc = run_script(str(script), "process", timeout=60)
    out = proc.stdout
    assert out.count("TOP LEVEL RAN") == 1, out
    assert "AREAS [100, 102, 104, 106, 108, 110]" in out, out
    assert "TOTALS [101, 202, 303]" in out, out
    driver = int(re.search(r"DRIVER (\d+)", out).group(1))  # type: ignore[union-attr]
    workers = json.loads(re.search(r"WORKERS (\[.*\])", out).group(1))  # type: ignore[union-attr]
    assert workers and driver not in workers, out
    assert _attempt_pids(marker) == [driver], "the script's top level ran in a worker"


@actorlib.remote
class Keeper:
    def __init__(self, arr):
        self.n = len(arr)

    def size(self):
        return self.n


def test_unused_arguments_of_a_named_actor_lookup_are_freed(prt):
    big = np.ones(MiB)  # 8 MiB: lives in shared memory
    first = Keeper.options(name="keeper").remote(big)
    assert actorlib.get(first.size.remote(), timeout=T) == MiB
    baseline = len(_shm_files())
    for _ in range(3):
        again = Keeper.options(name="keeper", get_if_exists=True).remote(big)
        assert actorlib.get(again.size.remote(), timeout=T) == MiB
        with pytest.raises(ValueError, match="already exists"):
            Keeper.options(name="keeper").remote(big)
    assert len(_shm_files()) == baseline


# -- a task queued behind one whose worker does not answer ------------------------------


@actorlib.remote
def hold_worker(pid_file: str, seconds: float, gil: bool) -> int:
    """Run ``seconds``; with ``gil``, in one C call that keeps the GIL (no thread of the
    worker runs meanwhile, its reader included)."""
    Path(pid_file).write_text(str(os.getpid()))
    if gil:
        import ctypes

        ctypes.PyDLL(None).usleep(int(seconds * 1e6))
    else:
        time.sleep(seconds)
    return os.getpid()


@actorlib.remote
def pid_of_worker() -> int:
    return os.getpid()


def _started(path: Path) -> int:
    wait_until(lambda: path.exists() and path.read_text() != "", timeout=T,
               what=f"{path.name} to start")
    return int(path.read_text())


def _follower_of(leader_pid_file: Path) -> None:
    """Wait until a task is queued behind a running one (the core's own records)."""
    from actorlib import session

    runtime = session.runtime()

    def following() -> bool:
        records = runtime.tasks.records  # type: ignore[union-attr]
        return any(r.state.value == "following" for r in list(records.values()))

    wait_until(following, timeout=T, what="a task to be queued behind a running one")


@pytest.mark.slow
@pytest.mark.parametrize("freeze", ["sigstop", "gil"])
def test_a_task_queued_behind_an_unanswering_worker_runs_elsewhere(prt, tmp_path, freeze):
    """The first running task's worker is frozen (SIGSTOP) or holds its GIL: the task queued
    behind it is taken back when the other CPU frees, without that worker's answer."""
    first, second = tmp_path / "first", tmp_path / "second"
    stuck = hold_worker.remote(str(first), 20 if freeze == "gil" else 60, freeze == "gil")
    stuck_pid = _started(first)
    short = hold_worker.remote(str(second), 1.0, False)
    _started(second)
    queued = pid_of_worker.remote()  # both CPUs busy: it waits behind the first task
    _follower_of(first)
    if freeze == "sigstop":
        os.kill(stuck_pid, signal.SIGSTOP)
    try:
        assert actorlib.get(queued, timeout=T) != stuck_pid
        assert actorlib.wait([stuck], timeout=0)[0] == []  # it did not need the first to end
        actorlib.get(short, timeout=T)
    finally:
        if freeze == "sigstop":
            os.kill(stuck_pid, signal.SIGCONT)
    actorlib.cancel(stuck, force=True)


@pytest.mark.slow
@pytest.mark.init_kwargs(num_cpus=1)
def test_cancel_of_a_task_queued_behind_an_unanswering_worker(prt, tmp_path):
    first = tmp_path / "first"
    stuck = hold_worker.remote(str(first), 20, True)
    _started(first)
    queued = pid_of_worker.remote()  # the only CPU is busy: it waits behind the first task
    _follower_of(first)
    actorlib.cancel(queued)
    with pytest.raises(exc.TaskCancelledError):
        actorlib.get(queued, timeout=T)
    assert actorlib.wait([stuck], timeout=0)[0] == []  # cancelled while the first still ran
    actorlib.cancel(stuck, force=True)


# -- liveness: a frozen worker is found and its work retried --------------------------


@actorlib.remote
def once_frozen(pid_file: str) -> int:
    """The first attempt announces itself and waits (to be frozen); a retry returns."""
    path = Path(pid_file)
    if not path.exists():
        path.write_text(str(os.getpid()))
        time.sleep(60)
    return os.getpid()


@pytest.mark.slow
@pytest.mark.init_kwargs(worker_timeout_s=1.0)
def test_a_frozen_worker_is_killed_and_its_task_retried(prt, tmp_path):
    pid_file = tmp_path / "pid"
    ref = once_frozen.options(max_retries=1).remote(str(pid_file))
    frozen = _started(pid_file)
    os.kill(frozen, signal.SIGSTOP)
    start = time.monotonic()
    assert actorlib.get(ref, timeout=T) != frozen
    assert time.monotonic() - start < T
    wait_until(lambda: not psutil.pid_exists(frozen), timeout=T, what="the frozen worker's end")


@pytest.mark.slow
@pytest.mark.init_kwargs(worker_timeout_s=1.0)
def test_a_frozen_worker_without_retries_fails_its_task_naming_why(prt, tmp_path):
    pid_file = tmp_path / "pid"
    ref = once_frozen.options(max_retries=0).remote(str(pid_file))
    os.kill(_started(pid_file), signal.SIGSTOP)
    with pytest.raises(exc.WorkerCrashedError, match="did not answer for 1 s"):
        actorlib.get(ref, timeout=T)


@pytest.mark.slow
def test_without_a_worker_timeout_a_stopped_worker_is_left_alone(prt, tmp_path):
    """Off by default: a worker may legitimately be silent (a long C call keeping the GIL)."""
    pid_file = tmp_path / "pid"
    ref = once_frozen.options(max_retries=0).remote(str(pid_file))
    stopped = _started(pid_file)
    os.kill(stopped, signal.SIGSTOP)
    try:
        assert actorlib.wait([ref], timeout=2.0) == ([], [ref])
        assert psutil.Process(stopped).status() == psutil.STATUS_STOPPED
    finally:
        os.kill(stopped, signal.SIGCONT)
    actorlib.cancel(ref, force=True)


@pytest.mark.slow
@pytest.mark.init_kwargs(worker_timeout_s=1.0)
def test_a_frozen_worker_is_killed_while_the_drivers_loop_is_always_slow(prt, tmp_path):
    """The driver's loop is busy in every period of the watchdog (0.25 s here), so each of
    its looks comes late: a late look may be the first after a stall (the workers' news
    still unread) and skips its turn, but not two in a row, or a frozen worker would never
    be found while the load lasts (before, it never was)."""
    loop = session.runtime().backend.loop
    busy = True

    def hog() -> None:  # 0.55 s of every 0.6 s: every look comes > 2 periods late
        if busy:
            time.sleep(0.55)
            loop.call_later(0.05, hog)

    pid_file = tmp_path / "pid"
    # Retries to spare: so busy a loop may hear a healthy worker too late now and then.
    ref = once_frozen.options(max_retries=3).remote(str(pid_file))
    frozen = _started(pid_file)
    os.kill(frozen, signal.SIGSTOP)
    loop.call_soon_threadsafe(hog)
    try:
        ready, _ = actorlib.wait([ref], timeout=15)
    finally:
        busy = False
    try:
        assert ready == [ref], "the frozen worker was never killed"
        assert actorlib.get(ref, timeout=T) != frozen
    finally:
        if psutil.pid_exists(frozen):
            os.kill(frozen, signal.SIGKILL)


_STALLED_DRIVER = """
import os, sys, time
import actorlib

actorlib.init(backend="process", num_cpus=1, worker_timeout_s=1.0)

@actorlib.remote
class Pid:
    def pid(self):
        return os.getpid()

actor = Pid.remote()
before = actorlib.get(actor.pid.remote(), timeout=30)
print("ready", flush=True)
while not os.path.exists(sys.argv[1]):  # the test stops this process meanwhile
    time.sleep(0.01)
time.sleep(0.5)  # two looks of the watchdog after the stall
try:
    print("same" if actorlib.get(actor.pid.remote(), timeout=30) == before else "restarted")
except actorlib.exceptions.ActorDiedError as error:
    print("died:", error)
actorlib.shutdown()
"""


@pytest.mark.slow
def test_a_driver_that_stalled_past_the_worker_timeout_keeps_its_workers(tmp_path):
    """The driver stopped (Ctrl-Z, a paused VM, starved of CPU) for longer than
    ``worker_timeout_s``: its workers' ``Alive`` messages of that while wait unread when it
    resumes. Silence it did not listen to is no sign of a frozen worker (before, every
    worker was killed the moment it resumed)."""
    go = tmp_path / "go"
    proc = subprocess.Popen([sys.executable, "-c", _STALLED_DRIVER, str(go)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGSTOP)
        time.sleep(3)
        proc.send_signal(signal.SIGCONT)
        go.write_text("")
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert out.strip() == "same", err
    assert "did not answer" not in err


@pytest.mark.parametrize("bad", [0, -1, "1", True])
def test_worker_timeout_must_be_a_positive_number(bad, _leak_check):
    with pytest.raises(ValueError, match="worker_timeout_s"):
        actorlib.init(backend="process", worker_timeout_s=bad)


def test_a_worker_gone_before_it_is_connected_leaves_no_stale_descriptor() -> None:
    """A worker that died before the driver connected to it: writing its ``Init`` fails
    inside ``connection_made`` and the transport closes the descriptor before uvloop ties
    the socket object to it. That object must not close the number again when collected:
    by then the number was another worker's pidfd, whose exit went unseen, and
    ``shutdown()`` waited for it forever."""

    async def connect() -> tuple[socket.socket, int]:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        theirs.close()  # the worker is gone
        conn = wire.Connection(loop, lambda message: None, lambda: None)
        conn.send(("init",))  # queued until connected, as a worker's Init is
        connecting = loop.create_task(loop.create_unix_connection(lambda: conn, sock=ours))
        connecting.add_done_callback(functools.partial(settle_socket, ours))
        await asyncio.wait([connecting])
        await asyncio.sleep(0)  # the done callback
        reader, writer = os.pipe()  # takes the freed number, as a new worker's pidfd would
        os.close(writer)
        return ours, reader

    loop = new_event_loop()
    try:
        ours, reader = loop.run_until_complete(connect())
    finally:
        loop.close()
    try:
        assert ours.fileno() == -1  # the socket object no longer claims a descriptor
        del ours
        gc.collect()
        os.fstat(reader)  # still open: nobody closed it by its stale number
    finally:
        os.close(reader)


# --------------------------------------------------------------------------- nested fan-out


@actorlib.remote
def child_pid(path: str | None = None) -> int:
    """This process's id; with ``path``, the first attempt logs it and kills the worker."""
    if path is not None and _attempt(path) == 1:
        _die("sigkill")
    return os.getpid()


@actorlib.remote
def waits_for_child(path: str | None = None, env: dict[str, str] | None = None) -> list[int]:
    """(its own pid, its child's): the child is placed by the CPU this task lends."""
    options: dict[str, Any] = {"max_retries": 1}
    if env is not None:
        options["runtime_env"] = {"env_vars": env}
    child = child_pid.options(**options).remote(path)
    return [os.getpid(), actorlib.get(child, timeout=T)]


@pytest.fixture
def sharing_prt(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, _leak_check: None
) -> Iterator[Any]:
    """``prt`` with ``ACTORLIB_SHARE_BLOCKED_WORKERS=1``: a task may run in the process
    of tasks that all wait in ``get``."""
    monkeypatch.setenv("ACTORLIB_SHARE_BLOCKED_WORKERS", "1")
    yield from _process_runtime(request)


@pytest.mark.init_kwargs(num_cpus=1)
def test_by_default_a_child_never_shares_its_waiting_parents_process(prt):
    """Process isolation, as Ray keeps it: a lock or module state the parent holds
    across ``get`` is not the child's (sharing would deadlock such a program)."""
    parent, child = actorlib.get(waits_for_child.remote(), timeout=T)
    assert parent != child


def test_a_bad_share_blocked_workers_setting_is_refused_at_init(monkeypatch):
    monkeypatch.setenv("ACTORLIB_SHARE_BLOCKED_WORKERS", "yes")
    with pytest.raises(ValueError, match="ACTORLIB_SHARE_BLOCKED_WORKERS must be 0 or 1"):
        actorlib.init(backend="process", num_cpus=1)
    assert not actorlib.is_initialized()


@pytest.mark.init_kwargs(num_cpus=1)
def test_a_child_runs_in_the_process_of_its_waiting_parent(sharing_prt):
    """One CPU, lent while the parent waits: the child runs on another thread of the
    parent's worker, not in a new process (each costs ~100 ms: a nested fan-out started
    one per child); a fan-out many levels deep keeps to a few processes."""
    parent, child = actorlib.get(waits_for_child.remote(), timeout=T)
    assert parent == child
    from test_nested_fanout import tree

    from actorlib.util import state

    assert actorlib.get(tree.remote(5, 2), timeout=T) == 2**6 - 1
    workers = [w for w in state.list_workers() if w["is_alive"]]
    # 63 tasks, up to 31 of them waiting at once: a process each, before.
    assert len(workers) < 8, workers


@pytest.mark.init_kwargs(num_cpus=1)
def test_a_child_with_env_vars_does_not_share_its_parents_process(sharing_prt):
    """The environment is the process's: a child that sets env_vars gets one of its own."""
    parent, child = actorlib.get(waits_for_child.remote(None, {"ACTORLIB_NEST": "1"}),
                                 timeout=T)
    assert parent != child


@pytest.mark.slow
@pytest.mark.init_kwargs(num_cpus=1)
def test_a_worker_killed_while_a_child_runs_beside_its_waiting_parent(sharing_prt, tmp_path):
    """The child kills the process it shares with its parent: both crash, both are
    retried (each has one retry), and the parent's second attempt gets its result."""
    log = tmp_path / "child"
    parent, child = actorlib.get(
        waits_for_child.options(max_retries=1).remote(str(log)), timeout=T
    )
    killed = _attempt_pids(log)[0]
    assert killed not in (parent, child)
    wait_until(lambda: _pid_gone(killed), what="the killed worker reaped")


@actorlib.remote
def echo_pid(x: int) -> int:
    return x


@actorlib.remote(num_cpus=0)
class Pinger:
    def ping(self) -> str:
        return "pong"


def test_work_whose_message_does_not_decode_in_the_worker_fails_saying_so(
    prt: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A task and an actor's creation whose message a worker cannot decode
    (here: option strings of a class only the driver has, let through unconverted) fail
    with a ``SerializationError`` saying why, and the worker serves the next task; before,
    the worker dropped the message with a log line and get() waited forever."""
    module = types.ModuleType("_actorlib_driver_only_names")
    name_cls = type("DriverOnlyName", (str,), {"__module__": module.__name__})
    module.DriverOnlyName = name_cls  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(options, "plain_str", lambda value: value)
    text = name_cls("custom")
    undecodable = r"could not be decoded in the worker process .*_actorlib_driver_only_names"
    with pytest.raises(exc.SerializationError, match=undecodable):
        actorlib.get(echo_pid.options(name=text).remote(1), timeout=T)
    broken = Pinger.options(name=text).remote()
    with pytest.raises(exc.ActorDiedError, match=undecodable):
        actorlib.get(broken.ping.remote(), timeout=T)
    assert actorlib.get(echo_pid.remote(2), timeout=T) == 2
    del broken
