"""Generators on the ``sim`` backend: each item of a streaming generator (task, sync or
async actor method) is a step of its own, so the scheduler interleaves a producer with
everything else; backpressure is a wait it sees; async generators run in virtual time."""

from __future__ import annotations

import asyncio

import actorlib
from actorlib.testing import exhaust, simulate


@actorlib.remote(num_cpus=0, num_returns="streaming")
def count_to(n):
    yield from range(n)


@actorlib.remote(num_cpus=0)
class Log:
    def __init__(self):
        self.entries = []

    def add(self, entry):
        self.entries.append(entry)
        return len(self.entries)

    def read(self):
        return list(self.entries)


@actorlib.remote(num_cpus=0, num_returns="streaming")
def produce(log, n):
    for i in range(n):
        actorlib.get(log.add.remote(f"item {i}"))
        yield i


@actorlib.remote(num_cpus=0)
class Ticker:
    async def ticks(self, n):
        for i in range(n):
            await asyncio.sleep(10)
            yield i

    def numbers(self, n):
        yield from range(n)


def test_each_item_is_a_step_and_a_replay_repeats_them():
    with simulate(seed=5) as first:
        assert [actorlib.get(ref) for ref in count_to.remote(4)] == [0, 1, 2, 3]
    assert first.log.count("task count_to#1 resumes") == 4, first.log
    with simulate(trace=first.trace) as again:
        assert [actorlib.get(ref) for ref in count_to.remote(4)] == [0, 1, 2, 3]
    assert again.log == first.log


def test_a_producers_items_interleave_with_another_caller():
    def body():
        log = Log.remote()
        gen = produce.remote(log, 2)
        other = log.add.remote("other")
        items = [actorlib.get(ref) for ref in gen]
        actorlib.get(other)
        assert items == [0, 1]
        return tuple(actorlib.get(log.read.remote()))

    seen = exhaust(body, max_runs=500)
    assert seen.complete and seen.failure is None
    orders = set(seen.results)
    # "other" lands before, between and after the producer's two items.
    assert {order.index("other") for order in orders} == {0, 1, 2}, orders
    for order in orders:
        assert [e for e in order if e != "other"] == ["item 0", "item 1"]


def test_backpressure_pauses_the_producer_until_items_are_taken():
    with simulate() as run:
        gen = count_to.options(_generator_backpressure_num_objects=1).remote(3)
        assert actorlib.get(next(gen)) == 0
        assert run.log.count("task count_to#1 resumes") <= 1, run.log  # paused at the limit
        assert [actorlib.get(ref) for ref in gen] == [1, 2]


def test_actor_generators_sync_and_async_in_virtual_time():
    with simulate() as run:
        ticker = Ticker.remote()
        ticks = ticker.ticks.options(num_returns="streaming").remote(3)
        assert [actorlib.get(ref) for ref in ticks] == [0, 1, 2]
        numbers = ticker.numbers.options(num_returns="streaming").remote(3)
        assert [actorlib.get(ref) for ref in numbers] == [0, 1, 2]
        assert actorlib.get(ticker.numbers.options(num_returns=2).remote(2)) == [0, 1]
    assert run.now == 30  # three sleeps of 10 s, in no real time
