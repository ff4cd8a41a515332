"""trio apps: `await ref`, get_async and wait_async work under trio.run (via anyio)."""

from __future__ import annotations

import pytest
import trio
from testkit import Sync, T

import actorlib
from actorlib import exceptions as exc

pytestmark = pytest.mark.shared_runtime


@actorlib.remote
def square(x):
    return x * x


@actorlib.remote
async def async_double(x):
    return 2 * x


@actorlib.remote
def fail(msg):
    raise ValueError(msg)


@actorlib.remote(num_cpus=0)
class Counter:
    def __init__(self):
        self.n = 0

    def incr(self):
        self.n += 1
        return self.n


def test_await_ref_under_trio(rt):
    async def main():
        a = await square.remote(5)
        b = await async_double.remote(21)
        c = Counter.remote()
        await c.incr.remote()
        d = await c.incr.remote()
        return a, b, d

    assert trio.run(main) == (25, 42, 2)


def test_get_async_under_trio(rt):
    async def main():
        one = await actorlib.get_async(square.remote(3))
        many = await actorlib.get_async([square.remote(i) for i in range(4)])
        return one, many

    assert trio.run(main) == (9, [0, 1, 4, 9])


def test_errors_and_timeouts_under_trio(rt):
    sync = Sync.remote()

    async def main():
        with pytest.raises(ValueError) as info:
            await fail.remote("trio boom")
        assert isinstance(info.value, exc.TaskError)
        with pytest.raises(exc.GetTimeoutError):
            await actorlib.get_async(sync.wait.remote(), timeout=0.1)

    trio.run(main)
    actorlib.get(sync.set.remote(), timeout=T)


def test_wait_async_under_trio(rt):
    sync = Sync.remote()

    async def main():
        blocked = sync.wait.remote()
        done = actorlib.put("x")
        ready, not_ready = await actorlib.wait_async([blocked, done], num_returns=1, timeout=T)
        assert ready == [done] and not_ready == [blocked]
        await sync.set.remote()
        ready, _ = await actorlib.wait_async([blocked, done], num_returns=2, timeout=T)
        assert ready == [blocked, done]

    trio.run(main)


def test_concurrent_awaits_in_trio_nursery(rt):
    """Several refs awaited concurrently in one nursery, released in a chosen order."""
    sync = Sync.remote()
    seen = []

    async def waiter(key):
        await sync.wait.remote(key)
        seen.append(key)
        if key == "a":
            await sync.set.remote("b")

    async def main():
        with trio.fail_after(T):
            await _nursery()

    async def _nursery():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter, "b")
            nursery.start_soon(waiter, "a")
            await trio.sleep(0)
            await sync.set.remote("a")

    trio.run(main)
    assert seen == ["a", "b"]


def test_async_for_as_completed_under_trio(rt):
    sync = Sync.remote()
    refs = [_gated.remote(sync, f"k{i}", i) for i in range(3)]
    order = [1, 2, 0]

    async def main():
        seen = []
        await sync.set.remote(f"k{order[0]}")
        with trio.fail_after(T):
            async for ref in actorlib.as_completed(refs):
                seen.append(await ref)
                if len(seen) < len(order):
                    await sync.set.remote(f"k{order[len(seen)]}")
        return seen

    assert trio.run(main) == order


@actorlib.remote
def _gated(sync, key, value):
    actorlib.get(sync.wait.remote(key), timeout=T)
    return value
