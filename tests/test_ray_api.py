"""Ray Core public API beyond the basics (issue 12, section 2), on every backend.

Module paths Ray code imports, the runtime context, ids, actor-class proxying, queues,
``exit_actor``, ``RuntimeEnv``/``JobConfig`` and ``init()``'s address mapping.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import importlib
import json
import os
import pickle
import queue as stdlib_queue
import re
import subprocess
import sys
import textwrap
import time
import warnings
from typing import Any

import pytest
from testkit import Recorder, Sync, T

import actorlib
import actorlib as ray
from actorlib.core.ids import ActorID, JobID, NodeID, ObjectID, PlacementGroupID, TaskID, WorkerID
from actorlib.exceptions import ActorDiedError, ObjectLostError, TaskCancelledError
from actorlib.job_config import JobConfig
from actorlib.runtime_env import RuntimeEnv
from actorlib.util import state
from actorlib.util.queue import Empty, Full, Queue

pytestmark = pytest.mark.shared_runtime

# -- module paths ------------------------------------------------------------------------


def test_util_is_an_attribute_after_a_bare_import() -> None:
    code = (
        "import actorlib as ray\n"
        "assert ray.util.ActorPool is not None\n"
        "assert callable(ray.util.get_node_ip_address)\n"
        "import actorlib.util.queue, actorlib.util.scheduling_strategies\n"
        "assert ray.util.queue.Queue and ray.util.scheduling_strategies\n"
        "assert ray.runtime_env.RuntimeEnv and ray.job_config.JobConfig\n"
        "assert ray.actor.exit_actor\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("expression", [
    "ray.actor.exit_actor", "ray.actor.ActorHandle", "ray.remote_function.RemoteFunction",
    "ray.cloudpickle.loads(ray.cloudpickle.dumps(lambda: 3))()",
    "__import__('actorlib.cloudpickle').cloudpickle.dumps",
])
def test_rays_module_attributes_right_after_a_bare_import(expression: str) -> None:
    """``ray.actor.exit_actor()`` (as Ray's docs end an actor) and the like, first thing
    after ``import ray``: Ray's package imports these modules itself."""
    code = f"import actorlib as ray\nassert {expression}\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("module, names", [
    ("actorlib.util.scheduling_strategies", [
        "NodeAffinitySchedulingStrategy", "PlacementGroupSchedulingStrategy",
        "NodeLabelSchedulingStrategy", "In", "NotIn", "Exists", "DoesNotExist",
        "DEFAULT_SCHEDULING_STRATEGY", "SPREAD_SCHEDULING_STRATEGY",
    ]),
    ("actorlib.util.placement_group", [
        "placement_group", "PlacementGroup", "remove_placement_group",
        "get_placement_group", "placement_group_table", "get_current_placement_group",
    ]),
    ("actorlib.util", ["ActorPool", "get_node_ip_address", "placement_group"]),
    ("actorlib.util.queue", ["Queue", "Empty", "Full"]),
    ("actorlib.util.multiprocessing", ["Pool"]),
    ("actorlib.actor", ["exit_actor"]),
    ("actorlib.runtime_env", ["RuntimeEnv"]),
    ("actorlib.job_config", ["JobConfig"]),
])
def test_ray_module_paths_import(module: str, names: list[str]) -> None:
    mod = importlib.import_module(module)
    for name in names:
        assert hasattr(mod, name), f"{module}.{name}"


def test_node_affinity_is_the_same_class_everywhere() -> None:
    from actorlib.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    assert NodeAffinitySchedulingStrategy is actorlib.NodeAffinitySchedulingStrategy


def test_scheduling_strategy_from_util_path_places_a_task(rt: Any) -> None:
    from actorlib.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @actorlib.remote
    def where() -> str:
        return actorlib.get_runtime_context().get_node_id()

    node = actorlib.nodes()[-1]["NodeID"]
    strategy = NodeAffinitySchedulingStrategy(node_id=node, soft=False)
    assert actorlib.get(where.options(scheduling_strategy=strategy).remote(), timeout=T) == node


def test_get_node_ip_address_matches_nodes(rt: Any) -> None:
    from actorlib.util import get_node_ip_address

    @actorlib.remote
    def ip_and_node() -> tuple[str, str]:
        return get_node_ip_address(), actorlib.get_runtime_context().get_node_id()

    ip, node = actorlib.get(ip_and_node.remote(), timeout=T)
    addresses = {n["NodeID"]: n["NodeManagerAddress"] for n in actorlib.nodes()}
    assert ip == addresses[node]
    assert isinstance(get_node_ip_address(), str) and get_node_ip_address()


# -- ids -----------------------------------------------------------------------------------


