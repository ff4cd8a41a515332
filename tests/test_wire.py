"""The wire protocol's framing: split streams, batch writes, survive a bad frame."""

from __future__ import annotations

import logging
import pickle

from actorlib.backends import wire

from actorlib.core.serialization import Serialized


def test_frames_split_anywhere_come_out_whole():
    stream = b"".join(wire.encode(("msg", i, "x" * i)) for i in range(50))
    decoder = wire.Decoder()
    got = []
    for start in range(0, len(stream), 7):  # arbitrary chunk boundaries
        got.extend(decoder.feed(stream[start : start + 7]))
    assert got == [("msg", i, "x" * i) for i in range(50)]


def test_a_frame_that_cannot_be_decoded_is_dropped_alone(caplog):
    missing = Serialized(b"x", [None], (), False, [("/nonexistent/actorlib-gone", 10)])
    stream = wire.encode(("first",)) + wire.encode(("bad", missing)) + wire.encode(("third",))
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
