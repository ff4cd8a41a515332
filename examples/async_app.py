"""actorlib in an asyncio application.

Shows `await ref`, `await actorlib.get_async([...])`, `asyncio.gather` over refs,
`async def` remote functions, and an async actor whose calls interleave up to
`max_concurrency`.

Run it with:  python examples/async_app.py
"""

from __future__ import annotations

import asyncio
import time

import actorlib


@actorlib.remote
def cpu_work(x: int) -> int:
    # Ordinary (sync) function: runs on a worker, the event loop is never blocked.
    return sum(i * i for i in range(x))


@actorlib.remote(num_cpus=0)
async def fetch(key: str, delay: float) -> str:
    # async def remote functions are supported (Ray has none). This one only waits on
    # I/O, so it asks for no CPU: any number of them may run at once.
    await asyncio.sleep(delay)
    return f"value-of-{key}"


@actorlib.remote(max_concurrency=8)
class Cache:
    """An async actor: its coroutine methods interleave, up to max_concurrency at once."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.in_flight = 0
        self.peak = 0

    async def load(self, key: str) -> str:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(0.1)  # simulated I/O; other calls run meanwhile
            self.data[key] = key.upper()
            return self.data[key]
        finally:
            self.in_flight -= 1

    async def stats(self) -> dict[str, int]:
        return {"entries": len(self.data), "peak_concurrency": self.peak}


async def main() -> None:
    # 1. Await a single ref directly.
    print("cpu_work(1000):", await cpu_work.remote(1000))

    # 2. Await many refs at once; results come back in input order.
    results = await actorlib.get_async([cpu_work.remote(n) for n in (10, 20, 30)])
    print("get_async:", results)

    # 3. Refs are awaitables, so asyncio.gather works on them too.
    start = time.perf_counter()
    values = await asyncio.gather(*(fetch.remote(f"k{i}", 0.2) for i in range(5)))
    print(f"gather over 5 async tasks: {values} in {time.perf_counter() - start:.2f}s")

    # 4. An async actor: 8 loads of 0.1 s each overlap instead of taking 0.8 s.
    cache = Cache.remote()
    start = time.perf_counter()
    loaded = await asyncio.gather(*(cache.load.remote(f"key{i}") for i in range(8)))
    elapsed = time.perf_counter() - start
    print(f"async actor loaded {loaded} in {elapsed:.2f}s")
    print("actor stats:", await cache.stats.remote())

    # 5. A timeout on an await is an ordinary asyncio timeout.
    slow = fetch.remote("slow", 2.0)
    try:
        await asyncio.wait_for(asyncio.ensure_future(slow), timeout=0.1)
    except asyncio.TimeoutError:
        print("asyncio.wait_for timed out as expected; cancelling the task")
        actorlib.cancel(slow)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    finally:
        actorlib.shutdown()
    print("done")
