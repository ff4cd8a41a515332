"""Who takes the ``sim`` backend's steps: a worker whose job ends takes the next ones
itself (no thread switch per step), and what goes wrong there reaches the driver."""

from __future__ import annotations

import threading

import pytest

import actorlib
from actorlib.testing import InvariantViolation, ReplayDivergedError, invariant, peek, simulate


@actorlib.remote(num_cpus=0)
class Tally:
    def __init__(self):
        self.n = 0

    def add(self):
        self.n += 1
        return self.n


def test_a_batch_of_calls_is_stepped_by_one_worker_without_switching_back():
    takers: list[str] = []

    def on_step(name: str) -> None:
        takers.append(threading.current_thread().name)

    with simulate(on_step=on_step) as run:
        tally = Tally.remote()
        assert actorlib.get([tally.add.remote() for _ in range(50)]) == list(range(1, 51))
    calls = [i for i, name in enumerate(run.log) if name == "Tally#1.add from driver"]
    assert len(calls) == 50
    # The first call is chosen by the driver, the other 49 by the worker that ran the one
    # before, on its own thread: one thread switch for the batch, not two per call.
    later = {takers[i] for i in calls[1:]}
    assert len(later) == 1 and later != {threading.current_thread().name}, takers
    assert run.log[-1] == "driver continues"


def test_the_same_steps_whoever_takes_them():
    def program() -> list[int]:
        tally = Tally.remote()
        return actorlib.get([tally.add.remote() for _ in range(20)])

    with simulate(seed=11) as first:
        program()
    with simulate(trace=first.trace) as again:
        program()
    assert again.log == first.log


@actorlib.remote(num_cpus=0)
def adder(tally, times):
    return actorlib.get([tally.add.remote() for _ in range(times)])


def test_a_replay_that_diverges_on_a_workers_step_raises_in_the_driver():
    # Choices 1 and 2 start both tasks; a later choice has 2 options, never 10.
    with pytest.raises(ReplayDivergedError, match="option 9"), simulate(
        trace="sim1::0.0.9.9.9"
    ):
        tally = Tally.remote()
        actorlib.get([adder.remote(tally, 3), adder.remote(tally, 3)])


def test_an_invariant_broken_on_a_workers_step_fails_the_run_in_the_driver():
    with pytest.raises(InvariantViolation) as info, simulate():
        tally = Tally.remote()
        invariant(lambda: peek(tally).n < 30)
        actorlib.get([tally.add.remote() for _ in range(50)])
    assert info.value.steps.count("Tally#1.add from driver") == 30


def test_idle_actors_called_again_are_listed_in_the_order_they_were_made():
    """An idle sync actor is not looked at until its next call; when calls come back to
    several in one batch, their steps are still listed (and so aged) in the order the
    actors were made, not the order the calls came in: the same runs as a scan of all."""
    with simulate() as run:  # the oldest runnable step each time
        first, second, third = Tally.remote(), Tally.remote(), Tally.remote()
        actorlib.get([first.add.remote(), second.add.remote(), third.add.remote()])
        for _ in range(3):  # all idle now; the next calls are first seen in one turn
            actorlib.get([third.add.remote(), first.add.remote(), second.add.remote()])
    adds = [name for name in run.log if ".add from driver" in name]
    assert adds == ["Tally#1.add from driver", "Tally#2.add from driver",
                    "Tally#3.add from driver"] * 4, adds


@actorlib.remote(num_cpus=1)
def square(x):
    return x * x


@actorlib.remote(num_cpus=1)
def sum_of_squares(n):
    return sum(actorlib.get([square.remote(i) for i in range(n)]))


def test_steps_are_offered_oldest_first_and_paused_workers_are_let_go():
    from actorlib.backends.sim import backend

    # A trace of no choices takes option 0 at every turn: the oldest runnable step.
    with simulate(trace="sim1::") as run:
        assert actorlib.get([square.remote(i) for i in range(12)]) == [i * i for i in range(12)]
        starts = [name for name in run.log if name.startswith("task square#")]
        assert starts == [f"task square#{i} starts" for i in range(1, 13)]
        # Tasks that pause in get (their workers parked) resume and finish; none is left
        # counted as paused once nothing runs.
        assert actorlib.get([sum_of_squares.remote(3) for _ in range(4)]) == [5] * 4
        sim = backend.current()
        assert sim is not None
        assert any(name.endswith(" resumes") for name in run.log)
        assert sim._parked == {}
