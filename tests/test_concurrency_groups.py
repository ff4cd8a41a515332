"""Concurrency groups: named groups of an actor's calls, each with its own limit (Ray's
``concurrency_groups`` / ``@method(concurrency_group=)`` / ``.options(concurrency_group=)``).
"""

from __future__ import annotations

import asyncio

import pytest
from testkit import Sync, T

import actorlib

pytestmark = pytest.mark.shared_runtime


@actorlib.remote(concurrency_groups={"io": 2, "compute": 1})
class Threaded:
    """A sync actor: each group runs on threads of its own."""

    def __init__(self, sync):
        self.sync = sync

    @actorlib.method(concurrency_group="io")
    def io(self, n):
        # Two io calls must run at once to pass the barrier (the io group allows 2).
        return actorlib.get(self.sync.barrier.remote(n, "io"), timeout=T)

    @actorlib.method(concurrency_group="compute")
    def compute(self, x):
        return x * 2

    def default(self, x):
        return x + 1

    def wait_released(self):
        actorlib.get(self.sync.wait.remote("release"), timeout=T)
        return "released"


@actorlib.remote(concurrency_groups={"io": 2})
class Async:
    def __init__(self, sync):
        self.sync = sync
        self.inside = 0
        self.most = 0

    @actorlib.method(concurrency_group="io")
    async def io(self, n):
        self.inside += 1
        self.most = max(self.most, self.inside)
        try:
            return await self.sync.barrier.remote(n, "aio")
        finally:
            self.inside -= 1

    async def default(self, x):
        await asyncio.sleep(0)
        return x + 1

    async def most_inside(self):
        return self.most

    async def hold(self):
        await self.sync.wait.remote("release")
        return "held"


def test_a_group_runs_its_calls_at_once_and_apart_from_the_default(rt):
    sync = Sync.remote()
    actor = Threaded.remote(sync)
    # The default group (max_concurrency=1) is busy with a call that waits...
    held = actor.wait_released.remote()
    # ...and the io group still runs two calls at once, and compute runs too.
    assert actorlib.get([actor.io.remote(2), actor.io.remote(2)], timeout=T) == [2, 2]
    assert actorlib.get(actor.compute.remote(21), timeout=T) == 42
    sync.set.remote("release")
    assert actorlib.get(held, timeout=T) == "released"
    assert actorlib.get(actor.default.remote(1), timeout=T) == 2


def test_options_put_one_call_in_another_group(rt):
    sync = Sync.remote()
    actor = Threaded.remote(sync)
    held = actor.wait_released.remote()  # the default group's only thread is taken
    # default() would wait behind it; in the compute group it runs at once.
    assert actorlib.get(actor.default.options(concurrency_group="compute").remote(1),
                        timeout=T) == 2
    sync.set.remote("release")
    actorlib.get(held, timeout=T)


def test_async_actor_groups_bound_their_calls(rt):
    sync = Sync.remote()
    actor = Async.remote(sync)
    held = actor.hold.remote()  # in the default group (1000 at once for async actors)
    refs = [actor.io.remote(2) for _ in range(4)]
    # Each call passed the barrier of two (it never opens unless two run at once); what
    # each returns is the count when it woke, which a third call may have raised by then.
    assert len(out := actorlib.get(refs, timeout=T)) == 4 and min(out) >= 2, out
    assert actorlib.get(actor.most_inside.remote(), timeout=T) == 2  # never more than 2
    assert actorlib.get(actor.default.remote(1), timeout=T) == 2
    sync.set.remote("release")
    assert actorlib.get(held, timeout=T) == "held"


def test_a_call_in_an_unknown_group_fails_clearly(rt):
    actor = Threaded.remote(Sync.remote())
    with pytest.raises(ValueError, match="'gpu' is not one of actor Threaded's concurrency"):
        actorlib.get(actor.default.options(concurrency_group="gpu").remote(1), timeout=T)
    assert actorlib.get(actor.default.remote(1), timeout=T) == 2  # the actor goes on


@pytest.mark.parametrize("groups", [{"io": 0}, {"io": 1.5}, {"": 1}, ["io"], {"io": True}])
def test_bad_concurrency_groups_are_refused(groups):
    with pytest.raises(ValueError, match="concurrency_groups must be a dict"):
        actorlib.remote(concurrency_groups=groups)(type("A", (), {}))


def test_a_method_in_an_undeclared_group_is_refused_at_creation(rt):
    @actorlib.remote(concurrency_groups={"io": 1})
    class Wrong:
        @actorlib.method(concurrency_group="disk")
        def f(self):
            return 1

    with pytest.raises(ValueError, match="'disk' not declared in concurrency_groups"):
        Wrong.remote()


def test_group_names_must_be_strings():
    with pytest.raises(ValueError, match="concurrency_group must be the name"):
        actorlib.method(concurrency_group=3)


def test_calls_of_one_caller_keep_their_order_within_a_one_call_group(rt):
    actor = Threaded.remote(Sync.remote())
    refs = [actor.compute.remote(i) for i in range(50)]
    assert actorlib.get(refs, timeout=T) == [2 * i for i in range(50)]
