"""Pins: which arena extents a process still views, published for the arena's owner.

A freed extent may be reused only when no process reads it any more. Every process counts
its live views of each extent here and writes the counts (one ``uint32`` per block where
an extent starts) into its own file ``actorlib-{session}-pins-{pid}``, which only it
writes and the owner reads (a dead process's count for nothing). A view's anchor is a
ctypes array over the mapping: every memoryview or numpy array made from the view keeps
the anchor alive, and the anchor's finalizer takes the pin away.
"""

from __future__ import annotations

import collections
import mmap
import os
import struct
import threading
import weakref

__all__ = ["COUNT", "Pins", "pinned_view"]

COUNT = struct.Struct("<I")  # one process's pins of one extent


class Pins:
    """This process's live views per extent, published in its pin file (if it has one).

    A view's anchor is finalized by the garbage collector, possibly while this thread is
    inside :meth:`pin`: the finalizer never blocks, it queues its release, and whoever
    holds the lock applies the queue before letting go.
    """

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.fd = -1
        self.closed = False
        self.counts: dict[int, int] = {}
        self._lock = threading.Lock()
        self._released: collections.deque[int] = collections.deque()

    def pin(self, block: int) -> None:
        with self._lock:
            self._add(block, 1)
            self._drain()

    def unpin(self, block: int) -> None:
        """Finalizer-safe: never waits for the lock."""
        self._released.append(block)
        while self._released and self._lock.acquire(blocking=False):
            try:
                self._drain()
            finally:
                self._lock.release()

    def pinned(self, block: int) -> bool:
        with self._lock:
            self._drain()
            return self.counts.get(block, 0) > 0

    def _drain(self) -> None:
        while self._released:
            self._add(self._released.popleft(), -1)

    def _add(self, block: int, delta: int) -> None:
        count = self.counts.get(block, 0) + delta
        if count > 0:
            self.counts[block] = count
        else:
            self.counts.pop(block, None)
            count = 0
        if self.path is None or self.closed:
            return
        if self.fd < 0:  # written sparsely at block offsets: holes cost nothing
            self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        os.pwrite(self.fd, COUNT.pack(count), block * COUNT.size)

    def close(self) -> None:
        """Stop publishing (views dropped later change nothing on disk)."""
        with self._lock:
            self.closed = True
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)


def pinned_view(mapped: mmap.mmap, extent_offset: int, span: int, size: int,
               pins: Pins, block: int) -> memoryview:
    """A read-only view of an extent whose anchor holds a pin until every view is gone.

    The anchor is a ctypes array over the mapping: a memoryview of it (and anything made
    from that, numpy arrays included) keeps the anchor itself alive, which a plain slice
    of the mapping would not.
    """
    import ctypes  # here: a worker that never reads the arena does not pay for it

    pins.pin(block)
    try:
        anchor = (ctypes.c_ubyte * span).from_buffer(mapped, extent_offset)
    except BaseException:
        pins.unpin(block)
        raise
    weakref.finalize(anchor, pins.unpin, block).atexit = False  # nothing to tell at exit
    return memoryview(anchor).cast("B")[:size].toreadonly()
