"""One message vocabulary: a typed record per kind, compact on the wire, one handler table
per receiver covering exactly what its direction carries."""

from __future__ import annotations

import pickle
import signal
import socket
import sys
import types
from typing import Any

from actorlib.backends.transport import framing, wire
from actorlib.backends.transport import messages as m
from actorlib.core.records import ActorStart, CallRun, NodeInfo, Outcome, StreamItem, TaskRun
from actorlib.core.serialization import Serialized
from actorlib.core.specs import ActorSpec, Args, CallSpec, CodeRef, TaskSpec

_value = Serialized(b"v", (), (), False, None)
_code = CodeRef(7, "f", b"blob")
_task = TaskSpec(1, _code, Args(_value, (3,)), (2,), 1, {"CPU": 1.0})
_call = CallSpec(4, 5, "m", Args(None), (6,), 1)
_actor = ActorSpec(5, _code, Args(None), {"CPU": 0.0})
_stream_task = TaskSpec(8, _code, Args(None), (9, 10), 2, {"CPU": 1.0}, generator="streaming",
                        backpressure=4)
_stream_call = CallSpec(11, 5, "m", Args(None), (12, 13), 2, generator="streaming")

SAMPLES: list[Any] = [
    m.Init({"prefix": 3}), m.RunTask(TaskRun(_task, "n", [])), m.RunCall(CallRun(_call, [], 1)),
    m.StartActor(ActorStart(_actor, "n", [], 1)), m.StopActor(5, True), m.CancelRun(1, False),
    m.Recall(1), m.SysPath(["/x"]), m.Exit(),
    m.TaskFinished(Outcome(1, 0, values=[_value])), m.CallFinished(Outcome(4, 0, error=_value)),
    m.TaskRecalled(1, 0), m.TaskCrashed(1, 0, RuntimeError("x")), m.ActorStarted(5, 1),
    m.ActorInitFailed(5, 1, _value), m.ActorDied(5, 1, RuntimeError("y")), m.Alive(),
    m.Output("stdout", "hi\n", 1),
    m.AddRef(2), m.DropRef(2), m.Put(2, _value), m.Watch(1, [2]), m.Watch(1, [2], False),
    m.Unwatch(1, [2]),
    m.SubmitTask(_task), m.SubmitCall(_call), m.CreateActor(_actor), m.KillActor(5, True),
    m.TaskBlocked(1, True), m.CancelObject(2, False, True), m.Request(1, "nodes", ()),
    m.Ready(1, 2, _value), m.Reply(1, True, [3]),
    m.NodeHello("n", {"CPU": 2.0}, "127.0.0.1", 42, {"zone": "a"}), m.DriverHello(43, ["/x"], True),
    m.Welcome(3, [NodeInfo("n", {"CPU": 2.0})], {"s": ("h", 1)}, []),
    m.NodeReady("s", ("h", 1)), m.Nodes([], {}), m.Heartbeat({"workers": 1}), m.Free(["/p"]),
    m.StatusQuery(1), m.Status(1, {"nodes": []}),
    m.ItemProduced(StreamItem(8, 0, 3, _value)), m.ItemsConsumed(8, 2),
    m.SubmitTask(_stream_task), m.RunCall(CallRun(_stream_call, [], 1)),
    m.StateQuery(1, "tasks"), m.StateRows(1, [{"task_id": "01", "state": "RUNNING"}], None),
    m.UnhandledError(_value),
    m.JobSetup(17, {"logging": {"level": 20, "format": None}, "setup_hook": b"x"}),
    m.JobSetup(17, None), m.DriverHello(43, ["/x"], True, {"logging": None, "setup_hook": None}),
    m.RunTask(TaskRun(_task, "n", [], job=17)),
    m.StartActor(ActorStart(_actor, "n", [], 1, job=17)),
    m.NodeQuery(3, "stack", 4242, 0), m.NodeAnswer(3, [{"pid": 4242, "text": "x"}], None),
    m.NodeAnswer(4, [], "no such worker"), m.EnvFailed(),
]


def _one(data: bytes) -> Any:
    [message] = wire.Decoder().feed(data)
    return message


def test_every_record_has_a_tag_and_comes_back_the_same():
    assert {type(s) for s in SAMPLES} == set(m.RECORDS)
    assert len(set(m.TAGS.values())) == len(m.RECORDS)
    for sample in SAMPLES:
        back = _one(wire.encode(sample))
        assert type(back) is type(sample)
        assert repr(back) == repr(sample)


