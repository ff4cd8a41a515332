"""Unit tests of the shared-memory object store (backends/process/shm_store.py).

Most tests build the store on a private directory under ``tmp_path``; one uses the real
``/dev/shm`` through ``for_driver`` and cleans up (the autouse leak check verifies it).
These test the store's files (``arena=False``): what workers write, and where the owner's
buffers go when the arena cannot take them. The arena itself is tested in test_arena.py.
"""

from __future__ import annotations

import errno
import gc
import mmap
import os
import pickle
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

from actorlib.backends.process import shm_files, shm_store
from actorlib.backends.process.shm_store import SharedMemoryStore
from actorlib.core.serialization import Serialized, deserialize, serialize
from actorlib.exceptions import ObjectStoreFullError

MB = 1024 * 1024


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[str, str]:
    """A private 'shm' directory and spill directory."""
    shm = tmp_path / "shm"
    shm.mkdir()
    return str(shm), str(tmp_path / "spillroot" / "spill")


@pytest.fixture
def store(dirs: tuple[str, str]) -> Iterator[SharedMemoryStore]:
    directory, spill = dirs
    s = SharedMemoryStore("1-abcd", directory, 512 * MB, owner=True, spill_dir=spill, arena=False)
    yield s
    s.cleanup()


def _mapped_ranges(path: str) -> list[tuple[int, int]]:
    """Address ranges of this process mapping ``path`` (Linux /proc/self/maps)."""
    ranges = []
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and parts[5].strip() == path:
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                ranges.append((lo, hi))
    return ranges


def _address(arr: np.ndarray) -> int:
    return int(arr.__array_interface__["data"][0])


def _path(obj: Serialized) -> str:
    """Where the first buffer of a sealed object lives."""
    assert obj.locations is not None and obj.locations[0] is not None
    return obj.locations[0][0]


def _files(directory: str) -> list[str]:
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


needs_proc = pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs /proc")


# --------------------------------------------------------------------------- basics


@needs_proc
def test_seal_round_trip_is_zero_copy(store: SharedMemoryStore) -> None:
    arr = np.arange(1_000_000, dtype=np.float64)
    obj = store.seal(serialize(arr))
    assert obj.locations is not None
    path, size = obj.locations[0]
    assert size == arr.nbytes
    assert os.path.dirname(path) == store.directory
    assert os.path.basename(path).startswith("actorlib-1-abcd-")
    assert os.stat(path).st_mode & 0o777 == 0o600
    arr[0] = -1.0  # the producer may mutate its array after seal
    out = deserialize(obj)
    np.testing.assert_array_equal(out[1:], arr[1:])
    assert out[0] == 0.0
    assert not out.flags.writeable
    lo, hi = _mapped_ranges(path)[0]
    assert lo <= _address(out) < hi  # the array's memory is the file's mapping
    assert store.in_use() == arr.nbytes


@needs_proc
def test_mapping_a_large_object_does_not_grow_resident_memory(store: SharedMemoryStore) -> None:
    arr = np.ones(200 * MB, dtype=np.uint8)
    obj = store.seal(serialize(arr))
    del arr
    wire = pickle.dumps(obj)
    del obj
    gc.collect()
    rss_before = psutil.Process().memory_info().rss
    received = pickle.loads(wire)
    out = deserialize(received)
    rss_after = psutil.Process().memory_info().rss
    assert out.nbytes == 200 * MB
    assert rss_after - rss_before < 20 * MB
    assert out[12345] == 1  # touching one page is fine


def test_pickled_sealed_object_maps_the_same_file(store: SharedMemoryStore) -> None:
    arr = np.arange(100_000, dtype=np.int64)
    obj = store.seal(serialize({"a": arr, "small": 1}))
    wire = pickle.dumps(obj)
    assert len(wire) < 4096  # the buffer travels by path only
    copy = pickle.loads(wire)
    assert copy.locations == obj.locations
    out = deserialize(copy)
    np.testing.assert_array_equal(out["a"], arr)
    # Write to the file through a separate mapping: both readers see it, so both map it.
    path, size = obj.locations[0]
    fd = os.open(path, os.O_RDWR)
    try:
        with mmap.mmap(fd, size) as m:
            m[0:8] = np.int64(777).tobytes()
    finally:
        os.close(fd)
    assert deserialize(obj)["a"][0] == 777
    assert out["a"][0] == 777


def test_objects_without_buffers_are_untouched(store: SharedMemoryStore) -> None:
    obj = serialize([1, 2, 3])
    assert store.seal(obj) is obj
    assert obj.locations is None
    assert store.in_use() == 0
    assert _files(store.directory) == []