def test_id_classes_compare_by_kind_and_value() -> None:
    assert TaskID(5) == TaskID(5) and hash(TaskID(5)) == hash(TaskID(5))
    assert TaskID(5) != ActorID(5) and TaskID(5) != 5
    assert TaskID(5).hex() == "0000000000000005"
    assert repr(ActorID(255)) == "ActorID(00000000000000ff)"
    assert ObjectID.from_hex("00000000000000ff") == ObjectID(255)
    assert pickle.loads(pickle.dumps(JobID(3))) == JobID(3)
    assert NodeID("abc").hex() == "abc" and NodeID("abc") == NodeID("abc")
    assert len({TaskID(1), TaskID(1), ActorID(1)}) == 2
    with pytest.raises(TypeError, match="int id"):
        TaskID("5")  # type: ignore[arg-type]


def test_id_classes_have_rays_constructors() -> None:
    """``nil()``, ``from_binary``, ``from_random`` and ``JobID``'s ints, as Ray's ids."""
    for cls in (TaskID, ActorID, JobID, PlacementGroupID, WorkerID):
        nil = cls.nil()
        assert nil.is_nil() and nil == cls.nil() and not cls(7).is_nil()
        assert cls.from_binary(cls(7).binary()) == cls(7) and len(cls(7).binary()) == 16
        fresh = cls.from_random()
        assert not fresh.is_nil() and fresh != cls.from_random()
        assert cls.from_hex(fresh.hex()) == fresh
    assert JobID.from_int(3) == JobID(3) and JobID(3).int() == 3
    assert NodeID.nil().is_nil() and NodeID.nil().hex() == ""
    assert NodeID.from_binary(NodeID("n1").binary()) == NodeID("n1")
    node = NodeID.from_random()
    assert len(node.hex()) == 16 and not node.is_nil() and node != NodeID.from_random()


def test_rays_id_classes_at_the_top_level() -> None:
    """``ray.NodeID`` and friends are the classes the runtime context hands out, and
    ``ray.ObjectID`` is ``ray.ObjectRef`` (its name before Ray 1.0), as in Ray."""
    assert (ray.ActorID, ray.JobID, ray.NodeID, ray.TaskID) == (ActorID, JobID, NodeID, TaskID)
    assert (ray.PlacementGroupID, ray.WorkerID) == (PlacementGroupID, WorkerID)
    assert ray.ObjectID is ray.ObjectRef
    names = {"ActorID", "JobID", "NodeID", "ObjectID", "PlacementGroupID", "TaskID", "WorkerID"}
    assert names <= set(ray.__all__) and names <= set(dir(ray))


# Ray's public names actorlib leaves out, each for its reason (docs/ray-compatibility.md).
RAY_TOP_LEVEL_SKIPPED = {
    "UniqueID", "FunctionID", "ActorClassID", "ClusterID",  # nothing hands them to users
}
RAY_UTIL_SKIPPED = {
    "collective",  # Ray's collective communication: needs Ray (an AttributeError says so)
    "connect", "disconnect",  # Ray Client; actorlib.init(address=) joins a cluster
    "ray_debugpy",  # Ray's VS Code debugger (debugpy); actorlib.util.pdb is the debugger
    "iter",  # deprecated in Ray (ParallelIterator)
}


def _public_names(module: Any) -> dict[str, set[str]]:
    """The names Ray programs reach, read the same way from Ray and from actorlib."""
    context = module.runtime_context.RuntimeContext
    return {
        "context": {n for n in dir(context) if not n.startswith("_")},
        "ids": {n for n in module.__all__ if n.endswith("ID")},
        "util": set(module.util.__all__),
    }


def test_rays_runtime_context_ids_and_util_names_all_exist() -> None:
    """Every public name of Ray's ``RuntimeContext``, its top-level id classes and
    ``ray.util.__all__`` is here, but for the ones listed above with their reasons."""
    real_ray = pytest.importorskip("ray", reason="needs Ray: pip install 'actorlib[ray]'")
    theirs, ours = _public_names(real_ray), _public_names(ray)
    assert not theirs["context"] - ours["context"]
    assert not theirs["ids"] - ours["ids"] - RAY_TOP_LEVEL_SKIPPED
    assert not theirs["util"] - ours["util"] - RAY_UTIL_SKIPPED


def test_object_ref_ids(rt: Any) -> None:
    @actorlib.remote
    def task_id() -> str | None:
        return actorlib.get_runtime_context().get_task_id()

    @actorlib.remote(num_returns=2)
    def pair() -> tuple[int, int]:
        return 1, 2

    ref = task_id.remote()
    assert isinstance(ref.task_id(), TaskID)
    assert actorlib.get(ref, timeout=T) == ref.task_id().hex()
    a, b = pair.remote()
    assert a.task_id() == b.task_id() and a.hex() != b.hex()
    assert a.object_id() == ObjectID(int(a.hex(), 16))
    put_ref = actorlib.put(1)
    assert put_ref.task_id().is_nil()


