"""A sync actor's thread reads its own calls (leader/follower), with a signal hand-off.

An actor call used to cross two threads in the actor's process: the I/O thread woke on
the socket, decoded the call and queued it, and the actor's thread woke to run it (two
wake-ups and a GIL hand-over per call). Here the actor's thread, when idle, blocks on the
socket itself and runs the call it reads.

While it runs a call nobody blocks on the socket, yet a message may come that cannot
wait for the call to end: the answer to a nested ``get`` or request the call made, a
cancel of the call queued behind it, ``Exit``. So for the length of each call the socket
raises ``SIGIO`` (``O_ASYNC``), aimed at the main thread (``F_SETOWN_EX``), which then
reads and dispatches what came. A call that receives nothing meanwhile (the common case)
costs two ``fcntl`` calls and one non-blocking read instead of two thread wake-ups.

Linux only (``F_SETOWN_EX``, and ``O_ASYNC`` on Unix sockets); elsewhere, or with
``ACTORLIB_PORTABLE=1``, the I/O thread reads as before.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import struct
import sys
import threading
from collections.abc import Callable

from actorlib.backends.process.portable import FORCED
from actorlib.backends.transport.framing import BlockingConnection

F_SETOWN_EX = 15  # <fcntl.h> on Linux; Python's fcntl module does not name it
F_OWNER_TID = 0


def supported() -> bool:
    return not FORCED and sys.platform.startswith("linux") and hasattr(signal, "SIGIO")


class ActorLead:
    """The hand-off between a sync actor's thread (reads when idle) and the main thread
    (reads, when signalled, while a call runs). Built on the main thread."""

    def __init__(self, conn: BlockingConnection) -> None:
        self.conn = conn
        self._fd = conn.fileno()
        self._flags = fcntl.fcntl(self._fd, fcntl.F_GETFL)
        # A plain lock as a binary semaphore: releasing it is all a signal handler does
        # (a Condition's lock could be held by the very frame the handler interrupts).
        self._wake = threading.Lock()
        self._wake.acquire()
        signal.signal(signal.SIGIO, self._on_signal)
        owner = struct.pack("ii", F_OWNER_TID, threading.get_native_id())
        fcntl.fcntl(self._fd, F_SETOWN_EX, owner)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.wake()

    def wake(self) -> None:
        """Wake the main thread (from a signal handler too)."""
        with contextlib.suppress(RuntimeError):  # already awake
            self._wake.release()

    def wait(self, timeout: float) -> bool:
        """On the main thread: True when woken (then read), False after ``timeout``."""
        return self._wake.acquire(timeout=timeout)

    def read_signalled(self) -> None:
        """On the main thread, once woken: dispatch what came, unless another thread is
        reading now (it dispatches it)."""
        self.conn.read(block=False)

    # -- the actor's thread --------------------------------------------------------------

    def take(self) -> bool:
        """On the I/O thread, dispatching ``StartActor``: the actor's thread reads next."""
        return self.conn.take_lead()

    def read(self, unless: Callable[[], bool]) -> bool:
        """Wait for messages and dispatch them (the actor's own calls land in its queue);
        returns at once if ``unless()``; False once the driver is gone."""
        return self.conn.read(block=True, unless=unless)

    def arm(self) -> None:
        """Before the actor's thread runs user code: what arrives now signals the main
        thread. (What came before was read by the thread, or is read before its next
        call: see ``ActorHost._run_led``.)"""
        fcntl.fcntl(self._fd, fcntl.F_SETFL, self._flags | os.O_ASYNC)

    def disarm(self) -> None:
        fcntl.fcntl(self._fd, fcntl.F_SETFL, self._flags)

    def poll(self) -> None:
        """Dispatch what has come, without waiting (unless another thread reads it)."""
        self.conn.read(block=False)

    def give_back(self) -> None:
        """The actor stopped (or never started): the I/O thread reads again."""
        self.conn.give_back_lead()
