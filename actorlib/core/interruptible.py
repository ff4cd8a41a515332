"""Blocking waits that Ctrl-C still interrupts at once on the main thread.

The kernel may hand a process-directed signal (Ctrl-C, SIGTERM) to any thread of the
process. Python runs the handler on the main thread, but only when that thread next runs
bytecode: asleep in ``lock.acquire()`` or ``Event.wait()`` without a timeout, it would not
see Ctrl-C until the wait ended by itself, which may be never. So on the main thread these
waits sleep at most :data:`SIGNAL_LOOK_S` at a time (ten wake-ups a second: nothing
measurable); on any other thread they wait in one call, as before.

Light on purpose (no asyncio): a process worker's client waits here too
(``RemoteCoreClient``), and a worker imports only what a plain task needs.
"""

from __future__ import annotations

import _thread
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

#: How long the main thread sleeps at most in a blocking wait before it looks for a
#: signal.
SIGNAL_LOOK_S = 0.1
_MAIN_THREAD = threading.main_thread().ident


def on_main_thread() -> bool:
    """Whether the calling thread is the one that runs signal handlers."""
    return _thread.get_ident() == _MAIN_THREAD


def acquire(lock: Any, timeout: float | None = None) -> bool:
    """``lock.acquire(timeout=...)`` (None: no limit) that lets signals in on the main
    thread."""
    if _thread.get_ident() != _MAIN_THREAD:
        return bool(lock.acquire(timeout=-1 if timeout is None else timeout))
    return _looking(lambda seconds: lock.acquire(True, seconds), timeout)


def wait(event: threading.Event, timeout: float | None = None) -> bool:
    """``event.wait(timeout)`` that lets signals in on the main thread."""
    if _thread.get_ident() != _MAIN_THREAD:
        return event.wait(timeout)
    return _looking(event.wait, timeout)


def wait_for(condition: threading.Condition, predicate: Callable[[], Any],
             timeout: float | None = None) -> Any:
    """``condition.wait_for(predicate, timeout)`` (``condition`` held) that lets signals
    in on the main thread."""
    if _thread.get_ident() != _MAIN_THREAD:
        return condition.wait_for(predicate, timeout)
    _looking(lambda seconds: condition.wait_for(predicate, seconds), timeout)
    return predicate()


def get(source: queue.SimpleQueue[T], timeout: float | None = None) -> T:
    """``source.get(timeout=timeout)`` (``queue.Empty`` when it passes) that lets signals
    in on the main thread."""
    if _thread.get_ident() != _MAIN_THREAD or (timeout is not None and timeout < 0):
        return source.get(timeout=timeout)  # a negative timeout: its ValueError
    got: list[T] = []

    def take(seconds: float) -> bool:
        try:
            got.append(source.get(timeout=seconds) if seconds > 0 else source.get(False))
        except queue.Empty:
            return False
        return True

    if not _looking(take, timeout):
        raise queue.Empty
    return got[0]


def _looking(wait_s: Callable[[float], bool], timeout: float | None) -> bool:
    """Call ``wait_s(seconds)`` (True: the wait is over) at most ``SIGNAL_LOOK_S`` at a
    time, until it is over or ``timeout`` has passed: between calls, Python runs the
    handlers of the signals that came meanwhile (raising ``KeyboardInterrupt``, say)."""
    if timeout is None:
        while not wait_s(SIGNAL_LOOK_S):
            pass
        return True
    deadline = time.monotonic() + timeout
    while True:
        look = min(SIGNAL_LOOK_S, deadline - time.monotonic())
        if look <= 0:
            return bool(wait_s(0))
        if wait_s(look):
            return True
