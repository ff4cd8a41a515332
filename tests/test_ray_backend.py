"""The ray backend's own checks: what it says when Ray is missing or unsupported.

Its behaviour is the shared suite's (``rt`` runs on "ray" where Ray is installed) and
``test_ray_multinode.py``'s; these need no running Ray.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import actorlib
from actorlib import exceptions
from actorlib.backends.ray import address as address_check
from actorlib.backends.ray import connector
from actorlib.exceptions import BackendUnavailableError


def test_missing_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(BackendUnavailableError, match=r"pip install 'actorlib\[ray\]'"):
        actorlib.init(backend="ray")
    assert not actorlib.is_initialized()


def test_unsupported_ray_version_names_the_range(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = type(sys)("ray")
    fake.__version__ = "1.13.0"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ray", fake)
    with pytest.raises(BackendUnavailableError, match=r"Ray >= 2\.9, < 3\.0; found 1\.13\.0"):
        connector.import_ray()


def test_label_selectors_on_a_ray_older_than_labels_say_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ray before 2.49 has no label selectors: refused with our message, not Ray's
    complaint about an option the user never wrote."""
    from actorlib.backends.ray import options

    fake = type(sys)("ray")
    fake.__version__ = "2.9.3"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ray", fake)
    selector = (("zone", False, ("a",)),)
    with pytest.raises(exceptions.NotSupportedError,
                       match=r"node labels .* needs Ray >= 2\.49; this process runs Ray 2\.9\.3"):
        options.ray_selector(selector)
    fake.__version__ = "2.49.0"  # type: ignore[attr-defined]
    assert options.ray_selector(selector) == {"zone": "a"}


def test_backend_unavailable_is_an_import_error() -> None:
    # ``except ImportError`` around an optional backend keeps working.
    assert issubclass(BackendUnavailableError, ImportError)
    assert issubclass(BackendUnavailableError, actorlib.exceptions.ActorlibError)


# -- the address, checked before ray.init dials it (backends/ray/address.py) -------------


def _closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_unreachable_address_fails_with_a_clear_error(scheme: str) -> None:
    ray = pytest.importorskip("ray", reason="needs Ray: pip install 'actorlib[ray]'")
    address = f"{scheme}127.0.0.1:{_closed_port()}"
    # ray.init itself would retry for about ten minutes; the check gives up after its
    # timeout (the test's own timeout catches a hang).
    with pytest.raises(ConnectionError, match=r"Cannot reach the Ray cluster at .*nothing "
                       r"answered on (\S+ nor on )?127\.0\.0\.1:\d+ within 0\.5 s"):
        address_check.check_address(ray, address, timeout=0.5)


def test_malformed_address_is_a_value_error() -> None:
    ray = pytest.importorskip("ray", reason="needs Ray: pip install 'actorlib[ray]'")
    with pytest.raises(ValueError, match="expected 'auto', 'host:port'"):
        address_check.check_address(ray, "no-port-here", timeout=0.5)


def test_a_loopback_only_cluster_keeps_its_loopback_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On Linux Ray swaps 127.0.0.1 for the machine's address, where a cluster started
    with ``--node-ip-address 127.0.0.1`` does not listen: the check keeps loopback."""
    ray = pytest.importorskip("ray", reason="needs Ray: pip install 'actorlib[ray]'")
    constants = ray._private.ray_constants
    monkeypatch.setattr(constants, "ENABLE_RAY_CLUSTER", True)  # Linux's default
    services = ray._private.services
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        swapped = services.canonicalize_bootstrap_address(address)
        address_check.check_address(ray, address, timeout=2)
        assert services.canonicalize_bootstrap_address(address) == address
        if swapped != address:  # a machine with an address of its own
            assert constants.ENABLE_RAY_CLUSTER is False


# -- on the run's Ray: what is mapped, and what raises NotSupportedError ----------------


def _reset() -> None:
    """End what the test left in the run's Ray cluster (a leak fails the test)."""
    from ray_local import reset_cluster

    problems = reset_cluster()
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


@pytest.fixture
def on_ray(request: pytest.FixtureRequest) -> Iterator[str]:
    """actorlib on the test run's Ray cluster (tests/ray_local.py); the node's id."""
    pytest.importorskip("ray", reason="needs Ray: pip install 'actorlib[ray]'")
    request.getfixturevalue("_ray_cluster")
    actorlib.init(backend="ray")
    try:
        import ray

        yield str(ray.get_runtime_context().get_node_id())
    finally:
        actorlib.shutdown()
        _reset()


@pytest.fixture(params=["0", "1"], ids=["ids-as-argument", "ids-in-names"])
def on_ray_either(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
                  ) -> Iterator[str]:
    """``on_ray`` with ``ACTORLIB_RAY_IDS_IN_NAMES`` off (the default) and on."""
    pytest.importorskip("ray", reason="needs Ray: pip install 'actorlib[ray]'")
    request.getfixturevalue("_ray_cluster")
    monkeypatch.setenv("ACTORLIB_RAY_IDS_IN_NAMES", request.param)
    actorlib.init(backend="ray")
    try:
        import ray

        yield str(ray.get_runtime_context().get_node_id())
    finally:
        actorlib.shutdown()
        _reset()


@actorlib.remote
def node_of() -> str:
    return actorlib.get_runtime_context().get_node_id()


@actorlib.remote
class Placed:
    def node(self) -> str:
        return actorlib.get_runtime_context().get_node_id()


def test_label_selectors_become_rays(on_ray: str) -> None:
    """label_selector, fallback_strategy and NodeLabelSchedulingStrategy are Ray's
    label selectors (Ray labels every node with its id)."""
    from actorlib.util.scheduling_strategies import In, NodeLabelSchedulingStrategy, NotIn

    key = "ray.io/node-id"
    assert actorlib.get(node_of.options(label_selector={key: on_ray}).remote(),
                        timeout=120) == on_ray
    hard = NodeLabelSchedulingStrategy({key: In(on_ray, "f" * 56)})
    actor = Placed.options(scheduling_strategy=hard).remote()
    assert actorlib.get(actor.node.remote(), timeout=120) == on_ray
    # No node matches the first selector: Ray falls back to the next.
    fallback = node_of.options(label_selector={key: "0" * 56},
                               fallback_strategy=[{"label_selector": {key: f"!{'0' * 56}"}}])
    assert actorlib.get(fallback.remote(), timeout=120) == on_ray
    # A soft condition no node meets: preferred, not required.
    soft = NodeLabelSchedulingStrategy({key: NotIn("0" * 56)}, soft={"zone": In("nowhere")})
    assert actorlib.get(node_of.options(scheduling_strategy=soft).remote(),
                        timeout=120) == on_ray


def test_sigterm_stays_actorlibs_on_ray(request: pytest.FixtureRequest) -> None:
    """ray.init's own SIGTERM handler (exit status 15, no shutdown) replaces neither
    actorlib's nor outlives the session. In a fresh interpreter: this one shares the
    run's Ray, whose ray.init has already happened."""
    pytest.importorskip("ray", reason="needs Ray: pip install 'actorlib[ray]'")
    cluster = request.getfixturevalue("_ray_cluster")
    program = textwrap.dedent(f"""
        import signal
        import actorlib
        from actorlib import session
        actorlib.init(backend="ray", address={cluster!r})
        print("during:", signal.getsignal(signal.SIGTERM) is session._on_terminating_signal)
        actorlib.shutdown()
        print("after:", signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)
    """)
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=120)
    assert "during: True" in done.stdout and "after: True" in done.stdout, (
        done.stdout + done.stderr[-2000:])


