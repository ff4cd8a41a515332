"""Ray pattern: nested tasks for nested parallelism (a quicksort of tasks)."""

import random

import actorlib as ray

ray.init(num_cpus=4)


def partition(items):
    pivot, rest = items[0], items[1:]
    return [x for x in rest if x < pivot], pivot, [x for x in rest if x >= pivot]


@ray.remote
def quick_sort_distributed(items):
    if len(items) <= 15:
        return sorted(items)
    lesser, pivot, greater = partition(items)
    left = quick_sort_distributed.remote(lesser)
    right = quick_sort_distributed.remote(greater)
    return [*ray.get(left), pivot, *ray.get(right)]


data = [random.randint(0, 1000) for _ in range(60)]
assert ray.get(quick_sort_distributed.remote(data)) == sorted(data)
ray.shutdown()
print("OK")
