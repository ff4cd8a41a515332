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
from scripted_core import Core

from actorlib.core.records import Outcome
from actorlib.core.specs import Args, CodeRef, TaskSpec
from actorlib.core.tasks import QUEUED, RUNNING


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


@pytest.mark.parametrize("force", [False, True], ids=["soft", "forced"])
def test_a_follower_cancelled_after_its_promotion_and_handed_back_ends(force: bool) -> None:
    """The leader's outcome promotes the follower first (RUNNING: its worker goes on to
    it), then a cancel finds it RUNNING, and the backend takes it back unstarted (the
    worker had not claimed it yet). The hand-back ends it as cancelled. Before, the core
    took the hand-back of a RUNNING task only while a recall was pending: the task stayed
    RUNNING on no worker and its ``get`` never returned (found on the process backend by
    a hedged request: six tasks, the first result taken, the rest cancelled; stuck within
    30 rounds, 3 runs in 3)."""
    core, leader, follower = _leader_and_follower()
    core.tasks.finished(Outcome(leader, 0, values=[]))
    core.schedule()
    assert core.tasks.records[follower].state is RUNNING
    core.tasks.cancel(follower, force=force, recursive=False)
    assert core.backend.cancels == [follower]
    core.tasks.recalled(follower, 0)
    core.schedule()
    assert follower not in core.tasks.records  # ended as cancelled
    assert core.problems() == []
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
    # The last end freed the CPU, which nothing waits for: no pass for it (the next task
    # submitted is placed at once, ``Scheduler.place_alone``).
    assert not ran_pass and not core.scheduler.dirty
    assert core.tasks.records == {} and core.free_cpus == 1.0
    assert [run.spec.task_id for run in core.backend.runs] == list(range(1, 9))
    # The ended tasks keep the node they ran on (the state API's rows).
    assert all(node_id == "node" for (_, _, _, node_id, *_rest) in core.tasks.ended)


def _chains(depth: int, cpus: float, tasks: int) -> Core:
    core = Core(cpus)
    core.backend.pipeline_depth = depth
    core.tasks.depth = depth
    for task_id in range(1, tasks + 1):
        core.submit(task_id)
    assert core.problems() == []
    return core


def _sent(core: Core) -> list[tuple[int, int]]:
    return [(run.spec.task_id, run.follows) for run in core.backend.runs]


def test_a_chain_holds_depth_tasks_each_behind_the_last() -> None:
    """With a depth of 3 a worker holds its running task and two queued behind it, each
    sent behind the one before it (so the worker keeps their order); as the head ends,
    the chain takes the next task behind its new last one."""
    core = _chains(depth=3, cpus=1.0, tasks=6)
    assert _sent(core) == [(1, 0), (2, 1), (3, 2)]
    assert core.tasks.records[4].state is QUEUED
    for task_id in range(1, 7):
        core.tasks.finished(Outcome(task_id, 0, values=[]))
        core.schedule_as_runtime()
        assert core.problems() == []
        if task_id < 6:
            assert core.tasks.records[task_id + 1].state is RUNNING
            assert core.free_cpus == 0.0
    assert _sent(core) == [(1, 0), (2, 1), (3, 2), (4, 3), (5, 4), (6, 5)]
    assert core.tasks.records == {} and core.free_cpus == 1.0


def test_a_follower_handed_back_from_the_middle_of_a_chain_is_bridged() -> None:
    """Cancelling the middle task of a chain: the worker hands it back and goes on to
    the task behind it, which now follows the head, and runs next."""
    core = _chains(depth=3, cpus=1.0, tasks=3)
    core.tasks.cancel(2, force=False, recursive=False)
    assert core.backend.cancels == [2]
    core.tasks.recalled(2, 0)
    core.schedule_as_runtime()
    assert 2 not in core.tasks.records  # ended as cancelled
    assert core.tasks.records[3].leader is core.tasks.records[1]
    assert core.problems() == []
    core.tasks.finished(Outcome(1, 0, values=[]))
    core.schedule_as_runtime()
    assert core.tasks.records[3].state is RUNNING and core.problems() == []
    core.tasks.finished(Outcome(3, 0, values=[]))
    assert core.tasks.records == {} and core.free_cpus == 1.0