def test_the_setup_hook_and_logging_config_reach_rays_workers(
    request: pytest.FixtureRequest,
) -> None:
    """``init(worker_process_setup_hook=, logging_config=)`` hold on ray as on every backend
    (Ray runs the hook in each worker of the job and lays out its log lines); with Ray
    already initialized by the program they cannot be applied, nor ``labels`` on a
    cluster that is already running: a clear error."""
    pytest.importorskip("ray", reason="needs Ray: pip install 'actorlib[ray]'")
    cluster = request.getfixturevalue("_ray_cluster")
    program = textwrap.dedent(f"""
        import logging, os
        import actorlib

        def hook():
            os.environ["ACTORLIB_TEST_HOOK"] = "ran"

        @actorlib.remote
        def probe():
            formats = [type(h.formatter).__name__ for h in logging.getLogger().handlers]
            return os.environ.get("ACTORLIB_TEST_HOOK"), formats

        root, before = logging.getLogger(), list(logging.getLogger().handlers)
        for _ in range(2):  # Ray's handlers come off at each shutdown: none pile up
            actorlib.init(backend="ray", address={cluster!r}, worker_process_setup_hook=hook,
                          logging_config=actorlib.LoggingConfig(encoding="JSON"))
            hook_ran, formats = actorlib.get(probe.remote(), timeout=120)
            actorlib.shutdown()
            print("handlers back:", root.handlers == before)
        print("hook:", hook_ran, "JSON:", "JSONFormatter" in formats)
        try:
            actorlib.init(backend="ray", address={cluster!r}, labels={{"zone": "a"}})
        except ValueError as exc:
            print("labels:", exc)
    """)
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=180)
    assert "hook: ran JSON: True" in done.stdout, done.stdout + done.stderr[-3000:]
    assert done.stdout.count("handlers back: True") == 2, done.stdout
    assert "labels: init(labels=) labels the node a new Ray instance starts" in done.stdout
    program = textwrap.dedent(f"""
        import ray, actorlib
        ray.init(address={cluster!r})
        try:
            actorlib.init(backend="ray", worker_process_setup_hook="os.getcwd")
        except ValueError as exc:
            print("refused:", exc)
        print("initialized:", actorlib.is_initialized())
        ray.shutdown()
    """)
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=180)
    assert ("refused: worker_process_setup_hook, logging_config, labels and "
            "object_spilling_directory are set up by") in (
        done.stdout), done.stdout + done.stderr[-3000:]
    assert "initialized: False" in done.stdout



def test_a_scripts_own_exception_class_retries_on_ray(request: pytest.FixtureRequest) -> None:
    """``retry_exceptions`` naming a class of the driver's ``__main__``: the task's spec
    template (pickled once, see backends/ray/wire.py) reaches Ray's worker with the class
    itself (by value), as every backend sends it."""
    pytest.importorskip("ray", reason="needs Ray: pip install 'actorlib[ray]'")
    cluster = request.getfixturevalue("_ray_cluster")
    program = textwrap.dedent(f"""
        import actorlib

        class Flaky(Exception):
            pass

        @actorlib.remote
        class Count:
            def __init__(self):
                self.n = 0

            def next(self):
                self.n += 1
                return self.n

        @actorlib.remote(max_retries=2, retry_exceptions=[Flaky])
        def flaky_once(counter):
            if actorlib.get(counter.next.remote()) == 1:
                raise Flaky("the first try fails")
            return "retried"

        actorlib.init(backend="ray", address={cluster!r})
        print("result:", actorlib.get(flaky_once.remote(Count.remote()), timeout=120))
        actorlib.shutdown()
    """)
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=180)
    assert "result: retried" in done.stdout, done.stdout + done.stderr[-3000:]


def test_workers_find_the_drivers_modules_without_a_runtime_env(
    request: pytest.FixtureRequest, tmp_path: Any,
) -> None:
    """A module beside the script and one in a directory the driver put on ``sys.path``
    import in Ray's workers, the driver's order kept (the first of two same-named
    modules wins, as in the driver); through Ray's job config, not a job-wide
    runtime_env, so Ray's workers started ahead of time serve the job."""
    pytest.importorskip("ray", reason="needs Ray: pip install 'actorlib[ray]'")
    cluster = request.getfixturevalue("_ray_cluster")
    first, second = tmp_path / "first", tmp_path / "second"
    for folder, which in ((first, "first"), (second, "second")):
        folder.mkdir()
        (folder / "shadowed_mod.py").write_text(f"WHICH = {which!r}\n")
    (tmp_path / "beside_mod.py").write_text("VALUE = 'beside'\n")
    (tmp_path / "script.py").write_text(textwrap.dedent(f"""
        import sys
        sys.path[1:1] = [{str(first)!r}, {str(second)!r}]
        import actorlib
        from actorlib.backends.ray.connector import driver_job_config

        @actorlib.remote
        def modules():
            import beside_mod, shadowed_mod
            return beside_mod.VALUE, shadowed_mod.WHICH

        assert not driver_job_config().runtime_env
        actorlib.init(backend="ray", address={cluster!r})
        print("result:", actorlib.get(modules.remote(), timeout=120))
        actorlib.shutdown()
    """))
    done = subprocess.run([sys.executable, str(tmp_path / "script.py")], cwd="/",
                          capture_output=True, text=True, timeout=180)
    assert "result: ('beside', 'first')" in done.stdout, done.stdout + done.stderr[-3000:]


@actorlib.remote(num_cpus=0)
def child_in_parents_group() -> tuple[Any, str]:
    """A task captured in a group submits a child naming no strategy: the child goes
    to the same Ray group, found from actorlib's group id alone."""
    from actorlib.util.placement_group import get_current_placement_group

    @actorlib.remote(num_cpus=1)
    def where() -> Any:
        return get_current_placement_group()

    import ray

    return actorlib.get(where.remote(), timeout=120), ray.get_runtime_context().get_node_id()


def test_placement_groups_are_rays_and_found_from_any_process(on_ray: str) -> None:
    import ray
    from ray.experimental import internal_kv

    from actorlib.backends.ray.groups import KV_NAMESPACE, RAY_NAME_PREFIX
    from actorlib.util.placement_group import (
        get_placement_group,
        placement_group,
        remove_placement_group,
    )
    from actorlib.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    # A name reserved by a driver that ended without removing its group is taken over.
    internal_kv._internal_kv_put(b"name/default/stale", b"7" * 26, namespace=KV_NAMESPACE)
    pg = placement_group([{"CPU": 2}], name="stale")
    kept = placement_group([{"CPU": 1}], lifetime="detached")
    assert pg.wait(120) and kept.wait(120)
    assert get_placement_group("stale") == pg
    rows = {r["name"]: r for r in ray.util.placement_group_table().values()}
    assert rows[RAY_NAME_PREFIX + pg.id.hex()]["state"] == "CREATED"
    assert rows[RAY_NAME_PREFIX + pg.id.hex()]["bundles"] == {0: {"CPU": 2.0}}
    strategy = PlacementGroupSchedulingStrategy(pg, 0, placement_group_capture_child_tasks=True)
    got, node = actorlib.get(child_in_parents_group.options(scheduling_strategy=strategy)
                             .remote(), timeout=120)
    assert got == pg and node == on_ray
    # shutdown() removes this driver's groups (its Ray connection stays up), not a
    # detached one.
    actorlib.shutdown()
    rows = {r["name"]: r for r in ray.util.placement_group_table().values()}
    assert rows[RAY_NAME_PREFIX + pg.id.hex()]["state"] == "REMOVED"
    assert rows[RAY_NAME_PREFIX + kept.id.hex()]["state"] == "CREATED"
    assert internal_kv._internal_kv_get(b"name/default/stale", namespace=KV_NAMESPACE) is None
    actorlib.init(backend="ray")
    remove_placement_group(kept)
    rows = {r["name"]: r for r in ray.util.placement_group_table().values()}
    assert rows[RAY_NAME_PREFIX + kept.id.hex()]["state"] == "REMOVED"


@actorlib.remote
def squares_then_fail(n: int) -> Iterator[int]:
    for i in range(n):
        yield i * i
    raise ValueError(f"no more than {n}")


@actorlib.remote
class Streamer:
    async def items(self, n: int) -> Any:
        for i in range(n):
            yield f"item-{i}"


