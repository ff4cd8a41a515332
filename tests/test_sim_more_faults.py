"""The ``sim`` backend's message, node and object faults (``delay_reply``, ``lose_node``,
``lose_object``): where each lands, its name in the trace, what the run then does (the
reply arrives late, the node's work is retried elsewhere, a lost object is rebuilt from
its lineage or fails with ``ObjectLostError``), and that each replays from its trace."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from test_sim_faults import FaultWhenever

import actorlib
from actorlib.backends import sim as sim_backend
from actorlib.backends.sim import decode_trace, encode_trace
from actorlib.backends.sim.choices import trace_nodes
from actorlib.exceptions import ObjectLostError
from actorlib.testing import FaultPlan, Schedule, faults, schedules, simulate
from actorlib.util.scheduling_strategies import NodeAffinitySchedulingStrategy

BIG = 100_000  # bytes: kept in a node's store (64 KiB and up), so it can be lost


def _faulty(after: int = 0, max_faults: int = 1, **kinds: bool) -> Schedule:
    return Schedule(FaultWhenever(after), FaultPlan(**kinds, max_faults=max_faults))  # type: ignore[arg-type]


@actorlib.remote(num_cpus=0)
def size(x):
    return len(x)


@actorlib.remote(num_cpus=0, max_retries=2)
def big(n):
    return np.arange(n, dtype=np.uint8)


@actorlib.remote(num_cpus=0, max_retries=0)
def big_once(n):
    return np.arange(n, dtype=np.uint8)


# --------------------------------------------------------------------------- delay_reply


def test_a_delayed_reply_arrives_after_later_steps_with_its_result():
    with simulate(_faulty(delay_reply=True)) as run:
        assert actorlib.get([size.remote("ab"), size.remote("abc")]) == [2, 3]
    assert run.faults_injected == 1
    log = run.log
    delayed = log.index("reply of task size#1 delayed")
    assert log.index("task size#2 starts") > delayed, log
    assert log.index("reply of task size#1 delivered") > log.index("task size#2 starts"), log


@actorlib.remote(num_cpus=0)
class Counter:
    def __init__(self):
        self.n = 0

    def incr(self):
        self.n += 1
        return self.n


def test_a_delayed_call_reply_lets_the_actor_go_on_and_keeps_each_result():
    with simulate(_faulty(delay_reply=True)) as run:
        counter = Counter.remote()
        assert actorlib.get([counter.incr.remote() for _ in range(3)]) == [1, 2, 3]
    assert "reply of Counter#1.incr to driver delayed" in run.log, run.log
    delivered = run.log.index("reply of Counter#1.incr to driver delivered")
    # The actor ran the next call while the first reply was still on its way.
    assert run.log.index("Counter#1.incr from driver", delivered - 1) < delivered, run.log


def test_with_no_fault_budget_no_reply_is_delayed():
    with simulate(_faulty(delay_reply=True, max_faults=0)) as run:
        assert actorlib.get([size.remote("a") for _ in range(5)]) == [1] * 5
    assert not any("delayed" in step for step in run.log)


# --------------------------------------------------------------------------- lose_object


def test_a_lost_object_made_by_a_task_is_rebuilt_from_its_lineage():
    with simulate(_faulty(lose_object=True)) as run:
        ref = big.remote(BIG)
        assert actorlib.get(size.remote(ref)) == BIG
        value = actorlib.get(ref)
        assert len(value) == BIG and value[BIG - 1] == (BIG - 1) % 256
    assert "object 1 (stored by big#1 on sim-node-0) lost" in run.log, run.log
    assert run.log.count("task big#1 starts") == 2, run.log  # run again to rebuild it


def test_a_lost_object_that_cannot_be_rebuilt_raises_object_lost_error():
    with simulate(_faulty(lose_object=True)) as run:
        ref = big_once.remote(BIG)  # max_retries=0: no lineage
        assert actorlib.get(size.remote(ref)) == BIG
        with pytest.raises(ObjectLostError, match="was lost: the simulator lost it"):
            actorlib.get(ref)
    assert "object 1 (stored by big_once#1 on sim-node-0) lost" in run.log, run.log


def test_a_lost_put_raises_object_lost_error():
    with simulate(_faulty(lose_object=True)) as run:
        ref = actorlib.put(np.zeros(BIG, dtype=np.uint8))
        assert actorlib.get(size.remote("abc")) == 3  # a step at which the loss may land
        with pytest.raises(ObjectLostError):
            actorlib.get(ref)
    assert "object 1 (stored by driver on sim-node-0) lost" in run.log, run.log


def test_small_values_travel_inline_and_are_never_lost():
    with simulate(_faulty(lose_object=True)) as run:
        ref = actorlib.put(b"small")
        assert actorlib.get([size.remote(ref) for _ in range(3)]) == [5, 5, 5]
        assert actorlib.get(ref) == b"small"
    assert run.faults_injected == 0


# --------------------------------------------------------------------------- lose_node


ON_1 = NodeAffinitySchedulingStrategy("sim-node-1", soft=True)  # there while it lives


class FaultAfter:
    """A choice source: the oldest step, until a step named ``name`` was taken; then a
    fault at the first point one may land."""

    def __init__(self, name: str) -> None:
        self.name = name

    def choose(self, n: int, faults: int = 0) -> int:
        backend = sim_backend.current()
        assert backend is not None
        return n if faults and self.name in backend.log else 0

    def describe(self) -> str:
        return f"FaultAfter({self.name!r})"


def _after(name: str, **kinds: bool) -> Schedule:
    return Schedule(FaultAfter(name), FaultPlan(**kinds, max_faults=1))  # type: ignore[arg-type]


@actorlib.remote(num_cpus=1, max_retries=2)
def where_via(x):
    """Waits in get (so its node may be lost meanwhile), then says where it ran."""
    actorlib.get(size.remote("x"))
    return x, actorlib.get_runtime_context().get_node_id()


@actorlib.remote(num_cpus=1, max_restarts=1, max_task_retries=1)
class Where:
    def node(self):
        return actorlib.get_runtime_context().get_node_id()


def test_losing_a_node_retries_its_paused_task_on_another():
    with simulate(_after("task where_via#1 starts", lose_node=True), nodes=2, num_cpus=1) as run:
        assert len(actorlib.nodes()) == 2
        ref = where_via.options(scheduling_strategy=ON_1).remote(7)
        assert actorlib.get(ref) == (7, "sim-node-0")
        assert [n["NodeID"] for n in actorlib.nodes() if n["Alive"]] == ["sim-node-0"]
    assert run.log[:2] == ["task where_via#1 starts", "node sim-node-1 lost (its workers died)"]
    assert "task where_via#1 starts (attempt 2)" in run.log, run.log


def test_losing_a_node_restarts_its_actors_on_another():
    with simulate(_after("Where#1.__init__", lose_node=True), nodes=2, num_cpus=1) as run:
        where = Where.options(scheduling_strategy=ON_1).remote()
        assert actorlib.get(where.node.remote()) == "sim-node-0"
    assert run.log[:3] == [
        "Where#1.__init__", "node sim-node-1 lost (its workers died)", "Where#1.__init__ (restart)",
    ], run.log


def test_losing_a_node_loses_the_objects_its_store_held():
    with simulate(_after("task big_once#2 starts", lose_node=True), nodes=2, num_cpus=1) as run:
        on_0 = big_once.remote(BIG)
        on_1 = big_once.options(scheduling_strategy=ON_1).remote(BIG)
        assert actorlib.get(size.remote("abc")) == 3  # steps at which the loss may land
        assert len(actorlib.get(on_0)) == BIG
        with pytest.raises(ObjectLostError, match="sim-node-1"):
            actorlib.get(on_1)
    assert "node sim-node-1 lost (its workers died)" in run.log, run.log


def test_the_driver_node_is_never_lost_and_one_node_offers_no_node_loss():
    with simulate(_faulty(lose_node=True)) as run:
        assert actorlib.get([where_via.remote(i) for i in range(3)]) == [
            (i, "sim-node-0") for i in range(3)
        ]
    assert run.faults_injected == 0


# --------------------------------------------------------------------------- traces


def test_traces_name_the_new_faults_and_the_node_count():
    plan = FaultPlan(delay_reply=True, lose_node=True, lose_object=True, max_faults=2)
    trace = encode_trace([0, 2, 0], plan, nodes=3)
    assert trace == "sim1:mno2x3:0.2.0"
    assert decode_trace(trace) == ([0, 2, 0], plan, False)
    assert trace_nodes(trace) == 3 and trace_nodes("sim1:k1:1") == 1
    with pytest.raises(ValueError, match="node count"):
        trace_nodes("sim1:kx0:1")


def test_a_run_with_node_and_object_faults_replays_step_for_step():
    def program():
        refs = [big.remote(BIG) for _ in range(2)]
        sizes = actorlib.get([size.remote(r) for r in refs])
        return sizes, [len(v) for v in actorlib.get(refs)]

    plan = FaultPlan(delay_reply=True, lose_node=True, lose_object=True, max_faults=3)
    from actorlib.backends.sim import RandomChoices

    landed = 0
    for seed in range(6):
        with simulate(Schedule(RandomChoices(seed, fault_rate=0.5), plan), nodes=2) as first:
            assert program() == ([BIG, BIG], [BIG, BIG])
        assert first.trace.startswith("sim1:mno3x2:"), first.trace
        landed += first.faults_injected
        with simulate(trace=first.trace) as again:  # the node count comes from the trace
            assert program() == ([BIG, BIG], [BIG, BIG])
        assert again.log == first.log
    assert landed >= 3


def test_bad_node_counts_are_refused_before_anything_starts():
    for bad in (0, -1, 1.5, "2"):
        with pytest.raises(ValueError, match="nodes"), simulate(nodes=bad):  # type: ignore[arg-type]
            pass
    assert not actorlib.is_initialized()


def test_simulate_refuses_a_function_for_its_schedule_at_once():
    """``simulate(body)`` (as ``search(body)`` is written) must not run nothing and pass."""
    ran = []
    with pytest.raises(TypeError, match=r"with simulate\(\): body\(\)"):
        simulate(lambda: ran.append(1))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="takes a Schedule"):
        simulate("sim1:0")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="preempt"):
        simulate(preempt=-1)  # checked when called, not when the ``with`` starts
    assert not ran
    assert not actorlib.is_initialized()


# --------------------------------------------------------------------------- hypothesis


@actorlib.remote(num_cpus=1, max_retries=3)
def doubled_big(i):
    data = actorlib.get(big.remote(BIG))
    return 2 * i + int(data[1]) - 1


@given(schedule=schedules(faults=faults(delay_reply=True, lose_node=True, lose_object=True,
                                        max_faults=3)))
@settings(max_examples=20, deadline=None)
def test_with_message_node_and_object_faults_every_result_arrives_once(schedule):
    with simulate(schedule, nodes=2, num_cpus=1):
        assert actorlib.get([doubled_big.remote(i) for i in range(3)]) == [0, 2, 4]
