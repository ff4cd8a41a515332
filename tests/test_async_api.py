"""The async face: await refs, asyncio.gather/wait_for/wait, .future(), get_async, wait_async."""

from __future__ import annotations

import asyncio
import concurrent.futures
import warnings

import pytest
import uvloop
from testkit import Sync, T, live_objects, wait_until

import actorlib
from actorlib import exceptions as exc
from actorlib.core import waiting

pytestmark = pytest.mark.shared_runtime


@actorlib.remote
def square(x):
    return x * x


@actorlib.remote
async def async_square(x):
    await asyncio.sleep(0)
    return x * x


@actorlib.remote
def fail(msg):
    raise ValueError(msg)


@actorlib.remote(num_cpus=0)
class AsyncCounter:
    def __init__(self):
        self.n = 0

    async def incr(self):
        self.n += 1
        return self.n


@pytest.mark.asyncio
async def test_await_ref(rt):
    assert await square.remote(7) == 49
    assert await async_square.remote(5) == 25
    assert await actorlib.put("v") == "v"


@pytest.mark.asyncio
async def test_await_actor_call(rt):
    c = AsyncCounter.remote()
    assert await c.incr.remote() == 1
    assert await c.incr.remote() == 2


@pytest.mark.asyncio
async def test_await_failing_ref_raises_original_type(rt):
    with pytest.raises(ValueError) as info:
        await fail.remote("async boom")
    assert isinstance(info.value, exc.TaskError)
    assert "async boom" in str(info.value)


@pytest.mark.asyncio
async def test_asyncio_gather(rt):
    results = await asyncio.gather(*(square.remote(i) for i in range(10)))
    assert results == [i * i for i in range(10)]


@pytest.mark.asyncio
async def test_asyncio_gather_return_exceptions(rt):
    ok, bad = await asyncio.gather(square.remote(2), fail.remote("x"), return_exceptions=True)
    assert ok == 4
    assert isinstance(bad, ValueError) and isinstance(bad, exc.TaskError)


@pytest.mark.asyncio
async def test_asyncio_wait_for(rt):
    assert await asyncio.wait_for(square.remote(3), timeout=T) == 9
    sync = Sync.remote()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(sync.wait.remote(), timeout=0.1)
    await sync.set.remote()


@pytest.mark.asyncio
async def test_asyncio_wait(rt):
    sync = Sync.remote()
    blocked = asyncio.ensure_future(sync.wait.remote())
    quick = asyncio.ensure_future(square.remote(4))
    done, pending = await asyncio.wait({blocked, quick}, return_when=asyncio.FIRST_COMPLETED)
    assert done == {quick} and pending == {blocked}
    assert quick.result() == 16
    await sync.set.remote()
    done, pending = await asyncio.wait({blocked}, timeout=T)
    assert done == {blocked} and not pending


@pytest.mark.asyncio
async def test_awaiting_does_not_block_the_loop(rt):
    """While a ref is pending, other coroutines on the loop keep running."""
    sync = Sync.remote()
    waiter = asyncio.ensure_future(sync.wait.remote())
    ticks = 0
    for _ in range(5):
        await asyncio.sleep(0)
        ticks += 1
    assert ticks == 5 and not waiter.done()
    await sync.set.remote()
    assert await asyncio.wait_for(waiter, timeout=T) is None


def test_future(rt):
    fut = square.remote(6).future()
    assert isinstance(fut, concurrent.futures.Future)
    assert fut.result(timeout=T) == 36
    bad = fail.remote("in future").future()
    with pytest.raises(ValueError):
        bad.result(timeout=T)
    assert isinstance(bad.exception(timeout=T), exc.TaskError)


def test_futures_with_concurrent_wait(rt):
    futs = [square.remote(i).future() for i in range(5)]
    done, not_done = concurrent.futures.wait(futs, timeout=T)
    assert len(done) == 5 and not not_done
    assert sorted(f.result() for f in done) == [0, 1, 4, 9, 16]


def test_a_settled_future_does_not_keep_its_ref_alive(rt):
    ref = square.remote(6)
    oid = ref.hex()
    assert ref.future().result(timeout=T) == 36
    del ref
    wait_until(lambda: oid not in live_objects(), what="the future's object to be freed")


