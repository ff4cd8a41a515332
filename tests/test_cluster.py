"""The cluster backend with a head and two nodes as real processes on loopback.

The shared behavioural suite also runs on ``cluster`` (a private head and node per test,
see conftest.BACKENDS); these tests cover what only a multi-node cluster has: placement
across nodes, objects moving between nodes, nodes and drivers going away, the token.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from testkit import wait_for, wait_until

import actorlib
from actorlib import NodeAffinitySchedulingStrategy, exceptions
from actorlib.backends.cluster import daemons
from actorlib.backends.transport import auth as cluster_auth
from actorlib.backends.transport import tokens

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the cluster's nodes run the process backend"
)


@dataclass
class Cluster:
    address: str
    token_file: str
    dir: str
    head: subprocess.Popen[bytes]
    nodes: dict[str, subprocess.Popen[bytes]]

    def log(self, name: str) -> str:
        with open(os.path.join(self.dir, "logs", f"{name}.log")) as f:
            return f.read()


@contextlib.contextmanager
def _running(root: str, monkeypatch: pytest.MonkeyPatch,
             nodes: dict[str, dict[str, Any]]) -> Iterator[Cluster]:
    """A head and ``nodes`` (name -> ``start_node`` arguments), this driver connected."""
    token_file = os.path.join(root, "token")
    tokens.write_token_file(token_file, tokens.new_token())
    monkeypatch.setenv("ACTORLIB_CLUSTER_TOKEN_FILE", token_file)
    head, address = daemons.start_head(root, token_file)
    started: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, options in nodes.items():
            started[name] = daemons.start_node(root, token_file, address, name=name,
                                               node_id=name, **options)
        actorlib.init(address=address)
        wait_until(lambda: len(actorlib.nodes()) == len(nodes), timeout=30)
        yield Cluster(address, token_file, root, head, started)
    finally:
        actorlib.shutdown()
        daemons.stop_processes([*started.values(), head])


@pytest.fixture
def three(tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    """A head and two nodes: ``left`` (2 CPUs, resource left, label side=left) and
    ``right`` (2 CPUs, right, side=right)."""
    nodes = {name: {"num_cpus": 2, "resources": {name: 1}, "labels": {"side": name}}
             for name in ("left", "right")}
    with _running(str(tmp_path), monkeypatch, nodes) as cluster:
        yield cluster


@actorlib.remote
def where() -> str:
    return actorlib.get_runtime_context().get_node_id()


@actorlib.remote
def make_array(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.int64)


@actorlib.remote
def total(a: np.ndarray) -> tuple[int, str, bool]:
    return int(a.sum()), actorlib.get_runtime_context().get_node_id(), a.flags.writeable


def test_custom_resources_place_tasks_on_their_node(three: Cluster) -> None:
    assert actorlib.get(where.options(resources={"left": 1}).remote()) == "left"
    assert actorlib.get(where.options(resources={"right": 1}).remote()) == "right"
    assert actorlib.cluster_resources()["CPU"] == 4


def test_spread_uses_both_nodes(three: Cluster) -> None:
    refs = [where.options(scheduling_strategy="SPREAD").remote() for _ in range(8)]
    assert set(actorlib.get(refs)) == {"left", "right"}


def test_node_affinity(three: Cluster) -> None:
    for node in ("left", "right"):
        strategy = NodeAffinitySchedulingStrategy(node, soft=False)
        assert actorlib.get(where.options(scheduling_strategy=strategy).remote()) == node


def test_large_array_moves_between_nodes(three: Cluster) -> None:
    n = 8 * 2**20  # 64 MiB of int64
    ref = make_array.options(resources={"left": 1}).remote(n)
    # Read on the other node (streamed there, cached, mapped read-only) ...
    result = actorlib.get(total.options(resources={"right": 1}).remote(ref))
    assert result == (n * (n - 1) // 2, "right", False)
    # ... twice, from the cache ...
    assert actorlib.get(total.options(resources={"right": 1}).remote(ref))[0] == n * (n - 1) // 2
    # ... and by the driver, from the owning node.
    array = actorlib.get(ref)
    assert array.shape == (n,) and int(array[-1]) == n - 1


@actorlib.remote
def sizes(*arrays: np.ndarray) -> tuple[list[int], str]:
    return [a.size for a in arrays], actorlib.get_runtime_context().get_node_id()


def test_tasks_run_where_their_largest_arguments_are(three: Cluster) -> None:
    on = {node: make_array.options(resources={node: 1}) for node in ("left", "right")}
    small, large = 2**16, 2**20
    for node in ("left", "right"):  # the default would pick the same node both times
        ref = on[node].remote(large)
        assert actorlib.get(sizes.remote(ref)) == ([large], node)
    left_small, right_large = on["left"].remote(small), on["right"].remote(large)
    assert actorlib.get(sizes.remote(left_small, right_large)) == ([small, large], "right")
    # Locality is a preference: with the data's node full, the task runs elsewhere.
    busy = slow_where.options(resources={"right": 1}, num_cpus=2).remote(2.0)
    assert actorlib.get(sizes.remote(right_large)) == ([large], "left")
    actorlib.get(busy)


def test_driver_put_reaches_a_node(three: Cluster) -> None:
    data = np.ones(2**20)
    ref = actorlib.put(data)
    assert actorlib.get(total.options(resources={"right": 1}).remote(ref))[0] == 2**20


@actorlib.remote(max_retries=2)
def slow_where(seconds: float) -> str:
    time.sleep(seconds)
    return actorlib.get_runtime_context().get_node_id()


def test_task_on_a_killed_node_is_retried_elsewhere(three: Cluster) -> None:
    strategy = NodeAffinitySchedulingStrategy("left", soft=True)
    ref = slow_where.options(scheduling_strategy=strategy).remote(3.0)
    time.sleep(1.0)  # running on left by now
    three.nodes["left"].send_signal(signal.SIGKILL)
    started = time.monotonic()
    assert actorlib.get(ref, timeout=60) == "right"
    assert time.monotonic() - started < 30
    wait_until(lambda: [n["NodeID"] for n in actorlib.nodes()] == ["right"], timeout=30)


def hold(folder: str) -> str:
    """Keep a CPU busy until the file ``release-<this node>`` appears in ``folder``."""
    node = actorlib.get_runtime_context().get_node_id()
    with open(os.path.join(folder, f"running-{os.getpid()}"), "w") as f:
        f.write(node)
    deadline = time.monotonic() + 60
    while not os.path.exists(os.path.join(folder, f"release-{node}")):
        if time.monotonic() > deadline:
            return "never released"
        time.sleep(0.005)
    return node


hold_on_node = actorlib.remote(hold)


def test_tasks_queue_on_a_busy_nodes_workers_and_come_back_for_a_free_node(
    three: Cluster, tmp_path: os.PathLike[str]
) -> None:
    """With every CPU busy, tasks wait on the workers of running ones (pipelining: a
    worker starts the next without a round trip through the head); when one node frees
    its CPUs, the tasks queued on the other node's busy workers are recalled over the
    network and run there instead of waiting behind tasks that are still running."""
    from actorlib.util import state

    folder = str(tmp_path)
    holds = [hold_on_node.remote(folder) for _ in range(4)]  # one per CPU, both nodes
    wait_until(lambda: len([n for n in os.listdir(folder) if n.startswith("running-")]) == 4,
               timeout=30)
    quick = [where.remote() for _ in range(12)]
    queued = wait_for(
        lambda: state.list_tasks(filters=[("name", "=", "where"),
                                          ("state", "=", "SUBMITTED_TO_WORKER")]),
        "tasks queued on the busy workers", timeout=30,
    )
    assert queued
    from actorlib.cluster_cli import query_status

    # ``actorlib status``: a node runs one task per CPU; those queued on its workers
    # are not running (they were counted: up to 8 a worker).
    assert [n["running_tasks"] for n in query_status(three.address)["nodes"]] == [2, 2]
    open(os.path.join(folder, "release-right"), "w").close()
    assert actorlib.get(quick, timeout=30) == ["right"] * 12
    done, _ = actorlib.wait(holds, num_returns=4, timeout=0)
    assert sorted(actorlib.get(done)) == ["right", "right"]  # left's still hold their CPUs
    open(os.path.join(folder, "release-left"), "w").close()
    assert sorted(actorlib.get(holds, timeout=30)) == ["left", "left", "right", "right"]


def test_tasks_queued_on_a_dead_nodes_workers_use_no_retry(
    three: Cluster, tmp_path: os.PathLike[str]
) -> None:
    """A node dies with tasks queued on its workers behind running ones: those never
    started, so they run elsewhere even with no retries left (``max_retries=0``); the
    running ones, which did start, fail with ``NodeDiedError``."""
    from actorlib.exceptions import NodeDiedError
    from actorlib.util import state

    folder = str(tmp_path)
    holds = [hold_on_node.options(max_retries=0).remote(folder) for _ in range(4)]
    wait_until(lambda: len([n for n in os.listdir(folder) if n.startswith("running-")]) == 4,
               timeout=30)
    quick = [where.options(max_retries=0).remote() for _ in range(12)]
    wait_for(
        lambda: state.list_tasks(filters=[("name", "=", "where"), ("node_id", "=", "left"),
                                          ("state", "=", "SUBMITTED_TO_WORKER")]),
        "tasks queued on left's busy workers", timeout=30,
    )
    three.nodes["left"].send_signal(signal.SIGKILL)
    wait_until(lambda: [n["NodeID"] for n in actorlib.nodes()] == ["right"], timeout=30)
    open(os.path.join(folder, "release-right"), "w").close()
    assert actorlib.get(quick, timeout=60) == ["right"] * 12
    outcomes = []
    for ref in holds:
        try:
            outcomes.append(actorlib.get(ref, timeout=30))
        except NodeDiedError:
            outcomes.append("died")
    assert sorted(outcomes) == ["died", "died", "right", "right"]


def test_an_executors_pending_futures_stay_cancellable(
    three: Cluster, tmp_path: os.PathLike[str]
) -> None:
    """The head cannot take a task queued on a node's worker back at once: an Executor's
    calls are not queued so, and ``cancel()`` of a PENDING future withdraws its call
    (before, it returned False, marked the future RUNNING, and the call ran)."""
    from actorlib.executor import Executor

    folder = str(tmp_path)
    with Executor(max_workers=1) as ex:
        try:
            running = ex.submit(hold, folder)
            wait_until(lambda: any(n.startswith("running-") for n in os.listdir(folder)),
                       timeout=30)
            pending = [ex.submit(hold, folder) for _ in range(3)]
            time.sleep(0.5)  # the head's passes run: nothing may be sent to the worker
            assert [f.cancel() for f in pending] == [True] * 3
            assert all(f.cancelled() for f in pending)
        finally:
            for node in ("left", "right"):
                open(os.path.join(folder, f"release-{node}"), "w").close()
        assert running.result(timeout=30) in ("left", "right")
    assert len([n for n in os.listdir(folder) if n.startswith("running-")]) == 1


@actorlib.remote(max_restarts=1)
class Where:
    def node(self) -> str:
        return actorlib.get_runtime_context().get_node_id()


def test_actor_restarts_on_another_node(three: Cluster) -> None:
    actor = Where.remote()
    first = actorlib.get(actor.node.remote())
    survivor = "right" if first == "left" else "left"
    three.nodes[first].send_signal(signal.SIGKILL)
    wait_until(lambda: len(actorlib.nodes()) == 1, timeout=30)
    assert actorlib.get(actor.node.remote(), timeout=60) == survivor


def test_wrong_token_is_refused(three: Cluster) -> None:
    host, _, port = three.address.rpartition(":")
    with pytest.raises(tokens.AuthError):
        cluster_auth.connect(host, int(port), b"0" * 64, "driver")
    wait_until(lambda: "refused" in three.log("head").lower() or "wrong" in three.log("head"))


def test_a_disconnected_driver_is_cleaned_up(three: Cluster) -> None:
    script = textwrap.dedent(f"""
        import os, actorlib
        actorlib.init(address={three.address!r})

        @actorlib.remote
        class Holder:
            def ping(self):
                return os.getpid()

        h = Holder.remote()
        actorlib.get(h.ping.remote())
        ref = actorlib.put(list(range(1000)))
        print("ready", flush=True)
        os._exit(0)  # no shutdown: the connection just drops
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, env={**os.environ})
    assert "ready" in out.stdout, out.stderr
    from actorlib.cluster_cli import query_status

    wait_until(lambda: query_status(three.address)["actors"] == 0, timeout=30)
    assert query_status(three.address)["drivers"] == 1  # only this test's driver