def test_fortran_order_and_reference_cycles(store: SharedMemoryStore) -> None:
    """Sealed views inside a reference cycle must not upset the garbage collector."""

    class Holder:
        me: Any
        obj: Serialized
        value: Any

    for _ in range(5):
        arr = np.asfortranarray(np.arange(60_000, dtype=np.float64).reshape(300, 200))
        obj = serialize(arr)
        holder = Holder()
        holder.__dict__.update(me=holder, obj=store.seal(obj), value=deserialize(obj))
        np.testing.assert_array_equal(holder.value, arr)
        store.free(obj)
        del holder, obj
    gc.collect()


def test_free_unlinks_and_tolerates_a_second_call(store: SharedMemoryStore) -> None:
    obj = store.seal(serialize(np.zeros(100_000)))
    path = _path(obj)
    assert os.path.exists(path)
    store.free(obj)
    assert not os.path.exists(path)
    assert store.in_use() == 0
    store.free(obj)
    assert store.in_use() == 0


def test_worker_store_seals_and_owner_adopts_and_frees(store: SharedMemoryStore) -> None:
    worker = SharedMemoryStore.for_worker(store.config())
    assert not worker.owner and worker.directory == store.directory
    obj = worker.seal(serialize(np.ones(50_000)))
    assert store.in_use() == 0 and worker.in_use() == 0
    worker.free(obj)  # non-owner: a no-op
    arrived = pickle.loads(pickle.dumps(obj))
    store.adopt(arrived)
    store.adopt(arrived)  # idempotent
    assert store.in_use() == 400_000
    store.free(arrived)
    assert store.in_use() == 0
    assert _files(store.directory) == []


def test_cleanup_removes_everything(dirs: tuple[str, str]) -> None:
    directory, spill = dirs
    owner = SharedMemoryStore("1-abcd", directory, 1 * MB, owner=True, spill_dir=spill, arena=False)
    worker = SharedMemoryStore.for_worker(owner.config())
    other = os.path.join(directory, "actorlib-1-ffff-1-1")  # another live session: kept
    Path(other).write_bytes(b"x")
    objs = [owner.seal(serialize(np.ones(50_000))) for _ in range(4)]  # over capacity: spills
    owner.adopt(pickle.loads(pickle.dumps(worker.seal(serialize(np.ones(50_000))))))
    assert os.path.isdir(spill)
    owner.cleanup()
    assert _files(directory) == ["actorlib-1-ffff-1-1"]
    assert not os.path.exists(spill)
    assert owner.in_use() == 0
    for obj in objs:
        owner.free(obj)  # after cleanup: harmless


# --------------------------------------------------------------------------- full store


@pytest.mark.parametrize("arena", [False, True])
def test_object_larger_than_capacity(dirs: tuple[str, str], arena: bool) -> None:
    directory, spill = dirs
    s = SharedMemoryStore("1-abcd", directory, 1_000_000, owner=True, spill_dir=spill, arena=arena)
    with pytest.raises(ObjectStoreFullError) as info:
        s.seal(serialize(np.zeros(200_000)))  # 1_600_000 bytes
    assert "1600000" in str(info.value) and "1000000" in str(info.value)
    assert _files(directory) == []
    assert s.in_use() == 0


def test_enospc_raises_and_leaves_nothing(
    store: SharedMemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int, offset: int, size: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full)
    obj = serialize(np.zeros(100_000))
    with pytest.raises(ObjectStoreFullError) as info:
        store.seal(obj)
    assert "800000" in str(info.value) and store.directory in str(info.value)
    assert _files(store.directory) == []
    assert store.in_use() == 0
    assert obj.locations is None  # untouched: still usable from the heap
    np.testing.assert_array_equal(deserialize(obj), np.zeros(100_000))


