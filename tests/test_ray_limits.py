"""The ray backend's bookkeeping of concurrency limits (``backends/ray/limits.py``):
which held tasks take the slots, in what order, and what can still be taken back.
Behaviour on a running Ray is ``test_limited_tasks.py``'s and ``test_executor.py``'s."""

from __future__ import annotations

import signal
import threading
from typing import Any

import pytest
from testkit import T, ctrl_c_elsewhere, wait_for

pytest.importorskip("ray", reason="needs Ray: pip install 'actorlib[ray]'")

from actorlib.backends.ray import limits as limits_module
from actorlib.backends.ray.client import RayCore
from actorlib.backends.ray.interrupts import SigintDeferred
from actorlib.backends.ray.limits import (
    QUEUED,
    RELEASED,
    SUBMITTED,
    WITHDRAWN,
    Held,
    HeldTasks,
    Limits,
)
from actorlib.core.specs import NO_ARGS, TaskSpec


def _spec(n: int, key: str = "k", limit: int = 2) -> TaskSpec:
    return TaskSpec(task_id=n, function=None, args=NO_ARGS,  # type: ignore[arg-type]
                    return_ids=(n,), num_returns=1, resources={}, name=f"t{n}",
                    concurrency=(key, limit))


def test_tasks_beyond_the_limit_are_held_and_released_in_order() -> None:
    limits = Limits()
    assert limits.admit(_spec(1)) is None
    assert limits.admit(_spec(2)) is None
    third, fourth = limits.admit(_spec(3)), limits.admit(_spec(4))
    assert third is not None and fourth is not None
    assert limits.standing == 2
    assert limits.leave("k") == [third]
    assert third.state == RELEASED and fourth.state == QUEUED
    assert limits.leave("k") == [fourth]
    assert limits.leave("k") == []


def test_a_held_task_can_be_withdrawn_until_it_is_released() -> None:
    limits = Limits()
    limits.admit(_spec(1, limit=1))
    second, third = limits.admit(_spec(2, limit=1)), limits.admit(_spec(3, limit=1))
    assert second is not None and third is not None
    assert limits.withdraw(second)
    assert second.state == WITHDRAWN
    assert not limits.withdraw(second)
    assert limits.leave("k") == [third]  # the withdrawn one is passed over
    assert not limits.withdraw(third)  # released: on its way to Ray


def test_a_task_taken_out_of_turn_counts_and_is_not_released_again() -> None:
    limits = Limits()
    limits.admit(_spec(1, limit=1))
    second, third = limits.admit(_spec(2, limit=1)), limits.admit(_spec(3, limit=1))
    assert second is not None and third is not None
    assert limits.take_now(third)
    assert not limits.take_now(third)
    assert limits.leave("k") == []  # the first left; the third holds a slot beyond it
    assert limits.leave("k") == [second]


def test_keys_are_counted_apart_and_a_queue_keeps_its_order() -> None:
    limits = Limits()
    assert limits.admit(_spec(1, key="a", limit=1)) is None
    assert limits.admit(_spec(2, key="b", limit=1)) is None
    held = limits.admit(_spec(3, key="a", limit=1))
    assert held is not None
    assert limits.leave("b") == []
    assert limits.admit(_spec(4, key="b", limit=1)) is None
    assert limits.leave("a") == [held]


def test_stood_counts_each_held_task_once() -> None:
    limits = Limits()
    limits.admit(_spec(1, limit=1))
    held = limits.admit(_spec(2, limit=1))
    assert held is not None and limits.standing == 1
    limits.stood(held)
    limits.stood(held)
    assert limits.standing == 0 and held.submitted.is_set()


