"""Ray's "AsyncIO / Concurrency for Actors": an async actor awaits object refs of tasks
(await ref, asyncio.gather), the driver awaits refs inside asyncio (await, ref.future()
with asyncio.wrap_future, asyncio.wait_for), an async actor calls another actor, and a
threaded actor (max_concurrency on a sync class) runs calls on several threads at once."""

import asyncio
import threading
import time

import actorlib as ray

ray.init(num_cpus=4)


@ray.remote
def square(x):
    return x * x


@ray.remote
class Counter:
    def __init__(self):
        self.n = 0

    def add(self, k):
        self.n += k
        return self.n


@ray.remote
class Coordinator:
    def __init__(self, counter):
        self.counter = counter

    async def sum_of_squares(self, n):
        values = await asyncio.gather(*[square.remote(i) for i in range(n)])
        return sum(values)

    async def one(self, x):
        return await square.remote(x)

    async def tally(self, ks):
        for k in ks:  # awaited in turn: one caller's calls run in order
            last = await self.counter.add.remote(k)
        return last


counter = Counter.remote()
coordinator = Coordinator.remote(counter)
print("sum of squares:", ray.get(coordinator.sum_of_squares.remote(10)))
print("one:", ray.get(coordinator.one.remote(7)))
print("tally:", ray.get(coordinator.tally.remote([1, 2, 3, 4])))


async def driver():
    print("await ref:", await square.remote(5))
    print("await actor call:", await coordinator.one.remote(6))
    print("wrap_future:", await asyncio.wrap_future(square.remote(8).future()))
    print("gather:", await asyncio.gather(*[square.remote(i) for i in range(4)]))
    print("wait_for:", await asyncio.wait_for(square.remote(9), timeout=30))


asyncio.run(driver())


@ray.remote(max_concurrency=3)
class ThreadedActor:
    def __init__(self):
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.threads = set()
        self.all_in = threading.Barrier(3, timeout=30)

    def work(self, i):
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
            self.threads.add(threading.get_ident())
        self.all_in.wait()  # three calls at once, or this raises BrokenBarrierError
        time.sleep(0.01)
        with self.lock:
            self.running -= 1
        return i

    def stats(self):
        return self.peak, len(self.threads)


threaded = ThreadedActor.remote()
print("threaded:", ray.get([threaded.work.remote(i) for i in range(3)]))
peak, threads = ray.get(threaded.stats.remote())
print("peak concurrency:", peak, "threads:", threads)
ray.shutdown()
print("OK")
