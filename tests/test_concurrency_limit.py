"""A concurrency limit on tasks (``TaskSpec.concurrency``), driven event by event.

What ``actorlib.Executor`` bounds ``max_workers`` with: at most ``limit`` tasks with one
key run at once, across nodes; a task waiting in ``get`` lends its CPU, not its slot;
a task queued behind a running one (pipelined) takes its leader's slot when that ends;
``Tasks.withdraw`` cancels a task only if it can never start. Driven through
:class:`actorlib.core.tasks.Tasks` with the scripted backend of ``test_pipelining``.
"""

from __future__ import annotations

from test_pipelining import Core

from actorlib.core.records import Outcome
from actorlib.core.tasks import FOLLOWING, QUEUED, RUNNING

LIMIT = ("executor-x", 2)


def _states(core: Core, ids: range) -> list[str]:
    return [core.tasks.records[i].state.value if i in core.tasks.records else "done"
            for i in ids]


def test_at_most_limit_run_even_with_free_cpus_and_lent_ones() -> None:
    core = Core(cpus=8)
    for task_id in range(1, 7):
        core.submit(task_id, LIMIT)
    # Two run, each with one queued behind it on its worker; the rest wait in the core.
    assert _states(core, range(1, 7)) == [
        "running", "running", "following", "following", "queued", "queued"]
    assert core.scheduler.limited == {"executor-x": 2}
    # Both wait in get(): their CPUs are lent and their followers come back, but no
    # other task under the limit starts.
    for leader, follower in ((1, 3), (2, 4)):
        core.tasks.blocked(leader, True)
        core.tasks.recalled(follower, 0)
    core.schedule()
    assert core.free_cpus == 8.0
    assert _states(core, range(1, 7)) == [
        "running", "running", "queued", "queued", "queued", "queued"]
    assert core.problems() == []
    # Work without the limit still uses the lent CPUs.
    core.submit(10)
    assert core.tasks.records[10].state is RUNNING
    # One ends: exactly one more starts.
    core.tasks.blocked(1, False)
    core.tasks.finished(Outcome(1, 0, values=[]))
    core.schedule()
    assert _states(core, range(1, 7)).count("running") == 2
    assert core.scheduler.limited == {"executor-x": 2}
    assert core.problems() == []


def test_a_follower_takes_its_leaders_slot() -> None:
    core = Core(cpus=4)
    for task_id in range(1, 5):
        core.submit(task_id, LIMIT)
    assert core.tasks.records[3].state is FOLLOWING
    core.tasks.finished(Outcome(1, 0, values=[]))  # task 3 starts on task 1's worker
    core.schedule()
    assert _states(core, range(1, 5)) == ["done", "running", "running", "following"]
    assert core.scheduler.limited == {"executor-x": 2}
    assert core.problems() == []
    for task_id in (2, 3, 4):
        core.tasks.finished(Outcome(task_id, 0, values=[]))
        core.schedule()
    assert core.scheduler.limited == {}
    assert core.problems() == []


def test_a_follower_takes_its_leaders_slot_with_no_placement_pass() -> None:
    """The slot passes with the leader's resources, as they are held: nothing is freed,
    so no pass is due (one ran for nothing at every end of a task under a limit)."""
    core = Core(cpus=2)
    for task_id in range(1, 9):
        core.submit(task_id, LIMIT)
    assert _states(core, range(1, 9)).count("running") == 2
    core.tasks.finished(Outcome(1, 0, values=[]))
    # Mid-batch: every count holds, and the follower runs in task 1's slot.
    assert core.scheduler.limited == {"executor-x": 2}
    assert core.problems() == []
    assert not core.scheduler.dirty
    assert core.schedule_as_runtime() is False  # no placement pass
    assert _states(core, range(1, 9)).count("running") == 2
    assert core.scheduler.limited == {"executor-x": 2}
    assert core.problems() == []


def test_withdraw_cancels_only_what_can_never_start() -> None:
    core = Core(cpus=4)
    for task_id in range(1, 7):
        core.submit(task_id, LIMIT)
    tasks = core.tasks
    assert tasks.withdraw(1) is False  # running
    assert tasks.withdraw(5) is True  # queued in the core
    assert tasks.records.get(5) is None
    core.backend.can_take_back = False  # the worker has started it (or is claiming it)
    assert tasks.withdraw(3) is False
    assert tasks.records[3].state is FOLLOWING
    core.backend.can_take_back = True
    assert tasks.withdraw(4) is True  # handed back at once: it never starts
    assert core.backend.taken_back == [4]
    assert tasks.records.get(4) is None
    assert tasks.records[2].successor is None
    core.schedule()
    assert tasks.withdraw(99) is False  # unknown (or already ended)
    assert core.problems() == []
    # Task 6 (queued) may now follow task 2; the ended ones never run.
    ran = [run.spec.task_id for run in core.backend.runs]
    assert 5 not in ran and ran.count(4) == 1
    assert tasks.records[6].state in (QUEUED, FOLLOWING)