def test_spills_least_recently_used_when_over_capacity(dirs: tuple[str, str]) -> None:
    directory, spill = dirs
    s = SharedMemoryStore("1-abcd", directory, 2_000_000, owner=True, spill_dir=spill, arena=False)
    try:
        a_val, b_val, c_val = (np.full(100_000, float(i)) for i in range(3))  # 800 KB each
        a = s.seal(serialize(a_val))
        b = s.seal(serialize(b_val))
        early_reader = deserialize(pickle.loads(pickle.dumps(a)))  # maps a's shm file
        s.touch(a)  # now b is the least recently used
        assert not os.path.exists(spill)  # created lazily
        c = s.seal(serialize(c_val))
        assert os.path.dirname(_path(b)) == spill
        assert os.path.dirname(_path(a)) == directory
        assert s.in_use() == 1_600_000
        np.testing.assert_array_equal(deserialize(b), b_val)
        np.testing.assert_array_equal(deserialize(pickle.loads(pickle.dumps(b))), b_val)
        # An adopted object pushes out the next oldest (a), whose early reader still works.
        worker = SharedMemoryStore.for_worker(s.config())
        d = pickle.loads(pickle.dumps(worker.seal(serialize(np.full(100_000, 3.0)))))
        s.adopt(d)
        assert os.path.dirname(_path(a)) == spill
        np.testing.assert_array_equal(early_reader, a_val)
        np.testing.assert_array_equal(deserialize(pickle.loads(pickle.dumps(a))), a_val)
        assert sorted(_files(directory)) == sorted(
            os.path.basename(_path(o)) for o in (c, d)
        )
        # A reader holding a's old location follows it to the spill directory.
        old_path = os.path.join(directory, os.path.basename(_path(a)))
        view = s.map_location(old_path, 800_000)
        assert np.frombuffer(view, dtype=np.float64)[0] == 0.0
        del view
        for o in (a, b, c, d):
            s.free(o)
        assert _files(directory) == [] and _files(spill) == []
        assert s.in_use() == 0
    finally:
        s.cleanup()


# --------------------------------------------------------------------------- lifecycle


def test_stale_files_of_dead_drivers_are_removed(dirs: tuple[str, str]) -> None:
    directory, spill = dirs
    spill_root = os.path.dirname(spill)
    os.makedirs(spill_root)
    dead = _dead_pid()
    live = os.getpid()
    stale = [
        os.path.join(directory, f"actorlib-{dead}-0a0a-7-1"),
        os.path.join(spill_root, f"actorlib-{dead}-0a0a-spill"),
    ]
    kept = [
        os.path.join(directory, f"actorlib-{live}-0b0b-7-1"),
        os.path.join(directory, "actorlib-objects-1000"),
        os.path.join(directory, "unrelated"),
    ]
    Path(stale[0]).write_bytes(b"x")
    os.makedirs(stale[1])
    Path(stale[1], f"actorlib-{dead}-0a0a-7-2").write_bytes(b"y")
    for p in kept:
        Path(p).write_bytes(b"z")
    s = SharedMemoryStore("1-abcd", directory, MB, owner=True, spill_dir=spill, arena=False)
    assert not any(os.path.exists(p) for p in stale)
    assert all(os.path.exists(p) for p in kept)
    s.cleanup()


def test_for_driver_on_dev_shm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    if not os.path.isdir(shm_store.SHM_DIR) or shm_store._free_bytes(
        shm_store.SHM_DIR
    ) < shm_store.MIN_SHM_FREE:
        pytest.skip("no usable /dev/shm here")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # keep the spill root private
    s = SharedMemoryStore.for_driver(None)
    try:
        assert s.owner and s.directory == shm_store.SHM_DIR
        assert s.session.startswith(f"{os.getpid()}-")
        assert 0 < s.capacity <= shm_store._free_bytes(shm_store.SHM_DIR)
        assert s.spill_dir.startswith(str(tmp_path)) and s.session in s.spill_dir
        obj = s.seal(serialize(np.arange(100_000)))
        np.testing.assert_array_equal(deserialize(obj), np.arange(100_000))
        with pytest.raises(ValueError, match=r"object_store_memory=\d+ bytes .* than the \d+"):
            SharedMemoryStore.for_driver(10**18)
    finally:
        s.cleanup()
    assert not [n for n in os.listdir(s.directory) if n.startswith(f"actorlib-{s.session}-")]


def test_small_dev_shm_falls_back_to_disk_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real_statvfs = os.statvfs
    fake_shm = tmp_path / "fake-shm"
    fake_shm.mkdir()

    def statvfs(path: Any) -> os.statvfs_result:
        st = real_statvfs(path)
        if os.fspath(path) == str(fake_shm):
            fields = list(st)
            fields[4] = (64 * MB) // st.f_frsize  # f_bavail: Docker's default 64 MiB
            return os.statvfs_result(fields)
        return st

    monkeypatch.setattr(os, "statvfs", statvfs)
    monkeypatch.setattr(shm_store, "SHM_DIR", str(fake_shm))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.warns(RuntimeWarning, match="disk-backed"):
        s = SharedMemoryStore.for_driver(None)
    try:
        assert s.directory.startswith(str(tmp_path))
        assert s.directory != str(fake_shm)
        obj = s.seal(serialize(np.ones(100_000)))
        assert _path(obj).startswith(s.directory)
    finally:
        s.cleanup()
    assert _files(str(fake_shm)) == []


