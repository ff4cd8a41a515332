"""Waits of the public API that block on something else than ``get``/``wait`` (a future, a
pool's result) still drive the ``sim`` backend without its idle driver.

The simulator runs steps only while a thread waits through the core's wait hook
(``waiting.blocking_wait``); ``simulate()`` leaves the idle driver off, so before these
waits went through the hook they hung for good. Each test also checks that the run is
the same step for step under one seed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Any

import pytest

import actorlib
from actorlib.testing import simulate


@actorlib.remote(num_cpus=0)
def square(x: int) -> int:
    return x * x


@actorlib.remote(num_cpus=0)
class Sleeper:
    async def sleep(self, seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds


@actorlib.remote(num_cpus=0)
def via_future(x: int) -> int:
    """A task that waits on a ref's future (its worker must wait through the hook too)."""
    return square.remote(x).future().result() + 1


def _twice(body: Callable[[Any], None], seed: int) -> None:
    """Run ``body`` under ``simulate(seed=seed)`` twice: the same trace both times."""
    traces = []
    for _ in range(2):
        with simulate(seed=seed) as run:
            body(run)
        traces.append(run.trace)
    assert traces[0] == traces[1]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("seed", [0, 1])
def test_a_refs_future_drives_the_run(seed):
    def body(run):
        assert square.remote(3).future().result() == 9
        assert square.remote(2).future().exception() is None
        assert actorlib.get(via_future.remote(4)) == 17
        s = Sleeper.remote()
        slow = s.sleep.remote(100).future()
        with pytest.raises(concurrent.futures.TimeoutError):
            slow.result(timeout=10)  # in virtual time
        assert 10 <= run.now < 100
        assert slow.result() == 100

    _twice(body, seed)


@pytest.mark.timeout(30)
def test_as_future_drives_the_run():
    async def main():
        return await square.remote(3).as_future(), await asyncio.gather(
            square.remote(1).as_future(), square.remote(2).as_future())

    def body(run):
        assert asyncio.run(main()) == (9, [1, 4])

    _twice(body, 3)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("seed", [0, 1])
def test_executor_drives_the_run(seed):
    def body(run):
        with actorlib.Executor(max_workers=2) as ex:
            assert ex.submit(pow, 2, 3).result() == 8
            assert list(ex.map(pow, [2, 3, 4], [2, 2, 2])) == [4, 9, 16]
            assert list(ex.map(abs, range(-5, 0), chunksize=2)) == [5, 4, 3, 2, 1]
            late = ex.submit(abs, -7)  # left to shutdown(wait=True) at the block's end
        assert late.result(timeout=0) == 7

    _twice(body, seed)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("seed", [0, 1])
def test_pool_drives_the_run(seed):
    def body(run):
        with actorlib.Pool(2) as pool:
            assert pool.map(abs, [-1, -2, -3]) == [1, 2, 3]
            assert pool.apply_async(abs, (-4,)).get() == 4
            assert pool.map_async(abs, [-5, -6]).get() == [5, 6]
            assert list(pool.imap(abs, [-1, -2], chunksize=1)) == [1, 2]
            assert sorted(pool.imap_unordered(abs, [-1, -2, -3])) == [1, 2, 3]
            waited = pool.apply_async(abs, (-8,))
            waited.wait()
            assert waited.ready() and waited.get(timeout=0) == 8
            pool.close()
            pool.join()

    _twice(body, seed)


@pytest.mark.timeout(30)
def test_a_pool_map_whose_chunk_fails_raises_on_sim():
    """The map's wait stops at the first failure (FIRST_EXCEPTION through the hook)."""
    def body(run):
        with actorlib.Pool(2) as pool:
            with pytest.raises(ZeroDivisionError):
                pool.map(_inverse, [1, 0, 2], chunksize=1)
            with pytest.raises(ZeroDivisionError):
                pool.map_async(_inverse, [1, 0, 2], chunksize=1).get()

    _twice(body, 5)


def _inverse(x: int) -> float:
    return 1 / x


@actorlib.remote(num_cpus=0)
def count_to(n: int):
    yield from range(n)


@pytest.mark.timeout(30)
def test_the_other_waits_of_the_api_drive_the_run():
    """Streaming generators, ActorPool, util.queue.Queue and a placement group's ready():
    each waits through get/wait, so the run moves without the idle driver."""
    from actorlib.util import ActorPool
    from actorlib.util.placement_group import placement_group
    from actorlib.util.queue import Empty, Queue

    @actorlib.remote(num_cpus=0)
    class Doubler:
        def double(self, x: int) -> int:
            return 2 * x

    def body(run):
        assert [actorlib.get(r) for r in count_to.remote(3)] == [0, 1, 2]
        pool = ActorPool([Doubler.remote(), Doubler.remote()])
        assert list(pool.map(lambda a, v: a.double.remote(v), [1, 2, 3])) == [2, 4, 6]
        assert sorted(pool.map_unordered(lambda a, v: a.double.remote(v), [4, 5])) == [8, 10]
        queue = Queue()
        queue.put(7)
        assert queue.get(timeout=5) == 7
        before = run.now
        with pytest.raises(Empty):
            queue.get(timeout=5)  # in virtual time
        assert run.now - before >= 5
        pg = placement_group([{"CPU": 1}])
        assert actorlib.get(pg.ready()) is not None
        assert pg.wait(5)

    _twice(body, 6)
