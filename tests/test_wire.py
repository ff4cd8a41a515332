"""The wire protocol's framing: split streams, batch writes, survive a bad frame."""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable

import pytest

from actorlib.backends.transport import codec, framing, wire
from actorlib.backends.transport import messages as m
from actorlib.core.records import CallRun, Outcome
from actorlib.core.serialization import Serialized
from actorlib.core.specs import Args, CallSpec


def test_frames_split_anywhere_come_out_whole():
    stream = b"".join(wire.encode(("msg", i, "x" * i)) for i in range(50))
    decoder = wire.Decoder()
    got = []
    for start in range(0, len(stream), 7):  # arbitrary chunk boundaries
        got.extend(decoder.feed(stream[start : start + 7]))
    assert got == [("msg", i, "x" * i) for i in range(50)]


def test_a_partial_frame_is_kept_apart_from_the_reused_buffer_it_was_read_into():
    """A worker reads into one reused buffer and feeds views of it: whole frames decode
    straight from the view, and the partial last frame is copied before the buffer is
    read into again."""
    stream = b"".join(wire.encode(("msg", i, "y" * i)) for i in range(6))
    cut = len(wire.encode(("msg", 0, ""))) + 5  # one whole frame, then part of the next
    buffer = bytearray(len(stream))
    decoder = wire.Decoder()
    buffer[:cut] = stream[:cut]
    got = decoder.feed(memoryview(buffer)[:cut])
    buffer[:] = b"\xff" * len(buffer)  # the next read overwrites what was fed
    rest = len(stream) - cut
    buffer[:rest] = stream[cut:]
    got += decoder.feed(memoryview(buffer)[:rest])
    assert got == [("msg", i, "y" * i) for i in range(6)]
    assert decoder.feed(b"") == []


def _refuse_to_load() -> None:
    raise ValueError("this frame cannot be decoded")


class _FailsToLoad:
    def __reduce__(self) -> tuple[object, tuple[()]]:
        return _refuse_to_load, ()


def test_a_frame_that_cannot_be_decoded_is_dropped_alone(caplog):
    stream = (
        wire.encode(("first",)) + wire.encode(("bad", _FailsToLoad())) + wire.encode(("third",))
    )
    decoder = wire.Decoder()
    with caplog.at_level(logging.ERROR, logger="actorlib.wire"):
        assert decoder.feed(stream) == [("first",), ("third",)]
    assert "could not be decoded" in caplog.text
    assert decoder.feed(b"") == []  # nothing left over to decode twice


def test_code_is_shipped_once_per_peer():
    from actorlib.core.specs import CodeRef

    code = CodeRef(7, "f", b"blob" * 100)
    known: set[int] = set()
    first = pickle.loads(wire.encode(("run", code), known)[wire.HEADER.size :])
    second = pickle.loads(wire.encode(("run", code), known)[wire.HEADER.size :])
    assert first[1].blob == code.blob and second[1].blob == b""
    assert known == {7}


def _task_run(**spec_fields):
    from actorlib.core.records import TaskRun
    from actorlib.core.specs import Args, CodeRef, TaskSpec

    payload = Serialized(b"args", [b"buf"], (5,), False, None)
    spec = TaskSpec(
        11, CodeRef(7, "f", b"blob", True), Args(payload, (3,)), (12, 13), 2,
        {"CPU": 1.0, "memory": 2.0}, **spec_fields,
    )
    dep = Serialized(b"dep", (), (), False, None)
    return TaskRun(spec, "node-a", [dep], (0,), follows=9)


def _decode_one(data: bytes):
    [message] = wire.Decoder().feed(data)
    return message


