"""Resources: cluster/available/nodes, custom resources, GPUs, infeasible requests,
runtime_env env_vars and the runtime context."""

from __future__ import annotations

import os
import re
import time

import pytest
from testkit import Sync, T, wait_until

import actorlib
from actorlib import exceptions as exc

pytestmark = pytest.mark.shared_runtime


@actorlib.remote(num_cpus=0)
class Tracker:
    """Counts how many callers are inside a region at once."""

    def __init__(self):
        self.current = 0
        self.peak = 0

    def enter(self):
        self.current += 1
        self.peak = max(self.peak, self.current)

    def leave(self):
        self.current -= 1

    def get_peak(self):
        return self.peak


@actorlib.remote
def tracked(tracker, sync=None, n=0):
    actorlib.get(tracker.enter.remote(), timeout=T)
    if sync is not None:
        actorlib.get(sync.barrier.remote(n), timeout=T)
    else:
        time.sleep(0.02)  # give an illegal overlap the chance to show up
    actorlib.get(tracker.leave.remote(), timeout=T)
    return True


@actorlib.remote
def gpu_ids(sync=None, n=0):
    if sync is not None:
        actorlib.get(sync.barrier.remote(n), timeout=T)
    return actorlib.get_gpu_ids()


@actorlib.remote(num_cpus=0)
class GpuActor:
    def ids(self):
        return actorlib.get_gpu_ids()


@actorlib.remote
def read_env(*names):
    return {n: os.environ.get(n) for n in names}


@actorlib.remote(num_cpus=0)
class EnvActor:
    def read(self, name):
        return os.environ.get(name)


@actorlib.remote
def hold(sync, started):
    actorlib.get(started.arrive.remote(), timeout=T)
    actorlib.get(sync.wait.remote(), timeout=T)
    return True


@actorlib.remote
def context_info():
    ctx = actorlib.get_runtime_context()
    return ctx.get_task_id(), ctx.get_node_id(), ctx.namespace


@actorlib.remote
def noop():
    return None


def test_cluster_resources(rt):
    res = actorlib.cluster_resources()
    assert res["CPU"] == 4
    assert res.get("GPU", 0) == 0
    assert all(isinstance(v, (int, float)) for v in res.values())


@pytest.mark.init_kwargs(num_gpus=2, resources={"foo": 2, "bar": 0.5})
def test_cluster_resources_with_gpus_and_custom(rt):
    res = actorlib.cluster_resources()
    assert res["CPU"] == 4 and res["GPU"] == 2 and res["foo"] == 2 and res["bar"] == 0.5


def test_nodes(rt):
    nodes = actorlib.nodes()
    assert isinstance(nodes, list) and nodes
    for node in nodes:
        assert isinstance(node["NodeID"], str) and node["NodeID"]
        assert isinstance(node["Alive"], bool)
        assert isinstance(node["Resources"], dict)
    alive = [n for n in nodes if n["Alive"]]
    assert sum(n["Resources"].get("CPU", 0) for n in alive) == 4


@pytest.mark.init_kwargs(resources={"slot": 1})
def test_available_resources_track_running_tasks(rt):
    total = actorlib.cluster_resources()
    wait_until(lambda: actorlib.available_resources() == total, what="idle resources")
    sync, started = Sync.remote(), Sync.remote()
    ref = hold.options(num_cpus=2, resources={"slot": 1}).remote(sync, started)
    actorlib.get(started.wait_count.remote(1), timeout=T)
    avail = actorlib.available_resources()
    # The held custom resource is in use. (Its CPUs are not checked: a task blocked in
    # get() lends its CPUs to other tasks, as in Ray.)
    assert avail.get("slot", 0) == 0
    actorlib.get(sync.set.remote(), timeout=T)
    assert actorlib.get(ref, timeout=T) is True
    wait_until(lambda: actorlib.available_resources() == total, what="resources released")


@pytest.mark.init_kwargs(resources={"foo": 2})
def test_custom_resource_limits_concurrency(rt):
    tracker = Tracker.remote()
    refs = [tracked.options(resources={"foo": 2}).remote(tracker) for _ in range(4)]
    assert all(actorlib.get(refs, timeout=T))
    assert actorlib.get(tracker.get_peak.remote(), timeout=T) == 1


@pytest.mark.init_kwargs(resources={"foo": 2})
def test_custom_resource_allows_fitting_overlap(rt):
    tracker, sync = Tracker.remote(), Sync.remote()
    refs = [tracked.options(resources={"foo": 1}).remote(tracker, sync, 2) for _ in range(2)]
    assert all(actorlib.get(refs, timeout=T))
    assert actorlib.get(tracker.get_peak.remote(), timeout=T) == 2


def test_get_gpu_ids_in_driver_is_empty(rt):
    assert actorlib.get_gpu_ids() == []