# --------------------------------------------------------------------------- threads


def test_seal_from_many_threads(dirs: tuple[str, str]) -> None:
    directory, spill = dirs
    s = SharedMemoryStore("1-abcd", directory, 8 * MB, owner=True, spill_dir=spill, arena=False)
    results: list[tuple[float, Serialized]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(k: int) -> None:
        try:
            for j in range(10):
                value = float(k * 100 + j)
                obj = s.seal(serialize(np.full(20_000, value)))  # 160 KB: some spill
                if j % 3 == 0:
                    s.touch(obj)
                with lock:
                    results.append((value, obj))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(results) == 80
        paths = {_path(obj) for _, obj in results}
        assert len(paths) == 80
        for value, obj in results:
            assert deserialize(obj)[0] == value
        assert s.in_use() <= s.capacity
        in_shm = [o for _, o in results if os.path.dirname(_path(o)) == directory]
        assert s.in_use() == 160_000 * len(in_shm)
        for _, obj in results[::2]:
            s.free(obj)
        threads = [
            threading.Thread(target=s.free, args=(obj,)) for _, obj in results[1::2]
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert s.in_use() == 0
        assert _files(directory) == [] and _files(spill) == []
    finally:
        s.cleanup()


# --------------------------------------------------------------------------- private dirs


@pytest.mark.parametrize("planted", ["open", "foreign", "symlink"])
def test_a_spill_directory_made_in_advance_by_someone_else_is_refused(
    dirs: tuple[str, str], tmp_path: Path, planted: str
) -> None:
    """Spilled bytes never go to a directory another local user prepared (or points at)."""
    directory, spill = dirs
    os.makedirs(os.path.dirname(spill), exist_ok=True)
    if planted == "symlink":
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir(mode=0o700)
        os.symlink(elsewhere, spill)
    else:
        os.mkdir(spill)
        os.chmod(spill, 0o777 if planted == "open" else 0o700)
        if planted == "foreign":
            os.chown(spill, 65534, 65534)
    s = SharedMemoryStore("1-abcd", directory, 1_000_000, owner=True, spill_dir=spill, arena=False)
    try:
        s.seal(serialize(np.zeros(100_000)))
        with pytest.raises(ObjectStoreFullError, match="refusing the actorlib spill directory"):
            for i in range(3):  # over capacity: the oldest must spill
                s.seal(serialize(np.full(100_000, float(i))))
    finally:
        s.cleanup()
        if planted == "symlink":
            assert os.listdir(tmp_path / "elsewhere") == []  # nothing went through the link
            os.unlink(spill)


def test_a_file_older_than_the_live_process_under_its_pid_is_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pids wrap: a killed daemon's file whose pid now names a newer, unrelated process
    is swept all the same; a file made by that process is not."""
    before = time.time()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        started = shm_files.started_at(sleeper.pid)
        # (Not psutil's start time: psutil keeps the boot time it read at import, and a
        # step of the wall clock since, 7 s once in CI, puts its answer off by the step.)
        assert started is not None
        assert before - shm_files.START_SLACK_S <= started <= time.time() + shm_files.START_SLACK_S
        older = tmp_path / f"actorlib-{sleeper.pid}-0a0a-host"
        older.write_bytes(b"x")
        later = tmp_path / f"actorlib-{os.getpid()}-0b0b-host"
        later.write_bytes(b"y")
        real = shm_files.started_at

        def started_at(pid: int) -> float | None:  # as if it started after the file
            if pid == sleeper.pid:
                return older.stat().st_ctime + 2 * shm_files.START_SLACK_S
            return real(pid)

        assert shm_files.remove_stale(str(tmp_path)) == []  # the sleeper is older
        monkeypatch.setattr(shm_files, "started_at", started_at)
        assert shm_files.remove_stale(str(tmp_path)) == [str(older)]
        assert later.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_zombies_files_are_stale(tmp_path: Path) -> None:
    """A daemon killed with SIGKILL is a zombie until reaped: its files go at once."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        path = tmp_path / f"actorlib-{child.pid}-0a0a-host"
        path.write_bytes(b"x")
        assert shm_files.remove_stale(str(tmp_path)) == []
        child.kill()
        deadline = time.monotonic() + 10
        while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert shm_files.remove_stale(str(tmp_path)) == [str(path)]
    finally:
        child.kill()
        child.wait()
