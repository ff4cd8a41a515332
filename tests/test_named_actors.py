"""Named actors: get_actor, namespaces, get_if_exists, detached lifetime."""

from __future__ import annotations

import time

import pytest
from testkit import T, live_actors

import actorlib
from actorlib.exceptions import ActorAlreadyExistsError

pytestmark = pytest.mark.shared_runtime


@actorlib.remote(num_cpus=0)
class Box:
    def __init__(self, value=0):
        self.value = value

    def put(self, v):
        self.value = v
        return v

    def read(self):
        return self.value

    def my_id(self):
        return actorlib.get_runtime_context().get_actor_id()


@actorlib.remote
def read_named(name, namespace=None):
    return actorlib.get(actorlib.get_actor(name, namespace=namespace).read.remote(), timeout=T)


def test_get_actor_returns_same_actor(rt):
    box = Box.options(name="box-a").remote(1)
    actorlib.get(box.put.remote(42), timeout=T)
    again = actorlib.get_actor("box-a")
    assert actorlib.get(again.read.remote(), timeout=T) == 42


def test_get_actor_from_inside_a_task(rt):
    box = Box.options(name="box-task").remote(7)
    assert actorlib.get(read_named.remote("box-task"), timeout=T) == 7
    del box


def test_an_actor_starts_where_a_task_looked_its_class_up(rt):
    """get_actor() in a task brings the actor's spec (with its class) to that worker; an
    actor of the class started there later must still find the class's code."""
    box = Box.options(name="box-looked-up").remote(7)
    assert actorlib.get(read_named.remote("box-looked-up"), timeout=T) == 7
    del box  # its worker goes: the next actors start on the worker that ran the task
    boxes = [Box.remote(i) for i in range(2)]
    assert actorlib.get([b.read.remote() for b in boxes], timeout=T) == [0, 1]


def test_get_missing_actor_raises_value_error(rt):
    with pytest.raises(ValueError):
        actorlib.get_actor("no-such-actor")


def test_get_actor_checks_its_arguments_as_ray_does(rt):
    """An empty name is a ValueError, a name or namespace that is no str a TypeError
    (Ray's messages), rather than a lookup that finds nothing."""
    with pytest.raises(ValueError, match="non-empty value"):
        actorlib.get_actor("")
    with pytest.raises(TypeError, match="name must be a str"):
        actorlib.get_actor(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="namespace must be None or a str"):
        actorlib.get_actor("x", namespace=5)  # type: ignore[arg-type]


def test_namespaces_separate_names(rt):
    a = Box.options(name="shared", namespace="ns1").remote("one")
    b = Box.options(name="shared", namespace="ns2").remote("two")
    assert (
        actorlib.get(actorlib.get_actor("shared", namespace="ns1").read.remote(), timeout=T)
        == "one"
    )
    assert (
        actorlib.get(actorlib.get_actor("shared", namespace="ns2").read.remote(), timeout=T)
        == "two"
    )
    with pytest.raises(ValueError):
        actorlib.get_actor("shared", namespace="ns3")
    with pytest.raises(ValueError):
        actorlib.get_actor("shared")  # the driver's namespace is neither
    assert actorlib.get(read_named.remote("shared", "ns2"), timeout=T) == "two"
    del a, b


@pytest.mark.init_kwargs(namespace="appns")
def test_init_namespace_is_default(rt):
    box = Box.options(name="in-app").remote("app")
    assert actorlib.get(actorlib.get_actor("in-app").read.remote(), timeout=T) == "app"
    assert (
        actorlib.get(actorlib.get_actor("in-app", namespace="appns").read.remote(), timeout=T)
        == "app"
    )
    with pytest.raises(ValueError):
        actorlib.get_actor("in-app", namespace="other")
    del box


def test_get_if_exists(rt):
    first = Box.options(name="singleton", get_if_exists=True).remote("first")
    second = Box.options(name="singleton", get_if_exists=True).remote("second")
    assert actorlib.get(second.read.remote(), timeout=T) == "first"
    assert actorlib.get(first.my_id.remote(), timeout=T) == actorlib.get(
        second.my_id.remote(), timeout=T
    )


def test_duplicate_name_rejected(rt):
    box = Box.options(name="taken").remote()
    with pytest.raises(ActorAlreadyExistsError, match="already exists") as caught:
        Box.options(name="taken").remote()
    assert isinstance(caught.value, ValueError)  # Ray's: an ActorAlreadyExistsError is one
    assert actorlib.get(box.read.remote(), timeout=T) == 0


def test_detached_actor_outlives_its_handles(rt):
    box = Box.options(name="detached-box", lifetime="detached").remote("kept")
    aid = actorlib.get(box.my_id.remote(), timeout=T)
    del box
    assert aid in live_actors()
    again = actorlib.get_actor("detached-box")
    assert actorlib.get(again.read.remote(), timeout=T) == "kept"
    actorlib.kill(again)


@actorlib.remote
def names_seen_from_a_task():
    from actorlib.util import list_named_actors

    return list_named_actors()


def test_list_named_actors_in_this_namespace_and_all(rt):
    from actorlib.util import list_named_actors

    assert list_named_actors() == []
    a = Box.options(name="listed-a").remote()
    b = Box.options(name="listed-b", namespace="elsewhere").remote()
    unnamed = Box.remote()
    actorlib.get([a.read.remote(), b.read.remote(), unnamed.read.remote()], timeout=T)
    assert list_named_actors() == ["listed-a"]
    assert actorlib.get(names_seen_from_a_task.remote(), timeout=T) == ["listed-a"]
    everything = list_named_actors(all_namespaces=True)
    assert {"name": "listed-a", "namespace": rt.namespace} in everything
    assert {"name": "listed-b", "namespace": "elsewhere"} in everything
    assert len(everything) == 2
    actorlib.kill(a)
    deadline = time.monotonic() + T
    while "listed-a" in list_named_actors() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert list_named_actors() == []  # a dead actor's name is free again
    del b, unnamed
