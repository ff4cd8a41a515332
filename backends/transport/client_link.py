"""The core's side of a client in another process: a worker, a cluster node or a driver.

Such a client (``remote_core.RemoteCoreClient``) forwards the actorlib API over a
connection, as the client-call records of :mod:`~.messages`. A :class:`ClientLink` turns
them back into calls on the core's client interface (one handler per record), and keeps
a ledger of what the peer holds (references, watches), so that when the peer dies or
disconnects, everything it held is released at once.
"""

from __future__ import annotations

import collections
import pickle
from collections.abc import Callable
from typing import Any

from actorlib.backends.transport.framing import Undecodable
from actorlib.backends.transport.messages import (
    AddRef,
    Answer,
    CancelObject,
    ClientCall,
    CreateActor,
    DropRef,
    KillActor,
    Put,
    Ready,
    Reply,
    Request,
    SubmitCall,
    SubmitTask,
    TaskBlocked,
    Unwatch,
    Watch,
)
from actorlib.core.context import Client
from actorlib.core.serialization import Serialized, serialize
from actorlib.core.specs import DRIVER_CALLER, NO_ARGS, ActorSpec, CodeRef
from actorlib.exceptions import SerializationError

_new = tuple.__new__  # records made where every result comes (as ``codec._new``)

# Queries a peer may put to the core, answered with a Reply.
REQUESTS = frozenset({
    "create_actor", "lookup_actor", "named_actors", "nodes", "cluster_resources",
    "available_resources", "flush", "debug_state", "create_placement_group",
    "remove_placement_group", "placement_group_ready", "lookup_placement_group",
    "placement_groups", "state_rows", "withdraw", "record_metrics",
    "cancel",  # a forced one, which the core may refuse (``CancelObject`` otherwise)
})