def test_generators_are_rays(on_ray: str) -> None:
    """A streaming task is Ray's generator task read as actorlib's stream (its error at
    the failing item and in ``completed()``), an async actor's generator method too, and
    ``dynamic`` one ref of the items' refs. The rest is the shared suite's
    (test_generators.py, with ACTORLIB_TEST_RAY=all)."""
    gen = squares_then_fail.options(_generator_backpressure_num_objects=1).remote(3)
    assert [actorlib.get(next(gen), timeout=120) for _ in range(3)] == [0, 1, 4]
    with pytest.raises(ValueError, match="no more than 3"):
        actorlib.get(next(gen), timeout=120)
    assert gen.is_finished()
    with pytest.raises(ValueError, match="no more than 3"):
        actorlib.get(gen.completed(), timeout=120)
    streamer = Streamer.remote()
    assert [actorlib.get(r, timeout=120) for r in streamer.items.remote(2)] == [
        "item-0", "item-1"]
    with pytest.raises(ValueError, match="no more than 0"):
        actorlib.get(squares_then_fail.options(num_returns="dynamic").remote(0), timeout=120)
    dynamic = streamer.items.options(num_returns="dynamic").remote(3)
    assert [actorlib.get(r, timeout=120) for r in actorlib.get(dynamic, timeout=120)] == [
        "item-0", "item-1", "item-2"]


def test_a_plain_call_goes_to_a_ray_method_of_its_own_name(on_ray: str) -> None:
    """An actor's Ray class is named as the user's and has a Ray method of each public
    method name, as plain Ray's would: a plain call goes there with its arguments alone
    (what Ray's dashboard and state API show, ``Class.method``), its id Ray's task id
    on both sides. A name the host uses itself (``named``) takes its generic ``call``."""
    import ray

    @actorlib.remote
    class Named:
        def plain(self, x: int = 0) -> tuple[Any, ...]:
            return (ray.get_runtime_context().get_task_name(),
                    actorlib.get_runtime_context().get_task_id(), x)

        def named(self) -> str:
            return str(ray.get_runtime_context().get_task_name())

    @actorlib.remote
    class AsyncNamed:
        async def plain(self) -> tuple[Any, ...]:
            await asyncio.sleep(0.01)
            return (ray.get_runtime_context().get_task_name(),
                    actorlib.get_runtime_context().get_task_id())

    a = Named.remote()
    ref = a.plain.remote(3)
    assert actorlib.get(ref, timeout=120) == ("Named.plain", ref.task_id().hex(), 3)
    assert actorlib.get(a.named.remote(), timeout=120) == "Named.call"
    b = AsyncNamed.remote()
    refs = [b.plain.remote() for _ in range(3)]
    assert actorlib.get(refs, timeout=120) == [("AsyncNamed.plain", r.task_id().hex())
                                               for r in refs]
    assert len({r.task_id() for r in refs}) == 3


@actorlib.remote
def endless() -> Iterator[int]:
    i = 0
    while True:
        yield i
        i += 1
        time.sleep(0.01)


