"""A cluster node's object store: its own objects, and copies of other nodes' it cached.

A node keeps a copy of every object of another node that one of its workers (or a driver
on its machine) read, so the next reader maps it without a transfer. A copy is received
into an extent of the node's arena, whose pages are already there (made when its segment
was, and kept by extents freed since), and into a file of its own only when the arena
cannot hold it at the moment. Those copies share
the node's ``object_store_memory`` with the node's own objects: before a copy is made,
and before the node takes on an object of its own, the least recently used copies are
removed until both fit. A copy is never spilled (its owner still has the object): it is
dropped, and read again from the owner if needed. Readers that still map a dropped copy
keep their view (unlinking a mapped file frees its memory when the last mapping goes).

This is :class:`~actorlib.backends.process.shm_store.SharedMemoryStore` (through its
public methods only) plus the bookkeeping of the cached copies.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Any

from actorlib.backends.cluster.transfer import Destination, ExtentDestination, Receiver
from actorlib.backends.process.shm_files import unlink
from actorlib.backends.process.shm_store import SharedMemoryStore
from actorlib.core.serialization import Serialized
from actorlib.exceptions import ObjectStoreFullError

__all__ = ["NodeStore"]


class NodeStore(SharedMemoryStore):
    """The node's store; thread-safe (the object server's threads and the node's loop)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cache_lock = threading.Lock()
        #: another node's path -> (our copy's location, its bytes), least recently used first
        self._copies: OrderedDict[str, tuple[str, int]] = OrderedDict()
        self._copy_bytes = 0  # of the copies in ``_copies`` and those being made
        #: another node's path -> whether it was freed while our copy was being made
        self._making: dict[str, bool] = {}

    @classmethod
    def for_node(
        cls, object_store_memory: int | None = None, spill_root: str | None = None,
    ) -> NodeStore:
        """A node's store, placed and sized as a driver's (:meth:`for_driver`)."""
        store = cls.for_driver(object_store_memory, spill_root)
        assert isinstance(store, NodeStore)
        return store

    # -- cached copies -----------------------------------------------------------------

    def cached(self, path: str) -> str | None:
        """Our copy of another node's ``path`` (an arena extent's location, or a file),
        marked recently used; None if there is none."""
        with self._cache_lock:
            if path not in self._copies:
                return None
            self._copies.move_to_end(path)
            local = self._copies[path][0]
        if self.arena is not None and self.arena.holds(local):
            return local
        return local if os.path.exists(local) else None

    def copies(self) -> int:
        """How many complete copies of other nodes' objects this store holds."""
        with self._cache_lock:
            return len(self._copies)

    def reserve_copy(self, path: str, size: int) -> None:
        """Make room for a copy of ``path`` (``size`` bytes), dropping older copies; count it.

        One copy of a path is made at a time (the object server fetches each path once).
        """
        if size > self.capacity:
            raise ObjectStoreFullError(
                f"An object of {size} bytes does not fit in this node's object store, "
                f"whose capacity is {self.capacity} bytes. Raise object_store_memory."
            )
        with self._cache_lock:
            self._copy_bytes += size
            self._making[path] = False
        self._drop_copies(0)

    def copy_destination(self, path: str, size: int) -> Receiver:
        """Where a copy of ``path`` reserved with :meth:`reserve_copy` is received: an
        arena extent (its pages made as the bytes arrive where they are not there yet),
        else a new file that gets its final name (:meth:`cache_path`) only once
        complete."""
        arena = self.arena
        found = arena.alloc_lazily(size) if arena is not None and size else None
        if arena is not None and found is not None:
            extent, cold = found
            try:
                return ExtentDestination(arena, extent, cold)
            except BaseException:
                arena.cool(extent.base, cold)
                arena.release(extent.path)
                raise
        target = self.cache_path(path)
        return Destination(f"{target}.partial", size, final=target)

    def add_copy(self, path: str, size: int, local: str) -> bool:
        """A copy reserved with :meth:`reserve_copy` is complete at ``local``; False if
        the object was freed meanwhile (the copy is removed: kept, it would hold memory
        until the node stops, since no other free of that object will come). A copy of
        ``path`` held already is replaced and freed: a node holds one copy of a path."""
        with self._cache_lock:
            freed = self._making.pop(path, False)
            previous = None if freed else self._copies.pop(path, None)
            if freed:
                self._copy_bytes -= size
            else:
                self._copies[path] = (local, size)
            if previous is not None:  # a copy made twice: the older one goes
                self._copy_bytes -= previous[1]
        if freed:
            self._forget(local)
        if previous is not None and previous[0] != local:
            self._forget(previous[0])
        return not freed

    def cancel_copy(self, path: str, size: int) -> None:
        """A copy reserved with :meth:`reserve_copy` failed."""
        with self._cache_lock:
            self._making.pop(path, None)
            self._copy_bytes -= size

    def copy_bytes(self) -> int:
        """Bytes of cached copies (complete or being made)."""
        with self._cache_lock:
            return self._copy_bytes

    def _drop_copies(self, incoming: int) -> None:
        """Drop least recently used copies until ours, theirs and ``incoming`` fit."""
        dropped: list[str] = []
        with self._cache_lock:
            while self._copies and (
                self.in_use() + self._copy_bytes + incoming > self.capacity
            ):
                _, (local, size) = self._copies.popitem(last=False)
                self._copy_bytes -= size
                dropped.append(local)
        for local in dropped:
            self._forget(local)

    def _forget(self, local: str) -> None:
        """Remove a copy: free its extent (reused once no reader views it), or unlink its
        file (its memory goes with the last reader's mapping)."""
        if self.arena is None or not self.arena.release(local):
            unlink(local)

    # -- the store's own objects make room among the copies first ----------------------------

    def seal(self, obj: Serialized) -> Serialized:
        self._drop_copies(sum(memoryview(b).nbytes for b in obj.buffers if b is not None))
        return super().seal(obj)

    def adopt(self, obj: Serialized) -> None:
        self._drop_copies(sum(
            loc[1] for loc in obj.locations or () if loc is not None and self.owns(loc[0])
        ))
        super().adopt(obj)

    def free_paths(self, paths: list[str]) -> None:
        dropped: list[str] = []
        with self._cache_lock:
            for path in paths:
                copy = self._copies.pop(path, None)
                if copy is not None:
                    self._copy_bytes -= copy[1]
                    dropped.append(copy[0])
                elif path in self._making:
                    self._making[path] = True  # its copy goes when complete (add_copy)
        for local in dropped:
            self._forget(local)
        super().free_paths(paths)

    def cleanup(self) -> None:
        with self._cache_lock:
            self._copies.clear()
            self._making.clear()
            self._copy_bytes = 0
        super().cleanup()
