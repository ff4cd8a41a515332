"""Unit tests of the object arena (backends/process/arena.py) and the store's use of it.

Each test builds a store on a private directory under ``tmp_path``; readers in other
processes are plain interpreters that attach the arena as a worker does
(``SharedMemoryStore.for_worker``).
"""

from __future__ import annotations

import gc
import hashlib
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from testkit import T, ctrl_c_elsewhere, wait_until

from actorlib.backends.process import arena as arena_mod
from actorlib.backends.process import arena_segments
from actorlib.backends.process.arena import ALIGN, Arena, is_arena_path
from actorlib.backends.process.shm_store import SharedMemoryStore
from actorlib.core.serialization import (
    Serialized,
    deserialize,
    map_readonly,
    serialize,
    set_buffer_mapper,
)

MB = 1024 * 1024


def _new_store(tmp_path: Path, capacity: int) -> SharedMemoryStore:
    """An owner's store (arena on) in a private directory under ``tmp_path``."""
    (tmp_path / "shm").mkdir(exist_ok=True)
    spill = str(tmp_path / "spillroot" / "spill")
    return SharedMemoryStore("1-abcd", str(tmp_path / "shm"), capacity, owner=True,
                             spill_dir=spill)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SharedMemoryStore]:
    s = _new_store(tmp_path, 64 * MB)
    yield s
    s.cleanup()


@pytest.fixture
def small_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    """Segments of 1 MiB, so a test fills them with a few objects."""
    monkeypatch.setattr(arena_mod, "MIN_SEGMENT", MB)


def _digest(value: Any) -> str:
    return hashlib.sha256(memoryview(value).cast("B")).hexdigest()


def _seal(store: SharedMemoryStore, value: Any) -> Serialized:
    return store.seal(serialize(value))


def _received(store: SharedMemoryStore, obj: Serialized) -> Any:
    """``obj``'s value as a process of the session gets it: pickled, then unpickled."""
    set_buffer_mapper(store.map_location)
    try:
        return deserialize(pickle.loads(pickle.dumps(obj)))
    finally:
        set_buffer_mapper(map_readonly)


def _location(obj: Serialized) -> tuple[str, int]:
    assert obj.locations is not None and obj.locations[0] is not None
    return obj.locations[0]


def _offset(obj: Serialized) -> tuple[str, int]:
    """(segment, offset) of an object's first extent."""
    name = os.path.basename(_location(obj)[0])
    segment, _, rest = name.partition("@")
    return segment, int(rest.partition(".")[0])


# --------------------------------------------------------------------------- basics


def test_seal_writes_into_the_arena_and_reads_zero_copy(store: SharedMemoryStore) -> None:
    arr = np.random.default_rng(1).random(300_000)
    obj = _seal(store, arr)
    path, size = _location(obj)
    assert is_arena_path(path) and size == arr.nbytes
    assert _offset(obj)[1] % ALIGN == 0
    out = deserialize(obj)
    assert np.array_equal(out, arr) and not out.flags.writeable and not out.flags.owndata
    assert out.__array_interface__["data"][0] % 64 == 0  # aligned for numpy
    # A second reader of the location (another unpickling) sees the same pages.
    again = _received(store, obj)
    assert again.__array_interface__["data"][0] == out.__array_interface__["data"][0]
    assert store.in_use() == arr.nbytes
    assert [n for n in os.listdir(store.directory) if "-arena-" not in n] == []


def test_freed_extents_coalesce_and_are_reused(store: SharedMemoryStore) -> None:
    objs = [_seal(store, np.full(40_000, float(i))) for i in range(3)]  # 320,000 B each
    assert store.arena is not None
    mapped = store.arena.mapped()
    offsets = [_offset(o) for o in objs]
    for obj in objs:
        store.free(obj)
    del objs, obj
    gc.collect()
    # The three neighbours merged: one object as large as all of them fits where they were.
    big = _seal(store, np.zeros(3 * 40_000))
    assert _offset(big) == offsets[0]
    assert store.arena.mapped() == mapped
    store.free(big)


