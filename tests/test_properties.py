"""Property-based tests of actor ordering, actor concurrency limits and object lifetime.

Profiles (conftest.py): "fast" by default, ACTORLIB_HYPOTHESIS_PROFILE=thorough for more.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from testkit import Sync, T, kill_all, live_objects

import actorlib

pytestmark = [pytest.mark.shared_runtime, pytest.mark.slow]

# --------------------------------------------------------------------------- ordering


@actorlib.remote(num_cpus=0)
class OrderLog:
    """Sync actor recording (caller, seq); flags any overlap of two calls."""

    def __init__(self):
        self.entries = []
        self.in_call = False
        self.overlap = False

    def record(self, caller, seq, payload, hold):
        if self.in_call:
            self.overlap = True
        self.in_call = True
        try:
            if hold:
                time.sleep(hold)
            self.entries.append((caller, seq, payload))
        finally:
            self.in_call = False
        return seq

    def result(self):
        return self.entries, self.overlap

    def reset(self):
        """Forget the calls so far (the property's next example)."""
        self.entries = []
        self.overlap = False


@actorlib.remote(num_cpus=0)
def delayed(value, delay):
    if delay:
        time.sleep(delay)
    return value


def _submit_plan(log, caller, plan):
    refs = []
    for seq, (delay, hold) in enumerate(plan):
        payload = delayed.remote(seq, delay) if delay is not None else seq
        refs.append(log.record.remote(caller, seq, payload, hold))
    return refs


@actorlib.remote(num_cpus=0)
def task_caller(log, caller, plan):
    return actorlib.get(_submit_plan(log, caller, plan), timeout=T)


@actorlib.remote(num_cpus=0)
class ActorCaller:
    def drive(self, log, caller, plan):
        return actorlib.get(_submit_plan(log, caller, plan), timeout=T)


call_plan = st.lists(
    st.tuples(
        st.sampled_from([None, None, 0.0, 0.001, 0.005, 0.01]),  # None: plain value argument
        st.sampled_from([0.0, 0.0, 0.0005]),  # time spent inside the call
    ),
    min_size=1,
    max_size=6,
)
callers_strategy = st.lists(
    st.tuples(st.sampled_from(["driver", "task", "actor"]), call_plan), min_size=1, max_size=4
)


@pytest.fixture
def order_actors(rt):
    """The ``OrderLog`` and the ``ActorCaller`` actors all of a property's examples share
    (each example resets the log): a new worker process per actor and example was most
    of the property's time. The callers are made as examples first need them."""
    actors = {"log": OrderLog.remote(), "callers": []}
    yield actors
    kill_all([actors["log"], *actors["callers"]])


@given(callers=callers_strategy)
def test_sync_actor_keeps_each_callers_order_and_never_overlaps(order_actors, callers):
    log = order_actors["log"]
    actorlib.get(log.reset.remote(), timeout=T)
    pending = []
    expected = {}
    actor_callers = iter(order_actors["callers"])
    for i, (kind, plan) in enumerate(callers):
        name = f"{kind}-{i}"
        expected[name] = len(plan)
        if kind == "driver":
            pending.extend(_submit_plan(log, name, plan))
        elif kind == "task":
            pending.append(task_caller.remote(log, name, plan))
        else:
            a = next(actor_callers, None)
            if a is None:
                a = ActorCaller.remote()
                order_actors["callers"].append(a)
            pending.append(a.drive.remote(log, name, plan))
    actorlib.get(pending, timeout=T)
    entries, overlap = actorlib.get(log.result.remote(), timeout=T)
    assert not overlap, "two calls of a sync actor overlapped"
    assert len(entries) == sum(expected.values())
    for name, n in expected.items():
        seqs = [seq for (caller, seq, _) in entries if caller == name]
        assert seqs == list(range(n)), f"{name} ran out of order: {seqs}"
    assert all(payload == seq for (_, seq, payload) in entries)


# --------------------------------------------------------------------------- concurrency


@actorlib.remote(num_cpus=0)
class AsyncGauge:
    def __init__(self):
        self.current = 0
        self.peak = 0

    async def work(self, sync, gate, delay, key):
        self.current += 1
        self.peak = max(self.peak, self.current)
        try:
            await sync.arrive.remote(key)
            await sync.wait_count.remote(gate, key)
            await asyncio.sleep(delay)
        finally:
            self.current -= 1
        return True

    async def get_peak(self):
        peak, self.peak = self.peak, 0  # the next example starts from none
        return peak


@actorlib.remote(num_cpus=0)
class ThreadGauge:
    def __init__(self):
        self.lock = threading.Lock()
        self.current = 0
        self.peak = 0

    def work(self, sync, gate, delay, key):
        with self.lock:
            self.current += 1
            self.peak = max(self.peak, self.current)
        try:
            actorlib.get(sync.arrive.remote(key), timeout=T)
            actorlib.get(sync.wait_count.remote(gate, key), timeout=T)
            time.sleep(delay)
        finally:
            with self.lock:
                self.current -= 1
        return True

    def get_peak(self):
        with self.lock:
            peak, self.peak = self.peak, 0  # the next example starts from none
        return peak


@pytest.fixture
def gauges(rt):
    """A gauge per (kind, max_concurrency) and one ``Sync`` with a counter per example,
    shared by the property's examples (an actor per example was most of its time)."""
    actors = {"gauges": {}, "sync": Sync.remote(), "examples": 0}
    yield actors
    kill_all([actors["sync"], *actors["gauges"].values()])


@given(
    kind=st.sampled_from(["async", "threaded"]),
    max_concurrency=st.integers(1, 4),
    delays=st.lists(st.sampled_from([0.0, 0.0, 0.001, 0.003]), min_size=1, max_size=10),
)
def test_actor_concurrency_reaches_but_never_exceeds_max(
    gauges, kind, max_concurrency, delays
):
    """The first min(max_concurrency, n) calls must all be inside at once to pass the gate,
    so the peak is exactly that if the limit is honoured."""
    key = (kind, max_concurrency)
    gauge = gauges["gauges"].get(key)
    if gauge is None:
        cls = AsyncGauge if kind == "async" else ThreadGauge
        gauge = gauges["gauges"][key] = cls.options(max_concurrency=max_concurrency).remote()
    gauges["examples"] += 1
    counter = f"example-{gauges['examples']}"
    gate = min(max_concurrency, len(delays))
    refs = [gauge.work.remote(gauges["sync"], gate, d, counter) for d in delays]
    assert all(actorlib.get(refs, timeout=T))
    assert actorlib.get(gauge.get_peak.remote(), timeout=T) == gate


# --------------------------------------------------------------------------- lifetime


@actorlib.remote(num_cpus=0)
def produce(value):
    return value


@actorlib.remote(num_cpus=0)
def wrap(container):
    """Return the (nested, hence unresolved) refs inside a new object."""
    return list(container)


object_ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.integers(0, 1000)),
        st.tuples(st.just("task"), st.integers(0, 1000)),
        st.tuples(st.just("nest_put"), st.lists(st.integers(0, 100), max_size=3)),
        st.tuples(st.just("nest_task"), st.lists(st.integers(0, 100), max_size=3)),
    ),
    min_size=1,
    max_size=12,
)