def test_object_id_makes_refs_as_rays_does(rt: Any) -> None:
    """``ObjectID`` is ``ObjectRef``, with Ray's ``nil``, ``from_hex``, ``from_binary``
    and ``from_random``: a ref made from a live object's id reads it and keeps it alive;
    one naming nothing fails at ``get`` with ``ObjectLostError``, not at making."""
    nil = ray.ObjectID.nil()
    assert isinstance(nil, ray.ObjectRef) and nil.is_nil() and nil == ray.ObjectRef.nil()
    ref = actorlib.put({"v": 1})
    again = ray.ObjectID.from_hex(ref.hex())
    assert again == ref and not again.is_nil()
    assert ray.ObjectRef.from_binary(ref.binary()) == ref
    del ref
    gc.collect()
    assert actorlib.get(again, timeout=T) == {"v": 1}  # it counted a reference
    for nothing in (nil, ray.ObjectID.from_random()):
        with pytest.raises(ObjectLostError, match="not known"):
            actorlib.get(nothing, timeout=T)
    with pytest.raises(ValueError, match="hex digits"):
        ray.ObjectID.from_hex("not hex")
    with pytest.raises(ValueError, match="length 16"):
        ray.ObjectID.from_binary(b"short")


def test_task_id_survives_passing_a_ref_inside_a_container(rt: Any) -> None:
    @actorlib.remote
    def one() -> int:
        return 1

    @actorlib.remote
    def inner_task_id(refs: list[Any]) -> str:
        return str(refs[0].task_id().hex())

    ref = one.remote()
    assert actorlib.get(inner_task_id.remote([ref]), timeout=T) == ref.task_id().hex()


def test_actor_call_ref_task_id_is_the_call(rt: Any) -> None:
    @actorlib.remote
    class A:
        def me(self) -> str | None:
            return actorlib.get_runtime_context().get_task_id()

    a = A.remote()
    ref = a.me.remote()
    assert actorlib.get(ref, timeout=T) == ref.task_id().hex()


def test_as_future_is_an_asyncio_future_and_future_a_concurrent_one(rt: Any) -> None:
    @actorlib.remote
    def double(x: int) -> int:
        return 2 * x

    fut = double.remote(4).future()
    assert isinstance(fut, concurrent.futures.Future)
    assert fut.result(timeout=T) == 8

    async def main() -> int:
        f = double.remote(5).as_future()
        assert isinstance(f, asyncio.Future)
        return await asyncio.wait_for(f, T)

    assert asyncio.run(main()) == 10


def test_actor_handle_ids(rt: Any) -> None:
    @actorlib.remote
    class A:
        def me(self) -> str | None:
            return actorlib.get_runtime_context().get_actor_id()

    a = A.remote()
    inside = actorlib.get(a.me.remote(), timeout=T)
    assert a._actor_id.hex() == inside  # Ray's spelling
    assert a.actor_id == a._actor_id and isinstance(a.actor_id, ActorID)


def test_an_actor_method_named_actor_id_wins_over_the_property(rt: Any) -> None:
    @actorlib.remote
    class A:
        def actor_id(self) -> str:
            return "mine"

    a = A.remote()
    assert actorlib.get(a.actor_id.remote(), timeout=T) == "mine"
    assert isinstance(a._actor_id, ActorID)


# -- runtime context ------------------------------------------------------------------------


def test_runtime_context_in_the_driver(rt: Any) -> None:
    ctx = actorlib.get_runtime_context()
    assert ctx.get_task_id() is None and ctx.get_actor_id() is None
    assert ctx.get_node_id() in {n["NodeID"] for n in actorlib.nodes()}
    assert isinstance(ctx.job_id, JobID) and ctx.get_job_id() == ctx.job_id.hex()
    assert ctx.get_assigned_resources() == {}
    assert ctx.is_canceled() is False
    assert ctx.namespace == rt.namespace
    with pytest.raises(RuntimeError, match="inside an actor"):
        _ = ctx.current_actor


def test_runtime_context_gcs_address_is_where_other_drivers_join(rt: Any) -> None:
    """A cluster's head in its driver (what ``init`` reports); None where nothing can be
    joined (a runtime of one process) and inside tasks, as documented."""

    @actorlib.remote
    def inside() -> str | None:
        return actorlib.get_runtime_context().gcs_address

    address = actorlib.get_runtime_context().gcs_address
    assert address == rt["gcs_address"] == rt["address"]
    if address is not None:
        host, _, port = address.rpartition(":")
        assert host and port.isdigit()
    assert actorlib.get(inside.remote(), timeout=T) is None


