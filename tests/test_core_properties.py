"""The core's task and actor machines under random orders of events: no work lost.

The real backends cannot be paused between two events, so hypothesis drives the core's
task bookkeeping (``Tasks`` and the scheduler, with the scripted backend of
``scripted_core``) through any order a backend could report: submissions of two shapes
(some under a concurrency limit, as an Executor's calls are; some from running tasks;
some no node can take; some in a placement group's bundles), task ends, crashes with
retries, cancels (plain and forced, recursive or not), withdrawals, waits in ``get``
(CPUs lent) and back, the answers to recalls (a task queued behind another handed back
unstarted, or found started), placement groups created and removed, the second node
lost with the tasks on it, in batches of any length between the runtime's passes.
Backends that pipeline and those that do not, one node or two.

After every event: every rule of ``actorlib.core.invariants``
holds (each task in exactly one place, resources held exactly by what runs). At the end,
with every running task allowed to end: every task ended exactly once, nothing is
queued, every CPU is free again. This is where a queued task lost between two places, a
placement passed on twice or a pass that never came would show. ``ActorMachine`` does
the same for actors and their calls, and checks each caller's order.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import settings, stateful
from hypothesis import strategies as st
from scripted_core import Core

from actorlib.core.actors import ActorState
from actorlib.core.records import Outcome
from actorlib.core.specs import (
    ActorSpec,
    Args,
    CallSpec,
    CodeRef,
    PlacementGroupSpec,
    PlacementGroupStrategy,
    TaskSpec,
)
from actorlib.core.tasks import FOLLOWING, RUNNING, TaskRecord
from actorlib.core.values import error_value
from actorlib.exceptions import InfeasibleResourceError, WorkerCrashedError

pytestmark = pytest.mark.slow  # hypothesis properties (docs/development.md)


class TaskMachine(stateful.RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.core = Core()
        self.next_id = 1
        self.submitted: list[int] = []
        # (task id, attempt) whose recall the backend answered "started": it may no
        # longer be handed back; and those handed back: that attempt never ends.
        self.started: set[tuple[int, int]] = set()
        self.total = {"node": 1.0}
        self.groups: dict[int, tuple[Any, ...]] = {}  # created, not removed: their bundles

    @stateful.initialize(
        pipelines=st.booleans(), two_nodes=st.booleans(), cpus=st.sampled_from([1.0, 2.0])
    )
    def start(self, pipelines: bool, two_nodes: bool, cpus: float) -> None:
        self.core = Core(cpus=cpus, pipelines=pipelines)
        self.total = {"node": cpus}
        if two_nodes:
            self.core.scheduler.add_node("other", {"CPU": cpus})
            self.total["other"] = cpus

    # -- what may happen -------------------------------------------------------------

    @stateful.rule(
        data=st.data(), cpus=st.sampled_from([1.0, 0.5, 9.0]),
        limited=st.sampled_from([None, 1, 2]), retries=st.integers(0, 1),
        nested=st.booleans(), in_group=st.sampled_from([None, -1, 0]),
    )
    def submit(
        self, data: st.DataObject, cpus: float, limited: int | None, retries: int,
        nested: bool, in_group: int | None,
    ) -> None:
        """A task from the driver, or from a running task (its child), maybe in a
        placement group's bundle (any, or the first); 9 CPUs fit no node (it fails at
        once), nor a bundle."""
        parent = self._pick(data, lambda r: r.state is RUNNING) if nested else None
        strategy: Any = "DEFAULT"
        if in_group is not None and self.groups:
            group = data.draw(st.sampled_from(sorted(self.groups)))
            strategy = PlacementGroupStrategy(group, self.groups[group], in_group)
        task_id = self.next_id
        self.next_id += 1
        spec = TaskSpec(
            task_id, CodeRef(1, "work", b""), Args(None), (), 0, {"CPU": cpus},
            max_retries=retries, name=f"work-{task_id}", scheduling_strategy=strategy,
            concurrency=None if limited is None else (f"pool-{limited}", limited),
        )
        if parent is not None:
            spec.caller_id = parent.spec.task_id
        self.core.tasks.submit(spec)
        self.submitted.append(task_id)

    @stateful.rule(data=st.data(), failed=st.booleans())
    def end(self, data: st.DataObject, failed: bool) -> None:
        """A running task (as the core sees it) ends, with its result or an error."""
        rec = self._pick(data, lambda r: r.state is RUNNING)
        if rec is None:
            return
        self.started.add((rec.spec.task_id, rec.spec.attempt))
        outcome = (
            Outcome(rec.spec.task_id, rec.spec.attempt, error=error_value(ValueError("x")))
            if failed else Outcome(rec.spec.task_id, rec.spec.attempt, values=[])
        )
        self.core.tasks.finished(outcome)

    @stateful.rule(data=st.data())
    def crash(self, data: st.DataObject) -> None:
        """The worker running a task dies (a retry queues it again, if it has one), and
        with it the tasks queued behind it there, which never started."""
        rec = self._pick(data, lambda r: r.state is RUNNING)
        if rec is None:
            return
        self._crash_chain(rec)

    @stateful.rule(data=st.data(), force=st.booleans(), recursive=st.booleans())
    def cancel(self, data: st.DataObject, force: bool, recursive: bool) -> None:
        rec = self._pick(data, lambda r: True)
        if rec is None:
            return
        self.core.tasks.cancel(rec.spec.task_id, force=force, recursive=recursive)

    @stateful.rule(data=st.data(), can_take_back=st.booleans())
    def withdraw(self, data: st.DataObject, can_take_back: bool) -> None:
        """An Executor's cancel of a future: only if the task can be kept from starting."""
        rec = self._pick(data, lambda r: True)
        if rec is None:
            return
        # A task queued behind another may have started already on its worker (its
        # leader's outcome on its way): then it cannot be taken back, and never can be.
        attempt = (rec.spec.task_id, rec.spec.attempt)
        self.core.backend.can_take_back = can_take_back and attempt not in self.started
        if rec.state is FOLLOWING and not self.core.backend.can_take_back:
            self.started.add(attempt)
        if self.core.tasks.withdraw(rec.spec.task_id):
            assert rec.spec.task_id not in self.core.tasks.records  # it will never run

    @stateful.rule(data=st.data(), blocked=st.booleans())
    def wait_in_get(self, data: st.DataObject, blocked: bool) -> None:
        """A running task waits in ``get`` (its CPUs lent out), or comes back from it."""
        rec = self._pick(data, lambda r: r.state is RUNNING and r.blocked != blocked)
        if rec is None:
            return
        self.started.add((rec.spec.task_id, rec.spec.attempt))
        self.core.tasks.blocked(rec.spec.task_id, blocked)

    @stateful.rule(data=st.data())
    def hand_back(self, data: st.DataObject) -> None:
        """The backend answers a recall (or a cancel) of a queued-behind task: handed
        back, unstarted."""
        rec = self._pick(data, self._may_hand_back)
        if rec is None:
            return
        self.core.tasks.recalled(rec.spec.task_id, rec.spec.attempt)

    # -- checks ----------------------------------------------------------------------

    @stateful.rule(bundles=st.integers(1, 2), strategy=st.sampled_from(["PACK", "SPREAD"]))
    def create_group(self, bundles: int, strategy: str) -> None:
        """A placement group of one-CPU bundles: reserved now, or when room frees up."""
        group_id = self.next_id
        self.next_id += 1
        shape = tuple((("CPU", 1.0),) for _ in range(bundles))
        try:
            self.core.groups.create(PlacementGroupSpec(group_id, shape, strategy))
        except InfeasibleResourceError:
            return  # larger than the cluster: refused at once
        self.groups[group_id] = shape

    @stateful.rule(data=st.data())
    def remove_group(self, data: st.DataObject) -> None:
        """Its tasks end (cancelled), running ones forcibly: they end when reported."""
        if self.groups:
            group_id = data.draw(st.sampled_from(sorted(self.groups)))
            self.core.groups.remove(group_id)
            del self.groups[group_id]

    @stateful.rule()
    def node_dies(self) -> None:
        """The second node goes, with the workers there: their tasks (and those queued
        behind them) are reported crashed; its bundles wait to be reserved again."""
        core = self.core
        if "other" not in core.scheduler.nodes:
            return
        core.scheduler.remove_node("other")
        core.groups.node_removed("other")
        del self.total["other"]
        for rec in list(core.tasks.records.values()):
            placement = rec.placement
            if rec.state is RUNNING and placement is not None and (
                placement.node.node_id == "other"
            ):
                self._crash_chain(rec)

    @stateful.rule()
    def batch_ends(self) -> None:
        """The end of a batch of events: the runtime's pass (if one is due), its
        dispatches. Until then events pile up, as they do within one batch."""
        self.core.schedule_as_runtime()

    @stateful.invariant()
    def bookkeeping_holds(self) -> None:
        assert self.core.problems() == []

    def teardown(self) -> None:
        """Let everything end: each task exactly once, every CPU free, nothing queued."""
        core = self.core
        rounds = 10 * len(self.submitted) + 10
        for round_ in range(2 * rounds):
            records = list(core.tasks.records.values())
            if not records:
                break
            if round_ == rounds:  # a group that lost a node may never fit again
                for group_id in list(self.groups):
                    core.groups.remove(group_id)
                self.groups.clear()
            for rec in records:
                if self._may_hand_back(rec):
                    core.tasks.recalled(rec.spec.task_id, rec.spec.attempt)
                elif rec.state is RUNNING:
                    self.started.add((rec.spec.task_id, rec.spec.attempt))
                    core.tasks.finished(Outcome(rec.spec.task_id, rec.spec.attempt, values=[]))
            core.schedule_as_runtime()
        assert core.tasks.records == {}, f"never ended: {sorted(core.tasks.records)}"
        ended = Counter(entry[0] for entry in core.tasks.ended)
        assert ended == Counter(self.submitted), f"ended (task id: times) {ended}"
        assert not core.scheduler.has_queued()
        for group_id in list(self.groups):
            core.groups.remove(group_id)
        core.schedule_as_runtime()
        for node_id, cpus in self.total.items():
            assert core.scheduler.nodes[node_id].available["CPU"] == cpus
        assert core.scheduler.limited == {}
        assert core.problems() == []

    # -- helpers ---------------------------------------------------------------------

    def _crash_chain(self, rec: TaskRecord) -> None:
        """``rec``'s worker died: it, and the tasks queued behind it, are reported."""
        if rec.state is not RUNNING:
            return  # reported already (it was behind another one that crashed)
        self.started.add((rec.spec.task_id, rec.spec.attempt))
        chain = []
        follower = rec.successor
        while follower is not None:
            chain.append((follower.spec.task_id, follower.spec.attempt))
            follower = follower.successor
        for task_id, attempt in [(rec.spec.task_id, rec.spec.attempt), *chain]:
            self.core.tasks.crashed(task_id, attempt, WorkerCrashedError("x"))

    def _pick(self, data: st.DataObject, fits: Any) -> TaskRecord | None:
        live = [rec for rec in self.core.tasks.records.values() if fits(rec)]
        if not live:
            return None
        return data.draw(st.sampled_from(sorted(live, key=lambda r: r.spec.task_id)))

    def _may_hand_back(self, rec: TaskRecord) -> bool:
        """A recall asked and unanswered, for a task the backend has not started."""
        return (
            rec.recalling and (rec.state is FOLLOWING or rec.state is RUNNING)
            and (rec.spec.task_id, rec.spec.attempt) not in self.started
        )