@given(ops=object_ops, data=st.data())
def test_objects_freed_exactly_when_last_ref_dies(rt, ops, data):
    refs: list[actorlib.ObjectRef] = []
    children: dict[str, list[str]] = {}
    for kind, arg in ops:
        if kind in ("put", "task"):
            ref = actorlib.put(arg) if kind == "put" else produce.remote(arg)
            children[ref.hex()] = []
        else:
            if not refs:
                continue
            picked = [refs[i % len(refs)] for i in arg]
            ref = actorlib.put(picked) if kind == "nest_put" else wrap.remote(picked)
            children[ref.hex()] = [r.hex() for r in picked]
            del picked
        refs.append(ref)
        del ref
    if refs:  # make sure no task still holds its arguments
        actorlib.wait(refs, num_returns=len(refs), timeout=T)
    keep = data.draw(st.lists(st.booleans(), min_size=len(refs), max_size=len(refs)))
    kept = [r for r, k in zip(refs, keep, strict=True) if k]
    created = {r.hex() for r in refs}
    del refs

    expected: set[str] = set()
    stack = [r.hex() for r in kept]
    while stack:
        oid = stack.pop()
        if oid not in expected:
            expected.add(oid)
            stack.extend(children[oid])
    assert live_objects() & created == expected

    del kept
    assert not (live_objects() & created)