class _Client(HeldTasks):
    """The client's tables and its two steps of a submission, without Ray: ``send``
    stands for ``.remote()``, ``accept`` for what follows once Ray took the task."""

    submit_task = RayCore.submit_task
    _submit_to_ray = RayCore._submit_to_ray

    def __init__(self, send: Any, accept: Any = None) -> None:
        self.closed = False
        self._lock = threading.RLock()
        self._refs: dict[int, list[Any]] = {}
        self._watches: dict[Any, set[int]] = {}
        self._watchers: dict[int, set[Any]] = {}
        self._hooked: set[int] = set()
        self._large: set[Any] = set()
        self._limits = Limits()
        self.send, self.accept = send, accept
        self.delivered: dict[int, Any] = {}

    def _check_open(self) -> None:
        pass

    def _ray_ref(self, id_: int) -> Any:
        return self._refs[id_][0]

    def _deliver(self, id_: int, data: Any, hooked: bool = False) -> None:
        self.delivered[id_] = data

    def _send(self, spec: TaskSpec) -> Any:
        return self.send(spec)

    def _accepted(self, spec: TaskSpec, out: Any, held: Held | None = None) -> None:
        self._adopt_returns(spec.return_ids, [out], held)
        if self.accept is not None:
            self.accept(spec)

    def _adopt_returns(self, ids: tuple[int, ...], out: Any, held: Any = None) -> list[Any]:
        for id_, ref in zip(ids, out, strict=True):
            self._refs[id_] = [ref, 1, False]
        return list(out)


def _second_held(client: _Client) -> Held:
    """Two tasks under a limit of one: the second is held (returned)."""
    client.submit_task(_spec(1, limit=1))
    client.submit_task(_spec(2, limit=1))
    held = client._ray_ref(2)
    assert type(held) is Held
    return held


def _interrupted(spec: TaskSpec) -> Any:
    raise KeyboardInterrupt


def test_a_held_task_interrupted_while_submitted_inline_fails_and_frees_its_slot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C while a held task is submitted out of turn: its ids hold the error (a
    get does not hang), its slot frees, and the interruption goes on up."""
    monkeypatch.setattr(limits_module.ray, "put", lambda value: ("put", value))
    client = _Client(lambda spec: "ref")
    held = _second_held(client)
    client.send = _interrupted
    with pytest.raises(KeyboardInterrupt):
        client._take_now(2, held)
    assert held.submitted.is_set() and client._limits.standing == 0
    assert type(client._ray_ref(2)) is not Held and 2 in client.delivered
    assert client._limits._running == {"k": 1}  # the first task's slot only


def test_a_withdrawal_whose_error_cannot_be_stored_still_ends_the_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(value: Any) -> Any:
        raise RuntimeError("ray.put failed")

    monkeypatch.setattr(limits_module.ray, "put", refuse)
    client = _Client(lambda spec: "ref")
    client.submit_task(_spec(1, limit=1))
    client.submit_task(_spec(2, limit=1))
    held = client._ray_ref(2)
    with pytest.raises(RuntimeError, match=r"ray\.put failed"):
        client.withdraw([2])
    assert held.submitted.is_set() and client._limits.standing == 0


def test_a_failure_after_ray_took_a_task_keeps_its_slot_until_it_ends() -> None:
    """Ray has the task (it runs and frees its slot when it ends): the caller hears of
    the failure, but the slot is not given back a second time now."""
    def fail(spec: TaskSpec) -> None:
        raise RuntimeError("after .remote()")

    client = _Client(lambda spec: "ref", accept=fail)
    with pytest.raises(RuntimeError, match="after"):
        client.submit_task(_spec(1, limit=2))
    assert client._limits._running == {"k": 1}
    client.send = lambda spec: (_ for _ in ()).throw(RuntimeError("refused"))
    client.accept = None
    with pytest.raises(RuntimeError, match="refused"):
        client.submit_task(_spec(2, limit=2))
    assert client._limits._running == {"k": 1}  # refused before Ray took it: given back


def test_ctrl_c_reaches_the_main_thread_waiting_for_a_held_task_another_thread_submits(
) -> None:
    """A held task's ref is needed now on the main thread (it goes into other work) while
    the completer is submitting it, in Ray's ``.remote()`` for as long as Ray takes:
    Ctrl-C reaches the main thread's wait at once, whichever thread the kernel hands it
    to."""
    in_ray = threading.Event()

    def send(spec: TaskSpec) -> Any:
        if spec.task_id == 2:
            assert in_ray.wait(T)
        return "ref"

    client = _Client(send)
    held = _second_held(client)
    assert client._limits.leave("k") == [held]  # the first ended: the completer has it
    submitting = threading.Thread(target=client._submit_held, args=([held],))
    submitting.start()
    try:
        wait_for(lambda: held.state is SUBMITTED, "the completer to submit it", T)
        with ctrl_c_elsewhere("_take_now", "limits.py", in_ray.set):
            client._take_now(2, held)
    finally:
        in_ray.set()
        submitting.join(T)
    assert client._ray_ref(2) == "ref" and held.submitted.is_set()


class _Ref:
    """A Ray ref's completion hook: the callbacks given, called when the test ends it."""

    def __init__(self) -> None:
        self.callbacks: list[Any] = []

    def _on_completed(self, callback: Any) -> None:
        self.callbacks.append(callback)

    def end(self, data: Any) -> None:
        for callback in self.callbacks:
            callback(data)