@pytest.mark.init_kwargs(resources={"widget": 4})
def test_runtime_context_in_a_task(rt: Any) -> None:
    @actorlib.remote(num_cpus=2, resources={"widget": 1})
    def inspect() -> dict[str, Any]:
        ctx = actorlib.get_runtime_context()
        return {
            "task": ctx.get_task_id(), "actor": ctx.get_actor_id(), "node": ctx.get_node_id(),
            "job": ctx.get_job_id(), "resources": ctx.get_assigned_resources(),
            "canceled": ctx.is_canceled(), "namespace": ctx.namespace,
        }

    ref = inspect.remote()
    got = actorlib.get(ref, timeout=T)
    assert got["task"] == ref.task_id().hex() and got["actor"] is None
    assert got["node"] in {n["NodeID"] for n in actorlib.nodes()}
    assert got["job"] == actorlib.get_runtime_context().get_job_id()
    assert got["resources"] == {"CPU": 2.0, "widget": 1.0}
    assert got["canceled"] is False
    assert got["namespace"] == rt.namespace


def test_runtime_context_names_the_worker_actor_and_accelerators(rt: Any) -> None:
    @actorlib.remote
    def where() -> tuple[str, int, dict[str, list[str]], str | None, str, dict[str, str]]:
        ctx = actorlib.get_runtime_context()
        return (ctx.get_worker_id(), os.getpid(), ctx.get_accelerator_ids(),
                ctx.get_actor_name(), ctx.get_node_id(), ctx.get_node_labels())

    @actorlib.remote
    class Named:
        def name(self) -> str | None:
            return actorlib.get_runtime_context().get_actor_name()

    worker_id, pid, accelerators, actor_name, node, labels = actorlib.get(
        where.remote(), timeout=T)
    rows = {row["worker_id"]: row for row in state.list_workers(detail=True)}
    assert rows[worker_id]["pid"] == pid  # the worker list shows the process it ran in
    assert accelerators == {"GPU": []} and actor_name is None
    assert labels == next(n["Labels"] for n in actorlib.nodes() if n["NodeID"] == node)
    named = Named.options(name="runtime-context-named").remote()
    assert actorlib.get(named.name.remote(), timeout=T) == "runtime-context-named"
    assert actorlib.get(Named.remote().name.remote(), timeout=T) == ""
    ctx = actorlib.get_runtime_context()
    assert ctx.get_actor_name() is None and ctx.get_accelerator_ids() == {"GPU": []}
    assert ctx.should_capture_child_tasks_in_placement_group is False
    actorlib.kill(named)


@actorlib.remote
def task_names() -> tuple[str | None, str | None]:
    ctx = actorlib.get_runtime_context()
    return ctx.get_task_name(), ctx.get_task_function_name()


@actorlib.remote
class NamedCalls:
    def __init__(self) -> None:
        self.made_in = actorlib.get_runtime_context().get_task_name()

    def names(self) -> tuple[str | None, str | None, str | None]:
        ctx = actorlib.get_runtime_context()
        return self.made_in, ctx.get_task_name(), ctx.get_task_function_name()

    async def names_async(self) -> tuple[str | None, str | None]:
        ctx = actorlib.get_runtime_context()
        return ctx.get_task_name(), ctx.get_task_function_name()


def test_runtime_context_names_the_task_and_the_actor_method(rt: Any) -> None:
    here = __name__
    assert actorlib.get(task_names.remote(), timeout=T) == ("task_names", f"{here}.task_names")
    assert actorlib.get(task_names.options(name="renamed").remote(), timeout=T) == (
        "renamed", f"{here}.task_names")
    calls = NamedCalls.remote()
    assert actorlib.get(calls.names.remote(), timeout=T) == (
        "NamedCalls.__init__", "NamedCalls.names", f"{here}.NamedCalls.names")
    assert actorlib.get(calls.names_async.remote(), timeout=T) == (
        "NamedCalls.names_async", f"{here}.NamedCalls.names_async")
    ctx = actorlib.get_runtime_context()
    assert ctx.get_task_name() is None and ctx.get_task_function_name() is None


@actorlib.remote
def runtime_env_seen() -> tuple[dict[str, Any], str]:
    ctx = actorlib.get_runtime_context()
    return ctx.runtime_env, ctx.get_runtime_env_string()


@pytest.mark.init_kwargs(runtime_env={"env_vars": {"JOB_VAR": "job"}})
def test_runtime_context_shows_the_merged_runtime_env(rt: Any) -> None:
    assert actorlib.get_runtime_context().runtime_env == {"env_vars": {"JOB_VAR": "job"}}
    env, text = actorlib.get(runtime_env_seen.remote(), timeout=T)
    assert env == {"env_vars": {"JOB_VAR": "job"}}
    assert json.loads(text) == env
    own = runtime_env_seen.options(runtime_env={"env_vars": {"OWN": "1", "JOB_VAR": "own"}})
    env, _ = actorlib.get(own.remote(), timeout=T)
    assert env == {"env_vars": {"JOB_VAR": "own", "OWN": "1"}}


