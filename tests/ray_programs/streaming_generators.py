"""Ray's "Ray Generators": a task or actor method that yields returns an
ObjectRefGenerator; next() and for, an error raised after some items, ray.wait on
generators (ready when their next item is), async for from asyncio and an async actor,
completed() and is_finished(), and backpressure (_generator_backpressure_num_objects)."""

import asyncio
import time

import actorlib as ray

ray.init(num_cpus=4)


@ray.remote
def count_to(n, delay=0.0):
    for i in range(n):
        time.sleep(delay)
        yield i


@ray.remote
def fails_at(n):
    for i in range(3):
        if i == n:
            raise ValueError(f"failed at {i}")
        yield i


@ray.remote(num_cpus=0)
class Produced:
    def __init__(self):
        self.n = 0

    def note(self):
        self.n += 1

    def count(self):
        return self.n


@ray.remote(_generator_backpressure_num_objects=2)
def produce(tracker, n):
    for i in range(n):
        ray.get(tracker.note.remote())
        yield i


gen = count_to.remote(3)
print("generator type:", type(gen).__name__)
print("next:", ray.get(next(gen)), ray.get(next(gen)), ray.get(next(gen)))
try:
    next(gen)
except StopIteration:
    print("StopIteration at the end")
print("for:", [ray.get(ref) for ref in count_to.remote(4)])

gen = fails_at.remote(1)
print("first item:", ray.get(next(gen)))
try:
    ray.get(next(gen))
except ValueError as err:
    print("then the error:", err.cause)
try:
    next(gen)
except StopIteration:
    print("and the stream ends")

slow, fast = count_to.remote(2, 1.0), count_to.remote(2, 0.0)
ready, unready = ray.wait([slow, fast], num_returns=1, timeout=30)
print("wait on generators:", ready == [fast], unready == [slow])
print("fast's next item:", ray.get(next(fast)))

gen = count_to.remote(2)
print("completed():", ray.get(gen.completed()), "is_finished():", gen.is_finished())


@ray.remote
class Consumer:
    async def total(self, n):
        total = 0
        async for ref in count_to.remote(n):
            total += await ref
        return total

    def squares(self, n):
        for i in range(n):
            yield i * i


consumer = Consumer.remote()
print("async for in an actor:", ray.get(consumer.total.remote(5)))
print("an actor method's generator:", [ray.get(r) for r in consumer.squares.remote(4)])


async def driver():
    return [await ref async for ref in count_to.remote(3)]


print("async for in asyncio:", asyncio.run(driver()))

tracker = Produced.remote()
gen = produce.remote(tracker, 10)
time.sleep(1.0)  # nothing consumed: the producer stops 2 items ahead
print("produced before consuming, at most 3:", ray.get(tracker.count.remote()) <= 3)
print("all:", [ray.get(ref) for ref in gen])
ray.shutdown()
print("OK")
