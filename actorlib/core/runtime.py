"""The core runtime: one event loop owning objects, tasks, actors and the scheduler.

Public methods (no leading underscore) may be called from any thread: they hand work to
the loop (batched, see :mod:`actorlib.core.loop`) and never block, except the few queries
that must answer (``nodes()``, ``lookup_actor()``...). Methods with a leading underscore
run on the loop only. The API layer reaches this class through the client interface it
shares with worker-side proxies (see :mod:`actorlib.core.context`).
"""

from __future__ import annotations

import collections
import functools
import logging
import os
import pickle
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from actorlib.core import invariants
from actorlib.core.actors import ActorRecord, ActorState, CallRecord
from actorlib.core.ids import COUNTER_BITS, DRIVER_PREFIX, IdAllocator, id_hex
from actorlib.core.loop import LoopThread
from actorlib.core.objects import ObjectTable, Watcher
from actorlib.core.records import ActorStart, CallRun, NodeInfo, Outcome, TaskRun
from actorlib.core.scheduler import Placement, Scheduler
from actorlib.core.serialization import Serialized, serialize
from actorlib.core.specs import ActorSpec, Args, CallSpec, TaskSpec
from actorlib.core.waiting import report_unhandled
from actorlib.exceptions import (
    ActorDiedError,
    InfeasibleResourceError,
    InternalError,
    ObjectLostError,
    RuntimeClosedError,
    TaskCancelledError,
    WorkerCrashedError,
)

if TYPE_CHECKING:  # the interface the core drives; the core never imports a backend
    from actorlib.backends.base import Backend, BackendConfig

log = logging.getLogger("actorlib.core")


def error_value(exc: BaseException) -> Serialized:
    return Serialized(pickle.dumps(exc, protocol=5), [], (), True)


class TaskRecord:
    __slots__ = (
        "blocked", "cancelled", "children", "job", "leader", "placement", "preferred",
        "recalling", "remaining", "spec", "state", "successor",
    )

    def __init__(self, spec: TaskSpec, job: int = 0) -> None:
        self.spec = spec
        self.job = job  # the driver whose work this is (Runtime._job_of)
        # waiting -> queued -> [following ->] running -> (removed). "following": sent to
        # the worker of ``leader``, queued there behind it, holding no resources yet.
        self.state = "waiting"
        self.leader: TaskRecord | None = None
        self.successor: TaskRecord | None = None
        self.recalling = False
        self.remaining = 0
        self.placement: Placement | None = None
        self.cancelled = False
        self.blocked = False
        self.children: list[int] = []
        self.preferred: str | None = None  # the node holding most of its argument bytes


def _may_follow(leader_id: int, work: Any) -> bool:
    """A task may queue behind ``leader_id``: not an actor, and not the leader's child
    (the leader may be waiting for it)."""
    return isinstance(work, TaskRecord) and work.spec.caller_id != leader_id