def test_a_viewed_extent_is_not_reused_until_its_views_die(store: SharedMemoryStore) -> None:
    obj = _seal(store, np.full(100_000, 7.0))
    first = _offset(obj)
    view = deserialize(obj)[10:20]  # a slice of the array still holds the pin
    store.free(obj)
    del obj
    gc.collect()
    for i in range(20):
        other = _seal(store, np.full(100_000, float(i)))
        assert _offset(other) != first
        store.free(other)
        del other
    assert np.all(view == 7.0)
    del view
    gc.collect()
    reused = _seal(store, np.full(100_000, 1.0))
    assert _offset(reused) == first
    store.free(reused)


def test_a_released_location_is_refused_not_misread(store: SharedMemoryStore) -> None:
    obj = _seal(store, np.ones(100_000))
    path, size = _location(obj)
    store.free(obj)
    with pytest.raises(FileNotFoundError):
        store.map_location(path, size)
    worker = SharedMemoryStore.for_worker(store.config())
    try:
        with pytest.raises(FileNotFoundError):
            worker.map_location(path, size)
    finally:
        worker.close_reader()


def test_bad_locations_are_errors(store: SharedMemoryStore) -> None:
    assert store.arena is not None
    other_session = os.path.join(store.directory, "actorlib-9-ffff-arena-0@0.1")
    assert store.arena.release(other_session) is False
    with pytest.raises(FileNotFoundError):
        store.map_location(os.path.join(store.directory, "actorlib-1-abcd-arena-0@0.99"), 10)