def test_a_promoted_follower_handed_back_passes_its_cpu_to_the_task_behind_it() -> None:
    """The head ends while the task behind it is being cancelled: that one is promoted
    into the head's CPU, then handed back unstarted. The worker went on to the third
    task, which takes the CPU; nothing is freed twice or lost."""
    core = _chains(depth=3, cpus=1.0, tasks=3)
    core.tasks.cancel(2, force=False, recursive=False)
    core.tasks.finished(Outcome(1, 0, values=[]))
    core.schedule_as_runtime()
    assert core.tasks.records[2].state is RUNNING  # promoted, though being handed back
    core.tasks.recalled(2, 0)
    core.schedule_as_runtime()
    assert 2 not in core.tasks.records
    assert core.tasks.records[3].state is RUNNING
    assert core.free_cpus == 0.0 and core.problems() == []
    core.tasks.finished(Outcome(3, 0, values=[]))
    assert core.tasks.records == {} and core.free_cpus == 1.0


def test_a_head_blocking_in_get_sends_its_whole_chain_back() -> None:
    core = _chains(depth=3, cpus=1.0, tasks=3)
    core.tasks.blocked(1, True)
    assert core.backend.recalls == [2, 3]
    for task_id in (3, 2):
        core.tasks.recalled(task_id, 0)
    core.schedule_as_runtime()
    assert core.problems() == []
    assert core.tasks.records[2].state is RUNNING  # on the CPU task 1 lent
    assert core.tasks.records[3].leader is core.tasks.records[2]  # behind it, not 1
    assert core.backend.runs[-1].follows == 2


def test_a_free_cpu_recalls_one_cpus_worth_the_deepest_first() -> None:
    """Two chains of three on two CPUs; one chain runs out: only the last task of the
    other chain is asked back for the free CPU, not every task queued there."""
    core = _chains(depth=3, cpus=2.0, tasks=6)
    sent = _sent(core)
    assert sorted(follows for _, follows in sent).count(0) == 2  # two heads
    other_chain = [1, 3, 5] if (3, 1) in sent else [1, 4, 6]
    mine = [2] + [t for t in range(3, 7) if t not in other_chain]
    for task_id in mine:
        core.tasks.finished(Outcome(task_id, 0, values=[]))
        core.schedule_as_runtime()
    assert core.free_cpus == 1.0
    assert core.backend.recalls == [other_chain[-1]]
    assert core.problems() == []


def test_a_cpu_freed_on_another_node_recalls_a_task_queued_on_a_busy_one() -> None:
    """Two nodes of one CPU (a cluster): a chain on each. When one node's chain runs out,
    the task still queued on the other node's busy worker is asked back for it, rather
    than waiting there behind a long task while a CPU idles elsewhere."""
    core = Core()
    core.scheduler.add_node("other", {"CPU": 1.0})
    for task_id in range(1, 5):
        core.submit(task_id)
    sent = _sent(core)
    heads = [task for task, follows in sent if follows == 0]
    assert len(heads) == 2
    busy_chain = [heads[0]] + [t for t, f in sent if f == heads[0]]
    idle_chain = [heads[1]] + [t for t, f in sent if f == heads[1]]
    assert len(busy_chain) == len(idle_chain) == 2
    for task_id in idle_chain:
        core.tasks.finished(Outcome(task_id, 0, values=[]))
        core.schedule_as_runtime()
    assert core.backend.recalls == [busy_chain[-1]]
    assert core.problems() == []


