"""The core's side of a client in another process: a worker, a cluster node or a driver.

Such a client (``process.worker.RemoteCoreClient``) forwards the actorlib API over a
connection. A :class:`ClientLink` turns those messages back into calls on the core's
client interface, and keeps a ledger of what the peer holds (references, watches), so
that when the peer dies or disconnects, everything it held is released at once.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

from actorlib.backends.transport import wire
from actorlib.core.context import Client
from actorlib.core.serialization import Serialized

# Queries a peer may put to the core, answered with a REPLY.
REQUESTS = frozenset({
    "create_actor", "lookup_actor", "named_actors", "nodes", "cluster_resources",
    "available_resources", "flush", "debug_state",
})

#: Message kinds a ClientLink handles.
CLIENT_MESSAGES = frozenset({
    wire.ADD_REF, wire.DROP_REF, wire.SUBMIT_TASK, wire.SUBMIT_CALL, wire.WATCH,
    wire.UNWATCH, wire.PUT, wire.CREATE_ACTOR, wire.TASK_BLOCKED, wire.CANCEL,
    wire.KILL_ACTOR, wire.REQUEST,
})


class ClientLink:
    """Runs on the core loop (or the loop of whoever owns the connection)."""

    def __init__(
        self,
        client: Client,
        send: Callable[[tuple[Any, ...]], None],
        post: Callable[..., None],
        adopt: Callable[[Serialized | None], None] = lambda value: None,
    ) -> None:
        self.client = client
        self.send = send
        self.post = post
        self.adopt = adopt
        self.refs: collections.Counter[int] = collections.Counter()
        self.watchers: dict[int, Any] = {}  # watch token -> core watcher

    def handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        client = self.client
        if kind == wire.ADD_REF:
            self.refs[message[1]] += 1
            client.add_ref(message[1])
        elif kind == wire.DROP_REF:
            self.refs[message[1]] -= 1
            client.drop_ref(message[1])
        elif kind == wire.SUBMIT_TASK:
            spec = message[1]
            self.refs.update(spec.return_ids)
            self.adopt(spec.args.payload)
            client.submit_task(spec)
        elif kind == wire.SUBMIT_CALL:
            spec = message[1]
            self.refs.update(spec.return_ids)
            self.adopt(spec.args.payload)
            client.submit_call(spec)
        elif kind == wire.WATCH:
            self._watch(message[1], message[2])
        elif kind == wire.UNWATCH:
            watcher = self.watchers.pop(message[1], None)
            if watcher is not None:
                client.unwatch(message[2], watcher)
        elif kind == wire.PUT:
            self.refs[message[1]] += 1
            self.adopt(message[2])
            client.put(message[1], message[2])
        elif kind == wire.CREATE_ACTOR:
            spec = message[1]
            self.refs[spec.actor_id] += 1
            self.adopt(spec.args.payload)
            client.create_actor(spec)
        elif kind == wire.TASK_BLOCKED:
            client.task_blocked(message[1], message[2])
        elif kind == wire.CANCEL:
            client.cancel(message[1], message[2], message[3])
        elif kind == wire.KILL_ACTOR:
            client.kill_actor(message[1], message[2])
        elif kind == wire.REQUEST:
            self._request(message[1], message[2], message[3])
        else:
            raise ValueError(f"unexpected message {kind!r}")

    def _watch(self, token: int, ids: list[int]) -> None:
        left = [len(set(ids))]

        def ready(id_: int, value: Serialized) -> None:
            value.read = True  # delivered: the peer reads or reports it
            self.send((wire.READY, token, id_, value))
            left[0] -= 1
            if left[0] == 0:
                self.watchers.pop(token, None)

        self.watchers[token] = ready
        self.client.watch(ids, ready)

    def _request(self, req: int, method: str, args: tuple[Any, ...]) -> None:
        def answered(ok: bool, result: Any) -> None:
            if ok and method == "create_actor":
                self.refs[result] += 1
            elif ok and method == "lookup_actor" and result is not None:
                self.refs[result.actor_id] += 1
            self.send((wire.REPLY, req, ok, result))

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
            try:
                result = None if method == "flush" else getattr(self.client, method)(*args)
            except Exception as exc:
                answered(False, exc)
            else:
                answered(True, result)

        self.post(answer)

    def release(self) -> None:
        """The peer is gone: the references its objects and actors held die with it."""
        refs = list(self.refs.items())
        self.refs.clear()
        for id_, count in refs:
            for _ in range(count):
                self.client.drop_ref(id_)
        self.watchers.clear()  # the core drops them when their objects resolve
