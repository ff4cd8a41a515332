"""Traces recorded by an earlier simulator still replay to the same steps.

A trace is only choices: indices into the list of runnable steps, oldest first. Whatever
makes a step cheaper (how the list is built, how the age of each step is kept, which
choices skip the choice source) must leave that list, its order and every step's name
as they were, or every trace a user saved (a failure's printout, hypothesis' example
database) would replay another run. The cases below were recorded before the steps were
made cheaper (issue 20), from seeded random and PCT schedules and a fault plan, over a
program with every common kind of step: tasks that call an actor and pause in ``get``,
an async actor's coroutines sleeping in virtual time, a streaming generator, and, with
the faults, killed workers, a killed actor and delayed replies. Each must replay to the
same steps (a digest of their names), results and virtual time, and the same seeded
schedule must still make the same choices.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import pytest

import actorlib
from actorlib.backends.sim import RandomChoices
from actorlib.backends.sim.choices import PCTChoices
from actorlib.testing import FaultPlan, Schedule, simulate


@actorlib.remote(num_cpus=0, max_restarts=2, max_task_retries=2)
class Tally:
    def __init__(self):
        self.n = 0

    def add(self):
        self.n += 1
        return self.n


@actorlib.remote(num_cpus=0, max_concurrency=3)
class Napper:
    async def nap(self, seconds, tally):
        await asyncio.sleep(seconds)
        n = await tally.add.remote()
        await asyncio.sleep(0)
        return n


@actorlib.remote(num_cpus=1, max_retries=3)
def adder(tally, times):
    return actorlib.get([tally.add.remote() for _ in range(times)])


@actorlib.remote(num_cpus=1, num_returns="streaming")
def count(n):
    yield from range(n)


def program() -> tuple[list[Any], list[int]]:
    tally, napper = Tally.remote(), Napper.remote()
    refs = [adder.remote(tally, 2) for _ in range(3)]
    refs += [napper.nap.remote(s, tally) for s in (0.5, 0.1, 0.0)]
    items = [actorlib.get(r) for r in count.remote(3)]
    out: list[Any] = []
    for ref in refs:
        try:
            out.append(actorlib.get(ref))
        except actorlib.exceptions.ActorDiedError:
            out.append("died")
    return out, items


PLAN = FaultPlan(kill_worker=True, restart_actor=True, delay_reply=True, max_faults=2)

#: (schedule, seed, trace, steps, digest of the step names, virtual time, results),
#: recorded by the simulator before issue 20's changes.
RECORDED = [
    # The random and pct cases were recorded again when an actor call made by an async
    # actor's coroutine step (``tally.add`` after ``nap``'s sleep) stopped waiting in
    # the core's queue for a later step to notice it (a cancel handler's call waited
    # forever): the same steps, results and time, and fewer choices near the end.
    ("random", 0, "sim1::3.3.0.2.3.3.1.3.2.1.4.1.2.1.0.4.2.1.1.z2.2.1.2.0", 39,
     "8145d4b167b17dbe", 0.5, [[2, 4], [6, 7], [3, 5], 9, 8, 1]),
    ("random", 1, "sim1::1.0.2.0.3.3.3.3.1.0.3.0.3.3.4.0.2.1.2.2.1.0.1.0", 39,
     "b13e7949341a4ab0", 0.5, [[1, 3], [5, 6], [2, 4], 9, 8, 7]),
    ("random", 2, "sim1::z3.2.1.5.5.2.2.4.1.4.0.4.1.3.3.2.2.1.1.z2.1.1.1", 38,
     "858a1eeb4f36ac64", 0.5, [[5, 6], [3, 4], [1, 2], 9, 8, 7]),
    ("pct", 0, "sim1::1.2.3.2.3.1.1.5.5.5.5.5.1.2.3.3.1.2.2.2.2.2.1.1.1", 41,
     "2650a35efe58838f", 0.5, [[6, 7], [2, 3], [4, 5], 9, 8, 1]),
    ("pct", 1, "sim1::2.2.2.2.2.2.2.2.2.1.2.2.1.2.2.3.4.1.1.0.2.2.2.0.1", 38,
     "bb9a34ccc43eb8a0", 0.5, [[5, 6], [2, 3], [4, 7], 9, 8, 1]),
    ("pct", 2, "sim1::3.2.0.1.3.3.3.3.3.3.1.2.4.2.3.2.3.3.0.2.2.0.2.1.0.1", 39,
     "ac45650e0df2a9b9", 0.5, [[5, 6], [3, 4], [2, 7], 9, 8, 1]),
    ("faults", 0, "sim1:kam2:3.3.4.1.1.1.1.0.4.2.1.2.0.5.0.2.3.0.1.1.1.0.2.1.1.1", 28,
     "ec5328c6eeda7164", 0.0, [[4, 6], [7, 8], [2, 3], "died", "died", "died"]),
    ("faults", 1, "sim1:kam2:1.0.5.3.1.5.3.3.4.0.5.3.2.5.1.4.0.2.z4.3.1.3.0.1.1.1.2.0.1.0",
     46, "b11e321d254f47ba", 0.5, [[10, 11], [7, 9], [4, 5], 13, 12, 8]),
    ("faults", 2,
     "sim1:kam2:0.4.1.2.5.4.0.4.5.1.3.3.4.2.4.3.4.2.z2.2.3.2.3.3.1.2.z5.1.0", 48,
     "e2353e3a708f551c", 0.5, [[5, 8], [3, 9], [7, 10], 13, 12, 11]),
]


def _schedule(kind: str, seed: int) -> Schedule:
    if kind == "random":
        return Schedule(RandomChoices(seed))
    if kind == "pct":
        return Schedule(PCTChoices(seed))
    return Schedule(RandomChoices(seed, fault_rate=0.3), PLAN)


def _digest(log: list[str]) -> str:
    return hashlib.sha256("\n".join(log).encode()).hexdigest()[:16]


@pytest.mark.parametrize(("kind", "seed", "trace", "steps", "digest", "now", "results"),
                         RECORDED, ids=[f"{case[0]}-{case[1]}" for case in RECORDED])
def test_a_recorded_trace_replays_the_recorded_steps(kind, seed, trace, steps, digest, now,
                                                     results):
    with simulate(trace=trace, num_cpus=2) as replayed:
        assert program() == (results, [0, 1, 2])
    assert (replayed.steps, _digest(replayed.log), replayed.now) == (steps, digest, now), (
        "\n".join(replayed.log)
    )
    with simulate(_schedule(kind, seed), num_cpus=2) as seeded:
        assert program() == (results, [0, 1, 2])
    assert seeded.trace == trace
    assert seeded.log == replayed.log
