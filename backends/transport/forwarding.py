"""Core events sent over a connection to a core in another process.

A backend reports to its core through :class:`~actorlib.backends.base.CoreEvents`. Two
runners work where no core is: the local runner inside every worker process (its core
is the driver's), and a cluster node's process backend (its core is the head's).
Both turn each event into the same record (:mod:`~.messages`, ``Event``); only where
local work is posted differs. The receiving backend (``ProcessBackend`` for a worker's
events, ``HeadBackend`` for a node's) does its bookkeeping and calls its own core's
``CoreEvents`` with the record's fields, which are that method's arguments.
"""

from __future__ import annotations

from collections.abc import Callable

from actorlib.backends.transport.messages import (
    ActorDied,
    ActorInitFailed,
    ActorStarted,
    CallFinished,
    Event,
    ItemProduced,
    TaskCrashed,
    TaskFinished,
    TaskRecalled,
)
from actorlib.core.context import Client
from actorlib.core.records import Outcome, StreamItem
from actorlib.core.serialization import Serialized

# The per-task records are made with tuple.__new__: a NamedTuple's own __new__ is a
# Python function (as in the codec, which reads them so).
_new = tuple.__new__


class ForwardedEvents:
    """``CoreEvents`` as messages on ``send``; the receiving side hands them to its core.

    Cluster-wide events (nodes joining or leaving, lost objects, ended jobs) start at the
    core itself, never at a worker or a node, so they are not forwarded.
    """

    view = None  # the core is in another process: nothing to read here

    def __init__(self, send: Callable[[Event], None], client: Client,
                 post: Callable[..., None]) -> None:
        self._send = send
        self._client = client
        self.post = post

    @property
    def client(self) -> Client:
        return self._client

    def task_finished(self, outcome: Outcome) -> None:
        send = self._send  # read as a method, this attribute is a slow read
        send(_new(TaskFinished, (outcome,)))

    def item_produced(self, item: StreamItem) -> None:
        self._send(ItemProduced(item))

    def task_recalled(self, task_id: int, attempt: int) -> None:
        self._send(TaskRecalled(task_id, attempt))

    def task_crashed(self, task_id: int, attempt: int, error: BaseException) -> None:
        self._send(TaskCrashed(task_id, attempt, error))

    def actor_started(self, actor_id: int, incarnation: int) -> None:
        self._send(ActorStarted(actor_id, incarnation))

    def actor_init_failed(self, actor_id: int, incarnation: int, error: Serialized) -> None:
        self._send(ActorInitFailed(actor_id, incarnation, error))

    def call_finished(self, outcome: Outcome) -> None:
        send = self._send  # as in task_finished
        send(_new(CallFinished, (outcome,)))

    def actor_died(self, actor_id: int, incarnation: int, error: BaseException) -> None:
        self._send(ActorDied(actor_id, incarnation, error))

    def node_added(
        self, node_id: str, resources: dict[str, float], labels: dict[str, str] | None = None
    ) -> None:
        pass

    def node_removed(self, node_id: str) -> None:
        pass

    def objects_lost(self, lost: Callable[[Serialized], bool], why: str) -> None:
        pass

    def job_started(self, job: int, pid: int, entrypoint: str, host: str) -> None:
        pass

    def job_ended(self, job: int) -> None:
        pass
