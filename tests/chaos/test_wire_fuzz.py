"""A live head fed random, truncated and oversized frames, before and after the handshake.

Strangers must be dropped without the head reading much or unpickling anything; peers that
passed the handshake and then send garbage lose their own connection, nothing more. After
every example, the head must still serve a real driver.
"""

from __future__ import annotations

import os
import pickle
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from testkit import T, wait_until

import actorlib
from actorlib.backends.cluster import daemons
from actorlib.backends.transport import auth as cluster_auth
from actorlib.backends.transport import tokens

pytestmark = pytest.mark.chaos
HEADER = struct.Struct("!I")


@dataclass
class Head:
    host: str
    port: int
    token: bytes
    procs: list


@pytest.fixture
def head(tmp_path: Path, _leak_check: None) -> Iterator[Head]:
    root = str(tmp_path)
    token_file = os.path.join(root, "token")
    tokens.write_token_file(token_file, tokens.new_token())
    proc, address = daemons.start_head(root, token_file)
    node = daemons.start_node(root, token_file, address, name="node", num_cpus=1)
    host, port = address.rsplit(":", 1)
    try:
        yield Head(host, int(port), tokens.read_token_file(token_file), [proc, node])
    finally:
        daemons.stop_processes([node, proc])
        head_log = Path(root, "logs", "head.log").read_text()
        assert "internal error" not in head_log, head_log[-4000:]


def frame(body: bytes) -> bytes:
    return HEADER.pack(len(body)) + body


junk = st.binary(max_size=512)
messages = st.one_of(
    junk.map(frame),  # well-framed garbage
    junk.map(lambda b: frame(b)[: max(1, len(b) // 2)]),  # truncated
    st.integers(2**20, 2**32 - 1).map(lambda n: HEADER.pack(n) + b"x" * 16),  # oversized
    st.tuples(
        st.sampled_from(["task_finished", "call_finished", "hello", "free", "ready", "nodes",
                         "heartbeat", "submit_task", "drop_ref", "watch", 7, 3]),
        st.one_of(st.none(), st.integers(), st.binary(max_size=32), st.lists(st.integers())),
    ).map(lambda t: frame(pickle.dumps(t))),  # decodable, wrong in shape or kind
    junk,  # raw bytes, no framing
)


def _send(head: Head, role: str | None, chunks: list[bytes]) -> None:
    if role is None:  # a stranger: never authenticated
        sock = socket.create_connection((head.host, head.port), timeout=5)
    else:
        sock = cluster_auth.connect(head.host, head.port, head.token, role, timeout=5)
    try:
        for chunk in chunks:
            sock.sendall(chunk)
    except OSError:
        pass  # the head hung up on us: that is allowed
    finally:
        sock.close()


def test_head_survives_any_bytes_then_serves_a_driver(
    head: Head, monkeypatch: pytest.MonkeyPatch
) -> None:
    @given(role=st.sampled_from([None, None, "driver", "node", "cli"]),
           chunks=st.lists(messages, min_size=1, max_size=5))
    def fuzz(role: str | None, chunks: list[bytes]) -> None:
        _send(head, role, chunks)
        assert all(p.poll() is None for p in head.procs), "a daemon died"

    fuzz()
    monkeypatch.setenv("ACTORLIB_CLUSTER_TOKEN", head.token.decode())
    actorlib.init(address=f"{head.host}:{head.port}")
    try:
        wait_until(lambda: len(actorlib.nodes()) >= 1, timeout=T, what="the node")
        square = actorlib.remote(lambda x: x * x)
        assert actorlib.get([square.remote(i) for i in range(20)], timeout=T) == [
            i * i for i in range(20)
        ]
    finally:
        actorlib.shutdown()
