"""Ids for objects, tasks and actors: plain ints, unique across every process of a runtime.

An id is ``prefix << 40 | counter``. The core hands each process that may mint ids (the
driver, every worker) its own prefix, so ``.remote()`` can name its result at once,
without a round trip, and ints keep the core's dict lookups cheap.
"""

from __future__ import annotations

import itertools

COUNTER_BITS = 40
DRIVER_PREFIX = 1


class IdAllocator:
    """Mints ids for one process. ``next()`` on itertools.count is atomic under the GIL."""

    __slots__ = ("_counter", "prefix")

    def __init__(self, prefix: int) -> None:
        self.prefix = prefix
        self._counter = itertools.count((prefix << COUNTER_BITS) + 1)

    def next(self) -> int:
        return next(self._counter)


def id_hex(id_: int) -> str:
    return f"{id_:016x}"


def id_from_hex(text: str) -> int:
    return int(text, 16)
