"""Property: the Executor's bound and its cancels, under random blocking and cancels.

Every call is in the runtime at once (docs/performance.md, "The Executor's window"); the
core bounds how many run. Whatever the mix of calls that block in ``get`` (lending their
CPU to other work) and futures cancelled at random moments: at most ``max_workers``
calls are ever inside at once, a future whose ``cancel()`` returned True never ran, and
every other future holds its call's result. Example counts follow the hypothesis
profile (conftest.py): "fast" by default, ACTORLIB_HYPOTHESIS_PROFILE=thorough for more.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf

import pytest
from hypothesis import given
from hypothesis import strategies as st
from testkit import T, kill_all

import actorlib
from actorlib import Executor

pytestmark = [pytest.mark.shared_runtime, pytest.mark.slow]


@actorlib.remote(num_cpus=0)
class Meter:
    """Counts the calls inside at once and keeps the peak and who came in."""

    def __init__(self):
        self.inside = 0
        self.peak = 0
        self.entered = []

    async def enter(self, tag):
        self.inside += 1
        self.peak = max(self.peak, self.inside)
        self.entered.append(tag)

    async def pause(self, seconds):
        await asyncio.sleep(seconds)

    async def leave(self):
        self.inside -= 1

    async def report(self):
        """What this example saw, forgotten for the next one (``inside`` is 0 by then)."""
        seen = self.peak, self.inside, list(self.entered)
        self.peak, self.entered = 0, []
        return seen


def metered(meter, tag, blocks):
    """Inside from enter to leave; ``blocks``: waits in get meanwhile (its CPU is lent)."""
    actorlib.get(meter.enter.remote(tag), timeout=T)
    if blocks:
        actorlib.get(meter.pause.remote(0.005 * blocks), timeout=T)
    actorlib.get(meter.leave.remote(), timeout=T)
    return tag


plans = st.lists(
    st.tuples(
        st.integers(0, 3),  # 0: no wait in get; n: waits 5n ms in get
        st.sampled_from(["keep", "keep", "cancel now", "cancel later"]),
    ),
    min_size=1,
    max_size=10,
)


@pytest.fixture
def meter(rt):
    """One ``Meter`` for all of the property's examples (an actor per example was a new
    worker process each time)."""
    meter = Meter.remote()
    yield meter
    kill_all([meter])


@given(max_workers=st.integers(1, 3), plan=plans, map_too=st.booleans())
def test_the_bound_and_cancels_hold_under_random_blocking(meter, max_workers, plan, map_too):
    futures: list[tuple[int, cf.Future, str]] = []
    cancelled: set[int] = set()
    with Executor(max_workers) as ex:
        for tag, (blocks, fate) in enumerate(plan):
            future = ex.submit(metered, meter, tag, blocks)
            futures.append((tag, future, fate))
            if fate == "cancel now" and future.cancel():
                cancelled.add(tag)
        for tag, future, fate in futures:
            if fate == "cancel later" and future.cancel():
                cancelled.add(tag)
        mapped = []
        if map_too:
            first = len(plan)
            tags = range(first, first + len(plan))
            mapped = list(ex.map(metered, [meter] * len(plan), tags, [b for b, _ in plan]))
            assert mapped == list(tags)
        for tag, future, _ in futures:
            if tag in cancelled:
                assert future.cancelled()
                with pytest.raises(cf.CancelledError):
                    future.result(timeout=T)
            else:
                assert not future.cancelled()
                assert future.result(timeout=T) == tag
    peak, inside, entered = actorlib.get(meter.report.remote(), timeout=T)
    assert peak <= max_workers, f"{peak} calls ran at once with max_workers={max_workers}"
    assert inside == 0
    assert not cancelled & set(entered), "a call whose cancel() returned True ran"
    assert sorted(entered) == sorted(
        [tag for tag, _, _ in futures if tag not in cancelled] + mapped
    )
