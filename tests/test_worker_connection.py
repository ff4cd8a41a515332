"""A worker's end of its connection to the core: a blocking request made on its reader.

The reader thread runs the handlers of what arrives (watch callbacks among them). If one
of them makes a request that waits for an answer (``withdraw`` when a finalizer closes an
Executor's map iterator there), only that thread could read the answer: it reads on
itself, handling what came before the answer first, in order.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from testkit import T, ctrl_c_elsewhere, wait_until

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
    with _linked() as (core, client, _conn):
        yield core, client


@pytest.fixture
def inline_link():
    with _linked() as linked:
        yield linked


@contextlib.contextmanager
def _linked() -> Iterator[tuple[Core, RemoteCoreClient, framing.BlockingConnection]]:
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
        yield core, client, conn
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


def test_ctrl_c_reaches_a_request_waiting_on_the_main_thread(link):
    """A cluster driver's main thread waits for the head's answer (``get_actor``,
    ``nodes()``, a withdrawal): Ctrl-C still reaches it at once, whichever thread of the
    process the kernel hands it to, however long the head takes."""
    core, client = link

    def answer() -> None:
        request = core.expect(Request)
        core.send(Reply(request.req, True, [True]))

    with ctrl_c_elsewhere("_request", "remote_core.py", answer):
        client.withdraw([7])


# -- work run inline on the reading thread (a worker's plain tasks) ------------------------


def test_inline_work_that_waits_for_an_answer_hands_reading_over(inline_link):
    """Inline work that asks the core hands reading to a spare thread: the answer, and
    what arrives meanwhile, is read while it waits; afterwards reading goes on."""
    core, client, conn = inline_link
    order: list[str] = []
    answers: list[Any] = []
    done = threading.Event()
    readers: set[int] = set()

    def work() -> None:
        order.append("work: asks")
        answers.append(client.withdraw([7]))  # not answered until the core gets a Request
        order.append("work: answered")

    def first(_id: int, _value: Any) -> None:
        readers.add(threading.get_ident())
        assert conn.may_run_inline()
        conn.run_inline(work)
        done.set()

    def second(_id: int, _value: Any) -> None:
        readers.add(threading.get_ident())
        order.append("second")

    a = _watch(core, client, 1, first)
    b = _watch(core, client, 2, second)
    value = serialize(None)
    core.send(Ready(a, 1, value))
    request = core.expect(Request)
    core.send(Ready(b, 2, value))  # read by the spare while the work waits
    core.send(Reply(request.req, True, [True]))
    assert done.wait(T)
    assert answers == [[True]]
    assert order == ["work: asks", "second", "work: answered"]
    assert len(readers) == 2  # the second message was read by another thread
    # Reading goes on, on whichever thread owns it now.
    after = threading.Event()
    c = _watch(core, client, 3, lambda _id, _value: after.set())
    core.send(Ready(c, 3, value))
    assert after.wait(T)


def _inline_work_waiting_for_the_next_message(
    inline_link: Any,
) -> tuple[int, Any, threading.Event, list[bool]]:
    """Inline work started by the first message that waits for what the second brings:
    (the second's id, a value to send, set when the first's handler returns, what the
    work's wait gave)."""
    core, client, conn = inline_link
    started, released, done = threading.Event(), threading.Event(), threading.Event()
    waited: list[bool] = []

    def work() -> None:
        started.set()
        waited.append(released.wait(T))

    def first(_id: int, _value: Any) -> None:
        conn.run_inline(work)
        done.set()

    a = _watch(core, client, 1, first)
    b = _watch(core, client, 2, lambda _id, _value: released.set())
    value = serialize(None)
    core.send(Ready(a, 1, value))
    assert started.wait(T)
    return b, value, done, waited


def test_the_watchdog_passes_reading_on_while_inline_work_runs(inline_link):
    """Inline work that waits on something only a later message brings (a thread of
    the task calling the API, a cancel): the watchdog's look hands reading over."""
    core, client, conn = inline_link
    b, value, done, waited = _inline_work_waiting_for_the_next_message(inline_link)
    # Two looks at the same inline run, as the worker's main thread makes them: the
    # first sees it new, the second sees it still running and hands reading over.
    seen = conn.watch_inline(-1)
    assert conn.reads_here() is False
    conn.watch_inline(seen)
    core.send(Ready(b, 2, value))
    assert done.wait(T)
    assert waited == [True], "nobody read the message that ends the inline work"
    # Each thread takes its turn: the reader that ran the work now waits as a spare,
    # and inline work on the new reader hands reading back to it.
    again = threading.Event()

    def third(_id: int, _value: Any) -> None:
        conn.run_inline(lambda: again.set() if client.withdraw([1]) else None)

    c = _watch(core, client, 3, third)
    core.send(Ready(c, 3, value))
    request = core.expect(Request)
    core.send(Reply(request.req, True, [True]))
    assert again.wait(T)


def test_inline_work_is_not_run_inside_a_pump(inline_link):
    """A handler that reads on itself while it waits (``pump``) must not start inline
    work: the work would run nested inside it."""
    core, client, conn = inline_link
    seen: list[bool] = []
    done = threading.Event()

    def first(_id: int, _value: Any) -> None:
        client.withdraw([7])  # on the reader: it pumps until the answer comes
        done.set()

    def second(_id: int, _value: Any) -> None:
        seen.append(conn.may_run_inline())

    a = _watch(core, client, 1, first)
    b = _watch(core, client, 2, second)
    value = serialize(None)
    core.send(Ready(a, 1, value), Ready(b, 2, value))
    request = core.expect(Request)
    core.send(Reply(request.req, True, [True]))
    assert done.wait(T)
    assert seen == [False]


class _Interrupting:
    """A spare's wake-up event where a cancel's interrupt lands, the first time it is set
    (the hand-over); later (the connection lost) it wakes the spare."""

    def __init__(self, wake: threading.Event) -> None:
        self.wake = wake
        self.fired = False

    def set(self) -> None:
        if not self.fired:
            self.fired = True
            raise KeyboardInterrupt
        self.wake.set()


def test_a_cancel_interrupting_the_hand_over_leaves_a_reader(inline_link):
    """A task is interrupted (cancelled) between any two bytecodes, also inside the
    hand-over of reading: whatever step it stops at, some thread reads on."""
    core, client, conn = inline_link
    value = serialize(None)
    first_done = threading.Event()

    def first(_id: int, _value: Any) -> None:  # leaves a spare behind: this thread
        conn.run_inline(conn.yield_reading)
        first_done.set()

    a = _watch(core, client, 1, first)
    core.send(Ready(a, 1, value))
    assert first_done.wait(T)
    # It becomes a spare once back from its inline work, a moment after first_done.
    wait_until(lambda: bool(conn._spares), timeout=T, what="the first thread to wait as a spare")
    interrupted = threading.Event()

    def second(_id: int, _value: Any) -> None:
        def work() -> None:
            with conn._role:
                assert conn._spares, "the first thread should wait as a spare"
                ident = conn._spares[-1]
                conn._wakes[ident] = _Interrupting(conn._wakes[ident])  # type: ignore[assignment]
            try:
                conn.yield_reading()
            except KeyboardInterrupt:
                interrupted.set()

        conn.run_inline(work)

    b = _watch(core, client, 2, second)
    core.send(Ready(b, 2, value))
    assert interrupted.wait(T)
    after = threading.Event()
    c = _watch(core, client, 3, lambda _id, _value: after.set())
    core.send(Ready(c, 3, value))
    assert after.wait(T), "nobody reads after an interrupted hand-over"


def test_an_urgent_message_passes_reading_on_while_inline_work_runs(inline_link):
    """The driver's signal (a cancel or an exit was sent) makes the worker's main thread
    call ``urgent``: reading passes to a spare at once, with no watchdog look."""
    core, _, conn = inline_link
    b, value, done, waited = _inline_work_waiting_for_the_next_message(inline_link)
    conn.urgent()
    assert conn.reads_here() is False
    core.send(Ready(b, 2, value))
    assert done.wait(T)
    assert waited == [True], "nobody read the urgent message"


def test_an_urgent_message_before_inline_work_passes_reading_on_as_it_starts(inline_link):
    """Said while no inline work runs (the urgent message may be decoded already, queued
    behind the task that runs next): the next inline work hands reading over first."""
    core, client, conn = inline_link
    released, done = threading.Event(), threading.Event()
    waited: list[bool] = []

    def first(_id: int, _value: Any) -> None:
        conn.run_inline(lambda: waited.append(released.wait(T)))
        done.set()

    a = _watch(core, client, 1, first)
    b = _watch(core, client, 2, lambda _id, _value: released.set())
    value = serialize(None)
    conn.urgent()
    core.send(Ready(a, 1, value), Ready(b, 2, value))  # one write: b waits behind a's work
    assert done.wait(T)
    assert waited == [True], "the message behind the inline work was not read"


def test_a_thread_of_inline_work_waiting_for_an_answer_passes_reading_on(inline_link):
    """Inline work whose own thread asks the core (and waits for that answer before it
    ends): the asking thread hands reading over, no watchdog look needed."""
    core, client, conn = inline_link
    answers: list[Any] = []
    done = threading.Event()

    def work() -> None:
        helper = threading.Thread(target=lambda: answers.append(client.withdraw([7])))
        helper.start()
        helper.join(T)

    def first(_id: int, _value: Any) -> None:
        conn.run_inline(work)
        done.set()

    a = _watch(core, client, 1, first)
    core.send(Ready(a, 1, serialize(None)))
    request = core.expect(Request)
    core.send(Reply(request.req, True, [True]))
    assert done.wait(T)
    assert answers == [[True]], "the answer to the task's thread was not read"


def test_a_relaying_client_remembers_no_ready_ids():
    """A cluster node's client passes its workers' watches on and never waits itself: the
    ready ids it relays are not kept (they held up to 100,000 ids a node)."""
    sent: list[Any] = []

    class Conn:
        send = staticmethod(sent.append)

    client = RemoteCoreClient(  # type: ignore[arg-type]
        Conn(), 1, "", HeapStore(), [], remembers_ready=False
    )
    seen: list[int] = []
    client.watch([1, 2], lambda id_, _value: seen.append(id_), reads=False)
    token = sent[-1].token
    for id_ in (1, 2):
        client.on_ready(token, id_, serialize(id_))
    assert seen == [1, 2]  # relayed as before
    assert client._ready_ids == set()


def test_a_wait_loop_asks_the_core_only_about_ids_it_has_not_heard_of():
    """A ``Ready`` to any watch (also one that arrives after its wait ended) tells the
    client that object is ready: a later ``wait`` (``reads=False``) on it is answered
    without a round trip to the core; a ``get`` still asks for the value, and a dropped
    ref's id is forgotten."""
    from actorlib.core.serialization import UNREAD

    sent: list[Any] = []

    class Conn:
        send = staticmethod(sent.append)

    client = RemoteCoreClient(Conn(), 1, "", HeapStore(), [])  # type: ignore[arg-type]
    assert client.ready_values([1, 2, 3], 1, False, reads=False) == {}
    seen: list[int] = []
    def collect(id_: int, value: Any) -> None:
        seen.append(id_)

    client.watch([1, 2, 3], collect, reads=False)
    token = sent[-1].token
    client.on_ready(token, 1, serialize(1))
    client.unwatch([2, 3], collect)  # the wait needed one: it stops watching
    for id_ in (2, 3):  # answers already on their way when it did
        client.on_ready(token, id_, serialize(id_))
    assert seen == [1]
    before = len(sent)
    assert client.ready_values([2, 3], 1, False, reads=False) == {2: UNREAD}
    assert client.ready_values([2, 3], 2, False, reads=False) == {2: UNREAD, 3: UNREAD}
    assert len(sent) == before  # answered here
    assert client.ready_values([2], 1, False, reads=True) == {}  # a get asks the core
    client.drop_ref(2)
    assert client.ready_values([2, 3], 2, False, reads=False) == {3: UNREAD}


def test_a_ready_arriving_after_its_ref_was_dropped_is_not_remembered():
    """A ``Ready`` on its way while the wait ended and the ref was dropped: the id stays
    forgotten (before, it was remembered again, memory held until 100,000 ids piled up,
    and a ``wait`` on a ref made of that id later was answered from it); a ``Ready`` to a
    watch still held is remembered as before."""
    from actorlib.core.serialization import UNREAD

    sent: list[Any] = []

    class Conn:
        send = staticmethod(sent.append)

    client = RemoteCoreClient(Conn(), 1, "", HeapStore(), [])  # type: ignore[arg-type]

    def ignore(_id: int, _value: Any) -> None:
        pass

    client.watch([1, 2, 3], ignore, reads=False)
    token = sent[-1].token
    client.unwatch([1, 2, 3], ignore)  # the wait timed out
    client.drop_ref(1)  # and its caller let go of 1 and 2
    client.drop_ref(2)
    for id_ in (1, 2, 3):  # answers already on their way
        client.on_ready(token, id_, serialize(id_))
    assert client._ready_ids == {3}
    assert client.ready_values([1, 2, 3], 3, False, reads=False) == {3: UNREAD}
    client.drop_ref(3)
    client.on_ready(token, 3, serialize(3))  # (a second answer, as the core may resend)
    assert client._ready_ids == set()
    client.watch([2], ignore, reads=False)  # a ref to 2 again, watched again: remembered
    client.on_ready(sent[-1].token, 2, serialize(2))
    assert client._ready_ids == {2}


def test_a_wait_asks_the_core_again_about_an_object_held_in_a_store():
    """Only a value held inline stays ready while a ref to it lives: one in a node's
    store may be lost with its node and be pending again while its task re-runs, so a
    ``wait`` on it asks the core each time (before, it was answered from the first
    ``Ready``: ready for ever)."""
    from actorlib.core.serialization import UNREAD, Serialized

    sent: list[Any] = []

    class Conn:
        send = staticmethod(sent.append)

    client = RemoteCoreClient(Conn(), 1, "", HeapStore(), [])  # type: ignore[arg-type]
    client.watch([1, 2], lambda id_, value: None, reads=False)
    token = sent[-1].token
    client.on_ready(token, 1, Serialized(b"x", [b"big"], locations=[("/dev/shm/n-1", 3)]))
    client.on_ready(token, 2, serialize(2))
    assert client.ready_values([1, 2], 2, False, reads=False) == {2: UNREAD}


def test_a_wait_answered_here_still_reads_what_the_client_holds_itself():
    """A client that reads some values itself (a cluster driver: its own puts) answers a
    ``wait`` on them without the core, also once it has heard of other ready ids (before,
    any id heard ready made it skip its own values: a round trip to the head)."""
    from actorlib.core.serialization import UNREAD

    sent: list[Any] = []

    class Conn:
        send = staticmethod(sent.append)

    class HoldsSeven(RemoteCoreClient):
        def ready_value(self, id_: int) -> Any:
            return serialize(7) if id_ == 7 else None

    client = HoldsSeven(Conn(), 1, "", HeapStore(), [])  # type: ignore[arg-type]
    client.watch([1], lambda id_, value: None, reads=False)
    client.on_ready(sent[-1].token, 1, serialize(1))
    got = client.ready_values([7, 1], 2, False, reads=False)
    assert list(got) == [7, 1] and got[1] is UNREAD
    assert client.ready_values([7], 1, False, reads=False).keys() == {7}


def test_a_node_leaving_makes_the_client_forget_the_ids_it_heard_are_ready():
    """A task whose result in a node's store was lost runs again, and its inline results
    are pending meanwhile too: a node gone, a ``wait`` asks the core again. A node that
    joins takes nothing away."""
    from actorlib.core.records import NodeInfo
    from actorlib.core.serialization import UNREAD

    sent: list[Any] = []

    class Conn:
        send = staticmethod(sent.append)

    a, b = NodeInfo("a", {"CPU": 1.0}), NodeInfo("b", {"CPU": 1.0})
    client = RemoteCoreClient(Conn(), 1, "", HeapStore(), [a])  # type: ignore[arg-type]
    client.watch([1], lambda id_, value: None, reads=False)
    client.on_ready(sent[-1].token, 1, serialize(1))
    client.set_nodes([a, b])
    assert client.ready_values([1], 1, False, reads=False) == {1: UNREAD}
    client.set_nodes([b])
    assert client.ready_values([1], 1, False, reads=False) == {}