def test_a_killed_drivers_work_is_stopped_at_once(three: Cluster) -> None:
    """A driver SIGKILLed mid-job must not keep the cluster's CPUs: its running and
    queued tasks are cancelled and its actors killed when its connection drops, except a
    detached actor, which outlives its driver."""
    script = textwrap.dedent(f"""
        import time, actorlib
        actorlib.init(address={three.address!r})

        @actorlib.remote
        def hold():
            time.sleep(60)

        @actorlib.remote(num_cpus=1)
        class Holder:
            def ping(self):
                return "pong"

        h = Holder.remote()
        kept = Holder.options(name="kept", lifetime="detached", num_cpus=0).remote()
        actorlib.get([h.ping.remote(), kept.ping.remote()])
        refs = [hold.remote() for _ in range(6)]  # 3 run (4 CPUs, 1 held), 3 queued
        print("ready", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.stderr
        wait_until(lambda: actorlib.available_resources().get("CPU", 0) == 0, timeout=10,
                   what="the other driver's work to take every CPU")
    finally:
        proc.kill()
        proc.communicate()
    start = time.monotonic()
    assert actorlib.get(where.remote(), timeout=5) in ("left", "right")
    took = time.monotonic() - start
    assert took < 2.0, f"a trivial task waited {took:.1f} s behind a dead driver's work"
    wait_until(lambda: actorlib.available_resources().get("CPU") == 4, timeout=3,
               what="the dead driver's CPUs to come free")
    from actorlib.cluster_cli import query_status

    assert query_status(three.address)["queued_tasks"] == 0
    kept = actorlib.get_actor("kept")
    assert actorlib.get(kept.ping.remote(), timeout=10) == "pong"
    actorlib.kill(kept)


def _hosts(pg: Any) -> list[str]:
    from actorlib.util.placement_group import placement_group_table

    row = placement_group_table(pg)
    return [row["bundles_to_node_id"][i] for i in range(pg.bundle_count)]


def test_placement_group_strategies_across_nodes(three: Cluster) -> None:
    from actorlib.util.placement_group import placement_group, remove_placement_group
    from actorlib.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    def made(bundles: list[dict[str, float]], strategy: str) -> Any:
        pg = placement_group(bundles, strategy=strategy)
        assert pg.wait(30), strategy
        return pg

    spread = made([{"CPU": 1}, {"CPU": 1}], "STRICT_SPREAD")
    hosts = _hosts(spread)
    assert sorted(hosts) == ["left", "right"]
    for index, host in enumerate(hosts):  # work in a bundle runs on the bundle's node
        strategy = PlacementGroupSchedulingStrategy(spread, index)
        assert actorlib.get(where.options(scheduling_strategy=strategy).remote()) == host
        actor = Where.options(scheduling_strategy=strategy).remote()
        assert actorlib.get(actor.node.remote()) == host
    remove_placement_group(spread)
    with pytest.raises(exceptions.InfeasibleResourceError, match="STRICT_SPREAD"):
        placement_group([{"CPU": 1}] * 3, strategy="STRICT_SPREAD")  # 2 nodes only
    with pytest.raises(exceptions.InfeasibleResourceError, match="STRICT_PACK"):
        placement_group([{"CPU": 2}, {"CPU": 1}], strategy="STRICT_PACK")  # 2 CPUs a node
    strict_pack = made([{"CPU": 1}, {"CPU": 1}], "STRICT_PACK")
    assert len(set(_hosts(strict_pack))) == 1
    remove_placement_group(strict_pack)
    pack = made([{"CPU": 1}, {"CPU": 1}], "PACK")  # fits one node: packed there
    assert len(set(_hosts(pack))) == 1
    remove_placement_group(pack)
    pack = made([{"CPU": 2}, {"CPU": 1}], "PACK")  # does not: spans both
    assert sorted(set(_hosts(pack))) == ["left", "right"]
    remove_placement_group(pack)
    soft = made([{"CPU": 1}, {"CPU": 1}], "SPREAD")
    assert sorted(_hosts(soft)) == ["left", "right"]
    remove_placement_group(soft)
    on_right = made([{"right": 1, "CPU": 1}], "PACK")  # custom resources pick the node
    assert _hosts(on_right) == ["right"]
    remove_placement_group(on_right)
    wait_until(lambda: actorlib.available_resources().get("CPU") == 4, timeout=10,
               what="every reservation freed")


def test_a_group_loses_its_bundle_with_its_node(three: Cluster) -> None:
    from actorlib.util.placement_group import placement_group, placement_group_table
    from actorlib.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="SPREAD")
    assert pg.wait(30)
    hosts = _hosts(pg)
    assert sorted(hosts) == ["left", "right"]
    three.nodes["left"].send_signal(signal.SIGKILL)
    wait_until(lambda: len(actorlib.nodes()) == 1, timeout=30)
    # The lost bundle is reserved again on the node left (SPREAD allows sharing one).
    wait_until(lambda: placement_group_table(pg)["state"] == "CREATED"
               and _hosts(pg) == ["right", "right"], timeout=30,
               what="the lost bundle reserved again")
    lost = hosts.index("left")
    strategy = PlacementGroupSchedulingStrategy(pg, lost)
    assert actorlib.get(where.options(scheduling_strategy=strategy).remote(), timeout=30) == "right"


def test_a_drivers_groups_end_with_it_unless_detached(three: Cluster) -> None:
    from actorlib.util.placement_group import get_placement_group, remove_placement_group

    script = textwrap.dedent(f"""
        import os, actorlib
        from actorlib.util.placement_group import placement_group
        actorlib.init(address={three.address!r})
        mine = placement_group([{{"CPU": 1}}, {{"CPU": 1}}], strategy="STRICT_SPREAD")
        kept = placement_group([{{"CPU": 1}}], name="kept", lifetime="detached")
        assert mine.wait(30) and kept.wait(30)
        print("ready", flush=True)
        os._exit(0)  # no shutdown: the connection just drops
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, env={**os.environ})
    assert "ready" in out.stdout, out.stderr
    wait_until(lambda: actorlib.available_resources().get("CPU") == 3, timeout=10,
               what="the gone driver's group freed, the detached one kept")
    kept = get_placement_group("kept")
    assert kept.wait(10)
    remove_placement_group(kept)
    wait_until(lambda: actorlib.available_resources().get("CPU") == 4, timeout=10,
               what="the detached group freed")


