"""The core runtime: the thread boundary over the parts that own the core's state.

One event loop (:mod:`actorlib.core.loop`) owns all state; the parts below run on it
only, each a plain class owning its state and handed its collaborators at construction:

- :class:`~actorlib.core.objects.ObjectTable`: every object, its value, count, watchers;
- :class:`~actorlib.core.values.Values`: what tasks and calls do alike with it
  (arguments in, results and errors out);
- :class:`~actorlib.core.scheduler.Scheduler`: nodes, resources, queued work;
- :class:`~actorlib.core.tasks.Tasks`: tasks, their retries, cancellation, pipelining;
- :class:`~actorlib.core.actors.Actors`: actors' lifecycle and the calls made to them;
- :class:`~actorlib.core.lineage.Lineage`: lost objects made again;
- :class:`~actorlib.core.placement_groups.PlacementGroups`: reserved bundles of resources.

The runtime itself is what other threads and the backend see. Public methods (no leading
underscore) may be called from any thread: they hand work to the loop (batched) and never
block, except the few queries that must answer (``nodes()``, ``lookup_actor()``...).
Methods with a leading underscore run on the loop only: reference counting across objects
and actor handles, a driver's end, the placement pass after each batch. Every handler for
a task, call or actor runs under its guard (:mod:`actorlib.core.guards`), which turns a
bug in a part into the failure of the work it concerns, and
:class:`~actorlib.core.runtime_events.RuntimeEvents` is the backend's way in
(``CoreEvents``). The API layer reaches this class through the
client interface it shares with worker-side proxies (see :mod:`actorlib.core.context`).
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from actorlib.core import invariants, state
from actorlib.core.actors import DEAD, Actors
from actorlib.core.execution_context import execution_now
from actorlib.core.guards import Guards
from actorlib.core.ids import COUNTER_BITS, DRIVER_PREFIX, IdAllocator, id_hex
from actorlib.core.jobs import Jobs, entrypoint
from actorlib.core.lineage import Lineage
from actorlib.core.loop import LoopThread
from actorlib.core.metrics import Batch, MetricTable
from actorlib.core.objects import ObjectTable, Watcher
from actorlib.core.placement_groups import PlacementGroups
from actorlib.core.records import NodeInfo
from actorlib.core.runtime_events import RuntimeEvents
from actorlib.core.scheduler import Scheduler
from actorlib.core.serialization import Serialized, serialize
from actorlib.core.specs import ActorSpec, CallSpec, PlacementGroupSpec, TaskSpec
from actorlib.core.streams import Streams
from actorlib.core.tasks import TaskRecord, Tasks
from actorlib.core.values import Values, error_value
from actorlib.core.waiting import report_unhandled
from actorlib.exceptions import ObjectLostError, RuntimeClosedError

if TYPE_CHECKING:  # the interface the core drives; the core never imports a backend
    from actorlib.backends.base import Backend, BackendConfig, ObjectStore


#: Ray's refusal of ``cancel(ref, force=True)`` for an actor call (its exact words): an
#: actor's state is its own, so it is ended with ``kill``, never by killing a call.
FORCED_ACTOR_CALL = "force=True is not supported for actor tasks."
#: How long a question about worker processes (a stack dump, a log tail) may take.
WORKER_QUERY_TIMEOUT_S = 30.0
#: The state kinds whose rows name worker processes (``Backend.refresh_workers``): for
#: tasks and actors, the id, pid and states of the rows that should name one (a task
#: queued on a worker behind its running one too).
WORKER_KINDS = frozenset({"tasks", "actors", "workers"})
_PID_FIELDS = {
    "tasks": ("task_id", "worker_pid", frozenset({"RUNNING", "SUBMITTED_TO_WORKER"})),
    "actors": ("actor_id", "pid", frozenset({"ALIVE"})),
}
#: How long those rows wait for a backend to refresh its workers (a node that does not
#: answer, stopped say): then they are made from what it knows.
WORKERS_REFRESH_S = 2.0

def _ignore_drop(id_: int) -> None:
    """``Runtime.drop_ref`` once the runtime is closed: nothing counts any more."""


class Runtime:
    """The driver's core. Also the API's client when the API runs in the driver process."""

    address: str | None = None  # the core is this process's: no cluster to join

    def __init__(self, backend: Backend, config: BackendConfig, namespace: str) -> None:
        self.backend = backend
        self.config = config
        self.namespace = namespace
        self.ids = IdAllocator(DRIVER_PREFIX)
        self.closed = False
        self.job_id = os.getpid()
        self._loop = LoopThread()
        self.guard = Guards(self)
        # Made once, as ``guard``: CPython 3.11 reads a bound method on its slow path, and
        # every task is submitted, dispatched and its refs dropped through these.
        self._guard_submit = self.guard.submit
        self._guard_task = self.guard.task
        self._drop_ref_bound = self._drop_ref
        # ``drop_ref`` without its frame (every ref's ``__del__`` calls it): the loop's
        # ``post`` of ``_drop_ref``, made a no-op when the runtime closes.
        self.drop_ref = functools.partial(self._loop.post, self._drop_ref)  # type: ignore[method-assign]
        self.scheduler = Scheduler()
        # ``.remote()`` asks on every call: the scheduler's cache, without a frame here.
        self.infeasible_reason = self.scheduler.cached_infeasible_reason  # type: ignore[method-assign]
        self._assemble(backend.store)
        self._fresh: dict[int, Serialized] = {}  # put by a caller, not yet on the loop
        self.metrics = MetricTable()
        self.jobs = Jobs()
        self._loop.on_drained(self._schedule)

    def _assemble(self, store: ObjectStore) -> None:
        """Build the parts that keep values in ``store`` (before anything is stored)."""
        self.store = store
        self.objects = ObjectTable(
            store.free, self._release_ids, self._unhandled_error, self.job_of_work
        )
        self.values = Values(self.objects, store.free, self._hold_ids, self._release_ids)
        self.streams = Streams(self.objects, self.values, self.ids, self.backend)
        self.values.streams = self.streams
        parts = (self.objects, self.values, self.scheduler, self.backend, self._job_of)
        self.tasks = Tasks(*parts)
        self.actors = Actors(*parts)
        self.lineage = Lineage(self.objects, self.tasks.records, self.tasks.rerun)
        self.groups = PlacementGroups(
            self.objects, self.scheduler, self.tasks, self.actors, self._job_of
        )

    # == lifecycle (caller's thread) ====================================================

    def start(self) -> None:
        self._loop.start()
        try:
            nodes = self._loop.run_coroutine(self.backend.start(RuntimeEvents(self), self.config))
        except BaseException:
            self._loop.stop()
            raise
        # A backend may pick its store while starting (the process backend sizes shared
        # memory then); nothing has been stored before this point.
        if self.backend.store is not self.store:
            self._loop.call(self._assemble, self.backend.store)
        for node in nodes:
            self._loop.call(
                self.scheduler.add_node, node.node_id, dict(node.resources), node.labels
            )
        if self.backend.runs_driver:  # a cluster's head is no driver: its drivers connect
            self._loop.call(self.jobs.started, DRIVER_PREFIX, os.getpid(), entrypoint(),
                            nodes[0].address if nodes else "", nodes[0].node_id if nodes else "")
        # Started: from now on the threads that submit and finish work may run the core.
        self._loop.run_inline(self.backend.runs_core_inline)

    def shutdown(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.drop_ref = _ignore_drop  # type: ignore[method-assign]
        self._loop.run_inline(False)  # the backend stops on the loop thread, alone
        try:
            self._loop.call(self.jobs.ended, DRIVER_PREFIX)
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

    # == reference counting: objects and actor handles share one id space ================

    def add_ref(self, id_: int) -> None:
        if not self.closed:
            self._loop.post(self._add_ref, id_)

    def drop_ref(self, id_: int) -> None:
        """(Replaced per instance: see ``__init__``; what it does, once closed.)"""
        if not self.closed:
            self._loop.post(self._drop_ref_bound, id_)

    def _add_ref(self, id_: int) -> None:
        if not self.objects.add_ref(id_):
            self.actors.add_handle(id_)

    def _drop_ref(self, id_: int) -> None:
        # Every ref's end comes here: an object's, else an actor handle's.
        if not self.objects.drop_ref(id_):
            self.actors.drop_handle(id_)

    def _hold_ids(self, ids: tuple[int, ...]) -> None:
        for id_ in ids:
            self._add_ref(id_)

    def _release_ids(self, ids: tuple[int, ...]) -> None:
        for id_ in ids:
            self._drop_ref(id_)

    def _post_from_caller(self, fn: Callable[..., Any], *args: Any) -> None:
        """Post a caller's request: inline (on the thread backend) only outside a task or
        actor. A running task's thread may be interrupted by a cancel at any bytecode
        (``KeyboardInterrupt``), which must never land in the middle of the core's work."""
        if execution_now() is None:
            self._loop.post_inline_args(fn, args)
        else:
            self._loop.post(fn, *args)

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
        caller's ref keeps the entry alive. :meth:`ready_values` repeats these reads
        inline (no frame per id): a change here goes there too.
        """
        if self.closed:
            return None  # the slow path answers with RuntimeClosedError
        value = self._fresh.get(id_)
        if value is not None:
            return value
        entry = self.objects.entries.get(id_)
        return None if entry is None else entry.value

    def ready_values(
        self, ids: list[int], need: int, fail_fast: bool, reads: bool = True,
    ) -> dict[int, Serialized]:
        # ``objects.first_ready(ids, self.ready_value, ...)``, without a frame per id
        # (every ``get`` of a batch asks for all of its refs)
        got: dict[int, Serialized] = {}
        if self.closed:
            return got  # the slow path answers with RuntimeClosedError
        fresh = self._fresh
        entries = self.objects.entries
        for id_ in ids:
            value = fresh.get(id_)
            if value is None:
                entry = entries.get(id_)
                if entry is None or entry.value is None:
                    continue
                value = entry.value
            got[id_] = value
            if len(got) == need or (fail_fast and value.is_error):
                break
        return got

    def watch(self, ids: list[int], callback: Watcher, reads: bool = True) -> None:
        """Call ``callback(id, value)`` on the loop thread as each id becomes ready.
        (``reads`` is for a core in another process: here a read marks the value.)"""
        # ``_post_from_caller``, without its frame (every ``get`` that waits)
        if execution_now() is None:
            self._loop.post_inline(self._watch, ids, callback)
        else:
            self._loop.post(self._watch, ids, callback)

    def _watch(self, ids: list[int], callback: Watcher) -> None:
        if self.closed:  # arrived after shutdown failed everything: answer, never hang
            closed = error_value(RuntimeClosedError("actorlib was shut down"))
            for id_ in ids:
                callback(id_, closed)
            return
        entries = self.objects.entries
        for id_ in ids:
            # ``objects.watch``, without a frame per id (a ``get`` watches all of its
            # refs): a change there goes here too
            entry = entries.get(id_)
            if entry is not None:
                if entry.value is not None:
                    callback(id_, entry.value)
                elif entry.watchers is None:
                    entry.watchers = [callback]
                else:
                    entry.watchers.append(callback)
            else:
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

    # == tasks ============================================================================

    def infeasible_reason(self, request: dict[str, float], strategy: Any) -> str | None:
        """Cached per request shape until the set of nodes changes (any thread)."""
        return self.scheduler.cached_infeasible_reason(request, strategy)

    def submit_task(self, spec: TaskSpec) -> None:
        # ``_post_from_caller``, without its frame
        if execution_now() is None:
            self._loop.post_inline_args(self._guard_submit, (spec, self.tasks.submit))
        else:
            self._loop.post(self._guard_submit, spec, self.tasks.submit)

    def task_blocked(self, task_id: int, blocked: bool) -> None:
        """A task waits in ``get``: lend its CPUs to others meanwhile (as Ray does)."""
        self._loop.post(self.guard.task, task_id, self.tasks.blocked, task_id, blocked)

    def cancel(self, object_id: int, force: bool, recursive: bool) -> None:
        """Cancel the task or call making ``object_id``. A plain cancel is posted; a forced
        one waits for the core, which refuses it for a live actor call as Ray does
        (``ValueError``): the caller learns it at once, not as a quiet soft cancel."""
        if not force or self.closed:
            self._loop.post(self._cancel, object_id, force, recursive)
        elif self._loop.call(self._cancel, object_id, force, recursive):
            raise ValueError(FORCED_ACTOR_CALL)

    def withdraw(self, object_ids: list[int]) -> list[bool]:
        """For each object, cancel the task making it if no worker has that task yet;
        answers whether it did (so the task never runs). Waits for the answer."""

        def withdraw() -> list[bool]:
            done = []
            for object_id in object_ids:
                entry = self.objects.get(object_id)
                producer = None if entry is None else entry.producer
                done.append(producer is not None and self.tasks.withdraw(producer))
            return done

        if self.closed:
            return [False] * len(object_ids)
        return self._loop.call(withdraw)

    def _cancel(self, object_id: int, force: bool, recursive: bool) -> bool:
        """True if refused: ``force`` on an actor call still pending or running."""
        entry = self.objects.get(object_id)
        if entry is None or entry.producer is None:
            return False
        producer = entry.producer
        if self.tasks.cancel(producer, force, recursive):
            return False
        if force and producer in self.actors.calls:
            return True
        self.actors.cancel_call(producer)
        return False

    def _schedule(self) -> None:
        """After each batch of work on the loop: place what is ready, then pipeline."""
        scheduler = self.scheduler
        if self.closed:
            return
        tasks = self.tasks
        if tasks.handed:  # an ended task's resources went to the next one: dispatch it
            tasks.dispatch_handed(self._guard_task)
        if not scheduler.dirty:
            if tasks.new_leaders:  # a task's end passed its resources on: no pass
                tasks.lead()
            return
        scheduler.dirty = False
        if self.groups.waiting:
            self.groups.reserve()
        for work, placement in scheduler.place_ready():
            if isinstance(work, TaskRecord):
                self.guard.task(work.spec.task_id, tasks.dispatch, work, placement)
            else:
                self.guard.actor(work.spec.actor_id, self.actors.dispatch, work, placement)
        tasks.pipeline()

    # == actors ===========================================================================

    def create_actor(self, spec: ActorSpec, get_if_exists: bool = False) -> int:
        """Register an actor; returns its id (an existing one, for ``get_if_exists``).

        Named actors are created synchronously so a name clash raises at ``.remote()``.
        """
        if spec.name is None:
            self._loop.post(self.actors.create, spec)
            return spec.actor_id
        return self._loop.call(self.actors.create_named, spec, get_if_exists)

    def submit_call(self, spec: CallSpec) -> None:
        # ``_post_from_caller``, without its frame
        if execution_now() is None:
            self._loop.post_inline_args(self._guard_submit, (spec, self.actors.submit_call))
        else:
            self._loop.post(self._guard_submit, spec, self.actors.submit_call)

    def kill_actor(self, actor_id: int, no_restart: bool) -> None:
        self._loop.post(self.actors.kill, actor_id, no_restart)

    def lookup_actor(self, name: str, namespace: str) -> ActorSpec | None:
        """The spec of a live named actor, counting one more handle to it."""
        return self._loop.call(self.actors.lookup, name, namespace)

    def named_actors(self, namespace: str | None) -> list[tuple[str, str]]:
        """(namespace, name) of every live named actor, in ``namespace`` or (None) all."""
        return self._loop.call(self.actors.named, namespace)

    # == placement groups ==================================================================

    def create_placement_group(self, spec: PlacementGroupSpec) -> None:
        """Register a group (reserved as soon as it fits); raises at once if its name is
        taken or no set of nodes could ever hold it."""
        self._loop.call(self.groups.create, spec)

    def remove_placement_group(self, group_id: int) -> None:
        """Remove a group; its resources are free when this returns."""
        self._loop.call(self.groups.remove, group_id)

    def placement_group_ready(self, group_id: int, object_id: int, value: Serialized) -> None:
        """Resolve ``object_id`` (counted once for the caller) to ``value`` when the group
        is reserved."""
        self._loop.call(self.groups.ready, group_id, object_id, value)

    def lookup_placement_group(self, name: str, namespace: str) -> PlacementGroupSpec | None:
        return self._loop.call(self.groups.lookup, name, namespace)

    def placement_groups(self) -> list[dict[str, Any]]:
        """Ray's ``placement_group_table`` rows, one per group."""
        return self._loop.call(self.groups.table)

    # == jobs: the work of one driver ======================================================

    def _job_of(self, caller_id: int, own_id: int) -> int:
        """The job of new work: its caller's, else the id prefix of the driver minting it.

        Ids carry the prefix of the process that minted them, and a driver submits with
        its own prefix; work submitted by a task or actor belongs to the job of that
        task or actor, so a driver's whole tree of work can be found when it leaves.
        """
        parent = self.tasks.records.get(caller_id)
        if parent is not None:
            return parent.job
        actor = self.actors.records.get(caller_id)
        if actor is not None:
            return actor.job
        return own_id >> COUNTER_BITS

    def _unhandled_error(self, id_: int, value: Serialized, job: int | None) -> None:
        """An error value nobody read dies: report it in its job's driver (Ray prints it
        there). The job is that of the task that made it, else the prefix of the id's
        minter: the driver, for the calls it makes and what it puts itself. Not once
        shutdown() began: work it ends (a worker it stops while a task runs, whose ref
        was dropped) failed because of the shutdown, not of its own."""
        if self.closed:
            return
        if not self.backend.unhandled_error(id_ >> COUNTER_BITS if job is None else job, value):
            report_unhandled(value)

    def job_of_work(self, id_: int) -> int | None:
        """The job of a live task or actor, None if unknown (on the core loop: a cluster's
        head routes a task's output to its driver with it)."""
        rec = self.tasks.records.get(id_)
        if rec is not None:
            return rec.job
        actor = self.actors.records.get(id_)
        return actor.job if actor is not None else None

    def _end_job(self, job: int) -> None:
        """The driver ``job`` is gone: nobody can read its results any more, so its tasks
        are cancelled (running ones forcibly) and its non-detached actors killed, at once,
        freeing the resources other drivers wait for."""
        self.tasks.end_job(job)
        self.actors.end_job(job)
        self.groups.end_job(job)
        self.jobs.ended(job)

    def _start_job(self, job: int, pid: int, entrypoint: str, host: str) -> None:
        """A driver with prefix ``job`` connected (a cluster's head)."""
        self.jobs.started(job, pid, entrypoint, host)

    # == user metrics (``actorlib.util.metrics``) ==========================================

    def record_metrics(self, batch: Batch, done: Callable[[], None] | None = None) -> None:
        """Fold a process's batch of metric updates in; ``done()`` once it is (the
        sender's next batch waits for it). Never blocks."""
        if self._loop.in_loop_thread():
            self._apply_metrics(batch, done)
        else:
            self._loop.post(self._apply_metrics, batch, done)

    def _apply_metrics(self, batch: Batch, done: Callable[[], None] | None) -> None:
        self.metrics.apply(batch)
        if done is not None:
            done()

    # == cluster info =====================================================================

    def nodes(self) -> list[NodeInfo]:
        def snapshot() -> list[NodeInfo]:
            return [
                NodeInfo(n.node_id, dict(n.total), alive=n.alive, labels=dict(n.labels))
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

    def state_rows(self, kind: str) -> list[dict[str, Any]]:
        """Rows of the state API for ``kind`` (see :mod:`actorlib.core.state`), or the
        answer to a question about worker processes (``state.worker_query``), which the
        backend answers where they run: blocks, so not on the core loop."""
        if kind == "metrics":
            return self._loop.call(self.metrics.rows)
        if kind == "jobs":
            return self._loop.call(self.jobs.rows)
        if kind not in state.KINDS:
            query = state.worker_query(kind)
            if query is None:
                raise ValueError(
                    f"unknown state kind {kind!r}; expected one of "
                    f"{', '.join(state.KINDS + state.OWN_KINDS)}"
                )
            if self._loop.in_loop_thread():
                raise RuntimeError("a worker query waits for the workers: not on the core "
                                   "loop (answer_worker_query does not wait)")
            answer = self._loop.call(self.backend.worker_query, query)
            rows: list[dict[str, Any]] = answer.result(WORKER_QUERY_TIMEOUT_S)
            return rows
        if kind in WORKER_KINDS and not self._loop.in_loop_thread():
            fresh: concurrent.futures.Future[list[dict[str, Any]]] = concurrent.futures.Future()

            def settle(ok: bool, value: Any) -> None:
                if ok:
                    fresh.set_result(value)
                else:
                    fresh.set_exception(value)

            if self._loop.call(self._after_refresh, kind, settle):
                return fresh.result(WORKER_QUERY_TIMEOUT_S)  # within WORKERS_REFRESH_S
        return self._loop.call(self._rows, kind)

    def _rows(self, kind: str) -> list[dict[str, Any]]:
        """The state rows of a plain kind, on the core loop."""
        return state.rows(
            kind, self.tasks, self.actors, self.objects, self.scheduler,
            self.backend.locate, self.store.is_spilled, self.backend.workers, self.groups,
        )

    def answer_worker_query(
        self, kind: str, done: Callable[[bool, Any], None],
    ) -> bool:
        """On the core loop: if ``kind`` is a worker query, ask the backend and call
        ``done(ok, rows or error)`` on the loop once it answers, and return True; the
        same for rows naming worker processes when the backend must refresh what it
        knows of them first (``Backend.refresh_workers``); else False (a plain kind:
        ``state_rows`` answers it at once)."""
        if kind in WORKER_KINDS:
            return self._after_refresh(kind, done)
        try:
            query = state.worker_query(kind)
        except ValueError as exc:
            done(False, exc)
            return True
        if query is None:
            return False
        answer = self.backend.worker_query(query)

        def answered(future: concurrent.futures.Future[list[dict[str, Any]]]) -> None:
            error = future.exception()
            self._loop.post(done, error is None, error if error is not None else future.result())

        answer.add_done_callback(answered)
        return True

    def _after_refresh(self, kind: str, done: Callable[[bool, Any], None]) -> bool:
        """``kind``'s rows to ``done`` with every worker process they should name, where
        the backend must ask for them (``Backend.refresh_workers``); False if it need
        not. On the core loop.

        Tasks and actors: the rows as of now, then, if a running or queued task or a
        live actor names no process (placed since the node's last heartbeat), its pid
        from the rows made again once the nodes have answered. Their answers cover it: each node
        handles the head's messages in order, and the work in the first rows was sent
        before the question. Answered after :data:`WORKERS_REFRESH_S` at most (a
        stopped node), with what is known then."""
        before: list[dict[str, Any]] | None = None
        if kind in _PID_FIELDS:
            key, field, states = _PID_FIELDS[kind]
            try:
                before = self._rows(kind)
            except Exception as exc:
                done(False, exc)
                return True
            if not any(row["state"] in states and not row[field] for row in before):
                done(True, before)
                return True
        refreshing = self.backend.refresh_workers()
        if refreshing is None:
            if before is None:
                return False
            done(True, before)
            return True
        answered = False

        def answer() -> None:
            nonlocal answered
            if answered:
                return
            answered = True
            late.cancel()
            try:
                rows = self._rows(kind)
            except Exception as exc:
                done(False, exc)
                return
            if before is not None:
                found = {row[key]: row[field] for row in rows if row[field]}
                for row in before:
                    if row["state"] in states and not row[field]:
                        row[field] = found.get(row[key])
                rows = before
            done(True, rows)

        late = self._loop.loop.call_later(WORKERS_REFRESH_S, answer)
        refreshing.add_done_callback(lambda _: self._loop.post(answer))
        return True

    def debug_state(self) -> dict[str, Any]:
        def state() -> dict[str, Any]:
            return {
                "objects": self.objects.live_ids(),
                "actors": {a for a, r in self.actors.records.items() if r.state is not DEAD},
                "tasks": len(self.tasks.records),
                "calls": len(self.actors.calls),
                "names": sorted(f"{namespace}/{name}" for namespace, name in self.actors.names),
                "queued": self.scheduler.queued(),
                "problems": invariants.problems(
                    self.scheduler, self.tasks, self.actors, self.streams, self.groups
                ),
            }

        return self._loop.call(state)

    def flush(self) -> None:
        """Wait until everything posted so far has been processed."""
        self._loop.call(lambda: None)


__all__ = ["Runtime", "error_value", "serialize"]
