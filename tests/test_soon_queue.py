"""A worker's bursts of submissions and refs' drops go together, in order, and never wait
long (``backends/transport/soon_queue.py``)."""

from __future__ import annotations

import gc
import pickle
import socket
import threading
import time
import weakref
from collections.abc import Iterator

import pytest

from actorlib.backends.runner import interrupts
from actorlib.backends.transport import codec, framing, soon_queue
from actorlib.backends.transport import messages as m
from actorlib.core import late_interrupts
from actorlib.core.specs import NO_ARGS, CallSpec


def _call(call_id: int) -> m.SubmitCall:
    return m.SubmitCall(CallSpec(call_id, 7, "incr", NO_ARGS, (call_id + 1000,), 1))


class _Peer:
    """The driver's end of a worker's connection: what arrived, frame by frame."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.decoder = framing.Decoder()
        self.frames: list[list[object]] = []  # the records of each frame
        self._pending = b""

    def read(self, timeout: float = 2.0) -> None:
        self.sock.settimeout(timeout)
        data = self.sock.recv(1 << 20)
        self._pending += data
        while len(self._pending) >= framing.HEADER.size:
            (length,) = framing.HEADER.unpack_from(self._pending)
            end = framing.HEADER.size + length
            if len(self._pending) < end:
                break
            frame, self._pending = self._pending[:end], self._pending[end:]
            self.frames.append(self.decoder.feed(frame))

    def records(self) -> list[object]:
        return [record for frame in self.frames for record in frame]

    def nothing_arrives(self, within: float) -> bool:
        self.sock.settimeout(within)
        try:
            return self.sock.recv(1 << 20, socket.MSG_PEEK) == b""
        except TimeoutError:
            return True


@pytest.fixture
def pair() -> Iterator[tuple[framing.BlockingConnection, _Peer]]:
    worker, driver = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    conn = framing.BlockingConnection(worker, lambda message: None, lambda: None)
    try:
        yield conn, _Peer(driver)
    finally:
        conn._soon.close()
        flusher = conn._soon._flusher
        if flusher is not None:
            flusher.join(5)
        worker.close()
        driver.close()


@pytest.fixture
def slow_flusher(monkeypatch: pytest.MonkeyPatch) -> None:
    """The flusher writes nothing during the test, only what the test does writes; and
    every message after a test's first is part of its burst, however slow the machine."""
    monkeypatch.setattr(soon_queue, "DEFER_S", 30.0)
    monkeypatch.setattr(soon_queue, "BURST_S", 30.0)


def _burst(conn: framing.BlockingConnection, messages: list[object]) -> None:
    """Send ``messages`` as a burst: each well within ``BURST_S`` of the one before."""
    for message in messages:
        conn.send_soon(message)


def test_a_lone_submission_goes_at_once(pair):
    conn, peer = pair
    conn._soon._last_submit = 0.0  # nothing came before it
    conn.send_soon(_call(1))
    peer.read()
    assert [repr(r) for r in peer.records()] == [repr(_call(1))]


def test_a_burst_goes_as_its_first_then_one_frame_before_the_next_message(pair, slow_flusher):
    conn, peer = pair
    calls = [_call(i) for i in range(10)]
    _burst(conn, calls)
    conn.send(m.Watch(3, [1000]))  # a get: what the burst queued goes first, in order
    while len(peer.records()) < 11:
        peer.read()
    assert [repr(r) for r in peer.records()] == [repr(x) for x in [*calls, m.Watch(3, [1000])]]
    assert [len(frame) for frame in peer.frames] == [1, 9, 1]  # the first went at once


def test_drops_go_after_the_message_they_are_written_with(pair, slow_flusher):
    conn, peer = pair
    drops = [m.DropRef(i) for i in range(5)]
    _burst(conn, drops)
    conn.send(m.Watch(3, [99]))
    while len(peer.records()) < 6:
        peer.read()
    assert [repr(r) for r in peer.records()] == [
        repr(x) for x in [drops[0], m.Watch(3, [99]), *drops[1:]]
    ]


