"""Nested fan-out: tasks that submit tasks and wait for them, levels deep and wide.

A task blocked in ``get`` lends its CPU, and the children the lent CPUs place must all
run (on the process backend, on other threads of the waiting workers) with the right
results, also when a child is cancelled while its parent waits for it.
"""

from __future__ import annotations

import random
import time

import pytest
from testkit import T

import actorlib
from actorlib import exceptions as exc

pytestmark = pytest.mark.shared_runtime


@actorlib.remote
def qsort(xs: list[int]) -> list[int]:
    """Both halves as tasks, each waited for: every level fans out and blocks."""
    if len(xs) <= 1:
        return xs
    pivot, rest = xs[0], xs[1:]
    low = qsort.remote([x for x in rest if x < pivot])
    high = qsort.remote([x for x in rest if x >= pivot])
    return [*actorlib.get(low, timeout=T), pivot, *actorlib.get(high, timeout=T)]


@actorlib.remote
def tree(depth: int, width: int) -> int:
    """The number of tasks in a tree of ``width`` children per level, ``depth`` levels."""
    if depth == 0:
        return 1
    return 1 + sum(actorlib.get([tree.remote(depth - 1, width) for _ in range(width)],
                                timeout=T))


@actorlib.remote
def spin(seconds: float) -> str:
    """Hold a CPU (no ``get``) until cancelled, in short steps a cancel interrupts."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.01)
    return "ran to its end"


@actorlib.remote
def cancels_its_child() -> str:
    child = spin.remote(2 * T)
    try:  # waits in get: lends its CPU, which the child may take
        actorlib.get(child, timeout=0.3)
    except exc.GetTimeoutError:
        pass
    actorlib.cancel(child)
    try:
        actorlib.get(child, timeout=T)
    except exc.TaskCancelledError:
        return "cancelled"
    return "not cancelled"


def test_a_nested_quicksort_sorts(rt):
    xs = random.Random(13).sample(range(10_000), 120)
    assert actorlib.get(qsort.remote(xs), timeout=T) == sorted(xs)


def test_a_deep_and_wide_fan_out_finishes(rt):
    wide, deep = tree.remote(2, 8), tree.remote(6, 2)
    assert actorlib.get([wide, deep], timeout=T) == [1 + 8 + 64, 2**7 - 1]


def test_a_child_cancelled_while_its_parent_waits(rt):
    assert actorlib.get(cancels_its_child.remote(), timeout=T) == "cancelled"
    # What ran beside the cancelled child goes on: a fan-out still finishes.
    assert actorlib.get(tree.remote(3, 3), timeout=T) == 1 + 3 + 9 + 27
