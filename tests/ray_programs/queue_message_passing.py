"""Ray utility: message passing with ray.util.queue.Queue among tasks and actors."""

import asyncio

import actorlib as ray
from actorlib.util.queue import Empty, Full, Queue

ray.init(num_cpus=4)
queue = Queue(maxsize=100)


@ray.remote
def consumer(queue):
    got = []
    try:
        while True:
            got.append(queue.get(block=True, timeout=1))
    except Empty:
        pass
    return got


@ray.remote
class Producer:
    def produce(self, queue, n):
        for i in range(n):
            queue.put(i)
        return n


for i in range(10):
    queue.put(i)
consumers = [consumer.remote(queue) for _ in range(2)]
items = [x for got in ray.get(consumers) for x in got]
assert sorted(items) == list(range(10)), items
assert queue.empty() and queue.qsize() == 0 and len(queue) == 0

assert ray.get(Producer.remote().produce.remote(queue, 5)) == 5
assert [queue.get() for _ in range(5)] == list(range(5))

small = Queue(maxsize=1)
small.put_nowait("a")
assert small.full()
try:
    small.put("b", timeout=0.1)
except Full:
    pass
else:
    raise AssertionError("no Full")
assert small.get_nowait() == "a"
small.shutdown()

queue.put_nowait_batch([1, 2, 3])
assert queue.get_nowait_batch(3) == [1, 2, 3]


async def use_async():
    await queue.put_async("x")
    return await queue.get_async(timeout=5)


assert asyncio.run(use_async()) == "x"
ray.shutdown()
print("OK")
