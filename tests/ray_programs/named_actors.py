"""Ray API: named and detached actors, namespaces, get_if_exists, ray.get_actor."""

import actorlib as ray

ray.init(num_cpus=2, namespace="colors")


@ray.remote
class Counter:
    def __init__(self):
        self.value = 0

    def incr(self):
        self.value += 1
        return self.value


@ray.remote
def use_by_name(name):
    return ray.get(ray.get_actor(name).incr.remote())


counter = Counter.options(name="some_name", lifetime="detached").remote()
assert ray.get(counter.incr.remote()) == 1
assert ray.get(use_by_name.remote("some_name")) == 2
same = Counter.options(name="some_name", get_if_exists=True).remote()
assert ray.get(same.incr.remote()) == 3
try:
    Counter.options(name="some_name").remote()
except ValueError:
    pass
else:
    raise AssertionError("a second actor took the name")

other = Counter.options(name="some_name", namespace="shapes").remote()
assert ray.get(other.incr.remote()) == 1
assert ray.get(ray.get_actor("some_name", namespace="shapes").incr.remote()) == 2
assert "some_name" in ray.util.list_named_actors()
try:
    ray.get_actor("no_such_actor")
except ValueError:
    pass
else:
    raise AssertionError("found an actor that does not exist")
ray.kill(counter)
ray.kill(other)
ray.shutdown()
print("OK")
