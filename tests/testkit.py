"""Coordination helpers that work on every backend (threads, processes, machines).

Tests never share Python objects between the driver and tasks: they synchronise through
these actors, refs and return values, so the same test is valid when tasks run elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

import actorlib


@actorlib.remote
class Gate:
    """Holds callers (``wait``) until opened (``open``): a task or call that stays running
    for as long as a test needs it to."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    async def wait(self) -> str:
        await self.event.wait()
        return "opened"

    async def open(self) -> None:
        self.event.set()


@actorlib.remote
def held(gate: Any) -> Any:
    """A task running until ``gate`` opens."""
    return actorlib.get(gate.wait.remote())


@actorlib.remote(num_cpus=0)
class Sync:
    """Async actor: named events, counters and barriers (the "signal actor" pattern)."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._flags: set[str] = set()
        self._cond: asyncio.Condition | None = None

    def _c(self) -> asyncio.Condition:
        if self._cond is None:
            self._cond = asyncio.Condition()
        return self._cond

    async def set(self, key: str = "go") -> None:
        async with self._c():
            self._flags.add(key)
            self._c().notify_all()

    async def is_set(self, key: str = "go") -> bool:
        return key in self._flags

    async def wait(self, key: str = "go") -> None:
        async with self._c():
            await self._c().wait_for(lambda: key in self._flags)

    async def arrive(self, key: str = "n") -> int:
        async with self._c():
            self._counts[key] = self._counts.get(key, 0) + 1
            self._c().notify_all()
            return self._counts[key]

    async def count(self, key: str = "n") -> int:
        return self._counts.get(key, 0)

    async def wait_count(self, n: int, key: str = "n") -> int:
        async with self._c():
            await self._c().wait_for(lambda: self._counts.get(key, 0) >= n)
            return self._counts[key]

    async def barrier(self, n: int, key: str = "barrier") -> int:
        """Arrive, then return once ``n`` callers arrived (deadlocks if they cannot overlap)."""
        async with self._c():
            self._counts[key] = self._counts.get(key, 0) + 1
            self._c().notify_all()
            await self._c().wait_for(lambda: self._counts.get(key, 0) >= n)
            return self._counts[key]


@actorlib.remote
def gated(sync: Any, key: str, value: Any) -> Any:
    """A task that returns ``value`` once ``sync``'s event ``key`` is set."""
    actorlib.get(sync.wait.remote(key), timeout=T)
    return value


