"""The records the core hands to a backend and gets back: work placed on a node, its end.

They cross processes and sockets (the flat codec in ``backends/transport/codec.py`` packs
them by field), so they stay plain: slots, no behaviour.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from actorlib.core.serialization import Serialized
from actorlib.core.specs import ActorSpec, CallSpec, TaskSpec, pickled_by_fields


def require_fields(maker: str, *records: tuple[type, tuple[str, ...]]) -> None:
    """For code that makes records without ``__init__`` (``object.__new__``, then each
    field set: a class called with an ``__init__`` costs ~600 instructions more on
    CPython 3.11). Called at import with the fields ``maker`` sets on each class: raises
    ``ImportError`` unless they are all the class's fields (a dataclass's, else its
    slots), so a field added to a class fails the import until ``maker`` sets it too."""
    for cls, names in records:
        if dataclasses.is_dataclass(cls):
            own = [f.name for f in dataclasses.fields(cls)]
        else:
            own = [name for name in getattr(cls, "__slots__", ()) if name != "__weakref__"]
        if sorted(own) != sorted(names):
            raise ImportError(f"{maker} must set every field of {cls.__name__}")


@pickled_by_fields
@dataclass(slots=True)
class NodeInfo:
    """A node as the core knows it: resources, address, liveness, labels."""

    node_id: str
    resources: dict[str, float]
    address: str = "127.0.0.1"
    alive: bool = True
    labels: dict[str, str] = field(default_factory=dict)


@pickled_by_fields
@dataclass(slots=True)
class TaskRun:
    """A task placed on a node, its dependency values gathered.

    ``follows``: when not 0, the id of a running task this one is queued behind on the
    same worker (see ``Backend.pipelines``); it holds no resources until that one ends.
    ``job``: the driver whose work it is, where workers serve several (a cluster's head
    sets it, so a worker applies that driver's logging and setup hook first); 0 if not.
    """

    spec: TaskSpec
    node_id: str
    deps: list[Serialized]
    gpu_ids: tuple[int, ...] = ()
    follows: int = 0
    job: int = 0


@pickled_by_fields
@dataclass(slots=True)
class ActorStart:
    """An order to start one incarnation of an actor on a node."""

    spec: ActorSpec
    node_id: str
    deps: list[Serialized]
    incarnation: int
    gpu_ids: tuple[int, ...] = ()
    job: int = 0  # as ``TaskRun.job``


@pickled_by_fields
@dataclass(slots=True)
class CallRun:
    """An order to run one actor call, with its resolved dependencies."""

    spec: CallSpec
    deps: list[Serialized]
    incarnation: int


@pickled_by_fields
@dataclass(slots=True)
class Outcome:
    """The end of one attempt of a task or call.

    Exactly one of ``values`` (one per return) and ``error`` is set. ``retryable`` says
    whether an application error matched the task's ``retry_exceptions``. ``pid``: the
    process that ran it (0 if it never ran), for the state API and the timeline.
    """

    id: int
    attempt: int
    values: list[Serialized] | None = None
    error: Serialized | None = None
    retryable: bool = False
    pid: int = 0


@pickled_by_fields
@dataclass(slots=True)
class StreamItem:
    """One item a generator task or call yielded (``num_returns="streaming"``), sent as it
    is produced: ``index`` counts from 0 in each attempt; ``value`` is already stored."""

    id: int
    attempt: int
    index: int
    value: Serialized
