"""Ray pattern: resources limit how many tasks run at once (custom resources, num_cpus)."""

import time

import actorlib as ray

ray.init(num_cpus=4, resources={"gpu_slot": 1})


@ray.remote
def process(i):
    start = time.time()
    time.sleep(0.05)
    return start, time.time()


def most_at_once(spans):
    """The largest number of (start, end) spans that overlap."""
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    now = peak = 0
    for _, step in edges:
        now += step
        peak = max(peak, now)
    return peak


one_at_a_time = [process.options(resources={"gpu_slot": 1}).remote(i) for i in range(4)]
assert most_at_once(ray.get(one_at_a_time)) == 1
two_at_a_time = [process.options(num_cpus=2).remote(i) for i in range(6)]
assert most_at_once(ray.get(two_at_a_time)) <= 2
try:
    process.options(resources={"no_such": 1}).remote(0)
except ValueError as err:  # Ray would queue it forever; actorlib refuses it at once
    print("infeasible:", type(err).__name__)
else:
    raise AssertionError("an infeasible task was accepted")
ray.shutdown()
print("OK")
