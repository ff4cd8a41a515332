"""Snapshots of the core's records as plain rows: what ``actorlib.util.state`` lists.

The core keeps only live work in its records (a task leaves :attr:`Tasks.records` when its
returns are resolved), so it also keeps a bounded ring of ended tasks and calls, one tuple
each (:func:`ended_entry`), appended where a task's returns are resolved. Rows are built
from those only when asked, on the core loop, so listing costs nothing while no one looks.

Field names are Ray's (``ray.util.state``) where Ray has the field: times in milliseconds
since the epoch (``creation_time_ms``...), ids as hex strings, states in Ray's words.

Runs on the core loop only (the runtime calls :func:`rows` through it).
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from actorlib.core.ids import id_hex

if TYPE_CHECKING:
    from actorlib.core.actors import ActorRecord, Actors
    from actorlib.core.objects import ObjectTable
    from actorlib.core.placement_groups import PlacementGroups
    from actorlib.core.scheduler import Scheduler
    from actorlib.core.tasks import TaskRecord, Tasks

#: How many ended tasks (and, separately, ended actor calls) the core remembers.
ENDED_KEPT = 10_000
#: How many dead actors the core remembers after their last handle is gone.
DEAD_ACTORS_KEPT = 1_000

#: The kinds :func:`rows` answers for (``demand`` for ``actorlib status``).
KINDS = ("tasks", "actors", "objects", "nodes", "workers", "placement_groups", "demand")
#: The kinds the runtime answers from tables of their own (``core.jobs``, ``core.metrics``).
OWN_KINDS = ("jobs", "metrics")

#: Questions about the worker processes themselves, answered by the backend where they run
#: (a cluster's head asks their node), asked as a kind so that every way rows travel (a
#: local driver's socket, a head's CLI link, a driver's client) carries them:
#: ``stack:PID`` (the threads' stacks of worker PID), ``logs`` (the worker log files),
#: ``log:PID:BYTES`` (the last BYTES of worker PID's log file).
WORKER_QUERIES = ("stack", "logs", "log")
#: The most of a log file one ``log:`` query reads.
MAX_LOG_TAIL = 1 << 20
#: A parsed worker query: what, the pid (0 for ``logs``), the bytes (0 but for ``log``).
WorkerQuery = tuple[str, int, int]


def worker_query(kind: str) -> WorkerQuery | None:
    """``kind`` as a :data:`WorkerQuery` if it asks about worker processes, else None;
    ``ValueError`` naming the accepted forms if it is malformed."""
    what, _, rest = kind.partition(":")
    if what not in WORKER_QUERIES:
        return None
    parts = rest.split(":")
    if what == "logs" and not rest:
        return ("logs", 0, 0)
    if what == "stack" and len(parts) == 1 and parts[0].isdigit() and int(parts[0]) > 0:
        return ("stack", int(parts[0]), 0)
    if (what == "log" and len(parts) == 2 and all(p.isdigit() for p in parts)
            and int(parts[0]) > 0 and 0 < int(parts[1]) <= MAX_LOG_TAIL):
        return ("log", int(parts[0]), int(parts[1]))
    raise ValueError(f"{kind!r}: a question about workers is stack:PID, logs or "
                     f"log:PID:BYTES (BYTES from 1 to {MAX_LOG_TAIL})")

# An ended task: (task id, name, attempt, node id, failed, job, creation, start and end
# time, pid); an ended call: (call id, method, class name, attempt, the actor's node id,
# actor id, failed, job, creation, start and end time, pid). Tuples of what is at hand, not
# dicts: one is appended per task, and a row is made of it only when someone asks. Only
# atomic values, so the collector stops tracking each tuple at its first pass: the ring
# holds the last 10,000, which would otherwise all reach the oldest generation and make
# its full collections come more often (a placement held here also outlived its task).
EndedTask = tuple[int, str, int, "str | None", bool, int, float, float, float, int]
EndedCall = tuple[int, str, str, int, "str | None", int, bool, int, float, float, float, int]

#: What a backend says of a worker (``Backend.workers``): plain dicts with the keys
#: ``worker_id``, ``pid``, ``node_id``, ``worker_type`` ("WORKER", or "DRIVER" for the
#: process the core runs in), ``is_alive``, ``task_ids`` (what it runs; None: every task
#: of this core, when they all run in this process), ``actor_id`` (0: none) and
#: ``exit_detail``.
WorkerInfo = dict[str, Any]


#: Task events (times and the ended rings) are recorded unless ``_ACTORLIB_TASK_EVENTS=0``:
#: a private switch, there to measure what recording costs (``actorlib bench`` in pairs).
RECORDING = os.environ.get("_ACTORLIB_TASK_EVENTS", "1") != "0"


def _no_time() -> float:
    return 0.0


#: The clock of task events: ``time.time``, or a constant 0 when recording is off.
event_time: Callable[[], float] = time.time if RECORDING else _no_time


def ended_ring() -> collections.deque[EndedTask]:
    return collections.deque(maxlen=ENDED_KEPT if RECORDING else 0)


def ended_calls_ring() -> collections.deque[EndedCall]:
    return collections.deque(maxlen=ENDED_KEPT if RECORDING else 0)


def dead_actor_ring() -> collections.deque[dict[str, Any]]:
    """Rows of forgotten actors: a row, not the record, so their arguments can be freed."""
    return collections.deque(maxlen=DEAD_ACTORS_KEPT)


# Ray's names for the core's task states (actorlib.core.tasks.TaskState values).
_TASK_STATES = {
    "waiting": "PENDING_ARGS_AVAIL",
    "queued": "PENDING_NODE_ASSIGNMENT",
    "following": "SUBMITTED_TO_WORKER",  # queued on a worker behind a running task
    "running": "RUNNING",
}
# ... and actor states (actorlib.core.actors.ActorState values).
_ACTOR_STATES = {
    "waiting": "PENDING_CREATION",
    "starting": "PENDING_CREATION",
    "alive": "ALIVE",
    "restarting": "RESTARTING",
    "dead": "DEAD",
}


def _ms(t: float) -> float | None:
    """Seconds as milliseconds, to the microsecond (a timeline of short tasks needs it)."""
    return round(t * 1000, 3) if t else None


def _task_row(
    task_id: int, name: str, type_: str, state: str, attempt: int, node_id: str | None,
    actor_id: int, job: int, created: float, started: float, ended: float, pid: int,
) -> dict[str, Any]:
    return {
        "task_id": id_hex(task_id),
        "attempt_number": attempt,
        "name": name,
        "state": state,
        "job_id": id_hex(job),
        "actor_id": id_hex(actor_id) if actor_id else None,
        "type": type_,
        "func_or_class_name": name,
        "node_id": node_id,
        "creation_time_ms": _ms(created),
        "start_time_ms": _ms(started),
        "end_time_ms": _ms(ended),
        "worker_pid": pid or None,
    }


def _live_task(rec: TaskRecord, pids: _Pids) -> dict[str, Any]:
    spec = rec.spec
    placement = rec.placement
    if placement is None and rec.leader is not None:
        # Queued on a worker behind a chain of tasks: the node is the chain head's (the
        # task just ahead may be queued too, with no placement of its own). Imported
        # here: ``core.tasks`` imports this module.
        from actorlib.core.tasks import chain_head

        placement = chain_head(rec).placement
    return _task_row(
        spec.task_id, spec.name or spec.function.name, "NORMAL_TASK",
        _TASK_STATES.get(rec.state.value, rec.state.value.upper()), spec.attempt,
        placement.node.node_id if placement is not None else None, 0, rec.job,
        rec.created, rec.started, 0.0, pids.of_task(spec.task_id),
    )


def _calls(actors: Actors, pids: _Pids) -> list[dict[str, Any]]:
    out = []
    for actor in actors.records.values():
        placement = actor.placement
        node_id = placement.node.node_id if placement is not None else None
        mailbox = actor.mailbox
        name = actor.spec.cls.name
        pid = pids.of_actor(actor.spec.actor_id)
        for call in mailbox.calls():
            spec = call.spec
            handed = spec.call_id in mailbox.inflight
            if handed:
                # started, or queued in the actor behind its group's running calls
                state = "RUNNING" if call.running else "SUBMITTED_TO_WORKER"
            elif call.remaining:
                state = "PENDING_ARGS_AVAIL"
            else:
                state = "PENDING_ACTOR_TASK_ORDERING_OR_CONCURRENCY"
            out.append(_task_row(
                spec.call_id, f"{name}.{spec.method}", "ACTOR_TASK", state, spec.attempt,
                node_id, spec.actor_id, actor.job, call.created,
                call.started if call.running else 0.0, 0.0, pid if handed else 0,
            ))
    return out


def task_rows(tasks: Tasks, actors: Actors, workers: list[WorkerInfo]) -> list[dict[str, Any]]:
    """Every live task and actor call, then those ended (the most recent last)."""
    pids = _Pids(workers)
    out = [_live_task(rec, pids) for rec in tasks.records.values()]
    out.extend(_calls(actors, pids))
    for (id_, name, attempt, node_id, failed, job, created, started, ended,
         pid) in tasks.ended:
        out.append(_task_row(
            id_, name, "NORMAL_TASK", "FAILED" if failed else "FINISHED", attempt, node_id, 0,
            job, created, started, ended, pid,
        ))
    for (id_, method, class_name, attempt, node_id, actor_id, failed, job, created,
         started, ended, pid) in actors.ended:
        out.append(_task_row(
            id_, f"{class_name}.{method}", "ACTOR_TASK", "FAILED" if failed else "FINISHED",
            attempt, node_id, actor_id, job, created, started, ended, pid,
        ))
    return out


class _Pids:
    """Which process runs a task or hosts an actor, from the backend's workers."""

    def __init__(self, workers: list[WorkerInfo]) -> None:
        self.tasks: dict[int, int] = {}
        self.actors: dict[int, int] = {}
        self.everything = 0  # the core's own process, when all work runs in it
        for worker in workers:
            if not worker["is_alive"]:
                continue
            if worker["task_ids"] is None:
                self.everything = worker["pid"]
                continue
            for task_id in worker["task_ids"]:
                self.tasks[task_id] = worker["pid"]
            if worker["actor_id"]:
                self.actors[worker["actor_id"]] = worker["pid"]

    def of_task(self, task_id: int) -> int:
        return self.tasks.get(task_id, self.everything)

    def of_actor(self, actor_id: int) -> int:
        return self.actors.get(actor_id, self.everything)