def test_label_selectors_across_nodes(three: Cluster) -> None:
    assert {n["NodeID"]: n["Labels"]["side"] for n in actorlib.nodes()} == {
        "left": "left", "right": "right"
    }
    for side, other in (("left", "right"), ("right", "left")):
        assert actorlib.get(where.options(label_selector={"side": side}).remote()) == side
        assert actorlib.get(where.options(label_selector={"side": f"!{side}"}).remote()) == other
        actor = Where.options(label_selector={"side": side}).remote()
        assert actorlib.get(actor.node.remote()) == side
    spread = where.options(label_selector={"side": "in(left,right)"}, scheduling_strategy="SPREAD")
    assert set(actorlib.get([spread.remote() for _ in range(8)])) == {"left", "right"}
    # Left is full: the fallback's node takes the work rather than letting it wait.
    holder = Where.options(num_cpus=2, label_selector={"side": "left"}).remote()
    assert actorlib.get(holder.node.remote()) == "left"
    fallback = where.options(label_selector={"side": "left"},
                             fallback_strategy=[{"label_selector": {"side": "right"}}])
    assert actorlib.get(fallback.remote(), timeout=30) == "right"
    with pytest.raises(exceptions.InfeasibleResourceError, match="side=middle"):
        where.options(label_selector={"side": "middle"}).remote()
    actorlib.kill(holder)


