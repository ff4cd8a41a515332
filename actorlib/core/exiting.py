"""Whether the interpreter is exiting: shutdown then skips what cannot stop at once."""

from __future__ import annotations

import threading

_exiting = threading.Event()


def mark_exiting() -> None:
    """The interpreter is exiting (atexit): the next ``Backend.stop`` must not wait for
    what cannot be stopped at once, such as threads still running user code."""
    _exiting.set()


def exiting() -> bool:
    return _exiting.is_set()