def test_a_dead_worker_chain_is_retried_once_and_requeued_unstarted() -> None:
    """The worker dies with a chain on it: the running task uses a retry, the queued
    ones never started and use none; nothing is queued behind the dead chain."""
    core = _chains(depth=3, cpus=1.0, tasks=3)
    error = RuntimeError("worker died")
    core.tasks.crashed(1, 0, error)
    core.schedule_as_runtime()
    assert core.problems() == []
    for task_id in (2, 3):
        core.tasks.crashed(task_id, 0, error)
    core.schedule_as_runtime()
    assert core.problems() == []
    attempts = {t: core.tasks.records[t].spec.attempt for t in (1, 2, 3)}
    assert attempts == {1: 1, 2: 0, 3: 0}
    for task_id in (1, 2, 3):
        rec = core.tasks.records[task_id]
        core.tasks.finished(Outcome(task_id, rec.spec.attempt, values=[]))
        core.schedule_as_runtime()
        assert core.problems() == []
    assert core.tasks.records == {} and core.free_cpus == 1.0


def _deep(cpus: float = 1.0, depth: int = 8) -> Core:
    core = Core(cpus)
    core.backend.pipeline_depth = core.tasks.depth = depth
    return core


def _sent(core: Core, since: int = 0) -> list[tuple[int, int]]:
    return [(run.spec.task_id, run.follows) for run in core.backend.runs[since:]]


@pytest.mark.parametrize("how", ["blocked head", "worker died"])
def test_a_chain_handed_back_keeps_its_order(how: str) -> None:
    """Each task of a chain goes back to the front of the queue as it comes back, and
    behind the ones ahead of it that came back first: not in reverse."""
    core = _deep()
    for task_id in range(1, 7):
        core.submit(task_id)
    assert _sent(core) == [(1, 0), (2, 1), (3, 2), (4, 3), (5, 4), (6, 5)]
    sent = len(core.backend.runs)
    if how == "blocked head":
        core.tasks.blocked(1, True)  # 2..6 are asked back, and answer in that order
        for task_id in list(core.backend.recalls):
            core.tasks.recalled(task_id, 0)
    else:  # the backend reports each task of the dead worker, in the order it sent them
        for task_id in range(1, 7):
            core.tasks.crashed(task_id, 0, RuntimeError("worker died"))
    core.schedule()
    first = [task_id for task_id, _ in _sent(core, sent)]
    expected = [2, 3, 4, 5, 6] if how == "blocked head" else [1, 2, 3, 4, 5, 6]
    assert first[: len(expected)] == expected[: len(first)]
    assert first, "nothing ran again"
    assert core.problems() == []


def test_a_chain_answered_backwards_keeps_its_order() -> None:
    core = _deep()
    for task_id in range(1, 6):
        core.submit(task_id)
    core.tasks.blocked(1, True)
    for task_id in reversed(core.backend.recalls):  # answered deepest first
        core.tasks.recalled(task_id, 0)
    queued = [rec.spec.task_id for queue in core.scheduler._queues.values() for rec in queue]
    assert queued == [2, 3, 4, 5]


@pytest.mark.parametrize("how", ["cancelled", "recalled"])
def test_a_tail_on_its_way_back_takes_no_follower(how: str) -> None:
    core = _deep()
    core.submit(1)
    core.submit(2)  # queued behind 1: the chain's tail
    if how == "cancelled":
        core.tasks.cancel(2, force=False, recursive=False)
    else:
        core.tasks._recall(core.tasks.records[2])
    core.submit(3)
    assert (3, 2) not in _sent(core)
    assert core.problems() == []


def test_abandoning_a_chains_head_leaves_no_leader_behind() -> None:
    core = _deep()
    for task_id in (1, 2, 3):
        core.submit(task_id)
    core.tasks.abandon(1, RuntimeError("a core bug"), ())
    assert core.tasks.leaders == {}
    assert core.problems() == []
    core.submit(4)  # a pass over the leaders must not trip over the abandoned chain
    assert core.problems() == []