def test_current_actor_is_a_working_handle_to_itself(rt: Any) -> None:
    @actorlib.remote
    class Counter:
        def __init__(self) -> None:
            self.n = 0

        def incr(self) -> int:
            self.n += 1
            return self.n

        def via_self(self) -> Any:
            me = actorlib.get_runtime_context().current_actor
            return me.incr.remote()  # a ref, read by the driver: no deadlock

        def resources(self) -> dict[str, float]:
            return actorlib.get_runtime_context().get_assigned_resources()

    c = Counter.options(num_cpus=1).remote()
    inner = actorlib.get(c.via_self.remote(), timeout=T)
    assert actorlib.get(inner, timeout=T) == 1
    assert actorlib.get(c.incr.remote(), timeout=T) == 2
    assert actorlib.get(c.resources.remote(), timeout=T) == {"CPU": 1.0}


@actorlib.remote
def session_and_temp_dir() -> tuple[str, str]:
    ctx = actorlib.get_runtime_context()
    return ctx.get_session_name(), ctx.get_temp_dir()


@actorlib.remote
class SessionReader:
    def read(self) -> tuple[str, str]:
        ctx = actorlib.get_runtime_context()
        return ctx.get_session_name(), ctx.get_temp_dir()


def test_session_name_and_temp_dir_are_the_runtimes_everywhere(rt: Any) -> None:
    """One session name in the driver, a task and an actor (Ray's form), kept for the
    runtime's life; the temp dir is this machine's actorlib directory, where the driver
    keeps its state socket."""
    ctx = actorlib.get_runtime_context()
    name, temp_dir = ctx.get_session_name(), ctx.get_temp_dir()
    assert re.fullmatch(r"session_\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_\d{6}_\d+", name), name
    assert os.path.isdir(temp_dir) and os.path.isabs(temp_dir)
    assert actorlib.get(session_and_temp_dir.remote(), timeout=T) == (name, temp_dir)
    reader = SessionReader.remote()
    assert actorlib.get(reader.read.remote(), timeout=T) == (name, temp_dir)
    assert ctx.get_session_name() == name
    actorlib.kill(reader)


def test_get_resource_ids_is_deprecated_for_get_accelerator_ids(rt: Any) -> None:
    @actorlib.remote(num_gpus=0)
    def both() -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        ctx = actorlib.get_runtime_context()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            old = ctx.get_resource_ids()
        assert [w.category for w in caught] == [DeprecationWarning]
        return old, ctx.get_accelerator_ids()

    old, new = actorlib.get(both.remote(), timeout=T)
    assert old == new == {"GPU": []}
    with pytest.warns(DeprecationWarning, match=r"use get_accelerator_ids\(\) instead"):
        assert actorlib.get_runtime_context().get_resource_ids() == {"GPU": []}


def test_was_current_actor_reconstructed(rt: Any) -> None:
    @actorlib.remote(max_restarts=1)
    class Phoenix:
        def reconstructed(self) -> bool:
            return actorlib.get_runtime_context().was_current_actor_reconstructed

    p = Phoenix.remote()
    assert actorlib.get(p.reconstructed.remote(), timeout=T) is False
    actorlib.kill(p, no_restart=False)  # as a crash would: restarted within max_restarts
    assert actorlib.get(p.reconstructed.remote(), timeout=T) is True


def test_is_canceled_seen_by_an_async_task_that_catches_the_cancel(rt: Any) -> None:
    sync = Sync.remote()
    rec = Recorder.remote()

    @actorlib.remote
    async def slow(sync: Any, rec: Any) -> None:
        ctx = actorlib.get_runtime_context()
        try:  # the cancel may land while the task still awaits set()
            await sync.set.remote("started")
            await asyncio.sleep(T)
        except asyncio.CancelledError:
            await rec.append.remote(ctx.is_canceled())
            raise

    ref = slow.remote(sync, rec)
    actorlib.get(sync.wait.remote("started"), timeout=T)
    actorlib.cancel(ref)
    with pytest.raises(TaskCancelledError):
        actorlib.get(ref, timeout=T)
    assert actorlib.get(rec.items.remote(), timeout=T) == [True]


def test_is_canceled_seen_by_a_sync_task_that_catches_the_cancel(rt: Any) -> None:
    sync = Sync.remote()
    rec = Recorder.remote()

    @actorlib.remote
    def slow(sync: Any, rec: Any) -> None:
        ctx = actorlib.get_runtime_context()
        try:  # the cancel may land while the task still waits for set()
            actorlib.get(sync.set.remote("started"))
            deadline = time.monotonic() + T
            while time.monotonic() < deadline:
                time.sleep(0.01)
        except KeyboardInterrupt:  # a soft cancel interrupts a sync task, as in Ray
            actorlib.get(rec.append.remote(ctx.is_canceled()))  # get still works after it
            raise

    ref = slow.remote(sync, rec)
    actorlib.get(sync.wait.remote("started"), timeout=T)
    actorlib.cancel(ref)
    with pytest.raises(TaskCancelledError):
        actorlib.get(ref, timeout=T)
    assert actorlib.get(rec.items.remote(), timeout=T) == [True]