def test_records_travel_as_builtins_never_as_their_class():
    """The record's class is never named in a frame: ``(tag, *fields)``, no bigger than
    the ``("name", *fields)`` tuples it replaces."""
    for sample in SAMPLES:
        body = wire.encode(sample)[wire.HEADER.size :]
        assert b"messages" not in body and type(sample).__name__.encode() not in body
        assert type(pickle.loads(body)[0]) is int
    old = pickle.dumps(("cancel", 2, False, True), protocol=5)
    assert len(wire.encode(m.CancelObject(2, False, True))) - wire.HEADER.size < len(old)


def test_a_tuple_that_is_no_record_reaches_the_receiver_as_it_is():
    """Unknown tags, wrong sizes and non-tuples are not records: the receiver finds no
    handler for them (the head then closes the peer)."""
    for body in [(m.TAGS[m.AddRef], 1, 2), (999, 1), ("add_ref", 1), [1, 2], (), None]:
        data = pickle.dumps(body, protocol=5)
        assert _one(wire.HEADER.pack(len(data)) + data) == body


def test_the_vocabularies_hold_records_only_and_name_two_cancels():
    for vocabulary in (m.TO_WORKER, m.FROM_WORKER, m.TO_NODE, m.FROM_NODE, m.TO_DRIVER,
                       m.FROM_DRIVER, m.TO_CLI, m.FROM_CLI):
        assert set(vocabulary) <= set(m.RECORDS)
    assert m.CancelRun in m.TO_WORKER and m.CancelRun in m.TO_NODE
    assert m.CancelObject in m.FROM_WORKER and m.CancelObject in m.FROM_DRIVER
    assert m.CancelObject not in m.TO_WORKER and m.CancelRun not in m.FROM_DRIVER


def test_each_receiver_handles_exactly_its_direction():
    from actorlib.backends.base import BackendConfig
    from actorlib.backends.cluster.driver import ClusterClient
    from actorlib.backends.cluster.head import HeadBackend
    from actorlib.backends.cluster.node import NodeDaemon
    from actorlib.backends.process.backend import ProcessBackend
    from actorlib.backends.process.worker import Worker
    from actorlib.backends.transport.client_link import ClientLink

    # Undecodable: what a receiver that salvages makes of a frame that did not decode.
    salvaged = {framing.Undecodable}
    backend = ProcessBackend()
    assert set(backend._handlers) | {m.Alive, m.Output} == set(m.FROM_WORKER) | salvaged
    head = HeadBackend(b"token")
    assert set(head.handlers["node"]) == set(m.FROM_NODE) | salvaged
    assert set(head.handlers["driver"]) == set(m.FROM_DRIVER) | salvaged
    assert set(head.handlers["cli"]) == set(m.FROM_CLI)
    link = ClientLink(None, lambda message: None, lambda fn, *args: None)  # type: ignore[arg-type]
    assert set(link.handlers) == set(m.CLIENT_CALLS)
    client = ClusterClient.__new__(ClusterClient)
    assert set(client._handler_table()) | {m.Output} == set(m.TO_DRIVER) | salvaged
    node = NodeDaemon(("127.0.0.1", 1), b"token", BackendConfig())
    node.loop_thread.loop.close()
    assert set(node._handlers) == set(m.TO_NODE)
    ours, theirs = socket.socketpair()
    hook = sys.unraisablehook
    worker = Worker(theirs)
    try:
        assert set(worker._handlers) == set(m.TO_WORKER) | salvaged
        # Made outside a worker process, it leaves the process's signal wake-up fd and
        # unraisable hook alone (trio, for one, refuses to run on a taken wake-up fd).
        taken = signal.set_wakeup_fd(-1)
        signal.set_wakeup_fd(taken)
        assert taken == -1 and sys.unraisablehook is hook
    finally:
        ours.close()
        assert worker.exit.wait(5)
        worker.conn._reader.join(5)
        theirs.close()


def test_the_head_closes_a_peer_that_sends_another_directions_record():
    from actorlib.backends.cluster.head import HeadBackend

    head = HeadBackend(b"token")
    closed: list[bool] = []
    peer = types.SimpleNamespace(
        gone=False, role="driver", address="a:1", handlers=head.handlers["driver"],
        conn=types.SimpleNamespace(close=lambda: closed.append(True)),
    )
    for message in (m.TaskFinished(Outcome(1, 0)), m.NodeReady("s", ("h", 1)), ("add_ref", 1)):
        closed.clear()
        head._handle(peer, message)  # type: ignore[arg-type]
        assert closed == [True]
