"""Ray pattern: asyncio to run actor methods concurrently (async actors, max_concurrency)."""

import asyncio
import time

import actorlib as ray

ray.init(num_cpus=2)


@ray.remote
class AsyncActor:
    def __init__(self):
        self.running = 0
        self.peak = 0
        self.full = asyncio.Event()

    async def run_concurrent(self, i):
        self.running += 1
        self.peak = max(self.peak, self.running)
        if self.running == 3:
            self.full.set()
        await asyncio.wait_for(self.full.wait(), 30)  # three at once, or this times out
        await asyncio.sleep(0.01)
        self.running -= 1
        return i

    def peak_concurrency(self):
        return self.peak


@ray.remote
def slow():
    time.sleep(0.05)
    return 7


@ray.remote
class Awaiter:
    async def run(self):
        return await slow.remote()  # an actor awaits a ref


actor = AsyncActor.options(max_concurrency=3).remote()
assert ray.get([actor.run_concurrent.remote(i) for i in range(6)]) == list(range(6))
peak = ray.get(actor.peak_concurrency.remote())
assert peak == 3, peak  # max_concurrency=3: never more
assert ray.get(Awaiter.remote().run.remote()) == 7


async def driver():
    refs = [actor.run_concurrent.remote(i) for i in range(3)]
    return await asyncio.gather(*refs)


assert asyncio.run(driver()) == [0, 1, 2]
ray.shutdown()
print("OK")
