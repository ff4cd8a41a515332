"""The process backend's object store: large buffers in shared memory.

The driver's out-of-band buffers go into the store's arena
(:mod:`actorlib.backends.process.arena`): a few large segments in ``/dev/shm`` (tmpfs),
pre-faulted once, mapped once by every process that reads them, with freed extents reused
once nobody views them. A worker's buffers (1 MiB or more per value) go there too, into
extents the owner *grants* (:meth:`SharedMemoryStore.grant`, asked over the worker's link
to the driver): the allocator stays in one process, and an extent is the worker's until
the value carrying it is adopted, so a worker that dies first gives it back. A buffer the
arena cannot hold at the moment (every extent in use or still viewed), and a worker's
smaller ones, become one file ``actorlib-{session}-{pid}-{n}``, written once and then
mapped read-only by every reader. Either way large values cross processes without a copy.
After a while without large objects the arena gives its free pages back (:meth:`trim`).
Without ``/dev/shm`` (macOS, or too small) the segments and files go to a private
directory instead (:func:`fallback_dir` says why).

Why plain files and not :mod:`multiprocessing.shared_memory`: its resource tracker unlinks
(or warns about) segments that the process that created them does not own, and here
workers create segments that the driver owns. Why ``posix_fallocate`` before writing: a
write through a mapping into a full tmpfs kills the process with SIGBUS; reserving the
space first turns that into an ``ENOSPC`` we can raise as
:class:`~actorlib.exceptions.ObjectStoreFullError`.

The driver's store (``owner=True``) accounts for every file of the session, spills the
least recently used ones to disk when over capacity, unlinks them when freed, and removes
everything at shutdown. Workers' stores (``owner=False``) create files and fill granted
extents. The mechanics
of one file (naming, writing, the fallback directory, sweeping dead runtimes' files) are in
:mod:`actorlib.backends.process.shm_files`; this module is the accounting over them.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, cast

from actorlib.backends.base import ObjectStore
from actorlib.backends.private_dir import private_dir
from actorlib.backends.process.arena import (
    Arena,
    ArenaReader,
    forget_reader,
    is_arena_path,
    reader_for,
)
from actorlib.backends.process.portable import use_dev_shm
from actorlib.backends.process.shm_files import (
    PREFIX,
    SHM_DIR,
    WRITE_STEP,
    byte_view,
    fallback_dir,
    full_store_error,
    next_number,
    remove_stale,
    reserve,
    unlink,
)
from actorlib.core.serialization import Serialized, map_readonly
from actorlib.exceptions import ObjectStoreFullError

# shutil and tempfile are imported where used: a worker imports this module when it starts
# (its store) and needs neither, nor what they import (random, bz2, lzma).

__all__ = ["SharedMemoryStore"]

#: Below this much free space ``/dev/shm`` is not worth using (Docker's default is 64 MiB).
MIN_SHM_FREE = 256 * 1024 * 1024
#: Default capacity as a fraction of the chosen directory's free space.
DEFAULT_FRACTION = 0.30
#: A worker asks the owner for arena extents when its buffers total at least this much:
#: the answer takes a round trip to the driver, which a file of its own does not.
WORKER_ARENA_MIN = 1024 * 1024

#: Seconds without a new large object after which the arena gives the pages of its free
#: space back to the system (``ACTORLIB_ARENA_TRIM_S``; negative: never). Long enough
#: that a workload's next burst finds its pages still there.
TRIM_AFTER_S = 30.0
#: Free arena space kept with its pages when trimming: the next burst's first writes.
KEEP_WARM = 64 * 1024 * 1024

#: One buffer's extent granted to a worker (its location), or None: write a file.
Grant = tuple[str, int] | None


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def _free_bytes(path: str) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def remove_dead_sessions() -> list[str]:
    """Sweep every place a store writes (shared memory, its disk fallback, spill files).

    Called where a runtime may have died without cleaning up: a daemon stopped or killed.
    """
    import tempfile

    tmp = tempfile.gettempdir()
    removed = remove_stale(SHM_DIR)
    removed += remove_stale(fallback_dir())
    removed += remove_stale(tmp)
    return removed


@dataclass(slots=True, eq=False)
class _Entry:
    """The owner's record of one tracked object (kept alive until freed)."""

    obj: Serialized
    nbytes: int  # bytes of its files still in ``directory`` (not spilled)
    freed: bool = False


