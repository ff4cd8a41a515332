"""Ray pattern: ray.wait to bound the number of pending tasks (backpressure)."""

import actorlib as ray

ray.init(num_cpus=2)


@ray.remote
class Actor:
    def __init__(self):
        self.done = 0

    def heavy_compute(self, x):
        self.done += 1
        return x * 2


actor = Actor.remote()
MAX_IN_FLIGHT = 5
result_refs = []
results = []
for i in range(40):
    if len(result_refs) > MAX_IN_FLIGHT:
        num_ready = i - MAX_IN_FLIGHT
        ready_refs, result_refs = ray.wait(result_refs, num_returns=num_ready - len(results))
        results.extend(ray.get(ready_refs))
    result_refs.append(actor.heavy_compute.remote(i))
results.extend(ray.get(result_refs))
assert sorted(results) == [2 * i for i in range(40)]
ray.shutdown()
print("OK")