def test_a_stream_ended_between_reading_an_item_and_taking_it(
    on_ray: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A slot's value is read from Ray before its item is taken from Ray's stream; a
    cancel landing in between ends Ray's stream, and the take finds nothing. The stream
    then ends with the task's error, as Ray's own reader sees it (the item was linked
    to no Ray object at all: its ``get`` failed with ``SystemFailureError``)."""
    import ray

    from actorlib.backends.ray.streams import RayStream

    gen = endless.remote()
    assert actorlib.get(next(gen), timeout=120) == 0
    take = RayStream.take
    found: list[Any] = []

    def take_after_the_cancel(stream: RayStream) -> Any:
        if not found:  # the cancel lands between the read and the take, once
            ray.cancel(stream.generator)
            ray.wait([stream.generator.completed()], timeout=120)
        found.append(take(stream))
        return found[-1]

    monkeypatch.setattr(RayStream, "take", take_after_the_cancel)
    with pytest.raises(exceptions.TaskCancelledError):
        for ref in gen:
            assert actorlib.get(ref, timeout=120) == 1  # read before the cancel
    assert found[0] is None  # the race was met: Ray's stream had ended
    with pytest.raises(exceptions.TaskCancelledError):
        actorlib.get(gen.completed(), timeout=120)


@actorlib.remote
class Ticker:
    async def ticks(self) -> Any:
        i = 0
        while True:
            yield i
            i += 1
            await asyncio.sleep(0.01)


def test_an_actor_stream_ray_ends_as_cancelled_unasked_fails_as_its_actors_end(
    on_ray: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When an async actor ends itself (``exit_actor()``) while a stream of its runs,
    Ray's exit at times cancels the stream before the call's own error reaches Ray: Ray
    then puts the end of the stream at the next position, and its completion holds a
    cancel. The consumer must not read that as a clean end (a stream cut short, its
    caller none the wiser): this process never cancelled it, so it fails as its actor's
    end, with the error a call still running gets. Ray's position is made to read as
    that end here; the cancel is Ray's own, not actorlib's."""
    import ray

    from actorlib import session
    from actorlib.backends.ray.client import RayCore

    ticker = Ticker.remote()
    gen = ticker.ticks.options(num_returns="streaming").remote()
    assert actorlib.get(next(gen), timeout=120) == 0
    stream = session.client()._ends[gen.completed()._id]
    ray.cancel(stream.generator)  # Ray's cancel: actorlib's ``cancel`` was never asked
    ray.wait([stream.generator.completed()], timeout=120)
    slot_value = RayCore._slot_value

    def ended_by_ray(self: RayCore, id_: int, data: Any) -> Any:
        if isinstance(data, BaseException):  # the cancel's error item: the end instead
            data = ray.exceptions.ObjectRefStreamEndOfStreamError("ended")
        return slot_value(self, id_, data)

    monkeypatch.setattr(RayCore, "_slot_value", ended_by_ray)
    with pytest.raises(exceptions.ActorDiedError, match=r"Ticker .* exit_actor\(\)"):
        for ref in gen:
            assert isinstance(actorlib.get(ref, timeout=120), int)
    actorlib.kill(ticker)


def test_streams_and_group_readiness_refuse_ray_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """A driver on Ray Client has no core worker, which streams and a placement group's
    ready() read Ray through: they say so rather than fail inside Ray."""
    ray = pytest.importorskip("ray", reason="needs Ray: pip install 'actorlib[ray]'")
    from actorlib.backends.ray.streams import core_worker
    from actorlib.exceptions import NotSupportedError

    monkeypatch.setattr(ray._private.worker, "global_worker", object())
    with pytest.raises(NotSupportedError, match=r"not through Ray Client \(ray://\)"):
        core_worker("a streaming generator")


def test_what_ray_cannot_take_says_so(on_ray: str) -> None:
    from actorlib.exceptions import NotSupportedError
    from actorlib.util import state
    from actorlib.util.scheduling_strategies import Exists, NodeLabelSchedulingStrategy

    strategy = NodeLabelSchedulingStrategy({"ray.io/node-id": Exists()})
    with pytest.raises(NotSupportedError, match=r"no Exists\(\)/DoesNotExist\(\)"):
        node_of.options(scheduling_strategy=strategy).remote()
    with pytest.raises(NotSupportedError, match=r"ray\.util\.state"):
        state.list_tasks()


def test_state_api_nodes_come_from_rays_tables(on_ray: str) -> None:
    """On ray, node ids are Ray's (``actorlib.nodes()`` gives them): ``list_nodes`` and
    ``get_node`` answer from Ray's GCS. The kinds named by actorlib's ids, which Ray's
    tables do not know, say so rather than answer None."""
    from actorlib.exceptions import NotSupportedError
    from actorlib.util import state

    assert [n["node_id"] for n in state.list_nodes()] == [on_ray]
    node = state.get_node(on_ray)
    assert node is not None and node.state == "ALIVE"
    assert node.resources_total["CPU"] >= node.resources_available.get("CPU", 0) >= 0
    assert state.get_node("00ff00ff") is None
    for getter in (state.get_worker, state.get_job, state.get_objects,
                   state.get_placement_group):
        with pytest.raises(NotSupportedError, match=r"only nodes are.*ray\.util\.state"):
            getter("0000000000000001")


@actorlib.remote
def counting(n: int) -> Iterator[int]:
    yield from range(n)


def test_a_concurrency_limit_needs_a_return_on_ray(on_ray: str) -> None:
    """The limit is kept by watching a limited task's first return: a stream or a task
    with no return is refused, not run unbounded."""
    from actorlib.exceptions import NotSupportedError

    limit = {"_concurrency": ("no-return", 1)}
    with pytest.raises(NotSupportedError, match=r"_concurrency.*at least one return"):
        counting.options(**limit).remote(2)
    with pytest.raises(NotSupportedError, match=r"_concurrency.*at least one return"):
        node_of.options(num_returns=0, **limit).remote()


def test_a_limited_task_ray_refuses_gives_its_slot_back(
    on_ray: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from actorlib.core import context

    core: Any = context.current()
    real = core._task_callers.get
    refused: list[bool] = []

    def refuse_once(spec: Any) -> Any:
        if not refused:
            refused.append(True)
            raise ValueError("refused by Ray")
        return real(spec)

    monkeypatch.setattr(core._task_callers, "get", refuse_once)
    limited = node_of.options(_concurrency=("refused", 1))
    with pytest.raises(ValueError, match="refused by Ray"):
        limited.remote()
    assert actorlib.get(limited.remote(), timeout=60) == on_ray  # the slot is free


def test_a_forced_cancel_leaves_a_task_ending_by_itself_uncancelled(
    on_ray: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A forced cancel first leaves a plain task a moment to end by itself, one moment for
    a burst of cancels: Ray 2.60 aborts the driver when a cancel meets a task's reply
    ("Tried to complete task that was not pending"), and a Pool leaving its block after
    an error force-cancels calls ending right then (1 block in 5 to 1 in 150 ended a
    driver). A task still running after it is cancelled as before."""
    import ray

    from actorlib.backends.ray import client as ray_client
    from actorlib.backends.ray import recancel
    from actorlib.core import context

    client: Any = context.current()
    sent: list[Any] = []
    ray_cancel = ray.cancel
    monkeypatch.setattr(ray_client.ray, "cancel",
                        lambda ref, **kw: (sent.append(ref), ray_cancel(ref, **kw))[1])
    # A window no loaded machine outlasts: the quick tasks end in it, whenever they start.
    monkeypatch.setattr(recancel, "SETTLE_S", 60.0)
    quick = [sleeper.remote(0.05) for _ in range(2)]
    for ref in quick:
        client.ray_ref(ref._id)  # in Ray now, not held back (a held one is withdrawn)
    for ref in quick:
        actorlib.cancel(ref, force=True)
    assert actorlib.get(quick, timeout=120) == [None, None]
    assert sent == []
    monkeypatch.setattr(recancel, "SETTLE_S", 0.2)
    monkeypatch.setattr(client, "_settle", recancel.SettleWindow())
    slow = [sleeper.remote(60) for _ in range(2)]
    for ref in slow:
        client.ray_ref(ref._id)
    for ref in slow:
        actorlib.cancel(ref, force=True)
    for ref in slow:
        with pytest.raises(actorlib.exceptions.TaskCancelledError):
            actorlib.get(ref, timeout=120)
    assert len(sent) == 2


def test_init_on_an_unreachable_address_fails_and_stays_uninitialized() -> None:
    """Through ``init`` itself, in a fresh interpreter (this one may share the run's Ray)."""
    pytest.importorskip("ray", reason="needs Ray: pip install 'actorlib[ray]'")
    program = textwrap.dedent(f"""
        import actorlib
        from actorlib.backends.ray import address
        address.CONNECT_TIMEOUT_S = 1.0
        try:
            actorlib.init(backend="ray", address="127.0.0.1:{_closed_port()}")
        except ConnectionError as exc:
            print("refused:", exc)
        print("initialized:", actorlib.is_initialized())
    """)
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=120)
    assert "refused: Cannot reach the Ray cluster at '127.0.0.1:" in done.stdout, (
        done.stdout + done.stderr[-2000:])
    assert "initialized: False" in done.stdout


# -- waiting in Ray (backends/ray/client.py, ``wait_blocking``) -------------------------


@actorlib.remote
def echo(x: int) -> int:
    return x


@actorlib.remote
def fail_on(x: int, bad: int) -> int:
    if x == bad:
        raise KeyError(f"bad item {x}")
    return x


@actorlib.remote
def sleeper(seconds: float) -> None:
    time.sleep(seconds)


def test_a_wait_with_a_timeout_sees_objects_ray_completed(
    on_ray: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Objects complete in Ray are ready to a ``wait``/``get`` with any timeout, even
    while Ray's completion callbacks lag behind (a burst of completions, a loaded
    machine): such a wait missed them above 1 ms, and only a near-zero one asked Ray."""
    import ray

    from actorlib.core import context

    client: Any = context.current()
    on_time = client._completed

    def late(id_: int, data: Any) -> None:  # Ray's callback thread, lagging
        time.sleep(1.0)
        on_time(id_, data)

    monkeypatch.setattr(client, "_completed", late)
    refs = [echo.remote(i) for i in range(3)]
    ray.wait([client.ray_ref(r._id) for r in refs], num_returns=3, timeout=120)
    ready, rest = actorlib.wait(refs, num_returns=3, timeout=0.2)
    assert (len(ready), rest) == (3, [])
    assert actorlib.get(refs, timeout=0.2) == [0, 1, 2]
    fresh = [echo.remote(i) for i in range(3, 5)]
    ray.wait([client.ray_ref(r._id) for r in fresh], num_returns=2, timeout=120)
    ready, rest = asyncio.run(actorlib.wait_async(fresh, num_returns=2, timeout=0.2))
    assert (len(ready), rest) == (2, [])


def test_a_get_of_many_reads_them_in_ray_at_once(
    on_ray: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``get`` of a list waits in Ray (one ``ray.get``), never per object: no completion
    callback runs for it; the values in order, duplicates, an error among them raised as
    the task's, a timeout naming those not ready, and ``wait`` stepping over the rest."""
    from actorlib.core import context

    client: Any = context.current()
    callbacks: list[int] = []
    on_time = client._completed
    monkeypatch.setattr(client, "_completed",
                        lambda id_, data: (callbacks.append(id_), on_time(id_, data)))
    refs = [echo.remote(i) for i in range(300)]
    assert actorlib.get(refs + refs[:5], timeout=120) == list(range(300)) + list(range(5))
    assert callbacks == []
    with pytest.raises(KeyError, match="bad item 7"):
        actorlib.get([fail_on.remote(i, 7) for i in range(20)], timeout=120)
    slow = sleeper.remote(60)
    with pytest.raises(actorlib.exceptions.GetTimeoutError, match=r"1 object\(s\) not ready"):
        actorlib.get([refs[0], slow], timeout=0.3)
    actorlib.cancel(slow, force=True)
    pending, seen = [echo.remote(i) for i in range(50)], 0
    while pending:
        ready, pending = actorlib.wait(pending, num_returns=min(7, len(pending)), timeout=120)
        seen += len(ready)
    assert seen == 50


def test_a_wait_loop_reads_no_value_but_a_get_beside_it_does(
    on_ray: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``wait`` asks only which objects are ready, as Ray's does: a loop of waits reads no
    value from Ray (a ``ray.get`` per step cost a fifth of the loop). A ``get`` of the same
    objects waiting in another thread still has its values."""
    import threading

    from actorlib.backends.ray import waits

    reads: list[int] = []
    ray_get = waits.ray.get
    monkeypatch.setattr(waits.ray, "get", lambda refs, **kw: (
        reads.append(len(refs) if isinstance(refs, list) else 1), ray_get(refs, **kw))[1])
    pending = [sleeper.remote(0.002 * (i % 5)) for i in range(200)]
    steps = 0
    while pending:
        ready, pending = actorlib.wait(pending, timeout=120)
        assert len(ready) == 1
        steps += 1
    assert steps == 200 and reads == []

    refs = [echo.remote(i) for i in range(100)]
    got: list[Any] = []
    reader = threading.Thread(target=lambda: got.extend(actorlib.get(refs, timeout=120)))
    reader.start()
    pending, seen = list(refs), 0
    while pending:
        ready, pending = actorlib.wait(pending, timeout=120)
        seen += len(ready)
    reader.join(120)
    assert seen == 100 and got == list(range(100))


def test_a_drivers_wait_with_no_timeout_waits_in_ray_without_a_watch(
    on_ray: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A driver's ``wait`` with no timeout is one ``ray.wait`` of the refs, as Ray's own,
    with no watch of them (a loop of waits over 1,000 refs paid a watch and an unwatch
    of all those left per call): each object is reported once, in the caller's order
    for several."""
    from actorlib.backends.ray import waits

    watched: list[int] = []
    watch = waits.RayWaits.watch
    monkeypatch.setattr(waits.RayWaits, "watch", lambda self, ids, *a, **k: (
        watched.append(len(ids)), watch(self, ids, *a, **k))[1])
    # Nor a pass of the process's own over all those left (which ``ready_values`` is).
    passes: list[int] = []
    ready_values = waits.RayWaits.ready_values
    monkeypatch.setattr(waits.RayWaits, "ready_values", lambda self, ids, *a, **k: (
        passes.append(len(ids)), ready_values(self, ids, *a, **k))[1])
    refs = [sleeper.remote(0.002 * (i % 5)) for i in range(100)]
    refs[7] = actorlib.put(7)  # complete already: found by Ray's wait as well
    pending, seen = list(refs), []
    while pending:
        ready, pending = actorlib.wait(pending, num_returns=min(3, len(pending)))
        assert ready == [r for r in refs if r in ready]  # the caller's order
        seen += ready
    assert sorted(seen, key=refs.index) == refs and len(seen) == 100
    assert watched == [] and passes == []
    # With a stream about, the usual watch (a stream's objects are not plain refs).
    stream = squares_then_fail.remote(1)
    mixed = [actorlib.put(1), echo.remote(2), stream.completed()]
    ready, rest = actorlib.wait(mixed, num_returns=3)
    assert ready == mixed and rest == [] and watched == [3]
    del stream


def test_a_wait_that_gives_up_passes_over_watched_objects_let_go(on_ray: str) -> None:
    """A watch may outlive the refs of its objects (an Executor's, once ``Pool.terminate``
    settled its futures): a wait that gives up asks Ray about the watched objects this
    process still maps and passes over the others, whose completion callbacks still
    deliver. It raised ``ObjectLostError`` instead (a Pool test failed at teardown)."""
    import gc

    from actorlib.core import context

    client: Any = context.current()
    seen: list[int] = []
    held = sleeper.remote(0.5)
    held_id = held._id
    client.watch([held_id], lambda id_, value: seen.append(id_))
    del held
    gc.collect()
    other = sleeper.remote(0.5)
    ready, rest = actorlib.wait([other], timeout=0)
    assert (ready, rest) == ([], [other])
    deadline = time.monotonic() + 60
    while not seen and time.monotonic() < deadline:
        time.sleep(0.02)
    assert seen == [held_id]
    actorlib.get(other, timeout=60)


@actorlib.remote(num_cpus=0)
class Notes:
    def __init__(self) -> None:
        self.notes: list[str] = []

    def add(self, note: str) -> None:
        self.notes.append(note)

    def read(self) -> list[str]:
        return list(self.notes)


@actorlib.remote(max_retries=0)
def submits_as_its_cancel_lands(notes: Any) -> str:
    """Submits a task of a kind this worker has not submitted yet (``max_calls=7``: a Ray
    function of its own, exported on its first ``.remote()`` here) while its cancel lands
    (Ray's export is slowed down so that it does), then, having caught the interrupt,
    submits one more of the kind and gets it."""
    import ray._private.function_manager as fm

    export = fm.FunctionActorManager.export

    def slow_export(self: Any, remote_function: Any) -> None:
        notes.add.remote("exporting")
        time.sleep(2.0)  # the cancel lands here
        export(self, remote_function)

    fm.FunctionActorManager.export = slow_export  # type: ignore[method-assign]
    try:
        try:
            echo.options(max_calls=7).remote(1)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                time.sleep(0.005)
        except KeyboardInterrupt:
            pass
    finally:
        fm.FunctionActorManager.export = export  # type: ignore[method-assign]
    try:
        got: int | str = actorlib.get(echo.options(max_calls=7).remote(2), timeout=10)
    except exceptions.GetTimeoutError:
        got = "timed out"
    notes.add.remote(f"after the cancel: {got}")
    return "done"


def test_a_cancel_never_breaks_a_submission_under_way(on_ray: str) -> None:
    """A cancel's interrupt waits until the worker has handed its work to Ray, as it
    waits for an import: Ray marks a function exported before it writes it to its
    function table, so an interrupt in between left it never exported, and every later
    task of it from that worker waited forever for a function no worker could load (a
    later test's nested task in test_cancel_kill.py hung so, about one run in five)."""
    notes = Notes.remote()
    ref = submits_as_its_cancel_lands.remote(notes)
    deadline = time.monotonic() + 60
    while "exporting" not in actorlib.get(notes.read.remote(), timeout=60):
        assert time.monotonic() < deadline, "the task never started its submission"
        time.sleep(0.02)
    actorlib.cancel(ref)
    try:
        actorlib.get(ref, timeout=60)
    except exceptions.TaskCancelledError:
        pass
    while len(actorlib.get(notes.read.remote(), timeout=60)) < 2:
        assert time.monotonic() < deadline + 30, "the task never got to its second submission"
        time.sleep(0.05)
    assert actorlib.get(notes.read.remote(), timeout=60) == ["exporting", "after the cancel: 2"]


# -- Ray's errors as actorlib's --------------------------------------------------------


@actorlib.remote(num_cpus=0)
class Named:
    def hello(self) -> str:
        return "hello"


def test_a_taken_actor_name_raises_actorlibs_error(
    on_ray: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ray's ``ActorAlreadyExistsError`` arrives as actorlib's (a ValueError), whether
    Ray's own check before creating finds the name taken or, when another driver took it
    after that check, Ray's registration refuses it; the first actor is untouched."""
    import ray

    from actorlib.exceptions import ActorAlreadyExistsError

    first = Named.options(name="taken-twice").remote()
    with pytest.raises(ActorAlreadyExistsError, match="'taken-twice' already exists"):
        Named.options(name="taken-twice").remote()

    def name_looks_free(name: str, namespace: str | None = None) -> Any:
        raise ValueError(f"Failed to look up actor with name '{name}'")

    monkeypatch.setattr(ray, "get_actor", name_looks_free)  # the race with another driver
    with pytest.raises(ActorAlreadyExistsError, match="'taken-twice' already exists") as caught:
        Named.options(name="taken-twice").remote()
    monkeypatch.undo()
    assert isinstance(caught.value, ValueError)
    assert actorlib.get(first.hello.remote(), timeout=120) == "hello"
    assert actorlib.get(actorlib.get_actor("taken-twice").hello.remote(), timeout=120) == "hello"


def test_rays_actor_already_exists_as_a_value_is_actorlibs() -> None:
    """A Ray ``ActorAlreadyExistsError`` that arrives as an object's error (Ray Client
    reports a failed creation there) is actorlib's, message kept."""
    ray = pytest.importorskip("ray", reason="needs Ray: pip install 'actorlib[ray]'")
    from actorlib.backends.ray.errors import error_value
    from actorlib.core.serialization import deserialize
    from actorlib.exceptions import ActorAlreadyExistsError

    error = deserialize(error_value(ray.exceptions.ActorAlreadyExistsError(
        "Actor with name 'x' already exists in the namespace ns")))
    assert isinstance(error, ActorAlreadyExistsError) and isinstance(error, ValueError)
    assert "Actor with name 'x' already exists in the namespace ns" in str(error)


class _Alarm(BaseException):
    pass


def test_what_a_signal_handler_raises_ends_a_blocked_get(on_ray: str) -> None:
    """An exception a signal handler raises while ``get`` waits in Ray (a test's timeout,
    an application's alarm) ends the wait as itself: Ray holds it back until its call
    returns, then raises a ``SystemError`` instead."""
    import signal

    def alarm(signum: int, frame: Any) -> None:
        raise _Alarm("the alarm went off")

    slow = sleeper.remote(60)
    previous = signal.signal(signal.SIGALRM, alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with pytest.raises(_Alarm, match="the alarm went off"):
            actorlib.get(slow)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        actorlib.cancel(slow, force=True)


def test_a_limited_task_failing_after_ray_took_it_frees_its_slot_once(
    on_ray: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The submission fails after ``.remote()`` returned: Ray runs the task, whose end
    frees its slot; the failure does not free it a second time (a later task of the key
    would then run beside one still in Ray)."""
    from actorlib.core import context

    client: Any = context.current()
    track = client._track

    def track_then_fail(spec: Any, refs: list[Any]) -> None:
        track(spec, refs)
        raise RuntimeError("after Ray took it")

    monkeypatch.setattr(client, "_track", track_then_fail)
    with pytest.raises(RuntimeError, match="after Ray took it"):
        sleeper.options(_concurrency=("after", 1)).remote(0.5)
    assert client._limits._running == {"after": 1}  # the task in Ray holds it
    monkeypatch.undo()
    deadline = time.monotonic() + 120
    while client._limits._running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client._limits._running == {}
    assert actorlib.get(echo.options(_concurrency=("after", 1)).remote(7), timeout=120) == 7


def test_a_result_goes_to_ray_without_a_copy_in_the_worker() -> None:
    """Ray copies a task's result into its store as the task returns: a copy made before
    (a 256 MiB array returned took 5x plain Ray's time) is waste."""
    pytest.importorskip("ray", reason="needs Ray: pip install 'actorlib[ray]'")
    import numpy as np

    from actorlib.backends.ray import worker

    array = np.ones(1 << 20, dtype=np.uint8)
    [value] = worker._values(None, array, "", 1, "f", 0)  # type: ignore[arg-type]
    assert np.shares_memory(np.frombuffer(value.buffers[0], dtype=np.uint8), array)


@actorlib.remote(max_calls=2)
def pid_of(x: int | None = None) -> int:
    return os.getpid()


def test_max_calls_bounds_a_workers_calls_with_and_without_arguments(
    on_ray_either: str,
) -> None:
    """``max_calls`` bounds the calls of a function one worker runs, whether they pass
    arguments or not (a task without any went to a Ray function of its own, counted
    apart by Ray: a worker ran three calls of a ``max_calls=2`` function)."""
    pids = [actorlib.get(pid_of.remote() if i % 2 else pid_of.remote(i), timeout=120)
            for i in range(8)]
    assert max(collections.Counter(pids).values()) <= 2


@actorlib.remote
def ray_task_name(x: int | None = None) -> tuple[str, str]:
    import ray

    context = actorlib.get_runtime_context()
    return ray.get_runtime_context().get_task_name(), context.get_task_name()


@actorlib.remote
class RayNamed:
    def name(self, x: int | None = None) -> tuple[str, str]:
        import ray

        context = actorlib.get_runtime_context()
        return ray.get_runtime_context().get_task_name(), context.get_task_name()


def test_rays_task_names_are_the_tasks_unless_ids_in_names_is_set(on_ray_either: str) -> None:
    """By default Ray sees each task and call under its own name (Ray labels its
    ``ray_tasks`` metric and state rows with it: a name per call would grow them without
    bound). A plain task or call (Ray's default options, one return; its ref arguments
    go to Ray as refs) is its own Ray function or method, named as the task or
    ``Class.method``, either way; with ``ACTORLIB_RAY_IDS_IN_NAMES=1`` the ids of the
    others travel in the name instead of an argument. actorlib's own names are the same
    either way, and so are results."""
    ids_in_names = os.environ["ACTORLIB_RAY_IDS_IN_NAMES"] == "1"
    actor = RayNamed.remote()
    ref = actorlib.put(3)
    got = actorlib.get([
        ray_task_name.remote(), ray_task_name.options(name="req 7").remote(1),
        actor.name.remote(), actor.name.remote(2),
        ray_task_name.remote(ref), actor.name.remote(ref),
        ray_task_name.options(max_calls=3).remote(ref),
        actor.name.options(max_task_retries=1).remote(ref),
    ], timeout=120)
    ours = [name for _, name in got]
    assert ours == ["ray_task_name", "req 7", "RayNamed.name", "RayNamed.name",
                    "ray_task_name", "RayNamed.name", "ray_task_name", "RayNamed.name"]
    rays = [name for name, _ in got]
    assert rays[:6] == ours[:6], rays  # plain: as Ray names its own
    if ids_in_names:
        assert all(r != o and r.startswith(o + " ")
                   for r, o in zip(rays[6:], ours[6:], strict=True)), rays
    else:
        assert rays[6:] == ["ray_task_name", "RayNamed.call"], rays  # the host's method


def test_a_bad_ids_in_names_setting_is_refused_at_init(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("ray", reason="needs Ray: pip install 'actorlib[ray]'")
    request.getfixturevalue("_ray_cluster")
    monkeypatch.setenv("ACTORLIB_RAY_IDS_IN_NAMES", "yes")
    with pytest.raises(ValueError, match="ACTORLIB_RAY_IDS_IN_NAMES must be 0 or 1"):
        actorlib.init(backend="ray")
    assert not actorlib.is_initialized()


@actorlib.remote(num_cpus=1)
def hold_cpu(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@actorlib.remote(num_cpus=1)
def hold_cpu_in_a_child(seconds: float) -> float:
    return actorlib.get(hold_cpu.remote(seconds))  # blocked in get: its own CPU is lent


@actorlib.remote(num_cpus=1)
def hold_cpu_streaming(seconds: float) -> Iterator[int]:
    yield 1
    time.sleep(seconds)
    yield 2


def _cpus_free() -> float:
    import ray

    return float(ray.available_resources().get("CPU", 0.0))


def _until(check: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_shutdown_on_a_ray_connection_that_stays_up_ends_the_drivers_tasks(
    request: pytest.FixtureRequest,
) -> None:
    """A driver's tasks end with its runtime when Ray's connection outlives it (a
    process that called ray.init itself): running ones, their children and streaming
    ones, as Ray ends a departed driver's; else they kept their CPUs until done."""
    pytest.importorskip("ray", reason="needs Ray: pip install 'actorlib[ray]'")
    request.getfixturevalue("_ray_cluster")
    actorlib.init(backend="ray")
    try:
        kept = [hold_cpu.remote(300), hold_cpu_in_a_child.remote(300)]
        stream = hold_cpu_streaming.remote(300)
        assert actorlib.get(next(stream), timeout=60) == 1
        assert _until(lambda: _cpus_free() == 1.0, 60), _cpus_free()  # 3 of 4 held
    finally:
        actorlib.shutdown()
    try:
        assert _until(lambda: _cpus_free() == 4.0, 20), f"CPUs free: {_cpus_free()} of 4"
    finally:
        del kept, stream
        _reset()


def test_log_to_driver_against_a_ray_connection_already_open_is_refused_not_ignored(
    request: pytest.FixtureRequest,
) -> None:
    """A process that called ray.init itself has chosen whether its workers' output is
    printed, for the whole process: ``init(log_to_driver=)`` saying otherwise is
    refused (it was silently ignored); saying the same, or nothing, joins it."""
    pytest.importorskip("ray", reason="needs Ray: pip install 'actorlib[ray]'")
    request.getfixturevalue("_ray_cluster")  # this process: ray.init(log_to_driver=True)
    with pytest.raises(ValueError, match=r"log_to_driver=False: .* runs with "
                       r"log_to_driver=True.*pass log_to_driver=False to ray\.init"):
        actorlib.init(backend="ray", log_to_driver=False)
    assert not actorlib.is_initialized()
    actorlib.init(backend="ray", log_to_driver=True)
    actorlib.shutdown()
    _reset()


def test_a_ray_connection_opened_without_log_to_driver_is_followed(
    request: pytest.FixtureRequest,
) -> None:
    """The other way round, in a process whose ray.init had log_to_driver=False:
    init() without it follows the connection; log_to_driver=True is refused."""
    pytest.importorskip("ray", reason="needs Ray: pip install 'actorlib[ray]'")
    cluster = request.getfixturevalue("_ray_cluster")
    program = textwrap.dedent(f"""
        import ray
        import actorlib
        ray.init(address={cluster!r}, log_to_driver=False)
        try:
            actorlib.init(backend="ray", log_to_driver=True)
        except ValueError as exc:
            print("refused:", exc)
        actorlib.init(backend="ray")
        print("joined:", actorlib.get(actorlib.put(7)))
        actorlib.shutdown()
        ray.shutdown()
    """)
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    assert "refused: log_to_driver=True: " in done.stdout, done.stdout + done.stderr[-2000:]
    assert "joined: 7" in done.stdout, done.stdout + done.stderr[-2000:]


@actorlib.remote
def read_data() -> str:
    return open("data.txt").read()


def test_a_working_dir_ray_dropped_from_its_store_is_put_back(
    on_ray: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A working_dir is actorlib's package in Ray's package store, which Ray empties of
    packages no work has used for a while: a later submission puts it back."""
    from ray.experimental import internal_kv

    from actorlib.backends.ray import packages
    from actorlib.runtime_env_files import pack

    (tmp_path / "data.txt").write_text("kept")
    task = read_data.options(runtime_env={"working_dir": str(tmp_path)})
    assert actorlib.get(task.remote(), timeout=120) == "kept"
    name = packages.uri(pack(str(tmp_path), "working_dir"))
    assert internal_kv._internal_kv_exists(name)
    monkeypatch.setattr(packages, "_REPIN_S", 0.0)
    internal_kv._internal_kv_del(name)  # as Ray deletes an expired one
    assert actorlib.get(task.remote(), timeout=120) == "kept"
    assert internal_kv._internal_kv_exists(name)


@actorlib.remote
class Echo:
    def echo(self, x: int) -> int:
        return x


def test_a_forced_cancel_of_an_ended_call_is_a_no_op_on_ray(on_ray: str) -> None:
    """An ended actor call has nothing to refuse, as on every backend: Ray still raises
    its ValueError for force=True while it has not yet forgotten the call after its
    result arrived, so the call's end decides, not Ray's timing."""
    echo = Echo.remote()
    for i in range(200):
        ref = echo.echo.remote(i)
        assert actorlib.get(ref, timeout=120) == i
        actorlib.cancel(ref, force=True)


@actorlib.remote(num_cpus=0)
class _Pid:
    def __init__(self) -> None:
        self.n = 0

    def pid(self) -> int:
        self.n += 1
        return os.getpid()


def test_an_actor_whose_handles_are_gone_ends_after_its_calls(on_ray: str) -> None:
    """The driver lets go of the Ray handle once the calls it sent have run, so Ray ends
    the actor's process (it lived on until shutdown())."""
    import psutil

    a = _Pid.remote()
    pid = actorlib.get(a.pid.remote(), timeout=60)
    calls = [a.pid.remote() for _ in range(20)]
    del a
    assert actorlib.get(calls, timeout=60) == [pid] * 20  # none lost to the actor's end
    deadline = time.monotonic() + 60
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the actor's process outlived its handles"
        time.sleep(0.1)


@actorlib.remote
class Tally:
    def __init__(self) -> None:
        self.seen: list[int] = []

    def add(self, x: int = -1) -> list[int]:
        self.seen.append(x)
        return list(self.seen)

    def task_id(self) -> str | None:
        return actorlib.get_runtime_context().get_task_id()

    def pair(self) -> tuple[int, int]:
        return 1, 2


def test_a_plain_actor_call_goes_to_rays_core_worker_directly(
    on_ray: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A call with Ray's default options and a small payload (or none) is handed to
    Ray's core worker without Ray's Python layers (``ActorMethod._remote``): in order,
    its ids the worker's, its errors the method's. A call with options still takes
    Ray's ``.remote()``, and so does every call where the core worker's signature is
    not the one the backend knows."""
    import ray

    from actorlib.backends.ray import direct

    through_ray: list[str] = []
    remote = ray.actor.ActorMethod._remote

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        through_ray.append(self._method_name)
        return remote(self, *args, **kwargs)

    monkeypatch.setattr(ray.actor.ActorMethod, "_remote", counted)
    tally = Tally.remote()
    refs = [tally.add.remote(i) for i in range(20)] + [tally.add.remote()]
    assert actorlib.get(refs[-1], timeout=120) == [*range(20), -1]
    ref = tally.task_id.remote()
    assert actorlib.get(ref, timeout=120) == ref.task_id().hex()
    with pytest.raises(TypeError):
        actorlib.get(tally.add.remote(1, 2, 3), timeout=120)  # type: ignore[call-arg]
    assert through_ray == []
    assert actorlib.get(tally.pair.options(num_returns=2).remote(), timeout=120) == [1, 2]
    assert actorlib.get(tally.add.options(max_task_retries=1).remote(7),
                        timeout=120)[-1] == 7
    assert through_ray == ["call", "call"]
    monkeypatch.setattr(direct, "_KNOWN", False)  # another Ray: its ``.remote()``
    other = Tally.remote()
    assert actorlib.get(other.add.remote(5), timeout=120) == [5]
    assert through_ray == ["call", "call", "call"]


@actorlib.remote
def attempts(path: str) -> int:
    """Fails with KeyError until its third attempt (counted in ``path``)."""
    with open(path, "a") as f:
        f.write("x")
    with open(path) as f:
        count = len(f.read())
    if count < 3:
        raise KeyError(f"attempt {count}")
    return count


@actorlib.remote
def own_task_id() -> str | None:
    return actorlib.get_runtime_context().get_task_id()


@actorlib.remote
def parent_of_echo() -> int:
    return actorlib.get(echo.remote(41)) + actorlib.get(echo.remote(1))


def test_a_plain_task_goes_to_rays_core_worker_directly_after_its_first(
    on_ray: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    """A driver's task with one function and set of options goes through Ray's
    ``.remote()`` once (which exports the function); its later tasks (Ray's values for
    those options, made once) go to Ray's core worker directly: names, retries and the
    runtime context's ids as before. A streaming task, a nested task and every task
    where the core worker's signature is not the one the backend knows take Ray's
    ``.remote()``."""
    import ray

    from actorlib.backends.ray import direct

    through_ray: list[str] = []
    remote = ray.remote_function.RemoteFunction._remote

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        through_ray.append(kwargs.get("name") or self._function_name)
        return remote(self, *args, **kwargs)

    monkeypatch.setattr(ray.remote_function.RemoteFunction, "_remote", counted)
    assert actorlib.get([echo.remote(i) for i in range(20)], timeout=120) == list(range(20))
    assert len(through_ray) == 1
    named = [ray_task_name.options(name="req 7").remote() for _ in range(3)]
    assert actorlib.get(named, timeout=120) == [("req 7", "req 7")] * 3
    assert len(through_ray) == 2
    retried = attempts.options(max_retries=3, retry_exceptions=[KeyError])
    assert actorlib.get(retried.remote(str(tmp_path / "a")), timeout=120) == 3
    assert actorlib.get(retried.remote(str(tmp_path / "b")), timeout=120) == 3
    assert len(through_ray) == 3
    with pytest.raises(KeyError, match="attempt 1"):
        actorlib.get(attempts.options(max_retries=0).remote(str(tmp_path / "c")), timeout=120)
    refs = [own_task_id.remote() for _ in range(3)]
    assert actorlib.get(refs, timeout=120) == [r.task_id().hex() for r in refs]
    assert actorlib.get(parent_of_echo.remote(), timeout=120) == 42
    count = len(through_ray)
    for _ in range(2):
        stream: Any = squares_then_fail.remote(2)
        assert actorlib.get(list(stream)[:2], timeout=120) == [0, 1]
    assert len(through_ray) == count + 2  # streams: Ray's ``.remote()`` every time
    monkeypatch.setattr(direct, "_KNOWN_TASK", False)  # another Ray: its ``.remote()``
    count = len(through_ray)
    assert actorlib.get(fail_on.remote(1, 2), timeout=120) == 1
    assert actorlib.get(fail_on.remote(1, 2), timeout=120) == 1
    assert len(through_ray) == count + 2


def test_a_drivers_get_waits_in_ray_without_a_watch(
    on_ray: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A driver's ``get`` with no timeout waits in ``ray.get`` itself, with no watch of
    actorlib's (no waiter, no delivery): values, duplicates and errors as before; a
    ``get`` with a timeout, a ``wait`` and a task's ``get`` take the usual watch; a
    ``get`` blocked there when the runtime shuts down raises ``RuntimeClosedError``."""
    import threading

    from actorlib.core import context

    client: Any = context.current()
    watched: list[int] = []
    watch = client.watch

    def counted(ids: list[int], *args: Any, **kwargs: Any) -> None:
        watched.append(len(ids))
        watch(ids, *args, **kwargs)

    monkeypatch.setattr(client, "watch", counted)
    refs = [echo.remote(i) for i in range(50)]
    assert actorlib.get(refs + refs[:3]) == [*range(50), 0, 1, 2]
    assert actorlib.get(echo.remote(7)) == 7
    with pytest.raises(KeyError, match="bad item 3"):
        actorlib.get([fail_on.remote(i, 3) for i in range(6)])
    assert actorlib.get(parent_of_echo.remote()) == 42  # its task's gets: in the worker
    assert watched == []
    watched.clear()
    assert actorlib.get(echo.remote(8), timeout=120) == 8
    assert actorlib.wait([echo.remote(9)], timeout=120)[0]
    assert watched == [1, 1]
    slow, raised = sleeper.remote(60), []

    def blocked() -> None:
        try:
            actorlib.get(slow)
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=blocked)
    thread.start()
    time.sleep(0.5)
    actorlib.cancel(slow, force=True)
    thread.join(60)
    assert len(raised) == 1 and isinstance(raised[0], actorlib.exceptions.TaskCancelledError)
    slow, raised = sleeper.remote(60), []
    thread = threading.Thread(target=blocked)
    thread.start()
    time.sleep(0.5)
    actorlib.shutdown()
    thread.join(10)
    assert not thread.is_alive()
    assert len(raised) == 1 and isinstance(raised[0], actorlib.exceptions.RuntimeClosedError)


def test_a_soft_cancel_is_sent_again_until_the_task_has_ended(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ray 2.60 drops a cancel that reaches a worker just before the task starts: the
    backend sends a task's soft cancel again, backing off, until its result has come
    (never after), never recursive, and stops at shutdown. Ray stood in for: which
    cancels Ray drops is its timing's to say."""
    pytest.importorskip("ray")
    from actorlib.backends.ray import recancel

    sent: list[tuple[str, bool, bool]] = []
    ended: set[str] = set()

    class StandIn:
        ObjectRef = str

        def wait(self, refs: list[str], num_returns: int, timeout: float, fetch_local: bool
                 ) -> tuple[list[str], list[str]]:
            return [r for r in refs if r in ended], [r for r in refs if r not in ended]

        def cancel(self, ref: str, force: bool, recursive: bool) -> None:
            sent.append((ref, force, recursive))

    monkeypatch.setattr(recancel, "ray", StandIn())
    monkeypatch.setattr(recancel, "DELAYS", (0.01, 0.02, 0.03))
    resender = recancel.Recanceller()
    resender.add("runs on")
    resender.add("ends")
    deadline = time.monotonic() + 10
    while ("ends", False, False) not in sent and time.monotonic() < deadline:
        time.sleep(0.005)
    ended.add("ends")
    while sent.count(("runs on", False, False)) < 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.2)
    assert sent.count(("runs on", False, False)) == 3  # one per delay, then no more
    assert 1 <= sent.count(("ends", False, False)) < 3  # none once it had ended
    assert not [s for s in sent if s[2]]  # never recursive
    resender.add("after")
    resender.close()
    time.sleep(0.05)
    assert ("after", False, False) not in sent
    assert not [t for t in threading.enumerate() if t.name == "actorlib-ray-recancel"]


@actorlib.remote(max_retries=0)
def waits_for_a_gate_after_its_cancel(notes: Any, gate: Any) -> str:
    """Catches its cancel's interrupt, then submits a wait on ``gate`` and gets it."""
    try:
        notes.add.remote("running")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.005)
    except KeyboardInterrupt:
        opened = gate.wait.remote()
        actorlib.get(notes.add.remote("waiting"), timeout=60)
        got = actorlib.get(opened, timeout=60)
        actorlib.get(notes.add.remote(f"gate: {got}"), timeout=60)
        raise
    return "not cancelled"


def test_a_cancel_sent_again_spares_the_work_submitted_after_the_interrupt(
    on_ray: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The soft cancel sent again (``recancel``) is never recursive: a recursive one made
    Ray's worker cancel, on each resend, the calls a task that caught the interrupt had
    made after it (here its wait on a gate; in test_cancel_kill.py under load, a note
    to a recorder still starting, never delivered: a CI flake). The resends are held
    until the task waits, then all go."""
    from testkit import Gate

    from actorlib.backends.ray import recancel

    waiting = threading.Event()
    resent: list[int] = []  # each resend: 1 if sent (the task ran on), 0 if it had ended
    send = recancel.cancel_pending

    def held_back(tasks: list[Any], *, force: bool, recursive: bool) -> int:
        waiting.wait(60)
        count = send(tasks, force=force, recursive=recursive)
        resent.append(count)
        return count

    monkeypatch.setattr(recancel, "cancel_pending", held_back)
    monkeypatch.setattr(recancel, "DELAYS", (0.01, 0.01, 0.01, 0.01))
    notes, gate = Notes.remote(), Gate.remote()
    ref = waits_for_a_gate_after_its_cancel.remote(notes, gate)
    deadline = time.monotonic() + 60
    try:
        while "running" not in actorlib.get(notes.read.remote(), timeout=60):
            assert time.monotonic() < deadline, "the task never started"
            time.sleep(0.02)
        actorlib.cancel(ref)
        while "waiting" not in actorlib.get(notes.read.remote(), timeout=60):
            assert time.monotonic() < deadline, "the task never waited for the gate"
            time.sleep(0.02)
    finally:
        waiting.set()
    while len(resent) < len(recancel.DELAYS) and 0 not in resent:  # 0: it had ended
        assert time.monotonic() < deadline, f"resends: {resent}"
        time.sleep(0.02)
    assert resent == [1] * len(recancel.DELAYS)  # each found the task running
    actorlib.get(gate.open.remote(), timeout=60)
    with pytest.raises(exceptions.TaskCancelledError):
        actorlib.get(ref, timeout=60)
    assert actorlib.get(notes.read.remote(), timeout=60) == ["running", "waiting",
                                                             "gate: opened"]


@pytest.mark.timeout(240)
def test_the_paired_bench_runs_both_sides_in_turns_on_one_ray(tmp_path: Path) -> None:
    """``actorlib bench --backend ray --against ray --paired``: both sides in one fresh
    process, each timed round of each row once per side, the turn ratios reported."""
    pytest.importorskip("ray", reason="needs Ray: pip install 'actorlib[ray]'")
    from ray_local import RAY_ENV

    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "actorlib", "bench", "--backend", "ray", "--against", "ray",
         "--paired", "--rounds", "2", "--warmup", "0", "--duration", "0.2",
         "--workloads", "put_small,memcpy_large", "--large-mb", "8", "--json", str(out)],
        capture_output=True, text=True, timeout=220, env={**os.environ, **RAY_ENV},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["options"]["paired"] is True
    ours, theirs = result["targets"]["actorlib"], result["targets"]["ray"]
    assert ours["errors"] == theirs["errors"] == {}
    assert set(ours["metrics"]) == {"put_small", "memcpy_large"}
    assert set(theirs["metrics"]) == {"put_small"}  # the other is an actorlib-only row
    assert len(ours["metrics"]["put_small"]["rounds"]) == 2
    assert len(theirs["metrics"]["put_small"]["rounds"]) == 2
    assert len(result["paired"]["put_small"]["ratios"]) == 2
    assert result["paired"]["put_small"]["median"] > 0
    assert "memcpy_large" not in result["paired"]
    assert "paired turns" in done.stdout


def test_the_paired_bench_needs_the_ray_backend_against_ray() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "actorlib", "bench", "--paired", "--against", "processpool"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2
    assert "--paired" in done.stderr and "--backend ray --against ray" in done.stderr
