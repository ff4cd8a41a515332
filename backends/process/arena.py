"""The object arena: large buffers in a few shared-memory segments, mapped once per process.

A fresh file per object makes the kernel allocate and zero a tmpfs page for every 4 KiB
of every large write, and every reader map (and fault in) the pages again. The arena
instead keeps a few large segment files ``actorlib-{session}-arena-{base}``, created as
demand grows (up to the store's capacity) and pre-faulted when created, the next one in a
background thread before it is needed. A large write is then a single ``memcpy`` into
pages that are already there, and a freed extent is reused, so a reader that mapped the
segment once finds its pages mapped too.

Segments lie one after the other in a virtual space of ``capacity`` bytes (``base`` is a
segment's start in it); an extent is named by a location path
``{directory}/actorlib-{session}-arena-{base}@{offset}.{gen}`` with a generation ``gen``
unique in the session, so ``Serialized`` locations, spilling (the spill file takes the
location's name) and the cluster's naming by path work unchanged.

Reuse is safe only when no process still reads an extent. Every process counts its live
views of each extent (its *pins*: a view's anchor object dies only when the last array or
memoryview derived from it does) and publishes the counts in its own file
``actorlib-{session}-pins-{pid}``, which only it writes; the owner reuses a freed extent
once no live process pins it. A reader pins first and then checks the extent's
generation in the shared index ``actorlib-{session}-arena-index``; the owner clears the
generation when it frees or spills an extent and reads the pins only later, so either
the owner sees the pin, or the reader sees the extent is gone (and follows the spill
file, or fails). ``pwrite``/``pread`` order those steps between processes.

Only the owner allocates. A worker writes into an extent the owner granted it
(:meth:`ArenaReader.write_granted`), in the segment it maps; the store does the granting
and takes the extent back if the worker dies before its value arrives.

After a burst, :meth:`Arena.trim` gives free space's pages back to the kernel (holes
punched in the segment files; the segments stay mapped everywhere), and allocation
prefers space whose pages are still there, populating given-back space again only when
nothing else fits.

The pins are :mod:`~actorlib.backends.process.arena_pins`; making a segment's pages is
:mod:`~actorlib.backends.process.arena_segments`.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import mmap
import os
import struct
import sys
import threading
import time
from dataclasses import dataclass

from actorlib.backends.process.arena_pins import COUNT, Pins, pinned_view
from actorlib.backends.process.arena_segments import (
    SegmentMaker,
    madvise,
    map_pages,
    populate,
    reserve_range,
)
from actorlib.backends.process.shm_files import PREFIX, pid_alive, unlink
from actorlib.core import interruptible
from actorlib.exceptions import ObjectStoreFullError

__all__ = ["ALIGN", "Arena", "ArenaReader", "Extent", "is_arena_path", "map_early", "reader_for"]

#: Extents start on page boundaries (numpy's alignment, and whole pages for the kernel).
ALIGN = 4096
#: The smallest segment: fewer, larger mappings.
MIN_SEGMENT = 64 * 1024 * 1024
#: Writes from this size on copy without the GIL where they can (numpy).
_UNLOCKED_COPY = 1024 * 1024
_TAG = "-arena-"
#: Freed extents checked for pins before every allocation while there are at most this many.
_RECLAIM_FIRST = 64
_GEN = struct.Struct("<Q")  # the live generation of the extent starting at a block


def is_arena_path(path: str) -> bool:
    """Whether a location path names an arena extent (not a file of its own)."""
    name = os.path.basename(path)
    return _TAG in name and "@" in name


def _parse(path: str) -> tuple[str, int, int, int]:
    """``(segment file name, base, offset, gen)`` of an extent's location path."""
    name = os.path.basename(path)
    segment, _, rest = name.partition("@")
    offset, _, gen = rest.partition(".")
    return segment, int(segment.rsplit("-", 1)[1]), int(offset), int(gen)