# -- exit_actor ------------------------------------------------------------------------------


def test_exit_actor_ends_the_actor_for_good(rt: Any) -> None:
    @actorlib.remote(max_restarts=3)
    class Quitter:
        def ping(self) -> str:
            return "pong"

        def quit(self) -> None:
            ray.actor.exit_actor()

        def after(self) -> str:
            return "ran after exit"

    q = Quitter.remote()
    assert actorlib.get(q.ping.remote(), timeout=T) == "pong"
    quit_ref = q.quit.remote()
    later = q.after.remote()
    with pytest.raises(ActorDiedError):
        actorlib.get(quit_ref, timeout=T)
    with pytest.raises(ActorDiedError):
        actorlib.get(later, timeout=T)
    with pytest.raises(ActorDiedError):  # no restart despite max_restarts
        actorlib.get(q.ping.remote(), timeout=T)


def test_exit_actor_in_an_async_actor(rt: Any) -> None:
    @actorlib.remote
    class AsyncQuitter:
        async def quit(self) -> None:
            ray.actor.exit_actor()

        async def ping(self) -> str:
            return "pong"

    a = AsyncQuitter.remote()
    assert actorlib.get(a.ping.remote(), timeout=T) == "pong"
    with pytest.raises(ActorDiedError):
        actorlib.get(a.quit.remote(), timeout=T)
    with pytest.raises(ActorDiedError):
        actorlib.get(a.ping.remote(), timeout=T)


def test_exit_actor_outside_an_actor_is_a_type_error(rt: Any) -> None:
    @actorlib.remote
    def in_task() -> str:
        try:
            ray.actor.exit_actor()
        except TypeError as exc:
            return str(exc)
        return "no error"

    assert "inside an actor" in actorlib.get(in_task.remote(), timeout=T)
    with pytest.raises(TypeError, match="inside an actor"):
        ray.actor.exit_actor()


# -- actor classes proxy the wrapped class ----------------------------------------------------


class Base:
    kind = "base"

    def __init__(self, n: int = 1) -> None:
        self.n = n

    @staticmethod
    def helper(x: int) -> int:
        return x + 100

    @classmethod
    def named(cls) -> str:
        return cls.__name__

    def value(self) -> int:
        return self.n


def test_actor_class_shows_class_attributes_and_static_methods() -> None:
    A = actorlib.remote(Base)
    assert A.kind == "base"
    assert A.helper(1) == 101
    assert A.named() == "Base"
    assert A.__ray_actor_class__ is Base
    names = dir(A)
    assert {"remote", "options", "kind", "helper", "named"} <= set(names)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = A.nope


def test_inheriting_from_an_actor_class_and_from_its_plain_class(rt: Any) -> None:
    A = actorlib.remote(Base)

    class B(A):  # type: ignore[valid-type,misc]
        def value(self) -> int:
            return super().value() * 10

    class C(A.__ray_actor_class__):  # type: ignore[name-defined,misc]
        kind = "c"

    assert issubclass(B, Base) and not isinstance(B, actorlib.ActorClass)
    RB = actorlib.remote(B)
    RC = actorlib.remote(C)
    assert actorlib.get(RB.remote(2).value.remote(), timeout=T) == 20
    assert actorlib.get(RC.remote(3).value.remote(), timeout=T) == 3
    assert RC.kind == "c" and RC.helper(0) == 100


# -- Queue ---------------------------------------------------------------------------------------


def test_queue_basics(rt: Any) -> None:
    q = Queue(maxsize=2)
    assert q.empty() and not q.full() and q.qsize() == 0 and len(q) == 0
    q.put(1)
    q.put_nowait(2)
    assert q.full() and q.size() == 2
    with pytest.raises(Full):
        q.put_nowait(3)
    with pytest.raises(Full):
        q.put(3, block=False)
    with pytest.raises(Full):
        q.put(3, timeout=0.05)
    assert q.get() == 1 and q.get_nowait() == 2
    with pytest.raises(Empty):
        q.get_nowait()
    with pytest.raises(Empty):
        q.get(block=False)
    with pytest.raises(stdlib_queue.Empty):  # the stdlib's except clause works too
        q.get(timeout=0.05)
    q.shutdown()


