"""Pipelining races in the core's task state machine, driven event by event.

A task queued behind a running one on its worker (FOLLOWING) can be handed back by the
backend (a recall, or a cancel) while the outcome of the task ahead is already on its
way to the core. The core then sees, in this order: the leader's outcome (which promotes
the follower into the leader's resources, RUNNING), then the hand-back. The task never
started, so it must queue again (or end, if cancelled) and give back what it was given:
before, the hand-back was ignored, the task stayed RUNNING on no worker, and its caller
waited forever (found with ``Executor.map`` and a window of max_workers + 1).

The real backends cannot be paused between those two events, so these tests drive
:class:`actorlib.core.tasks.Tasks` with a scripted backend.
"""

from __future__ import annotations

from typing import Any

import pytest

from actorlib.core.actors import Actors
from actorlib.core.invariants import problems
from actorlib.core.objects import ObjectTable
from actorlib.core.records import Outcome, TaskRun
from actorlib.core.scheduler import Scheduler
from actorlib.core.specs import Args, CodeRef, TaskSpec
from actorlib.core.tasks import QUEUED, RUNNING, Tasks
from actorlib.core.values import Values


class ScriptedBackend:
    """Records what the core asks; answers only when the test says so."""

    pipelines = True
    pipeline_depth = 2
    has_locality = False

    def __init__(self) -> None:
        self.runs: list[TaskRun] = []
        self.recalls: list[int] = []
        self.cancels: list[int] = []
        self.taken_back: list[int] = []
        self.can_take_back = True  # take_back's answer: not started yet

    def run_task(self, run: TaskRun) -> None:
        self.runs.append(run)

    def recall(self, task_id: int) -> None:
        self.recalls.append(task_id)

    def cancel(self, id: int, *, force: bool) -> None:
        self.cancels.append(id)

    def take_back(self, task_id: int) -> bool:
        if self.can_take_back:
            self.taken_back.append(task_id)
        return self.can_take_back


class Core:
    def __init__(self, cpus: float = 1.0) -> None:
        self.backend = ScriptedBackend()
        self.objects = ObjectTable(lambda value: None, lambda ids: None)
        self.values = Values(self.objects, lambda value: None, lambda ids: None,
                             lambda ids: None)
        self.scheduler = Scheduler()
        self.scheduler.add_node("node", {"CPU": cpus})
        backend: Any = self.backend
        parts = (self.objects, self.values, self.scheduler, backend, lambda c, o: 0)
        self.tasks = Tasks(*parts)
        self.actors = Actors(*parts)

    def submit(self, task_id: int, limit: tuple[str, int] | None = None) -> TaskSpec:
        spec = TaskSpec(task_id, CodeRef(1, "work", b""), Args(None), (), 0, {"CPU": 1.0},
                        name=f"work-{task_id}", concurrency=limit)
        self.tasks.submit(spec)
        self.schedule()
        return spec

    def schedule(self) -> None:
        """What the runtime does after each batch of events."""
        self.scheduler.dirty = False
        for work, placement in self.scheduler.place_ready():
            self.tasks.dispatch(work, placement)
        self.tasks.pipeline()

    def schedule_as_runtime(self) -> bool:
        """What ``Runtime._schedule`` does: a placement pass only when one is due, else
        only followers for new leaders. True if a pass ran."""
        if not self.scheduler.dirty:
            if self.tasks.new_leaders:
                self.tasks.lead()
            return False
        self.schedule()
        return True

    def problems(self) -> list[str]:
        return problems(self.scheduler, self.tasks, self.actors)

    @property
    def free_cpus(self) -> float:
        return self.scheduler.nodes["node"].available["CPU"]


def _leader_and_follower() -> tuple[Core, int, int]:
    core = Core()
    core.submit(1)
    core.submit(2)
    assert [run.spec.task_id for run in core.backend.runs] == [1, 2]
    assert core.backend.runs[1].follows == 1  # queued behind task 1 on its worker
    return core, 1, 2


