"""Blocking waits that Ctrl-C still interrupts at once on the main thread.

The kernel may hand a process-directed signal (Ctrl-C, SIGTERM) to any thread of the
process. Python runs the handler on the main thread, but only when that thread next runs
bytecode: asleep in ``lock.acquire()`` or ``Event.wait()`` without a timeout, it would not
see Ctrl-C until the wait ended by itself, which may be never. So on the main thread these
waits sleep at most :data:`SIGNAL_LOOK_S` at a time (ten wake-ups a second: nothing
measurable); on any other thread they wait in one call, as before.

Light on purpose (no asyncio): a process worker's client waits here too
(``RemoteCoreClient``), and a worker imports only what a plain task needs
(``concurrent.futures``, for :class:`InterruptibleFuture`, it has already).
"""

from __future__ import annotations

import _thread
import collections
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import _base as futures_base
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


def join(thread: threading.Thread, timeout: float | None = None) -> bool:
    """``thread.join(timeout)`` that lets signals in on the main thread; whether the
    thread has ended."""

    def ended(seconds: float | None) -> bool:
        thread.join(seconds)
        return not thread.is_alive()

    if _thread.get_ident() != _MAIN_THREAD:
        return ended(timeout)
    return _looking(ended, timeout)


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


#: A future's states once done.
DONE_STATES = frozenset({futures_base.CANCELLED, futures_base.CANCELLED_AND_NOTIFIED,
                   futures_base.FINISHED})


class _FutureCondition(threading.Condition):
    """A future's condition: ``threading.Condition``'s code, its lock's methods reached
    through the class instead of five bound methods stored on each instance.

    An executor keeps a future per call in flight (10,000 for a ``map`` of 10,000 items);
    each stdlib condition is seven objects the cyclic collector tracks, and its full
    collections, set off by that many survivors, walked them all. ``wait``, ``notify``,
    ``notify_all`` and ``with`` are the stdlib's own; ``concurrent.futures.wait`` and
    ``as_completed`` use ``acquire``/``release`` as with any future.
    """

    def __init__(self) -> None:  # not Condition's: no bound methods on the instance
        self._lock = threading.RLock()
        self._waiters: collections.deque[Any] = collections.deque()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()

    def _release_save(self) -> Any:
        return self._lock._release_save()  # type: ignore[attr-defined]

    def _acquire_restore(self, state: Any) -> None:
        self._lock._acquire_restore(state)  # type: ignore[attr-defined]

    def _is_owned(self) -> bool:
        return self._lock._is_owned()  # type: ignore[attr-defined]


class InterruptibleFuture(Future):
    """A ``concurrent.futures.Future`` whose ``result``/``exception`` let Ctrl-C in on
    the main thread: ``ObjectRef.future()``'s, and the Executor's and Pool's.

    The stdlib's wait on the future's condition with no time limit: a main thread asleep
    there would miss a Ctrl-C the kernel handed to another thread until the value came.
    Here the main thread waits for the future to be done in slices, then leaves the rest
    to the stdlib's code, so that results, errors, ``CancelledError`` and
    ``TimeoutError`` are exactly the stdlib's; the condition and waiters are untouched
    (``concurrent.futures.wait``/``as_completed`` work as with any future). Other
    threads wait in one call, as before.
    """

    def __init__(self) -> None:
        # ``Future.__init__``'s attributes (a test checks they are all here), with the
        # lighter condition
        self._condition = _FutureCondition()
        self._state = futures_base.PENDING
        self._result = None
        self._exception = None
        self._waiters: list[Any] = []
        self._done_callbacks: list[Any] = []

    def result(self, timeout: float | None = None) -> Any:
        try:
            return super().result(self._waited(timeout))
        finally:
            del self  # the error's traceback holds this frame: no cycle through the future

    def exception(self, timeout: float | None = None) -> BaseException | None:
        try:
            return super().exception(self._waited(timeout))
        finally:
            del self

    def _waited(self, timeout: float | None) -> float | None:
        """Wait (on the main thread, in slices) until done or ``timeout`` has passed; the
        timeout left for the stdlib's own wait (0 after a wait here: none)."""
        if self._state in DONE_STATES or not on_main_thread():  # read unlocked: it only
            return timeout  # chooses the path, the stdlib's code decides the outcome
        with self._condition:
            wait_for(self._condition, self.done, timeout)
        return 0