class _Tracking(_Client):
    """:class:`_Client` with the client's own acceptance (ids mapped, slot tracked); a
    real SIGINT arrives just after ``.remote()`` returned while ``interrupt`` is set."""

    _accepted = RayCore._accepted
    _completed = RayCore._completed

    def __init__(self) -> None:
        self.refs: dict[int, _Ref] = {}
        super().__init__(lambda spec: self.refs.setdefault(spec.task_id, _Ref()))
        self.interrupt = False

    def _adopt_returns(self, ids: tuple[int, ...], out: Any, held: Any = None) -> list[Any]:
        if self.interrupt:
            self.interrupt = False
            signal.raise_signal(signal.SIGINT)  # Ctrl-C: Ray has the task, ids unmapped
        return RayCore._adopt_returns(self, ids, out, held)  # type: ignore[arg-type]


@pytest.fixture
def default_sigint() -> Any:
    """Python's own SIGINT handler (KeyboardInterrupt), as in a program."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def test_ctrl_c_after_ray_took_a_held_task_leaves_its_ids_and_slot_tracked(
    default_sigint: Any,
) -> None:
    """Ctrl-C just after ``.remote()`` of a held task submitted inline: the interrupt
    goes on up, the ids stand for the task in Ray (its result when it ends, not an
    error), and its slot comes back once, when it ends."""
    client = _Tracking()
    held = _second_held(client)
    client.interrupt = True
    with pytest.raises(KeyboardInterrupt):
        client._take_now(2, held)  # its ref went into other work, from the main thread
    assert client._ray_ref(2) is client.refs[2] and client.delivered == {}
    assert held.submitted.is_set() and client._limits.standing == 0
    assert client._limits._running == {"k": 2}  # taken out of turn, beyond the limit
    client.refs[2].end("done")
    assert client.delivered == {2: "done"} and client._limits._running == {"k": 1}
    client.refs[2].end("done")  # a second completion does not free a second slot
    client.refs[1].end("done")
    assert client._limits._running == {}


def test_ctrl_c_after_ray_took_a_limited_task_keeps_its_slot_until_it_ends(
    default_sigint: Any,
) -> None:
    client = _Tracking()
    client.interrupt = True
    with pytest.raises(KeyboardInterrupt):
        client.submit_task(_spec(1, limit=1))
    assert client._ray_ref(1) is client.refs[1] and client._limits._running == {"k": 1}
    client.refs[1].end("done")
    assert client._limits._running == {} and client.delivered == {1: "done"}


def test_an_interrupt_held_back_is_raised_even_when_the_block_fails(
    default_sigint: Any,
) -> None:
    with pytest.raises(KeyboardInterrupt) as caught, SigintDeferred():
        with SigintDeferred():  # nested: the outer one holds it
            signal.raise_signal(signal.SIGINT)
        raise RuntimeError("refused")
    assert isinstance(caught.value.__context__, RuntimeError)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with SigintDeferred():
        pass  # nothing noted: nothing raised
