"""Nested work: tasks and actor methods submit tasks, create actors, put and get."""

from __future__ import annotations

import pytest
from testkit import T

import actorlib

pytestmark = pytest.mark.shared_runtime


@actorlib.remote
def leaf(x):
    return x + 1


@actorlib.remote
def parent(x):
    return actorlib.get([leaf.remote(x), leaf.remote(x * 10)], timeout=T)


@actorlib.remote
def chain(depth):
    """parent -> child -> grandchild, each blocking on the next."""
    if depth == 0:
        return 0
    return 1 + actorlib.get(chain.remote(depth - 1), timeout=T)


@actorlib.remote
def get_on_a_thread_of_its_own(x):
    """The task waits on a thread of its own that waits on the core (not on ``get``)."""
    import threading

    got = []
    helper = threading.Thread(target=lambda: got.append(actorlib.get(leaf.remote(x), timeout=T)))
    helper.start()
    helper.join(T)
    return got


@actorlib.remote
def nested_then_many(n):
    """Nested waits, then results again: the worker reads on after each wait."""
    first = actorlib.get(leaf.remote(n), timeout=T)
    return [first, *actorlib.get([leaf.remote(i) for i in range(n)], timeout=T)]


@actorlib.remote
async def async_parent(x):
    a = await leaf.remote(x)
    b = await actorlib.get_async(leaf.remote(a))
    return b


@actorlib.remote
def put_inside():
    ref = actorlib.put({"made": "inside"})
    return [ref]


@actorlib.remote
def get_inside(container):
    return actorlib.get(container[0], timeout=T)


@actorlib.remote
def create_actor_inside(n):
    c = Acc.remote()
    for i in range(n):
        c.add.remote(i)
    return actorlib.get(c.total.remote(), timeout=T)


@actorlib.remote
def pass_ref_on(x_ref_list):
    """Receive a ref nested in a list and hand it, top level, to another task."""
    return actorlib.get(leaf.remote(x_ref_list[0]), timeout=T)


@actorlib.remote
def return_actor():
    return Acc.remote()


@actorlib.remote(num_cpus=0)
class Acc:
    def __init__(self):
        self.sum = 0

    def add(self, v):
        self.sum += v
        return self.sum

    def total(self):
        return self.sum


@actorlib.remote(num_cpus=0)
class Spawner:
    def fan_out(self, n):
        return actorlib.get([leaf.remote(i) for i in range(n)], timeout=T)

    def make_child(self):
        self.child = Acc.remote()
        actorlib.get(self.child.add.remote(5), timeout=T)
        return self.child

    def put_and_get(self, v):
        return actorlib.get(actorlib.put(v), timeout=T)


@actorlib.remote(num_cpus=0)
class AsyncSpawner:
    async def fan_out(self, n):
        return await actorlib.get_async([leaf.remote(i) for i in range(n)])


def test_task_submits_tasks(rt):
    assert actorlib.get(parent.remote(1), timeout=T) == [2, 11]


def test_task_waits_on_its_own_thread_that_gets(rt):
    # On the process backend a plain task runs on the thread that reads the worker's
    # socket: the answer to its helper thread's get must still be read meanwhile.
    assert actorlib.get(get_on_a_thread_of_its_own.remote(4), timeout=T) == [5]


def test_tasks_after_nested_waits(rt):
    refs = [nested_then_many.remote(n) for n in range(1, 6)]
    assert actorlib.get(refs, timeout=T) == [
        [n + 1, *range(1, n + 1)] for n in range(1, 6)
    ]


def test_nested_chain(rt):
    assert actorlib.get(chain.remote(3), timeout=T) == 3


def test_async_task_awaits_nested(rt):
    assert actorlib.get(async_parent.remote(1), timeout=T) == 3


def test_put_inside_task_get_in_driver(rt):
    [ref] = actorlib.get(put_inside.remote(), timeout=T)
    assert actorlib.get(ref, timeout=T) == {"made": "inside"}
    assert actorlib.get(get_inside.remote([ref]), timeout=T) == {"made": "inside"}


def test_task_creates_actor(rt):
    assert actorlib.get(create_actor_inside.remote(5), timeout=T) == 10


def test_nested_ref_forwarded(rt):
    r = actorlib.put(41)
    assert actorlib.get(pass_ref_on.remote([r]), timeout=T) == 42


def test_actor_handle_returned_from_task(rt):
    acc = actorlib.get(return_actor.remote(), timeout=T)
    assert actorlib.get(acc.add.remote(3), timeout=T) == 3


def test_actor_method_submits_tasks(rt):
    s = Spawner.remote()
    assert actorlib.get(s.fan_out.remote(3), timeout=T) == [1, 2, 3]
    child = actorlib.get(s.make_child.remote(), timeout=T)
    assert actorlib.get(child.add.remote(1), timeout=T) == 6
    assert actorlib.get(s.put_and_get.remote([1, 2]), timeout=T) == [1, 2]


def test_async_actor_method_awaits_tasks(rt):
    s = AsyncSpawner.remote()
    assert actorlib.get(s.fan_out.remote(4), timeout=T) == [1, 2, 3, 4]