def actor_row(rec: ActorRecord, pid: int = 0) -> dict[str, Any]:
    spec = rec.spec
    placement = rec.placement
    error = rec.dead_error
    return {
        "actor_id": id_hex(spec.actor_id),
        "class_name": spec.cls.name,
        "state": _ACTOR_STATES.get(rec.state.value, rec.state.value.upper()),
        "job_id": id_hex(rec.job),
        "name": spec.name or "",
        "ray_namespace": spec.namespace,
        "node_id": placement.node.node_id if placement is not None else None,
        "num_restarts": rec.restarts,
        "is_detached": spec.detached,
        "required_resources": dict(spec.resources),
        "death_cause": str(error) if error is not None else None,
        "pid": pid or None,
    }


def actor_rows(actors: Actors, workers: list[WorkerInfo]) -> list[dict[str, Any]]:
    """Every actor the core knows, then dead ones it has forgotten (the latest last)."""
    pids = _Pids(workers)
    out = [
        actor_row(rec, pids.of_actor(id_) if rec.state.value == "alive" else 0)
        for id_, rec in actors.records.items()
    ]
    seen = {row["actor_id"] for row in out}
    out.extend(dict(row) for row in actors.dead if row["actor_id"] not in seen)
    return out


def object_rows(
    objects: ObjectTable, locate: Callable[[str], str | None], spilled: Callable[[str], bool],
) -> list[dict[str, Any]]:
    """Every object the core holds: its size and where its bytes are, once it has a value.

    ``locate(path)``: the node holding a buffer file; ``spilled(path)``: whether the store
    moved that file to disk.
    """
    out = []
    for id_, entry in objects.entries.items():
        value = entry.value
        size: int | None = None
        where: list[str] = []
        on_disk = False
        if value is not None:
            size = len(value.data)
            for i, location in enumerate(value.locations or ()):
                if location is None:
                    size += memoryview(value.buffers[i]).nbytes if i < len(value.buffers) else 0
                else:
                    size += location[1]
                    on_disk = on_disk or spilled(location[0])
                    node = locate(location[0])
                    if node is not None and node not in where:
                        where.append(node)
            if value.locations is None:
                size += sum(memoryview(b).nbytes for b in value.buffers)
        out.append({
            "object_id": id_hex(id_),
            "object_size": size,
            "reference_count": entry.refs,
            "task_status": (
                "PENDING" if value is None else "FAILED" if value.is_error else "FINISHED"
            ),
            "producer_id": id_hex(entry.producer) if entry.producer else None,
            "where": where,
            "spilled": on_disk,
        })
    return out


