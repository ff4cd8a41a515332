"""Ray's options beyond the basics, on every backend: ``max_pending_calls`` (an actor
handle refuses calls while too many are unfinished) and ``accelerator_type``."""

from __future__ import annotations

import gc
import threading
import time
from typing import Any

import pytest
from testkit import Gate, T

import actorlib
from actorlib.exceptions import ActorError, InfeasibleResourceError, PendingCallsLimitExceeded
from actorlib.util import accelerators

pytestmark = pytest.mark.shared_runtime


@actorlib.remote(num_cpus=0)
class Worker:
    def hold(self, gate: Any) -> str:
        actorlib.get(gate.wait.remote(), timeout=T)
        return "held"

    def ping(self) -> str:
        return "pong"

    def echo(self, value: Any) -> Any:
        return value


def test_a_handle_refuses_calls_beyond_max_pending_calls(rt: Any) -> None:
    gate = Gate.remote()
    worker = Worker.options(max_pending_calls=2).remote()
    first, second = worker.hold.remote(gate), worker.ping.remote()
    with pytest.raises(PendingCallsLimitExceeded, match=r"max_pending_calls=2") as caught:
        worker.ping.remote()
    assert isinstance(caught.value, ActorError)
    other = Worker.remote()  # no limit: unaffected
    assert actorlib.get([other.ping.remote() for _ in range(5)], timeout=T) == ["pong"] * 5
    actorlib.get(gate.open.remote(), timeout=T)
    assert actorlib.get([first, second], timeout=T) == ["held", "pong"]
    # Read back: the next calls are taken at once.
    assert actorlib.get([worker.ping.remote(), worker.ping.remote()], timeout=T) == [
        "pong", "pong"]


def test_calls_whose_refs_were_dropped_count_until_they_finish(rt: Any) -> None:
    gate = Gate.remote()
    worker = Worker.options(max_pending_calls=2).remote()
    worker.hold.remote(gate)
    worker.ping.remote()
    gc.collect()
    with pytest.raises(PendingCallsLimitExceeded):
        worker.ping.remote()
    actorlib.get(gate.open.remote(), timeout=T)
    deadline = time.monotonic() + T
    while True:  # nothing to read back: the handle learns of the ends on its own
        try:
            ref = worker.ping.remote()
            break
        except PendingCallsLimitExceeded:
            assert time.monotonic() < deadline, "the finished calls still count"
            time.sleep(0.01)
    assert actorlib.get(ref, timeout=T) == "pong"


def test_threads_calling_through_one_handle_never_pass_the_limit_together(rt: Any) -> None:
    gate = Gate.remote()
    worker = Worker.options(max_pending_calls=3).remote()
    taken: list[Any] = []
    refused: list[int] = []
    start = threading.Barrier(8)

    def call() -> None:
        start.wait(timeout=T)
        for _ in range(20):
            try:
                taken.append(worker.hold.remote(gate))
            except PendingCallsLimitExceeded:
                refused.append(1)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=T)
    assert len(taken) == 3 and len(refused) == 8 * 20 - 3
    actorlib.get(gate.open.remote(), timeout=T)
    assert actorlib.get(taken, timeout=T) == ["held"] * 3


def test_a_call_that_fails_to_submit_gives_its_place_back(rt: Any) -> None:
    worker = Worker.options(max_pending_calls=1).remote()
    for _ in range(3):
        with pytest.raises(TypeError, match="pickle"):
            worker.echo.remote(threading.Lock())  # an argument that cannot be pickled
    assert actorlib.get(worker.ping.remote(), timeout=T) == "pong"


def test_max_pending_calls_is_checked() -> None:
    for bad, error in ((0, ValueError), (-2, ValueError), ("3", TypeError), (True, TypeError)):
        with pytest.raises(error, match="max_pending_calls must be"):
            Worker.options(max_pending_calls=bad)
    with pytest.raises(TypeError, match="max_pending_calls"):  # an actor option, as in Ray
        actorlib.remote(max_pending_calls=3)(lambda: None)


@actorlib.remote
def accelerated() -> dict[str, float]:
    return actorlib.get_runtime_context().get_assigned_resources()


@pytest.mark.init_kwargs(resources={"accelerator_type:A100": 1})
def test_accelerator_type_needs_a_node_that_offers_it(rt: Any) -> None:
    assert accelerators.NVIDIA_A100 == "A100"
    on_a100 = accelerated.options(accelerator_type=accelerators.NVIDIA_A100)
    held = actorlib.get([on_a100.remote() for _ in range(3)], timeout=T)
    assert all(r.get("accelerator_type:A100") == pytest.approx(0.001) for r in held), held
    with pytest.raises(InfeasibleResourceError, match="accelerator_type:H100"):
        accelerated.options(accelerator_type="H100").remote()
    with pytest.raises(InfeasibleResourceError, match="accelerator_type:H100"):
        Worker.options(accelerator_type="H100").remote()
    worker = Worker.options(accelerator_type="A100").remote()
    assert actorlib.get(worker.ping.remote(), timeout=T) == "pong"
    with pytest.raises(TypeError, match="accelerator_type"):
        accelerated.options(accelerator_type=100)


# -- Ray's options that change nothing here: accepted as Ray accepts them ------------------


def test_options_without_effect_are_checked_and_taken(rt: Any) -> None:
    """``enable_task_events``, ``allow_out_of_order_execution``, ``object_store_memory``
    and ``_generator_backpressure_num_objects=None`` appear in Ray programs; they are
    checked as Ray checks them and the work runs as without them."""

    def plain() -> int:
        return 1

    task = actorlib.remote(enable_task_events=False, object_store_memory=None)(plain)
    assert actorlib.get(task.remote(), timeout=T) == 1
    quiet = actorlib.remote(plain).options(
        enable_task_events=True, _generator_backpressure_num_objects=None
    )
    assert actorlib.get(quiet.remote(), timeout=T) == 1
    worker = Worker.options(enable_task_events=False, allow_out_of_order_execution=True,
                            object_store_memory=None).remote()
    assert actorlib.get(worker.ping.options(enable_task_events=False).remote(),
                        timeout=T) == "pong"
    with pytest.warns(DeprecationWarning, match="object_store_memory"):
        with_memory = Worker.options(object_store_memory=1 << 20).remote()
    assert actorlib.get(with_memory.ping.remote(), timeout=T) == "pong"
    with pytest.raises(ValueError, match="not implemented for tasks"):
        actorlib.remote(plain).options(object_store_memory=1 << 20)
    with pytest.raises(TypeError, match="enable_task_events"):
        actorlib.remote(plain).options(enable_task_events="no")
    with pytest.raises(TypeError, match="allow_out_of_order_execution"):
        Worker.options(allow_out_of_order_execution=1)
