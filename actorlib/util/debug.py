"""``log_once``: say something once per process, however often the code runs (Ray's).

Library code inside tasks and actors runs many times per worker; ``if log_once(key):``
guards a warning so a worker prints it once rather than on every call. The memory is per
process, as Ray's is: each worker process (and the driver) says it once.
"""

from __future__ import annotations

import threading
import time

__all__ = ["disable_log_once_globally", "enable_periodic_logging", "log_once", "reset_log_once"]

#: With periodic logging on, how long a key stays said (Ray's minute).
PERIOD_S = 60.0

_lock = threading.Lock()  # tasks of a threaded actor, or the thread backend, ask at once
_logged: set[str] = set()
_disabled = False
_periodic = False
_last_logged = 0.0


def log_once(key: str) -> bool:
    """True the first time this process asks about ``key``, False after.

    False always after :func:`disable_log_once_globally`; with
    :func:`enable_periodic_logging`, every key may be said again once a minute has passed
    since the last one was (Ray forgets them all at once too).
    """
    global _last_logged
    with _lock:
        if _disabled:
            return False
        now = time.monotonic()
        if _periodic and now - _last_logged > PERIOD_S:
            _logged.clear()
        if key in _logged:
            return False
        _logged.add(key)
        _last_logged = now
        return True


def disable_log_once_globally() -> None:
    """Make :func:`log_once` return False from now on, in this process."""
    global _disabled
    _disabled = True


def enable_periodic_logging() -> None:
    """Make :func:`log_once` say each key again once a minute, in this process."""
    global _periodic
    _periodic = True


def reset_log_once(key: str | None = None) -> None:
    """Forget ``key`` (every key if None), so its next :func:`log_once` is True again."""
    with _lock:
        if key is None:
            _logged.clear()
        else:
            _logged.discard(key)