def test_hot_messages_round_trip_through_the_flat_encoding():
    from actorlib.core.records import CallRun, Outcome
    from actorlib.core.specs import Args, CallSpec

    value = Serialized(b"v", [b"x" * 10], (4,), False, None)
    error = Serialized(b"e", (), (), True, None)
    messages = [
        m.RunTask(_task_run(env_vars={"A": "1"}, name="f", caller_id=2, attempt=1)),
        m.RunCall(CallRun(CallSpec(21, 22, "m", Args(None), (23,), 1, 2, 3), [value], 4)),
        m.TaskFinished(Outcome(11, 1, values=[value, value])),
        m.CallFinished(Outcome(21, 0, error=error, retryable=True)),
        m.SubmitTask(_task_run(name="nested").spec),
        m.SubmitCall(CallSpec(31, 22, "m", Args(value, (4,)), (32,), 1)),
        m.Ready(5, 12, value),
    ]
    for message in messages:
        data = wire.encode(message)
        assert pickle.loads(data[wire.HEADER.size :])[0] < m.FIRST_TAG  # took the flat path
        assert repr(_decode_one(data)) == repr(message)


def test_flat_encoding_ships_code_once_too():
    known: set[int] = set()
    first = _decode_one(wire.encode(m.RunTask(_task_run()), known))
    second = _decode_one(wire.encode(m.RunTask(_task_run()), known))
    assert first.run.spec.function.blob == b"blob"
    assert second.run.spec.function.blob == b""
    assert known == {7}


def test_unusual_tasks_take_the_pickle_path_and_still_arrive():
    from actorlib.core.specs import ExceptionTypes, NodeAffinitySchedulingStrategy

    for fields in (
        {"retry_exceptions": ExceptionTypes((KeyError,))},
        {"scheduling_strategy": NodeAffinitySchedulingStrategy("node-b", soft=True)},
    ):
        message = m.RunTask(_task_run(**fields))
        data = wire.encode(message)
        assert pickle.loads(data[wire.HEADER.size :])[0] == m.TAGS[m.RunTask]
        assert repr(_decode_one(data)) == repr(message)


def test_a_buffer_that_cannot_be_mapped_yet_is_mapped_when_the_value_is_read(tmp_path):
    # A message is decoded on a connection's reader, maybe before the process's store
    # installs its mapper or while the file moves (spilled): decoding must not fail (the
    # message, and the task in it, would be dropped); reading the value maps it again.
    from actorlib.core import serialization as ser

    payload = b"x" * 4096
    moved = tmp_path / "spilled"
    moved.write_bytes(payload)
    out_of_band: list[pickle.PickleBuffer] = []
    data = pickle.dumps(
        pickle.PickleBuffer(bytearray(payload)), protocol=5, buffer_callback=out_of_band.append
    )
    flat = (data, [None], (), False, [(str(tmp_path / "gone"), len(payload))])

    def missing(path: str, size: int) -> object:
        raise FileNotFoundError(path)

    def follows(path: str, size: int) -> object:  # as a store follows a spilled file
        return ser.map_readonly(str(moved), size)

    before = ser._buffer_mapper
    ser.set_buffer_mapper(missing)
    try:
        obj = ser._rebuild_serialized(*flat)
        assert isinstance(obj.buffers[0], ser.Unavailable)  # decoded, not dropped
        with pytest.raises(FileNotFoundError):
            ser.deserialize(obj)  # still nowhere: the error is the value's
        ser.set_buffer_mapper(follows)
        assert bytes(ser.deserialize(obj)) == payload  # the mapper in place now maps it
    finally:
        ser.set_buffer_mapper(before)