def test_node_label_strategy_and_bundle_selectors_across_nodes(three: Cluster) -> None:
    from actorlib.util.placement_group import (
        placement_group,
        placement_group_table,
        remove_placement_group,
    )
    from actorlib.util.scheduling_strategies import (
        DoesNotExist,
        In,
        NodeLabelSchedulingStrategy,
        NotIn,
    )

    def on(hard: Any, soft: Any = None) -> Any:
        return where.options(scheduling_strategy=NodeLabelSchedulingStrategy(hard, soft=soft))

    for side, other in (("left", "right"), ("right", "left")):
        assert actorlib.get(on({"side": In(side)}).remote()) == side
        assert actorlib.get(on({"side": NotIn(side)}).remote()) == other
        assert actorlib.get(on({}, {"side": In(side)}).remote()) == side
    # Soft is a preference: while the preferred node is full, a hard match takes the work.
    holder = Where.options(num_cpus=2, label_selector={"side": "left"}).remote()
    assert actorlib.get(holder.node.remote()) == "left"
    assert actorlib.get(on({"side": In("left", "right")}, {"side": In("left")}).remote(),
                        timeout=30) == "right"
    # Hard is a requirement: the work waits for the full node rather than go elsewhere.
    waiting = on({"side": In("left")}).remote()
    assert actorlib.wait([waiting], timeout=0.5)[0] == []
    actorlib.kill(holder)
    assert actorlib.get(waiting, timeout=30) == "left"
    with pytest.raises(exceptions.InfeasibleResourceError, match="side: does not exist"):
        on({"side": DoesNotExist()}).remote()

    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="PACK",
                         bundle_label_selector=[{"side": "right"}, {"side": "left"}])
    assert pg.wait(30)
    assert placement_group_table(pg)["bundles_to_node_id"] == {0: "right", 1: "left"}
    remove_placement_group(pg)
    with pytest.raises(exceptions.InfeasibleResourceError, match="no set of nodes"):
        placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD",
                        bundle_label_selector=[{"side": "left"}, {"side": "left"}])
    with pytest.raises(exceptions.InfeasibleResourceError, match="no set of nodes"):
        placement_group([{"CPU": 2}], bundle_label_selector=[{"side": "middle"}])