@pytest.mark.init_kwargs(num_gpus=2)
def test_gpu_task_gets_one_id(rt):
    ids = actorlib.get(gpu_ids.options(num_gpus=1).remote(), timeout=T)
    assert len(ids) == 1 and ids[0] in (0, 1)
    both = actorlib.get(gpu_ids.options(num_gpus=2).remote(), timeout=T)
    assert sorted(both) == [0, 1]
    assert actorlib.get(gpu_ids.remote(), timeout=T) == []


@pytest.mark.init_kwargs(num_gpus=2)
def test_concurrent_gpu_tasks_get_different_ids(rt):
    sync = Sync.remote()
    refs = [gpu_ids.options(num_gpus=1).remote(sync, 2) for _ in range(2)]
    a, b = actorlib.get(refs, timeout=T)
    assert len(a) == 1 and len(b) == 1
    assert a != b and sorted(a + b) == [0, 1]


@pytest.mark.init_kwargs(num_gpus=2)
def test_gpu_actor_holds_an_id(rt):
    actor = GpuActor.options(num_gpus=1).remote()
    ids = actorlib.get(actor.ids.remote(), timeout=T)
    assert len(ids) == 1 and ids[0] in (0, 1)
    task_ids = actorlib.get(gpu_ids.options(num_gpus=1).remote(), timeout=T)
    assert task_ids != ids  # the actor keeps its GPU for its lifetime


def test_infeasible_gpu_request(rt):
    with pytest.raises(exc.InfeasibleResourceError) as info:
        noop.options(num_gpus=1).remote()
    assert isinstance(info.value, ValueError)
    assert "GPU" in str(info.value)


def test_infeasible_custom_resource_names_it(rt):
    with pytest.raises(exc.InfeasibleResourceError, match="unobtainium"):
        noop.options(resources={"unobtainium": 1}).remote()


def test_infeasible_cpu_request_names_request_and_capacity(rt):
    with pytest.raises(exc.InfeasibleResourceError) as info:
        noop.options(num_cpus=64).remote()
    msg = str(info.value)
    assert "CPU" in msg and "64" in msg
    assert re.search(r"(?<![\d.])4(\.0+)?(?!\d)", msg), f"capacity 4 not named in {msg!r}"


def test_infeasible_actor(rt):
    with pytest.raises(exc.InfeasibleResourceError, match="GPU"):
        GpuActor.options(num_gpus=1).remote()


def test_runtime_env_env_vars_in_task(rt):
    name = "ACTORLIB_TEST_TASK_VAR"
    assert name not in os.environ
    env = {"env_vars": {name: "hello"}}
    got = actorlib.get(read_env.options(runtime_env=env).remote(name), timeout=T)
    assert got == {name: "hello"}
    # it does not leak into later tasks without the runtime_env
    assert actorlib.get(read_env.remote(name), timeout=T) == {name: None}


def test_runtime_env_does_not_leak_into_driver(rt):
    name = "ACTORLIB_TEST_DRIVER_VAR"
    actorlib.get(read_env.options(runtime_env={"env_vars": {name: "x"}}).remote(name), timeout=T)
    assert name not in os.environ


@actorlib.remote
def read_env_nested(inner_name, outer_name):
    """Runs with env_vars of its own and waits on a task that has others."""
    inner = read_env.options(runtime_env={"env_vars": {inner_name: "inner"}})
    return actorlib.get(inner.remote(inner_name), timeout=T)


def test_nested_tasks_with_env_vars_do_not_deadlock(rt):
    outer, inner = "ACTORLIB_TEST_OUTER_VAR", "ACTORLIB_TEST_INNER_VAR"
    task = read_env_nested.options(runtime_env={"env_vars": {outer: "outer"}})
    assert actorlib.get(task.remote(inner, outer), timeout=T) == {inner: "inner"}
    assert inner not in os.environ and outer not in os.environ


def test_runtime_env_env_vars_in_actor(rt):
    name = "ACTORLIB_TEST_ACTOR_VAR"
    actor = EnvActor.options(runtime_env={"env_vars": {name: "actor-value"}}).remote()
    assert actorlib.get(actor.read.remote(name), timeout=T) == "actor-value"
    assert actorlib.get(actor.read.remote(name), timeout=T) == "actor-value"


@pytest.mark.init_kwargs(runtime_env={"env_vars": {"ACTORLIB_TEST_JOB_VAR": "job"}})
def test_init_runtime_env_applies_to_tasks(rt):
    name = "ACTORLIB_TEST_JOB_VAR"
    assert actorlib.get(read_env.remote(name), timeout=T) == {name: "job"}


@pytest.mark.init_kwargs(namespace="ns-ctx")
def test_runtime_context(rt):
    task_id, node_id, namespace = actorlib.get(context_info.remote(), timeout=T)
    assert isinstance(task_id, str) and task_id
    assert node_id in {n["NodeID"] for n in actorlib.nodes()}
    assert namespace == "ns-ctx"
    assert actorlib.get_runtime_context().namespace == "ns-ctx"
    other_id, _, _ = actorlib.get(context_info.remote(), timeout=T)
    assert other_id != task_id