def test_an_object_larger_than_the_arena_can_hold_goes_to_a_file(tmp_path: Path) -> None:
    s = _new_store(tmp_path, 4 * MB)
    directory = s.directory
    try:
        assert s.arena is not None
        pinned = [deserialize(_seal(s, np.full(MB // 8 * 3, 1.0)))]  # 3 MiB, viewed
        obj = _seal(s, np.full(MB // 8 * 2, 2.0))  # 2 MiB: no room left in the arena
        assert not is_arena_path(_location(obj)[0])
        assert np.all(deserialize(obj) == 2.0)
        assert s.arena.mapped() <= s.capacity
        del pinned
    finally:
        s.cleanup()
    assert os.listdir(directory) == []


def test_growth_stays_within_capacity(tmp_path: Path, small_segments: None) -> None:
    s = _new_store(tmp_path, 8 * MB)
    try:
        assert s.arena is not None
        kept = [_seal(s, np.full(MB // 8, float(i))) for i in range(7)]
        assert all(is_arena_path(_location(o)[0]) for o in kept)
        assert s.arena.mapped() <= s.capacity
        for i, obj in enumerate(kept):
            assert np.all(deserialize(obj) == float(i))
    finally:
        s.cleanup()


# --------------------------------------------------------------------------- other processes

_READER = textwrap.dedent(
    """
    import hashlib, pickle, sys
    from actorlib.backends.process.shm_store import SharedMemoryStore
    from actorlib.core.serialization import deserialize, set_buffer_mapper
    config, blob = pickle.loads(bytes.fromhex(sys.argv[1])), bytes.fromhex(sys.argv[2])
    store = SharedMemoryStore.for_worker(config)
    set_buffer_mapper(store.map_location)
    value = deserialize(pickle.loads(blob))
    print(hashlib.sha256(memoryview(value).cast("B")).hexdigest(), value.flags.writeable,
          flush=True)
    for line in sys.stdin:  # "check": the digest again; "drop": let go of the view
        if line.strip() == "drop":
            del value
            print("dropped", flush=True)
        else:
            print(hashlib.sha256(memoryview(value).cast("B")).hexdigest(), flush=True)
    """
)


def _reader(store: SharedMemoryStore, obj: Serialized) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _READER, pickle.dumps(store.config()).hex(),
         pickle.dumps(obj).hex()],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )


def _ask(proc: subprocess.Popen[str], line: str) -> str:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()
    return proc.stdout.readline().strip()


@pytest.mark.slow
def test_another_process_view_pins_its_extent(store: SharedMemoryStore) -> None:
    arr = np.random.default_rng(2).random(200_000)
    obj = _seal(store, arr)
    first = _offset(obj)
    proc = _reader(store, obj)
    try:
        assert proc.stdout is not None
        digest, writeable = proc.stdout.readline().split()
        assert digest == _digest(arr) and writeable == "False"
        store.free(obj)
        del obj
        gc.collect()
        for i in range(30):  # many put/free cycles while the reader holds its view
            other = _seal(store, np.full(200_000, float(i)))
            assert _offset(other) != first
            store.free(other)
            del other
        assert _ask(proc, "check") == _digest(arr)
        assert _ask(proc, "drop") == "dropped"
        reused = _seal(store, np.zeros(200_000))
        assert _offset(reused) == first
        store.free(reused)
    finally:
        proc.kill()
        proc.communicate()  # and close the pipes


@pytest.mark.slow
def test_a_dead_process_pins_nothing(store: SharedMemoryStore) -> None:
    obj = _seal(store, np.ones(200_000))
    first = _offset(obj)
    proc = _reader(store, obj)
    assert proc.stdout is not None
    proc.stdout.readline()
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    store.free(obj)
    del obj  # our own view goes with it
    reused = _seal(store, np.zeros(200_000))
    assert _offset(reused) == first
    assert not [n for n in os.listdir(store.directory) if f"-pins-{proc.pid}" in n]
    store.free(reused)


# --------------------------------------------------------------------------- pressure


def test_spilled_and_restored_under_pressure(tmp_path: Path, small_segments: None) -> None:
    s = _new_store(tmp_path, 4 * MB)
    spill = s.spill_dir
    try:
        rng = np.random.default_rng(3)
        arrays = [rng.random(MB // 8) for _ in range(10)]  # 10 MiB through a 4 MiB store
        objs = [_seal(s, a) for a in arrays]
        assert s.in_use() <= s.capacity
        assert s.arena is not None and s.arena.mapped() <= s.capacity
        spilled = [o for o in objs if s.is_spilled(_location(o)[0])]
        assert spilled, "the oldest objects went to disk"
        # Every object reads back intact: spilled ones from disk, the rest from the arena,
        # here and through a pickled location (what another process receives).
        for a, o in zip(arrays, objs, strict=True):
            assert _digest(deserialize(o)) == _digest(a)
            assert _digest(_received(s, o)) == _digest(a)
        for o in objs:
            s.free(o)
        assert s.in_use() == 0
        assert os.listdir(spill) == []
    finally:
        s.cleanup()


def test_a_reader_of_a_just_spilled_extent_follows_it_to_disk(
    tmp_path: Path, small_segments: None
) -> None:
    s = _new_store(tmp_path, 2 * MB)
    try:
        old = np.random.default_rng(4).random(MB // 8)
        obj = _seal(s, old)
        stale = _location(obj)  # what a message in flight still names
        newer = [_seal(s, np.full(MB // 8, float(i))) for i in range(2)]  # spills ``obj``
        assert s.is_spilled(_location(obj)[0])
        assert _digest(s.map_location(*stale)) == _digest(old)
        for o in [obj, *newer]:
            s.free(o)
    finally:
        s.cleanup()


def test_cleanup_leaves_nothing_even_with_live_views(tmp_path: Path) -> None:
    s = _new_store(tmp_path, 64 * MB)
    directory = s.directory
    view = deserialize(_seal(s, np.full(100_000, 3.0)))
    s.cleanup()
    assert os.listdir(directory) == []
    assert np.all(view == 3.0)  # the mapping outlives the files


def test_arena_module_rejects_nothing_silently(tmp_path: Path) -> None:
    a = Arena(str(tmp_path), "1-abcd", 2 * MB)
    try:
        assert a.alloc(3 * MB) is None  # more than the capacity: the caller uses a file
        extent = a.alloc(10)
        assert extent is not None and extent.span == ALIGN
        a.write(extent, memoryview(b"0123456789"))
        assert bytes(a.view(extent)) == b"0123456789"
        assert a.release(extent.path) is True
        assert a.release(extent.path) is False  # twice: nothing happens
    finally:
        a.close()


def test_a_worker_maps_extents_before_its_store_is_configured(store: SharedMemoryStore) -> None:
    # A worker may decode a task naming an extent in the same read as its Init: the
    # location alone leads to the arena; a spilled extent's file is mapped as a file.
    arr = np.random.default_rng(5).random(100_000)
    obj = _seal(store, arr)
    path, size = _location(obj)
    try:
        view = arena_mod.map_early(path, size)
        assert _digest(view) == _digest(arr) and view.readonly
        del view
        spilled = os.path.join(store.spill_dir, os.path.basename(path))
        os.makedirs(store.spill_dir, mode=0o700)
        with open(spilled, "wb") as f:
            f.write(b"x" * size)
        assert bytes(arena_mod.map_early(spilled, size)[:3]) == b"xxx"
    finally:
        arena_mod.forget_reader(store.directory, store.session)
        store.free(obj)


# ------------------------------------------------------------- extents granted to workers


def _worker_store(owner: SharedMemoryStore, holder: int = 7) -> SharedMemoryStore:
    """A worker's store wired to ``owner`` as a worker's is through its driver link."""
    assert owner.config()["arena"] is True
    worker = SharedMemoryStore.for_worker(owner.config())
    worker.ask_extents = lambda sizes: owner.grant(holder, sizes, block=True)  # type: ignore[assignment]
    worker.give_back = lambda paths: owner.return_grants(holder, paths)
    return worker


def test_a_worker_writes_its_large_buffers_into_granted_extents(store: SharedMemoryStore) -> None:
    worker = _worker_store(store)
    arr = np.random.default_rng(9).random(512 * 1024)  # 4 MiB
    obj = worker.seal(serialize(arr))
    path, size = _location(obj)
    assert is_arena_path(path) and size == arr.nbytes
    assert store.granted() == 1 and store.in_use() >= arr.nbytes  # counted while granted
    sent = pickle.loads(pickle.dumps(obj))  # to the driver, as a result
    store.adopt(sent)
    assert store.granted() == 0 and store.in_use() == arr.nbytes
    out = _received(store, sent)
    assert _digest(out) == _digest(arr) and not out.flags.writeable
    assert not out.flags.owndata  # a view of the extent, no copy
    del out, obj
    gc.collect()
    store.free(sent)
    assert store.in_use() == 0 and store.arena is not None and store.arena.live() == []


def test_small_buffers_of_a_worker_stay_files(store: SharedMemoryStore) -> None:
    worker = _worker_store(store)
    obj = worker.seal(serialize(np.ones(100_000)))  # 800 kB: no round trip for it
    assert not is_arena_path(_location(obj)[0])
    assert store.granted() == 0
    os.unlink(_location(obj)[0])


def test_extents_of_a_holder_that_dies_are_freed(store: SharedMemoryStore) -> None:
    grants = store.grant(3, [2 * MB, 3 * MB], block=True)
    assert grants is not None and all(g is not None for g in grants)
    assert store.granted() == 2 and store.in_use() == 5 * MB
    store.holder_gone(3)  # killed mid-write: its extents were never sent
    assert store.granted() == 0 and store.in_use() == 0
    assert store.arena is not None and store.arena.live() == []
    for path, size in (g for g in grants if g is not None):
        with pytest.raises(FileNotFoundError):  # a stale location is refused, not misread
            store.arena.map(path, size)
    assert store.grant(3, [MB], block=True) == [None]  # a dead holder gets nothing
    again = store.grant(4, [2 * MB], block=True)  # the space is reused
    assert again is not None and again[0] is not None
    assert _offset_of(again[0][0]) == _offset_of(grants[0][0])  # type: ignore[index]
    store.holder_gone(4)


def _offset_of(path: str) -> tuple[str, int]:
    segment, _, rest = os.path.basename(path).partition("@")
    return segment, int(rest.partition(".")[0])


def test_a_worker_that_fails_mid_seal_gives_its_extents_back(
    store: SharedMemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = _worker_store(store)
    calls = []

    def broken(path: str, raw: memoryview) -> None:
        calls.append(path)
        if len(calls) == 2:
            raise OSError("the copy failed")
        original(path, raw)

    reader = arena_mod.reader_for(worker.directory, worker.session)
    original = reader.write_granted
    monkeypatch.setattr(reader, "write_granted", broken)
    value = [np.ones(MB // 8 * 2), np.ones(MB // 8 * 2)]  # two 2 MiB buffers
    with pytest.raises(OSError, match="the copy failed"):
        worker.seal(serialize(value))
    assert len(calls) == 2
    assert store.granted() == 0 and store.in_use() == 0
    assert store.arena is not None and store.arena.live() == []


def test_grant_on_the_loop_never_spills_or_grows(tmp_path: Path, small_segments: None) -> None:
    store = _new_store(tmp_path, 8 * MB)
    try:
        assert store.grant(1, [2 * MB], block=False) is None  # no segment yet: not here
        assert store.grant(1, [2 * MB], block=True) is not None  # off the loop: made
        assert store.grant(1, [7 * MB], block=False) is None  # would spill first
        assert store.grant(1, [20 * MB], block=True) == [None]  # never fits: a file
        assert store.granted() == 1
    finally:
        store.cleanup()
    assert store.granted() == 0
    assert not [n for n in os.listdir(tmp_path / "shm") if n.startswith("actorlib-")]


def test_returned_extents_of_another_holder_are_not_taken(store: SharedMemoryStore) -> None:
    grants = store.grant(1, [2 * MB], block=True)
    assert grants is not None and grants[0] is not None
    store.return_grants(2, [grants[0][0], "/dev/shm/not-an-extent"])  # not 2's: ignored
    assert store.granted() == 1
    store.return_grants(1, [grants[0][0]])
    assert store.granted() == 0 and store.in_use() == 0


# --------------------------------------------------------------------------- giving pages back


def _resident_bytes(store: SharedMemoryStore) -> int:
    """Bytes of the arena's segment files the kernel holds pages for."""
    shm = store.directory
    return sum(os.stat(os.path.join(shm, n)).st_blocks * 512 for n in os.listdir(shm)
               if "-arena-" in n and not n.endswith("-index"))


def test_trim_gives_free_pages_back_and_space_is_reused_intact(store: SharedMemoryStore) -> None:
    arena = store.arena
    assert arena is not None
    objs = [_seal(store, np.full(MB, float(i))) for i in range(3)]  # 8 MiB each
    assert _resident_bytes(store) >= arena.mapped() == 64 * MB  # pre-faulted
    kept = _seal(store, np.random.default_rng(4).random(MB))
    view = _received(store, kept)
    store.free(kept)  # freed but still viewed: pinned, keeps its pages
    for obj in objs:
        store.free(obj)
    del objs, obj  # the store's own views of them pin them too
    gc.collect()
    given = arena.trim(keep=0)
    assert given == 64 * MB - 8 * MB
    assert arena.resident() == 8 * MB
    assert _resident_bytes(store) <= 8 * MB + ALIGN
    assert _digest(view) == _digest(np.random.default_rng(4).random(MB))
    # Space given back is allocated again (populated again): bytes intact.
    arrays = [np.random.default_rng(10 + i).random(MB) for i in range(4)]
    again = [_seal(store, a) for a in arrays]
    for obj, a in zip(again, arrays, strict=True):
        assert _digest(_received(store, obj)) == _digest(a)
    assert arena.resident() >= 8 * MB + 4 * 8 * MB
    for obj in again:
        store.free(obj)
    del view, kept
    gc.collect()


def test_trim_keeps_the_space_first_fit_takes_warm(store: SharedMemoryStore) -> None:
    arena = store.arena
    assert arena is not None
    store.free(_seal(store, np.ones(MB)))
    assert arena.trimmable(16 * MB) == 48 * MB
    assert arena.trim(keep=16 * MB) == 48 * MB
    assert arena.trimmable(16 * MB) == 0 and arena.resident() == 16 * MB
    # The core loop never populates: only warm space is granted without blocking.
    assert store.grant(1, [8 * MB], block=False) is not None
    assert store.grant(1, [16 * MB], block=False) is None
    assert store.grant(1, [16 * MB], block=True) not in (None, [None])
    # [8, 24) MiB: its cold half [16, 24) was populated again, the rest stays given back.
    assert arena.resident() == 24 * MB and _resident_bytes(store) >= 24 * MB - ALIGN
    store.holder_gone(1)


def test_space_given_back_is_reserved_again_before_use(
    store: SharedMemoryStore, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Others may fill /dev/shm after a trim: taking the space again reserves it first,
    and a full tmpfs then leaves everything as it was (a write into a hole would be
    SIGBUS, not an error)."""
    import errno

    arena = store.arena
    assert arena is not None
    store.free(_seal(store, np.ones(MB)))
    assert arena.trim(keep=0) == 64 * MB
    resident = arena.resident()

    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(arena_mod, "reserve_range", full)
    assert arena.alloc(8 * MB) is None
    assert arena.resident() == resident and arena.live() == []
    monkeypatch.undo()
    extent = arena.alloc(8 * MB)  # the same space, now reserved and populated
    assert extent is not None and arena.resident() == resident + 8 * MB
    data = np.random.default_rng(5).random(MB)
    arena.write(extent, memoryview(data).cast("B"))
    assert _digest(arena.view(extent)) == _digest(data)
    assert arena.release(extent.path)


def test_the_store_trims_only_after_it_was_idle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACTORLIB_ARENA_TRIM_S", "3600")
    store = _new_store(tmp_path, 256 * MB)
    try:
        assert store.trim_after == 3600
        obj = _seal(store, np.ones(16 * MB))  # a 128 MiB segment
        store.free(obj)
        del obj
        gc.collect()
        assert not store.trim_due()  # used within the hour
        store.trim_after = 0.0  # idle long enough now
        assert store.trim_due()
        assert store.trim() == 128 * MB - 64 * MB  # KEEP_WARM stays
        assert not store.trim_due()  # nothing left to give back
        store.trim_after = -1.0  # never
        store.free(_seal(store, np.ones(16 * MB)))
        gc.collect()
        assert not store.trim_due()
    finally:
        store.cleanup()


@pytest.mark.parametrize("bad", ["soon", "1s"])
def test_a_bad_trim_delay_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    monkeypatch.setenv("ACTORLIB_ARENA_TRIM_S", bad)
    with pytest.raises(ValueError, match="ACTORLIB_ARENA_TRIM_S must be a number"):
        _new_store(tmp_path, 64 * MB)


# --------------------------------------------------------------------------- Ctrl-C


def _steps_held_on(thread_name: str, monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Segment steps taken by the thread named ``thread_name`` wait until the event is
    set (a low-priority thread the machine's load starves); others run as usual."""
    release = threading.Event()
    real = arena_segments.populate

    def held(mapped: Any, size: int, start: int = 0) -> None:
        if threading.current_thread().name == thread_name:
            release.wait(T)
        real(mapped, size, start)

    monkeypatch.setattr(arena_segments, "populate", held)
    return release


def _growing_ahead(store: SharedMemoryStore) -> tuple[Any, Any, threading.Thread]:
    """A put filling most of the first segment, and the arena's thread making the next
    one, its first step held (see ``_steps_held_on``): (arena, that put, the thread)."""
    arena = store.arena
    assert arena is not None
    first = _seal(store, np.ones(7 * MB // 8))  # most of the first segment: grows ahead
    ahead = arena._growing
    assert ahead is not None
    wait_until(lambda: arena._maker is not None and arena._maker._busy == 1)
    return arena, first, ahead


def _the_segment_made_ahead_serves_the_next_put(store: SharedMemoryStore, arena: Any,
                                                first: Any) -> None:
    assert arena.mapped() == 16 * MB  # the segment made ahead was added
    second = _seal(store, np.full(6 * MB // 8, 2.0))
    assert np.all(deserialize(second) == 2.0) and np.all(deserialize(first) == 1.0)
    store.free(first)
    store.free(second)


def test_ctrl_c_reaches_a_main_thread_waiting_for_a_segment_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The main thread, having taken its share of a segment's steps, waits in ``finish``
    for a step another thread takes: Ctrl-C gets in at once (before, only once that step
    ended), and the segment is given up: its file goes at once, its map with that step."""
    release = _steps_held_on("step-taker", monkeypatch)
    path = str(tmp_path / "segment")
    maker = arena_segments.SegmentMaker(path, 2 * arena_segments.POPULATE_STEP)
    taker = threading.Thread(target=maker.work, name="step-taker")
    taker.start()
    wait_until(lambda: maker._busy == 1)
    try:
        with ctrl_c_elsewhere("finish", "arena_segments.py", release.set):
            maker.work()  # the other step
            maker.finish()
        assert not os.path.exists(path)
    finally:
        release.set()
        taker.join(T)
    assert maker.mapped.closed and maker._fd == -1


def test_ctrl_c_reaches_a_put_waiting_for_the_segment_made_ahead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A large ``put`` on the driver's main thread that needs the segment the arena is
    making ahead helps make it, then waits for the arena's thread: Ctrl-C gets in at
    once (before, only once that thread was done); that thread goes on, its segment is
    added, and the next put uses it; nothing is left behind after cleanup."""
    monkeypatch.setattr(arena_mod, "MIN_SEGMENT", 8 * MB)  # two steps
    release = _steps_held_on("actorlib-arena", monkeypatch)
    store = _new_store(tmp_path, 64 * MB)
    try:
        arena, first, ahead = _growing_ahead(store)
        with ctrl_c_elsewhere("join", "interruptible.py", release.set):
            _seal(store, np.ones(6 * MB // 8))  # does not fit: needs the next segment
        ahead.join(T)
        _the_segment_made_ahead_serves_the_next_put(store, arena, first)
    finally:
        release.set()
        store.cleanup()
    assert os.listdir(tmp_path / "shm") == []


def test_ctrl_c_in_the_main_thread_s_own_step_reaches_it_and_the_segment_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A large ``put`` on the main thread helps make the segment the arena makes ahead,
    and Ctrl-C lands in the middle of its own step: the put ends with KeyboardInterrupt
    (before, the step failed the whole segment and swallowed the interrupt, the put went
    on, and the arena's thread died with a KeyboardInterrupt traceback); the step goes
    back to the arena's thread, which makes the segment, and the next put uses it."""
    monkeypatch.setattr(arena_mod, "MIN_SEGMENT", 8 * MB)  # two steps
    release = _steps_held_on("actorlib-arena", monkeypatch)
    held = arena_segments.populate
    interrupted: list[int] = []
    armed = threading.Event()  # from the put that helps the segment made ahead

    def interrupt_main_once(mapped: Any, size: int, start: int = 0) -> None:
        main = threading.current_thread() is threading.main_thread()
        if main and armed.is_set() and not interrupted:
            interrupted.append(start)
            raise KeyboardInterrupt  # as the SIGINT handler would, between two bytecodes
        held(mapped, size, start)

    monkeypatch.setattr(arena_segments, "populate", interrupt_main_once)
    thread_errors: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: thread_errors.append(args.exc_value))
    store = _new_store(tmp_path, 64 * MB)
    try:
        arena, first, ahead = _growing_ahead(store)
        armed.set()
        with pytest.raises(KeyboardInterrupt):
            _seal(store, np.ones(6 * MB // 8))  # needs the next segment: helps, interrupted
        assert interrupted
        release.set()
        ahead.join(T)
        assert not thread_errors
        _the_segment_made_ahead_serves_the_next_put(store, arena, first)
    finally:
        release.set()
        store.cleanup()
    assert os.listdir(tmp_path / "shm") == []
