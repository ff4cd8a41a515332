"""The deterministic ``sim`` backend and ``actorlib.testing``: exhaustiveness, determinism,
faults, virtual time, deadlock and budget checks, and the bank/cache races of
examples/testing_actors.py found, shrunk and replayed."""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings

import actorlib
from actorlib.backends.sim import decode_trace, encode_trace
from actorlib.exceptions import ActorDiedError, GetTimeoutError, TaskCancelledError
from actorlib.testing import (
    DeadlockError,
    FaultPlan,
    InvariantViolation,
    StepBudgetExceeded,
    exhaust,
    explore,
    faults,
    invariant,
    peek,
    schedules,
    search,
    simulate,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
import testing_actors


@actorlib.remote(num_cpus=0)
class Log:
    def __init__(self):
        self.entries = []

    def record(self, caller, seq):
        self.entries.append((caller, seq))
        return seq

    def read(self):
        return list(self.entries)


@actorlib.remote(num_cpus=0)
def caller(log, name, calls):
    return actorlib.get([log.record.remote(name, i) for i in range(calls)])


def _interleavings(a: list, b: list) -> set[tuple]:
    out = set()
    n = len(a) + len(b)
    for positions in itertools.combinations(range(n), len(a)):
        ia, ib, order = iter(a), iter(b), []
        for i in range(n):
            order.append(next(ia) if i in positions else next(ib))
        out.add(tuple(order))
    return out


# --------------------------------------------------------------------------- exploration


def test_two_callers_three_calls_reach_exactly_the_allowed_orders():
    """Every schedule, depth first: the orders seen are exactly the 20 interleavings that
    keep each caller's order, and no other."""

    def body():
        log = Log.remote()
        actorlib.get([caller.remote(log, "a", 3), caller.remote(log, "b", 3)])
        return tuple(actorlib.get(log.read.remote()))

    result = exhaust(body, max_runs=5000)
    assert result.failure is None, result.failure
    assert result.complete, f"not exhausted in {result.runs} runs"
    allowed = _interleavings([("a", i) for i in range(3)], [("b", i) for i in range(3)])
    assert len(allowed) == 20
    assert set(result.results) == allowed
    print(f"{result.runs} schedules, {len(set(result.results))} orders")


def test_random_schedules_reach_every_allowed_order_and_no_other():
    seen = set()
    for seed in range(300):
        with simulate(seed=seed):
            log = Log.remote()
            actorlib.get([caller.remote(log, "a", 3), caller.remote(log, "b", 3)])
            seen.add(tuple(actorlib.get(log.read.remote())))
    allowed = _interleavings([("a", i) for i in range(3)], [("b", i) for i in range(3)])
    assert seen <= allowed
    assert seen == allowed


@given(schedule=schedules())
@settings(max_examples=30, deadline=None)
def test_hypothesis_schedules_keep_per_caller_order(schedule):
    with simulate(schedule):
        log = Log.remote()
        actorlib.get([caller.remote(log, "a", 3), caller.remote(log, "b", 3)])
        entries = actorlib.get(log.read.remote())
    for name in "ab":
        assert [s for c, s in entries if c == name] == [0, 1, 2]


# --------------------------------------------------------------------------- determinism


@actorlib.remote(num_cpus=0)
class Sleepy:
    def __init__(self):
        self.events = []

    async def work(self, i, delay):
        self.events.append(("start", i))
        await asyncio.sleep(delay)
        self.events.append(("end", i))
        return i

    def read(self):
        return list(self.events)


@actorlib.remote(num_cpus=0)
def square_via(log, x):
    actorlib.get(log.record.remote("sq", x))
    return x * x


def _mixed_program():
    log = Log.remote()
    sleepy = Sleepy.remote()
    refs = [square_via.remote(log, i) for i in range(4)]
    refs += [sleepy.work.remote(i, 0.5 * (3 - i)) for i in range(3)]
    values = actorlib.get(refs)
    return values, actorlib.get(log.read.remote()), actorlib.get(sleepy.read.remote())


def test_the_same_trace_replays_the_same_steps_and_results_100_times():
    with simulate(seed=7) as first:
        expected = _mixed_program()
    steps, trace, now = first.log, first.trace, first.now
    assert len(first.choices) > 5
    for _ in range(100):
        with simulate(trace=trace) as again:
            assert _mixed_program() == expected
        assert again.log == steps
        assert again.now == now


def test_trace_encoding_round_trips():
    plan = FaultPlan(kill_worker=True, drop_before_reply=True, max_faults=2)
    choices = [0, 0, 0, 3, 0, 12, 1, 0, 0]
    text = encode_trace(choices, plan)
    assert text == "sim1:kd2:z3.3.0.12.1.z2"
    assert decode_trace(text) == (choices, plan, False)


# --------------------------------------------------------------------------- faults


@actorlib.remote(num_cpus=0, max_retries=3)
def identity(x):
    return x


@actorlib.remote(num_cpus=0, max_retries=3)
def doubled_via(x):
    return 2 * actorlib.get(identity.remote(x))


@given(schedule=schedules(faults=faults(kill_worker=True, drop_before_reply=True, max_faults=3)))
@settings(max_examples=40, deadline=None)
def test_killed_workers_are_retried_and_every_result_arrives(schedule):
    with simulate(schedule) as run:
        refs = [doubled_via.remote(i) for i in range(4)]
        assert actorlib.get(refs) == [0, 2, 4, 6]
    retried = [step for step in run.log if "(attempt" in step]
    assert len(retried) <= run.faults_injected


def test_faults_do_land_and_are_retried():
    landed = 0
    for seed in range(40):
        from actorlib.backends.sim import RandomChoices
        from actorlib.testing import Schedule

        schedule = Schedule(RandomChoices(seed, fault_rate=0.3),
                            FaultPlan(kill_worker=True, drop_before_reply=True, max_faults=3))
        with simulate(schedule) as run:
            assert actorlib.get([doubled_via.remote(i) for i in range(4)]) == [0, 2, 4, 6]
        landed += run.faults_injected
        if run.faults_injected:
            assert any("(attempt 2)" in step for step in run.log)
    assert landed >= 10


class _FaultWhenever:
    """A choice source that injects a fault whenever one may land."""

    def __init__(self):
        self.rng = __import__("random").Random(3)

    def choose(self, n, faults=0):
        return n if faults else self.rng.randrange(n)

    def describe(self):
        return "FaultWhenever"


@actorlib.remote(num_cpus=0, max_restarts=0)
class Fragile:
    def __init__(self):
        self.n = 0

    def incr(self):
        self.n += 1
        return self.n


def test_calls_after_an_actor_kill_fail_with_actor_died_error_without_restarts():
    from actorlib.testing import Schedule

    schedule = Schedule(_FaultWhenever(), FaultPlan(restart_actor=True))
    with simulate(schedule) as run:
        a = Fragile.remote()
        outcomes = []
        for ref in [a.incr.remote() for _ in range(4)]:
            try:
                outcomes.append(actorlib.get(ref))
            except ActorDiedError:
                outcomes.append("died")
        with pytest.raises(ActorDiedError):
            actorlib.get(a.incr.remote())  # submitted after the kill
    ok = [o for o in outcomes if o != "died"]
    assert outcomes == ok + ["died"] * (4 - len(ok)), outcomes  # never a success after
    assert ok == list(range(1, len(ok) + 1))
    assert run.faults_injected == 1
    assert any("killed" in step for step in run.log)


@actorlib.remote(num_cpus=0, max_restarts=2, max_task_retries=-1)
class Resilient:
    def __init__(self):
        self.seen = []

    def add(self, caller, seq):
        self.seen.append((caller, seq))
        return seq


_runs = itertools.count()  # every run of a caller task, retries included (one process)


@actorlib.remote(num_cpus=0)
def add_in_order(actor, name, calls):
    """A retried caller (its worker lost before it replied) calls again from 0: the order
    holds per run of the caller, so each run tags its calls."""
    run = next(_runs)
    got = actorlib.get([actor.add.remote((name, run), i) for i in range(calls)])
    return got


@given(schedule=schedules(faults=faults(restart_actor=True, drop_before_reply=True,
                                        max_faults=2)))
@settings(max_examples=40, deadline=None)
def test_restarted_actors_retry_calls_and_keep_each_callers_order(schedule):
    with simulate(schedule) as run:
        r = Resilient.remote()
        results = actorlib.get([add_in_order.remote(r, "a", 3), add_in_order.remote(r, "b", 3)])
        assert results == [[0, 1, 2], [0, 1, 2]]
        seen = peek(r).seen  # this incarnation's: calls since the last restart
    for caller in {c for c, _ in seen}:
        mine = [s for c, s in seen if c == caller]
        assert mine == sorted(mine), f"{caller} out of order after {run.faults_injected} faults"


# --------------------------------------------------------------------------- time, cancel


@actorlib.remote(num_cpus=0)
class Timer:
    async def wait(self, seconds):
        await asyncio.sleep(seconds)
        return seconds

    async def with_timeout(self, seconds, limit):
        try:
            return await asyncio.wait_for(asyncio.sleep(seconds, "done"), limit)
        except asyncio.TimeoutError:
            return "timed out"


def test_virtual_time_makes_long_sleeps_instant():
    started = time.perf_counter()
    with simulate() as run:
        t = Timer.remote()
        assert actorlib.get([t.wait.remote(3600), t.wait.remote(7200)]) == [3600, 7200]
        assert actorlib.get(t.with_timeout.remote(100, 5)) == "timed out"
        assert actorlib.get(t.with_timeout.remote(1, 5)) == "done"
        with pytest.raises(GetTimeoutError):
            actorlib.get(t.wait.remote(1000), timeout=10)
    assert run.now >= 7200
    assert time.perf_counter() - started < 5


@actorlib.remote
def square(x):
    return x * x


def test_a_program_waiting_on_something_else_is_told_why_nothing_runs(monkeypatch, caplog):
    """Only a wait in get/wait runs steps (the idle driver is off): a driver that waits on
    something else with work ready hears why, once, instead of hanging without a word."""
    from actorlib.backends.sim import backend as sim_backend

    monkeypatch.setattr(sim_backend, "STALL_WARN_S", 0.3)
    monkeypatch.setattr(sim_backend, "STALL_LOOK_S", 0.05)
    with simulate():
        assert actorlib.get(square.remote(2)) == 4
        time.sleep(0.6)  # nothing is left to run: nothing to say
        assert "ACTORLIB_SIM_IDLE_DRIVE" not in caplog.text
        ref = square.remote(3)
        time.sleep(0.8)  # the driver waits on something else
        assert caplog.text.count("ACTORLIB_SIM_IDLE_DRIVE=0.01") == 1
        assert actorlib.get(ref) == 9  # driven again, the run goes on
        assert "ACTORLIB_SIM_PREEMPT" not in caplog.text
        assert actorlib.get(naps.remote(0.8)) == 0.8  # a step that holds the run
        assert caplog.text.count("ACTORLIB_SIM_PREEMPT=0.05") == 1
        assert "'task naps#" in caplog.text


@actorlib.remote
def naps(seconds):
    time.sleep(seconds)  # real time: the simulation waits for the step to end
    return seconds


@actorlib.remote(num_cpus=0)
class Sleeper:
    async def sleep(self, seconds):
        await asyncio.sleep(seconds)
        return seconds


@pytest.mark.timeout(30)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_as_completed_drives_the_run_sync_and_async(seed):
    """``as_completed`` waits through the simulator's wait (it used to wait on a queue of
    its own, which no step ever fed without the idle driver): both ways, and its timeout
    passes in virtual time."""
    with simulate(seed=seed) as run:
        refs = [square.remote(i) for i in range(8)]
        assert sorted(actorlib.get(r) for r in actorlib.as_completed(refs)) == [
            i * i for i in range(8)
        ]

        async def both_ways():
            refs = [square.remote(i) for i in range(5)]
            return sorted([actorlib.get(r) async for r in actorlib.as_completed(refs)])

        assert asyncio.run(both_ways()) == [i * i for i in range(5)]
        s = Sleeper.remote()
        got = []
        with pytest.raises(GetTimeoutError, match="timed out after 10 s"):
            for ref in actorlib.as_completed([s.sleep.remote(100), s.sleep.remote(1)],
                                             timeout=10):
                got.append(actorlib.get(ref))
        assert got == [1]
        assert 10 <= run.now < 100


@actorlib.remote(num_cpus=0)
def waits_on(ref_list):
    return actorlib.get(ref_list[0])


@actorlib.remote(num_cpus=0)
class Gate:
    async def hold(self):
        await asyncio.sleep(10)
        return "late"


def test_cancel_of_a_task_blocked_in_get_and_of_a_queued_task():
    with simulate():
        g = Gate.remote()
        blocked = waits_on.remote([g.hold.remote()])
        queued = waits_on.remote([g.hold.remote()])
        actorlib.cancel(queued)
        with pytest.raises(TaskCancelledError):
            actorlib.get(queued)
        actorlib.wait([blocked], timeout=1)  # let it start and block
        actorlib.cancel(blocked)
        with pytest.raises(TaskCancelledError):
            actorlib.get(blocked)


# --------------------------------------------------------------------------- checks


@actorlib.remote(num_cpus=0)
class SelfCaller:
    def outer(self, me):
        return actorlib.get(me.inner.remote())

    def inner(self):
        return 1


def test_a_deadlock_is_reported_with_who_waits_for_what():
    with pytest.raises(DeadlockError) as info, simulate():
        a = SelfCaller.remote()
        actorlib.get(a.outer.remote(a))
    message = str(info.value)
    assert "SelfCaller#1.outer from driver waits for SelfCaller#1.inner" in message
    assert info.value.trace.startswith("sim1:")


@actorlib.remote(num_cpus=0)
class Spinner:
    async def spin(self):
        while True:
            await asyncio.sleep(0)


def test_a_livelock_hits_the_step_budget():
    with pytest.raises(StepBudgetExceeded), simulate(max_steps=500):
        actorlib.get(Spinner.remote().spin.remote())


def test_an_invariant_fails_at_the_step_that_breaks_it():
    with pytest.raises(InvariantViolation) as info, simulate():
        log = Log.remote()
        invariant(lambda: len(peek(log).entries) < 2)
        actorlib.get([log.record.remote("x", i) for i in range(3)])
    assert info.value.steps[-1] == "Log#1.record from driver"
    assert "replay with" in str(info.value)


# --------------------------------------------------------------------------- the examples


@pytest.mark.parametrize("scenario", ["bank", "cache"])
def test_the_example_races_are_found_shrunk_and_replayed(scenario):
    body = testing_actors.SCENARIOS[scenario]
    started = time.perf_counter()
    # Usually found within 150 examples; the margin keeps a rare slow search from failing.
    error, _ = testing_actors.hunt(scenario, max_examples=2000)
    elapsed = time.perf_counter() - started
    steps, trace = error.sim_steps, error.sim_trace
    limit = {"bank": 36, "cache": 16}[scenario]
    assert len(steps) <= limit, steps
    again, message = testing_actors.replay_steps(scenario, trace)
    assert again == steps
    assert message == str(error).splitlines()[0]
    found = search(body, iterations=200)
    assert found is not None
    print(f"{scenario}: hypothesis found+shrank in {elapsed:.2f}s to {len(steps)} steps "
          f"({len(decode_trace(trace)[0])} choices); random search found it after "
          f"{found.runs} runs, {found.seconds:.2f}s")


def test_the_bank_invariant_names_the_overdraft_step():
    found = search(lambda: testing_actors.bank_day(check_invariant=True), iterations=200)
    assert found is not None
    assert isinstance(found.error, InvariantViolation)
    assert found.error.steps[-1] == "Account#1.withdraw from transfer#2" or (
        found.error.steps[-1].startswith("Account#1.withdraw")
    )


@explore(max_examples=20)
def test_explore_runs_a_correct_program_clean():
    log = Log.remote()
    actorlib.get([caller.remote(log, "a", 2), caller.remote(log, "b", 2)])
    assert len(actorlib.get(log.read.remote())) == 4


@actorlib.remote
class Notes:
    def __init__(self) -> None:
        self.events: list[str] = []

    def note(self, event: str) -> int:
        self.events.append(event)
        return len(self.events)

    def count(self, event: str) -> int:
        return self.events.count(event)


@actorlib.remote
class CleansUp:
    async def work(self, notes: Any) -> str:
        await notes.note.remote("started")
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            await notes.note.remote("cancelled")  # an actor call from the cancel handler
            raise
        return "finished"


@pytest.mark.parametrize("seed", range(3))
def test_a_cancelled_async_call_may_await_another_call_while_it_unwinds(seed: int) -> None:
    """The call its cancel handler makes runs and its result arrives: before, it sat in
    the core's queue, unseen by the simulator, and the cancelled call never ended."""
    with simulate(seed=seed):
        notes = Notes.remote()
        ref = CleansUp.remote().work.remote(notes)
        while actorlib.get(notes.count.remote("started")) < 1:
            pass
        actorlib.cancel(ref)
        with pytest.raises(TaskCancelledError):
            actorlib.get(ref, timeout=100)
        assert actorlib.get(notes.count.remote("cancelled")) == 1
