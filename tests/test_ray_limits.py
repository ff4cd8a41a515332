"""The ray backend's bookkeeping of concurrency limits (``backends/ray/limits.py``):
which held tasks take the slots, in what order, and what can still be taken back.
Behaviour on a running Ray is ``test_limited_tasks.py``'s and ``test_executor.py``'s."""

from __future__ import annotations

import pytest

pytest.importorskip("ray", reason="needs Ray: pip install 'actorlib[ray]'")

from actorlib.backends.ray.limits import QUEUED, RELEASED, WITHDRAWN, Limits
from actorlib.core.specs import NO_ARGS, TaskSpec


def _spec(n: int, key: str = "k", limit: int = 2) -> TaskSpec:
    return TaskSpec(task_id=n, function=None, args=NO_ARGS,  # type: ignore[arg-type]
                    return_ids=(n,), num_returns=1, resources={}, name=f"t{n}",
                    concurrency=(key, limit))


def test_tasks_beyond_the_limit_are_held_and_released_in_order() -> None:
    limits = Limits()
    assert limits.admit(_spec(1)) is None
    assert limits.admit(_spec(2)) is None
    third, fourth = limits.admit(_spec(3)), limits.admit(_spec(4))
    assert third is not None and fourth is not None
    assert limits.standing == 2
    assert limits.leave("k") == [third]
    assert third.state == RELEASED and fourth.state == QUEUED
    assert limits.leave("k") == [fourth]
    assert limits.leave("k") == []


def test_a_held_task_can_be_withdrawn_until_it_is_released() -> None:
    limits = Limits()
    limits.admit(_spec(1, limit=1))
    second, third = limits.admit(_spec(2, limit=1)), limits.admit(_spec(3, limit=1))
    assert second is not None and third is not None
    assert limits.withdraw(second)
    assert second.state == WITHDRAWN
    assert not limits.withdraw(second)
    assert limits.leave("k") == [third]  # the withdrawn one is passed over
    assert not limits.withdraw(third)  # released: on its way to Ray


def test_a_task_taken_out_of_turn_counts_and_is_not_released_again() -> None:
    limits = Limits()
    limits.admit(_spec(1, limit=1))
    second, third = limits.admit(_spec(2, limit=1)), limits.admit(_spec(3, limit=1))
    assert second is not None and third is not None
    assert limits.take_now(third)
    assert not limits.take_now(third)
    assert limits.leave("k") == []  # the first left; the third holds a slot beyond it
    assert limits.leave("k") == [second]


def test_keys_are_counted_apart_and_a_queue_keeps_its_order() -> None:
    limits = Limits()
    assert limits.admit(_spec(1, key="a", limit=1)) is None
    assert limits.admit(_spec(2, key="b", limit=1)) is None
    held = limits.admit(_spec(3, key="a", limit=1))
    assert held is not None
    assert limits.leave("b") == []
    assert limits.admit(_spec(4, key="b", limit=1)) is None
    assert limits.leave("a") == [held]


def test_stood_counts_each_held_task_once() -> None:
    limits = Limits()
    limits.admit(_spec(1, limit=1))
    held = limits.admit(_spec(2, limit=1))
    assert held is not None and limits.standing == 1
    limits.stood(held)
    limits.stood(held)
    assert limits.standing == 0 and held.submitted.is_set()