class SharedMemoryStore(ObjectStore):
    """Buffers in an arena or files under ``directory`` (``/dev/shm``), read-only to readers.

    Thread-safe. ``owner`` is the driver's instance: it writes into the arena (unless
    ``arena`` is False), accounts, spills, frees and cleans up. Other processes of the
    session use ``owner=False`` instances (from :meth:`for_worker`) that create files and
    read the arena.
    """

    def __init__(
        self, session: str, directory: str, capacity: int, *, owner: bool, spill_dir: str,
        arena: bool = True,
    ) -> None:
        self.session = session
        self.directory = os.path.abspath(directory)
        self.capacity = int(capacity)
        self.owner = owner
        self.spill_dir = os.path.abspath(spill_dir)
        self._prefix = f"{PREFIX}{session}-"
        self._lock = threading.Lock()
        self._in_use = 0
        self._entries: dict[int, _Entry] = {}  # id(obj) -> entry, until freed
        self._lru: OrderedDict[int, _Entry] = OrderedDict()  # those with bytes in directory
        self._by_path: dict[str, int] = {}  # first location path -> id(obj), for free_paths
        # The owner's arena (workers read it through one reader per process: reader_for).
        self.arena: Arena | None = (
            Arena(self.directory, session, self.capacity) if owner and arena else None
        )
        # The owner's extents granted to workers and not yet adopted: path -> (holder,
        # size). A holder that dies gives back what it still holds (``holder_gone``).
        self._granted: dict[str, tuple[Hashable, int]] = {}
        self._gone: set[Hashable] = set()
        #: A worker's way to ask the owner for extents (``grant`` there), and to give back
        #: ones it will not use; None: this store writes files only.
        self.ask_extents: Callable[[list[int]], list[Grant]] | None = None
        self.give_back: Callable[[list[str]], None] | None = None
        self.trim_after = _trim_after() if self.arena is not None else -1.0
        if owner:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            remove_stale(self.directory)
            remove_stale(os.path.dirname(self.spill_dir))

    # ------------------------------------------------------------------ construction

    @classmethod
    def for_driver(
        cls, object_store_memory: int | None = None, spill_root: str | None = None,
    ) -> SharedMemoryStore:
        """The driver's store: pick the directory, size it, clear dead runtimes' files.
        Spilled objects go to a directory of its own in ``spill_root`` (default: the
        temporary directory)."""
        import tempfile

        session = f"{os.getpid()}-{os.urandom(4).hex()}"
        tmp = tempfile.gettempdir()
        directory = SHM_DIR
        usable = use_dev_shm() and os.path.isdir(SHM_DIR)
        free = _free_bytes(SHM_DIR) if usable else -1
        if free < MIN_SHM_FREE:
            directory = fallback_dir()
            private_dir(directory, "object store directory", fix="set TMPDIR")
            if use_dev_shm() and (usable or sys.platform.startswith("linux")):
                # Only where /dev/shm was expected: elsewhere this is the normal place.
                reason = (
                    f"{SHM_DIR} does not exist"
                    if free < 0
                    else f"{SHM_DIR} has only {_human(free)} free (less than "
                    f"{_human(MIN_SHM_FREE)}; in Docker, raise it with --shm-size)"
                )
                warnings.warn(
                    f"actorlib: {reason}; the object store uses {directory} instead, which "
                    "is disk-backed and slower.",
                    RuntimeWarning,
                    stacklevel=2,
                )
            free = _free_bytes(directory)
        if object_store_memory is None:
            capacity = int(free * DEFAULT_FRACTION)
        elif object_store_memory > free:
            raise ValueError(
                f"object_store_memory={object_store_memory} bytes "
                f"({_human(object_store_memory)}) is more than the {free} bytes "
                f"({_human(free)}) free in {directory}"
            )
        else:
            capacity = int(object_store_memory)
        spill_dir = os.path.join(spill_root or tmp, f"{PREFIX}{session}-spill")
        return cls(session, directory, capacity, owner=True, spill_dir=spill_dir)

    def config(self) -> dict[str, Any]:
        """What a worker needs to build its (non-owner) store; picklable."""
        return {
            "session": self.session,
            "directory": self.directory,
            "capacity": self.capacity,
            "spill_dir": self.spill_dir,
            # Workers write large buffers into the owner's arena, extents granted by it.
            "arena": self.arena is not None,
        }

    @classmethod
    def for_worker(cls, config: dict[str, Any]) -> SharedMemoryStore:
        return cls(
            config["session"],
            config["directory"],
            config["capacity"],
            owner=False,
            spill_dir=config["spill_dir"],
        )

    def __repr__(self) -> str:
        role = "owner" if self.owner else "worker"
        return (
            f"<SharedMemoryStore {role} {self.directory} "
            f"{_human(self.in_use())}/{_human(self.capacity)}>"
        )

    # ------------------------------------------------------------------ the store

    def seal(self, obj: Serialized) -> Serialized:
        """Copy ``obj``'s buffers into new files; its buffers become read-only mappings.

        Modifies and returns ``obj``. On error ``obj`` is unchanged and nothing is left.
        """
        buffers = obj.buffers
        if not buffers:
            return obj
        locations: list[tuple[str, int] | None] = (
            list(obj.locations) if obj.locations is not None else [None] * len(buffers)
        )
        todo: list[tuple[int, memoryview]] = []
        for i, (buf, loc) in enumerate(zip(buffers, locations, strict=True)):
            if loc is None:
                raw = byte_view(buf)
                if raw.nbytes:
                    todo.append((i, raw))
        if not todo:
            return obj
        total = sum(raw.nbytes for _, raw in todo)
        if total > self.capacity:
            raise ObjectStoreFullError(
                f"An object of {total} bytes ({_human(total)}) does not fit in the object "
                f"store, whose capacity is {self.capacity} bytes ({_human(self.capacity)}). "
                "Raise object_store_memory, or split the object."
            )
        if self.owner:
            self._make_room(total)
        written: list[tuple[int, str, int]] = []
        views: list[tuple[int, memoryview]] = []
        arena = self.arena
        grants: list[Grant] = []
        if arena is None and self.ask_extents is not None and total >= WORKER_ARENA_MIN:
            grants = self._ask_grants([raw.nbytes for _, raw in todo])
        try:
            for n, (i, raw) in enumerate(todo):
                grant = grants[n] if grants else None
                if grant is not None:  # a worker: one copy into the owner's extent
                    reader = reader_for(self.directory, self.session)
                    written.append((i, grant[0], raw.nbytes))
                    reader.write_granted(grant[0], raw)
                    views.append((i, reader.map(grant[0], raw.nbytes)))
                    continue
                extent = arena.alloc(raw.nbytes) if arena is not None else None
                if arena is not None and extent is not None:
                    written.append((i, extent.path, raw.nbytes))
                    arena.write(extent, raw)  # one memcpy into pages already mapped
                    views.append((i, arena.view(extent)))
                    continue
                path = os.path.join(self.directory, f"{self._prefix}{os.getpid()}-{next_number()}")
                self._write(path, raw)
                written.append((i, path, raw.nbytes))
                views.append((i, map_readonly(path, raw.nbytes)))
        except BaseException:
            for _, path, _ in written:
                self._remove(path)
            if self.owner:
                with self._lock:
                    self._in_use -= total
            self._return_grants([grant[0] for grant in grants if grant is not None])
            raise
        new_buffers = list(buffers)
        for i, view in views:
            new_buffers[i] = view
        for i, path, size in written:
            locations[i] = (path, size)
        obj.buffers = new_buffers
        obj.locations = locations
        if self.owner:
            self._track(obj, reserved=total)
        return obj

    def grant(self, holder: Hashable, sizes: list[int], *, block: bool) -> list[Grant] | None:
        """Arena extents for a worker's buffers of ``sizes`` bytes (owner).

        The worker copies each buffer into its extent and sends the value on; adopting
        the value ends the grant. Until then the extent counts against the capacity and
        is ``holder``'s: if the holder dies first (killed mid-write, say), ``holder_gone``
        frees it, so nothing leaks and no half-written object is ever read. A None in
        the answer: no extent for that buffer (the worker writes a file). With ``block``
        False (the core loop), None instead of spilling or making a segment: ask again
        with ``block`` True off the loop.
        """
        arena = self.arena
        if arena is None or not sizes:
            return [None] * len(sizes)
        total = sum(sizes)
        with self._lock:
            if holder in self._gone:
                return [None] * len(sizes)
            if not block and self._in_use + total > self.capacity:
                return None  # spilling first: not on the loop
            if not block:
                self._in_use += total
        if block:
            try:
                self._make_room(total)
            except ObjectStoreFullError:
                return [None] * len(sizes)
        grants: list[Grant] = []
        for size in sizes:
            extent = arena.alloc(size, grow=block)
            if extent is None and not block:
                for grant in grants:
                    if grant is not None:
                        arena.release(grant[0])
                with self._lock:
                    self._in_use -= total
                return None
            grants.append((extent.path, size) if extent is not None else None)
        with self._lock:
            self._in_use -= sum(size for size, grant in zip(sizes, grants, strict=True)
                                if grant is None)
            gone = holder in self._gone
            if not gone:
                for grant in grants:
                    if grant is not None:
                        self._granted[grant[0]] = (holder, grant[1])
        if gone:  # died while we allocated
            self._release_granted(grants)
            return [None] * len(sizes)
        return grants

    def return_grants(self, holder: Hashable, paths: list[str]) -> None:
        """Free extents granted to ``holder`` that it will not use (owner)."""
        with self._lock:
            back = [path for path in paths if self._granted.get(path, (None,))[0] == holder]
            for path in back:
                self._in_use -= self._granted.pop(path)[1]
        for path in back:
            self._remove(path)

    def holder_gone(self, holder: Hashable) -> None:
        """``holder`` died: free what was granted to it and never adopted (owner)."""
        with self._lock:
            self._gone.add(holder)
            paths = [path for path, (who, _) in self._granted.items() if who == holder]
        self.return_grants(holder, paths)

    def granted(self) -> int:
        """How many extents are granted and not yet adopted (owner)."""
        with self._lock:
            return len(self._granted)

    def trim_due(self) -> bool:
        """Whether the arena has been idle long enough, with free pages to give back."""
        arena = self.arena
        return (
            arena is not None and self.trim_after >= 0
            and arena.idle_for() >= self.trim_after and arena.trimmable(KEEP_WARM) > 0
        )

    def trim(self) -> int:
        """Give the pages of the arena's free space back, but for ``KEEP_WARM`` bytes."""
        return self.arena.trim(KEEP_WARM) if self.arena is not None else 0

    def adopt(self, obj: Serialized) -> None:
        """Account for ``obj`` whose files another process of the session created.

        Idempotent. May spill least recently used objects (``obj`` itself only if it alone
        exceeds the capacity). Non-owner: no-op.
        """
        if not self.owner or not obj.locations:
            return
        self._track(obj, reserved=0)

    def touch(self, obj: Serialized) -> None:
        """Mark ``obj`` recently used, so it is spilled last."""
        if not self.owner:
            return
        key = id(obj)
        with self._lock:
            if key in self._lru:
                self._lru.move_to_end(key)

    def free(self, obj: Serialized) -> None:
        """Unlink ``obj``'s files (owner only). Safe to call twice."""
        if not self.owner or not obj.locations:
            return
        with self._lock:
            entry = self._entries.pop(id(obj), None)
            if entry is not None:
                for loc in obj.locations:
                    if loc is not None:
                        self._by_path.pop(loc[0], None)
                entry.freed = True
                if self._lru.pop(id(obj), None) is not None:
                    self._in_use -= entry.nbytes
            # Read under the lock: a concurrent spill updates locations under it too.
            paths = [loc[0] for loc in obj.locations if loc is not None]
        for path in paths:
            if os.path.basename(path).startswith(self._prefix):  # never anything not ours
                self._remove(path)

    def owns(self, path: str) -> bool:
        """Whether ``path`` is a file of this store (not another node's)."""
        return os.path.basename(path).startswith(self._prefix)

    def cache_path(self, path: str) -> str:
        """Where this store keeps its copy of another node's file ``path``."""
        return os.path.join(self.directory, f"{self._prefix}cache-{os.path.basename(path)}")

    def free_paths(self, paths: list[str]) -> None:
        """Free objects by their file paths (the cluster's head names objects that way).

        Files of this store are freed like :meth:`free`; copies cached from other nodes'
        files are removed.
        """
        for path in paths:
            if not self.owns(path):
                unlink(self.cache_path(path))
                continue
            with self._lock:
                key = self._by_path.get(path)
                entry = self._entries.get(key) if key is not None else None
            if entry is not None:
                self.free(entry.obj)
            else:
                unlink(path)
                unlink(os.path.join(self.spill_dir, os.path.basename(path)))

    def is_spilled(self, path: str) -> bool:
        return os.path.dirname(path) == self.spill_dir

    def in_use(self) -> int:
        """Bytes of tracked objects' files in ``directory`` (owner; 0 for workers)."""
        with self._lock:
            return self._in_use

    def cleanup(self) -> None:
        """Remove every file of the session and the spill directory (owner, at shutdown)."""
        if not self.owner:
            return
        with self._lock:
            for entry in self._entries.values():
                entry.freed = True
            self._entries.clear()
            self._by_path.clear()
            self._granted.clear()
            self._lru.clear()
            self._in_use = 0
        if self.arena is not None:
            self.arena.close()
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(self.directory):
                if name.startswith(self._prefix):
                    unlink(os.path.join(self.directory, name))
        import shutil

        shutil.rmtree(self.spill_dir, ignore_errors=True)

    def map_location(self, path: str, size: int) -> memoryview:
        """Map a located buffer read-only, following it to the spill directory if moved.

        A reader that got a location just before the owner spilled it finds the file
        under the same name in ``spill_dir``. An arena extent is viewed in the segment
        this process mapped once, pinned while the view lives.
        """
        try:
            if self._in_arena(path):
                return self._arena_reader().map(path, size)
            return map_readonly(path, size)
        except FileNotFoundError:
            return map_readonly(os.path.join(self.spill_dir, os.path.basename(path)), size)

    def close_reader(self) -> None:
        """A worker's store: let go of the arena's segments (in this process)."""
        if self.arena is None:
            forget_reader(self.directory, self.session)

    # ------------------------------------------------------------------ internals

    def _release_granted(self, grants: list[Grant]) -> None:
        with self._lock:
            self._in_use -= sum(grant[1] for grant in grants if grant is not None)
        for grant in grants:
            if grant is not None:
                self._remove(grant[0])

    def _ask_grants(self, sizes: list[int]) -> list[Grant]:
        """A worker: extents for these buffers from the owner (none if it cannot say)."""
        assert self.ask_extents is not None
        try:
            grants = self.ask_extents(sizes)
        except Exception:  # the driver is gone, or refused: files, as before
            return []
        if len(grants) != len(sizes):
            self._return_grants([grant[0] for grant in grants if grant is not None])
            return []
        return grants

    def _return_grants(self, paths: list[str]) -> None:
        """A worker gives back extents it was granted and will not use."""
        if paths and self.give_back is not None:
            with contextlib.suppress(Exception):  # the driver is gone: nothing to give back
                self.give_back(paths)

    def _arena_reader(self) -> ArenaReader:
        if self.arena is not None:
            return self.arena
        return reader_for(self.directory, self.session)

    def _in_arena(self, path: str) -> bool:
        """Whether ``path`` names an extent of the arena (once spilled, it names a file;
        a cluster node's copy of another node's extent is a file named after it)."""
        return (
            is_arena_path(path) and os.path.dirname(path) == self.directory
            and os.path.basename(path).startswith(f"{self._prefix}arena-")
        )

    def _remove(self, path: str) -> None:
        """Free one location: release an arena extent, unlink a file."""
        if self._in_arena(path):
            if self.arena is not None:
                self.arena.release(path)
        else:
            unlink(path)

    def _write(self, path: str, raw: memoryview) -> None:
        """Create ``path``, reserve its space, copy ``raw`` in once with ``pwrite``.

        ``pwrite`` lets the kernel copy into the file's pages directly: twice as fast as
        copying through a fresh mapping, which takes a page fault per 4 KiB page.
        """
        size = raw.nbytes
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            try:
                reserve(fd, size)
            except OSError as exc:
                full = full_store_error(
                    f"a buffer of {size} bytes ({_human(size)})", self.directory, exc
                )
                if full is not None:
                    raise full from exc
                raise
            offset = 0
            while offset < size:
                offset += os.pwrite(fd, raw[offset:offset + WRITE_STEP], offset)
        except BaseException:
            os.close(fd)
            unlink(path)
            raise
        os.close(fd)

    def _make_room(self, incoming: int) -> None:
        """Reserve ``incoming`` bytes of capacity, spilling LRU objects to make room."""
        with self._lock:
            self._in_use += incoming
            victims = self._pop_victims()
        try:
            self._spill_all(victims)
        except OSError as exc:
            with self._lock:
                self._in_use -= incoming
            raise ObjectStoreFullError(
                f"The object store is full ({_human(self.capacity)}) and spilling to "
                f"{self.spill_dir} failed: {exc}"
            ) from exc

    def _track(self, obj: Serialized, reserved: int) -> None:
        """Start (or update) accounting for ``obj``; spill others if over capacity."""
        nbytes = self._shm_bytes(obj)
        key = id(obj)
        with self._lock:
            if self._granted:  # a worker's extents: counted since they were granted
                for loc in obj.locations or ():
                    granted = self._granted.pop(loc[0], None) if loc is not None else None
                    if granted is not None:
                        reserved += granted[1]
            self._in_use += nbytes - reserved
            entry = self._entries.get(key)  # holds obj alive, so its id is not reused
            if entry is not None:
                if key in self._lru:
                    self._in_use -= entry.nbytes
                entry.nbytes = nbytes
            else:
                entry = self._entries[key] = _Entry(obj, nbytes)
                for loc in obj.locations or ():
                    if loc is not None:
                        self._by_path[loc[0]] = key
            if nbytes:
                self._lru[key] = entry
                self._lru.move_to_end(key)
            else:
                self._lru.pop(key, None)
            victims = self._pop_victims()
        try:
            self._spill_all(victims)
        except OSError as exc:
            # The bytes are already in shared memory; staying over capacity beats failing.
            warnings.warn(
                f"actorlib: spilling objects to {self.spill_dir} failed ({exc}); the "
                f"object store is over its capacity of {_human(self.capacity)}",
                RuntimeWarning,
                stacklevel=3,
            )

    def _pop_victims(self) -> list[_Entry]:
        """Least recently used entries to spill until within capacity. Hold the lock."""
        victims = []
        while self._in_use > self.capacity and self._lru:
            _, entry = self._lru.popitem(last=False)
            self._in_use -= entry.nbytes
            victims.append(entry)
        return victims

    def _spill_all(self, victims: list[_Entry]) -> None:
        for n, entry in enumerate(victims):
            try:
                self._spill(entry)
            except OSError:
                with self._lock:  # put the unspilled ones back, oldest first
                    for back in reversed(victims[n:]):
                        if not back.freed and self._entries.get(id(back.obj)) is back:
                            back.nbytes = self._shm_bytes(back.obj)
                            self._lru[id(back.obj)] = back
                            self._lru.move_to_end(id(back.obj), last=False)
                            self._in_use += back.nbytes
                raise

    def _spill(self, entry: _Entry) -> None:
        """Move an object's files to disk; readers' existing mappings stay valid."""
        obj = entry.obj
        locations = obj.locations or []
        private_dir(self.spill_dir, "spill directory", fix="set TMPDIR")
        for i, loc in enumerate(locations):
            if loc is None or os.path.dirname(loc[0]) != self.directory:
                continue
            src, size = loc
            dst = os.path.join(self.spill_dir, os.path.basename(src))
            partial = dst + ".partial"  # renamed when complete: never map half a copy
            try:
                if is_arena_path(src):
                    with self._lock:
                        if entry.freed:
                            continue
                        source = obj.buffers[i]  # our pinned view: valid until we drop it
                    _write_file(partial, source)
                else:
                    import shutil

                    shutil.copyfile(src, partial)
            except FileNotFoundError:  # freed meanwhile
                unlink(partial)
                continue
            except OSError:
                unlink(partial)
                raise
            os.rename(partial, dst)
            view = map_readonly(dst, size)
            with self._lock:
                if entry.freed:
                    moved = False
                else:
                    locations[i] = (dst, size)
                    # Drop our mapping of the shm file: frees memory.
                    cast("list[Any]", obj.buffers)[i] = view
                    moved = True
            if moved:
                self._remove(src)
            else:
                unlink(dst)
        with self._lock:
            entry.nbytes = 0

    def _shm_bytes(self, obj: Serialized) -> int:
        """Bytes of ``obj``'s located buffers that live in ``directory``."""
        return sum(
            loc[1]
            for loc in obj.locations or ()
            if loc is not None and os.path.dirname(loc[0]) == self.directory
        )


def _trim_after() -> float:
    value = os.environ.get("ACTORLIB_ARENA_TRIM_S")
    if value is None or value == "":
        return TRIM_AFTER_S
    try:
        return float(value)
    except ValueError:
        raise ValueError(
            f"ACTORLIB_ARENA_TRIM_S must be a number of seconds (negative: never), got {value!r}"
        ) from None


def _write_file(path: str, data: Any) -> None:
    """Write ``data`` (a buffer) into a new file ``path``."""
    view = byte_view(data)
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        offset = 0
        while offset < view.nbytes:
            offset += os.pwrite(fd, view[offset:offset + WRITE_STEP], offset)
    finally:
        os.close(fd)
