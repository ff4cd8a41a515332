"""A task's end passes its resources to the next task of its shape, as they are held.

On a backend that queues no task behind a running one (``sim``; the others when a task
may not be followed), each task of a burst used to give its CPU back at its end, and a
placement pass then took it again for the next task in the queue. Where that pass could
only choose that task (the one queue, one node, nothing but plain resources, no placement
group waiting), the placement now passes on directly (``Scheduler.take_head``) and the
task is dispatched after the batch (``Tasks.dispatch_handed``). These tests drive the
core event by event: every rule of the bookkeeping holds mid-batch too, a task cancelled
between the hand-over and its dispatch gives the placement back, and wherever a pass
might choose otherwise it still runs.
"""

from __future__ import annotations

from scripted_core import Core

from actorlib.core.records import Outcome
from actorlib.core.specs import PlacementGroupSpec
from actorlib.core.tasks import DONE, QUEUED, RUNNING


def _ran(core: Core) -> list[int]:
    return [run.spec.task_id for run in core.backend.runs]


def test_a_task_end_passes_its_cpu_to_the_next_queued_task_without_a_pass() -> None:
    core = Core(cpus=1, pipelines=False)
    for task_id in (1, 2, 3):
        core.submit(task_id)
    assert _ran(core) == [1]
    placement = core.tasks.records[1].placement
    core.tasks.finished(Outcome(1, 0, values=[]))
    # Mid-batch: task 2 holds task 1's CPU, off its queue, not yet dispatched.
    assert [rec.spec.task_id for rec, _ in core.tasks.handed] == [2]
    assert core.tasks.records[2].state is QUEUED
    assert core.problems() == []
    assert not core.scheduler.dirty
    assert core.schedule_as_runtime() is False  # no placement pass
    assert _ran(core) == [1, 2]
    assert core.tasks.records[2].state is RUNNING
    assert core.tasks.records[2].placement is placement
    assert core.free_cpus == 0.0
    core.tasks.finished(Outcome(2, 0, values=[]))
    core.schedule_as_runtime()
    core.tasks.finished(Outcome(3, 0, values=[]))
    # Nothing waits for the CPU: it is given back with no pass (Scheduler.give_back)
    assert core.schedule_as_runtime() is False
    assert _ran(core) == [1, 2, 3]
    assert core.tasks.records == {}
    assert core.free_cpus == 1.0
    assert core.problems() == []


def test_a_task_cancelled_between_the_hand_over_and_its_dispatch_gives_the_cpu_back() -> None:
    core = Core(cpus=1, pipelines=False)
    for task_id in (1, 2, 3):
        core.submit(task_id)
    two = core.tasks.records[2]
    core.tasks.finished(Outcome(1, 0, values=[]))
    core.tasks.cancel(2, force=False, recursive=False)  # in the same batch
    assert two.state is DONE
    core.schedule_as_runtime()
    assert _ran(core) == [1, 3]  # task 2 never ran; task 3 took the CPU in a pass
    assert 2 not in core.tasks.records
    assert core.free_cpus == 0.0
    assert core.problems() == []


def test_work_of_an_older_shape_keeps_its_turn() -> None:
    core = Core(cpus=1, pipelines=False)
    core.submit(1)
    core.submit(2, cpus=0.5)  # another shape, queued first
    core.submit(3)
    core.tasks.finished(Outcome(1, 0, values=[]))
    assert core.tasks.handed == []
    core.schedule_as_runtime()
    assert _ran(core) == [1, 2]
    assert core.tasks.records[3].state is QUEUED
    assert core.problems() == []


def test_a_waiting_placement_group_takes_freed_resources_first() -> None:
    core = Core(cpus=2, pipelines=False)
    for task_id in (1, 2, 3):
        core.submit(task_id)
    core.groups.create(PlacementGroupSpec(99, ({"CPU": 1.0},), "PACK"))
    core.schedule_as_runtime()
    assert 99 in core.groups.waiting  # no room
    core.tasks.finished(Outcome(1, 0, values=[]))
    assert core.tasks.handed == []
    core.schedule_as_runtime()
    assert 99 not in core.groups.waiting  # reserved with task 1's CPU
    assert core.tasks.records[3].state is QUEUED
    assert core.problems() == []


def test_a_second_node_makes_it_a_pass_again() -> None:
    core = Core(cpus=1, pipelines=False)
    core.scheduler.add_node("other", {"CPU": 1.0})
    for task_id in (1, 2, 3):
        core.submit(task_id)
    assert _ran(core) == [1, 2]
    core.tasks.finished(Outcome(1, 0, values=[]))
    assert core.tasks.handed == []
    assert core.schedule_as_runtime() is True
    assert _ran(core) == [1, 2, 3]
    assert core.problems() == []
