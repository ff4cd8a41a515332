"""A process worker runs a plain task on the thread that reads its socket; a cancel of
such a task must not wait for the worker's main thread to look (every 0.1 s at best).
The driver signals the worker after sending the cancel, and the signal passes reading on
at once (:mod:`actorlib.backends.process.urgent`). Here the looks are an hour apart, so
only the signal can deliver the cancel while the task runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from testkit import T, wait_until

import actorlib
from actorlib import exceptions as exc


@actorlib.remote
def spin(started: str, interrupted: str, seconds: float) -> str:
    """Spin in pure Python for ``seconds``, noting where it runs and whether a
    KeyboardInterrupt (the cancel) ended it."""
    Path(started).write_text(threading.current_thread().name)
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            pass
    except KeyboardInterrupt:
        Path(interrupted).write_text("yes")
        raise
    return "ran to its end"


def test_a_cancel_reaches_a_task_on_the_reading_thread_without_a_look(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, _leak_check: None
) -> None:
    monkeypatch.setenv("ACTORLIB_INLINE_WATCH_S", "3600")
    actorlib.init(backend="process", num_cpus=1)
    try:
        started, interrupted = tmp_path / "started", tmp_path / "interrupted"
        ref = spin.remote(str(started), str(interrupted), T)
        wait_until(lambda: started.exists() and started.read_text() != "",
                   what="the task to start", timeout=T)
        # A task of an idle worker runs on the thread that reads the worker's socket.
        assert started.read_text() == "actorlib-io"
        actorlib.cancel(ref)
        with pytest.raises(exc.TaskCancelledError):
            actorlib.get(ref, timeout=2 * T)
        assert interrupted.exists(), "the task was not interrupted: it ran to its end"
        # The worker reads on, and runs the next task.
        assert actorlib.get(spin.remote(str(tmp_path / "s2"), str(tmp_path / "i2"), 0.0),
                            timeout=T) == "ran to its end"
    finally:
        actorlib.shutdown()


@pytest.fixture
def prt_fresh(_leak_check: None) -> Iterator[None]:
    """A process-backend runtime of one CPU of its own."""
    actorlib.init(backend="process", num_cpus=1)
    try:
        yield
    finally:
        actorlib.shutdown()


@pytest.mark.parametrize("value", ["soon", "0", "-1", "inf", "nan"])
def test_a_bad_look_period_fails_init_clearly(
    monkeypatch: pytest.MonkeyPatch, value: str, _leak_check: None
) -> None:
    monkeypatch.setenv("ACTORLIB_INLINE_WATCH_S", value)
    with pytest.raises(ValueError, match="ACTORLIB_INLINE_WATCH_S"):
        actorlib.init(backend="process", num_cpus=1)
    assert not actorlib.is_initialized()


class _SlowToGo:
    """Its finalizer blocks a while (as a ref's drop may, sending to the driver): a
    cancel's interrupt most likely lands inside it, where Python swallows exceptions."""

    def __del__(self) -> None:
        time.sleep(0.02)


@actorlib.remote
def make_garbage(started: str, interrupted: str, seconds: float) -> str:
    Path(started).write_text("started")
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            _SlowToGo()
    except KeyboardInterrupt:
        Path(interrupted).write_text("yes")
        raise
    return "ran to its end"


@actorlib.remote
def make_garbage_under_a_lock(started: str, interrupted: str, seconds: float) -> str:
    lock = threading.Lock()
    Path(started).write_text("started")
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            with lock:
                _SlowToGo()
    except KeyboardInterrupt:
        Path(interrupted).write_text("held" if lock.locked() else "released")
        raise
    return "ran to its end"


def test_a_cancel_raised_again_after_a_finalizer_leaves_locks_released(
    prt_fresh: None, tmp_path: Path
) -> None:
    """The interrupt raised again must not skip the ``__exit__`` of the ``with`` block
    the finalizer ran in (raised as that call began, the lock stayed held for good)."""
    started, interrupted = tmp_path / "started", tmp_path / "interrupted"
    ref = make_garbage_under_a_lock.remote(str(started), str(interrupted), T)
    wait_until(started.exists, what="the task to start", timeout=T)
    time.sleep(0.2)
    actorlib.cancel(ref)
    with pytest.raises(exc.TaskCancelledError):
        actorlib.get(ref, timeout=2 * T)
    assert interrupted.read_text() == "released"


def test_a_cancel_landing_in_a_finalizer_still_ends_the_task(
    prt_fresh: None, tmp_path: Path
) -> None:
    started, interrupted = tmp_path / "started", tmp_path / "interrupted"
    ref = make_garbage.remote(str(started), str(interrupted), T)
    wait_until(started.exists, what="the task to start", timeout=T)
    time.sleep(0.2)  # well inside its loop: nearly all of its time is in finalizers
    actorlib.cancel(ref)
    with pytest.raises(exc.TaskCancelledError):
        actorlib.get(ref, timeout=2 * T)
    assert interrupted.exists(), "the interrupt was swallowed: the task ran to its end"