@pytest.mark.parametrize("hand_back", ["recall", "cancel"])
def test_a_follower_handed_back_after_its_leader_ended_is_not_lost(hand_back: str) -> None:
    core, leader, follower = _leader_and_follower()
    if hand_back == "recall":
        core.tasks.blocked(leader, True)  # the leader waits in get(): its follower is recalled
        assert core.backend.recalls == [follower]
    else:
        core.tasks.cancel(follower, force=False, recursive=False)
        assert core.backend.cancels == [follower]
    # The leader's outcome was already on its way: it arrives first and promotes the
    # follower into the leader's CPU...
    core.tasks.finished(Outcome(leader, 0, values=[]))
    core.schedule()
    assert core.tasks.records[follower].state is RUNNING
    # ...then the backend's answer: it took the follower back before it started.
    core.tasks.recalled(follower, 0)
    core.schedule()
    assert core.problems() == []
    if hand_back == "cancel":
        assert follower not in core.tasks.records  # ended as cancelled
        assert core.free_cpus == 1.0
    else:
        rec = core.tasks.records[follower]
        assert rec.state is RUNNING  # queued again, and placed on the free CPU at once
        assert [run.spec.task_id for run in core.backend.runs] == [1, 2, 2]
        assert core.backend.runs[-1].follows == 0
        core.tasks.finished(Outcome(follower, 0, values=[]))
        assert core.tasks.records == {}
        assert core.free_cpus == 1.0


def test_a_recall_that_lost_the_race_leaves_the_started_task_running() -> None:
    """The other answer: the follower had started, so no hand-back comes; its outcome
    ends it normally, and nothing is queued behind it meanwhile."""
    core, leader, follower = _leader_and_follower()
    core.tasks.blocked(leader, True)
    core.tasks.finished(Outcome(leader, 0, values=[]))
    core.submit(3)
    assert core.tasks.records[3].state is QUEUED  # not behind the follower being recalled
    core.tasks.finished(Outcome(follower, 0, values=[]))
    core.schedule()
    assert core.tasks.records[3].state is RUNNING
    core.tasks.finished(Outcome(3, 0, values=[]))
    assert core.tasks.records == {} and core.problems() == []
    assert core.free_cpus == 1.0


def test_a_burst_and_the_ends_of_its_tasks_need_no_pass_per_task() -> None:
    """Work queued behind a waiting head asks for no placement pass, and a task's end
    hands its CPU to the task behind it as held: the chain runs in order, one task
    behind each running one, with the books right at every step."""
    core = Core()
    passes = []
    for task_id in range(1, 9):
        spec = TaskSpec(task_id, CodeRef(1, "work", b""), Args(None), (), 0, {"CPU": 1.0},
                        name=f"work-{task_id}")
        core.tasks.submit(spec)
        passes.append(core.schedule_as_runtime())
    # 1 placed, 2 queued behind it, 3 left waiting at the head: then no more passes.
    assert passes == [True, True, True] + [False] * 5
    assert [(run.spec.task_id, run.follows) for run in core.backend.runs] == [(1, 0), (2, 1)]
    for task_id in range(1, 9):
        core.tasks.finished(Outcome(task_id, 0, values=[]))
        ran_pass = core.schedule_as_runtime()
        assert core.problems() == []
        if task_id < 8:
            assert not ran_pass  # the CPU passed on as held: nothing to place
            assert core.free_cpus == 0.0
            assert core.tasks.records[task_id + 1].state is RUNNING
        if task_id < 7:  # the next one queued behind the new leader
            assert core.backend.runs[-1].spec.task_id == task_id + 2
            assert core.backend.runs[-1].follows == task_id + 1
    assert ran_pass  # the last end freed the CPU
    assert core.tasks.records == {} and core.free_cpus == 1.0
    assert [run.spec.task_id for run in core.backend.runs] == list(range(1, 9))
    # The ended tasks keep the node they ran on (the state API's rows).
    assert all(placement is not None and placement.node.node_id == "node"
               for (_, _, _, placement, *_rest) in core.tasks.ended)