class Runtime:
    """The driver's core. Also the API's client when the API runs in the driver process."""

    def __init__(self, backend: Backend, config: BackendConfig, namespace: str) -> None:
        self.backend = backend
        self.store = backend.store
        self.config = config
        self.namespace = namespace
        self.ids = IdAllocator(DRIVER_PREFIX)
        self.closed = False
        self.job_id = os.getpid()
        self._loop = LoopThread()
        self.objects = ObjectTable(self.store.free, self._release_ids, report_unhandled)
        self.scheduler = Scheduler()
        self.tasks: dict[int, TaskRecord] = {}
        # Pipelining (Backend.pipelines): running tasks that may take a task queued behind
        # them on their worker, and the tasks so queued.
        self._leaders: dict[int, TaskRecord] = {}
        self._followers: dict[int, TaskRecord] = {}
        self.actors: dict[int, ActorRecord] = {}
        self.calls: dict[int, int] = {}  # call id -> actor id, while the call is pending
        self.names: dict[tuple[str, str], int] = {}
        self._fresh: dict[int, Serialized] = {}  # put by a caller, not yet on the loop
        self._dirty = False
        self._feasibility: tuple[Any, dict[Any, str | None]] = ((), {})
        self._loop.on_drained(self._schedule)

    # == lifecycle (caller's thread) ====================================================

    def start(self) -> None:
        self._loop.start()
        try:
            nodes = self._loop.run_coroutine(self.backend.start(_Events(self), self.config))
        except BaseException:
            self._loop.stop()
            raise
        # A backend may pick its store while starting (the process backend sizes shared
        # memory then); nothing has been stored before this point.
        self.store = self.backend.store
        self.objects = ObjectTable(self.store.free, self._release_ids, report_unhandled)
        for node in nodes:
            self._loop.call(self.scheduler.add_node, node.node_id, dict(node.resources))

    def shutdown(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self._loop.call(self._fail_everything)
            self._loop.run_coroutine(self.backend.stop(), timeout=60)
        finally:
            self._loop.stop()

    def _fail_everything(self) -> None:
        closed = error_value(RuntimeClosedError("actorlib was shut down before this finished"))
        for entry_id in list(self.objects.entries):
            entry = self.objects.get(entry_id)
            if entry is not None and entry.value is None and entry.watchers:
                self.objects.set_value(entry_id, closed)

    # == reference counting ============================================================

    def add_ref(self, id_: int) -> None:
        if not self.closed:
            self._loop.post(self._add_ref, id_)

    def drop_ref(self, id_: int) -> None:
        if not self.closed:
            self._loop.post(self._drop_ref, id_)

    def _add_ref(self, id_: int) -> None:
        if not self.objects.add_ref(id_):
            actor = self.actors.get(id_)
            if actor is not None:
                actor.handle_refs += 1

    def _drop_ref(self, id_: int) -> None:
        if self.objects.drop_ref(id_):
            return
        actor = self.actors.get(id_)
        if actor is not None:
            actor.handle_refs -= 1
            if actor.handle_refs <= 0:
                self._actor_out_of_scope(actor)

    def _release_args(self, args: Args) -> None:
        """Arguments are no longer needed: free their buffers and the ids they held."""
        if args.payload is not None and args.payload.buffers:
            self.store.free(args.payload)
        self._release_ids(args.held)

    def _hold_ids(self, ids: tuple[int, ...]) -> None:
        for id_ in ids:
            self._add_ref(id_)

    def _release_ids(self, ids: tuple[int, ...]) -> None:
        for id_ in ids:
            self._drop_ref(id_)

    # == objects ==========================================================================

    def put(self, id_: int, value: Serialized) -> None:
        self._fresh[id_] = value  # readable by ``ready_value`` before the loop runs _put
        self._loop.post(self._put, id_, value)

    def _put(self, id_: int, value: Serialized) -> None:
        self.objects.create(id_, 1)
        self._hold_ids(value.contained)
        self.objects.set_value(id_, value)
        del self._fresh[id_]  # after the entry exists, so ready_value never misses it

    def ready_value(self, id_: int) -> Serialized | None:
        """The value of ``id_`` if it is ready now, else None; any thread.

        Lets ``get`` of a ready object skip the round trip through the core loop. Only
        reads: a single dict lookup and attribute read are atomic under the GIL, and the
        caller's ref keeps the entry alive.
        """
        if self.closed:
            return None  # the slow path answers with RuntimeClosedError
        value = self._fresh.get(id_)
        if value is not None:
            return value
        entry = self.objects.entries.get(id_)
        return None if entry is None else entry.value

    def watch(self, ids: list[int], callback: Watcher) -> None:
        """Call ``callback(id, value)`` on the loop thread as each id becomes ready."""
        self._loop.post(self._watch, ids, callback)

    def _watch(self, ids: list[int], callback: Watcher) -> None:
        if self.closed:  # arrived after shutdown failed everything: answer, never hang
            closed = error_value(RuntimeClosedError("actorlib was shut down"))
            for id_ in ids:
                callback(id_, closed)
            return
        for id_ in ids:
            if not self.objects.watch(id_, callback):
                if self.closed:
                    exc: BaseException = RuntimeClosedError("actorlib was shut down")
                else:
                    exc = ObjectLostError(f"Object {id_hex(id_)} is not known to this runtime.")
                callback(id_, error_value(exc))

    def unwatch(self, ids: list[int], callback: Watcher) -> None:
        self._loop.post(self._unwatch, ids, callback)

    def _unwatch(self, ids: list[int], callback: Watcher) -> None:
        for id_ in ids:
            self.objects.unwatch(id_, callback)

    def _resolve_deps(self, deps: tuple[int, ...], on_ready: Callable[[], None]) -> int:
        """Count deps not ready yet; call ``on_ready`` when the last one is."""
        pending = [d for d in set(deps) if not self.objects.ready(d)]
        if not pending:
            return 0
        left = [len(pending)]

        def one_ready(_id: int, _value: Serialized) -> None:
            left[0] -= 1
            if left[0] == 0:
                on_ready()

        for dep in pending:
            if not self.objects.watch(dep, one_ready):
                self.objects.create(dep, 0)
                self.objects.set_value(dep, error_value(ObjectLostError(f"{id_hex(dep)}")))
        return len(pending)

    def _dep_values(self, deps: tuple[int, ...]) -> list[Serialized]:
        values = []
        for dep in deps:
            entry = self.objects.get(dep)
            assert entry is not None and entry.value is not None
            values.append(entry.value)
        return values

    def _first_dep_error(self, deps: tuple[int, ...]) -> Serialized | None:
        """The first argument that is an error, as a value of the caller's own (the
        argument's entry keeps and frees the original)."""
        for value in self._dep_values(deps):
            if value.is_error:
                value.read = True  # passed on: the copy is reported if nobody reads it
                copy = self._own_copy(value)
                if copy is value:
                    copy = Serialized(value.data, value.buffers, value.contained, True)
                return copy
        return None

    def _resolve(self, ids: tuple[int, ...], value: Serialized) -> None:
        """Give every id in ``ids`` the value (an error, usually), which the caller hands
        over. Each entry frees its value and releases the ids it holds when it dies, so
        the second and later ids get copies unless sharing is free."""
        values = [value] + [self._own_copy(value) for _ in ids[1:]]
        if not ids:
            self._drop_value(value)
        for id_, own in zip(ids, values, strict=False):
            self.objects.set_value(id_, own)

    def _drop_value(self, value: Serialized) -> None:
        """A value nobody will keep: free its bytes, release the ids it holds."""
        self.store.free(value)
        self._release_ids(value.contained)

    def _own_copy(self, value: Serialized) -> Serialized:
        if not value.contained and not value.locations:
            return value  # nothing to free or release: safe to share
        if any(b is None for b in value.buffers):
            return value  # bytes not here (another node's): rare for errors; share
        copy = Serialized(value.data, [bytes(b) for b in value.buffers], value.contained,
                          value.is_error)
        self._hold_ids(copy.contained)
        return copy

    # == tasks ============================================================================

    def infeasible_reason(self, request: dict[str, float], strategy: Any) -> str | None:
        """Cached per request shape until the set of nodes changes (any thread)."""
        capacity = self.scheduler.capacity
        cache = self._feasibility
        if cache[0] is not capacity:
            cache = self._feasibility = (capacity, {})
        key = (tuple(request.items()), strategy)
        try:
            return cache[1][key]
        except KeyError:
            reason = cache[1][key] = self.scheduler.infeasible_reason(request, strategy)
            return reason

    def submit_task(self, spec: TaskSpec) -> None:
        self._loop.post(self._guard_submit, spec, self._submit_task)

    def _submit_task(self, spec: TaskSpec) -> None:
        for rid in spec.return_ids:
            self.objects.create(rid, 1, spec.task_id)
        self._hold_ids(spec.args.held)
        rec = TaskRecord(spec, self._job_of(spec.caller_id, spec.task_id))
        self.tasks[spec.task_id] = rec
        parent = self.tasks.get(spec.caller_id)
        if parent is not None:
            parent.children.append(spec.task_id)
        reason = self.infeasible_reason(spec.resources, spec.scheduling_strategy)
        if reason is not None:
            self._finish_task(rec, error_value(InfeasibleResourceError(reason)))
            return
        rec.remaining = self._resolve_deps(spec.args.deps, lambda: self._task_deps_ready(rec))
        if rec.remaining == 0:
            self._task_deps_ready(rec)

    def _task_deps_ready(self, rec: TaskRecord) -> None:
        if rec.state != "waiting":
            return  # cancelled meanwhile
        rec.remaining = 0
        error = self._first_dep_error(rec.spec.args.deps)
        if error is not None:
            self._finish_task(rec, error)
            return
        rec.state = "queued"
        if self.backend.has_locality and rec.spec.scheduling_strategy == "DEFAULT":
            rec.preferred = self._data_node(rec.spec)
        self.scheduler.enqueue(rec, rec.spec.resources, rec.spec.scheduling_strategy)
        self._dirty = True

    def _data_node(self, spec: TaskSpec) -> str | None:
        """The node whose store holds the most bytes of ``spec``'s arguments, if any."""
        values = self._dep_values(spec.args.deps)
        if spec.args.payload is not None:
            values.append(spec.args.payload)
        held: dict[str, int] = {}
        for value in values:
            for location in value.locations or ():
                if location is not None:
                    node = self.backend.locate(location[0])
                    if node is not None:
                        held[node] = held.get(node, 0) + location[1]
        return max(held, key=held.__getitem__) if held else None

    def _schedule(self) -> None:
        if not self._dirty or self.closed:
            return
        self._dirty = False
        for work, placement in self.scheduler.place_ready():
            if isinstance(work, TaskRecord):
                self._guard_task(work.spec.task_id, self._dispatch_task, work, placement)
            else:
                self._guard_actor(work.spec.actor_id, self._dispatch_actor, work, placement)
        if self._leaders and self.scheduler.has_queued():
            self._pipeline()
        if self._followers:
            self._steal()

    def _dispatch_task(self, rec: TaskRecord, placement: Placement) -> None:
        rec.state = "running"
        rec.placement = placement
        run = TaskRun(
            rec.spec, placement.node.node_id, self._dep_values(rec.spec.args.deps),
            placement.gpu_ids,
        )
        self.backend.run_task(run)
        self._may_lead(rec)

    # == pipelining: a task queued on the worker behind a running one ======================
    #
    # With every CPU busy, the next ready task of the same shape is sent to the worker of a
    # running task and queued there, so the worker starts it the moment the first ends
    # instead of after a round trip through the core (mp.Pool's trick). The queued task
    # holds no resources: the running one's pass to it when that one ends. One task per
    # worker is queued this way. A queued task is recalled when a CPU frees elsewhere,
    # so no task waits behind a long one, and when the one ahead blocks in ``get``.

    def _may_lead(self, rec: TaskRecord) -> None:
        placement = rec.placement
        if (
            self.backend.pipelines and placement is not None and not placement.gpus
            and not rec.blocked and rec.spec.scheduling_strategy == "DEFAULT"
        ):
            self._leaders[rec.spec.task_id] = rec

    def _pipeline(self) -> None:
        for leader in list(self._leaders.values()):
            placement = leader.placement
            assert placement is not None  # leaders run
            node_id = placement.node.node_id
            leader_id = leader.spec.task_id
            rec = self.scheduler.take_next(
                placement.request, node_id, functools.partial(_may_follow, leader_id)
            )
            if rec is None:
                continue
            del self._leaders[leader_id]
            leader.successor = rec
            rec.leader = leader
            rec.state = "following"
            self._followers[rec.spec.task_id] = rec
            deps = self._dep_values(rec.spec.args.deps)
            self.backend.run_task(TaskRun(rec.spec, node_id, deps, follows=leader.spec.task_id))

    def _steal(self) -> None:
        """Recall queued tasks whose node has room now: nothing else wanted it."""
        for rec in self._followers.values():
            leader = rec.leader
            if (
                not rec.recalling and leader is not None and leader.placement is not None
                and leader.placement.node.fits(rec.spec.resources)
            ):
                self._recall(rec)

    def _recall(self, rec: TaskRecord) -> None:
        rec.recalling = True
        self.backend.recall(rec.spec.task_id)

    def _unfollow(self, rec: TaskRecord) -> None:
        """``rec`` no longer waits behind its leader (it ended, or came back)."""
        self._followers.pop(rec.spec.task_id, None)
        leader = rec.leader
        rec.leader = None
        rec.recalling = False
        if leader is not None and leader.successor is rec:
            leader.successor = None
            if leader.state == "running":
                self._may_lead(leader)

    def _leader_ended(self, rec: TaskRecord, worker_goes_on: bool) -> None:
        """``rec`` stopped running. If its worker goes on, the task behind it starts there
        and takes its resources; if the worker died, that task is reported crashed too."""
        self._leaders.pop(rec.spec.task_id, None)
        successor = rec.successor
        if successor is None:
            return
        rec.successor = None
        successor.leader = None
        if not worker_goes_on:
            return  # stays "following" until the backend reports it
        self._followers.pop(successor.spec.task_id, None)
        successor.recalling = False
        placement = rec.placement
        assert placement is not None
        node = placement.node
        request = successor.spec.resources
        successor.state = "running"
        successor.placement = Placement(node, request, node.acquire(request))
        self._may_lead(successor)
        self._dirty = True

    def _task_recalled(self, task_id: int, attempt: int) -> None:
        rec = self.tasks.get(task_id)
        if rec is None or rec.state != "following" or attempt != rec.spec.attempt:
            return
        self._unfollow(rec)
        if rec.cancelled:
            self._finish_task(rec, error_value(TaskCancelledError(self._cancel_msg(rec.spec))))
            return
        rec.state = "queued"
        self.scheduler.enqueue(rec, rec.spec.resources, "DEFAULT", front=True)
        self._dirty = True

    def _task_finished(self, outcome: Outcome) -> None:
        rec = self.tasks.get(outcome.id)
        if rec is None or outcome.attempt != rec.spec.attempt:
            self._discard_outcome(outcome)
            return
        if rec.state == "running":
            self._leader_ended(rec, worker_goes_on=True)
        elif rec.state == "following":  # cancelled before it started
            self._unfollow(rec)
        else:
            self._discard_outcome(outcome)
            return
        spec = rec.spec
        if outcome.error is not None:
            self._hold_ids(outcome.error.contained)
            if rec.cancelled:
                self._drop_value(outcome.error)
                self._finish_task(rec, error_value(TaskCancelledError(self._cancel_msg(spec))))
                return
            if outcome.retryable and self._retry_task(rec):
                self._drop_value(outcome.error)
                return
            self._finish_task(rec, outcome.error)
            return
        values = outcome.values or []
        for rid, value in zip(spec.return_ids, values, strict=False):
            self._hold_ids(value.contained)
            self.objects.set_value(rid, value)
        if any(v.locations for v in values) and self._rebuildable(spec):
            for rid in spec.return_ids:
                entry = self.objects.get(rid)
                if entry is not None:
                    entry.lineage = spec
        self._finish_task(rec, None)

    def _discard_outcome(self, outcome: Outcome) -> None:
        for value in outcome.values or ():
            self.store.free(value)
        if outcome.error is not None:
            self.store.free(outcome.error)

    def _retry_task(self, rec: TaskRecord) -> bool:
        spec = rec.spec
        if spec.max_retries >= 0 and spec.attempt >= spec.max_retries:
            return False
        spec.attempt += 1
        self._release_placement(rec)
        rec.state = "queued"
        self.scheduler.enqueue(rec, spec.resources, spec.scheduling_strategy)
        self._dirty = True
        return True

    def _task_crashed(self, task_id: int, attempt: int, error: BaseException) -> None:
        rec = self.tasks.get(task_id)
        if rec is None or attempt != rec.spec.attempt:
            return
        if rec.state == "following":  # never started: not an attempt
            self._task_recalled(task_id, attempt)
            return
        if rec.state != "running":
            return
        self._leader_ended(rec, worker_goes_on=False)
        if rec.cancelled:
            self._finish_task(rec, error_value(TaskCancelledError(self._cancel_msg(rec.spec))))
            return
        if self._retry_task(rec):
            return
        msg = (
            f"The worker running task {rec.spec.name} died after "
            f"{rec.spec.attempt + 1} attempt(s): {error}"
        )
        self._finish_task(rec, error_value(WorkerCrashedError(msg)))

    def _release_placement(self, rec: TaskRecord) -> None:
        if rec.placement is not None:
            if rec.blocked:
                rec.placement.node.acquire({"CPU": rec.placement.request.get("CPU", 0.0)})
                rec.blocked = False
            rec.placement.release()
            rec.placement = None
            self._dirty = True

    def _finish_task(self, rec: TaskRecord, error: Serialized | None) -> None:
        """End a task for good: resolve its returns with ``error`` if given, free its hold."""
        if error is not None:
            self._resolve(rec.spec.return_ids, error)
        self._release_placement(rec)
        rec.state = "done"
        self._leaders.pop(rec.spec.task_id, None)
        del self.tasks[rec.spec.task_id]
        self._release_args(rec.spec.args)

    def task_blocked(self, task_id: int, blocked: bool) -> None:
        """A task waits in ``get``: lend its CPUs to others meanwhile (as Ray does)."""
        self._loop.post(self._guard_task, task_id, self._task_blocked, task_id, blocked)

    def _task_blocked(self, task_id: int, blocked: bool) -> None:
        rec = self.tasks.get(task_id)
        if rec is None or rec.placement is None or rec.blocked == blocked:
            return
        cpus = {"CPU": rec.placement.request.get("CPU", 0.0)}
        if blocked:
            rec.placement.node.release(cpus, ())
            # Only CPUs are lent, which may not fit the task queued behind this one: it
            # comes back to the core's queue (unless it starts first, when this ends).
            self._leaders.pop(rec.spec.task_id, None)
            successor = rec.successor
            if successor is not None and not successor.recalling:
                self._recall(successor)
        else:
            rec.placement.node.acquire(cpus)
        rec.blocked = blocked
        self._dirty = True

    # == cancel ===========================================================================

    def cancel(self, object_id: int, force: bool, recursive: bool) -> None:
        self._loop.post(self._cancel, object_id, force, recursive)

    @staticmethod
    def _cancel_msg(spec: TaskSpec | CallSpec) -> str:
        name = spec.name if isinstance(spec, TaskSpec) else spec.method
        return f"Task {name} was cancelled."

    def _cancel(self, object_id: int, force: bool, recursive: bool) -> None:
        entry = self.objects.get(object_id)
        if entry is None or entry.producer is None:
            return
        producer = entry.producer
        if producer in self.tasks:
            self._cancel_task(self.tasks[producer], force, recursive)
        elif producer in self.calls:
            self._cancel_call(producer)

    def _cancel_task(self, rec: TaskRecord, force: bool, recursive: bool) -> None:
        if recursive:
            for child in rec.children:
                child_rec = self.tasks.get(child)
                if child_rec is not None:
                    self._cancel_task(child_rec, force, recursive)
        cancelled = error_value(TaskCancelledError(self._cancel_msg(rec.spec)))
        if rec.state == "waiting":
            self._finish_task(rec, cancelled)
        elif rec.state == "queued":
            self.scheduler.remove(rec)
            self._finish_task(rec, cancelled)
        elif rec.state == "running" and not rec.cancelled:
            rec.cancelled = True
            self.backend.cancel(rec.spec.task_id, force=force)
        elif rec.state == "following" and not rec.cancelled:
            # Not started: the worker drops it from its queue. Never force: killing the
            # worker would kill the task ahead of it.
            rec.cancelled = True
            self.backend.cancel(rec.spec.task_id, force=False)

    def _cancel_call(self, call_id: int) -> None:
        actor = self.actors.get(self.calls[call_id])
        if actor is None:
            return
        call = actor.inflight.get(call_id)
        if call is not None:
            call.cancelled = True
            self.backend.cancel(call_id, force=False)
            return
        for caller, queue in actor.queues.items():
            for queued in queue:
                if queued.spec.call_id == call_id:
                    queue.remove(queued)
                    if not queue:
                        del actor.queues[caller]
                    cancelled = TaskCancelledError(self._cancel_msg(queued.spec))
                    self._finish_call(actor, queued, error_value(cancelled))
                    self._pump(actor, caller)
                    return

    # == actors ===========================================================================

    def create_actor(self, spec: ActorSpec, get_if_exists: bool = False) -> int:
        """Register an actor; returns its id (an existing one, for ``get_if_exists``).

        Named actors are created synchronously so a name clash raises at ``.remote()``.
        """
        if spec.name is None:
            self._loop.post(self._create_actor, spec)
            return spec.actor_id
        return self._loop.call(self._create_named_actor, spec, get_if_exists)

    def _create_named_actor(self, spec: ActorSpec, get_if_exists: bool) -> int:
        assert spec.name is not None
        key = (spec.namespace, spec.name)
        existing = self.names.get(key)
        if existing is not None:
            if spec.args.payload is not None and spec.args.payload.buffers:
                self.store.free(spec.args.payload)  # this spec's arguments are not used
            if get_if_exists:
                self.actors[existing].handle_refs += 1
                return existing
            raise ValueError(
                f"An actor named {spec.name!r} already exists in namespace {spec.namespace!r}. "
                "Use get_actor() to reach it, or options(get_if_exists=True)."
            )
        self._create_actor(spec)
        return spec.actor_id

    def _create_actor(self, spec: ActorSpec) -> None:
        rec = ActorRecord(spec, self._job_of(spec.caller_id, spec.actor_id))
        self.actors[spec.actor_id] = rec
        if spec.name is not None:
            self.names[(spec.namespace, spec.name)] = spec.actor_id
        self._hold_ids(spec.args.held)
        reason = self.scheduler.infeasible_reason(spec.resources, spec.scheduling_strategy)
        if reason is not None:
            self._actor_dead(rec, InfeasibleResourceError(reason))
            return
        rec.remaining = self._resolve_deps(spec.args.deps, lambda: self._actor_deps_ready(rec))
        if rec.remaining == 0:
            self._actor_deps_ready(rec)

    def _actor_deps_ready(self, rec: ActorRecord) -> None:
        if rec.state is not ActorState.WAITING:
            return
        rec.remaining = 0
        error = self._first_dep_error(rec.spec.args.deps)
        if error is not None:
            self._actor_dead(rec, self._constructor_error(rec, error))
            return
        self.scheduler.enqueue(rec, rec.spec.resources, rec.spec.scheduling_strategy)
        self._dirty = True

    def _dispatch_actor(self, rec: ActorRecord, placement: Placement) -> None:
        if rec.state is ActorState.DEAD:
            placement.release()
            return
        rec.placement = placement
        rec.incarnation += 1
        rec.state = ActorState.STARTING
        self.backend.start_actor(
            ActorStart(
                rec.spec, placement.node.node_id, self._dep_values(rec.spec.args.deps),
                rec.incarnation, placement.gpu_ids,
            )
        )
        for caller in list(rec.queues):
            self._pump(rec, caller)

    def _actor_started(self, actor_id: int, incarnation: int) -> None:
        rec = self.actors.get(actor_id)
        if rec is not None and rec.incarnation == incarnation and rec.state is ActorState.STARTING:
            rec.state = ActorState.ALIVE

    @staticmethod
    def _constructor_error(rec: ActorRecord, error: Serialized) -> ActorDiedError:
        try:
            cause = pickle.loads(error.data)
        except Exception as exc:  # pragma: no cover - errors are made picklable by workers
            cause = exc
        return ActorDiedError(
            f"The actor {rec.spec.cls.name} ({id_hex(rec.spec.actor_id)}) died because its "
            f"constructor raised: {cause}",
            id_hex(rec.spec.actor_id),
            cause,
        )

    def _actor_init_failed(self, actor_id: int, incarnation: int, error: Serialized) -> None:
        rec = self.actors.get(actor_id)
        if rec is None or rec.incarnation != incarnation or rec.state is ActorState.DEAD:
            return
        self._actor_dead(rec, self._constructor_error(rec, error))
        self.backend.stop_actor(actor_id, force=True)

    def submit_call(self, spec: CallSpec) -> None:
        self._loop.post(self._guard_submit, spec, self._submit_call)

    def _submit_call(self, spec: CallSpec) -> None:
        for rid in spec.return_ids:
            self.objects.create(rid, 1, spec.call_id)
        self._hold_ids(spec.args.held)
        call = CallRecord(spec)
        actor = self.actors.get(spec.actor_id)
        if actor is None:
            self._resolve(
                spec.return_ids,
                error_value(ActorDiedError("The actor is gone.", id_hex(spec.actor_id))),
            )
            self._release_ids(spec.args.held)
            return
        self.calls[spec.call_id] = spec.actor_id
        if actor.state is ActorState.DEAD:
            self._finish_call(actor, call, error_value(self._dead_error(actor)))
            return
        actor.enqueue(call)
        caller = spec.caller_id

        def deps_ready() -> None:
            call.remaining = 0
            self._pump(actor, caller)

        call.remaining = self._resolve_deps(spec.args.deps, deps_ready)
        if call.remaining == 0:
            self._pump(actor, caller)

    def _pump(self, actor: ActorRecord, caller: int) -> None:
        """Hand the caller's calls to the backend, in order, as far as the rules allow."""
        while actor.accepts_calls:
            call = actor.next_ready(caller)
            if call is None:
                return
            spec = call.spec
            error = self._first_dep_error(spec.args.deps)
            if error is not None:
                self._finish_call(actor, call, error)
                continue
            actor.inflight[spec.call_id] = call
            if spec.retry_exceptions:
                actor.barrier[caller] = spec.call_id
            self.backend.run_call(
                CallRun(spec, self._dep_values(spec.args.deps), actor.incarnation)
            )

    def _call_finished(self, outcome: Outcome) -> None:
        actor_id = self.calls.get(outcome.id)
        actor = self.actors.get(actor_id) if actor_id is not None else None
        call = actor.inflight.get(outcome.id) if actor is not None else None
        if actor is None or call is None or call.spec.attempt != outcome.attempt:
            self._discard_outcome(outcome)
            return
        spec = call.spec
        del actor.inflight[outcome.id]
        if actor.barrier.get(spec.caller_id) == spec.call_id:
            del actor.barrier[spec.caller_id]
        if outcome.error is not None:
            self._hold_ids(outcome.error.contained)
            if call.cancelled:
                self._drop_value(outcome.error)
                self._finish_call(
                    actor, call, error_value(TaskCancelledError(self._cancel_msg(spec)))
                )
            elif outcome.retryable and self._may_retry_call(actor, call):
                self._drop_value(outcome.error)
                spec.attempt += 1
                actor.queues.setdefault(spec.caller_id, collections.deque()).appendleft(call)
            else:
                self._finish_call(actor, call, outcome.error)
        else:
            for rid, value in zip(spec.return_ids, outcome.values or [], strict=False):
                self._hold_ids(value.contained)
                self.objects.set_value(rid, value)
            self._finish_call(actor, call, None)
        self._pump(actor, spec.caller_id)
        if actor.handle_refs <= 0:
            self._actor_out_of_scope(actor)

    @staticmethod
    def _may_retry_call(actor: ActorRecord, call: CallRecord) -> bool:
        limit = call.spec.max_task_retries
        if limit is None:
            limit = actor.spec.max_task_retries
        return limit < 0 or call.spec.attempt < limit

    def _finish_call(self, actor: ActorRecord, call: CallRecord, error: Serialized | None) -> None:
        if error is not None:
            self._resolve(call.spec.return_ids, error)
        self.calls.pop(call.spec.call_id, None)
        self._release_args(call.spec.args)

    def _actor_died(self, actor_id: int, incarnation: int, error: BaseException) -> None:
        rec = self.actors.get(actor_id)
        if rec is None or rec.incarnation != incarnation or rec.state is ActorState.DEAD:
            return
        self._release_actor_placement(rec)
        spec = rec.spec
        out_of_restarts = spec.max_restarts >= 0 and rec.restarts >= spec.max_restarts
        if rec.no_restart or out_of_restarts or rec.handle_refs <= 0:
            self._actor_dead(rec, self._died_error(rec, error))
            return
        rec.restarts += 1
        rec.state = ActorState.RESTARTING
        died = error_value(self._died_error(rec, error))
        for call in rec.requeue_inflight(spec.max_task_retries):
            self._finish_call(rec, call, died)
        rec.state = ActorState.WAITING
        self.scheduler.enqueue(rec, spec.resources, spec.scheduling_strategy)
        self._dirty = True

    def _died_error(self, rec: ActorRecord, error: BaseException) -> ActorDiedError:
        if isinstance(error, ActorDiedError):
            return error
        return ActorDiedError(
            f"The actor {rec.spec.cls.name} ({id_hex(rec.spec.actor_id)}) died: {error}",
            id_hex(rec.spec.actor_id),
            error,
        )

    def _dead_error(self, rec: ActorRecord) -> BaseException:
        return rec.dead_error or ActorDiedError(
            f"The actor {rec.spec.cls.name} is dead.", id_hex(rec.spec.actor_id)
        )

    def _release_actor_placement(self, rec: ActorRecord) -> None:
        if rec.placement is not None:
            rec.placement.release()
            rec.placement = None
            self._dirty = True

    def _actor_dead(self, rec: ActorRecord, error: BaseException) -> None:
        """The actor is gone for good: fail every pending call, free its name."""
        if rec.state is ActorState.WAITING:
            self.scheduler.remove(rec)
        rec.state = ActorState.DEAD
        rec.dead_error = error
        self._release_actor_placement(rec)
        died = error_value(error)
        for call in rec.drain_all():
            self._finish_call(rec, call, died)
        self._unname(rec)
        if rec.handle_refs <= 0:
            self._forget_actor(rec)

    def _unname(self, rec: ActorRecord) -> None:
        if rec.spec.name is not None:
            key = (rec.spec.namespace, rec.spec.name)
            if self.names.get(key) == rec.spec.actor_id:
                del self.names[key]

    def _forget_actor(self, rec: ActorRecord) -> None:
        if self.actors.pop(rec.spec.actor_id, None) is not None:
            self._release_args(rec.spec.args)

    def _actor_out_of_scope(self, rec: ActorRecord) -> None:
        """No handle is left: stop the actor once its pending calls are done (Ray's rule)."""
        if rec.spec.detached:
            return
        if rec.state is ActorState.DEAD:
            self._forget_actor(rec)
            return
        if not rec.idle:
            return
        if rec.state in (ActorState.STARTING, ActorState.ALIVE):
            self.backend.stop_actor(rec.spec.actor_id, force=False)
        self._actor_dead(rec, ActorDiedError("The actor went out of scope."))

    def kill_actor(self, actor_id: int, no_restart: bool) -> None:
        self._loop.post(self._kill_actor, actor_id, no_restart)

    def _kill_actor(self, actor_id: int, no_restart: bool) -> None:
        rec = self.actors.get(actor_id)
        if rec is None or rec.state is ActorState.DEAD:
            return
        rec.no_restart = rec.no_restart or no_restart
        was_running = rec.state in (ActorState.STARTING, ActorState.ALIVE)
        if was_running:
            self.backend.stop_actor(actor_id, force=True)
        error = ActorDiedError(
            f"The actor {rec.spec.cls.name} ({id_hex(actor_id)}) was killed "
            "(kill() or exit_actor()).",
            id_hex(actor_id),
        )
        if was_running:
            self._actor_died(actor_id, rec.incarnation, error)
        else:
            rec.no_restart = True
            self._actor_dead(rec, error)

    # == jobs: the work of one driver ======================================================

    def _job_of(self, caller_id: int, own_id: int) -> int:
        """The job of new work: its caller's, else the id prefix of the driver minting it.

        Ids carry the prefix of the process that minted them, and a driver submits with
        its own prefix; work submitted by a task or actor belongs to the job of that
        task or actor, so a driver's whole tree of work can be found when it leaves.
        """
        parent = self.tasks.get(caller_id)
        if parent is not None:
            return parent.job
        actor = self.actors.get(caller_id)
        if actor is not None:
            return actor.job
        return own_id >> COUNTER_BITS

    def job_of_work(self, id_: int) -> int | None:
        """The job of a live task or actor, None if unknown (on the core loop: a cluster's
        head routes a task's output to its driver with it)."""
        rec = self.tasks.get(id_)
        if rec is not None:
            return rec.job
        actor = self.actors.get(id_)
        return actor.job if actor is not None else None

    def _end_job(self, job: int) -> None:
        """The driver ``job`` is gone: nobody can read its results any more, so its tasks
        are cancelled (running ones forcibly) and its non-detached actors killed, at once,
        freeing the resources other drivers wait for."""
        for rec in [r for r in self.tasks.values() if r.job == job]:
            if self.tasks.get(rec.spec.task_id) is rec:
                self._cancel_task(rec, force=True, recursive=False)
        for actor in [a for a in self.actors.values() if a.job == job and not a.spec.detached]:
            self._kill_actor(actor.spec.actor_id, no_restart=True)

    def lookup_actor(self, name: str, namespace: str) -> ActorSpec | None:
        """The spec of a live named actor, counting one more handle to it."""
        return self._loop.call(self._lookup_actor, name, namespace)

    def named_actors(self, namespace: str | None) -> list[tuple[str, str]]:
        """(namespace, name) of every live named actor, in ``namespace`` or (None) all."""
        return self._loop.call(self._named_actors, namespace)

    def _named_actors(self, namespace: str | None) -> list[tuple[str, str]]:
        return sorted(k for k in self.names if namespace is None or k[0] == namespace)

    def _lookup_actor(self, name: str, namespace: str) -> ActorSpec | None:
        actor_id = self.names.get((namespace, name))
        if actor_id is None:
            return None
        rec = self.actors[actor_id]
        rec.handle_refs += 1
        return rec.spec

    # == internal errors: a bug fails the work it concerns, not the core =================

    def _guard_task(self, task_id: int, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:
            self._internal_error(exc, fn, "task", task_id)

    def _guard_call(self, call_id: int, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:
            self._internal_error(exc, fn, "call", call_id)

    def _guard_actor(self, actor_id: int, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:
            self._internal_error(exc, fn, "actor", actor_id)

    def _guard_submit(self, spec: TaskSpec | CallSpec, fn: Callable[..., None]) -> None:
        try:
            fn(spec)
        except Exception as exc:
            if isinstance(spec, TaskSpec):
                self._internal_error(exc, fn, "task", spec.task_id, spec.return_ids)
            else:
                self._internal_error(exc, fn, "call", spec.call_id, spec.return_ids)

    def _internal_error(
        self, exc: Exception, fn: Callable[..., None], kind: str, work_id: int,
        returns: tuple[int, ...] = (),
    ) -> None:
        """Log a core bug and fail only the work it concerns, so everything else goes on."""
        where = getattr(fn, "__qualname__", repr(fn))
        log.error(
            "actorlib core: internal error in %s handling %s %s; that work fails, the rest "
            "goes on", where, kind, id_hex(work_id), exc_info=exc,
        )
        error = InternalError(
            f"actorlib's core hit an internal error while handling this {kind} "
            f"({id_hex(work_id)}): {type(exc).__name__}: {exc}. Only this work failed; the "
            "traceback is in the log of the 'actorlib.core' logger. Please report it."
        )
        try:
            if kind == "task":
                self._abandon_task(work_id, error, returns)
            elif kind == "call":
                self._abandon_call(work_id, error, returns)
            else:
                self._abandon_actor(work_id, error)
        except Exception:
            log.exception("actorlib core: internal error while failing %s %s", kind, work_id)
        self._dirty = True

    def _abandon_task(self, task_id: int, error: BaseException, returns: tuple[int, ...]) -> None:
        rec = self.tasks.pop(task_id, None)
        if rec is not None:
            returns = rec.spec.return_ids
            self.scheduler.remove(rec)
            self._leaders.pop(task_id, None)
            self._followers.pop(task_id, None)
            successor, rec.successor = rec.successor, None
            if successor is not None:
                successor.leader = None
                if successor.state == "following":
                    self._recall(successor)
            if rec.leader is not None and rec.leader.successor is rec:
                rec.leader.successor = None
            if rec.state in ("running", "following"):
                self.backend.cancel(task_id, force=False)  # its outcome will be discarded
            self._release_placement(rec)
            rec.state = "done"
            self._release_args(rec.spec.args)
        self._fail_pending(returns, error)

    def _abandon_call(self, call_id: int, error: BaseException, returns: tuple[int, ...]) -> None:
        actor_id = self.calls.pop(call_id, None)
        actor = self.actors.get(actor_id) if actor_id is not None else None
        if actor is not None:
            call = actor.inflight.pop(call_id, None)
            if call is None:
                for queue in actor.queues.values():
                    for queued in queue:
                        if queued.spec.call_id == call_id:
                            call = queued
                            queue.remove(queued)
                            break
            if call is not None:
                returns = call.spec.return_ids
                caller = call.spec.caller_id
                if actor.barrier.get(caller) == call_id:
                    del actor.barrier[caller]
                self._release_args(call.spec.args)
                self._fail_pending(returns, error)
                self._pump(actor, caller)
                return
        self._fail_pending(returns, error)

    def _abandon_actor(self, actor_id: int, error: BaseException) -> None:
        rec = self.actors.get(actor_id)
        if rec is None or rec.state is ActorState.DEAD:
            return
        if rec.state in (ActorState.STARTING, ActorState.ALIVE):
            self.backend.stop_actor(actor_id, force=True)
        rec.no_restart = True
        self._actor_dead(rec, ActorDiedError(str(error), id_hex(actor_id), error))

    def _fail_pending(self, ids: tuple[int, ...], error: BaseException) -> None:
        """Resolve those of ``ids`` still pending with ``error`` (made if not yet known)."""
        value = error_value(error)
        for id_ in ids:
            entry = self.objects.get(id_)
            if entry is None:
                self.objects.create(id_, 1)  # the submitter's ref, not yet counted
            elif entry.value is not None:
                continue
            self.objects.set_value(id_, value)

    # == cluster info =====================================================================

    def nodes(self) -> list[NodeInfo]:
        def snapshot() -> list[NodeInfo]:
            return [
                NodeInfo(n.node_id, dict(n.total), alive=n.alive)
                for n in self.scheduler.nodes.values()
            ]

        return self._loop.call(snapshot)

    def available_resources(self) -> dict[str, float]:
        def total() -> dict[str, float]:
            out: dict[str, float] = {}
            for node in self.scheduler.alive_nodes():
                for key, value in node.available.items():
                    out[key] = out.get(key, 0.0) + max(value, 0.0)
            return out

        return self._loop.call(total)

    def cluster_resources(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for node in self.scheduler.capacity:
            if node.alive:
                for key, value in node.total.items():
                    out[key] = out.get(key, 0.0) + value
        return out

    @staticmethod
    def _rebuildable(spec: TaskSpec) -> bool:
        """Whether re-running ``spec`` could make its values again after they are lost.

        Only tasks whose arguments are all inline: arguments held in a store (refs, large
        buffers) are released when the task ends, so they cannot be replayed.
        """
        args = spec.args
        return spec.max_retries != 0 and not args.deps and not args.held and not (
            args.payload is not None and args.payload.locations
        )

    def _objects_lost(self, lost: Callable[[Serialized], bool], why: str) -> None:
        """Values whose bytes are gone (their node died): rebuild them, or fail them."""
        rebuild: dict[int, TaskSpec] = {}
        for id_, entry in list(self.objects.entries.items()):
            value = entry.value
            if value is None or not value.locations or not lost(value):
                continue
            spec = entry.lineage
            if spec is not None:
                if spec.task_id in self.tasks:  # already being made again
                    self.objects.reset(id_)
                else:
                    rebuild[spec.task_id] = spec
                continue
            entry.value = None
            self.objects.set_value(id_, error_value(ObjectLostError(
                f"Object {id_hex(id_)} was lost: {why}. It was not made by a task that "
                "can be re-run (a put, an actor call, or a task with max_retries=0 or "
                "arguments held in the object store)."
            )))
        for spec in rebuild.values():
            for rid in spec.return_ids:
                self.objects.reset(rid)
            spec.attempt = 0
            rec = TaskRecord(spec, self._job_of(spec.caller_id, spec.task_id))
            rec.state = "queued"
            self.tasks[spec.task_id] = rec
            self.scheduler.enqueue(rec, spec.resources, spec.scheduling_strategy)
            self._dirty = True

    def _node_added(self, node_id: str, resources: dict[str, float]) -> None:
        self.scheduler.add_node(node_id, dict(resources))
        self._dirty = True

    def _node_removed(self, node_id: str) -> None:
        """After the backend reported the node's tasks crashed and its actors dead."""
        self.scheduler.remove_node(node_id)
        self._dirty = True

    def debug_state(self) -> dict[str, Any]:
        def state() -> dict[str, Any]:
            return {
                "objects": self.objects.live_ids(),
                "actors": {a for a, r in self.actors.items() if r.state is not ActorState.DEAD},
                "tasks": len(self.tasks),
                "queued": self.scheduler.queued(),
                "problems": invariants.problems(self),
            }

        return self._loop.call(state)

    def flush(self) -> None:
        """Wait until everything posted so far has been processed."""
        self._loop.call(lambda: None)


class _Events:
    """The core's side of :class:`actorlib.backends.base.CoreEvents`: hand events to the loop.

    Each event runs under a guard naming the work it concerns: a bug in a handler fails
    that work alone (see ``Runtime._internal_error``), never the whole core.
    """

    __slots__ = ("_post", "_rt", "client")

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._post = rt._loop.post
        self.client = rt

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        self._post(fn, *args)

    def task_finished(self, outcome: Outcome) -> None:
        rt = self._rt
        self._post(rt._guard_task, outcome.id, rt._task_finished, outcome)

    def task_crashed(self, task_id: int, attempt: int, error: BaseException) -> None:
        rt = self._rt
        self._post(rt._guard_task, task_id, rt._task_crashed, task_id, attempt, error)

    def task_recalled(self, task_id: int, attempt: int) -> None:
        rt = self._rt
        self._post(rt._guard_task, task_id, rt._task_recalled, task_id, attempt)

    def actor_started(self, actor_id: int, incarnation: int) -> None:
        rt = self._rt
        self._post(rt._guard_actor, actor_id, rt._actor_started, actor_id, incarnation)

    def actor_init_failed(self, actor_id: int, incarnation: int, error: Serialized) -> None:
        rt = self._rt
        self._post(
            rt._guard_actor, actor_id, rt._actor_init_failed, actor_id, incarnation, error
        )

    def call_finished(self, outcome: Outcome) -> None:
        rt = self._rt
        self._post(rt._guard_call, outcome.id, rt._call_finished, outcome)

    def actor_died(self, actor_id: int, incarnation: int, error: BaseException) -> None:
        rt = self._rt
        self._post(rt._guard_actor, actor_id, rt._actor_died, actor_id, incarnation, error)

    def node_added(self, node_id: str, resources: dict[str, float]) -> None:
        self._post(self._rt._node_added, node_id, resources)

    def node_removed(self, node_id: str) -> None:
        self._post(self._rt._node_removed, node_id)

    def objects_lost(self, lost: Callable[[Serialized], bool], why: str) -> None:
        self._post(self._rt._objects_lost, lost, why)

    def job_ended(self, job: int) -> None:
        self._post(self._rt._end_job, job)


__all__ = ["Runtime", "error_value", "serialize"]
