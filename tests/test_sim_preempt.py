"""Preemption on the ``sim`` backend (``simulate(preempt=s)``, ``ACTORLIB_SIM_PREEMPT``): a
step that runs user code for longer than ``s`` seconds of real time runs on beside the
simulation, which goes on taking steps; it rejoins when it ends or calls ``get``; a cancel
interrupts it as on the thread backend. Off by default: then nothing is preempted."""

from __future__ import annotations

import os
import threading
import time

import pytest

import actorlib
from actorlib.backends.sim import SimBackend
from actorlib.exceptions import TaskCancelledError
from actorlib.testing import simulate

SLICE = 0.02


@actorlib.remote(num_cpus=0)
def quick(x):
    return x


@actorlib.remote(num_cpus=0)
def hold_until(path, limit=30.0):
    """Spins in real time (no get) until ``path`` exists: only preemption lets the
    driver run meanwhile to create it."""
    deadline = time.monotonic() + limit
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.002)
    return os.path.exists(path)


def test_a_spinning_task_is_preempted_and_the_driver_releases_it(tmp_path):
    release = str(tmp_path / "release")
    with simulate(preempt=SLICE) as run:
        held = hold_until.remote(release)
        assert actorlib.get(quick.remote(1)) == 1  # runs while hold_until spins
        open(release, "w").close()
        assert actorlib.get(held, timeout=5) is True
    log = run.log
    assert log[:2] == ["task hold_until#1 starts",
                       "task hold_until#1 preempted (runs on in real time)"], log
    assert log.index("task quick#1 starts") > 1, log
    assert "task hold_until#1 resumes" in log, log


def test_virtual_time_does_not_run_ahead_of_a_preempted_step(tmp_path):
    release = str(tmp_path / "release")
    with simulate(preempt=SLICE) as run:
        held = hold_until.remote(release)
        actorlib.get(quick.remote(1))
        threading.Timer(0.3, lambda: open(release, "w").close()).start()
        # Nothing else can run: the get's 20 s timeout must not be jumped to.
        assert actorlib.get(held, timeout=20) is True
    assert run.now < 20


@actorlib.remote(num_cpus=0)
def spin_until_cancelled(path):
    def mark(what):
        with open(path, "a") as f:
            f.write(what + "\n")

    try:
        while True:
            time.sleep(0.002)
    except KeyboardInterrupt:
        mark("interrupted")
        raise
    finally:
        mark("finally")


def test_a_cancel_interrupts_a_preempted_task_with_keyboard_interrupt(tmp_path):
    marks = tmp_path / "marks"
    with simulate(preempt=SLICE) as run:
        ref = spin_until_cancelled.remote(str(marks))
        actorlib.get(quick.remote(1))
        actorlib.cancel(ref)
        with pytest.raises(TaskCancelledError):
            actorlib.get(ref, timeout=5)
    assert marks.read_text().split() == ["interrupted", "finally"]
    assert "task spin_until_cancelled#1 preempted (runs on in real time)" in run.log


@actorlib.remote(num_cpus=1)
def sleeper(seconds):
    time.sleep(seconds)  # one C call: an interrupt lands only after it
    return "woke"


def test_a_forced_cancel_ends_a_preempted_task_for_everyone_at_once():
    with simulate(preempt=SLICE, num_cpus=1):
        ref = sleeper.remote(3.0)
        behind = quick.options(num_cpus=1).remote(7)  # waits for the one CPU
        actorlib.wait([ref], timeout=0)
        actorlib.get(quick.remote(0))  # sleeper starts and is preempted
        actorlib.cancel(ref, force=True)
        with pytest.raises(TaskCancelledError):
            actorlib.get(ref)
        assert actorlib.get(behind) == 7  # its CPU came back without waiting for it


@actorlib.remote(num_cpus=0)
def nap():
    time.sleep(0.1)
    return "rested"


def test_without_preempt_nothing_is_preempted_and_replays_are_exact():
    with simulate(seed=1) as first:
        assert actorlib.get([nap.remote(), quick.remote(2)]) == ["rested", 2]
    with simulate(trace=first.trace) as again:
        assert actorlib.get([nap.remote(), quick.remote(2)]) == ["rested", 2]
    assert not any("preempted" in step for step in first.log)
    assert again.log == first.log


@pytest.mark.parametrize("bad", [-1, "0.1", True])
def test_bad_preempt_values_are_refused(bad):
    with pytest.raises(ValueError, match="preempt"), simulate(preempt=bad):
        pass
    assert not actorlib.is_initialized()


@actorlib.remote
class Tally:
    def __init__(self):
        self.n = 0

    def incr(self):
        self.n += 1

    def value(self):
        return self.n


@actorlib.remote(num_cpus=0)
def tally_forever(tally, nap):
    while True:
        time.sleep(nap)  # real time, longer than the slice: preempted here
        actorlib.get(tally.incr.remote())  # out of user code in get: rejoins the run


@pytest.mark.parametrize("force", [False, True])
def test_a_cancel_landing_while_a_preempted_task_is_outside_user_code_ends_it(
    monkeypatch, force,
):
    """A cancel that lands while a preempted task has left its user code (in ``get``,
    before it rejoins the run) is not lost: the task never runs user code again, and
    what it submitted before the cancel is all it ever submits."""
    at_rejoin = threading.Event()
    go_on = threading.Event()
    real_park = SimBackend._park

    def park(self, worker, wait):
        if worker.detached and not at_rejoin.is_set():  # hold the task right there
            at_rejoin.set()
            go_on.wait(10)
        return real_park(self, worker, wait)

    monkeypatch.setattr(SimBackend, "_park", park)
    with simulate(preempt=SLICE):
        tally = Tally.remote()
        ref = tally_forever.remote(tally, 0.05)
        assert actorlib.get(tally.value.remote()) == 0  # the task starts, is preempted
        assert at_rejoin.wait(10)  # its first incr submitted, it is about to rejoin
        actorlib.cancel(ref, force=force)
        threading.Timer(0.1, go_on.set).start()  # once the cancel has landed
        with pytest.raises(TaskCancelledError):
            actorlib.get(ref, timeout=10)
        time.sleep(0.2)  # were it still running, it would tally more meanwhile
        assert actorlib.get(tally.value.remote()) == 1  # its one incr before the cancel
        time.sleep(0.2)
        assert actorlib.get(tally.value.remote()) == 1
