"""What a simulated run does to the process it runs in, beyond its steps: the garbage
collector's settings for the run (restored after it, however it ends) and no state socket
unless asked. A run is often one of thousands in a test process: it must leave the process
as it found it, and cost little to start."""

from __future__ import annotations

import gc
import weakref

import pytest

import actorlib
from actorlib import session
from actorlib.backends.sim.gc_policy import YOUNG_THRESHOLD, forget_process_freezes
from actorlib.testing import simulate


@actorlib.remote
def double(x):
    return 2 * x


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


@pytest.fixture
def unfrozen():
    """A process that froze nothing itself (the suite's conftest freezes its heap)."""
    gc.unfreeze()
    forget_process_freezes()
    try:
        yield
    finally:
        gc.collect()
        gc.freeze()
        forget_process_freezes()


def test_the_collector_is_set_for_the_run_and_restored_after_it(unfrozen):
    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    with simulate(seed=1):
        assert gc.get_threshold()[0] == max(before[0], YOUNG_THRESHOLD)
        assert gc.get_freeze_count() > 0  # what existed at the start is frozen
        assert actorlib.get([double.remote(i) for i in range(20)]) == list(range(0, 40, 2))
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_the_collector_is_restored_after_a_failed_run(unfrozen):
    before = gc.get_threshold()
    with pytest.raises(ZeroDivisionError), simulate(seed=1):
        actorlib.get(double.remote(1))
        _ = 1 / 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_cyclic_garbage_made_during_a_run_is_still_collected():
    freed = []
    with simulate(seed=1):
        for i in range(5 * YOUNG_THRESHOLD):  # enough to trigger young collections
            weakref.finalize(Node(), freed.append, i)
        assert freed  # collected during the run, without an explicit gc.collect()


def test_settings_the_process_chose_are_left_alone(unfrozen):
    before = gc.get_threshold()
    try:
        gc.set_threshold(50_000, 5, 5)  # already above the run's: kept as it is
        with simulate(seed=1):
            assert gc.get_threshold() == (50_000, 5, 5)
        assert gc.get_threshold() == (50_000, 5, 5)
        gc.set_threshold(*before)
        with simulate(seed=1):
            gc.set_threshold(1_000, 10, 10)  # changed during the run: not overwritten
        assert gc.get_threshold() == (1_000, 10, 10)
    finally:
        gc.set_threshold(*before)
    gc.freeze()  # the process froze objects itself: its freeze stays after the run
    try:
        with simulate(seed=1):
            pass
        assert gc.get_freeze_count() > 0  # (the count drops as frozen objects die)
    finally:
        gc.unfreeze()


def test_a_process_seen_freezing_is_not_counted_again(unfrozen, monkeypatch):
    """Counting the frozen heap walks it: a process that freezes is counted once."""
    counted = []
    count = gc.get_freeze_count
    monkeypatch.setattr(gc, "get_freeze_count", lambda: counted.append(1) or count())
    with simulate(seed=1):
        pass
    assert len(counted) == 1  # nothing frozen yet: the run froze the heap itself
    gc.freeze()
    for _ in range(3):
        with simulate(seed=1):
            assert actorlib.get(double.remote(2)) == 4
    assert len(counted) == 2  # seen frozen by the process once, then trusted
    assert gc.get_freeze_count() > 0  # and its freeze kept
    gc.unfreeze()


def test_a_run_serves_no_state_socket_unless_asked(monkeypatch):
    monkeypatch.delenv("ACTORLIB_STATE_SOCKET", raising=False)
    with simulate(seed=1):
        assert session._state_server is None
    monkeypatch.setenv("ACTORLIB_STATE_SOCKET", "1")
    with simulate(seed=1):
        assert session._state_server is not None


def test_a_run_inside_another_does_not_take_its_freeze_for_the_process(unfrozen):
    from actorlib.backends.sim import gc_policy

    outer, inner = gc_policy.GcPolicy(), gc_policy.GcPolicy()
    outer.enter()
    inner.enter()  # sees the outer run's freeze: not the process's own
    inner.exit()
    outer.exit()
    assert gc.get_freeze_count() == 0 and not gc_policy._process_freezes
    with simulate(seed=1):
        assert gc.get_freeze_count() > 0  # later runs still freeze for themselves