@actorlib.remote(num_cpus=0)
class Recorder:
    """Sync actor: an append-only log and per-key counters, readable from the driver."""

    def __init__(self) -> None:
        self.log: list[Any] = []
        self.counts: dict[str, int] = {}

    def append(self, item: Any) -> int:
        self.log.append(item)
        return len(self.log)

    def items(self) -> list[Any]:
        return list(self.log)

    def incr(self, key: str = "n") -> int:
        self.counts[key] = self.counts.get(key, 0) + 1
        return self.counts[key]

    def value(self, key: str = "n") -> int:
        return self.counts.get(key, 0)


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Poll until ``predicate()`` is truthy; return that value (a row, a pid, ...)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def wait_until(pred: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    """Poll an eventually-true condition after a collection each time (reference
    counting, resource release). The timeout is generous: a worker started at load 15-40
    takes seconds, and only a failing test ever waits it out."""
    wait_for(lambda: gc.collect() >= 0 and pred(), what, timeout)


def _waits_in(thread: int, function: str, filename: str) -> bool:
    frame = sys._current_frames().get(thread)
    while frame is not None:
        code = frame.f_code
        if code.co_name == function and code.co_filename.endswith(filename):
            return True
        frame = frame.f_back
    return False


@contextlib.contextmanager
def ctrl_c_elsewhere(function: str, filename: str, end_wait: Callable[[], None],
                     ) -> Iterator[None]:
    """The block, run on the main thread, must wait in ``function`` (of a file whose
    name ends with ``filename``) until Ctrl-C ends it with ``KeyboardInterrupt``.

    The kernel may hand Ctrl-C to any thread of the process: here it goes to a thread of
    the test's own (it could be one of the runtime's). Python runs the handler on the
    main thread, so a main thread asleep in the wait must still wake for it, not only
    once the wait is over: ``end_wait()`` ends it after T/3 in any case (a wait that
    missed the signal then raises late, and the test fails)."""
    assert threading.current_thread() is threading.main_thread()
    main = threading.get_ident()
    seen = threading.Event()
    first: list[bool] = []
    reached: list[bool] = []

    def interrupt() -> None:
        # If it never waits there (it waits elsewhere), Ctrl-C comes anyway, after T/6,
        # so a miss fails the test (below) rather than hang it.
        deadline = time.monotonic() + T / 6
        while (not _waits_in(main, function, filename) and time.monotonic() < deadline
               and not over.is_set()):
            time.sleep(0.01)
        reached.append(_waits_in(main, function, filename))
        time.sleep(0.1)  # on to its lock
        if not over.is_set():
            signal.pthread_kill(threading.get_ident(), signal.SIGINT)
        first.append(seen.wait(T / 3))  # well before the wait ends by itself
        end_wait()

    over = threading.Event()  # the block ended, however: no Ctrl-C is to be sent now
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    elsewhere = threading.Thread(target=interrupt, name="ctrl-c-elsewhere")
    elsewhere.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            yield
        seen.set()
    finally:
        over.set()
        # A Ctrl-C sent as the block ended some other way (it raised something else)
        # must not reach pytest: a KeyboardInterrupt there ends the whole run (under
        # pytest -n, its worker), not this test.
        signal.signal(signal.SIGINT, lambda signum, frame: None)
        seen.set()
        elsewhere.join()
        signal.signal(signal.SIGINT, old)
    assert reached == [True], f"the block never waited in {function}() of {filename}"
    assert first == [True], f"the wait in {function}() woke only when it was over"


def live_objects() -> set[str]:
    """Hex ids of objects the core still holds, after a collection."""
    from actorlib import _testing

    gc.collect()
    return set(_testing.live_object_ids())


def live_actors() -> set[str]:
    from actorlib import _testing

    gc.collect()
    return set(_testing.live_actor_ids())


def kill_all(actors: Iterable[Any]) -> None:
    """End a fixture's actors as it tears down: pytest keeps a fixture's value (and so
    the handles) past the leak check, which would find them still alive."""
    for actor in actors:
        actorlib.kill(actor)


def copy_of_actorlib(where: Path) -> Path:
    """A copy of the installed package in ``where`` (as a checkout or another install
    beside this one would be): ``where/actorlib``, without bytecode caches."""
    import shutil

    package = where / "actorlib"
    shutil.copytree(Path(actorlib.__file__).parent, package,
                    ignore=shutil.ignore_patterns("__pycache__"))
    return package


# Upper bound for any single wait in a test: a hang becomes a clear failure, not a timeout.
T = 30.0


def leftover_processes(token: str) -> list[psutil.Process]:
    """Processes that inherited the run's marker env var (children of the script)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("ACTORLIB_TEST_RUN_TOKEN") == token:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def run_script(path: str, backend: str, timeout: float = 120,
               args: list[str] | None = None) -> subprocess.CompletedProcess:
    """Run a script (with ``args``) with the venv interpreter; assert success and no
    leftover processes."""
    token = uuid.uuid4().hex
    env = dict(os.environ, ACTORLIB_BACKEND=backend, ACTORLIB_TEST_RUN_TOKEN=token)
    env.pop("PYTEST_CURRENT_TEST", None)
    proc = subprocess.run(
        [sys.executable, path, *(args or [])],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=os.path.dirname(os.path.abspath(path)),
    )
    detail = (
        f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-5000:]}"
    )
    assert proc.returncode == 0, detail
    assert "Traceback" not in proc.stderr, detail
    assert "resource_tracker" not in proc.stderr, detail
    assert_no_leftovers(token, grace=5)
    return proc


def assert_no_leftovers(token: str, grace: float) -> None:
    """No process of the run marked ``token`` is left after ``grace`` seconds (any left
    are killed, so they cannot disturb the next test)."""
    deadline = time.monotonic() + grace
    left = leftover_processes(token)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = leftover_processes(token)
    for p in left:
        p.kill()
    assert not left, f"processes left behind: {[p.pid for p in left]}"