class ClientLink:
    """Runs on the core loop (or the loop of whoever owns the connection)."""

    def __init__(
        self,
        client: Client,
        send: Callable[[Answer], None],
        post: Callable[..., None],
        adopt: Callable[[Serialized | None], None] = lambda value: None,
        own: dict[str, Callable[[tuple[Any, ...], Callable[[bool, Any], None]], None]]
        | None = None,
    ) -> None:
        self.client = client
        self.send = send
        self.post = post
        self.adopt = adopt
        #: Requests the link's owner answers itself, not the core (the process backend's
        #: arena extents for a worker): method -> handler(args, answered).
        self.own = own or {}
        self.refs: collections.Counter[int] = collections.Counter()
        self.watchers: dict[int, Any] = {}  # watch token -> core watcher
        #: One handler per record of ``messages.ClientCall``.
        self.handlers: dict[type, Callable[[Any], None]] = {
            AddRef: self._add_ref, DropRef: self._drop_ref, Put: self._put,
            Watch: self._watch, Unwatch: self._unwatch, SubmitTask: self._submit_task,
            SubmitCall: self._submit_call, CreateActor: self._create_actor,
            KillActor: self._kill_actor, TaskBlocked: self._task_blocked,
            CancelObject: self._cancel, Request: self._request,
        }

    def handle(self, message: ClientCall) -> None:
        """Turn a client call into a call on the core; KeyError if it is none."""
        self.handlers[type(message)](message)

    def undecodable(self, message: Undecodable, where: str) -> bool:
        """A client call that did not decode here (``where``: this process, for the
        error): a request is answered with a ``SerializationError`` saying why, a task's
        or call's results are that error, and an actor dies of it as it starts, rather
        than the peer waiting forever (or its calls failing as to an unknown actor).
        False if the record is no client call this can end."""
        record = message.record
        kind = type(record)
        if kind is Request and type(record.req) is int:
            self.send(Reply(record.req, False,
                            message.failure(f"the request {record.method!r}", where)))
            return True
        if kind is SubmitTask or kind is SubmitCall:
            spec = record.spec
            returns = getattr(spec, "return_ids", None)
            if type(returns) is not tuple or not all(type(i) is int for i in returns):
                return False
            what = (f"task {spec.task_id:016x}" if kind is SubmitTask
                    else f"actor call {spec.method!r}")
            for id_ in returns:  # counted for the peer, as a submission's results are
                self.refs[id_] += 1
                self.client.put(id_, serialize(message.failure(what, where), is_error=True))
            return True
        if kind is CreateActor and type(getattr(record.spec, "actor_id", None)) is int:
            # Created all the same, as an actor whose class is the error: it dies saying
            # why when it starts, as one whose message a worker could not decode.
            spec = record.spec
            actor_id = spec.actor_id
            name = getattr(spec.cls, "name", None)
            refusal = _Refusal(str(message.failure(f"the creation of actor {actor_id:016x}",
                                                   where)))
            self._create_actor(CreateActor(ActorSpec(
                actor_id, CodeRef(actor_id, name if type(name) is str else "actor",
                                  pickle.dumps(refusal)),
                NO_ARGS, {},
                caller_id=spec.caller_id if type(spec.caller_id) is int else DRIVER_CALLER,
                namespace=spec.namespace if type(spec.namespace) is str else "",
            )))
            return True
        return False


    def _add_ref(self, message: AddRef) -> None:
        self.refs[message.object_id] += 1
        self.client.add_ref(message.object_id)

    def _drop_ref(self, message: DropRef) -> None:
        id_ = message.object_id
        refs = self.refs
        # A count back at zero leaves the ledger: it would otherwise keep every id the
        # peer ever held, and ``release`` would walk them all. (``get`` and ``pop``: the
        # dict's own, where ``Counter``'s ``[]`` of a missing id and ``del`` are Python.)
        left = refs.get(id_, 0) - 1
        if left:
            refs[id_] = left
        else:
            refs.pop(id_)
        self.client.drop_ref(id_)

    def _put(self, message: Put) -> None:
        self.refs[message.object_id] += 1
        self.adopt(message.value)
        self.client.put(message.object_id, message.value)

    def _submit_task(self, message: SubmitTask) -> None:
        spec = message.spec
        self.refs.update(spec.return_ids)
        self.adopt(spec.args.payload)
        self.client.submit_task(spec)

    def _submit_call(self, message: SubmitCall) -> None:
        # Every call a peer makes comes here: its results counted with ``get`` (neither
        # ``update``'s ABC check for a mapping nor ``Counter.__missing__``, both Python
        # frames), and the arguments adopted only if there are any (no frame for none).
        spec = message.spec
        refs = self.refs
        for id_ in spec.return_ids:
            refs[id_] = refs.get(id_, 0) + 1
        payload = spec.args.payload
        if payload is not None:
            self.adopt(payload)
        self.client.submit_call(spec)

    def _create_actor(self, message: CreateActor) -> None:
        spec = message.spec
        self.refs[spec.actor_id] += 1
        self.adopt(spec.args.payload)
        self.client.create_actor(spec)

    def _kill_actor(self, message: KillActor) -> None:
        self.client.kill_actor(message.actor_id, message.no_restart)

    def _task_blocked(self, message: TaskBlocked) -> None:
        self.client.task_blocked(message.task_id, message.blocked)

    def _cancel(self, message: CancelObject) -> None:
        self.client.cancel(message.object_id, message.force, message.recursive)

    def _unwatch(self, message: Unwatch) -> None:
        watcher = self.watchers.pop(message.token, None)
        if watcher is not None:
            self.client.unwatch(message.ids, watcher)

    def _watch(self, message: Watch) -> None:
        token, ids = message.token, message.ids
        left = [len(set(ids))]

        reads = message.reads

        def ready(id_: int, value: Serialized) -> None:
            if reads:
                value.read = True  # delivered to a get: the peer reads it
            self.send(_new(Ready, (token, id_, value)))  # (NamedTuple's ``__new__``: Python)
            left[0] -= 1
            if left[0] == 0:
                self.watchers.pop(token, None)

        self.watchers[token] = ready
        self.client.watch(ids, ready)

    def _request(self, message: Request) -> None:
        req, method, args = message

        def answered(ok: bool, result: Any) -> None:
            if ok and method == "create_actor":
                self.refs[result] += 1
            elif ok and method == "lookup_actor" and result is not None:
                self.refs[result.actor_id] += 1
            elif ok and method == "placement_group_ready":
                self.refs[args[1]] += 1
            self.send(Reply(req, ok, result))

        own = self.own.get(method)
        if own is not None:
            own(args, answered)
            return
        if method not in REQUESTS:
            answered(False, ValueError(f"unknown request {method!r}"))
            return
        if method == "create_actor":
            self.adopt(args[0].args.payload)
        forward = getattr(self.client, "forward_request", None)
        if forward is not None:  # a relay (a cluster node): never block its loop
            forward(method, args, answered)
            return

        def answer() -> None:
            if method == "state_rows" and worker_query is not None and worker_query(
                args[0], answered
            ):
                return  # a question about worker processes: answered once they answer
            try:
                result = None if method == "flush" else getattr(self.client, method)(*args)
            except Exception as exc:
                answered(False, exc)
            else:
                answered(True, result)

        worker_query = getattr(self.client, "answer_worker_query", None)  # a core's
        self.post(answer)

    def release(self) -> None:
        """The peer is gone: the references its objects and actors held die with it."""
        refs = list(self.refs.items())
        self.refs.clear()
        for id_, count in refs:
            for _ in range(count):
                self.client.drop_ref(id_)
        self.watchers.clear()  # the core drops them when their objects resolve


def _refuse(message: str) -> None:
    raise SerializationError(message)


class _Refusal:
    """Unpickles as a ``SerializationError`` raised (the class of an undecodable actor)."""

    def __init__(self, message: str) -> None:
        self.message = message

    def __reduce__(self) -> Any:
        return (_refuse, (self.message,))
