"""wait() and as_completed(): num_returns, timeout, input order, completion order, errors."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import pytest
from testkit import Sync, T, ctrl_c_elsewhere, gated

import actorlib

pytestmark = pytest.mark.shared_runtime


@actorlib.remote
def fail():
    raise ValueError("failed but done")


def test_wait_returns_ready_in_input_order(rt):
    sync = Sync.remote()
    b1 = sync.wait.remote("never")
    d1 = actorlib.put(1)
    b2 = gated.remote(sync, "never", 2)
    d2 = actorlib.put(2)
    refs = [b1, d1, b2, d2]
    ready, not_ready = actorlib.wait(refs, num_returns=2, timeout=T)
    assert ready == [d1, d2]
    assert not_ready == [b1, b2]
    actorlib.get(sync.set.remote("never"), timeout=T)


def test_wait_default_num_returns_is_one(rt):
    sync = Sync.remote()
    blocked = sync.wait.remote()
    done = [actorlib.put(i) for i in range(3)]
    ready, not_ready = actorlib.wait([blocked, *done], timeout=T)
    assert len(ready) == 1 and ready[0] in done
    assert len(not_ready) == 3 and blocked in not_ready
    actorlib.get(sync.set.remote(), timeout=T)


def test_wait_timeout_returns_partial(rt):
    sync = Sync.remote()
    blocked = sync.wait.remote()
    done = actorlib.put("x")
    start = time.monotonic()
    ready, not_ready = actorlib.wait([blocked, done], num_returns=2, timeout=0.2)
    assert time.monotonic() - start < T
    assert ready == [done] and not_ready == [blocked]
    ready, not_ready = actorlib.wait([blocked], num_returns=1, timeout=0)
    assert ready == [] and not_ready == [blocked]
    actorlib.get(sync.set.remote(), timeout=T)
    ready, not_ready = actorlib.wait([blocked, done], num_returns=2, timeout=T)
    assert ready == [blocked, done] and not_ready == []


def test_wait_blocks_until_num_returns(rt):
    sync = Sync.remote()
    refs = [gated.remote(sync, f"k{i}", i) for i in range(3)]
    actorlib.get(sync.set.remote("k1"), timeout=T)
    ready, not_ready = actorlib.wait(refs, num_returns=1, timeout=T)
    assert ready == [refs[1]] and not_ready == [refs[0], refs[2]]
    actorlib.get([sync.set.remote("k0"), sync.set.remote("k2")], timeout=T)
    ready, not_ready = actorlib.wait(refs, num_returns=3, timeout=T)
    assert ready == refs and not_ready == []


def test_wait_loop_over_many_refs(rt):
    """A wait() loop over the remaining refs (the way to take results as they come): each
    step sees exactly the one released, however many the earlier steps watched."""
    sync = Sync.remote()
    refs = [sync.wait.remote(f"k{i}") for i in range(40)]
    not_ready = list(refs)
    for i in reversed(range(len(refs))):
        actorlib.get(sync.set.remote(f"k{i}"), timeout=T)
        ready, not_ready = actorlib.wait(not_ready, timeout=T)
        assert ready == [refs[i]]
        assert not_ready == refs[:i]


def test_failed_task_counts_as_ready(rt):
    bad = fail.remote()
    ready, not_ready = actorlib.wait([bad], timeout=T)
    assert ready == [bad] and not_ready == []
    with pytest.raises(ValueError):
        actorlib.get(bad, timeout=T)


def test_wait_fetch_local_accepted(rt):
    r = actorlib.put(1)
    assert actorlib.wait([r], fetch_local=False, timeout=T) == ([r], [])


def test_wait_rejects_duplicates(rt):
    r = actorlib.put(1)
    with pytest.raises(ValueError):
        actorlib.wait([r, r])


def test_wait_rejects_too_many_returns(rt):
    refs = [actorlib.put(1), actorlib.put(2)]
    with pytest.raises(ValueError):
        actorlib.wait(refs, num_returns=3)


def test_as_completed_sync_follows_completion_order(rt):
    sync = Sync.remote()
    refs = [gated.remote(sync, f"k{i}", i) for i in range(4)]
    order = [3, 1, 0, 2]
    actorlib.get(sync.set.remote(f"k{order[0]}"), timeout=T)
    seen = []
    for ref in actorlib.as_completed(refs, timeout=T):
        assert isinstance(ref, actorlib.ObjectRef)
        seen.append(actorlib.get(ref, timeout=T))
        if len(seen) < len(order):
            actorlib.get(sync.set.remote(f"k{order[len(seen)]}"), timeout=T)
    assert seen == order


def test_as_completed_yields_each_ref_once(rt):
    refs = [actorlib.put(i) for i in range(20)]
    got = list(actorlib.as_completed(refs))
    assert sorted(r.hex() for r in got) == sorted(r.hex() for r in refs)


@actorlib.remote
def wait_now_inside(refs):
    actorlib.get(refs, timeout=T)  # every ref is ready from here on
    ready, rest = actorlib.wait(refs, num_returns=len(refs), timeout=0)
    return len(ready), len(rest)


def test_wait_with_zero_timeout_inside_a_task_sees_ready_objects(rt):
    refs = [actorlib.put(i) for i in range(200)]
    assert actorlib.get(wait_now_inside.remote(refs), timeout=T) == (200, 0)


def test_an_interrupted_get_stops_watching(rt, monkeypatch):
    """Ctrl-C in a blocked ``get`` ends its watch: an object that never becomes ready
    must not keep a watcher for every interrupted wait."""
    sync = Sync.remote()
    blocked = sync.wait.remote("never")
    client = blocked._client
    watched: list[Any] = []
    unwatched: list[Any] = []
    real_watch, real_unwatch = client.watch, client.unwatch

    def watch(ids, callback, reads=True):
        watched.append(callback)
        return real_watch(ids, callback, reads)

    def unwatch(ids, callback):
        unwatched.append(callback)
        return real_unwatch(ids, callback)

    monkeypatch.setattr(client, "watch", watch)
    monkeypatch.setattr(client, "unwatch", unwatch)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            actorlib.get(blocked, timeout=T)
    finally:
        timer.cancel()
    assert watched, "get() never watched the blocked object"
    assert all(any(u is w for u in unwatched) for w in watched)
    actorlib.get(sync.set.remote("never"), timeout=T)
    actorlib.get(blocked, timeout=T)


def test_wait_over_many_refs_gives_the_first_ready_in_input_order(rt):
    """More refs than a backend checks first (the oldest few), some ready far along the
    list: the ready ones are the first of those complete in input order, the rest keep
    their order, however many are asked for."""
    sync = Sync.remote()
    refs = [sync.wait.remote(f"k{i}") for i in range(100)]
    done = [5, 70, 71, 99, *range(30, 42)]
    actorlib.get([sync.set.remote(f"k{i}") for i in done], timeout=T)
    actorlib.get([refs[i] for i in done], timeout=T)
    ready, not_ready = actorlib.wait(refs, num_returns=3, timeout=T)
    assert ready == [refs[5], refs[30], refs[31]]
    assert not_ready == [r for r in refs if r not in ready]
    ready, not_ready = actorlib.wait(tuple(refs), num_returns=len(done), timeout=T)
    assert ready == [refs[i] for i in sorted(done)]
    assert not_ready == [refs[i] for i in range(100) if i not in done]
    actorlib.get([sync.set.remote(f"k{i}") for i in range(100)], timeout=T)
    not_ready = refs
    while not_ready:
        want = min(7, len(not_ready))
        ready, rest = actorlib.wait(not_ready, num_returns=want, timeout=T)
        assert len(ready) == want and len(ready) + len(rest) == len(not_ready)
        assert set(ready) | set(rest) == set(not_ready)
        assert sorted(ready, key=refs.index) == ready and sorted(rest, key=refs.index) == rest
        not_ready = rest


def test_wait_over_many_refs_still_checks_each(rt):
    """A long list is checked as a short one is: a stray item, a duplicate at its end,
    a generator among plain refs."""
    refs = [actorlib.put(i) for i in range(200)]
    with pytest.raises(TypeError, match="takes ObjectRefs, got int: 7"):
        actorlib.wait([*refs, 7])
    with pytest.raises(ValueError, match="unique"):
        actorlib.wait([*refs, refs[150]])
    with pytest.raises(TypeError, match="not a single one"):
        actorlib.wait(refs[0])
    ready, not_ready = actorlib.wait(refs, num_returns=200, timeout=T)
    assert ready == refs and not_ready == []
    gen = count_to.remote(2)
    ready, not_ready = actorlib.wait([*refs[:100], gen], num_returns=101, timeout=T)
    assert ready == [*refs[:100], gen] and not_ready == []
    assert actorlib.get(next(gen), timeout=T) == 0


@actorlib.remote
def count_to(n):
    yield from range(n)


def test_ctrl_c_reaches_a_blocked_get_whichever_thread_receives_it(rt):
    """A main thread asleep in ``get`` wakes for Ctrl-C, whichever thread of the process
    the kernel hands it to (``ctrl_c_elsewhere``)."""
    sync = Sync.remote()
    blocked = sync.wait.remote("late")
    with ctrl_c_elsewhere("get", "api.py", lambda: actorlib.get(sync.set.remote("late"))):
        actorlib.get(blocked, timeout=T)
    actorlib.get(blocked, timeout=T)


@pytest.mark.parametrize("wait", ["result", "exception"])
def test_ctrl_c_reaches_a_blocked_ref_future_whichever_thread_receives_it(rt, wait):
    """``ObjectRef.future()``'s ``result()`` / ``exception()`` on the main thread wake
    for Ctrl-C at once, as ``get`` does (before, the stdlib's wait slept on the future's
    condition until the value came); the future is settled as usual afterwards."""
    sync = Sync.remote()
    future = gated.remote(sync, "late", 7).future()
    with ctrl_c_elsewhere(wait, "interruptible.py",
                          lambda: actorlib.get(sync.set.remote("late"), timeout=T)):
        getattr(future, wait)()
    assert future.result(timeout=T) == 7
    assert future.exception(timeout=0) is None