def test_queue_batches(rt: Any) -> None:
    q = Queue(maxsize=3)
    q.put_nowait_batch([1, 2])
    with pytest.raises(Full):
        q.put_nowait_batch([3, 4])
    assert q.qsize() == 2  # all or nothing
    with pytest.raises(Empty):
        q.get_nowait_batch(3)
    assert q.get_nowait_batch(2) == [1, 2]
    with pytest.raises(TypeError, match="iterable"):
        q.put_nowait_batch(5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_items"):
        q.get_nowait_batch(-1)
    q.shutdown(force=True)


def test_queue_bad_arguments(rt: Any) -> None:
    with pytest.raises(TypeError, match="maxsize"):
        Queue(maxsize="3")  # type: ignore[arg-type]
    q = Queue()
    with pytest.raises(ValueError, match="timeout"):
        q.get(timeout=-1)
    with pytest.raises(ValueError, match="timeout"):
        q.put(1, timeout=-1)
    q.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        q.put(1)


def test_queue_between_tasks_and_actors(rt: Any) -> None:
    q = Queue()

    @actorlib.remote
    def produce(q: Queue, n: int) -> None:
        for i in range(n):
            q.put(i)

    @actorlib.remote
    class Consumer:
        def take(self, q: Queue, n: int) -> list[int]:
            return [q.get(timeout=T) for _ in range(n)]

    c = Consumer.remote()
    got = c.take.remote(q, 5)  # blocks in the actor until the producer runs
    actorlib.get(produce.remote(q, 5), timeout=T)
    assert actorlib.get(got, timeout=T) == [0, 1, 2, 3, 4]
    q.shutdown()


def test_queue_async_methods(rt: Any) -> None:
    q = Queue(maxsize=1)

    async def main() -> list[Any]:
        await q.put_async("a")
        with pytest.raises(Full):
            await q.put_async("b", block=False)
        with pytest.raises(Full):
            await q.put_async("b", timeout=0.05)
        first = await q.get_async()
        with pytest.raises(Empty):
            await q.get_async(block=False)
        with pytest.raises(Empty):
            await q.get_async(timeout=0.05)
        return [first]

    assert asyncio.run(main()) == ["a"]
    q.shutdown()


def test_queue_shutdown_fails_waiting_getters(rt: Any) -> None:
    q = Queue()

    @actorlib.remote
    def waiter(q: Queue) -> Any:
        return q.get()

    ref = waiter.remote(q)
    time.sleep(0.2)
    q.shutdown()
    with pytest.raises(ActorDiedError):
        actorlib.get(ref, timeout=T)


# -- RuntimeEnv, JobConfig, init() -----------------------------------------------------------------


def test_runtime_env_class_is_a_checked_dict() -> None:
    env = RuntimeEnv(env_vars={"A": "1"})
    assert isinstance(env, dict) and env["env_vars"] == {"A": "1"}
    assert env.env_vars() == {"A": "1"}
    assert RuntimeEnv.deserialize(env.serialize()) == env
    with pytest.raises(ValueError, match="pip"):
        RuntimeEnv(pip=["requests"])


def test_runtime_env_class_accepted_by_options(rt: Any) -> None:
    import os

    @actorlib.remote
    def read() -> str | None:
        return os.environ.get("ACTORLIB_TEST_RTENV")

    env = RuntimeEnv(env_vars={"ACTORLIB_TEST_RTENV": "yes"})
    assert actorlib.get(read.options(runtime_env=env).remote(), timeout=T) == "yes"


def test_job_config_validation() -> None:
    with pytest.raises(ValueError, match="default_actor_lifetime"):
        JobConfig(default_actor_lifetime="detached")
    with pytest.raises(ValueError, match="default_actor_lifetime"):
        JobConfig(default_actor_lifetime="forever")
    with pytest.raises(ValueError, match="ray_namespace"):
        JobConfig(ray_namespace=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="job_config"):
        actorlib.init(backend="thread", job_config={"ray_namespace": "x"})  # type: ignore[arg-type]
    assert not actorlib.is_initialized()


@pytest.mark.init_kwargs(
    job_config=JobConfig(
        ray_namespace="jobns", runtime_env={"env_vars": {"ACTORLIB_TEST_JOB": "j"}},
        metadata={"ignored": "yes"},
    )
)
def test_init_applies_job_config(rt: Any) -> None:
    import os

    @actorlib.remote
    def read() -> tuple[str | None, str]:
        return os.environ.get("ACTORLIB_TEST_JOB"), actorlib.get_runtime_context().namespace

    assert rt.namespace == "jobns"
    assert actorlib.get(read.remote(), timeout=T) == ("j", "jobns")


def test_init_returns_the_address_mapping(rt: Any) -> None:
    assert rt["node_id"] == rt.nodes[0]
    assert "address" in rt and rt["address"] == rt.address
    assert rt.address_info == dict(rt)
    assert rt["node_ip_address"] == actorlib.nodes()[0]["NodeManagerAddress"]
    assert rt.backend in ("thread", "process", "cluster", "sim", "ray")  # RuntimeInfo stays


def test_init_address_local_starts_a_runtime_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray's ``init(address="local")``: not a cluster's address, even where
    $ACTORLIB_ADDRESS names one (here one that is not there)."""
    monkeypatch.setenv("ACTORLIB_ADDRESS", "127.0.0.1:9")
    monkeypatch.setenv("ACTORLIB_BACKEND", "thread")
    info = actorlib.init(address="local", num_cpus=1)
    try:
        assert info.backend == "thread" and info["address"] is None

        @actorlib.remote
        def one() -> int:
            return 1

        assert actorlib.get(one.remote(), timeout=T) == 1
    finally:
        actorlib.shutdown()


# -- max_calls ------------------------------------------------------------------------------------


@pytest.mark.fresh_runtime  # retires worker processes
def test_max_calls_replaces_the_worker_process(rt: Any) -> None:
    import os

    import psutil
    from testkit import wait_until

    @actorlib.remote(max_calls=1)
    def pid_once() -> int:
        return os.getpid()

    @actorlib.remote(max_calls=2)
    def pid_twice() -> int:
        return os.getpid()

    once = [actorlib.get(pid_once.remote(), timeout=T) for _ in range(4)]
    twice = [actorlib.get(pid_twice.remote(), timeout=T) for _ in range(6)]
    if rt.backend in ("thread", "sim"):  # one process: documented as having no effect
        assert set(once) == set(twice) == {os.getpid()}
        return
    assert len(set(once)) == 4, once
    assert max(twice.count(p) for p in twice) <= 2, twice
    wait_until(lambda: not any(psutil.pid_exists(p) for p in once), T, "retired workers to exit")


def test_max_calls_is_validated() -> None:
    def f() -> None:
        pass

    for bad, error in ((-1, ValueError), ("3", TypeError), (True, TypeError), (1.5, TypeError)):
        with pytest.raises(error, match=r"max_calls must be an int >= 0"):
            actorlib.remote(max_calls=bad)(f)
        with pytest.raises(error, match=r"max_calls must be an int >= 0"):
            actorlib.remote(f).options(max_calls=bad)
    with pytest.raises(TypeError, match="max_calls"):
        actorlib.remote(max_calls=1)(Base)  # a task option only, as in Ray


# -- session name and id constructors (review of the Ray names) --------------------------------


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with this checkout importable."""
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    environ["PYTHONPATH"] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    environ.update(env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=T, env=environ)


def test_session_name_first_call_starts_the_runtime_as_rays() -> None:
    """Ray's ``get_runtime_context()`` starts Ray on first use (as actorlib's other
    context methods do): ``get_session_name()`` as the first call returns a name."""
    out = _python("""
        import actorlib as ray
        name = ray.get_runtime_context().get_session_name()
        print(name.startswith("session_"), ray.get_runtime_context().get_temp_dir() != "",
              ray.is_initialized())
        ray.shutdown()
        """, ACTORLIB_BACKEND="thread")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True", "True"]


@actorlib.remote
def session_name_in(tz: str) -> str:
    os.environ["TZ"] = tz
    time.tzset()
    try:
        return actorlib.get_runtime_context().get_session_name()
    finally:
        os.environ.pop("TZ")
        time.tzset()


def test_session_name_does_not_depend_on_the_callers_time_zone(rt: Any) -> None:
    """A node (or driver) in another time zone names the same session: on a cluster the
    driver's ``TZ`` differs from the node daemon's (other machines, other zones)."""
    here = actorlib.get_runtime_context().get_session_name()
    assert actorlib.get(session_name_in.remote("Asia/Tokyo"), timeout=T) == here
    assert actorlib.get(session_name_in.remote("America/Los_Angeles"), timeout=T) == here


@pytest.mark.parametrize("kind", ["TaskID", "ActorID", "JobID", "PlacementGroupID",
                                  "WorkerID"])
def test_id_from_binary_and_from_hex_refuse_what_no_id_is(kind: str) -> None:
    """Ray raises ValueError for a binary of the wrong length; here every ``binary()`` is
    16 bytes, so nothing else round-trips (b"\\x01" gave an id whose binary() is not it,
    17 bytes one whose binary() raised OverflowError)."""
    cls = getattr(actorlib, kind)
    ok = cls.from_random()
    assert cls.from_binary(ok.binary()) == ok and cls.from_hex(ok.hex()) == ok
    for data in (b"\x01", b"\x01" * 17, b"\xfe" * 28):
        with pytest.raises(ValueError, match="length"):
            cls.from_binary(data)
    for text in ("-1", "ab" * 28, "xyz", ""):
        with pytest.raises(ValueError):
            cls.from_hex(text)


def test_node_id_from_binary_of_a_ray_node_id_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        actorlib.NodeID.from_binary(b"\xfe" * 28)
