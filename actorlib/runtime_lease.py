"""The runtime an :class:`~actorlib.Executor` (or a :class:`~actorlib.Pool`) runs on.

An executor created while actorlib is not initialized starts a runtime and shuts it down
when it is done with it. Executors created meanwhile share that runtime, counted: it is
shut down when the last of them releases it, and not at all if someone else shut it down
and started another meanwhile. An executor created while a runtime started by other means
is running uses it and never shuts it down.
"""

from __future__ import annotations

import threading
from typing import Any

from actorlib.api import nodes
from actorlib.session import init, is_initialized, shutdown

_lease_lock = threading.Lock()
_lease: list[Any] | None = None  # [node id, number of executors using it]


def _current_node() -> str | None:
    if not is_initialized():
        return None
    try:
        return str(nodes()[0]["NodeID"])
    except Exception:
        return None


def acquire_runtime(
    backend: str | None, num_cpus: int | None, init_kwargs: dict[str, Any]
) -> bool:
    """Join or start a runtime. True if the caller must ``release_runtime()`` when done."""
    global _lease
    with _lease_lock:
        if is_initialized():
            node = _current_node()
            if _lease is not None and node is not None and _lease[0] == node:
                _lease[1] += 1  # a runtime another Executor started: shared, counted
                return True
            return False
        kwargs = {"num_cpus": num_cpus, **init_kwargs}
        init(backend, **kwargs)
        _lease = [_current_node(), 1]
        return True


def release_runtime() -> None:
    """One user fewer; the last shuts the runtime down (if it is still the one started)."""
    global _lease
    with _lease_lock:
        if _lease is None:
            return
        _lease[1] -= 1
        if _lease[1] > 0:
            return
        node = _lease[0]
        _lease = None
        if node is not None and _current_node() == node:
            shutdown()