def test_status_shows_nodes(three: Cluster) -> None:
    from actorlib.cluster_cli import query_status

    info = query_status(three.address)
    assert sorted(n["node_id"] for n in info["nodes"]) == ["left", "right"]
    assert json.dumps(info, default=str)


def test_a_dead_head_fails_waiting_drivers(three: Cluster) -> None:
    ref = slow_where.remote(30.0)
    time.sleep(0.5)
    three.head.send_signal(signal.SIGKILL)
    three.head.wait()
    with pytest.raises(actorlib.exceptions.RuntimeClosedError):
        actorlib.get(ref, timeout=30)
    for proc in three.nodes.values():  # nodes stop when their head is gone
        proc.wait(timeout=30)


def test_an_object_lost_with_its_node_is_rebuilt_from_lineage(three: Cluster) -> None:
    n = 2**20
    strategy = NodeAffinitySchedulingStrategy("left", soft=True)
    ref = make_array.options(scheduling_strategy=strategy).remote(n)
    actorlib.wait([ref], timeout=30)
    three.nodes["left"].send_signal(signal.SIGKILL)
    wait_until(lambda: [n["NodeID"] for n in actorlib.nodes()] == ["right"], timeout=30)
    # The array lived only on left: the task that made it runs again, on right.
    assert actorlib.get(total.remote(ref), timeout=60) == (n * (n - 1) // 2, "right", False)


@actorlib.remote
def put_here(n: int) -> list[actorlib.ObjectRef[np.ndarray]]:
    return [actorlib.put(np.ones(n))]


def test_a_lost_object_without_lineage_raises_object_lost(three: Cluster) -> None:
    inner = actorlib.get(put_here.options(resources={"left": 1}).remote(2**18))[0]
    three.nodes["left"].send_signal(signal.SIGKILL)
    wait_until(lambda: len(actorlib.nodes()) == 1, timeout=30)
    with pytest.raises(actorlib.exceptions.ObjectLostError, match="lost") as lost:
        actorlib.get(inner, timeout=30)
    assert type(lost.value) is actorlib.exceptions.ObjectLostError  # a put: not rebuildable


def test_work_and_results_lost_with_their_node_say_why(three: Cluster) -> None:
    """Ray's finer names: the task running on a node that died fails with NodeDiedError,
    a result that cannot be made again with ObjectReconstructionFailedError; both are
    still the broader WorkerCrashedError and ObjectLostError."""
    made = make_array.options(max_retries=0, resources={"left": 1}).remote(2**18)
    actorlib.wait([made], timeout=30)
    running = slow_where.options(max_retries=0, resources={"left": 1}).remote(60.0)
    wait_for(lambda: actorlib.util.state.list_tasks(
        filters=[("name", "=", "slow_where"), ("state", "=", "RUNNING")]), "slow_where to run")
    three.nodes["left"].send_signal(signal.SIGKILL)
    with pytest.raises(exceptions.NodeDiedError, match="left") as died:
        actorlib.get(running, timeout=30)
    assert isinstance(died.value, exceptions.WorkerCrashedError)
    with pytest.raises(exceptions.ObjectReconstructionFailedError, match="cannot be re-run"):
        actorlib.get(made, timeout=30)


def test_tls(tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, ca_file = os.path.join(tmp_path, "cert.pem"), os.path.join(tmp_path, "ca.pem")
    cert.private_key_and_cert_chain_pem.write_to_path(cert_file)
    ca.cert_pem.write_to_path(ca_file)
    monkeypatch.setenv("ACTORLIB_TLS_CERT", cert_file)
    monkeypatch.setenv("ACTORLIB_TLS_KEY", cert_file)
    monkeypatch.setenv("ACTORLIB_TLS_CA", ca_file)
    info = actorlib.init(backend="cluster", num_cpus=2)  # a private head and node, on TLS
    try:
        assert actorlib.get(make_array.remote(2**17))[-1] == 2**17 - 1  # bytes over TLS
        host, _, port = info.address_info["address"].rpartition(":")
        with pytest.raises(tokens.AuthError):  # a plain-TCP client gets nowhere
            cluster_auth.connect(host, int(port), "some token", "driver", timeout=5)
    finally:
        actorlib.shutdown()


def test_stack_of_a_worker_on_another_node_comes_through_the_head(
    three: Cluster, tmp_path: os.PathLike[str],
) -> None:
    """``actorlib stack`` asks the head, which asks the node running the worker: from a
    process whose sessions directory is not the nodes' (as on another machine), a local
    dump could not work."""
    release = os.path.join(str(tmp_path), "release")
    blocked = blocked_on_right.remote(release)
    try:
        from actorlib.util import state

        def running() -> Any:
            rows = state.list_tasks(filters=[("name", "=", "blocked_on_right"),
                                             ("state", "=", "RUNNING")])
            return rows[0] if rows else None

        task = wait_for(running, "the task to run on right", 30)
        assert task["node_id"] == "right"
        # Worker rows come with the nodes' heartbeats (once a second): wait for this one.
        wait_for(lambda: any(task["task_id"] in w["current_task_ids"]
                             for w in state.list_workers(detail=True)),
                 "the node's heartbeat to list the task", 30)
        elsewhere = os.path.join(str(tmp_path), "elsewhere")
        os.mkdir(elsewhere, 0o700)
        env = {**os.environ, "XDG_RUNTIME_DIR": "", "TMPDIR": elsewhere}
        out = subprocess.run(
            [sys.executable, "-m", "actorlib", "stack", "--task", task["task_id"],
             "--address", three.address, "--token-file", three.token_file],
            capture_output=True, text=True, timeout=60, env=env,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert "node right" in out.stdout and "running blocked_on_right" in out.stdout
        assert "in blocked_on_right" in out.stdout, out.stdout  # faulthandler's frame line
        assert "(no stacks" not in out.stdout
    finally:
        with open(release, "w"):
            pass
    assert actorlib.get(blocked, timeout=60) == "right"


@actorlib.remote(resources={"right": 1})
def blocked_on_right(path: str) -> str:
    while not os.path.exists(path):
        time.sleep(0.05)
    return actorlib.get_runtime_context().get_node_id()


@pytest.fixture
def quick_timeout(tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    """A head that declares a node dead after 2 s of silence, and one node."""
    monkeypatch.setenv("ACTORLIB_NODE_TIMEOUT_S", "2")
    with _running(str(tmp_path), monkeypatch, {"only": {"num_cpus": 1}}) as cluster:
        yield cluster


def test_a_frozen_node_is_declared_dead(quick_timeout: Cluster) -> None:
    quick_timeout.nodes["only"].send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        wait_until(lambda: actorlib.nodes() == [], timeout=20)
        assert time.monotonic() - started < 10
        assert "node only at" in quick_timeout.log("head")
    finally:
        quick_timeout.nodes["only"].send_signal(signal.SIGCONT)


def test_a_head_that_stalled_past_the_node_timeout_keeps_its_nodes(
    quick_timeout: Cluster,
) -> None:
    """Stopped (Ctrl-Z, a VM paused, starved of CPU) for longer than the node timeout,
    the head finds its nodes' heartbeats of that while unread when it resumes: silence
    it did not listen to is no sign of a dead node (before, it dropped every node, and
    every task and actor on them, the moment it resumed)."""
    assert actorlib.get(where.remote(), timeout=30) == "only"
    quick_timeout.head.send_signal(signal.SIGSTOP)
    time.sleep(4)
    quick_timeout.head.send_signal(signal.SIGCONT)
    time.sleep(2)  # two of the head's looks at its nodes
    assert [n["NodeID"] for n in actorlib.nodes()] == ["only"]
    assert actorlib.get(where.remote(), timeout=30) == "only"
    assert "stopped responding" not in quick_timeout.log("head")


@actorlib.remote
def array_made_at_once_on_left(folder: str, n: int) -> np.ndarray:
    """An array (large: it lives in its node's store); made elsewhere only once the file
    ``release`` appears in ``folder``."""
    while actorlib.get_runtime_context().get_node_id() != "left" and not os.path.exists(
        os.path.join(folder, "release")
    ):
        time.sleep(0.05)
    return np.arange(n, dtype=np.int64)


def test_an_object_lost_with_its_node_is_not_ready_to_wait_while_it_is_rebuilt(
    three: Cluster, tmp_path: os.PathLike[str],
) -> None:
    """The driver heard the array was ready before its node died; while its task runs
    again, ``wait`` says it is not ready, as ``get(timeout=0)`` does (before, the driver
    answered ``wait`` from what it once heard: ready, and a ``get`` then blocked)."""
    n = 2**20
    strategy = NodeAffinitySchedulingStrategy("left", soft=True)
    ref = array_made_at_once_on_left.options(scheduling_strategy=strategy).remote(
        str(tmp_path), n)
    assert actorlib.wait([ref], timeout=30) == ([ref], [])
    three.nodes["left"].send_signal(signal.SIGKILL)
    wait_until(lambda: [n["NodeID"] for n in actorlib.nodes()] == ["right"], timeout=30)
    assert actorlib.wait([ref], timeout=0) == ([], [ref])
    with pytest.raises(exceptions.GetTimeoutError):
        actorlib.get(ref, timeout=0)
    with open(os.path.join(str(tmp_path), "release"), "w"):
        pass
    assert actorlib.wait([ref], timeout=60) == ([ref], [])
    assert int(actorlib.get(ref, timeout=60).sum()) == n * (n - 1) // 2


@actorlib.remote(num_returns=2)
def array_and_size_made_at_once_on_left(folder: str, n: int) -> tuple[np.ndarray, int]:
    """``array_made_at_once_on_left``'s array and its size: a small value, held inline."""
    while actorlib.get_runtime_context().get_node_id() != "left" and not os.path.exists(
        os.path.join(folder, "release")
    ):
        time.sleep(0.05)
    return np.arange(n, dtype=np.int64), n


def test_a_small_result_rebuilt_with_a_lost_sibling_is_not_ready_to_wait(
    three: Cluster, tmp_path: os.PathLike[str],
) -> None:
    """A task's small result is held inline, but its large one lived on the node that
    died: the task runs again for both, and meanwhile the small one is pending too."""
    n = 2**20
    strategy = NodeAffinitySchedulingStrategy("left", soft=True)
    big, size = array_and_size_made_at_once_on_left.options(
        scheduling_strategy=strategy).remote(str(tmp_path), n)
    assert actorlib.wait([size, big], num_returns=2, timeout=30)[0] == [size, big]
    three.nodes["left"].send_signal(signal.SIGKILL)
    wait_until(lambda: [n["NodeID"] for n in actorlib.nodes()] == ["right"], timeout=30)
    assert actorlib.wait([size], timeout=0) == ([], [size])
    with open(os.path.join(str(tmp_path), "release"), "w"):
        pass
    assert actorlib.get(size, timeout=60) == n
    assert int(actorlib.get(big, timeout=60).sum()) == n * (n - 1) // 2


@actorlib.remote(num_returns=2)
def array_and_size_when_told(folder: str, n: int) -> tuple[np.ndarray, int]:
    """An array and its size, made on ``left`` once ``go`` exists (elsewhere, once
    ``release`` does)."""
    on_left = actorlib.get_runtime_context().get_node_id() == "left"
    while not os.path.exists(os.path.join(folder, "go" if on_left else "release")):
        time.sleep(0.05)
    return np.arange(n, dtype=np.int64), n


@actorlib.remote(resources={"right": 1})
class Looker:
    """Waits from a worker on the node that stays (a nested ``wait``), on refs it keeps
    (a worker forgets what it heard of an id once it holds no ref to it)."""

    def __init__(self) -> None:
        self.refs: list[Any] = []

    def ready(self, refs: list[Any] | None, timeout: float | None, first: int = 0) -> int:
        if refs is not None:
            self.refs = refs
        looked = self.refs[:first] if first else self.refs
        return len(actorlib.wait(looked, num_returns=len(looked), timeout=timeout)[0])


def test_a_small_result_rebuilt_with_a_lost_sibling_is_not_ready_to_a_workers_wait(
    three: Cluster, tmp_path: os.PathLike[str],
) -> None:
    """As above, the wait in a worker process on the other node: it never hears that a
    node left, so it must not answer from what it heard before."""
    n = 2**20
    strategy = NodeAffinitySchedulingStrategy("left", soft=True)
    big, size = array_and_size_when_told.options(
        scheduling_strategy=strategy).remote(str(tmp_path), n)
    looker = Looker.remote()
    seen = looker.ready.remote([size, big], 30)  # watching before they are ready
    time.sleep(0.5)
    with open(os.path.join(str(tmp_path), "go"), "w"):
        pass
    assert actorlib.get(seen, timeout=60) == 2
    three.nodes["left"].send_signal(signal.SIGKILL)
    wait_until(lambda: [n["NodeID"] for n in actorlib.nodes()] == ["right"], timeout=30)
    del big  # the worker holds the refs now
    assert actorlib.get(looker.ready.remote(None, 0, first=1), timeout=30) == 0  # size
    with open(os.path.join(str(tmp_path), "release"), "w"):
        pass
    assert actorlib.get(looker.ready.remote(None, 60), timeout=90) == 2
    assert actorlib.get(size, timeout=30) == n


@pytest.mark.parametrize("told_by", ["SIGTERM", "driver exit"])
def test_a_node_still_looking_for_its_head_stops_when_told(tmp_path: Any, told_by: str) -> None:
    """A private cluster's node starts beside its head and retries the connection for up
    to 30 s; a SIGTERM or its driver's exit meanwhile (Ctrl-C or `kill` during init())
    must end it at once, not leave it orphaned for those 30 s."""
    import socket

    with socket.socket() as probe:  # a port nobody listens on: the head never came up
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    token_file = tmp_path / "token"
    tokens.write_token_file(token_file, tokens.new_token())
    driver = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    node = subprocess.Popen(
        [sys.executable, "-m", "actorlib.backends.cluster.node", "--address",
         f"127.0.0.1:{port}", "--token-file", str(token_file), "--driver-pid",
         str(driver.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.5)  # started, refused, retrying
        assert node.poll() is None
        if told_by == "SIGTERM":
            node.send_signal(signal.SIGTERM)
        else:
            driver.kill()
            driver.wait()
        node.wait(timeout=5)
    finally:
        for proc in (node, driver):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