# No process, no thread: a run of 50 events takes milliseconds, so ten times the
# profile's examples (200 with "fast", 4,000 with "thorough").
TaskMachine.TestCase.settings = settings(
    settings.default, max_examples=10 * settings.default.max_examples
)
test_the_task_machine_loses_nothing_under_any_order = TaskMachine.TestCase


class ActorMachine(stateful.RuleBasedStateMachine):
    """The same for actors and their calls: creations, calls from two callers (some
    retried on an application error), a constructor that ends or fails, calls that end
    with a result or an error, deaths with restarts and retried calls, kills, cancels.

    The backend's side is modelled as a sync actor's: each incarnation runs the calls it
    was handed in the order it got them, once its constructor is done, and loses those
    not run when it dies. Besides the invariants after every event and every call ended
    exactly once at the end, per actor and caller the calls ran in submission order
    (a call may run again, retried, but never after a later one of its caller ran)."""

    def __init__(self) -> None:
        super().__init__()
        self.core = Core()
        self.next_id = 1
        self.actor_ids: list[int] = []
        self.submitted: list[int] = []
        self.handed = 0  # the backend's calls moved into ``queued`` so far
        self.queued: dict[tuple[int, int], list[Any]] = {}  # (actor, incarnation) -> runs
        self.up: set[tuple[int, int]] = set()  # incarnations whose constructor ended
        self.ran: dict[tuple[int, int], list[int]] = {}  # (actor, caller) -> call ids

    @stateful.rule(max_restarts=st.sampled_from([0, 1, -1]), retries=st.sampled_from([0, 1]))
    def create(self, max_restarts: int, retries: int) -> None:
        actor_id = self._new_id()
        self.core.actors.create(ActorSpec(
            actor_id, CodeRef(2, "Counter", b""), Args(None), {},
            max_restarts=max_restarts, max_task_retries=retries,
        ))
        self.actor_ids.append(actor_id)

    @stateful.rule(data=st.data(), caller=st.sampled_from([0, 7]), retry_errors=st.booleans())
    def call(self, data: st.DataObject, caller: int, retry_errors: bool) -> None:
        if not self.actor_ids:
            return
        actor_id = data.draw(st.sampled_from(self.actor_ids))
        call_id = self._new_id()
        self.core.actors.submit_call(CallSpec(
            call_id, actor_id, "incr", Args(None), (), 0, caller_id=caller,
            retry_exceptions=retry_errors,
        ))
        self.submitted.append(call_id)
        self._take_handed()

    @stateful.rule(data=st.data(), fails=st.booleans())
    def constructor_ends(self, data: st.DataObject, fails: bool) -> None:
        rec = self._pick(data, lambda r: r.state is ActorState.STARTING)
        if rec is None:
            return
        if fails:
            self.core.actors.init_failed(
                rec.spec.actor_id, rec.incarnation, error_value(ValueError("ctor"))
            )
        else:
            self.up.add((rec.spec.actor_id, rec.incarnation))
            self.core.actors.started(rec.spec.actor_id, rec.incarnation)
        self._take_handed()

    @stateful.rule(data=st.data(), ending=st.sampled_from(["result", "error", "retryable"]))
    def next_call_ends(self, data: st.DataObject, ending: str) -> None:
        """The actor runs the oldest call it was handed; it ends one way or another."""
        self._take_handed()
        ready = sorted(key for key, runs in self.queued.items() if runs and key in self.up)
        if not ready:
            return
        key = data.draw(st.sampled_from(ready))
        run = self.queued[key].pop(0)
        spec = run.spec
        self.ran.setdefault((spec.actor_id, spec.caller_id), []).append(spec.call_id)
        if ending == "result":
            outcome = Outcome(spec.call_id, spec.attempt, values=[])
        else:
            outcome = Outcome(spec.call_id, spec.attempt, error=error_value(ValueError("x")),
                              retryable=ending == "retryable" and bool(spec.retry_exceptions))
        self.core.actors.call_finished(outcome)
        self._take_handed()

    @stateful.rule(data=st.data())
    def dies(self, data: st.DataObject) -> None:
        """The actor's worker dies: the calls it had not run are lost there."""
        rec = self._pick(data, lambda r: r.running)
        if rec is None:
            return
        self._take_handed()
        self.queued.pop((rec.spec.actor_id, rec.incarnation), None)
        self.core.actors.died(rec.spec.actor_id, rec.incarnation, WorkerCrashedError("x"))
        self._take_handed()

    @stateful.rule(data=st.data(), no_restart=st.booleans())
    def kill(self, data: st.DataObject, no_restart: bool) -> None:
        rec = self._pick(data, lambda r: r.state is not ActorState.DEAD)
        if rec is None:
            return
        self._take_handed()
        self.queued.pop((rec.spec.actor_id, rec.incarnation), None)
        self.core.actors.kill(rec.spec.actor_id, no_restart)
        self._take_handed()

    @stateful.rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        pending = sorted(self.core.actors.calls)
        if not pending:
            return
        self.core.actors.cancel_call(data.draw(st.sampled_from(pending)))
        self._take_handed()

    @stateful.rule()
    def batch_ends(self) -> None:
        self.core.schedule_as_runtime()
        self._take_handed()

    @stateful.invariant()
    def bookkeeping_holds(self) -> None:
        assert self.core.problems() == []

    @stateful.invariant()
    def each_caller_ran_in_order(self) -> None:
        for (actor_id, caller), ran in self.ran.items():
            assert ran == sorted(ran), f"actor {actor_id}, caller {caller}: ran {ran}"

    def teardown(self) -> None:
        core = self.core
        for _ in range(4 * len(self.submitted) + 10):
            core.schedule_as_runtime()
            self._take_handed()
            if not core.actors.calls:
                break
            for rec in list(core.actors.records.values()):
                key = (rec.spec.actor_id, rec.incarnation)
                if rec.state is ActorState.STARTING and key not in self.up:
                    self.up.add(key)
                    core.actors.started(*key)
                self._take_handed()
                runs = self.queued.get(key)
                if runs and key in self.up:
                    run = runs.pop(0)
                    spec = run.spec
                    self.ran.setdefault((spec.actor_id, spec.caller_id), []).append(spec.call_id)
                    core.actors.call_finished(Outcome(spec.call_id, spec.attempt, values=[]))
        assert core.actors.calls == {}, f"never ended: {sorted(core.actors.calls)}"
        ended = Counter(entry[0] for entry in core.actors.ended)
        assert ended == Counter(self.submitted), f"ended (call id: times) {ended}"
        self.each_caller_ran_in_order()

    def _new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def _take_handed(self) -> None:
        """The backend files the calls handed to it under the incarnation they are for."""
        calls = self.core.backend.calls
        for run in calls[self.handed:]:
            self.queued.setdefault((run.spec.actor_id, run.incarnation), []).append(run)
        self.handed = len(calls)

    def _pick(self, data: st.DataObject, fits: Any) -> Any:
        live = [rec for rec in self.core.actors.records.values() if fits(rec)]
        if not live:
            return None
        return data.draw(st.sampled_from(sorted(live, key=lambda r: r.spec.actor_id)))


ActorMachine.TestCase.settings = TaskMachine.TestCase.settings
test_actor_calls_run_in_order_and_end_once_under_any_order = ActorMachine.TestCase
