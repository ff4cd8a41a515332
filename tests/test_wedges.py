"""Failures that once left the runtime stuck: each must fail only its own work, at once.

Every test ends by running a fresh task: a core that wedged would time out there.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from testkit import Sync, T, live_objects, wait_until

import actorlib
from actorlib import exceptions as exc

pytestmark = pytest.mark.shared_runtime


@actorlib.remote
def bad():
    raise ValueError("boom")


@actorlib.remote
def ok(x=None):
    return 1


@actorlib.remote(num_returns=2)
def bad_pair():
    raise KeyError("pair")


@actorlib.remote
def waits_for(refs):
    """Blocks in get on the first ref of the list (a ref nested in a list stays a ref)."""
    return actorlib.get(refs[0], timeout=T)


@actorlib.remote(num_cpus=0)
class Taker:
    def take(self, x=None):
        return x


def _still_serving() -> None:
    assert actorlib.get(ok.remote(), timeout=T) == 1


def test_failed_argument_held_only_by_a_downstream_task(rt):
    with pytest.raises(ValueError, match="boom"):
        actorlib.get(ok.remote(bad.remote()), timeout=T)
    _still_serving()


def test_failed_argument_held_only_by_an_actor_call(rt):
    taker = Taker.remote()
    with pytest.raises(ValueError, match="boom"):
        actorlib.get(taker.take.remote(bad.remote()), timeout=T)
    assert actorlib.get(taker.take.remote(5), timeout=T) == 5
    _still_serving()


def test_failed_argument_of_a_chain_frees_every_object(rt):
    before = live_objects()
    refs = [ok.remote(ok.remote(bad.remote())) for _ in range(5)]
    for ref in refs:
        with pytest.raises(ValueError):
            actorlib.get(ref, timeout=T)
    del refs, ref
    wait_until(lambda: live_objects() <= before, what="the failed chain's objects to be freed")
    _still_serving()


def test_an_error_with_two_returns_reaches_both_and_both_are_freed(rt):
    before = live_objects()
    first, second = bad_pair.remote()
    downstream = ok.remote(second)
    for ref in (downstream, first, second):
        with pytest.raises(KeyError, match="pair"):
            actorlib.get(ref, timeout=T)
    del first, second, downstream, ref
    wait_until(lambda: live_objects() <= before, what="both error objects to be freed")
    _still_serving()


@pytest.mark.fresh_runtime  # leaves a Sync.wait call pending: shutdown ends it
def test_cancel_downstream_then_upstream_of_a_blocked_chain(rt):
    sync = Sync.remote()
    obj1 = waits_for.remote([sync.wait.remote()])
    obj2 = waits_for.remote([obj1])
    obj3 = waits_for.remote([obj2])
    actorlib.cancel(obj3)
    with pytest.raises(exc.TaskCancelledError):
        actorlib.get(obj3, timeout=T)
    actorlib.cancel(obj1)
    for ref in (obj1, obj2):
        with pytest.raises(exc.TaskCancelledError):
            actorlib.get(ref, timeout=T)
    _still_serving()


@actorlib.remote
def arrives_then_waits(sync):
    actorlib.get(sync.arrive.remote(), timeout=T)
    actorlib.get(sync.wait.remote())  # no timeout: only the cancel ends this wait
    return "not cancelled"


@pytest.mark.fresh_runtime  # leaves a Sync.wait call pending: shutdown ends it
def test_cancel_a_task_blocked_in_get_ends_it(rt):
    sync = Sync.remote()
    blocked = arrives_then_waits.remote(sync)
    actorlib.get(sync.wait_count.remote(1), timeout=T)
    actorlib.cancel(blocked)
    with pytest.raises(exc.TaskCancelledError):
        actorlib.get(blocked, timeout=T)
    # Its CPUs came back: every CPU can be used at once again.
    total = actorlib.cluster_resources()["CPU"]
    wait_until(lambda: actorlib.available_resources().get("CPU") == total, timeout=T,
               what="the cancelled task's CPU to come back")
    _still_serving()


def test_get_raises_the_first_error_without_waiting_for_the_rest(rt):
    sync = Sync.remote()
    never = waits_for.remote([sync.wait.remote()])  # ready only when released below
    try:
        start = time.monotonic()
        with pytest.raises(ValueError, match="boom"):
            actorlib.get([never, bad.remote()], timeout=T)
        assert time.monotonic() - start < T / 2, "get() waited for the object before the error"
        with pytest.raises(ValueError, match="boom"):
            asyncio.run(actorlib.get_async([never, bad.remote()], timeout=T))
        assert actorlib.wait([never], timeout=0) == ([], [never])
    finally:
        sync.set.remote()
    assert actorlib.get(never, timeout=T) is None
    _still_serving()


def test_get_of_a_failed_ref_that_is_ready_raises_at_once(rt):
    failed = bad.remote()
    with pytest.raises(ValueError):
        actorlib.get(failed, timeout=T)
    sync = Sync.remote()
    never = waits_for.remote([sync.wait.remote()])
    start = time.monotonic()
    with pytest.raises(ValueError):
        actorlib.get([never, failed], timeout=T)
    assert time.monotonic() - start < T  # raised, not timed out
    sync.set.remote()
    actorlib.get(never, timeout=T)


class _InterruptedAsItDrops:
    """A client that waits for ever, whose ``drop_ref`` is where a cancel's interrupt
    lands (an asynchronous exception fires at any bytecode: a finalizer's too)."""

    closed = False

    def __init__(self) -> None:
        self.watched: list[list[int]] = []

    def drop_ref(self, id_: int) -> None:
        raise KeyboardInterrupt

    def ready_values(self, ids: list[int], *_: object) -> dict[int, object]:
        return {}

    def watch(self, ids: list[int], *_: object) -> None:
        self.watched.append(ids)

    def unwatch(self, ids: list[int], *_: object) -> None:
        self.watched.remove(ids)

    def task_blocked(self, *_: object) -> None:
        pass

    def flush(self) -> None:
        pass


def test_a_cancel_that_lands_as_a_ref_is_dropped_ends_the_next_get():
    """A cancel's interrupt raised in a ref's finalizer is printed and dropped by Python
    ("Exception ignored in"): the task ran on into its next ``get`` and blocked there for
    good (``test_cancel_a_task_blocked_in_get_ends_it[cluster]`` in a preflight CI: the
    cancel met the drop of its first ``get``'s ref). That ``get`` raises it now."""
    from actorlib.core.execution_context import ExecutionContext, current_execution
    from actorlib.core.refs import ObjectRef
    from actorlib.core.waiting import fetch

    client = _InterruptedAsItDrops()
    ctx = ExecutionContext("node", task_id=5, cancelled=True)
    token = current_execution.set(ctx)
    try:
        dropped = ObjectRef(7, client)  # type: ignore[arg-type]
        del dropped  # the interrupt lands here, and Python drops it
        pending = ObjectRef(8, None)
        pending._client = client  # type: ignore[assignment]
        with pytest.raises(KeyboardInterrupt, match="cancelled"):
            fetch([pending], 1, 5.0)
        assert client.watched == []  # the wait's watch ended with it
        # Only once: a task that caught it may still wait.
        assert fetch([pending], 1, 0.01) == {}
        del pending
    finally:
        current_execution.reset(token)