def _round_up(n: int, step: int) -> int:
    return -(-n // step) * step


def _overlaps(ranges: list[tuple[int, int]], offset: int, span: int) -> bool:
    return any(start < offset + span and offset < start + length for start, length in ranges)


def _subtract(ranges: list[tuple[int, int]], lo: int, hi: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` minus the sorted, disjoint ``(start, length)`` ranges, as (start, end)."""
    parts = []
    for start, length in ranges:
        if start + length <= lo or start >= hi:
            continue
        if start > lo:
            parts.append((lo, start))
        lo = max(lo, start + length)
    if lo < hi:
        parts.append((lo, hi))
    return parts


def _add_range(ranges: list[tuple[int, int]], start: int, length: int) -> None:
    """Insert a range disjoint from the others, merging it with touching neighbours."""
    i = bisect.bisect_left(ranges, (start, 0))
    end = start + length
    if i < len(ranges) and ranges[i][0] == end:
        end += ranges.pop(i)[1]
    if i > 0 and sum(ranges[i - 1]) == start:
        start = ranges[i - 1][0]
        ranges[i - 1] = (start, end - start)
    else:
        ranges.insert(i, (start, end - start))


@dataclass(frozen=True, slots=True)
class Extent:
    """Bytes ``[offset, offset + span)`` of the segment at ``base``; ``size`` are used."""

    path: str
    base: int
    offset: int
    size: int
    span: int
    gen: int

    @property
    def block(self) -> int:
        return (self.base + self.offset) // ALIGN


class ArenaReader:
    """A process's view of a session's arena: segments attached once, extents pinned.

    One per process and session (:func:`reader_for`): the process's pins of the session's
    extents live in one file, which only this reader writes.
    """

    def __init__(self, directory: str, session: str, *, pin_file: bool = True) -> None:
        self.directory = directory
        self.session = session
        self._name = f"{PREFIX}{session}"
        pins_path = os.path.join(directory, f"{self._name}-pins-{os.getpid()}")
        self._pins = Pins(pins_path if pin_file else None)
        self._maps: dict[str, mmap.mmap] = {}  # segment file name -> its mapping
        self._index_fd = -1
        self._attach_lock = threading.Lock()

    def map(self, path: str, size: int) -> memoryview:
        """Pin and view the extent at ``path``; FileNotFoundError if it no longer is there
        (freed, or spilled: the caller then looks in the spill directory)."""
        segment, base, offset, gen = _parse(path)
        mapped = self._segment(segment)
        block = (base + offset) // ALIGN
        span = _round_up(max(size, 1), ALIGN)
        view = pinned_view(mapped, offset, span, size, self._pins, block)
        if self._generation(block) != gen:
            view.release()  # its anchor dies with it: the pin goes
            raise FileNotFoundError(errno.ENOENT, "the arena extent was released", path)
        return view

    def write_granted(self, path: str, raw: memoryview) -> None:
        """Copy ``raw`` into the extent at ``path`` that this process was granted.

        A worker writes its large results this way: the owner allocated the extent, this
        process copies once into the segment it maps. The extent's pages are mapped
        first (``map_pages``): they exist already (the owner made them), but a fresh
        mapping would take a page fault per 4 KiB page of the copy (measured 262 ms
        against 28 + 37 ms for 256 MiB).
        """
        segment, _, offset, _ = _parse(path)
        mapped = self._segment(segment)
        map_pages(mapped, offset, raw.nbytes)
        copy_into(mapped, offset, raw)

    def _generation(self, block: int) -> int:
        if self._index_fd < 0:
            with self._attach_lock:
                if self._index_fd < 0:
                    self._index_fd = os.open(self._index_path(), os.O_RDONLY)
        raw = os.pread(self._index_fd, _GEN.size, block * _GEN.size)
        return _GEN.unpack(raw)[0] if len(raw) == _GEN.size else 0

    def _index_path(self) -> str:
        return os.path.join(self.directory, f"{self._name}-arena-index")

    def _segment(self, name: str) -> mmap.mmap:
        mapped = self._maps.get(name)
        if mapped is None:
            with self._attach_lock:
                mapped = self._maps.get(name)
                if mapped is None:
                    fd = os.open(os.path.join(self.directory, name), os.O_RDWR)
                    try:
                        mapped = mmap.mmap(fd, os.fstat(fd).st_size)
                    finally:
                        os.close(fd)
                    self._maps[name] = mapped
        return mapped

    def close(self) -> None:
        """Let go of the segments; mappings still viewed stay until their views go."""
        self._pins.close()
        fd, self._index_fd = self._index_fd, -1
        if fd >= 0:
            os.close(fd)
        self._maps.clear()


class Arena(ArenaReader):
    """The owner's arena: allocates, writes, frees and reuses extents. Thread-safe.

    Segments are made as needed, each pre-faulted once: their pages are what makes the
    next large write fast. Allocation is first fit over free lists kept sorted and
    coalesced per segment, warm space (pages present) before cold. :meth:`trim` gives the
    pages of free space back to the kernel (holes punched in the segment files, which
    stay mapped): cold space is populated again when it is next allocated, as a new
    segment would be.
    """

    def __init__(self, directory: str, session: str, capacity: int) -> None:
        super().__init__(directory, session, pin_file=False)
        self.capacity = capacity
        self._lock = threading.Lock()
        self._free: dict[int, list[tuple[int, int]]] = {}  # base -> sorted (offset, span)
        self._live: dict[tuple[int, int], Extent] = {}  # (base, offset) -> extent
        self._pending: list[Extent] = []  # released, maybe still pinned somewhere
        self._mapped = 0
        self._gen = 0
        self._growing: threading.Thread | None = None
        self._maker: SegmentMaker | None = None  # the segment being made, if any
        self._peers: dict[int, int] = {}  # pid -> fd of its pin file
        self._closed = False
        #: Free ranges whose pages were given back (trim): base -> [(offset, length)].
        self._cold: dict[int, list[tuple[int, int]]] = {}
        self._last_alloc = time.monotonic()

    # ------------------------------------------------------------------ extents

    def alloc(self, size: int, grow: bool = True) -> Extent | None:
        """An extent for ``size`` bytes, or None if the arena cannot hold it now.

        ``grow=False``: only from segments already made, never waiting for a new one
        (the caller may not block: the driver's core loop).
        """
        span = _round_up(max(size, 1), ALIGN)
        if span > self.capacity:
            return None
        while True:
            with self._lock:
                if self._closed:
                    return None
                # Reuse what readers let go of first (pages they have mapped), unless so
                # many extents are still viewed that checking them all costs more.
                self._last_alloc = time.monotonic()
                if self._pending and len(self._pending) <= _RECLAIM_FIRST:
                    self._reclaim()
                found = self._fit(span, warm=True)
                if found is None and len(self._pending) > _RECLAIM_FIRST:
                    self._reclaim()
                    found = self._fit(span, warm=True)
                cold: list[tuple[int, int]] = []
                if found is None and grow:  # space given back earlier: populated again
                    found = self._fit(span, warm=False)
                    if found is not None:
                        cold = self._warm_up(found[0], found[1], span)
                growing = self._growing
                if found is not None:
                    extent = self._take(found[0], found[1], span, size)
                    self._maybe_grow_ahead(span)
                    mapped = self._maps[self._segment_name(extent.base)]
            if found is not None:
                if cold and not self._reserve_again(extent, cold):
                    return None  # /dev/shm filled up since: the caller's fallback says so
                for offset, length in cold:  # outside the lock, like a new segment's
                    with contextlib.suppress(OSError):
                        populate(mapped, length, offset)
                return extent
            with self._lock:
                room = self.capacity - self._mapped
            if not grow:
                return None
            if growing is not None:  # a segment is on its way: help make it, then take it
                with self._lock:
                    maker = self._maker
                if maker is not None:
                    maker.work()
                interruptible.join(growing)  # Ctrl-C gets in: that thread goes on alone
                continue
            if room < span:
                return None
            try:
                self._add_segment(min(room, max(span, MIN_SEGMENT)))  # only what it needs
            except ObjectStoreFullError:
                return None

    def alloc_lazily(self, size: int) -> tuple[Extent, list[tuple[int, int]]] | None:
        """An extent for ``size`` bytes whose missing pages its writer makes as it writes:
        ``(extent, cold)``, or None if the arena cannot hold it now.

        Warm space first (``cold`` is empty), then space :meth:`trim` gave back, then a
        new segment left sparse; ``cold`` lists the segment ranges ``(offset, length)``
        of the extent that have no pages yet. The writer reserves each part of them
        (:func:`reserve_range` on :meth:`segment_path`) just before writing it: a writer
        that receives from a socket then makes pages while the sender sends, instead of
        all of them before the first byte (as :meth:`alloc` does) or on another thread
        (no segment is made ahead here). A writer that gives up calls :meth:`cool` with
        ``cold`` before releasing the extent.
        """
        span = _round_up(max(size, 1), ALIGN)
        if span > self.capacity:
            return None
        for attempt in (0, 1):
            with self._lock:
                if self._closed:
                    return None
                self._last_alloc = time.monotonic()
                if self._pending:
                    self._reclaim()
                cold: list[tuple[int, int]] = []
                found = self._fit(span, warm=True)
                if found is None:
                    found = self._fit(span, warm=False)
                    if found is not None:
                        cold = self._warm_up(found[0], found[1], span)
                if found is not None:
                    return self._take(found[0], found[1], span, size), cold
                room = self.capacity - self._mapped
                if attempt or room < span:
                    return None
                base = self._mapped
                size_made = min(room, max(span, MIN_SEGMENT))
                self._mapped += size_made  # claimed, as _add_segment does
            try:
                mapped = self._sparse_segment(base, size_made)
            except OSError:
                with self._lock:
                    if self._mapped == base + size_made:
                        self._mapped = base
                return None
            with self._lock:
                if self._closed:
                    mapped.close()
                    unlink(self.segment_path(base))
                    return None
                self._maps[self._segment_name(base)] = mapped
                self._free[base] = [(0, size_made)]
                self._cold[base] = [(0, size_made)]
        return None

    def cool(self, base: int, cold: list[tuple[int, int]],
             paged: list[tuple[int, int]] | None = None) -> None:
        """Mark ranges of the segment at ``base`` as having no pages (reserved again
        before their next use): the ``cold`` parts of an :meth:`alloc_lazily` extent
        whose writer gave up, but for those it reserved meanwhile (``paged``: their
        pages are there, and go back as warm space the arena can trim)."""
        made = sorted(paged or ())
        with self._lock:
            ranges = self._cold.setdefault(base, [])
            for offset, length in cold:
                for lo, hi in _subtract(made, offset, offset + length):
                    for start, end in _subtract(ranges, lo, hi):
                        _add_range(ranges, start, end - start)

    def segment_path(self, base: int) -> str:
        """The file of the segment at ``base``."""
        return os.path.join(self.directory, self._segment_name(base))

    def _sparse_segment(self, base: int, size: int) -> mmap.mmap:
        """A new segment file of ``size`` bytes, mapped, with no pages yet."""
        with self._lock:
            if self._index_fd < 0:
                self._index_fd = os.open(self._index_path(), os.O_CREAT | os.O_RDWR, 0o600)
        fd = os.open(self.segment_path(base), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            os.ftruncate(fd, size)
            return mmap.mmap(fd, size)
        except BaseException:
            unlink(self.segment_path(base))
            raise
        finally:
            os.close(fd)

    def write(self, extent: Extent, raw: memoryview) -> None:
        """Copy ``raw`` into the extent: one ``memcpy`` into pages already mapped."""
        copy_into(self._segment(self._segment_name(extent.base)), extent.offset, raw)

    def view(self, extent: Extent) -> memoryview:
        """A read-only pinned view of a live extent."""
        mapped = self._segment(self._segment_name(extent.base))
        return pinned_view(mapped, extent.offset, extent.span, extent.size, self._pins,
                          extent.block)

    def writable(self, extent: Extent) -> memoryview:
        """A writable view of a live extent, for the owner to fill in place (a cluster
        node receiving a copy straight off a socket); the caller releases it."""
        view = memoryview(self._segment(self._segment_name(extent.base)))
        try:
            return view[extent.offset:extent.offset + extent.size]
        finally:
            view.release()

    def map(self, path: str, size: int) -> memoryview:
        _, base, offset, gen = _parse(path)
        with self._lock:
            extent = self._live.get((base, offset))
            if extent is None or extent.gen != gen:
                raise FileNotFoundError(errno.ENOENT, "the arena extent was released", path)
            # Pinned under the lock: a release after this sees the pin.
            return self.view(extent)

    def release(self, path: str) -> bool:
        """Free the extent at ``path`` (reused once nobody views it). False if it is not a
        live extent of this arena (released already, or another session's)."""
        if not os.path.basename(path).startswith(self._name + _TAG):
            return False
        _, base, offset, gen = _parse(path)
        with self._lock:
            extent = self._live.get((base, offset))
            if extent is None or extent.gen != gen:
                return False
            del self._live[(base, offset)]
            # Readers pin, then check this: cleared before anyone looks at their pins.
            os.pwrite(self._index_fd, _GEN.pack(0), extent.block * _GEN.size)
            self._pending.append(extent)
        return True

    def live(self) -> list[str]:
        """The location paths of every live extent."""
        with self._lock:
            return [extent.path for extent in self._live.values()]

    def holds(self, path: str) -> bool:
        """Whether ``path`` names a live (allocated, not yet freed) extent."""
        if not os.path.basename(path).startswith(self._name + _TAG):
            return False
        _, base, offset, gen = _parse(path)
        with self._lock:
            extent = self._live.get((base, offset))
            return extent is not None and extent.gen == gen

    def pinned(self, extent: Extent) -> bool:
        """Whether any live process of the session still views ``extent``."""
        with self._lock:
            return self._pinned(extent.block)

    def idle_for(self) -> float:
        """Seconds since the last allocation."""
        return time.monotonic() - self._last_alloc

    def trimmable(self, keep: int) -> int:
        """Bytes :meth:`trim` would give back now (free, warm, beyond ``keep``)."""
        with self._lock:
            if self._pending:
                self._reclaim()
            return max(0, self._warm_free() - keep)

    def trim(self, keep: int) -> int:
        """Give back the pages of free space beyond ``keep`` bytes kept warm; the bytes
        given back. Space first fit reaches first stays warm. Extents still viewed are not
        free yet and keep their pages.

        ``madvise(MADV_REMOVE)`` punches holes in the segment file: the memory returns to
        the system even though every process of the session keeps the segment mapped
        (nobody reads free space, and a pin keeps an extent out of it). Done under the
        lock: an allocation must not take a range while its pages are being removed.
        """
        remove = getattr(mmap, "MADV_REMOVE", None)
        if remove is None:
            return 0
        given = 0
        with self._lock:
            if self._closed:
                return 0
            self._reclaim()
            budget = keep
            for base, free in self._free.items():
                mapped = self._maps[self._segment_name(base)]
                cold = self._cold.setdefault(base, [])
                for offset, length in free:
                    for start, end in _subtract(cold, offset, offset + length):
                        if budget >= end - start:
                            budget -= end - start
                            continue
                        start = min(end, start + _round_up(budget, ALIGN))
                        budget = 0
                        if start == end:
                            continue
                        try:  # without the GIL: the core loop runs on meanwhile
                            madvise(mapped, start, end - start, remove)
                        except OSError:
                            return given  # not supported here (a disk fallback, say)
                        _add_range(cold, start, end - start)
                        given += end - start
        return given

    def resident(self) -> int:
        """Bytes of segments whose pages are present (made, minus what trim gave back)."""
        with self._lock:
            cold = sum(length for ranges in self._cold.values() for _, length in ranges)
            return self._mapped - cold

    def mapped(self) -> int:
        """Bytes of segments made so far."""
        with self._lock:
            return self._mapped

    def close(self) -> None:
        """Stop growing; drop the mappings (the store unlinks the files)."""
        with self._lock:
            self._closed = True
            growing = self._growing
        if growing is not None:
            growing.join()
        with self._lock:
            for fd in self._peers.values():
                os.close(fd)
            self._peers.clear()
            self._free.clear()
            self._cold.clear()
            self._live.clear()
            self._pending.clear()
        super().close()

    # ------------------------------------------------------------------ internals (lock held)

    def _segment_name(self, base: int) -> str:
        return f"{self._name}{_TAG}{base}"

    def _fit(self, span: int, warm: bool) -> tuple[int, int] | None:
        """First fit; with ``warm``, only where no page was given back."""
        for base, free in self._free.items():
            cold = self._cold.get(base) if warm else None
            for i, (offset, length) in enumerate(free):
                if length >= span and not (cold and _overlaps(cold, offset, span)):
                    if length == span:
                        del free[i]
                    else:
                        free[i] = (offset + span, length - span)
                    return base, offset
        return None

    def _warm_free(self) -> int:
        return sum(
            end - start
            for base, free in self._free.items()
            for offset, length in free
            for start, end in _subtract(self._cold.get(base, []), offset, offset + length)
        )

    def _warm_up(self, base: int, offset: int, span: int) -> list[tuple[int, int]]:
        """Take ``[offset, offset + span)`` out of the cold ranges: the parts to populate."""
        cold = self._cold.get(base)
        if not cold:
            return []
        end = offset + span
        populate_now: list[tuple[int, int]] = []
        kept: list[tuple[int, int]] = []
        for start, length in cold:
            stop = start + length
            lo, hi = max(start, offset), min(stop, end)
            if lo >= hi:
                kept.append((start, length))
                continue
            populate_now.append((lo, hi - lo))
            if start < lo:
                kept.append((start, lo - start))
            if hi < stop:
                kept.append((hi, stop - hi))
        cold[:] = sorted(kept)
        return populate_now

    def _take(self, base: int, offset: int, span: int, size: int) -> Extent:
        self._gen += 1
        name = f"{self._segment_name(base)}@{offset}.{self._gen}"
        extent = Extent(os.path.join(self.directory, name), base, offset, size, span, self._gen)
        self._live[(base, offset)] = extent
        os.pwrite(self._index_fd, _GEN.pack(self._gen), extent.block * _GEN.size)
        return extent

    def _give_back(self, extent: Extent) -> None:
        free = self._free[extent.base]
        start, end = extent.offset, extent.offset + extent.span
        i = bisect.bisect_left(free, (start, 0))
        if i < len(free) and free[i][0] == end:  # merge with the next
            end += free.pop(i)[1]
        if i > 0 and sum(free[i - 1]) == start:  # and the previous
            start = free[i - 1][0]
            free[i - 1] = (start, end - start)
        else:
            free.insert(i, (start, end - start))

    def _reclaim(self) -> None:
        still = []
        self._refresh_peers()
        for extent in self._pending:
            if self._pinned(extent.block, refresh=False):
                still.append(extent)
            else:
                self._give_back(extent)
        self._pending = still

    def _pinned(self, block: int, refresh: bool = True) -> bool:
        if self._pins.pinned(block):
            return True
        if refresh:
            self._refresh_peers()
        for pid, fd in list(self._peers.items()):
            raw = os.pread(fd, COUNT.size, block * COUNT.size)
            if len(raw) == COUNT.size and COUNT.unpack(raw)[0]:
                if pid_alive(pid):
                    return True
                self._forget_peer(pid)  # a dead process views nothing
        return False

    def _refresh_peers(self) -> None:
        prefix = f"{self._name}-pins-"
        try:
            names = os.listdir(self.directory)
        except OSError:
            return
        for name in names:
            if not name.startswith(prefix):
                continue
            pid = int(name[len(prefix):])
            if pid in self._peers:
                continue
            with contextlib.suppress(FileNotFoundError):
                self._peers[pid] = os.open(os.path.join(self.directory, name), os.O_RDONLY)

    def _forget_peer(self, pid: int) -> None:
        os.close(self._peers.pop(pid))
        unlink(os.path.join(self.directory, f"{self._name}-pins-{pid}"))

    def _maybe_grow_ahead(self, span: int) -> None:
        """Start making the next segment before a write needs it (off the hot path),
        when less than a quarter of the arena is free: room for one more object like the
        one just placed."""
        if self._growing is not None or self._closed:
            return
        free = sum(length for segment in self._free.values() for _, length in segment)
        room = self.capacity - self._mapped
        if room < MIN_SEGMENT // 4 or free * 4 >= self._mapped:
            return
        size = min(room, max(MIN_SEGMENT, span))
        thread = threading.Thread(target=self._grow_ahead, args=(size,),
                                  name="actorlib-arena", daemon=True)
        self._growing = thread
        thread.start()

    def _grow_ahead(self, size: int) -> None:
        if sys.platform.startswith("linux"):  # where nice is per thread: yield to work
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        try:
            self._add_segment(size)
        except ObjectStoreFullError:
            pass  # an allocation that needs it falls back to a file of its own
        finally:
            with self._lock:
                self._growing = None

    # ------------------------------------------------------------------ segments

    def _reserve_again(self, extent: Extent, cold: list[tuple[int, int]]) -> bool:
        """Reserve space :meth:`trim` gave back before any page of it is touched: others
        may have filled ``/dev/shm`` since, and a write into a hole of a full tmpfs is
        SIGBUS, not an error. On failure the extent and its ranges go back, cold."""
        path = os.path.join(self.directory, self._segment_name(extent.base))
        try:
            fd = os.open(path, os.O_RDWR)
            try:
                for offset, length in cold:
                    reserve_range(fd, offset, length)
            finally:
                os.close(fd)
            return True
        except OSError:
            with self._lock:
                ranges = self._cold.setdefault(extent.base, [])
                for offset, length in cold:
                    _add_range(ranges, offset, length)
                if self._live.pop((extent.base, extent.offset), None) is not None:
                    self._give_back(extent)
            return False

    def _add_segment(self, size: int) -> None:
        """Make, reserve and pre-fault a segment of ``size`` bytes (no lock held while
        the kernel does the slow part; an allocation waiting for it helps), then offer
        its space."""
        size = _round_up(size, ALIGN)
        with self._lock:
            if self._closed or self._mapped + size > self.capacity:
                raise ObjectStoreFullError("the arena is at its capacity")
            base = self._mapped
            self._mapped += size  # claimed: a concurrent growth starts after it
            if self._index_fd < 0:  # sparse, like the pin files
                self._index_fd = os.open(self._index_path(), os.O_CREAT | os.O_RDWR, 0o600)
        name = self._segment_name(base)
        path = os.path.join(self.directory, name)
        try:
            maker = SegmentMaker(path, size)
            with self._lock:
                self._maker = maker
            try:
                maker.work()
                mapped = maker.finish()
            finally:
                with self._lock:
                    self._maker = None
        except BaseException:
            with self._lock:
                if self._mapped == base + size:
                    self._mapped = base
            raise
        with self._lock:
            if not self._closed:
                self._maps[name] = mapped
                self._free[base] = [(0, size)]
                return
        # Closed while it was made (a grant outstanding at shutdown): the store's
        # cleanup has already run, so the file is this thread's to remove.
        mapped.close()
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise ObjectStoreFullError("the arena was closed")


def copy_into(mapped: mmap.mmap, offset: int, raw: memoryview) -> None:
    """Copy ``raw`` into ``mapped`` at ``offset``: one ``memcpy``.

    One copy, not steps (steps of 64 MiB measured 1.8x slower: the C library copies one
    large block faster). A plain copy holds the GIL throughout, stalling the process's
    other threads (the driver's core loop, a worker's reader); numpy's copy, as fast,
    lets go of it, so it is used when numpy is already imported (it is, for an array).
    """
    view = memoryview(mapped)
    try:
        target = view[offset:offset + raw.nbytes]
        np = sys.modules.get("numpy")
        if np is not None and raw.nbytes >= _UNLOCKED_COPY:
            np.copyto(np.frombuffer(target, np.uint8), np.frombuffer(raw, np.uint8))
        else:
            target[:] = raw
        target.release()
    finally:
        view.release()


_readers: dict[tuple[str, str], ArenaReader] = {}
_readers_lock = threading.Lock()


def reader_for(directory: str, session: str) -> ArenaReader:
    """This process's reader of a session's arena (made on first use)."""
    key = (directory, session)
    with _readers_lock:
        reader = _readers.get(key)
        if reader is None:
            reader = _readers[key] = ArenaReader(directory, session)
        return reader


def forget_reader(directory: str, session: str) -> None:
    """Close this process's reader of a session (its store is done with it)."""
    with _readers_lock:
        reader = _readers.pop((directory, session), None)
    if reader is not None:
        reader.close()


def map_early(path: str, size: int) -> memoryview:
    """A worker's buffer mapper until its store is set up.

    A worker may decode a task that names arena extents in the same read as the
    message that configures its store: the location itself says which arena it is in.
    """
    from actorlib.core.serialization import map_readonly

    name = os.path.basename(path)
    directory = os.path.dirname(path)
    segment = name.partition("@")[0]
    if not is_arena_path(path) or not os.path.exists(os.path.join(directory, segment)):
        return map_readonly(path, size)  # a file (a spilled extent's is named after it)
    session = name[len(PREFIX):name.index(_TAG)]
    return reader_for(directory, session).map(path, size)