@pytest.mark.asyncio
async def test_get_async(rt):
    assert await actorlib.get_async(square.remote(9)) == 81
    refs = [square.remote(i) for i in range(5)]
    assert await actorlib.get_async(refs) == [0, 1, 4, 9, 16]


@pytest.mark.asyncio
async def test_get_async_timeout(rt):
    sync = Sync.remote()
    with pytest.raises(exc.GetTimeoutError) as info:
        await actorlib.get_async(sync.wait.remote(), timeout=0.1)
    assert isinstance(info.value, TimeoutError)
    await sync.set.remote()


@pytest.mark.asyncio
async def test_get_async_error(rt):
    with pytest.raises(ValueError):
        await actorlib.get_async([square.remote(1), fail.remote("e")])


@pytest.mark.asyncio
async def test_wait_async(rt):
    sync = Sync.remote()
    blocked = sync.wait.remote()
    done_ref = actorlib.put(1)
    ready, not_ready = await actorlib.wait_async([blocked, done_ref], num_returns=1, timeout=T)
    assert ready == [done_ref] and not_ready == [blocked]
    ready, not_ready = await actorlib.wait_async([blocked, done_ref], num_returns=2, timeout=0.1)
    assert ready == [done_ref] and not_ready == [blocked]
    await sync.set.remote()
    ready, not_ready = await actorlib.wait_async([blocked, done_ref], num_returns=2, timeout=T)
    assert ready == [blocked, done_ref] and not_ready == []


@pytest.mark.asyncio
async def test_async_as_completed(rt):
    sync = Sync.remote()
    refs = [_gated.remote(sync, f"k{i}", i) for i in range(3)]
    order = [2, 0, 1]
    await sync.set.remote(f"k{order[0]}")
    seen = []
    async for ref in actorlib.as_completed(refs, timeout=T):
        seen.append(await ref)
        if len(seen) < len(order):
            await sync.set.remote(f"k{order[len(seen)]}")
    assert seen == order


@actorlib.remote
def _gated(sync, key, value):
    actorlib.get(sync.wait.remote(key), timeout=T)
    return value


def test_uvloop(rt):
    async def main():
        assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
        a = await square.remote(3)
        b = await actorlib.get_async([square.remote(4), async_square.remote(5)])
        c = await asyncio.gather(square.remote(1), square.remote(2))
        with pytest.raises(ValueError):
            await fail.remote("uv")
        return a, b, c

    assert uvloop.run(main()) == (9, [16, 25], [1, 4])


def test_await_in_fresh_loops(rt):
    """A ref can be awaited from a loop other than the one it was created near."""
    ref = square.remote(11)
    assert asyncio.run(_await(ref)) == 121
    assert asyncio.run(_await(ref)) == 121


async def _await(ref):
    return await ref


def test_a_blocking_get_in_a_running_loop_warns_once(
    rt: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(waiting, "_blocking_warned", False)
    sync = Sync.remote()
    never = sync.wait.remote()

    async def main() -> None:
        with (pytest.warns(exc.BlockingGetWarning, match="get_async"),
              pytest.raises(exc.GetTimeoutError)):
            actorlib.get(never, timeout=0.05)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # once per process: no second warning
            with pytest.raises(exc.GetTimeoutError):
                actorlib.get(never, timeout=0.05)
            assert actorlib.wait([never], timeout=0.05) == ([], [never])

    asyncio.run(main())
    actorlib.get(sync.set.remote(), timeout=T)


@actorlib.remote(num_cpus=0)
class BlockingInAsync:
    async def get_first(self, refs):
        return actorlib.get(refs[0], timeout=T)


def test_a_blocking_get_inside_an_async_actor_method_does_not_warn(
    rt: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deliberate choice (see waiting._warn_if_in_event_loop): it stalls only that actor."""
    monkeypatch.setattr(waiting, "_blocking_warned", False)
    sync = Sync.remote()
    actor = BlockingInAsync.remote()
    out = actor.get_first.remote([sync.wait.remote()])  # nested: the method gets the ref
    assert actorlib.wait([out], timeout=0.2) == ([], [out])  # blocked in get, not failed
    actorlib.get(sync.set.remote(), timeout=T)
    assert actorlib.get(out, timeout=T) is None  # a warning would be an error in here
    assert waiting._blocking_warned is False
