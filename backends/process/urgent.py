"""The driver's nudge that something urgent waits in a worker's socket.

A worker runs a plain task on the thread that reads its socket
(:mod:`actorlib.backends.process.inline_tasks`), so while that task runs nobody reads: a
cancel of it, or an ``Exit``, would wait for the task's end or the main thread's next
look (every 0.1 s at best). So after sending such a message to a worker that may run a
task inline, the driver sends the worker :data:`SIGNAL` (:func:`notify`). In the worker
the signal only wakes the main thread (:class:`Wakeup`, through
:func:`signal.set_wakeup_fd`, whichever thread the kernel delivers it to), which hands
reading to a spare thread at once; that thread reads the cancel, which interrupts the task
as it would on a task thread.

``SIGURG`` because its default action is to ignore it: a worker still booting (no handler
yet), or a process that took a dead worker's pid, is not killed by it. A worker's main
thread and its signal handlers are actorlib's (user code runs on other threads, where
``signal.signal`` is refused), so no user handler is replaced; a task that asks for
``SIGURG`` on a socket of its own (``F_SETOWN`` to the worker) only causes an early look.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
from types import FrameType

#: None where the platform has no such signal (Windows): no nudge, the looks remain.
SIGNAL: signal.Signals | None = getattr(signal, "SIGURG", None)
#: How often a worker's main thread looks at a task run on its reading thread while tasks
#: come (``ACTORLIB_INLINE_WATCH_S``); when none has come for a while, ten times as
#: rarely (at least every second). Not more often: under load a short task is often
#: preempted for tens of milliseconds, and each hand-over of reading costs a wake-up.
#: A cancel or an exit does not wait for a look.
WATCH_S = 0.1


def watch_period() -> float:
    """The looks' period for this driver's workers: ``ACTORLIB_INLINE_WATCH_S`` or
    :data:`WATCH_S` (read in the driver, so a bad value fails ``init``)."""
    value = os.environ.get("ACTORLIB_INLINE_WATCH_S")
    if value is None or value == "":
        return WATCH_S
    try:
        period = float(value)
    except ValueError:
        period = 0.0
    if not period > 0 or period == float("inf"):
        raise ValueError(
            f"ACTORLIB_INLINE_WATCH_S must be a positive number of seconds, got {value!r}"
        )
    return period


def notify(pid: int) -> None:
    """Nudge worker ``pid`` (in the driver, after sending it something urgent)."""
    if SIGNAL is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, SIGNAL)


def _ignore(_signum: int, _frame: FrameType | None) -> None:
    """The Python-level handler has nothing to do: the wake-up byte is the message."""


class Wakeup:
    """What a worker's main thread waits on between its looks: a pipe woken by
    :data:`SIGNAL` (and any other signal with a Python handler) or by :meth:`poke`.

    Made on the main thread (``signal.signal`` and ``set_wakeup_fd`` must be), once per
    worker process: both are the process's. ``signals=False`` (a ``Worker`` made inside
    another process, as tests do): :meth:`poke` alone wakes it.
    """

    def __init__(self, signals: bool = True) -> None:
        self._event = threading.Event()  # without the signal (Windows): poke alone
        self._signals = signals and SIGNAL is not None
        if not self._signals:
            return
        assert SIGNAL is not None
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        signal.signal(SIGNAL, _ignore)
        signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)

    def poke(self) -> None:
        """Wake the waiting thread (from any thread)."""
        if not self._signals:
            self._event.set()
            return
        with contextlib.suppress(OSError):
            os.write(self._write, b"\0")

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s; True if :data:`SIGNAL` came meanwhile."""
        if not self._signals:
            self._event.wait(timeout)
            self._event.clear()
            return False
        ready, _, _ = select.select([self._read], [], [], timeout)
        if not ready:
            return False
        try:
            got = os.read(self._read, 512)
        except BlockingIOError:
            return False
        return SIGNAL is not None and bytes([SIGNAL]) in got
