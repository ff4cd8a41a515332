"""Ctrl-C held back while a limited task goes to Ray, so its bookkeeping is never half done.

A limited task (``TaskSpec.concurrency``) counts a slot from the moment Ray may have it:
the slot comes back when the task ends, and its return ids map to Ray's refs. A
``KeyboardInterrupt`` raised between Ray's ``.remote()`` taking the task and those two
steps would leave the task running in Ray with ids nothing resolves and a slot that never
comes back; one raised inside ``.remote()`` cannot say whether Ray took the task. So,
in the main thread (the only one a signal interrupts), SIGINT's handler is swapped for
one that notes the signal while the task is handed over, and the original handler runs
right after (raising ``KeyboardInterrupt`` there, once the task is either in Ray and
tracked, or refused). Ray's workers do the same around a task's arguments
(``DeferSigint``). Other threads (the completer that submits released tasks) are never
interrupted and pay nothing.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any


class _Noted:
    """The stand-in SIGINT handler: it keeps the signal for later."""

    __slots__ = ("frame", "seen")

    def __init__(self) -> None:
        self.seen = False
        self.frame: FrameType | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.seen, self.frame = True, frame


class SigintDeferred:
    """``with SigintDeferred():`` a SIGINT in the block is raised (by the handler that
    was in place) when the block ends, even if the block raised: an interrupt is never
    lost. Nested blocks defer to the outermost; elsewhere than the main thread, or with
    no Python handler in place, nothing changes."""

    __slots__ = ("_noted", "_old")

    def __init__(self) -> None:
        self._old: Any = None
        self._noted: _Noted | None = None

    def __enter__(self) -> SigintDeferred:
        if threading.current_thread() is not threading.main_thread():
            return self
        old = signal.getsignal(signal.SIGINT)
        if not callable(old) or type(old) is _Noted:  # SIG_IGN/SIG_DFL, or nested
            return self
        self._old, self._noted = old, _Noted()
        signal.signal(signal.SIGINT, self._noted)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        noted = self._noted
        if noted is None:
            return
        self._noted = None
        signal.signal(signal.SIGINT, self._old)
        if noted.seen:  # raised here, with the block's own error (if any) as its context
            self._old(signal.SIGINT, noted.frame)
