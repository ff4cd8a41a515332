"""cancel() of actor calls: queued ones never run; a running call of a sync actor is not
interrupted (the actor's state is its own) but sees ``is_canceled()``; a running call of an
async actor gets ``asyncio.CancelledError``; whatever the call makes of it, ``get`` raises
``TaskCancelledError``. As Ray documents for actor tasks."""

from __future__ import annotations

import asyncio
import time

import pytest
from testkit import Sync, T

import actorlib
from actorlib import exceptions as exc

pytestmark = pytest.mark.shared_runtime


@actorlib.remote(num_cpus=0)
class Ledger:
    """A sync actor: one call at a time, in each caller's order."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    def block(self, started: object, sync: object) -> str:
        self.ran.append("block")
        actorlib.get(started.arrive.remote(), timeout=T)  # type: ignore[attr-defined]
        actorlib.get(sync.wait.remote(), timeout=T)  # type: ignore[attr-defined]
        return "finished"

    def note(self, item: str) -> str:
        self.ran.append(item)
        return item

    def until_canceled(self, started: object) -> str:
        """Runs until told it was cancelled: only ``is_canceled()`` can end it early."""
        ctx = actorlib.get_runtime_context()
        # Not waited for: a cancel (recursive) reaching this call while it waits for
        # ``arrive``'s answer cancels that call too, and the ``get`` of it may raise here,
        # before the flag is looked at (seen once on Ray, in a clean-clone CI run).
        started.arrive.remote()  # type: ignore[attr-defined]
        deadline = time.monotonic() + T
        while time.monotonic() < deadline:
            if ctx.is_canceled():
                self.ran.append("saw the cancel")
                return "saw the cancel"
            time.sleep(0.005)
        return "never told"

    def failing_after_cancel(self, started: object) -> str:
        ctx = actorlib.get_runtime_context()
        actorlib.get(started.arrive.remote(), timeout=T)  # type: ignore[attr-defined]
        deadline = time.monotonic() + T
        while not ctx.is_canceled() and time.monotonic() < deadline:
            time.sleep(0.005)
        raise RuntimeError("stopped because it was cancelled")

    def get_while_cancelled(self, started: object, gate: object) -> str:
        """Cancelled while it waits in ``get``: not interrupted, its ``get`` returns."""
        started.arrive.remote()  # type: ignore[attr-defined]
        try:
            actorlib.get(gate.wait.remote(), timeout=T)  # type: ignore[attr-defined]
        except KeyboardInterrupt:
            self.ran.append("interrupted")
            raise
        self.ran.append(f"got it, cancelled: {actorlib.get_runtime_context().is_canceled()}")
        return "got it"

    def history(self) -> tuple[list[str], bool]:
        return self.ran, actorlib.get_runtime_context().is_canceled()


@actorlib.remote(num_cpus=0)
class Sleeper:
    """An async actor."""

    def __init__(self) -> None:
        self.events: list[str] = []

    async def sleep(self, started: object) -> str:
        try:
            await started.arrive.remote()  # type: ignore[attr-defined]
            await asyncio.sleep(60)
            return "slept"
        except asyncio.CancelledError:
            self.events.append("cancelled")
            raise

    async def sleep_caught(self, started: object) -> str:
        """Swallows the cancel and returns, as Ray's docs show for cleanup."""
        try:
            await started.arrive.remote()  # type: ignore[attr-defined]
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            self.events.append("caught")
            return "cleaned up"
        return "slept"

    async def ping(self) -> str:
        return "pong"

    async def history(self) -> list[str]:
        return self.events


def test_a_queued_call_is_cancelled_and_never_runs(rt):
    started, sync = Sync.remote(), Sync.remote()
    ledger = Ledger.remote()
    running = ledger.block.remote(started, sync)
    actorlib.get(started.wait_count.remote(1), timeout=T)
    first, second, third = (ledger.note.remote(x) for x in ("first", "second", "third"))
    actorlib.cancel(second)
    # A queued call ends as the cancel reaches the core: 10 s is ample (and the time
    # the ray backend, where Ray leaves the call queued, spends before this fails).
    with pytest.raises(exc.TaskCancelledError):
        actorlib.get(second, timeout=10)
    actorlib.get(sync.set.remote(), timeout=T)
    assert actorlib.get([running, first, third], timeout=T) == ["finished", "first", "third"]
    assert actorlib.get(ledger.history.remote(), timeout=T) == (
        ["block", "first", "third"], False)


def test_a_running_sync_call_runs_on_and_sees_is_canceled(rt):
    started = Sync.remote()
    ledger = Ledger.remote()
    ref = ledger.until_canceled.remote(started)
    later = ledger.note.remote("later")
    actorlib.get(started.wait_count.remote(1), timeout=T)
    actorlib.cancel(ref)
    # Not interrupted: it runs on, sees the flag and returns; its caller still gets
    # TaskCancelledError (as in Ray), and the actor goes on.
    with pytest.raises(exc.TaskCancelledError):
        actorlib.get(ref, timeout=T)
    assert actorlib.get(later, timeout=T) == "later"
    # The flag belongs to the cancelled call only.
    assert actorlib.get(ledger.history.remote(), timeout=T) == (
        ["saw the cancel", "later"], False)