def test_a_long_turn_writes_its_frames_as_they_pile_up_not_only_at_its_end():
    """A loop turn that sends a peer many messages (the core handing an actor a thousand
    calls) writes every ``FLUSH_AT`` frames at once, so the peer starts on the first ones
    while the rest are encoded; fewer wait for the turn's end, in one write."""
    import asyncio
    import socket

    from actorlib.core.loop import new_event_loop

    async def turn() -> tuple[int, int, int]:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        theirs.setblocking(False)
        conn = wire.Connection(loop, lambda message: None, lambda: None)
        await loop.create_unix_connection(lambda: conn, sock=ours)

        def pending() -> int:
            try:
                return len(theirs.recv(1 << 20))
            except BlockingIOError:
                return 0

        try:
            for i in range(wire.FLUSH_AT - 1):  # all in one turn: nothing written yet
                conn.send(("frame", i))
            before = pending()
            conn.send(("frame", wire.FLUSH_AT - 1))
            at_threshold = pending()
            conn.send(("frame", "last"))  # waits for the turn's end, as before
            after_one_more = pending()
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            return before, at_threshold, after_one_more + pending()
        finally:
            conn.close()
            theirs.close()

    loop = new_event_loop()
    try:
        before, at_threshold, rest = loop.run_until_complete(turn())
    finally:
        loop.close()
    assert before == 0
    assert at_threshold == sum(len(wire.encode(("frame", i))) for i in range(wire.FLUSH_AT))
    assert rest == len(wire.encode(("frame", "last")))


def _one_turn_of_sends(messages: list[object], max_frame: int | None = None) -> bytes:
    """What a connection writes for ``messages`` all sent in one turn of its loop, on the
    loop's thread (as the core hands a worker its tasks and calls)."""
    import asyncio
    import socket

    from actorlib.core.loop import new_event_loop

    async def turn() -> bytes:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        theirs.setblocking(False)
        conn = wire.Connection(loop, lambda message: None, lambda: None)
        await loop.create_unix_connection(lambda: conn, sock=ours)
        try:
            for message in messages:
                conn.send(message)
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            return theirs.recv(1 << 24)
        finally:
            conn.close()
            theirs.close()

    loop = new_event_loop()
    try:
        return loop.run_until_complete(turn())
    finally:
        loop.close()


def _frames(data: bytes) -> list[bytes]:
    frames = []
    while data:
        (length,) = wire.HEADER.unpack_from(data)
        frames.append(data[wire.HEADER.size : wire.HEADER.size + length])
        data = data[wire.HEADER.size + length :]
    return frames


def test_the_per_task_records_of_one_turn_go_as_one_frame_and_arrive_in_order():
    """A turn that hands a worker calls and tells it of results pickles them once, in one
    frame; the peer reads every record back, in the order sent, around the records sent
    as frames of their own."""
    value = Serialized(pickle.dumps("ok"), ())
    messages: list[object] = [
        m.RunCall(CallRun(CallSpec(40 + i, 22, "m", Args(value, ()), (60 + i,), 1), [], 0))
        for i in range(5)
    ]
    messages.insert(2, m.Ready(5, 12, value))
    messages.append(m.Exit())  # a record without a flat form: a frame of its own
    messages.append(m.TaskFinished(Outcome(11, 1, values=[value])))
    data = _one_turn_of_sends(messages)
    frames = _frames(data)
    assert len(frames) == 3  # six flat records, the exit, the last flat record
    assert pickle.loads(frames[0])[0] == codec.BATCH
    decoder = wire.Decoder()
    assert [repr(r) for r in decoder.feed(data)] == [repr(r) for r in messages]


def test_a_batch_too_large_for_one_frame_goes_as_a_frame_each(monkeypatch):
    messages = [m.Ready(5, i, Serialized(pickle.dumps(str(i) * 1000), ())) for i in range(4)]
    monkeypatch.setattr(framing, "encode_body", _capped_encode_body(2500))
    data = _one_turn_of_sends(messages)
    assert len(_frames(data)) == 4
    assert [repr(r) for r in wire.Decoder().feed(data)] == [repr(r) for r in messages]


def _capped_encode_body(cap: int) -> Callable[[tuple[object, ...]], bytes]:
    """``encode_body`` as if frames could hold ``cap`` bytes at most."""
    real = framing.encode_body

    def encode_body(body: tuple[object, ...]) -> bytes:
        frame = real(body)
        if len(frame) > cap:
            raise ValueError(f"message of {len(frame)} bytes is too large for one frame")
        return frame

    return encode_body