def test_a_task_whose_worker_may_retire_has_nothing_queued_behind_it() -> None:
    """A worker retires after ``max_calls`` runs: a task queued behind one would start
    at once on another worker, holding no CPU."""
    core = _deep()
    for task_id in (1, 2, 3):
        core.submit(task_id, max_calls=1)
    assert _sent(core) == [(1, 0)]
    assert core.problems() == []


def test_a_recall_on_its_way_keeps_its_cpu_promised_over_later_passes() -> None:
    """A recall is answered later (a message to a cluster's node): a CPU freed on one node
    asks back one task, and the passes that run before the answer arrives (here one for a
    task that waits for the busy node) ask back no more for that same CPU."""
    from actorlib.core.specs import NodeAffinitySchedulingStrategy

    core = _deep(cpus=1.0, depth=3)
    core.scheduler.add_node("other", {"CPU": 1.0})
    for task_id in range(1, 7):
        core.submit(task_id)
    sent = _sent(core)
    heads = [task for task, follows in sent if follows == 0]
    busy = [heads[0]]
    while any(f == busy[-1] for _, f in sent):
        busy.append(next(t for t, f in sent if f == busy[-1]))
    idle = [t for t, _ in sent if t not in busy]
    assert len(busy) == len(idle) == 3
    for task_id in idle:
        core.tasks.finished(Outcome(task_id, 0, values=[]))
        core.schedule_as_runtime()
    assert core.backend.recalls == [busy[-1]]
    # A pass before the answer: a task pinned to the busy node queues (a pass is due).
    busy_node = core.tasks.records[busy[0]].placement.node.node_id  # type: ignore[union-attr]
    spec = TaskSpec(100, CodeRef(1, "work", b""), Args(None), (), 0, {"CPU": 1.0},
                    name="pinned", scheduling_strategy=NodeAffinitySchedulingStrategy(busy_node))
    core.tasks.submit(spec)
    assert core.schedule_as_runtime()
    assert core.backend.recalls == [busy[-1]]  # not busy[-2] too: one CPU is free
    assert core.problems() == []


def test_a_queued_behind_task_stays_withdrawable_without_take_back() -> None:
    """A backend that cannot take a queued task back at once (a cluster: the task waits
    on another machine) queues no task behind another when the task is under a
    concurrency limit (an Executor's call): the Executor's ``cancel()`` of a PENDING
    future withdraws it, and must be able to while no worker has started it."""
    core = _deep(cpus=1.0, depth=3)
    core.backend.can_take_back = False
    core.tasks.takes_back = False  # as the cluster's head: Backend.takes_back
    for task_id in range(1, 4):
        core.submit(task_id, limit=("executor", 1))
    assert [run.follows for run in core.backend.runs] == [0]
    assert core.tasks.withdraw(3) and core.tasks.withdraw(2)
    # Without a limit (no Executor can withdraw it) it is queued behind as before.
    for task_id in range(4, 6):
        core.submit(task_id)
    assert core.problems() == []


