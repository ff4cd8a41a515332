"""The cluster's data plane, with a head and two nodes as real processes on loopback.

Objects made on one node and read on the other (checksummed, over parallel streams when
large, received into the reading node's arena), a driver on the nodes' machine reading and
putting zero-copy through a node's store (never the head's memory), a driver on another
machine (simulated) reading and putting over the network, copies cached on a node counted
against its capacity and evicted, bad requests refused, and nothing left in ``/dev/shm``
when the nodes stop. Two object servers in this process check every byte of transfers
around the chunk and stream boundaries, and that a transfer cut off by its serving node
leaves no partial copy and raises ``ObjectLostError``.
"""

from __future__ import annotations

import copy
import gc
import glob
import hashlib
import os
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from testkit import wait_until

import actorlib
from actorlib import exceptions, session
from actorlib.backends.cluster import daemons, object_server, objects, transfer
from actorlib.backends.cluster.node_store import NodeStore
from actorlib.backends.cluster.object_server import ObjectServer
from actorlib.backends.transport import tokens
from actorlib.cluster_cli import query_status
from actorlib.core.serialization import Serialized

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the cluster's nodes run the process backend"
)

MiB = 2**20
RIGHT_STORE = 160 * MiB  # room for two 64 MiB copies, not three


@dataclass
class Pair:
    address: str
    procs: dict[str, Any]

    def session(self, name: str) -> str:
        """The store session of node ``name`` (it starts with the node daemon's pid)."""
        pid = str(self.procs[name].pid)
        sessions = [s for s in session.client().directory if s.split("-")[0] == pid]  # type: ignore[attr-defined]
        assert len(sessions) == 1, sessions
        return sessions[0]

    def directory(self, name: str) -> str:
        """Where node ``name`` keeps its files: ``/dev/shm``, or the disk-backed fallback
        when ``/dev/shm`` had too little room free as the node started."""
        store = session.client().links.local_store(self.session(name))  # type: ignore[attr-defined]
        assert store is not None, f"node {name} is on this machine"
        return str(store.directory)

    def files(self, name: str, kind: str = "") -> list[str]:
        return glob.glob(os.path.join(self.directory(name),
                                      f"actorlib-{self.session(name)}-{kind}*"))

    def explain(self) -> str:
        """Both nodes' files and store bytes, for a failure's message."""
        return "; ".join(
            f"{name}: dir {self.directory(name)}, {self.store_bytes(name)} bytes, files "
            f"{sorted(os.path.basename(f) for f in self.files(name))}"
            for name in self.procs
        )

    def copies(self, name: str) -> int:
        """How many copies of other nodes' objects node ``name`` holds (its own count)."""
        client: Any = session.client()
        ok, info = client.links.pool.request(client.directory[self.session(name)],
                                             ("describe",))
        assert ok, info
        return int(info["copies"])

    def store_bytes(self, name: str) -> int:
        for node in query_status(self.address)["nodes"]:
            if node["node_id"] == name:
                return int(node.get("object_store_bytes", -1))
        raise AssertionError(f"no node {name}")


@pytest.fixture
def pair(tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Pair]:
    """A head and two nodes: ``left`` (2 CPUs) and ``right`` (1 CPU, a 160 MiB store)."""
    root = str(tmp_path)
    token_file = os.path.join(root, "token")
    tokens.write_token_file(token_file, tokens.new_token())
    monkeypatch.setenv("ACTORLIB_CLUSTER_TOKEN_FILE", token_file)
    head, address = daemons.start_head(root, token_file)
    procs: dict[str, Any] = {}
    try:
        procs["left"] = daemons.start_node(root, token_file, address, name="left",
                                           num_cpus=2, resources={"left": 1}, node_id="left")
        procs["right"] = daemons.start_node(
            root, token_file, address, name="right", num_cpus=1, resources={"right": 1},
            node_id="right", object_store_memory=RIGHT_STORE,
        )
        actorlib.init(address=address)
        wait_until(lambda: len(actorlib.nodes()) == 2, timeout=30)
        yield Pair(address, procs)
    finally:
        actorlib.shutdown()
        daemons.stop_processes([*procs.values(), head])


def digest(a: np.ndarray) -> str:
    return hashlib.sha256(memoryview(a).cast("B")).hexdigest()


