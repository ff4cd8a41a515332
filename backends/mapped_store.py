"""The thread backend's store: large buffers in memory mappings of their own.

A ``put`` (or a large argument or result) must be copied, since the program may change
its array afterwards. Copied into ``bytes``, a 256 MiB array took 183 ms here, six times
the memcpy: the fresh allocation faults its 65,536 small pages in one by one as the copy
writes them. An anonymous mapping advised to use transparent huge pages faults 128 pages
of 2 MiB instead: 72 ms for the same copy. Small buffers stay ``bytes`` (a mapping costs
a system call and a page of its own).
"""

from __future__ import annotations

import mmap
from typing import Any

from actorlib.backends.base import HeapStore
from actorlib.core.serialization import Serialized

#: From this size a buffer gets a mapping of its own (two huge pages: below it, the
#: faults saved do not pay for the mapping).
MAPPED_FROM = 4 << 20

_FLAGS = getattr(mmap, "MAP_PRIVATE", None), getattr(mmap, "MAP_ANONYMOUS", None)
_HUGE = getattr(mmap, "MADV_HUGEPAGE", None)


def _copy(buffer: Any) -> Any:
    """An immutable copy of ``buffer``: a read-only view of a private mapping when it is
    large and contiguous (and the platform has anonymous private mappings), else bytes."""
    view = memoryview(buffer)
    private, anonymous = _FLAGS
    if view.nbytes < MAPPED_FROM or not view.c_contiguous or private is None or anonymous is None:
        return bytes(view)
    mapping = mmap.mmap(-1, view.nbytes, flags=private | anonymous)
    if _HUGE is not None:
        try:
            mapping.madvise(_HUGE)
        except OSError:  # a kernel without transparent huge pages: small pages, still right
            pass
    mapping[:] = view.cast("B")
    # The view keeps the mapping alive as long as anything (an array from get) uses it.
    return memoryview(mapping).toreadonly()


class MappedHeapStore(HeapStore):
    """:class:`HeapStore` with large buffers in mappings of their own (one process)."""

    def seal(self, obj: Serialized) -> Serialized:
        if obj.buffers:
            obj.buffers = [_copy(b) for b in obj.buffers]
        return obj