def test_a_burst_left_alone_is_written_within_a_moment(pair, monkeypatch):
    """A task that submits a burst and goes on computing: the flusher writes the rest."""
    conn, peer = pair
    monkeypatch.setattr(soon_queue, "BURST_S", 30.0)
    calls = [_call(i) for i in range(5)]
    started = time.monotonic()
    _burst(conn, calls)
    while len(peer.records()) < 5:
        peer.read()
    assert time.monotonic() - started < 0.5  # DEFER_S is 1 ms; a loaded machine is slower
    assert [repr(r) for r in peer.records()] == [repr(x) for x in calls]


def test_a_long_burst_is_written_every_flush_at_messages(pair, slow_flusher):
    conn, peer = pair
    calls = [_call(i) for i in range(1 + soon_queue.FLUSH_AT)]
    _burst(conn, calls)
    while len(peer.records()) < len(calls):
        peer.read()
    assert [len(frame) for frame in peer.frames] == [1, soon_queue.FLUSH_AT]
    assert peer.nothing_arrives(within=0.05)


def test_messages_of_several_threads_all_arrive_each_thread_in_its_order(pair, monkeypatch):
    conn, peer = pair
    monkeypatch.setattr(soon_queue, "BURST_S", 30.0)
    threads = [
        threading.Thread(target=_burst, args=(conn, [_call(t * 1000 + i) for i in range(200)]))
        for t in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    conn.flush()
    while len(peer.records()) < 800:
        peer.read()
    ids = [r.spec.call_id for r in peer.records()]  # type: ignore[attr-defined]
    assert sorted(ids) == sorted(t * 1000 + i for t in range(4) for i in range(200))
    for t in range(4):
        mine = [i for i in ids if i // 1000 == t]
        assert mine == sorted(mine)


def test_inside_together_a_drop_stays_with_the_outcome(pair, slow_flusher):
    """A task's outcome and the drops of the refs its result held go as one write, in
    the order sent (the driver must not see the drops first)."""
    conn, peer = pair
    with conn.together():
        conn.send(m.Watch(1, [5]))
        _burst(conn, [m.DropRef(5), m.DropRef(6)])
    while len(peer.records()) < 3:
        peer.read()
    assert [repr(r) for r in peer.records()] == [
        repr(x) for x in [m.Watch(1, [5]), m.DropRef(5), m.DropRef(6)]
    ]


def test_a_process_forked_with_messages_queued_does_not_send_them_again(pair, slow_flusher):
    conn, peer = pair
    _burst(conn, [_call(1), _call(2), _call(3)])
    soon = conn._soon
    assert len(soon.flats) == 2  # the first went at once
    soon_queue._forget(weakref.ref(soon))  # as after a fork, in the child
    assert not soon.flats and not soon.drops
    conn.send(m.Watch(3, [1]))
    while len(peer.records()) < 2:
        peer.read()
    assert [type(r).__name__ for r in peer.records()] == ["SubmitCall", "Watch"]
    assert peer.records()[0].spec.call_id == 1  # type: ignore[attr-defined]


def test_a_batch_frame_holds_flat_builtins_only():
    flats = [codec.FLATTEN[m.SubmitCall](_call(i), None) for i in range(3)]
    frame = framing.encode_flats([f for f in flats if f is not None])
    body = pickle.loads(frame[framing.HEADER.size :])
    assert body[0] == codec.BATCH
    assert all(type(flat) is tuple for flat in body[1])


def test_a_collection_during_a_write_runs_no_finalizer_that_waits_for_that_write(
    pair, slow_flusher, monkeypatch
):
    """A ref in a cycle dies in a collection, which runs on the thread that allocates: if
    that is the thread writing the queue (under ``late_interrupts.GATE``), the ref's drop
    would wait for the lock its own thread holds. What a thread sends inside its own
    write goes after it, with it."""
    conn, peer = pair
    real = soon_queue.encode_flats

    class InACycle:
        def __del__(self) -> None:
            conn.send(m.Watch(9, [9]))  # as a ref's drop: a write of its own

    def encode_flats(flats):  # a cycle dies just as the queue is encoded
        cycle = InACycle()
        cycle.me = cycle  # type: ignore[attr-defined]
        del cycle
        _garbage = [[] for _ in range(10 * gc.get_threshold()[0])]  # a collection's worth
        return real(flats)

    monkeypatch.setattr(soon_queue, "encode_flats", encode_flats)
    _burst(conn, [_call(i) for i in range(5)])
    wrote = threading.Event()

    def write() -> None:
        conn.flush()
        gc.collect()  # the cycle's end, outside the write, if no collection ran yet
        wrote.set()

    threading.Thread(target=write, daemon=True).start()
    assert wrote.wait(10), "the write waited for itself"
    while len(peer.records()) < 6:
        peer.read()
    kinds = [type(r).__name__ for r in peer.records()]
    assert kinds == ["SubmitCall"] * 5 + ["Watch"]


def test_a_cancel_waits_until_the_queue_it_took_is_written(pair, slow_flusher, monkeypatch):
    """A cancel's interrupt cutting a write short between taking the queue and writing
    it would lose the records other threads queued (their gets would wait for good): a
    runner raises it with the gate held (``late_interrupts.GATE``), which the write holds
    from before it takes anything until it wrote it all."""
    conn, peer = pair
    real = soon_queue.encode_flats
    encoding = threading.Event()
    go_on = threading.Event()

    def encode_flats(flats):
        encoding.set()
        go_on.wait(10)
        return real(flats)

    monkeypatch.setattr(soon_queue, "encode_flats", encode_flats)
    _burst(conn, [_call(i) for i in range(5)])  # the first goes at once, four wait
    interrupted: list[bool] = []

    def task() -> None:
        try:
            conn.flush()
            for _ in range(5000):
                time.sleep(0.001)  # where the interrupt lands
        except KeyboardInterrupt:
            interrupted.append(True)

    worker = threading.Thread(target=task)
    worker.start()
    assert encoding.wait(10)
    raised = threading.Event()

    def cancel() -> None:  # as ``TaskThread._interrupt``
        with late_interrupts.GATE:
            if not interrupts.held_back(worker.ident or 0):
                interrupts.raise_in_thread(worker.ident or 0, KeyboardInterrupt)
        raised.set()

    threading.Thread(target=cancel).start()
    assert not raised.wait(0.2)  # the cancel waits for the write
    go_on.set()
    worker.join(10)
    assert raised.is_set() and interrupted == [True]
    while len(peer.records()) < 5:
        peer.read()
    assert [r.spec.call_id for r in peer.records()] == list(range(5))  # type: ignore[attr-defined]


def test_a_drop_queued_while_the_queue_is_taken_never_goes_ahead_of_its_submission(
    pair, slow_flusher, monkeypatch
):
    """Another thread queues a call holding a ref, then the ref's drop, while the writer
    takes the queue: the drop must not be written ahead of the call (the driver would free
    the object the call needs)."""
    conn, peer = pair
    real = soon_queue._drain
    interleaved: list[bool] = []

    def drain(queue, count):
        if not interleaved:  # the first drain (the submissions'): the other thread runs
            interleaved.append(True)
            conn._soon.flats.append(codec.FLATTEN[m.SubmitCall](_call(77), None))
            conn._soon.drops.append((m.TAGS[m.DropRef], 1077))
        return real(queue, count)

    _burst(conn, [_call(1), _call(2)])  # the first goes at once, the second waits
    monkeypatch.setattr(soon_queue, "_drain", drain)
    conn.flush()
    conn.flush()
    while len(peer.records()) < 4:
        peer.read()
    kinds = [
        (type(r).__name__, r.object_id if type(r) is m.DropRef else r.spec.call_id)  # type: ignore[attr-defined]
        for r in peer.records()
    ]
    assert kinds.index(("SubmitCall", 77)) < kinds.index(("DropRef", 1077))


def test_a_write_on_a_thread_that_holds_the_gate_goes_through(pair):
    """A runner holds the gate from its look to its raise, and a collection there may run
    a ref's finalizer, whose drop writes: the gate lets its own thread in again."""
    conn, peer = pair
    done = threading.Event()

    def canceller() -> None:
        with late_interrupts.GATE:
            conn.send(m.DropRef(5))
        done.set()

    threading.Thread(target=canceller, daemon=True).start()
    assert done.wait(10)
    peer.read()
    assert [repr(r) for r in peer.records()] == [repr(m.DropRef(5))]
