"""Placement groups: bundles reserved all at once, work run from a bundle's resources,
removal, pending groups, infeasible groups, names, the table, and the checks at the call
site. Runs on every backend (one node of 4 CPUs); the strategies across several nodes
are in test_cluster.py."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from testkit import Sync, T, wait_until

import actorlib
from actorlib.core.ids import PlacementGroupID
from actorlib.exceptions import (
    ActorDiedError,
    ActorPlacementGroupRemoved,
    InfeasibleResourceError,
    NotSupportedError,
    TaskCancelledError,
    TaskPlacementGroupRemoved,
)
from actorlib.util.placement_group import (
    PlacementGroup,
    get_current_placement_group,
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from actorlib.util.scheduling_strategies import PlacementGroupSchedulingStrategy


def in_group(pg: PlacementGroup, index: int = -1, capture: bool | None = None) -> Any:
    return PlacementGroupSchedulingStrategy(pg, index, capture)


def free_cpus() -> float:
    return actorlib.available_resources().get("CPU", 0.0)


@actorlib.remote
def where_am_i() -> tuple[PlacementGroup | None, str | None]:
    return get_current_placement_group(), actorlib.get_runtime_context().get_placement_group_id()


@actorlib.remote
def busy(sync: Any, seconds: float) -> tuple[float, float]:
    """Tell ``sync`` it started, then keep its CPU for ``seconds`` (never blocking in
    ``get``, which would lend the CPU out)."""
    start = time.time()
    sync.arrive.remote()
    time.sleep(seconds)
    return start, time.time()


@actorlib.remote(num_cpus=1)
class Member:
    def group(self) -> tuple[PlacementGroup | None, str | None]:
        context = actorlib.get_runtime_context()
        return get_current_placement_group(), context.get_placement_group_id()

    def child_group(self) -> PlacementGroup | None:
        return actorlib.get(where_am_i.options(num_cpus=0).remote(), timeout=T)[0]


@actorlib.remote(num_cpus=0)
def spawn_child() -> PlacementGroup | None:
    return actorlib.get(where_am_i.options(num_cpus=1).remote(), timeout=T)[0]


# -- reservation and readiness ----------------------------------------------------------


def test_ready_wait_and_reserved_resources(rt: Any) -> None:
    pg = placement_group([{"CPU": 1}, {"CPU": 2}], strategy="PACK")
    assert actorlib.get(pg.ready(), timeout=T) == pg
    assert pg.wait(T) is True
    assert pg.bundle_count == 2 and pg.bundle_specs == [{"CPU": 1.0}, {"CPU": 2.0}]
    # The reservation leaves the node's free pool at once, with nothing running in it.
    wait_until(lambda: free_cpus() == 1.0, timeout=T, what="3 CPUs reserved")
    row = placement_group_table(pg)
    assert row["state"] == "CREATED" and row["strategy"] == "PACK"
    assert row["bundles"] == {0: {"CPU": 1.0}, 1: {"CPU": 2.0}}
    assert set(row["bundles_to_node_id"]) == {0, 1}
    remove_placement_group(pg)
    wait_until(lambda: free_cpus() == 4.0, timeout=T, what="the reservation freed")
    assert placement_group_table(pg)["state"] == "REMOVED"


def test_ready_is_awaitable(rt: Any) -> None:
    pg = placement_group([{"CPU": 1}])

    async def main() -> PlacementGroup:
        return await pg.ready()

    assert asyncio.run(main()) == pg
    assert actorlib.wait([pg.ready()], timeout=T)[0]


def test_pending_group_becomes_ready_when_resources_free(rt: Any) -> None:
    holder = Member.options(num_cpus=3).remote()
    actorlib.get(holder.group.remote(), timeout=T)
    # Reservation is all or nothing: one bundle would fit, both do not, so none is held.
    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="PACK")
    assert pg.wait(0.3) is False
    assert placement_group_table(pg)["state"] == "PENDING"
    assert free_cpus() == 1.0
    ready = pg.ready()
    assert actorlib.wait([ready], timeout=0.1)[0] == []
    actorlib.kill(holder)
    assert actorlib.get(ready, timeout=T) == pg
    assert placement_group_table(pg)["state"] == "CREATED"
    wait_until(lambda: free_cpus() == 2.0, timeout=T, what="2 CPUs reserved")


def test_pending_group_waits_for_another_group_removed(rt: Any) -> None:
    first = placement_group([{"CPU": 4}])
    assert first.wait(T)
    second = placement_group([{"CPU": 2}])
    assert second.wait(0.2) is False
    remove_placement_group(first)
    assert second.wait(T) is True


def test_infeasible_group_fails_at_once(rt: Any) -> None:
    with pytest.raises(InfeasibleResourceError, match=r"CPU=5.*no set of nodes.*capacity"):
        placement_group([{"CPU": 5}])
    with pytest.raises(InfeasibleResourceError, match=r"STRICT_PACK"):
        placement_group([{"CPU": 3}, {"CPU": 2}], strategy="STRICT_PACK")
    with pytest.raises(InfeasibleResourceError, match=r"GPU=1"):
        placement_group([{"GPU": 1}])
    with pytest.raises(InfeasibleResourceError, match=r"STRICT_SPREAD"):  # one node only
        placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD")
    assert placement_group_table() == {}


# -- work in bundles ----------------------------------------------------------------------


def test_tasks_run_in_their_bundle(rt: Any) -> None:
    pg = placement_group([{"CPU": 1}, {"CPU": 2}], name="tasks")
    assert pg.wait(T)
    got, hex_id = actorlib.get(where_am_i.options(scheduling_strategy=in_group(pg, 1)).remote(),
                               timeout=T)
    assert got == pg and hex_id == pg.id.hex()
    # Outside a group: none.
    assert actorlib.get(where_am_i.remote(), timeout=T) == (None, None)
    assert get_current_placement_group() is None


@actorlib.remote
def current_group_id() -> PlacementGroupID:
    return actorlib.get_runtime_context().current_placement_group_id


def test_current_placement_group_id_is_the_groups_id_or_nil(rt: Any) -> None:
    """Ray's property: the group's id object inside it, the nil id outside (driver too)."""
    pg = placement_group([{"CPU": 1}])
    assert pg.wait(T)
    inside = actorlib.get(current_group_id.options(scheduling_strategy=in_group(pg)).remote(),
                          timeout=T)
    assert inside == pg.id and isinstance(inside, actorlib.PlacementGroupID)
    assert actorlib.get(current_group_id.remote(), timeout=T).is_nil()
    assert actorlib.get_runtime_context().current_placement_group_id == PlacementGroupID.nil()


def test_bundle_resources_limit_the_work_in_it(rt: Any) -> None:
    """A 2-CPU bundle runs two 1-CPU tasks at once, never three, and the node's other
    CPUs stay free for work outside the group."""
    pg = placement_group([{"CPU": 2}])
    assert pg.wait(T)
    sync = Sync.remote()
    inside = busy.options(scheduling_strategy=in_group(pg, 0))
    refs = [inside.remote(sync, 2.0) for _ in range(3)]
    actorlib.get(sync.wait_count.remote(2), timeout=T)
    # The node's free pool is untouched by the work in the bundle: 2 CPUs outside it.
    assert free_cpus() == 2.0
    assert actorlib.get(sync.count.remote(), timeout=T) == 2
    intervals = actorlib.get(refs, timeout=T)
    starts = sorted(start for start, _ in intervals)
    first_end = min(end for _, end in intervals)
    assert starts[1] < first_end <= starts[2] + 0.05  # two at once, the third after


def test_request_larger_than_its_bundle_is_infeasible(rt: Any) -> None:
    pg = placement_group([{"CPU": 1}, {"CPU": 2}])
    with pytest.raises(InfeasibleResourceError, match=r"bundle 0 of placement group"):
        where_am_i.options(num_cpus=2, scheduling_strategy=in_group(pg, 0)).remote()
    with pytest.raises(InfeasibleResourceError, match=r"any bundle"):
        where_am_i.options(num_cpus=3, scheduling_strategy=in_group(pg)).remote()
    with pytest.raises(InfeasibleResourceError, match=r"GPU=1"):
        Member.options(num_gpus=1, scheduling_strategy=in_group(pg)).remote()
    # Any bundle with room will do.
    ref = where_am_i.options(num_cpus=2, scheduling_strategy=in_group(pg)).remote()
    assert actorlib.get(ref, timeout=T)[0] == pg


def test_actors_in_bundles(rt: Any) -> None:
    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="SPREAD")
    members = [Member.options(scheduling_strategy=in_group(pg, i)).remote() for i in range(2)]
    assert [actorlib.get(m.group.remote(), timeout=T) for m in members] == [
        (pg, pg.id.hex())
    ] * 2
    # The bundles are full: a third member waits until one leaves.
    third = Member.options(scheduling_strategy=in_group(pg)).remote()
    ready, _ = actorlib.wait([third.group.remote()], timeout=0.3)
    assert ready == []
    actorlib.kill(members[0])
    assert actorlib.get(third.group.remote(), timeout=T)[0] == pg


def test_capture_child_tasks(rt: Any) -> None:
    pg = placement_group([{"CPU": 2}])
    captured = spawn_child.options(scheduling_strategy=in_group(pg, 0, True)).remote()
    assert actorlib.get(captured, timeout=T) == pg
    not_captured = spawn_child.options(scheduling_strategy=in_group(pg, 0)).remote()
    assert actorlib.get(not_captured, timeout=T) is None
    member = Member.options(scheduling_strategy=in_group(pg, capture=True)).remote()
    assert actorlib.get(member.child_group.remote(), timeout=T) == pg
    assert actorlib.get([
        captures.options(scheduling_strategy=in_group(pg, 0, True)).remote(),
        captures.options(scheduling_strategy=in_group(pg, 0)).remote(),
    ], timeout=T) == [True, False]


def test_legacy_placement_group_options(rt: Any) -> None:
    pg = placement_group([{"CPU": 1}])
    ref = where_am_i.options(placement_group=pg, placement_group_bundle_index=0).remote()
    assert actorlib.get(ref, timeout=T)[0] == pg
    with pytest.raises(ValueError, match="either scheduling_strategy or placement_group"):
        where_am_i.options(placement_group=pg, scheduling_strategy="SPREAD")


@actorlib.remote
def gpu_ids() -> list[int]:
    ids = list(actorlib.get_gpu_ids())
    accelerators = actorlib.get_runtime_context().get_accelerator_ids()
    assert accelerators == {"GPU": [str(i) for i in ids]}, accelerators
    return ids


@actorlib.remote
def captures() -> bool:
    return actorlib.get_runtime_context().should_capture_child_tasks_in_placement_group


@pytest.mark.init_kwargs(num_gpus=2)
def test_gpu_bundles_hand_out_their_gpus(rt: Any) -> None:
    pg = placement_group([{"CPU": 1, "GPU": 1}])
    assert pg.wait(T)
    wait_until(lambda: actorlib.available_resources().get("GPU") == 1.0, timeout=T,
               what="one GPU reserved")
    inside = actorlib.get(
        gpu_ids.options(num_gpus=1, scheduling_strategy=in_group(pg, 0)).remote(), timeout=T
    )
    outside = actorlib.get(gpu_ids.options(num_gpus=1).remote(), timeout=T)
    assert len(inside) == 1 and len(outside) == 1 and inside != outside


# -- removal --------------------------------------------------------------------------------


def test_remove_kills_actors_and_ends_tasks(rt: Any) -> None:
    pg = placement_group([{"CPU": 1}, {"CPU": 1}])
    assert pg.wait(T)
    member = Member.options(scheduling_strategy=in_group(pg, 0)).remote()
    assert actorlib.get(member.group.remote(), timeout=T)[0] == pg
    sync = Sync.remote()
    running = busy.options(scheduling_strategy=in_group(pg, 1)).remote(sync, 1.5)
    actorlib.get(sync.wait_count.remote(1), timeout=T)
    waiting = busy.options(scheduling_strategy=in_group(pg, 1)).remote(sync, 0)  # no room
    remove_placement_group(pg)
    with pytest.raises(ActorPlacementGroupRemoved, match=r"placement group .* was removed") as died:
        actorlib.get(member.group.remote(), timeout=T)
    with pytest.raises(TaskPlacementGroupRemoved, match=r"placement group .* was removed") as ended:
        actorlib.get(waiting, timeout=T)
    # Ray's names, and still the errors they were: except clauses for either work.
    assert isinstance(died.value, ActorDiedError)
    assert isinstance(ended.value, TaskCancelledError)
    with pytest.raises(TaskCancelledError):
        actorlib.get(running, timeout=T)
    wait_until(lambda: free_cpus() == 4.0, timeout=T, what="the group's CPUs freed")
    # Work sent to the removed group fails with a clear error, as does ready().
    with pytest.raises(InfeasibleResourceError, match="was removed"):
        actorlib.get(where_am_i.options(scheduling_strategy=in_group(pg)).remote(), timeout=T)
    with pytest.raises(TaskCancelledError, match="removed before it was ready"):
        actorlib.get(pg.ready(), timeout=T)
    remove_placement_group(pg)  # a second removal does nothing


def test_remove_a_pending_group_fails_its_ready_and_queued_work(rt: Any) -> None:
    big = placement_group([{"CPU": 4}])
    assert big.wait(T)
    pending = placement_group([{"CPU": 1}])
    ready = pending.ready()
    queued = where_am_i.options(scheduling_strategy=in_group(pending)).remote()
    remove_placement_group(pending)
    with pytest.raises(TaskCancelledError, match="removed before it was ready"):
        actorlib.get(ready, timeout=T)
    with pytest.raises(TaskCancelledError, match="was removed"):
        actorlib.get(queued, timeout=T)
    remove_placement_group(big)
    wait_until(lambda: free_cpus() == 4.0, timeout=T, what="the CPUs freed")


# -- names and the table -----------------------------------------------------------------------


def test_names_and_table(rt: Any) -> None:
    first = placement_group([{"CPU": 1}], name="first")
    second = placement_group([{"CPU": 1}], strategy="SPREAD", lifetime="detached")
    assert get_placement_group("first") == first
    assert get_placement_group("first").bundle_specs == [{"CPU": 1.0}]
    with pytest.raises(ValueError, match="already exists"):
        placement_group([{"CPU": 1}], name="first")
    with pytest.raises(ValueError, match="'nobody'"):
        get_placement_group("nobody")
    assert first.wait(T) and second.wait(T)
    table = placement_group_table()
    assert set(table) == {first.id.hex(), second.id.hex()}
    assert table[first.id.hex()]["name"] == "first"
    assert table[second.id.hex()]["lifetime"] == "detached"
    assert table[second.id.hex()]["strategy"] == "SPREAD"
    remove_placement_group(first)
    with pytest.raises(ValueError, match="'first'"):
        get_placement_group("first")
    assert placement_group_table()[first.id.hex()]["state"] == "REMOVED"
    remove_placement_group(second)


def test_handles_pickle_into_tasks(rt: Any) -> None:
    pg = placement_group([{"CPU": 1}])

    @actorlib.remote(num_cpus=0)
    def run_in(group: PlacementGroup) -> PlacementGroup | None:
        ref = where_am_i.options(num_cpus=1, scheduling_strategy=in_group(group)).remote()
        return actorlib.get(ref, timeout=T)[0]

    assert actorlib.get(run_in.remote(pg), timeout=T) == pg


@actorlib.remote(num_cpus=0)
def group_lifecycle_inside() -> tuple[bool, bool, str]:
    """Create, use, look up and remove a group from inside a task."""
    pg = placement_group([{"CPU": 1}], name="inner")
    ready = pg.wait(T)
    found = get_placement_group("inner") == pg
    ran = actorlib.get(where_am_i.options(scheduling_strategy=in_group(pg)).remote(), timeout=T)
    remove_placement_group(pg)
    return ready, found and ran[0] == pg, placement_group_table(pg)["state"]


def test_groups_from_inside_a_task(rt: Any) -> None:
    assert actorlib.get(group_lifecycle_inside.remote(), timeout=T) == (True, True, "REMOVED")
    wait_until(lambda: free_cpus() == 4.0, timeout=T, what="the inner group freed")


# -- checks at the call site (no runtime needed) -------------------------------------------------


@pytest.mark.parametrize("bundles, error, match", [
    ([], ValueError, "empty list"),
    ([{}], ValueError, r"bundles\[0\] must ask for some resource"),
    ([{"CPU": 1}, {"CPU": 0}], ValueError, r"bundles\[1\] must ask"),
    ([{"CPU": -1}], ValueError, r"bundles\[0\]\['CPU'\] must be a number >= 0"),
    ([{"CPU": float("nan")}], ValueError, "must be a number >= 0"),
    ([{"CPU": "1"}], ValueError, "must be a number >= 0"),
    ({"CPU": 1}, TypeError, "bundles must be a non-empty list"),
    (["CPU"], TypeError, r"bundles\[0\] must be a dict"),
])
def test_bad_bundles(bundles: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        placement_group(bundles)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="strategy must be one of 'PACK'"):
        placement_group([{"CPU": 1}], strategy="TIGHT")
    with pytest.raises(TypeError, match="strategy must be one of"):
        placement_group([{"CPU": 1}], strategy=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lifetime must be None or \"detached\""):
        placement_group([{"CPU": 1}], lifetime="forever")
    with pytest.raises(TypeError, match="name must be a str"):
        placement_group([{"CPU": 1}], name=3)  # type: ignore[arg-type]
    pg = PlacementGroup(7, [{"CPU": 1}, {"CPU": 1}])
    with pytest.raises(ValueError, match="index below the group's 2 bundle"):
        PlacementGroupSchedulingStrategy(pg, 2)
    with pytest.raises(ValueError, match="must be -1"):
        PlacementGroupSchedulingStrategy(pg, -2)
    with pytest.raises(TypeError, match="placement_group_bundle_index must be an int"):
        PlacementGroupSchedulingStrategy(pg, "0")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="placement_group must be a PlacementGroup"):
        PlacementGroupSchedulingStrategy("pg")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="placement_group_bundle_index"):
        where_am_i.options(placement_group=pg, placement_group_bundle_index=5)
    with pytest.raises(ValueError, match="timeout_seconds"):
        pg.wait(-1)
    with pytest.raises(NotSupportedError, match="_soft_target_node_id"):
        placement_group([{"CPU": 1}], _soft_target_node_id="n")
    with pytest.raises(TypeError, match=r"bundle_label_selector must be a list of 1 label"):
        placement_group([{"CPU": 1}], bundle_label_selector={"zone": "a"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"one per bundle.*got 2"):
        placement_group([{"CPU": 1}], bundle_label_selector=[{"zone": "a"}, {}])
    with pytest.raises(TypeError, match=r"bundle_label_selector\[1\] must be a dict"):
        placement_group([{"CPU": 1}, {"CPU": 1}],
                        bundle_label_selector=[{}, "zone=a"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"bundle_label_selector\[0\]\['zone'\].*not a cond"):
        placement_group([{"CPU": 1}], bundle_label_selector=[{"zone": "in()"}])
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        placement_group([{"CPU": 1}], stratgy="PACK")
    with pytest.raises(TypeError, match="remove_placement_group"):
        remove_placement_group(None)  # type: ignore[arg-type]
    assert not actorlib.is_initialized()


def test_handles_compare_and_pickle() -> None:
    import pickle

    pg = PlacementGroup(7, [{"CPU": 1}])
    copy = pickle.loads(pickle.dumps(pg))
    assert copy == pg and hash(copy) == hash(pg) and copy.bundle_specs == [{"CPU": 1.0}]
    assert PlacementGroup(8, [{"CPU": 1}]) != pg
