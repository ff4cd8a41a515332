"""Ray pattern: generators to reduce heap memory ("streaming" and "dynamic" returns)."""

import numpy as np

import actorlib as ray

ray.init(num_cpus=2)


@ray.remote
def large_values(num_returns):
    return [np.full(1000, i, dtype=np.uint8) for i in range(num_returns)]


@ray.remote
def large_values_generator(num_returns):
    for i in range(num_returns):
        yield np.full(1000, i, dtype=np.uint8)


@ray.remote(num_returns="dynamic")
def dynamic_split(n):
    for i in range(n):
        yield i * 10


refs = large_values.options(num_returns=3).remote(3)
assert [int(v[0]) for v in ray.get(refs)] == [0, 1, 2]
refs = large_values_generator.options(num_returns=3).remote(3)  # a fixed num_returns
assert [int(v[0]) for v in ray.get(refs)] == [0, 1, 2]

gen = large_values_generator.remote(4)  # streaming: refs as they are produced
seen = [int(ray.get(ref)[0]) for ref in gen]
assert seen == [0, 1, 2, 3], seen

dyn_ref = dynamic_split.remote(3)
dynamic_refs = ray.get(dyn_ref)
assert [ray.get(r) for r in dynamic_refs] == [0, 10, 20]


@ray.remote
class Streamer:
    def stream(self, n):
        yield from range(n)


assert [ray.get(r) for r in Streamer.remote().stream.remote(3)] == [0, 1, 2]
ray.shutdown()
print("OK")