def node_rows(scheduler: Scheduler) -> list[dict[str, Any]]:
    return [
        {
            "node_id": node.node_id,
            "state": "ALIVE" if node.alive else "DEAD",
            "resources_total": dict(node.total),
            "resources_available": {k: max(v, 0.0) for k, v in node.available.items()},
        }
        for node in scheduler.nodes.values()
    ]


def placement_group_rows(table: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ray's state rows of placement groups, from the ``placement_group_table`` rows."""
    return [
        {
            "placement_group_id": row["placement_group_id"],
            "name": row["name"],
            "ray_namespace": row["namespace"],
            "state": row["state"],
            "strategy": row["strategy"],
            "is_detached": row["lifetime"] == "detached",
            "bundles": [
                {"bundle_id": f"{row['placement_group_id']}:{i}",
                 "node_id": row["bundles_to_node_id"].get(i), "unit_resources": resources}
                for i, resources in row["bundles"].items()
            ],
        }
        for row in table
    ]


def demand_rows(scheduler: Scheduler) -> list[dict[str, Any]]:
    """Work waiting for resources, per request shape: how much, and whether any node can
    ever take it (``infeasible``: why not, e.g. after the nodes that could have left)."""
    return [
        {
            "resources": request,
            "strategy": strategy if isinstance(strategy, str) else type(strategy).__name__,
            "count": count,
            "infeasible": scheduler.infeasible_reason(request, strategy),
        }
        for request, strategy, count in scheduler.demand()
    ]


def worker_rows(
    workers: list[WorkerInfo], tasks: Tasks, actors: Actors,
) -> list[dict[str, Any]]:
    """The backend's workers, with the names of what each runs.

    An actor's worker runs the calls in flight to that actor; a worker that runs every
    task of this core (``task_ids`` None: the thread backend's own process) lists every
    running task and in-flight call.
    """
    out = []
    for worker in workers:
        task_ids = worker["task_ids"]
        actor_id = worker["actor_id"]
        current: list[tuple[int, str]] = []
        actor = actors.records.get(actor_id) if actor_id else None
        if not worker["is_alive"]:
            pass
        elif task_ids is None:
            current += [(id_, rec.spec.name) for id_, rec in tasks.records.items()
                        if rec.state.value == "running"]
            for actor in actors.records.values():
                current += _in_flight(actor)
        else:
            for id_ in task_ids:
                rec = tasks.records.get(id_)
                if rec is not None:
                    current.append((id_, rec.spec.name))
            if actor is not None:
                current += _in_flight(actor)
        actor_class = actor.spec.cls.name if actor is not None else None
        out.append({
            "worker_id": worker["worker_id"],
            "is_alive": worker["is_alive"],
            "worker_type": worker["worker_type"],
            "node_id": worker["node_id"],
            "pid": worker["pid"],
            "actor_id": id_hex(actor_id) if actor_id else None,
            "actor_class": actor_class,
            "current_task_ids": [id_hex(i) for i, _ in current],
            "current_task_names": [name for _, name in current],
            "exit_detail": worker.get("exit_detail"),
        })
    return out


def _in_flight(actor: ActorRecord) -> list[tuple[int, str]]:
    name = actor.spec.cls.name
    return [(id_, f"{name}.{call.spec.method}") for id_, call in actor.mailbox.inflight.items()
            if call.running]


def rows(
    kind: str, tasks: Tasks, actors: Actors, objects: ObjectTable, scheduler: Scheduler,
    locate: Callable[[str], str | None], spilled: Callable[[str], bool],
    workers: Callable[[], list[WorkerInfo]], groups: PlacementGroups,
) -> list[dict[str, Any]]:
    """The rows of one kind (one of :data:`KINDS`)."""
    if kind == "tasks":
        return task_rows(tasks, actors, workers())
    if kind == "actors":
        return actor_rows(actors, workers())
    if kind == "workers":
        return worker_rows(workers(), tasks, actors)
    if kind == "demand":
        return demand_rows(scheduler)
    if kind == "objects":
        return object_rows(objects, locate, spilled)
    if kind == "nodes":
        return node_rows(scheduler)
    if kind == "placement_groups":
        return placement_group_rows(groups.table())
    raise ValueError(f"unknown state kind {kind!r}; expected one of {', '.join(KINDS)}")
