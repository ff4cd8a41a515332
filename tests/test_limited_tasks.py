"""The ``_concurrency`` task option (what bounds an Executor's calls): at most ``limit``
tasks of a key run at once; the others wait their turn, and meanwhile their refs work as
any task's do (a ``get``, an argument to other work, a cancel that keeps them from
running)."""

from __future__ import annotations

import pytest
from testkit import Recorder, Sync, T, gated

import actorlib
from actorlib.exceptions import TaskCancelledError

pytestmark = pytest.mark.shared_runtime


@actorlib.remote
def record(rec, value):
    actorlib.get(rec.append.remote(value), timeout=T)
    return value


@actorlib.remote
def plus_one(x):
    return x + 1


def _limited(fn, key):
    return fn.options(_concurrency=(key, 1))


@actorlib.remote
def release(sync, key):
    """Sets ``key`` while the driver waits (a task of no limit: it runs at once)."""
    actorlib.get(sync.set.remote(key), timeout=T)


def test_a_task_over_the_limit_waits_for_the_slot(rt):
    sync, rec = Sync.remote(), Recorder.remote()
    first = _limited(gated, "turns").remote(sync, "go", "first")
    second = _limited(record, "turns").remote(rec, "second")
    ready, _ = actorlib.wait([second], timeout=0.3)
    assert ready == []  # the slot is the first's until it ends
    assert actorlib.get(rec.items.remote(), timeout=T) == []
    actorlib.get(sync.set.remote("go"), timeout=T)
    assert actorlib.get([first, second], timeout=T) == ["first", "second"]
    assert actorlib.get(rec.items.remote(), timeout=T) == ["second"]


def test_a_get_of_a_task_waiting_for_its_slot_returns_once_it_ran(rt):
    sync = Sync.remote()
    first = _limited(gated, "get").remote(sync, "go", 1)
    second = _limited(plus_one, "get").remote(41)
    releasing = release.remote(sync, "go")
    assert actorlib.get(second, timeout=T) == 42
    assert actorlib.get([first, releasing], timeout=T) == [1, None]


def test_the_ref_of_a_task_waiting_for_its_slot_is_an_argument_like_any(rt):
    sync = Sync.remote()
    first = _limited(gated, "arg").remote(sync, "go", 1)
    second = _limited(plus_one, "arg").remote(1)
    third = plus_one.remote(second)  # top-level: its value
    nested = actorlib.put([second])  # nested: the ref itself
    releasing = release.remote(sync, "go")
    assert actorlib.get(third, timeout=T) == 3
    assert actorlib.get(actorlib.get(nested, timeout=T)[0], timeout=T) == 2
    assert actorlib.get([first, releasing], timeout=T) == [1, None]


def test_a_cancelled_task_that_waited_for_its_slot_never_runs(rt):
    sync, rec = Sync.remote(), Recorder.remote()
    first = _limited(gated, "cancel").remote(sync, "go", "first")
    second = _limited(record, "cancel").remote(rec, "second")
    third = _limited(record, "cancel").remote(rec, "third")
    actorlib.cancel(second)
    actorlib.get(sync.set.remote("go"), timeout=T)
    with pytest.raises(TaskCancelledError):
        actorlib.get(second, timeout=T)
    assert actorlib.get([first, third], timeout=T) == ["first", "third"]
    assert actorlib.get(rec.items.remote(), timeout=T) == ["third"]
