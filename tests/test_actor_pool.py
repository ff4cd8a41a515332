"""actorlib.ActorPool: the semantics of Ray's ray.util.ActorPool, on every backend."""

from __future__ import annotations

import pytest
from testkit import Sync, T

import actorlib
from actorlib import ActorPool
from actorlib.exceptions import GetTimeoutError

pytestmark = pytest.mark.shared_runtime


@actorlib.remote
class Worker:
    def __init__(self, name="w"):
        self.name = name
        self.calls = 0

    def double(self, x):
        self.calls += 1
        return 2 * x

    def tagged(self, x):
        return (self.name, x)

    def fail(self, x):
        raise ValueError(f"bad {x}")

    def blocked(self, sync, key, x):
        actorlib.get(sync.wait.remote(key), timeout=T)
        return x

    def count(self):
        return self.calls


def double(a, v):
    return a.double.remote(v)


def test_importable_like_ray():
    from actorlib.util import ActorPool as FromUtil

    assert FromUtil is ActorPool


def test_map_in_order_and_unordered(rt):
    pool = ActorPool([Worker.remote() for _ in range(3)])
    assert list(pool.map(double, range(10))) == [2 * x for x in range(10)]
    assert sorted(pool.map_unordered(double, range(10))) == [2 * x for x in range(10)]
    assert list(pool.map(double, [])) == []
    assert not pool.has_next()


def test_every_actor_gets_work_one_call_at_a_time(rt):
    actors = [Worker.options(max_concurrency=1).remote(f"w{i}") for i in range(2)]
    pool = ActorPool(actors)
    for v in range(5):
        pool.submit(lambda a, v: a.tagged.remote(v), v)
    assert len(pool._pending_submits) == 3  # the rest wait in the pool, not in mailboxes
    names = {pool.get_next(timeout=T)[0] for _ in range(5)}
    assert names == {"w0", "w1"}


def test_submit_get_next_has_next(rt):
    pool = ActorPool([Worker.remote(), Worker.remote()])
    assert not pool.has_next()
    for v in range(5):  # more than actors: the rest wait in the pool
        pool.submit(double, v)
    assert not pool.has_free()
    assert pool.has_next()
    assert [pool.get_next(timeout=T) for _ in range(5)] == [0, 2, 4, 6, 8]
    assert not pool.has_next()
    assert pool.has_free()
    with pytest.raises(StopIteration):
        pool.get_next()
    with pytest.raises(StopIteration):
        pool.get_next_unordered()


def test_get_next_unordered_then_get_next_is_refused(rt):
    pool = ActorPool([Worker.remote()])
    pool.submit(double, 1)
    pool.submit(double, 2)
    assert pool.get_next_unordered(timeout=T) == 2
    assert pool.get_next_unordered(timeout=T) == 4
    pool.submit(double, 3)
    assert pool.get_next(timeout=T) == 6


def test_get_next_after_get_next_unordered_raises(rt):
    sync = Sync.remote()
    pool = ActorPool([Worker.remote(), Worker.remote()])
    pool.submit(lambda a, v: a.blocked.remote(sync, "go", v), 1)
    pool.submit(double, 2)
    assert pool.get_next_unordered(timeout=T) == 4
    with pytest.raises(ValueError, match="get_next_unordered"):
        pool.get_next()
    actorlib.get(sync.set.remote("go"), timeout=T)
    assert pool.get_next_unordered(timeout=T) == 1


def test_timeouts(rt):
    sync = Sync.remote()
    pool = ActorPool([Worker.remote()])
    pool.submit(lambda a, v: a.blocked.remote(sync, "go", v), 1)
    with pytest.raises(TimeoutError):
        pool.get_next(timeout=0.01)
    with pytest.raises(GetTimeoutError):
        pool.get_next_unordered(timeout=0.01)
    assert pool.has_next()  # a plain timeout keeps the call
    with pytest.raises(TimeoutError, match="ignored"):
        pool.get_next(timeout=0.01, ignore_if_timedout=True)
    assert not pool.has_next()  # ... ignore_if_timedout drops it
    actorlib.get(sync.set.remote("go"), timeout=T)


def test_get_next_unordered_ignore_if_timedout(rt):
    sync = Sync.remote()
    pool = ActorPool([Worker.remote()])
    pool.submit(lambda a, v: a.blocked.remote(sync, "go", v), 1)
    with pytest.raises(TimeoutError, match="ignored"):
        pool.get_next_unordered(timeout=0.01, ignore_if_timedout=True)
    assert not pool.has_next()
    assert pool.has_free()
    actorlib.get(sync.set.remote("go"), timeout=T)


def test_errors_arrive_as_the_original_type(rt):
    pool = ActorPool([Worker.remote()])
    pool.submit(lambda a, v: a.fail.remote(v), 7)
    with pytest.raises(ValueError, match="bad 7"):
        pool.get_next(timeout=T)
    # A failed call nobody fetched does not break the next map.
    pool.submit(lambda a, v: a.fail.remote(v), 8)
    assert list(pool.map(double, [1, 2])) == [2, 4]


def test_push_and_pop_idle(rt):
    a, b = Worker.remote("a"), Worker.remote("b")
    pool = ActorPool([a])
    assert pool.pop_idle() == a
    assert pool.pop_idle() is None
    assert not pool.has_free()
    pool.push(b)
    with pytest.raises(ValueError, match="already belongs"):
        pool.push(b)
    pool.submit(lambda actor, v: actor.tagged.remote(v), 1)
    with pytest.raises(ValueError, match="already belongs"):
        pool.push(b)  # busy actors belong too
    assert pool.get_next(timeout=T) == ("b", 1)
    pool.push(a)
    assert sorted(pool.map(lambda actor, v: actor.tagged.remote(v), [1, 2])) in (
        [("a", 1), ("b", 2)], [("a", 2), ("b", 1)],
    )


def test_push_takes_a_waiting_submit(rt):
    sync = Sync.remote()
    pool = ActorPool([Worker.remote()])
    pool.submit(lambda a, v: a.blocked.remote(sync, "go", v), 1)
    pool.submit(double, 5)  # waits: the only actor is busy
    pool.push(Worker.remote())  # ... and runs on the new actor at once
    assert pool.get_next_unordered(timeout=T) == 10
    actorlib.get(sync.set.remote("go"), timeout=T)
    assert pool.get_next_unordered(timeout=T) == 1
