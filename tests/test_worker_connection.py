"""A worker's end of its connection to the core: a blocking request made on its reader.

The reader thread runs the handlers of what arrives (watch callbacks among them). If one
of them makes a request that waits for an answer (``withdraw`` when a finalizer closes an
Executor's map iterator there), only that thread could read the answer: it reads on
itself, handling what came before the answer first, in order.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest
from testkit import T

from actorlib.backends.base import HeapStore
from actorlib.backends.transport import framing
from actorlib.backends.transport.messages import Ready, Reply, Request, Watch
from actorlib.backends.transport.remote_core import RemoteCoreClient
from actorlib.core.serialization import serialize
from actorlib.exceptions import RuntimeClosedError


class Core:
    """The core's side of the socket, played by the test."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.decoder = framing.Decoder()
        self.got: list[Any] = []

    def send(self, *messages: Any) -> None:
        self.sock.sendall(b"".join(framing.encode(m) for m in messages))

    def expect(self, kind: type) -> Any:
        self.sock.settimeout(T)
        while True:
            for message in self.got:
                if isinstance(message, kind):
                    self.got.remove(message)
                    return message
            data = self.sock.recv(1 << 16)
            assert data, "the worker closed the connection"
            self.got.extend(self.decoder.feed(data))


@pytest.fixture
def link():
    core_sock, worker_sock = socket.socketpair()
    holder: dict[str, RemoteCoreClient] = {}

    def on_message(message: Any) -> None:
        client = holder["client"]
        if isinstance(message, Ready):
            client.on_ready(message.token, message.object_id, message.value)
        elif isinstance(message, Reply):
            client.on_reply(message.req, message.ok, message.value)

    conn = framing.BlockingConnection(worker_sock, on_message, lambda: None)
    client = RemoteCoreClient(conn, 1, "", HeapStore(), [])
    holder["client"] = client
    conn.start()
    core = Core(core_sock)
    try:
        yield core, client
    finally:
        core_sock.close()
        conn._reader.join(T)
        worker_sock.close()


def _watch(core: Core, client: RemoteCoreClient, object_id: int, callback: Any) -> int:
    client.watch([object_id], callback)
    return core.expect(Watch).token


def test_a_request_made_on_the_reader_is_answered(link):
    core, client = link
    order: list[str] = []
    done = threading.Event()
    answers: list[Any] = []

    def first(_id: int, _value: Any) -> None:
        order.append("first: asks")
        answers.append(client.withdraw([7]))  # waits for a Reply only this thread reads
        order.append("first: answered")
        done.set()

    def second(_id: int, _value: Any) -> None:
        order.append("second")

    a = _watch(core, client, 1, first)
    b = _watch(core, client, 2, second)
    value = serialize(None)
    core.send(Ready(a, 1, value), Ready(b, 2, value))  # one write: both decoded at once
    request = core.expect(Request)
    assert (request.method, request.args) == ("withdraw", ([7],))
    core.send(Reply(request.req, True, [True]))
    assert done.wait(T)
    assert answers == [[True]]
    # What arrived before the answer was handled first, in order.
    assert order == ["first: asks", "second", "first: answered"]


def test_a_request_on_the_reader_fails_if_the_core_goes(link):
    core, client = link
    errors: list[BaseException] = []
    done = threading.Event()

    def ask(_id: int, _value: Any) -> None:
        try:
            client.withdraw([7])
        except RuntimeClosedError as exc:
            errors.append(exc)
        done.set()

    token = _watch(core, client, 1, ask)
    core.send(Ready(token, 1, serialize(None)))
    core.expect(Request)
    core.sock.shutdown(socket.SHUT_RDWR)  # the driver is gone, the answer never comes
    assert done.wait(T)
    assert len(errors) == 1
