"""Actors: their lifecycle (create, start, restart, die) and the calls made to them.

An actor's life, one :class:`ActorState` at a time::

    WAITING ──placed──▶ STARTING ──constructor done──▶ ALIVE
       ▲                   │                             │
       └── RESTARTING ◀────┴──────── died, restarts left ┘
    (any) ── killed, out of restarts, out of scope, constructor raised ──▶ DEAD

WAITING: for its constructor's argument refs, then in the scheduler's queues. Calls are
handed to the backend from STARTING on (queued behind the constructor there). A restarted
actor gets its calls in flight back at the front of their callers' queues (see
:mod:`actorlib.core.mailbox` for the ordering rule). With no handle left, the actor stops
once its pending calls are done (Ray's rule), unless it is detached.

Runs on the core loop only; no locks. The runtime calls the public methods (guarded:
see :mod:`actorlib.core.guards`).
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

from actorlib.core.call_slots import CallSlots
from actorlib.core.ids import id_hex
from actorlib.core.mailbox import CallRecord, Mailbox, may_retry
from actorlib.core.objects import ObjectEntry, ObjectTable
from actorlib.core.records import ActorStart, CallRun, Outcome, require_fields
from actorlib.core.scheduler import Placement, Scheduler, infeasible_error
from actorlib.core.serialization import Serialized, deserialize
from actorlib.core.specs import ActorSpec, CallSpec
from actorlib.core.state import actor_row, dead_actor_ring, ended_calls_ring, event_time
from actorlib.core.values import Values, cancelled_value, error_value
from actorlib.exceptions import (
    ActorAlreadyExistsError,
    ActorDiedError,
    ActorRuntimeEnvSetupError,
    RuntimeEnvSetupError,
)

if TYPE_CHECKING:  # the interface the core drives; the core never imports a backend
    from actorlib.backends.base import Backend


#: Makes a record whose slots the caller sets, for the hot paths: a class called with an
#: ``__init__`` costs about 600 instructions more (CPython 3.11's ``type_call``).
new_record = object.__new__
require_fields("Actors.submit_call", (CallRun, ("spec", "deps", "incarnation")))


class ActorState(enum.Enum):
    WAITING = "waiting"  # for constructor arguments or resources
    STARTING = "starting"  # constructor running; calls may be queued behind it
    ALIVE = "alive"
    RESTARTING = "restarting"
    DEAD = "dead"


# Plain module names for the hot paths (see actorlib.core.tasks).
WAITING = ActorState.WAITING
STARTING = ActorState.STARTING
ALIVE = ActorState.ALIVE
RESTARTING = ActorState.RESTARTING
DEAD = ActorState.DEAD


class ActorRecord:
    __slots__ = (
        "dead_error",
        "handle_refs",
        "incarnation",
        "job",
        "mailbox",
        "no_restart",
        "placement",
        "remaining",
        "restarts",
        "spec",
        "state",
    )

    def __init__(self, spec: ActorSpec, job: int = 0) -> None:
        self.spec = spec
        self.job = job  # the driver whose actor this is (Runtime.job_of)
        self.state = WAITING
        self.incarnation = 0
        self.placement: Placement | None = None
        self.handle_refs = 1
        self.restarts = 0
        self.remaining = 0
        self.no_restart = False
        self.dead_error: BaseException | None = None
        self.mailbox = Mailbox(CallSlots(spec))

    @property
    def running(self) -> bool:
        """Hosted by the backend (its constructor running or done): calls go to it."""
        state = self.state
        return state is STARTING or state is ALIVE


class Actors:
    """Every actor not yet forgotten, its name, and the calls pending on it."""

    def __init__(
        self, objects: ObjectTable, values: Values, scheduler: Scheduler, backend: Backend,
        job_of: Callable[[int, int], int],
    ) -> None:
        """``job_of(caller_id, own_id)``: the driver new work belongs to (the runtime's)."""
        self.objects = objects
        self.values = values
        self.scheduler = scheduler
        self.backend = backend
        self._job_of = job_of
        self.records: dict[int, ActorRecord] = {}
        self.calls: dict[int, int] = {}  # call id -> actor id, while the call is pending
        self.names: dict[tuple[str, str], int] = {}
        self.ended = ended_calls_ring()  # the last ended calls, for the state API
        self.dead = dead_actor_ring()  # the last forgotten (dead) actors, likewise

    # == handles: an actor id counted like an object's ====================================

    def add_handle(self, actor_id: int) -> None:
        rec = self.records.get(actor_id)
        if rec is not None:
            rec.handle_refs += 1

    def drop_handle(self, actor_id: int) -> None:
        rec = self.records.get(actor_id)
        if rec is not None:
            rec.handle_refs -= 1
            if rec.handle_refs <= 0:
                self._out_of_scope(rec)

    def lookup(self, name: str, namespace: str) -> ActorSpec | None:
        """The spec of a live named actor, counting one more handle to it."""
        actor_id = self.names.get((namespace, name))
        if actor_id is None:
            return None
        rec = self.records[actor_id]
        rec.handle_refs += 1
        return rec.spec

    def named(self, namespace: str | None) -> list[tuple[str, str]]:
        return sorted(k for k in self.names if namespace is None or k[0] == namespace)

    # == lifecycle ==========================================================================

    def create_named(self, spec: ActorSpec, get_if_exists: bool) -> int:
        assert spec.name is not None
        existing = self.names.get((spec.namespace, spec.name))
        if existing is not None:
            self.values.free_unused(spec.args)  # this spec's arguments are not used
            if get_if_exists:
                self.records[existing].handle_refs += 1
                return existing
            raise ActorAlreadyExistsError(
                f"An actor named {spec.name!r} already exists in namespace {spec.namespace!r}. "
                "Use get_actor() to reach it, or options(get_if_exists=True)."
            )
        self.create(spec)
        return spec.actor_id

    def create(self, spec: ActorSpec) -> None:
        rec = ActorRecord(spec, self._job_of(spec.caller_id, spec.actor_id))
        self.records[spec.actor_id] = rec
        if spec.name is not None:
            self.names[(spec.namespace, spec.name)] = spec.actor_id
        self.values.hold_ids(spec.args.held)
        reason = self.scheduler.infeasible_reason(spec.resources, spec.scheduling_strategy)
        if reason is not None:
            self._dead(rec, infeasible_error(reason, actor=True))
            return
        rec.remaining = self.values.resolve_deps(spec.args.deps, lambda: self._deps_ready(rec))
        if rec.remaining == 0:
            self._deps_ready(rec)

    def _deps_ready(self, rec: ActorRecord) -> None:
        if rec.state is not WAITING:
            return
        rec.remaining = 0
        error = self.values.first_dep_error(rec.spec.args.deps)
        if error is not None:
            self._dead(rec, self._constructor_error(rec, error, started=False))
            return
        self.scheduler.enqueue(rec, rec.spec.resources, rec.spec.scheduling_strategy)

    def dispatch(self, rec: ActorRecord, placement: Placement) -> None:
        """The scheduler placed ``rec``: start it there, and hand over its waiting calls."""
        if rec.state is DEAD:
            placement.release()
            self.scheduler.dirty = True  # room for work queued behind a waiting head
            return
        rec.placement = placement
        rec.incarnation += 1
        rec.state = STARTING
        self.backend.start_actor(
            ActorStart(
                rec.spec, placement.node.node_id, self.values.dep_values(rec.spec.args.deps),
                rec.incarnation, placement.gpu_ids,
            )
        )
        for caller in rec.mailbox.callers():
            self._pump(rec, caller)

    def started(self, actor_id: int, incarnation: int) -> None:
        rec = self.records.get(actor_id)
        if rec is not None and rec.incarnation == incarnation and rec.state is STARTING:
            rec.state = ALIVE
            rec.mailbox.slots.open(event_time())

    @staticmethod
    def _constructor_error(
        rec: ActorRecord, error: Serialized, started: bool = True
    ) -> ActorDiedError:
        """The actor's death for ``error``: its start failed (``started``: on a worker, its
        runtime_env or its constructor), or an argument of its constructor failed."""
        try:
            # deserialize: a constructor's error whose class cannot be loaded here (a
            # module only the worker had) still keeps its class name, message and trace.
            cause = deserialize(error)
        except Exception as exc:
            cause = exc
        # The worker could not set up its runtime_env: the constructor never ran. Exactly
        # that error: one the constructor raised (a TaskError too) did run it.
        if started and type(cause) is RuntimeEnvSetupError:
            return ActorRuntimeEnvSetupError(
                f"The actor {rec.spec.cls.name} ({id_hex(rec.spec.actor_id)}) could not "
                f"start: {cause}",
                id_hex(rec.spec.actor_id),
                cause,
            )
        return ActorDiedError(
            f"The actor {rec.spec.cls.name} ({id_hex(rec.spec.actor_id)}) died because its "
            f"constructor raised: {cause}",
            id_hex(rec.spec.actor_id),
            cause,
        )

    def init_failed(self, actor_id: int, incarnation: int, error: Serialized) -> None:
        rec = self.records.get(actor_id)
        if rec is None or rec.incarnation != incarnation or rec.state is DEAD:
            return
        self._dead(rec, self._constructor_error(rec, error))
        self.backend.stop_actor(actor_id, force=True)

    def died(self, actor_id: int, incarnation: int, error: BaseException) -> None:
        """The backend lost the actor: restart it if it may, else it is dead."""
        rec = self.records.get(actor_id)
        if rec is None or rec.incarnation != incarnation or rec.state is DEAD:
            return
        self._release_placement(rec)
        spec = rec.spec
        out_of_restarts = spec.max_restarts >= 0 and rec.restarts >= spec.max_restarts
        if rec.no_restart or out_of_restarts or rec.handle_refs <= 0:
            self._dead(rec, self._died_error(rec, error))
            return
        rec.restarts += 1
        rec.state = RESTARTING
        died = error_value(self._died_error(rec, error))
        for call in rec.mailbox.requeue_inflight(spec.max_task_retries):
            self._finish_call(call, died)
        rec.state = WAITING
        self.scheduler.enqueue(rec, spec.resources, spec.scheduling_strategy)

    @staticmethod
    def _died_error(rec: ActorRecord, error: BaseException) -> ActorDiedError:
        if isinstance(error, ActorDiedError):
            return error
        return ActorDiedError(
            f"The actor {rec.spec.cls.name} ({id_hex(rec.spec.actor_id)}) died: {error}",
            id_hex(rec.spec.actor_id),
            error,
        )

    @staticmethod
    def _dead_error(rec: ActorRecord) -> BaseException:
        return rec.dead_error or ActorDiedError(
            f"The actor {rec.spec.cls.name} is dead.", id_hex(rec.spec.actor_id)
        )

    def _release_placement(self, rec: ActorRecord) -> None:
        if rec.placement is not None:
            rec.placement.release()
            rec.placement = None
            self.scheduler.dirty = True

    def _dead(self, rec: ActorRecord, error: BaseException) -> None:
        """The actor is gone for good: fail every pending call, free its name."""
        # First, so that an error that does not pickle leaves the actor to the guard's
        # ``abandon``, which fails its calls, rather than dead with its calls waiting.
        died = error_value(error)
        if rec.state is WAITING:
            self.scheduler.remove(rec)
        rec.state = DEAD
        rec.dead_error = error
        self._release_placement(rec)
        for call in rec.mailbox.drain_all():
            self._finish_call(call, died)
        self._unname(rec)
        if rec.handle_refs <= 0:
            self._forget(rec)

    def _unname(self, rec: ActorRecord) -> None:
        if rec.spec.name is not None:
            key = (rec.spec.namespace, rec.spec.name)
            if self.names.get(key) == rec.spec.actor_id:
                del self.names[key]

    def _forget(self, rec: ActorRecord) -> None:
        if self.records.pop(rec.spec.actor_id, None) is not None:
            self.values.release_args(rec.spec.args)
            self.dead.append(actor_row(rec))

    def _out_of_scope(self, rec: ActorRecord) -> None:
        """No handle is left: stop the actor once its pending calls are done (Ray's rule)."""
        if rec.spec.detached:
            return
        if rec.state is DEAD:
            self._forget(rec)
            return
        if not rec.mailbox.idle:
            return
        if rec.running:
            self.backend.stop_actor(rec.spec.actor_id, force=False)
        self._dead(rec, ActorDiedError("The actor went out of scope."))

    def kill(
        self, actor_id: int, no_restart: bool, why: str = "kill() or exit_actor()",
        error_type: type[ActorDiedError] = ActorDiedError,
    ) -> None:
        rec = self.records.get(actor_id)
        if rec is None or rec.state is DEAD:
            return
        rec.no_restart = rec.no_restart or no_restart
        was_running = rec.running
        if was_running:
            self.backend.stop_actor(actor_id, force=True)
        error = error_type(
            f"The actor {rec.spec.cls.name} ({id_hex(actor_id)}) was killed ({why}).",
            id_hex(actor_id),
        )
        if was_running:
            self.died(actor_id, rec.incarnation, error)
        else:
            rec.no_restart = True
            self._dead(rec, error)

    def end_job(self, job: int) -> None:
        """Kill every actor of the driver ``job`` that is not detached."""
        for rec in [a for a in self.records.values() if a.job == job and not a.spec.detached]:
            self.kill(rec.spec.actor_id, no_restart=True)

    def abandon(self, actor_id: int, error: BaseException) -> None:
        """A core bug hit this actor: it dies for good, failing its calls."""
        rec = self.records.get(actor_id)
        if rec is None or rec.state is DEAD:
            return
        if rec.running:
            self.backend.stop_actor(actor_id, force=True)
        rec.no_restart = True
        self._dead(rec, ActorDiedError(str(error), id_hex(actor_id), error))

    # == calls ==============================================================================

    def submit_call(self, spec: CallSpec) -> None:
        entries = self.objects.entries
        for rid in spec.return_ids:
            # ``ObjectTable.create(rid, 1, call_id)``, without its frame nor
            # ``ObjectEntry.__init__``'s: the entry's slots as that sets them
            # (``Tasks.submit`` makes a task's alike: a change here goes there too).
            entry = new_record(ObjectEntry)
            entry.refs = 1
            entry.value = None
            entry.watchers = None
            entry.producer = spec.call_id
            entry.lineage = None
            entries[rid] = entry
        values = self.values
        args = spec.args
        if args.deps or (args.payload is not None and args.payload.contained):
            values.hold_ids(args.held)  # most calls hold no refs: no call for them
        if spec.generator == "streaming":
            values.open_stream(spec.call_id, spec.return_ids[0], spec.backpressure)
        actor = self.records.get(spec.actor_id)
        if actor is None:
            values.resolve(
                spec.return_ids,
                error_value(ActorDiedError("The actor is gone.", id_hex(spec.actor_id))),
            )
            values.release_ids(spec.args.held)
            return
        self.calls[spec.call_id] = spec.actor_id
        state = actor.state
        if state is DEAD:
            self._finish_call(CallRecord(spec), error_value(self._dead_error(actor)))
            return
        mailbox = actor.mailbox
        caller = spec.caller_id
        deps = spec.args.deps
        if (
            # (``actor.running``, without its property's frame)
            not deps and (state is STARTING or state is ALIVE)
            and caller not in mailbox.queues and caller not in mailbox.barrier
        ):
            # Nothing of this caller waits and the actor takes calls: what ``_pump`` would
            # do with it, without queueing it first; ``CallRecord(spec)`` and
            # ``mailbox.hand_over(call)`` without their frames (their fields set as they
            # set them; created and started at the same moment).
            call = new_record(CallRecord)
            call.spec = spec
            call.remaining = 0
            call.cancelled = False
            call.created = now = event_time()
            call.pid = 0
            mailbox.inflight[spec.call_id] = call
            mailbox.slots.handed(call, now)
            if spec.retry_exceptions:
                mailbox.barrier[caller] = spec.call_id
            run = new_record(CallRun)  # ``CallRun(spec, [], incarnation)``, likewise
            run.spec = spec
            run.deps = []
            run.incarnation = actor.incarnation
            self.backend.run_call(run)
            return
        call = CallRecord(spec)
        mailbox.enqueue(call)
        if deps:
            # A partial, not a closure: that would make four cells on every call of this
            # method, whether it has deps or not.
            call.remaining = values.resolve_deps(
                deps, functools.partial(self._call_deps_ready, actor, call)
            )
            if call.remaining:
                return
        self._pump(actor, caller)

    def _call_deps_ready(self, actor: ActorRecord, call: CallRecord) -> None:
        call.remaining = 0
        self._pump(actor, call.spec.caller_id)

    def _pump(self, actor: ActorRecord, caller: int) -> None:
        """Hand the caller's calls to the backend, in order, as far as the rules allow."""
        mailbox = actor.mailbox
        values = self.values
        while actor.running:
            call = mailbox.next_ready(caller)
            if call is None:
                return
            spec = call.spec
            error = values.first_dep_error(spec.args.deps)
            if error is not None:
                self._finish_call(call, error)
                continue
            mailbox.hand_over(call)
            self.backend.run_call(
                CallRun(spec, values.dep_values(spec.args.deps), actor.incarnation)
            )

    def call_finished(self, outcome: Outcome) -> None:
        actor_id = self.calls.get(outcome.id)
        actor = self.records.get(actor_id) if actor_id is not None else None
        # ``mailbox.in_flight``, without its frame
        call = actor.mailbox.inflight.get(outcome.id) if actor is not None else None
        if actor is None or call is None or call.spec.attempt != outcome.attempt:
            self.values.discard_outcome(outcome)
            return
        spec = call.spec
        call.pid = outcome.pid
        mailbox = actor.mailbox
        # ``mailbox.returned(call)``, without its frame (every call's end)
        del mailbox.inflight[spec.call_id]
        now = event_time()  # its end, and the start of the call its place goes to
        mailbox.slots.ended(call, now)
        barrier = mailbox.barrier  # empty unless a call retries on exceptions
        if barrier and barrier.get(spec.caller_id) == spec.call_id:
            del barrier[spec.caller_id]
        values = self.values
        if outcome.error is not None:
            values.hold_ids(outcome.error.contained)
            if call.cancelled:
                values.drop_value(outcome.error)
                self._finish_call(call, cancelled_value(spec.method), now)
            elif outcome.retryable and may_retry(call, actor.spec.max_task_retries):
                values.drop_value(outcome.error)
                mailbox.retry_first(call)
            else:
                self._finish_call(call, outcome.error, now)
        elif call.cancelled:
            # It ran on and returned (a sync call that saw ``is_canceled()``, an async one
            # that caught ``CancelledError``): still cancelled, as a task is and as in Ray.
            values.discard_outcome(outcome)
            self._finish_call(call, cancelled_value(spec.method), now)
        else:
            results = outcome.values
            if (
                results is not None and len(results) == 1 and not spec.generator
                and not results[0].contained
            ):  # ``set_results``' work for one value holding no ref (nearly every call)
                self.objects.set_value(spec.return_ids[0], results[0])
            else:
                values.set_results(spec.return_ids, results or [])
            # ``_finish_call(call, None)``, without its frame (every call's end)
            self.calls.pop(spec.call_id, None)
            owner = self.records.get(spec.actor_id)  # (a watcher may have forgotten it)
            if owner is not None:
                placement = owner.placement
                self.ended.append((
                    spec.call_id, spec.method, owner.spec.cls.name, spec.attempt,
                    None if placement is None else placement.node.node_id, spec.actor_id,
                    False, owner.job, call.created, call.started, now, call.pid,
                ))
            args = spec.args
            if args.payload is not None or args.deps:  # else nothing to free or release
                values.release_args(args)
        if spec.caller_id in mailbox.queues:  # else the caller has nothing waiting
            self._pump(actor, spec.caller_id)
        if actor.handle_refs <= 0:
            self._out_of_scope(actor)

    def _finish_call(
        self, call: CallRecord, error: Serialized | None, ended: float | None = None
    ) -> None:
        # (written out in ``call_finished`` for a call that returned: a change here goes
        # there too)
        if error is not None:
            self.values.resolve(call.spec.return_ids, error)
        spec = call.spec
        self.calls.pop(spec.call_id, None)
        actor = self.records.get(spec.actor_id)
        if actor is not None:
            placement = actor.placement
            self.ended.append((
                spec.call_id, spec.method, actor.spec.cls.name, spec.attempt,
                None if placement is None else placement.node.node_id, spec.actor_id,
                error is not None, actor.job, call.created, call.started,
                event_time() if ended is None else ended, call.pid,
            ))
        args = spec.args
        if args.payload is not None or args.deps:  # else nothing to free or release
            self.values.release_args(args)

    def cancel_call(self, call_id: int) -> None:
        actor_id = self.calls.get(call_id)
        if actor_id is None:
            return
        actor = self.records.get(actor_id)
        if actor is None:
            return
        call = actor.mailbox.in_flight(call_id)
        if call is not None:
            call.cancelled = True
            self.backend.cancel(call_id, force=False)
            return
        call = actor.mailbox.remove_waiting(call_id)
        if call is not None:
            self._finish_call(call, cancelled_value(call.spec.method))
            self._pump(actor, call.spec.caller_id)

    def abandon_call(self, call_id: int, error: BaseException, returns: tuple[int, ...]) -> None:
        """A core bug hit this call: take it out of its mailbox, fail its returns
        (``returns`` if it never got that far)."""
        actor_id = self.calls.pop(call_id, None)
        actor = self.records.get(actor_id) if actor_id is not None else None
        if actor is not None:
            call = actor.mailbox.remove(call_id)
            if call is not None:
                self.values.release_args(call.spec.args)
                self.values.fail_pending(call.spec.return_ids, error)
                self._pump(actor, call.spec.caller_id)
                return
        self.values.fail_pending(returns, error)
