"""Generator tasks and actor methods: num_returns="streaming" (ObjectRefGenerator) and "dynamic"."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
import trio
from testkit import Recorder, Sync, T, live_objects, wait_until

import actorlib
from actorlib.exceptions import TaskCancelledError


@actorlib.remote
def count_to(n):
    yield from range(n)


@actorlib.remote
async def async_count_to(n):
    for i in range(n):
        await asyncio.sleep(0)
        yield i * 10


@actorlib.remote
def fails_after(n):
    yield from range(n)
    raise ValueError(f"failed after {n}")


@actorlib.remote
def gated(sync, n):
    """Yields one item, then waits for "go" before the rest: proves items stream."""
    yield 0
    actorlib.get(sync.wait.remote("go"))
    yield from range(1, n)


@actorlib.remote
def counted(recorder, n):
    """Counts each item in ``recorder`` as it is produced (the side channel)."""
    for i in range(n):
        actorlib.get(recorder.incr.remote("produced"))
        yield i


@actorlib.remote
def forever(recorder):
    i = 0
    while True:
        actorlib.get(recorder.incr.remote("produced"))
        yield i
        i += 1
        time.sleep(0.01)


@actorlib.remote
def big_items(n, size):
    for i in range(n):
        yield np.full(size, float(i))


@actorlib.remote
def add_one(x):
    return x + 1


@actorlib.remote(num_returns="dynamic")
def dynamic_squares(n):
    for i in range(n):
        yield i * i


@actorlib.remote
def not_a_generator():
    return 1


@actorlib.remote
class Producer:
    def __init__(self):
        self.calls = 0

    def items(self, n):
        self.calls += 1
        for i in range(n):
            yield f"sync-{i}"

    @actorlib.method(num_returns="streaming")
    def async_items(self, n):
        """A plain method (the actor stays sync) that returns an async generator."""
        self.calls += 1

        async def items():
            for i in range(n):
                await asyncio.sleep(0)
                yield f"agen-{i}"

        return items()

    def calls_made(self):
        return self.calls


@actorlib.remote
class AsyncProducer:
    async def items(self, n):
        for i in range(n):
            await asyncio.sleep(0)
            yield f"async-{i}"

    def sync_items(self, n):
        yield from range(n)

    async def ping(self):
        return "pong"

    async def endless(self):
        i = 0
        while True:
            yield i
            i += 1
            await asyncio.sleep(0.01)

    async def counted(self, recorder, n):
        for i in range(n):
            await recorder.incr.remote("produced")
            yield i


def values(gen):
    return [actorlib.get(ref, timeout=T) for ref in gen]


# -- streaming: the default for generator functions -------------------------------------------


def test_generator_function_returns_object_ref_generator(rt):
    gen = count_to.remote(5)
    assert isinstance(gen, actorlib.ObjectRefGenerator)
    assert values(gen) == [0, 1, 2, 3, 4]
    assert gen.is_finished()
    with pytest.raises(StopIteration):
        next(gen)
    assert actorlib.get(gen.completed(), timeout=T) is None


def test_empty_generator(rt):
    gen = count_to.remote(0)
    assert values(gen) == []


def test_next_returns_refs_in_order(rt):
    gen = count_to.options(num_returns="streaming").remote(3)
    refs = [next(gen), next(gen), next(gen)]
    assert all(isinstance(r, actorlib.ObjectRef) for r in refs)
    assert len({r.hex() for r in refs}) == 3
    assert actorlib.get(refs, timeout=T) == [0, 1, 2]


def test_async_generator_task(rt):
    assert values(async_count_to.remote(4)) == [0, 10, 20, 30]


def test_async_for(rt):
    async def consume():
        out = []
        async for ref in count_to.remote(4):
            out.append(await ref)
        async for ref in async_count_to.remote(2):
            out.append(await ref)
        return out

    assert asyncio.run(consume()) == [0, 1, 2, 3, 0, 10]


def test_async_for_under_trio(rt):
    async def consume():
        return [await actorlib.get_async(ref) async for ref in async_count_to.remote(3)]

    assert trio.run(consume) == [0, 10, 20]


def test_items_arrive_while_the_producer_runs(rt):
    sync = Sync.remote()
    gen = gated.remote(sync, 3)
    first = next(gen)
    assert actorlib.get(first, timeout=T) == 0  # the task still waits for "go"
    assert not gen.is_finished()
    assert not gen.next_ready()
    ready, _ = actorlib.wait([gen.completed()], timeout=0.2)
    assert ready == []  # still running
    actorlib.get(sync.set.remote("go"), timeout=T)
    assert values(gen) == [1, 2]


def test_wait_takes_generators(rt):
    sync = Sync.remote()
    gen = gated.remote(sync, 2)
    ready, not_ready = actorlib.wait([gen], timeout=T)
    assert ready == [gen] and not_ready == []  # item 0 is there
    assert actorlib.get(next(gen), timeout=T) == 0
    ready, not_ready = actorlib.wait([gen], timeout=0.2)
    assert ready == [] and not_ready == [gen]  # item 1 waits for "go"
    actorlib.get(sync.set.remote("go"), timeout=T)
    ready, _ = asyncio.run(actorlib.wait_async([gen], timeout=T))
    assert ready == [gen]
    assert values(gen) == [1]
    ready, _ = actorlib.wait([gen], timeout=T)  # finished: next() returns at once
    assert ready == [gen]


def test_wait_on_item_refs_and_pass_them_to_tasks(rt):
    refs = list(count_to.remote(4))
    ready, not_ready = actorlib.wait(refs, num_returns=4, timeout=T)
    assert len(ready) == 4 and not not_ready
    assert actorlib.get([add_one.remote(r) for r in refs], timeout=T) == [1, 2, 3, 4]


@actorlib.remote
def sum_stream(n, backpressure):
    """A task consuming a generator task: the consumer's client is a worker's."""
    gen = count_to.options(_generator_backpressure_num_objects=backpressure).remote(n)
    return sum(actorlib.get(ref) for ref in gen)


@pytest.mark.parametrize("backpressure", [-1, 2])
def test_a_task_consumes_a_generator(rt, backpressure):
    assert actorlib.get(sum_stream.remote(10, backpressure), timeout=T) == sum(range(10))


def test_generator_cannot_be_pickled(rt):
    gen = count_to.remote(1)
    with pytest.raises(TypeError, match="ObjectRefGenerator"):
        add_one.remote(gen)
    assert values(gen) == [0]


def test_error_mid_stream_is_raised_at_its_item(rt):
    gen = fails_after.remote(2)
    assert actorlib.get(next(gen), timeout=T) == 0
    assert actorlib.get(next(gen), timeout=T) == 1
    failing = next(gen)
    with pytest.raises(ValueError, match="failed after 2"):
        actorlib.get(failing, timeout=T)
    with pytest.raises(StopIteration):
        next(gen)
    with pytest.raises(ValueError, match="failed after 2"):
        actorlib.get(gen.completed(), timeout=T)


def test_streaming_a_plain_function_fails_at_the_first_item(rt):
    gen = not_a_generator.options(num_returns="streaming").remote()
    with pytest.raises(TypeError, match="not a generator"):
        actorlib.get(next(gen), timeout=T)
    with pytest.raises(StopIteration):
        next(gen)


@pytest.mark.parametrize("force", [False, True])
def test_cancel_stops_the_producer(rt, force):
    recorder = Recorder.remote()
    gen = forever.remote(recorder)
    assert actorlib.get(next(gen), timeout=T) == 0
    assert actorlib.get(next(gen), timeout=T) == 1
    actorlib.cancel(gen, force=force)
    with pytest.raises(TaskCancelledError):
        for ref in gen:
            actorlib.get(ref, timeout=T)
    with pytest.raises(TaskCancelledError):
        actorlib.get(gen.completed(), timeout=T)
    # The incr the producer submitted just before the cancel interrupted its get may
    # still be on its way: nothing orders it before the driver's next call (they come
    # from two callers; the sim backend takes them in either order). It lands meanwhile.
    time.sleep(0.3)
    produced = actorlib.get(recorder.value.remote("produced"), timeout=T)
    time.sleep(0.3)
    assert actorlib.get(recorder.value.remote("produced"), timeout=T) == produced


def test_backpressure_pauses_the_producer(rt):
    recorder = Recorder.remote()
    gen = counted.options(_generator_backpressure_num_objects=2).remote(recorder, 6)

    def produced():
        return actorlib.get(recorder.value.remote("produced"), timeout=T)

    wait_until(lambda: produced() == 2, T, "the first two items")
    time.sleep(0.3)
    assert produced() == 2  # nothing consumed: paused at the limit
    assert actorlib.get(next(gen), timeout=T) == 0
    wait_until(lambda: produced() == 3, T, "one more item after one was consumed")
    time.sleep(0.3)
    assert produced() == 3
    assert values(gen) == [1, 2, 3, 4, 5]
    assert produced() == 6


def test_dropped_generator_does_not_stall_a_paused_producer(rt):
    recorder = Recorder.remote()
    gen = counted.options(_generator_backpressure_num_objects=1).remote(recorder, 5)
    assert actorlib.get(next(gen), timeout=T) == 0
    done = gen.completed()
    del gen  # nobody will consume the rest: the producer must not wait for ever
    assert actorlib.get(done, timeout=T) is None
    assert actorlib.get(recorder.value.remote("produced"), timeout=T) == 5


@pytest.mark.parametrize("backpressure", [-1, 1])
def test_retry_does_not_deliver_items_twice(rt, backpressure):
    recorder = Recorder.remote()

    @actorlib.remote(max_retries=1, retry_exceptions=True)
    def flaky(recorder):
        attempt = actorlib.get(recorder.incr.remote("attempt"))
        yield from range(3)
        if attempt == 1:
            raise RuntimeError("first attempt fails")
        yield from range(3, 5)

    gen = flaky.options(_generator_backpressure_num_objects=backpressure).remote(recorder)
    assert values(gen) == [0, 1, 2, 3, 4]
    assert actorlib.get(recorder.value.remote("attempt"), timeout=T) == 2


def test_large_items_are_stored_read_only(rt):
    size = 1024 * 1024  # 8 MiB of float64 each
    seen = []
    for i, ref in enumerate(big_items.remote(3, size)):
        arr = actorlib.get(ref, timeout=T)
        assert arr.shape == (size,) and arr[0] == arr[-1] == float(i)
        assert not arr.flags.writeable
        assert not arr.flags.owndata  # a view of the store's memory, not a copy
        seen.append(i)
        del arr, ref
    assert seen == [0, 1, 2]


def test_consumed_items_are_freed(rt):
    before = live_objects()
    gen = count_to.remote(20)
    total = sum(actorlib.get(ref, timeout=T) for ref in gen)
    assert total == sum(range(20))
    del gen
    wait_until(lambda: live_objects() <= before, T, "the stream's objects to be freed")


# -- actor methods ----------------------------------------------------------------------------


def test_sync_actor_generator_method(rt):
    actor = Producer.remote()
    assert values(actor.items.remote(3)) == ["sync-0", "sync-1", "sync-2"]
    assert values(actor.items.remote(1)) == ["sync-0"]
    assert actorlib.get(actor.calls_made.remote(), timeout=T) == 2


def test_sync_actor_method_returning_an_async_generator(rt):
    actor = Producer.remote()
    assert values(actor.async_items.remote(3)) == ["agen-0", "agen-1", "agen-2"]
    assert values(actor.items.remote(1)) == ["sync-0"]  # in order, one at a time
    assert actorlib.get(actor.calls_made.remote(), timeout=T) == 2


def test_async_actor_generator_methods(rt):
    actor = AsyncProducer.remote()
    gen = actor.items.remote(3)
    assert isinstance(gen, actorlib.ObjectRefGenerator)
    assert actorlib.get(actor.ping.remote(), timeout=T) == "pong"
    assert values(gen) == ["async-0", "async-1", "async-2"]
    assert values(actor.sync_items.remote(2)) == [0, 1]


@actorlib.remote
async def async_counted(recorder, n):
    for i in range(n):
        await recorder.incr.remote("produced")
        yield i


@pytest.mark.parametrize("where", ["task", "async actor"])
def test_async_generator_backpressure(rt, where):
    recorder = Recorder.remote()
    if where == "task":
        producer = async_counted.options(_generator_backpressure_num_objects=3)
    else:
        producer = AsyncProducer.remote().counted.options(_generator_backpressure_num_objects=3)
    gen = producer.remote(recorder, 5)

    def produced():
        return actorlib.get(recorder.value.remote("produced"), timeout=T)

    wait_until(lambda: produced() == 3, T, "the first three items")
    time.sleep(0.3)
    assert produced() == 3
    assert values(gen) == [0, 1, 2, 3, 4]


def test_cancel_an_async_actor_generator(rt):
    actor = AsyncProducer.remote()
    gen = actor.endless.remote()
    assert actorlib.get(next(gen), timeout=T) == 0
    actorlib.cancel(gen)
    with pytest.raises(TaskCancelledError):
        for ref in gen:
            actorlib.get(ref, timeout=T)
    assert actorlib.get(actor.ping.remote(), timeout=T) == "pong"  # the actor goes on


def test_actor_generator_with_backpressure(rt):
    actor = Producer.remote()
    gen = actor.items.options(_generator_backpressure_num_objects=1).remote(4)
    assert values(gen) == [f"sync-{i}" for i in range(4)]


# -- dynamic and fixed num_returns --------------------------------------------------------------


def test_dynamic_returns_one_ref_of_refs(rt):
    ref = dynamic_squares.remote(4)
    assert isinstance(ref, actorlib.ObjectRef)
    refs = actorlib.get(ref, timeout=T)
    assert isinstance(refs, actorlib.DynamicObjectRefGenerator)
    assert len(refs) == 4
    assert [actorlib.get(r, timeout=T) for r in refs] == [0, 1, 4, 9]


def test_dynamic_actor_method(rt):
    actor = Producer.remote()
    refs = actorlib.get(actor.items.options(num_returns="dynamic").remote(2), timeout=T)
    assert [actorlib.get(r, timeout=T) for r in refs] == ["sync-0", "sync-1"]


def test_generator_with_int_num_returns_yields_exactly_that_many(rt):
    assert actorlib.get(count_to.options(num_returns=1).remote(1), timeout=T) == 0
    a, b = count_to.options(num_returns=2).remote(2)
    assert actorlib.get([a, b], timeout=T) == [0, 1]
    with pytest.raises(ValueError, match="yielded more values"):
        actorlib.get(count_to.options(num_returns=1).remote(3), timeout=T)
    with pytest.raises(ValueError, match="yielded 1 values"):
        actorlib.get(count_to.options(num_returns=2).remote(1)[0], timeout=T)
    assert count_to.options(num_returns=0).remote(0) is None


@actorlib.remote(num_returns=3)
def reuses_one_array():
    """Yields the same large array three times, changed between yields."""
    array = np.zeros(1 << 20, dtype=np.uint8)
    for value in (1, 2, 3):
        array[:] = value
        yield array


def test_items_keep_the_value_they_had_when_yielded(rt):
    """With an int num_returns every item exists before any is stored: each is the value
    it was at its yield, not the array's last state."""
    items = actorlib.get(list(reuses_one_array.remote()), timeout=T)
    assert [int(item[0]) for item in items] == [1, 2, 3]
    assert [int(item.sum()) for item in items] == [v << 20 for v in (1, 2, 3)]


# -- options ------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad, error", [
    ("stream", ValueError), (-1, ValueError), (1.5, TypeError), (None, TypeError),
])
def test_num_returns_is_checked(bad, error):
    with pytest.raises(error, match="num_returns"):
        count_to.options(num_returns=bad)
    with pytest.raises(error, match="num_returns"):
        actorlib.method(num_returns=bad)


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-2, ValueError), ("2", TypeError)])
def test_backpressure_option_is_checked(bad, error):
    with pytest.raises(error, match="_generator_backpressure_num_objects"):
        count_to.options(_generator_backpressure_num_objects=bad)