def test_a_sync_call_cancelled_while_it_waits_in_get_is_not_interrupted(rt):
    """Its ``get`` goes on and returns the value; the call sees ``is_canceled()``."""
    started, gate = Sync.remote(), Sync.remote()
    ledger = Ledger.remote()
    ref = ledger.get_while_cancelled.remote(started, gate)
    actorlib.get(started.wait_count.remote(1), timeout=T)
    time.sleep(0.2)  # in its get by now
    actorlib.cancel(ref, recursive=False)  # the call it waits for is not cancelled too
    time.sleep(0.2)  # an interruption would have landed by now
    actorlib.get(gate.set.remote(), timeout=T)
    with pytest.raises(exc.TaskCancelledError):
        actorlib.get(ref, timeout=T)
    assert actorlib.get(ledger.history.remote(), timeout=T) == (
        ["got it, cancelled: True"], False)


def test_a_cancelled_sync_call_that_fails_raises_task_cancelled(rt):
    started = Sync.remote()
    ledger = Ledger.remote()
    ref = ledger.failing_after_cancel.remote(started)
    actorlib.get(started.wait_count.remote(1), timeout=T)
    actorlib.cancel(ref)
    with pytest.raises(exc.TaskCancelledError):
        actorlib.get(ref, timeout=T)
    assert actorlib.get(ledger.note.remote("after"), timeout=T) == "after"


def test_a_running_async_call_is_cancelled_inside_the_actor(rt):
    started = Sync.remote()
    sleeper = Sleeper.remote()
    ref = sleeper.sleep.remote(started)
    actorlib.get(started.wait_count.remote(1), timeout=T)
    t0 = time.monotonic()
    actorlib.cancel(ref)
    with pytest.raises(exc.TaskCancelledError):
        actorlib.get(ref, timeout=T)
    assert time.monotonic() - t0 < T, "the call's sleep was waited out"
    assert actorlib.get(sleeper.ping.remote(), timeout=T) == "pong"
    assert actorlib.get(sleeper.history.remote(), timeout=T) == ["cancelled"]


def test_an_async_call_that_swallows_the_cancel_still_raises_task_cancelled(rt):
    started = Sync.remote()
    sleeper = Sleeper.remote()
    ref = sleeper.sleep_caught.remote(started)
    actorlib.get(started.wait_count.remote(1), timeout=T)
    actorlib.cancel(ref)
    with pytest.raises(exc.TaskCancelledError):
        actorlib.get(ref, timeout=T)
    assert actorlib.get(sleeper.history.remote(), timeout=T) == ["caught"]


def test_cancelling_a_finished_call_keeps_its_result(rt):
    ledger = Ledger.remote()
    ref = ledger.note.remote("done")
    assert actorlib.get(ref, timeout=T) == "done"
    actorlib.cancel(ref)
    assert actorlib.get(ref, timeout=T) == "done"


@actorlib.remote(num_cpus=0)
def force_cancel(refs: list[actorlib.ObjectRef[str]]) -> str:
    """``cancel(force=True)`` from a task, of a ref it got nested (not resolved)."""
    try:
        actorlib.cancel(refs[0], force=True)
    except ValueError as error:
        return str(error)
    return "not refused"


def test_a_forced_cancel_of_a_call_is_refused_with_value_error_as_in_ray(rt):
    """Ray 2.60 raises ``ValueError("force=True is not supported for actor tasks.")``
    (an actor's state is its own: ``kill`` ends an actor). Refused for a running call and
    a queued one, by the ref itself, one rebuilt from its id and from inside a task;
    neither call is cancelled. An ended call has nothing to refuse, as in Ray."""
    started, sync = Sync.remote(), Sync.remote()
    ledger = Ledger.remote()
    running = ledger.block.remote(started, sync)
    queued = ledger.note.remote("queued")
    actorlib.get(started.wait_count.remote(1), timeout=T)
    refused = "force=True is not supported for actor tasks."
    for ref in (running, queued, actorlib.ObjectRef.from_hex(queued.hex())):
        with pytest.raises(ValueError, match=f"^{refused}$"):
            actorlib.cancel(ref, force=True)
    assert actorlib.get(force_cancel.remote([queued]), timeout=T) == refused
    actorlib.get(sync.set.remote(), timeout=T)
    assert actorlib.get([running, queued], timeout=T) == ["finished", "queued"]
    actorlib.cancel(queued, force=True)
    assert actorlib.get(queued, timeout=T) == "queued"
    assert actorlib.get(ledger.history.remote(), timeout=T) == (["block", "queued"], False)
