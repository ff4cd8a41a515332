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
import importlib
import queue
import signal
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


#: The signals that end a script (``init`` makes SIGTERM and SIGHUP unwind it as Ctrl-C
#: does), kept off actorlib's own threads by :func:`shield_signals`.
TERMINATING_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)
#: ``signal.pthread_sigmask`` without its Python wrapper, which turns the old mask it
#: returns (unused here) into a set of ``Signals`` enums: ~80 bytecodes a call, and an
#: idle task thread calls it twice per wait (:func:`idle_get`). None where absent.
#: (``_signal`` has no type stubs: imported by name.)
_sigmask: Callable[[int, Any], Any] | None = getattr(
    importlib.import_module("_signal"), "pthread_sigmask", None
)
_BLOCK, _UNBLOCK = signal.SIG_BLOCK, signal.SIG_UNBLOCK


def shield_signals() -> None:
    """Keep the terminating signals off the calling thread (one of actorlib's own).

    The kernel hands a process-directed signal to any thread that does not block it; a
    signal sent to a stopped process (Ctrl-Z, then ``kill``) is taken after ``SIGCONT``
    by whichever thread runs first. Python runs the handler on the main thread, but only
    when it next runs bytecode: taken by one of our threads while the main thread sleeps
    in ``time.sleep`` or a blocking read, the signal would not end the script until that
    call returned, perhaps never. With every actorlib thread blocking them, only the
    main thread (and the user's own threads) can take them, and the main thread's sleep
    is interrupted at once. Threads started from a shielded thread inherit the mask, and
    so would a child process it starts: :func:`unshield_signals` undoes it wherever user
    code runs or a process starts.
    """
    if _sigmask is not None:
        _sigmask(_BLOCK, TERMINATING_SIGNALS)


def unshield_signals() -> None:
    """Let the terminating signals reach the calling thread again (user code runs here,
    or this is a new process that inherited a shielded thread's mask)."""
    if _sigmask is not None:
        _sigmask(_UNBLOCK, TERMINATING_SIGNALS)


#: How often a :class:`SignalRelay` looks at the clock, and how much longer than that
#: a look must have taken to mean that the process was stopped meanwhile.
RELAY_LOOK_S = 0.25
RELAY_STOPPED_S = 0.25


class SignalRelay:
    """Wakes the main thread when the process is continued after a stop.

    A signal sent to a stopped process (Ctrl-Z, then ``kill %1``) is taken after
    ``SIGCONT`` by whichever thread runs first. actorlib's own threads block the
    terminating ones (:func:`shield_signals`), but a library's need not (OpenBLAS starts
    its threads as numpy is imported). Python's C-level handler, on that thread, only
    notes the signal; the Python handler waits for the main thread's next bytecode, and
    asleep in ``time.sleep`` or a blocking read, the main thread may never get there.

    So this thread looks at the clock every :data:`RELAY_LOOK_S`; a look that came much
    later than due means the process was stopped, and the main thread is then sent
    ``SIGURG`` a few times over the next moment (the signal may be taken a little after
    we run), whose handler does nothing: the interrupted call returns to Python, which
    runs the noted handlers and resumes the call. The wakeup fd is left alone (trio
    insists on having it). Made on the main thread, only where ``SIGURG`` has no
    handler; :meth:`stop` gives it back.
    """

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        wake = getattr(signal, "SIGURG", None)
        if (wake is None or not hasattr(signal, "pthread_kill") or not on_main_thread()
                or signal.getsignal(wake) not in (signal.SIG_DFL, _nothing_to_do)):
            return
        signal.signal(wake, _nothing_to_do)
        self._wake = wake
        self._thread = threading.Thread(target=self._watch, name="actorlib-signals",
                                        daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        shield_signals()
        main = threading.main_thread().ident
        assert main is not None  # made on the main thread, which runs
        stopping = self._stopping
        due = time.monotonic() + RELAY_LOOK_S
        while not stopping.wait(RELAY_LOOK_S):
            now = time.monotonic()
            if now - due > RELAY_STOPPED_S:  # stopped meanwhile: now continued
                for pause in (0.0, 0.05, 0.2):
                    if stopping.wait(pause):
                        return
                    try:
                        signal.pthread_kill(main, self._wake)
                    except (ProcessLookupError, OSError):
                        return  # the main thread has ended: the process is exiting
                now = time.monotonic()
            due = now + RELAY_LOOK_S

    def stop(self) -> None:
        """End the thread; idempotent. ``SIGURG`` is given back on the main thread only
        (elsewhere its handler, which does nothing, stays until a relay is made again)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()
        thread.join()
        if on_main_thread() and signal.getsignal(self._wake) is _nothing_to_do:
            signal.signal(self._wake, signal.SIG_DFL)


def _nothing_to_do(_signum: int, _frame: object) -> None:
    """``SIGURG``'s handler while a :class:`SignalRelay` runs: the signal's only purpose
    is to interrupt the main thread's blocking call."""


def idle_get(source: queue.SimpleQueue[T]) -> T:
    """``source.get()`` on a thread that runs user code between waits (a task's, an
    actor's, the one that runs futures' callbacks): shielded (see :func:`shield_signals`)
    while it waits for work, not while the work runs, since a process the user code
    starts inherits the thread's mask. No system call when work is already queued."""
    try:
        return source.get_nowait()
    except queue.Empty:
        pass
    shield_signals()
    try:
        return source.get()
    finally:
        unshield_signals()


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


# (typeshed marks ``RLock`` final; CPython's C ``RLock`` is a base type)
class FutureCondition(_thread.RLock, threading.Condition):  # type: ignore[misc]
    """A future's condition that is its own lock: a ``threading.Condition`` whose ``wait``,
    ``wait_for``, ``notify`` and ``notify_all`` (the stdlib's) find the ``RLock``'s own C
    ``_release_save``, ``_acquire_restore`` and ``_is_owned`` first, and whose ``with``
    enters the ``RLock`` in C.

    An executor keeps a future per call in flight (10,000 for a ``map`` of 10,000 items):
    a stdlib condition is seven objects the cyclic collector tracks (their full
    collections, set off by that many survivors, walked them all), and each ``with
    future._condition`` (``set_result``, ``result``, ``as_completed``'s look at each
    future...) ran ``Condition.__enter__`` and ``__exit__``, two Python frames. This is
    one object, entered with none. ``concurrent.futures.wait`` and ``as_completed`` use
    ``acquire``/``release`` as with any future.
    """

    __slots__ = ("_waiters",)

    def __init__(self) -> None:  # not Condition's: the lock is the object itself
        self._waiters: collections.deque[Any] = collections.deque()


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
        self._condition = FutureCondition()
        self._state = futures_base.PENDING
        self._result = None
        self._exception = None
        self._waiters: list[Any] = []
        self._done_callbacks: list[Any] = []

    def result(self, timeout: float | None = None) -> Any:
        # A result in hand, as the stdlib's code would return it, with none of its frames
        # or its lock (``as_completed`` reads each future so): set under the lock before
        # the state, so a FINISHED future's result is in.
        if self._state == futures_base.FINISHED and self._exception is None:
            return self._result
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
