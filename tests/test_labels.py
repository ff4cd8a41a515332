"""Node labels, ``label_selector``/``fallback_strategy`` and ``NodeLabelSchedulingStrategy``,
on every backend (one node labelled zone=a, disk=ssd); several labelled nodes are in
test_cluster.py."""

from __future__ import annotations

from typing import Any

import pytest
from testkit import T

import actorlib
from actorlib.exceptions import InfeasibleResourceError
from actorlib.util.placement_group import (
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from actorlib.util.scheduling_strategies import (
    DoesNotExist,
    Exists,
    In,
    NodeLabelSchedulingStrategy,
    NotIn,
    PlacementGroupSchedulingStrategy,
)

pytestmark = pytest.mark.init_kwargs(labels={"zone": "a", "disk": "ssd"})
AFFINITY = actorlib.NodeAffinitySchedulingStrategy("n")


@actorlib.remote
def node() -> str:
    return actorlib.get_runtime_context().get_node_id()


@actorlib.remote(num_cpus=0)
class Where:
    def node(self) -> str:
        return actorlib.get_runtime_context().get_node_id()


def test_nodes_report_their_labels(rt: Any) -> None:
    [info] = actorlib.nodes()
    assert info["Labels"] == {"zone": "a", "disk": "ssd", "ray.io/node-id": info["NodeID"]}


@pytest.mark.parametrize("selector", [
    {"zone": "a"},
    {"zone": "a", "disk": "ssd"},
    {"zone": "!b"},
    {"zone": "in(a,b)"},
    {"zone": "!in(b,c)"},
    {"gpu": "!yes"},  # a label the node lacks is "not yes"
    {"gpu": "!in(yes,maybe)"},
])
def test_matching_selectors_run(rt: Any, selector: dict[str, str]) -> None:
    here = actorlib.nodes()[0]["NodeID"]
    assert actorlib.get(node.options(label_selector=selector).remote(), timeout=T) == here
    actor = Where.options(label_selector=selector).remote()
    assert actorlib.get(actor.node.remote(), timeout=T) == here


@pytest.mark.parametrize("selector", [
    {"zone": "b"},
    {"zone": "!a"},
    {"zone": "in(b,c)"},
    {"zone": "!in(a,b)"},
    {"gpu": "yes"},  # a label the node lacks is not "yes"
    {"zone": "a", "disk": "hdd"},  # every condition must hold
])
def test_selectors_no_node_matches_are_infeasible_at_once(
    rt: Any, selector: dict[str, str]
) -> None:
    with pytest.raises(InfeasibleResourceError, match="No node with labels matching"):
        node.options(label_selector=selector).remote()
    with pytest.raises(InfeasibleResourceError, match="No node with labels matching"):
        Where.options(label_selector=selector).remote()


def test_the_node_id_label(rt: Any) -> None:
    here = actorlib.nodes()[0]["NodeID"]
    ref = node.options(label_selector={"ray.io/node-id": here}).remote()
    assert actorlib.get(ref, timeout=T) == here


def test_fallbacks_are_tried_in_order(rt: Any) -> None:
    fallback = [{"label_selector": {"zone": "c"}}, {"label_selector": {"disk": "ssd"}}]
    ref = node.options(label_selector={"zone": "b"}, fallback_strategy=fallback).remote()
    assert actorlib.get(ref, timeout=T) == actorlib.nodes()[0]["NodeID"]
    with pytest.raises(InfeasibleResourceError, match=r"\{zone=b\} or \{zone=c\}"):
        node.options(label_selector={"zone": "b"},
                     fallback_strategy=[{"label_selector": {"zone": "c"}}]).remote()


def test_selected_work_waits_for_room_on_matching_nodes(rt: Any) -> None:
    holder = Where.options(num_cpus=2).remote()
    actorlib.get(holder.node.remote(), timeout=T)
    ref = node.options(num_cpus=4, label_selector={"zone": "a"}).remote()
    assert actorlib.wait([ref], timeout=0.3)[0] == []
    actorlib.kill(holder)
    assert actorlib.get(ref, timeout=T) == actorlib.nodes()[0]["NodeID"]


@pytest.mark.parametrize("options, error, match", [
    ({"label_selector": "zone=a"}, TypeError, "label_selector must be a dict"),
    ({"label_selector": {"zone": 1}}, TypeError, r"label_selector\['zone'\] must be a str"),
    ({"label_selector": {"zone": "in()"}}, ValueError, "is not a condition"),
    ({"label_selector": {"zone": "a b"}}, ValueError, "is not a condition"),
    ({"label_selector": {"bad key!": "a"}}, ValueError, "not a valid label name"),
    ({"fallback_strategy": [{"label_selector": {"zone": "a"}}]}, ValueError,
     "fallback_strategy needs a label_selector"),
    ({"label_selector": {"zone": "a"}, "fallback_strategy": {"zone": "b"}}, TypeError,
     "fallback_strategy must be a list"),
    ({"label_selector": {"zone": "a"}, "fallback_strategy": [{"num_cpus": 2}]}, ValueError,
     r"fallback_strategy\[0\] must be"),
    ({"label_selector": {"zone": "a"}, "scheduling_strategy": AFFINITY}, ValueError,
     "label_selector goes with"),
])
def test_bad_selectors(options: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        node.options(**options)


def test_bad_node_labels() -> None:
    with pytest.raises(TypeError, match=r"init\(labels=\) must be a dict"):
        actorlib.init(backend="thread", labels=["zone"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a valid label value"):
        actorlib.init(backend="thread", labels={"zone": "a b"})
    assert not actorlib.is_initialized()


# -- NodeLabelSchedulingStrategy: hard conditions must hold, soft ones are preferred --------


@pytest.mark.parametrize("hard, soft", [
    ({"zone": In("a")}, None),
    ({"zone": In("b", "a"), "disk": In("ssd")}, None),
    ({"zone": NotIn("b", "c")}, None),
    ({"gpu": NotIn("yes")}, None),  # a label the node lacks is not "yes"
    ({"disk": Exists()}, None),
    ({"gpu": DoesNotExist()}, None),
    ({"zone": In("a")}, {"zone": In("b")}),  # no node matches soft: any hard match will do
    ({"zone": In("a")}, {"gpu": Exists()}),
    ({}, {"zone": NotIn("a")}),  # soft alone: a preference only
    (None, {"disk": DoesNotExist()}),
])
def test_node_label_strategy_matching_runs(rt: Any, hard: Any, soft: Any) -> None:
    here = actorlib.nodes()[0]["NodeID"]
    strategy = NodeLabelSchedulingStrategy(hard, soft=soft)
    assert actorlib.get(node.options(scheduling_strategy=strategy).remote(), timeout=T) == here
    actor = Where.options(scheduling_strategy=strategy).remote()
    assert actorlib.get(actor.node.remote(), timeout=T) == here


@pytest.mark.parametrize("hard, shown", [
    ({"zone": In("b", "c")}, "zone=in(b,c)"),
    ({"zone": NotIn("a")}, "zone=!a"),
    ({"gpu": Exists()}, "gpu: exists"),
    ({"disk": DoesNotExist()}, "disk: does not exist"),
    ({"zone": In("a"), "disk": In("hdd")}, "disk=hdd"),  # every hard condition must hold
])
def test_node_label_strategy_hard_no_node_matches_is_infeasible_at_once(
    rt: Any, hard: Any, shown: str
) -> None:
    strategy = NodeLabelSchedulingStrategy(hard, soft={"zone": In("a")})
    with pytest.raises(InfeasibleResourceError, match="No node with labels matching") as info:
        node.options(scheduling_strategy=strategy).remote()
    assert shown in str(info.value)
    with pytest.raises(InfeasibleResourceError, match="No node with labels matching"):
        Where.options(scheduling_strategy=strategy).remote()


@pytest.mark.parametrize("build, error, match", [
    (lambda: In(), ValueError, r"In\(\) needs at least one label value"),
    (lambda: NotIn("a", 1), TypeError, r"NotIn\(\): value 1 must be a str"),
    (lambda: In("a b"), ValueError, "'a b' is not a valid label value"),
    (lambda: Exists("a"), TypeError, "positional argument"),
    (lambda: NodeLabelSchedulingStrategy({}), ValueError, "hard and soft cannot both be empty"),
    (lambda: NodeLabelSchedulingStrategy(None, soft={}), ValueError, "cannot both be empty"),
    (lambda: NodeLabelSchedulingStrategy({"zone": "a"}), TypeError,
     r"hard\['zone'\] must be In\(\.\.\.\), NotIn\(\.\.\.\), Exists\(\) or DoesNotExist"),
    (lambda: NodeLabelSchedulingStrategy(["zone"]), TypeError, "hard must be a dict"),
    (lambda: NodeLabelSchedulingStrategy({"zone": In("a")}, soft={1: Exists()}), TypeError,
     "soft: label names must be str"),
    (lambda: NodeLabelSchedulingStrategy({"bad key!": Exists()}), ValueError,
     "'bad key!' is not a valid label name"),
    (lambda: node.options(label_selector={"zone": "a"}, scheduling_strategy=(
        NodeLabelSchedulingStrategy({"zone": In("a")}))), ValueError,
     "either label_selector or scheduling_strategy=NodeLabelSchedulingStrategy"),
])
def test_bad_node_label_strategies(build: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        build()


# -- bundle_label_selector: each bundle only on a node whose labels match -------------------


@pytest.mark.parametrize("selectors", [
    [{"zone": "a"}, {"disk": "ssd"}],
    [{}, {"zone": "in(a,b)", "gpu": "!yes"}],
    [{"zone": "!b"}, {}],
])
def test_bundles_go_on_matching_nodes(rt: Any, selectors: list[dict[str, str]]) -> None:
    here = actorlib.nodes()[0]["NodeID"]
    pg = placement_group([{"CPU": 1}, {"CPU": 1}], bundle_label_selector=selectors)
    assert pg.wait(T)
    row = placement_group_table(pg)
    assert row["bundles_to_node_id"] == {0: here, 1: here}
    assert len(row["bundle_label_selector"]) == 2
    strategy = PlacementGroupSchedulingStrategy(pg, 1)
    assert actorlib.get(node.options(scheduling_strategy=strategy).remote(), timeout=T) == here
    remove_placement_group(pg)


@pytest.mark.parametrize("selectors, shown", [
    ([{"zone": "b"}], "CPU=1 on {zone=b}"),
    ([{"disk": "ssd", "zone": "!a"}], "{disk=ssd, zone=!a}"),
    ([{"zone": "a"}, {"gpu": "yes"}], "CPU=1 on {gpu=yes}"),
])
def test_bundles_no_node_matches_are_infeasible_at_once(
    rt: Any, selectors: list[dict[str, str]], shown: str
) -> None:
    bundles = [{"CPU": 1} for _ in selectors]
    with pytest.raises(InfeasibleResourceError, match="no set of nodes can ever hold it") as info:
        placement_group(bundles, bundle_label_selector=selectors)
    assert shown in str(info.value) and "labels {" in str(info.value)
    assert placement_group_table() == {}


def test_node_label_operators_compare_and_show_as_written() -> None:
    assert In("a", "b") == In("a", "b") and hash(In("a")) == hash(In("a"))
    assert In("a") != NotIn("a") and Exists() != DoesNotExist() and In("a") != "a"
    strategy = NodeLabelSchedulingStrategy({"zone": In("a", "b")}, soft={"gpu": Exists()})
    assert repr(strategy) == (
        "NodeLabelSchedulingStrategy(hard={'zone': In('a', 'b')}, soft={'gpu': Exists()})"
    )
