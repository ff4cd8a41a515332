"""Ray example: a tree reduction, objects passed between tasks by ref, ray.wait in a loop."""

import actorlib as ray

ray.init(num_cpus=4)


@ray.remote
def make(i):
    return [i]


@ray.remote
def merge(a, b):
    return sorted(a + b)


@ray.remote
def ref_in_list(refs):
    return sum(ray.get(refs))  # nested refs arrive as refs


refs = [make.remote(i) for i in range(16)]
while len(refs) > 1:
    ready, refs = ray.wait(refs, num_returns=2)
    refs.append(merge.remote(*ready))
assert ray.get(refs[0]) == list(range(16))
values = [ray.put(i) for i in range(5)]
assert ray.get(ref_in_list.remote(values)) == 10
ready, not_ready = ray.wait(values, num_returns=5, timeout=10, fetch_local=True)
assert len(ready) == 5 and not not_ready
ray.shutdown()
print("OK")