def test_no_task_is_recalled_for_a_node_that_lacks_its_resources(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Tasks that need a resource only their node has are never asked back for the
    free CPUs of other nodes (they could not run there, and would only come back); and
    a pass looks at those nodes once per request, not once per task queued."""
    import actorlib.core.tasks as tasks_module

    core = _deep(cpus=1.0, depth=8)
    core.scheduler.nodes["node"].total["special"] = 1.0
    core.scheduler.nodes["node"].available["special"] = 1.0
    for i in range(20):
        core.scheduler.add_node(f"idle-{i}", {"CPU": 1.0})
    asked: list[str] = []
    has_room = tasks_module._has_room

    def counted(node: Any, *args: Any) -> bool:
        asked.append(node.node_id)
        return has_room(node, *args)

    monkeypatch.setattr(tasks_module, "_has_room", counted)
    for task_id in range(1, 9):
        spec = TaskSpec(task_id, CodeRef(1, "work", b""), Args(None), (), 0,
                        {"CPU": 1.0, "special": 1.0}, name=f"special-{task_id}")
        core.tasks.submit(spec)
        core.schedule()
    assert [run.follows for run in core.backend.runs] == [0, 1, 2, 3, 4, 5, 6, 7]
    asked.clear()
    core.schedule()  # a pass: 20 nodes with a free CPU, none with "special"
    assert core.backend.recalls == []
    assert len(asked) <= 7 + 20  # each follower's own node, then each other node once
    assert core.problems() == []


def test_a_jobs_end_passes_force_on_to_a_task_queued_behind_another() -> None:
    """A job ends (its driver is gone): its task queued behind another job's is
    cancelled with force, which the backend gets, so that it stops the task forcibly if
    it has started meanwhile (the outcome of the one ahead on its way); unstarted, the
    backend takes it back and the task ahead runs on. Before, the force was dropped: a
    task that swallowed the plain cancel's interrupt ran on for a driver that was gone."""
    core = Core()
    core.submit(1)
    core.submit(2)
    assert [run.follows for run in core.backend.runs] == [0, 1]
    core.tasks.records[2].job = 7  # another driver's (its job: its driver's id prefix)
    core.tasks.end_job(7)
    assert (core.backend.cancels, core.backend.forced) == ([2], [True])
    core.tasks.recalled(2, 0)  # handed back unstarted: ends as cancelled
    assert 2 not in core.tasks.records and core.tasks.records[1].state is RUNNING
    assert core.problems() == []


class _Claims:
    def __init__(self, answer: bool | None) -> None:
        self.answer = answer

    def take(self, task_id: int, wait: bool = True) -> bool | None:
        return self.answer


class _Worker:
    """What ``ProcessBackend.cancel`` reads of a worker process, and what it does to it."""

    def __init__(self, answer: bool | None, running: list[int]) -> None:
        self.claims = _Claims(answer)
        self.running = dict.fromkeys(running, 0)
        self.blocked: set[int] = set()
        self.private: set[int] = set()
        self.idle = self.retired = self.killed = False
        self.sent: list[Any] = []

    def kill(self) -> None:
        self.killed = True

    def send_urgent(self, message: Any) -> None:
        self.sent.append(message)


@pytest.mark.parametrize(("answer", "first", "force", "expected"), [
    (True, False, True, "handed back"),  # still queued: the task ahead runs on
    (True, False, False, "handed back"),
    (False, False, True, "killed"),  # the worker claimed it: it runs (started meanwhile)
    (False, True, True, "killed"),  # the running task (never queued)
    (None, True, True, "killed"),  # the running one, while the worker claims the next
    (None, False, True, "asked, forced"),  # the worker claims now, maybe the one ahead
    (False, True, False, "asked"),
])
def test_the_process_backend_stops_a_queued_task_forcibly_only_once_it_runs(
    answer: bool | None, first: bool, force: bool, expected: str
) -> None:
    """``ProcessBackend.cancel`` of a task on a worker: taken back while still queued
    (forced or not: killing the worker would kill the task ahead), the worker killed
    only for a forced cancel of a task that runs there, else asked."""
    from actorlib.backends.process.backend import ProcessBackend

    backend = ProcessBackend()
    recalled: list[int] = []
    backend.events = type("Events", (), {  # type: ignore[assignment]
        "task_recalled": lambda self, task_id, attempt: recalled.append(task_id)})()
    worker = _Worker(answer, [7, 1] if first else [1, 7])
    backend._task_worker[7] = worker  # type: ignore[assignment]
    backend.cancel(7, force=force)
    got = (
        "handed back" if recalled == [7] else "killed" if worker.killed
        else f"asked{', forced' if worker.sent[0].force else ''}" if worker.sent else "?"
    )
    assert got == expected
