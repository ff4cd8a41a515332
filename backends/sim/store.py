"""The simulated nodes' object stores: where a large value lives, so that it can be lost.

Values small enough to travel inline live in the owner's object table and are never lost,
as on every backend. A value with out-of-band buffers (64 KiB and up) is kept in the store
of the node that made it: its buffers stay on the heap, as in the thread backend, and each
gets a location ``sim://<node>/<n>`` naming that node. The core then treats it as it treats
a value in a node's shared memory: it remembers the task that made it (lineage), prefers
that node for tasks reading it, and, when the simulator loses it (an ``object loss`` fault,
or the loss of its node), re-runs that task or fails the object with ``ObjectLostError``.
Separate because the store is the simulator's model of where bytes live, apart from where
code runs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from actorlib.backends.base import HeapStore
from actorlib.core.execution_context import ExecutionContext, current_execution
from actorlib.core.serialization import Serialized

__all__ = ["PREFIX", "SimStore", "node_of"]

PREFIX = "sim://"


class SimStore(HeapStore):
    """A heap store that places each sealed value on the node of the code that made it."""

    def __init__(self, head: str, label_of: Callable[[ExecutionContext | None], str]) -> None:
        self._head = head
        self._label_of = label_of  # the work sealing (None: the driver) -> its name
        self._lock = threading.Lock()  # sealed on a worker or the driver, freed on the core
        self._count = 0
        #: First location of each live stored value -> (every path of it, its name).
        self.live: dict[str, tuple[list[str], str]] = {}

    def seal(self, obj: Serialized) -> Serialized:
        if not obj.buffers:  # inline (the common case): nothing to keep
            return obj
        obj = super().seal(obj)
        ctx = current_execution.get()
        node = ctx.node_id if ctx is not None and ctx.node_id else self._head
        who = self._label_of(ctx)
        with self._lock:
            self._count += 1
            n = self._count
            paths = [f"{PREFIX}{node}/{n}.{i}" for i in range(len(obj.buffers))]
            self.live[paths[0]] = (paths, f"object {n} (stored by {who} on {node})")
        obj.locations = [
            (path, memoryview(buf).nbytes) for path, buf in zip(paths, obj.buffers, strict=True)
        ]
        return obj

    def free(self, obj: Serialized) -> None:
        if obj.locations:
            first = obj.locations[0]
            if first is not None:
                with self._lock:
                    self.live.pop(first[0], None)

    def lose(self, paths: set[str]) -> Callable[[Serialized], bool]:
        """Forget the values at ``paths``; the predicate that tells the core which they are."""
        with self._lock:
            for path in paths:
                self.live.pop(path, None)
        return lambda value: any(
            loc is not None and loc[0] in paths for loc in value.locations or ()
        )

    def stored(self) -> list[tuple[str, list[str], str]]:
        """The live stored values, oldest first: (first path, every path, name)."""
        with self._lock:
            return [(first, paths, name) for first, (paths, name) in self.live.items()]

    def on_node(self, node: str) -> set[str]:
        """Every path of the live values stored on ``node``."""
        prefix = f"{PREFIX}{node}/"
        with self._lock:
            return {p for paths, _ in self.live.values() for p in paths if p.startswith(prefix)}


def node_of(path: str) -> str | None:
    """The node a ``sim://`` location names."""
    if not path.startswith(PREFIX):
        return None
    return path[len(PREFIX):].partition("/")[0] or None
