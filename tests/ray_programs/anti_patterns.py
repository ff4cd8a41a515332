"""Ray's anti-patterns, written the recommended way: put a large argument once, process
results as they finish, return values rather than ray.put refs, no ray.get in a loop."""

import numpy as np

import actorlib as ray

ray.init(num_cpus=4)


@ray.remote
def total(array, i):
    return float(array.sum()) + i


@ray.remote
def square(x):
    return x * x


@ray.remote
def make_ref():
    return ray.put(np.ones(1000))  # a task returning a put ref (works, though discouraged)


@ray.remote
def outer():
    return ray.get([square.remote(i) for i in range(3)])  # nested get of a list


big = np.ones(100_000)
big_ref = ray.put(big)  # once, not by value in every call
assert ray.get([total.remote(big_ref, i) for i in range(5)]) == [100_000.0 + i for i in range(5)]
refs = [square.remote(i) for i in range(10)]
done = []
while refs:  # process in completion order
    ready, refs = ray.wait(refs, num_returns=1)
    done.append(ray.get(ready[0]))
assert sorted(done) == [i * i for i in range(10)]
inner = ray.get(make_ref.remote())
assert isinstance(inner, ray.ObjectRef) and float(ray.get(inner).sum()) == 1000.0
assert ray.get(outer.remote()) == [0, 1, 4]
value = ray.get(big_ref)
try:
    value[0] = 5  # objects read from the store are immutable
except ValueError:
    pass
else:
    raise AssertionError("a store value was writable")
ray.shutdown()
print("OK")