@actorlib.remote
def random_array(nbytes: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2**63, nbytes // 8, dtype=np.int64)


@actorlib.remote
def checksum(a: np.ndarray) -> tuple[str, str, bool]:
    node = actorlib.get_runtime_context().get_node_id()
    return hashlib.sha256(memoryview(a).cast("B")).hexdigest(), node, a.flags.writeable


@actorlib.remote
def mapped_from(a: np.ndarray) -> str:
    """The name of the file a worker maps at ``a``'s memory."""
    return os.path.basename(mapped_file(a))


def on(node: str) -> dict[str, Any]:
    return {"resources": {node: 1}}


def worker_up(node: str) -> None:
    """Start ``node``'s worker: a worker's very first task may be decoded before its
    node's store is set up, and on one machine it then maps another node's object itself
    (correct, but no copy is made for a test to see)."""
    actorlib.get(checksum.options(**on(node)).remote(np.zeros(1)))


def mapped_file(a: np.ndarray) -> str:
    """The file this process maps at ``a``'s memory ('' for anonymous memory)."""
    address = a.ctypes.data
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split(maxsplit=5)
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            if lo <= address < hi:
                return fields[5].strip() if len(fields) == 6 else ""
    raise AssertionError("address not mapped")


def test_transfer_between_nodes_keeps_every_byte(pair: Pair) -> None:
    worker_up("right")
    for nbytes in (3 * MiB + 8, transfer.STREAM_MIN + 5 * MiB):  # one stream, then several
        ref = random_array.options(**on("left")).remote(nbytes, nbytes)
        made_on_left = actorlib.get(checksum.options(**on("left")).remote(ref))
        read_on_right = actorlib.get(checksum.options(**on("right")).remote(ref))
        assert read_on_right == (made_on_left[0], "right", False)
        # One copy on right, in right's arena, read there in place by every reader.
        assert pair.copies("right") == 1, pair.explain()
        where = actorlib.get(mapped_from.options(**on("right")).remote(ref))
        assert where.startswith(f"actorlib-{pair.session('right')}-arena-"), where
        again = actorlib.get(checksum.options(**on("right")).remote(ref))
        assert again == read_on_right
        assert pair.copies("right") == 1
        assert digest(actorlib.get(ref)) == made_on_left[0]
        del ref
        wait_until(lambda: pair.copies("right") == 0, timeout=10,
                   what="the copy to go with the object")


def test_driver_reads_zero_copy_from_a_node_on_its_machine(pair: Pair) -> None:
    ref = random_array.options(**on("left")).remote(8 * MiB, 1)
    a = actorlib.get(ref)
    assert not a.flags.writeable
    with pytest.raises(ValueError):
        a[0] = 1
    # The array is the node's object file itself, mapped here: no copy.
    path = mapped_file(a)
    assert os.path.basename(path).startswith(f"actorlib-{pair.session('left')}-"), path
    assert digest(a) == actorlib.get(checksum.options(**on("right")).remote(ref))[0]


def test_driver_put_lands_in_a_nodes_store(pair: Pair) -> None:
    data = np.random.default_rng(2).integers(0, 255, 32 * MiB, dtype=np.uint8)
    ref = actorlib.put(data)
    data[:] = 0  # put copied it: later changes are not seen
    a = actorlib.get(ref)
    path = mapped_file(a)
    owner = next(n for n in ("left", "right")
                 if os.path.basename(path).startswith(f"actorlib-{pair.session(n)}-"))
    # The node accounts for it as its own (the head holds no bytes)...
    wait_until(lambda: pair.store_bytes(owner) >= 32 * MiB, timeout=10)
    expected = hashlib.sha256(np.random.default_rng(2).integers(
        0, 255, 32 * MiB, dtype=np.uint8)).hexdigest()
    assert digest(a) == expected
    assert actorlib.get(checksum.options(**on("left")).remote(ref))[0] == expected
    assert actorlib.get(checksum.options(**on("right")).remote(ref))[0] == expected
    # ... and frees it with its last reference.
    del a, ref
    wait_until(lambda: not os.path.exists(path), timeout=10, what="the put's file to go")
    wait_until(lambda: pair.store_bytes(owner) < 32 * MiB, timeout=10)


def test_a_driver_on_another_machine_puts_and_reads_over_the_network(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(objects, "host_id", lambda: "elsewhere/0")
    session.client().links._stores.clear()  # type: ignore[attr-defined]
    data = np.random.default_rng(3).integers(0, 2**63, 9 * MiB, dtype=np.int64)  # 72 MiB
    ref = actorlib.put(data)
    a = actorlib.get(ref)
    assert mapped_file(a) == "" or "actorlib-" not in mapped_file(a)  # a copy, in memory
    assert not a.flags.writeable and digest(a) == digest(data)
    made = random_array.options(**on("right")).remote(3 * MiB, 4)
    on_left = actorlib.get(checksum.options(**on("left")).remote(made))[0]
    assert digest(actorlib.get(made)) == on_left
    assert actorlib.get(checksum.options(**on("right")).remote(ref))[0] == digest(data)


def test_cached_copies_count_against_capacity_and_are_evicted(pair: Pair) -> None:
    size = 64 * MiB
    worker_up("right")
    refs = [random_array.options(**on("left")).remote(size, seed) for seed in range(3)]
    sums = [actorlib.get(checksum.options(**on("left")).remote(r))[0] for r in refs]
    for r, expected in zip(refs, sums, strict=True):  # three copies do not fit on right
        assert actorlib.get(checksum.options(**on("right")).remote(r))[0] == expected
        assert 1 <= pair.copies("right") <= 2
    wait_until(lambda: 0 < pair.store_bytes("right") <= RIGHT_STORE, timeout=10)
    # An evicted copy is fetched again.
    assert actorlib.get(checksum.options(**on("right")).remote(refs[0]))[0] == sums[0]
    assert 1 <= pair.copies("right") <= 2


def test_a_put_larger_than_the_nodes_stores_is_refused_and_leaves_nothing(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = np.zeros(RIGHT_STORE + MiB, dtype=np.uint8)
    client: Any = session.client()
    right = pair.session("right")
    monkeypatch.setattr(client.links, "local_node", lambda: right)
    before = set(pair.files("right"))
    with pytest.raises(exceptions.ObjectStoreFullError, match="capacity"):
        actorlib.put(big)
    # Over the network to the same node: refused before a byte is sent.
    monkeypatch.setattr(client.links, "local_node", lambda: None)
    monkeypatch.setattr(client.links, "directory", lambda: {right: client.directory[right]})
    with pytest.raises(exceptions.ObjectStoreFullError, match="capacity"):
        actorlib.put(big)
    assert set(pair.files("right")) == before
    assert actorlib.get(actorlib.put(np.ones(4, dtype=np.uint8))).sum() == 4  # still works


def test_object_servers_refuse_bad_requests(pair: Pair, tmp_path: Any) -> None:
    client: Any = session.client()
    left = pair.session("left")
    address = client.directory[left]
    pool = client.links.pool
    ok, error = pool.request(address, ("adopt", [("/etc/passwd", 10)]))
    assert not ok and "not an object file of this node" in error
    foreign = os.path.join(pair.directory("right"), f"actorlib-{pair.session('right')}-1-1")
    ok, error = pool.request(address, ("localize", foreign, 10))
    assert not ok and "ObjectLostError" in error
    named_like_ours = os.path.join(str(tmp_path), f"actorlib-{left}-1-1")
    with open(named_like_ours, "wb") as f:
        f.write(b"secret")
    for path in ("/etc/passwd", named_like_ours):  # only files of its store are served
        missing = transfer.SIZE.unpack(pool.request(
            address, ("read", path, 6, 0, 6),
            lambda sock: transfer.recv_exactly(sock, transfer.SIZE.size)))[0]
        assert missing == transfer.MISSING
    ok, error = pool.request(address, ("adopt", [(named_like_ours, 6)]))
    assert not ok and "not an object file of this node" in error
    assert actorlib.get(checksum.options(**on("left")).remote(
        random_array.options(**on("left")).remote(MiB, 5)))[1] == "left"


def test_nothing_is_left_in_dev_shm(pair: Pair) -> None:
    sessions = [pair.session("left"), pair.session("right")]
    dirs = [pair.directory("left"), pair.directory("right")]
    refs = [random_array.options(**on("left")).remote(4 * MiB, 6), actorlib.put(np.ones(MiB))]
    for ref in refs:
        actorlib.get(checksum.options(**on("right")).remote(ref))
    assert any(pair.files(name) for name in ("left", "right"))
    actorlib.shutdown()
    daemons.stop_processes(list(pair.procs.values()))
    for d, s in zip(dirs, sessions, strict=True):
        assert glob.glob(os.path.join(d, f"actorlib-{s}-*")) == []


def test_a_drivers_own_puts_are_read_here_until_their_last_ref_goes(pair: Pair) -> None:
    client: Any = session.client()
    big = actorlib.put(np.arange(2 * MiB, dtype=np.int64))
    small = actorlib.put({"a": [1, 2]})
    empty = actorlib.put(np.zeros(0))
    kept = copy.copy(big)  # a second ref to the same object
    del big
    gc.collect()
    a = actorlib.get(kept)  # read through the node's store, no copy
    assert int(a[-1]) == 2 * MiB - 1 and not a.flags.writeable
    assert os.path.basename(mapped_file(a)).startswith("actorlib-")
    assert actorlib.get(small) == {"a": [1, 2]} and actorlib.get(empty).size == 0
    assert actorlib.get(checksum.options(**on("right")).remote(kept))[0] == digest(a)
    assert {kept.id, small.id, empty.id} <= set(client._own)
    del a, kept, small, empty
    gc.collect()
    wait_until(lambda: not client._own, timeout=5, what="the driver to forget its puts")


def test_a_copy_of_an_object_freed_during_its_transfer_is_not_kept() -> None:
    """The free reaches the reading node while its copy is being made: the copy goes
    when complete (no later free would remove it) and the reader is told it is lost."""
    store = NodeStore.for_node(64 * MiB)
    assert store.arena is not None
    theirs = [os.path.join(store.directory, f"actorlib-1-0000-{n}") for n in (1, 2)]
    try:
        locals_ = []
        for path in theirs:
            store.reserve_copy(path, MiB)
            dest = store.copy_destination(path, MiB)
            assert isinstance(dest, transfer.ExtentDestination)  # the arena had room
            locals_.append(dest.finish())  # the transfer, done
        store.free_paths(theirs[:1])  # the first object is freed meanwhile
        assert store.add_copy(theirs[0], MiB, locals_[0]) is False
        assert not store.arena.holds(locals_[0])
        assert store.add_copy(theirs[1], MiB, locals_[1]) is True  # kept for its readers
        assert store.cached(theirs[1]) == locals_[1]
        assert store.copy_bytes() == MiB and store.copies() == 1
        store.free_paths(theirs[1:])
        assert not store.arena.holds(locals_[1])
        assert store.copy_bytes() == 0 and store.copies() == 0
    finally:
        store.cleanup()


def test_a_copy_makes_its_pages_as_it_arrives_and_the_next_reuses_them() -> None:
    """A node's first copy goes into arena space without pages, reserved as the bytes
    arrive (a full store is an error there, never SIGBUS); once freed, the next copy
    lands in the same, warm space with nothing to reserve."""
    store = NodeStore.for_node(128 * MiB)
    assert store.arena is not None
    size = 8 * MiB + 5
    theirs = [os.path.join(store.directory, f"actorlib-1-0000-{n}") for n in (1, 2)]
    try:
        store.reserve_copy(theirs[0], size)
        dest = store.copy_destination(theirs[0], size)
        assert isinstance(dest, transfer.ExtentDestination) and dest.cold
        segment = store.arena.segment_path(dest.extent.base)
        assert os.stat(segment).st_blocks == 0  # nothing made before the bytes come
        data = np.random.default_rng(9).integers(0, 256, size, dtype=np.uint8).tobytes()
        ours, theirs_end = socket.socketpair()
        with ours, theirs_end:
            sender = threading.Thread(target=theirs_end.sendall, args=(data,))
            sender.start()
            dest.receive(ours, 0, size)
            sender.join()
        local = dest.finish()
        assert os.stat(segment).st_blocks * 512 >= size
        assert store.add_copy(theirs[0], size, local)
        view = store.map_location(local, size)
        assert bytes(view) == data
        view.release()
        store.free_paths(theirs[:1])
        store.reserve_copy(theirs[1], size)
        again = store.copy_destination(theirs[1], size)
        assert isinstance(again, transfer.ExtentDestination)
        assert again.cold == [] and again.extent.offset == dest.extent.offset
        again.discard()
        store.cancel_copy(theirs[1], size)
        # A copy given up before its pages were made leaves its space marked so: the next
        # one there reserves it again instead of writing into holes.
        big = store.copy_destination(theirs[1], 16 * MiB)  # more than the warm space
        assert isinstance(big, transfer.ExtentDestination) and big.cold
        big.discard()
        retry = store.copy_destination(theirs[1], 16 * MiB)
        assert isinstance(retry, transfer.ExtentDestination)
        assert retry.extent.offset == big.extent.offset and retry.cold
        retry.discard()
    finally:
        store.cleanup()


def test_a_copy_cut_off_returns_the_pages_it_made_as_warm_space() -> None:
    """The steps a failed copy already reserved hold pages: they stay accounted (resident,
    trimmable), and only the part never reserved is marked as having none."""
    store = NodeStore.for_node(256 * MiB)
    arena = store.arena
    assert arena is not None
    size = 3 * transfer.RESERVE_STEP
    try:
        dest = store.copy_destination(os.path.join(store.directory, "actorlib-1-0000-1"), size)
        assert isinstance(dest, transfer.ExtentDestination) and dest.cold
        segment = arena.segment_path(dest.extent.base)
        sent = transfer.RESERVE_STEP + 5 * MiB  # into the second step, then the peer goes
        ours, theirs = socket.socketpair()

        def send() -> None:
            with theirs:
                theirs.sendall(b"x" * sent)

        sender = threading.Thread(target=send)
        sender.start()
        with ours, pytest.raises(EOFError):
            dest.receive(ours, 0, size)
        sender.join()
        dest.discard()
        made = os.stat(segment).st_blocks * 512
        assert made == 2 * transfer.RESERVE_STEP  # two steps reserved before the EOF
        assert arena.resident() == made
        assert arena.trim(0) == made and os.stat(segment).st_blocks == 0
        assert arena.resident() == 0
    finally:
        store.cleanup()


def test_a_copy_destination_closes_its_file_if_its_extent_cannot_be_mapped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = NodeStore.for_node(64 * MiB)
    arena = store.arena
    assert arena is not None
    found = arena.alloc_lazily(MiB)
    assert found is not None and found[1]
    opened: list[int] = []
    real_open = os.open

    def recording_open(*args: Any, **kwargs: Any) -> int:
        fd = real_open(*args, **kwargs)
        opened.append(fd)
        return fd

    def refuse(extent: Any) -> memoryview:
        raise OSError("no mapping")

    monkeypatch.setattr(transfer.os, "open", recording_open)
    monkeypatch.setattr(arena, "writable", refuse)
    try:
        with pytest.raises(OSError, match="no mapping"):
            transfer.ExtentDestination(arena, *found)
        assert len(opened) == 1
        with pytest.raises(OSError):
            os.fstat(opened[0])  # closed
    finally:
        monkeypatch.undo()
        arena.release(found[0].path)
        store.cleanup()


@pytest.fixture
def two_servers() -> Iterator[tuple[ObjectServer, ObjectServer]]:
    """Two nodes' stores and object servers in this process: the first owns objects,
    the second copies them."""
    token = tokens.new_token()
    directory: objects.Directory = {}
    servers: list[ObjectServer] = []
    try:
        for _ in range(2):
            server = ObjectServer(NodeStore.for_node(128 * MiB), token, lambda: directory)
            servers.append(server)
            directory[server.store.session] = server.start("127.0.0.1")
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()
            server.store.cleanup()


def put_on(server: ObjectServer, data: bytes) -> tuple[str, int]:
    """Store ``data`` as an object of ``server``'s node; its location."""
    obj = server.store.seal(Serialized(b"", [data]))
    assert obj.locations is not None and obj.locations[0] is not None
    return obj.locations[0]


def no_arena(server: ObjectServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``server``'s arena hold nothing more: copies go into files of their own."""
    assert server.store.arena is not None
    monkeypatch.setattr(server.store.arena, "alloc_lazily", lambda size: None)


@pytest.mark.parametrize("into", ["arena", "file"])
def test_copies_keep_every_byte_around_chunk_and_stream_boundaries(
    two_servers: tuple[ObjectServer, ObjectServer], monkeypatch: pytest.MonkeyPatch,
    into: str,
) -> None:
    owner, reader = two_servers
    monkeypatch.setattr(transfer, "STREAM_MIN", 256 * 1024)  # boundaries of a few pages
    monkeypatch.setattr(transfer, "RESERVE_STEP", 64 * 1024)
    if into == "file":
        no_arena(reader, monkeypatch)
    page = 4096
    sizes = [1, page - 1, page, page + 1, 64 * 1024 - 1, 64 * 1024 + 1, 256 * 1024 - 1,
             256 * 1024, 256 * 1024 + 1, 256 * 1024 + page + 1, 3 * 64 * 1024 + 5]
    rng = np.random.default_rng(7)
    for size in sizes:
        data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        path, _ = put_on(owner, data)
        local = reader.localize(path, size)
        if into == "arena":
            assert reader.store.arena is not None and reader.store.arena.holds(local)
        else:
            assert local == reader.store.cache_path(path) and os.path.isfile(local)
        view = reader.store.map_location(local, size)
        try:
            assert hashlib.sha256(view).hexdigest() == hashlib.sha256(data).hexdigest(), size
        finally:
            view.release()
        assert reader.localize(path, size) == local  # one copy, for every reader
    assert reader.store.copies() == len(sizes)
    assert reader.store.copy_bytes() == sum(sizes)


def test_a_reader_that_looked_just_before_a_fetch_ended_does_not_fetch_again(
    two_servers: tuple[ObjectServer, ObjectServer], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A reader found no copy, then the fetcher finished: it takes that copy."""
    owner, reader = two_servers
    size = 3 * MiB + 1
    path, _ = put_on(owner, b"\x07" * size)
    local = reader.localize(path, size)
    real_cached = reader.store.cached
    looks: list[str] = []

    def stale_once(p: str) -> str | None:  # the look made before the fetch ended
        looks.append(p)
        return None if len(looks) == 1 else real_cached(p)

    fetched: list[str] = []
    real_destination = reader.store.copy_destination
    monkeypatch.setattr(reader.store, "cached", stale_once)
    monkeypatch.setattr(reader.store, "copy_destination",
                        lambda p, n: fetched.append(p) or real_destination(p, n))
    assert reader.localize(path, size) == local
    assert fetched == [] and len(looks) == 2
    assert reader.store.copies() == 1 and reader.store.copy_bytes() == size


def test_a_second_copy_of_a_path_replaces_the_first_and_frees_it() -> None:
    store = NodeStore.for_node(64 * MiB)
    assert store.arena is not None
    theirs = os.path.join(store.directory, "actorlib-1-0000-1")
    try:
        made = []
        for _ in range(2):
            store.reserve_copy(theirs, MiB)
            dest = store.copy_destination(theirs, MiB)
            made.append(dest.finish())
        assert store.add_copy(theirs, MiB, made[0]) and store.add_copy(theirs, MiB, made[1])
        assert store.cached(theirs) == made[1]
        assert not store.arena.holds(made[0]) and store.arena.holds(made[1])
        assert store.copies() == 1 and store.copy_bytes() == MiB
        store.free_paths([theirs])
        assert store.copies() == 0 and store.copy_bytes() == 0
        assert store.arena.live() == []
    finally:
        store.cleanup()


@pytest.mark.parametrize("into", ["arena", "file"])
def test_a_transfer_cut_off_by_its_server_leaves_no_partial_copy(
    two_servers: tuple[ObjectServer, ObjectServer], monkeypatch: pytest.MonkeyPatch,
    into: str,
) -> None:
    """The serving node goes away mid-transfer (after half the bytes, on every
    connection): the reader raises ``ObjectLostError`` and keeps nothing of it."""
    owner, reader = two_servers
    if into == "file":
        no_arena(reader, monkeypatch)
    size = transfer.STREAM_MIN + 3 * MiB  # several streams
    path, _ = put_on(owner, np.ones(size, dtype=np.uint8).tobytes())
    store = reader.store
    before = set(os.listdir(store.directory))

    def half_then_gone(conn: Any, view: memoryview, lo: int, hi: int) -> None:
        transfer.send_buffer(conn, view, lo, (lo + hi) // 2)
        raise ConnectionResetError("the node died")

    monkeypatch.setattr(object_server, "send_buffer", half_then_gone)
    with pytest.raises(exceptions.ObjectLostError, match="went away during the transfer"):
        reader.localize(path, size)
    assert store.copies() == 0 and store.copy_bytes() == 0 and store.cached(path) is None
    assert store.arena is not None and store.arena.live() == []
    mine = f"actorlib-{store.session}-"
    assert {n for n in set(os.listdir(store.directory)) - before if n.startswith(mine)
            and "-arena-" not in n} == set()  # no partial file (arena segments stay)
    monkeypatch.undo()  # the node is back: the object is copied whole
    if into == "file":
        no_arena(reader, monkeypatch)
    local = reader.localize(path, size)
    view = store.map_location(local, size)
    try:
        assert bytes(view) == b"\x01" * size
    finally:
        view.release()
