"""Ray's actor task execution order: a sync actor runs one caller's calls in submission
order even when a later call's arguments are ready first; for an async actor Ray
promises no order (Ray may run the ready call first; actorlib keeps submission order
there too, see docs/ray-compatibility.md)."""

import time

import actorlib as ray

ray.init(num_cpus=2)


@ray.remote
def delayed_resolution(value):
    time.sleep(0.5)
    return value


@ray.remote
class Counter:
    def __init__(self):
        self.value = 0

    def add(self, addition):
        self.value += addition
        return self.value


@ray.remote
class AsyncCounter:
    def __init__(self):
        self.value = 0

    async def add(self, addition):
        self.value += addition
        return self.value


counter = Counter.remote()
value0 = counter.add.remote(delayed_resolution.remote(1))
value1 = counter.add.remote(2)
assert ray.get([value0, value1]) == [1, 3]  # submission order

async_counter = AsyncCounter.remote()
value0 = async_counter.add.remote(delayed_resolution.remote(1))
value1 = async_counter.add.remote(2)
results = ray.get([value0, value1])
assert sorted(results) in ([1, 3], [2, 3]), results  # both ran, in one order or the other
ray.shutdown()
print("OK")
