"""Ray's ray.util.ActorPool, beyond map: submit / get_next / get_next_unordered /
has_next / has_free, push and pop_idle to grow and shrink the pool, and a timeout."""

import time

import actorlib as ray
from actorlib.util import ActorPool

ray.init(num_cpus=4)


@ray.remote(num_cpus=0)
class Worker:
    def __init__(self, name):
        self.name = name

    def double(self, v):
        return 2 * v

    def slow(self, v):
        time.sleep(v)
        return v

    def who(self, _):
        return self.name


a, b = Worker.remote("a"), Worker.remote("b")
pool = ActorPool([a, b])

# submit / get_next: results in submission order.
for v in range(4):
    pool.submit(lambda actor, v: actor.double.remote(v), v)
print("has_free while busy:", pool.has_free())
ordered = []
while pool.has_next():
    ordered.append(pool.get_next())
print("get_next:", ordered)
print("has_free when idle:", pool.has_free())

# get_next_unordered: the quick result first.
pool.submit(lambda actor, v: actor.slow.remote(v), 1.0)
pool.submit(lambda actor, v: actor.slow.remote(v), 0.01)
print("get_next_unordered:", [pool.get_next_unordered(), pool.get_next_unordered()])

# A timeout: get_next raises TimeoutError and the result is still there later.
pool.submit(lambda actor, v: actor.slow.remote(v), 1.0)
try:
    pool.get_next(timeout=0.05)
except TimeoutError:
    print("timed out, still pending:", pool.has_next())
print("then:", pool.get_next())

# pop_idle takes an idle actor out; push puts one (back) in.
popped = pool.pop_idle()
print("popped an idle actor:", popped is not None)
print("one left:", sorted(pool.map(lambda actor, v: actor.who.remote(v), range(3))) in (
    ["a"] * 3, ["b"] * 3))
pool.push(popped)
c = Worker.remote("c")
pool.push(c)
print("map over three:", list(pool.map(lambda actor, v: actor.double.remote(v), range(6))))
print("map_unordered:", sorted(pool.map_unordered(
    lambda actor, v: actor.double.remote(v), range(6))))
ray.shutdown()
print("OK")
