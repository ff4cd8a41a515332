"""cancel() of queued, running and finished tasks; kill() of actors."""

from __future__ import annotations

import asyncio
import importlib
import os
import pickle
import sys
import threading
import time
import uuid

import psutil
import pytest
from testkit import Recorder, Sync, T, live_actors, live_objects, wait_for, wait_until

import actorlib
from actorlib import exceptions as exc

pytestmark = pytest.mark.shared_runtime


@actorlib.remote
def blocker(started, sync):
    """Occupy its resources until released; announce when it is running."""
    actorlib.get(started.arrive.remote(), timeout=T)
    actorlib.get(sync.wait.remote(), timeout=T)
    return "released"


@actorlib.remote
def record(recorder, item):
    actorlib.get(recorder.append.remote(item), timeout=T)
    return item


@actorlib.remote
async def async_sleeper(started):
    await started.arrive.remote()
    await asyncio.sleep(60)
    return "not cancelled"


@actorlib.remote
def busy_loop(started):
    """A running sync task that only an interruption can stop early."""
    actorlib.get(started.arrive.remote(), timeout=T)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        time.sleep(0.005)
    return "not cancelled"


@actorlib.remote
def quick(x):
    return x


@actorlib.remote(num_cpus=0)
class Worker:
    def __init__(self):
        self.calls = 0

    def block(self, started, sync):
        self.calls += 1
        actorlib.get(started.arrive.remote(), timeout=T)
        actorlib.get(sync.wait.remote(), timeout=T)
        return "finished"

    def ping(self):
        self.calls += 1
        return self.calls

    def my_id(self):
        return actorlib.get_runtime_context().get_actor_id()


@pytest.mark.init_kwargs(resources={"slot": 1})
def test_remote_never_blocks_on_a_saturated_cluster(rt):
    """.remote() returns at once even when nothing can run yet (tasks and actor calls)."""
    started, sync = Sync.remote(), Sync.remote()
    hog = blocker.options(num_cpus=4, resources={"slot": 1}).remote(started, sync)
    actorlib.get(started.wait_count.remote(1), timeout=T)
    busy = Worker.remote()
    busy_call = busy.block.remote(started, sync)
    actorlib.get(started.wait_count.remote(2), timeout=T)
    refs: list = []

    def submit():
        refs.extend(quick.options(resources={"slot": 1}).remote(i) for i in range(50))
        refs.extend(busy.ping.remote() for _ in range(50))

    t = threading.Thread(target=submit, name="submitter")
    t.start()
    t.join(timeout=T)
    assert not t.is_alive(), ".remote() blocked"
    assert len(refs) == 100
    ready, _ = actorlib.wait(refs, num_returns=1, timeout=0)
    assert ready == []
    actorlib.get(sync.set.remote(), timeout=T)
    assert actorlib.get([hog, busy_call], timeout=T) == ["released", "finished"]
    assert actorlib.get(refs[:50], timeout=T) == list(range(50))
    assert actorlib.get(refs[50:], timeout=T) == list(range(2, 52))


@pytest.mark.init_kwargs(resources={"slot": 1})
def test_cancel_queued_task(rt):
    """Fill every CPU (and the one slot) with a blocked task, then cancel a queued task."""
    started, sync, rec = Sync.remote(), Sync.remote(), Recorder.remote()
    hog = blocker.options(num_cpus=4, resources={"slot": 1}).remote(started, sync)
    actorlib.get(started.wait_count.remote(1), timeout=T)
    queued = record.options(resources={"slot": 1}).remote(rec, "queued ran")
    ready, _ = actorlib.wait([queued], timeout=0.1)
    assert ready == []
    actorlib.cancel(queued)
    with pytest.raises(exc.TaskCancelledError):
        actorlib.get(queued, timeout=T)
    actorlib.get(sync.set.remote(), timeout=T)
    assert actorlib.get(hog, timeout=T) == "released"
    # a task submitted after it, needing the same slot, runs; the cancelled one never did
    assert actorlib.get(record.options(resources={"slot": 1}).remote(rec, "after"), timeout=T)
    assert actorlib.get(rec.items.remote(), timeout=T) == ["after"]


def test_cancel_running_async_task(rt):
    started = Sync.remote()
    ref = async_sleeper.remote(started)
    actorlib.get(started.wait_count.remote(1), timeout=T)
    actorlib.cancel(ref)
    with pytest.raises(exc.TaskCancelledError):
        actorlib.get(ref, timeout=T)


def test_cancel_running_sync_task(rt):
    started = Sync.remote()
    ref = busy_loop.remote(started)
    actorlib.get(started.wait_count.remote(1), timeout=T)
    t0 = time.monotonic()
    actorlib.cancel(ref)
    with pytest.raises(exc.TaskCancelledError):
        actorlib.get(ref, timeout=T)
    assert time.monotonic() - t0 < 10, "the running task was not interrupted"


@actorlib.remote(max_retries=0)
def ignores_interrupts(started):
    """A running sync task that swallows every interruption: a plain cancel cannot end it.
    It ends by itself a second after the first one (a thread the thread backend abandons
    on a forced cancel must not outlive the test)."""
    started.arrive.remote()
    deadline = time.monotonic() + 3 * T
    while time.monotonic() < deadline:
        try:
            time.sleep(0.005)
        except KeyboardInterrupt:
            started.arrive.remote("interrupted")
            deadline = min(deadline, time.monotonic() + 1.0)
    return "ran to its end"


@pytest.mark.fresh_runtime
def test_a_forced_cancel_after_a_plain_one_ends_a_task_that_ignores_it(rt):
    """The plain cancel lands (the task swallows it); the forced one that follows still
    goes through, as in Ray, rather than being taken for a repeat of the first."""
    started = Sync.remote()
    ref = ignores_interrupts.remote(started)
    actorlib.get(started.wait_count.remote(1), timeout=T)
    actorlib.cancel(ref)
    actorlib.get(started.wait_count.remote(1, "interrupted"), timeout=T)
    actorlib.cancel(ref, force=True)
    with pytest.raises(exc.TaskCancelledError):
        actorlib.get(ref, timeout=0.9)  # before the task would end by itself
    actorlib.kill(started)


def _arrive_then_spin(started, seconds=20):
    """Announce the task runs, then spin in short sleeps until a cancel interrupts it. No
    get: a cancel that finds the task blocked in one wakes it with an interrupt of its
    own, and these tasks are to be interrupted once, in their loop."""
    started.arrive.remote()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.005)


@actorlib.remote
def cleans_up_when_cancelled(started, rec):
    """A running sync task that catches the cancel's interruption and still talks to the
    cluster (a cleanup call) before it ends."""
    try:
        _arrive_then_spin(started)
    except KeyboardInterrupt:
        count = actorlib.get(rec.append.remote("cleanup"), timeout=T)
        rec.append.remote(f"cleanup returned {count}")  # only if the get returned
        raise
    return "not cancelled"


def test_a_cancelled_task_that_catches_the_interrupt_can_still_get(rt):
    """The interruption lands once: a task that caught it may ``get`` a cleanup call."""
    started, rec = Sync.remote(), Recorder.remote()
    ref = cleans_up_when_cancelled.remote(started, rec)
    actorlib.get(started.wait_count.remote(1), timeout=T)
    actorlib.cancel(ref)
    with pytest.raises(exc.TaskCancelledError):
        actorlib.get(ref, timeout=T)
    wait_until(lambda: len(actorlib.get(rec.items.remote(), timeout=T)) >= 2,
               what="the cleanup call of the cancelled task")
    assert actorlib.get(rec.items.remote(), timeout=T) == ["cleanup", "cleanup returned 1"]


@actorlib.remote(max_retries=0)
def ends_normally_when_cancelled(started, rec, then):
    """A running sync task that catches the cancel's interruption and then ends as if
    it had not been cancelled: it returns a value, or raises an application error."""
    try:
        _arrive_then_spin(started)
    except KeyboardInterrupt:
        cancelled = actorlib.get_runtime_context().is_canceled()
        actorlib.get(rec.append.remote(f"caught, is_canceled {cancelled}"), timeout=T)
        if then == "raise":
            raise ValueError("raised after its cancel") from None
        return "returned after its cancel"
    return "not cancelled"


@pytest.mark.parametrize("then", ["return", "raise"])
def test_a_cancelled_task_that_catches_the_interrupt_and_ends_is_still_cancelled(rt, then):
    """Whatever the task makes of the interrupt, its caller's ``get`` raises
    ``TaskCancelledError`` (docs/api.md, ``cancel``): a value it returns, or an error it
    raises, after catching the interrupt is not its result."""
    started, rec = Sync.remote(), Recorder.remote()
    ref = ends_normally_when_cancelled.remote(started, rec, then)
    actorlib.get(started.wait_count.remote(1), timeout=T)
    actorlib.cancel(ref)
    with pytest.raises(exc.TaskCancelledError):
        actorlib.get(ref, timeout=T)
    assert actorlib.get(rec.items.remote(), timeout=T) == ["caught, is_canceled True"]
    # Ended as cancelled, not abandoned: the next task runs as usual.
    assert actorlib.get(quick.remote(7), timeout=T) == 7


@actorlib.remote
def counts_its_interrupts(started, rec):
    """A running sync task that catches every interruption, noting each, until 2 s after
    the first, then ends as cancelled. Everything before the end is inside the ``try``:
    an interrupt may land at any bytecode, the last of ``arrive.remote()`` and the loop's
    jump back included (one that landed there ended the task with no "end": a CI flake
    under load). The 2 s start at the first interruption, not at the start: on a loaded
    machine a cancel may take longer than that to land (on ray it did, under two pytest
    workers)."""
    interrupted = arrived = False
    deadline = time.monotonic() + T / 2  # the cancel has landed long before
    while True:  # again only after an interruption (see ``drops_refs_until_cancelled``)
        try:
            if not arrived:
                started.arrive.remote()
                arrived = True
            while time.monotonic() < deadline:
                time.sleep(0.005)
            break
        except KeyboardInterrupt:
            rec.append.remote("interrupted")
            if not interrupted:  # a second interruption would land in these 2 s
                deadline = time.monotonic() + 2.0
            interrupted = True
    actorlib.get(rec.append.remote("end"), timeout=T)
    if interrupted:
        raise KeyboardInterrupt
    return "not cancelled"


def test_a_cancel_interrupts_a_task_once_however_long_it_runs_on(rt):
    """One cancel, one interruption, even in a task that catches it and runs on for
    seconds (on ray the cancel is sent again until the task ends, as Ray drops one that
    reaches a worker just before the task starts: the worker lets the later ones pass)."""
    started, rec = Sync.remote(), Recorder.remote()
    ref = counts_its_interrupts.remote(started, rec)
    actorlib.get(started.wait_count.remote(1), timeout=T)
    actorlib.cancel(ref)
    with pytest.raises(exc.TaskCancelledError):
        actorlib.get(ref, timeout=T)
    wait_until(lambda: "end" in actorlib.get(rec.items.remote(), timeout=T),
               what="the cancelled task's last call")
    assert actorlib.get(rec.items.remote(), timeout=T) == ["interrupted", "end"]


@actorlib.remote
def drops_refs_until_cancelled(rec, key):
    """A running sync task that makes calls and lets their refs go (each ref's finalizer
    sends its drop), noting each interruption, until 0.3 s after the first. At most
    20,000 calls (the cancel lands long before on most backends), then it spins on: the
    actor runs them all before the task's last call, in time on Ray too."""
    interrupted = False
    deadline = time.monotonic() + T / 2  # the cancel has landed long before
    n = 0
    # The outer loop comes round only after an interruption. The inner one is inside the
    # ``try``, its back edge included: a loop's jump back is where Python looks for a
    # pending interrupt too, and one that landed on the jump of a loop around the ``try``
    # escaped the task with no "end" (a flake, about one run in twenty).
    while True:
        try:
            while time.monotonic() < deadline:
                if n < 20_000:
                    rec.incr.remote(key)  # its ref dies here: ``ObjectRef.__del__`` runs
                    n += 1
                    if n == 50:
                        rec.append.remote((key, "running"))
            break
        except KeyboardInterrupt:
            rec.append.remote((key, "interrupted"))
            if not interrupted:
                deadline = time.monotonic() + 0.3
            interrupted = True
    actorlib.get(rec.append.remote((key, "end")), timeout=T)
    if interrupted:
        raise KeyboardInterrupt
    return "not cancelled"


def test_a_cancel_that_lands_in_a_finalizer_still_interrupts_the_task(rt):
    """A cancel's interrupt fires at the task's next bytecode, which may be a finalizer's
    (a dropped ref's ``__del__``), where Python prints and drops it: the task ran on to
    its end (or for ever), never interrupted, and ``get`` waited for it. A third of the
    cancels landed there on the process backend, a quarter on thread: some of six tries
    would. The interrupt now waits until the task is out of the finalizer
    (actorlib.backends.runner.interrupts), and is raised again in the task if it lands in
    one all the same (actorlib.core.late_interrupts). Nor may the drop it would cut short
    be lost: every object the task let go is freed."""
    rec = Recorder.remote()
    before = live_objects()
    for key in range(6):
        ref = drops_refs_until_cancelled.remote(rec, key)
        wait_until(lambda: (key, "running") in actorlib.get(rec.items.remote(), timeout=T),  # noqa: B023
                   what="the task running")
        actorlib.cancel(ref)
        with pytest.raises(exc.TaskCancelledError):
            actorlib.get(ref, timeout=T)

        def mine(key: int = key) -> list[str]:
            return [item for k, item in actorlib.get(rec.items.remote(), timeout=T) if k == key]

        wait_until(lambda: "end" in mine(), what="the cancelled task's last call")
        assert mine() == ["running", "interrupted", "end"], key
    del ref
    wait_until(lambda: live_objects() <= before, what="every object the tasks let go freed")


@actorlib.remote
def waits_after_its_cancel(started, gate, rec):
    """A running sync task that catches the cancel's interruption, then waits on work
    that is not ready: a ``wait`` that gives up, then a ``get`` that blocks."""
    try:
        started.arrive.remote()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            time.sleep(0.005)
    except KeyboardInterrupt:
        opened = gate.wait.remote()  # ready once the test opens the gate
        ready, _ = actorlib.wait([opened], timeout=0.2)
        rec.append.remote(f"open: {bool(ready)}")
        actorlib.get(opened, timeout=T)
        rec.append.remote("passed the gate")
        raise
    return "not cancelled"


def test_a_cancelled_task_that_catches_the_interrupt_can_still_wait(rt):
    """The interruption lands once: after it, a ``wait`` that times out and a ``get``
    that blocks are waits like any other, never a second interruption."""
    started, gate, rec = Sync.remote(), Sync.remote(), Recorder.remote()
    ref = waits_after_its_cancel.remote(started, gate, rec)
    actorlib.get(started.wait_count.remote(1), timeout=T)
    actorlib.cancel(ref)
    wait_until(lambda: actorlib.get(rec.items.remote(), timeout=T) == ["open: False"],
               what="the cancelled task's wait to give up")
    actorlib.get(gate.set.remote(), timeout=T)
    with pytest.raises(exc.TaskCancelledError):
        actorlib.get(ref, timeout=T)
    wait_until(lambda: len(actorlib.get(rec.items.remote(), timeout=T)) >= 2,
               what="the cancelled task's get")
    assert actorlib.get(rec.items.remote(), timeout=T) == ["open: False", "passed the gate"]


@actorlib.remote
def submitting_loop(started):
    """A running task that spends its time submitting nested work and reading it back,
    so a cancel's interruption lands while it talks to the core."""
    actorlib.get(started.arrive.remote(), timeout=T)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        actorlib.get([quick.remote(i) for i in range(5)], timeout=T)
    return "not cancelled"


def test_cancel_a_task_while_it_submits_nested_work(rt):
    """The interruption ends the task, never the core's work in the middle (the ``rt``
    fixture checks the core's bookkeeping after the test)."""
    started = Sync.remote()
    refs = [submitting_loop.options(num_cpus=1).remote(started) for _ in range(2)]
    actorlib.get(started.wait_count.remote(2), timeout=T)
    for ref in refs:
        actorlib.cancel(ref)
    for ref in refs:
        with pytest.raises(exc.TaskCancelledError):
            actorlib.get(ref, timeout=T)
    assert actorlib.get([quick.remote(i) for i in range(10)], timeout=T) == list(range(10))


# A package whose import takes until a file appears, after importing a submodule with
# ``import *`` and before using it by name (as ``asyncio``'s ``__init__`` does): an
# interrupt that lands inside that import leaves ``part`` loaded but unbound, and every
# later import of the package in that process fails with a NameError.
_SLOW_PACKAGE = """
from .part import *
import os, pathlib, time
here = pathlib.Path(__file__).parent
(here / "started").write_text(str(os.getpid()))
deadline = time.monotonic() + 60
while not (here / "release").exists() and time.monotonic() < deadline:
    time.sleep(0.005)
VALUE = part.VALUE
"""


@actorlib.remote(max_retries=0)
def import_package(folder: str, name: str, hold: float = 0.0) -> tuple[int, int]:
    """Import ``name`` from ``folder`` (lazily, as task code may) and use it; then hold
    the worker ``hold`` seconds."""
    if folder not in sys.path:
        sys.path.insert(0, folder)
    value = importlib.import_module(name).VALUE
    time.sleep(hold)
    return os.getpid(), value


def test_a_cancel_never_breaks_an_import_under_way(rt, tmp_path):
    """A task cancelled while it imports a module is interrupted once the import is
    over: the process's later imports of that module still work (an interrupt inside the
    import left the module half imported, and the worker failed every task that used it
    from then on)."""
    name = f"slow_{uuid.uuid4().hex}"
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text(_SLOW_PACKAGE)
    (package / "part.py").write_text("__all__ = []\nVALUE = 42\n")
    ref = import_package.remote(str(tmp_path), name)
    started = package / "started"
    wait_for(started.exists, "the task to start importing")
    actorlib.cancel(ref)
    time.sleep(0.3)  # the interrupt, if it were sent now, lands inside the import
    (package / "release").touch()
    with pytest.raises(exc.TaskCancelledError):
        actorlib.get(ref, timeout=T)
    # The same process imports it again, as the next task that needs it there does.
    # Two tasks at a time, each holding its worker a moment: a backend with more idle
    # workers than CPUs (Ray starts more under load) may otherwise hand every task of a
    # sequence to one same other worker.
    pid = int(started.read_text())
    seen = set()
    for _ in range(25):
        for got_pid, value in actorlib.get(
            [import_package.remote(str(tmp_path), name, 0.05) for _ in range(2)], timeout=T
        ):
            assert value == 42
            seen.add(got_pid)
        if pid in seen:
            break
    alive = psutil.pid_exists(pid)
    assert pid in seen, (
        f"no task ran in the process the cancel hit ({pid}, alive: {alive}): {seen}"
    )


def test_cancel_finished_task_keeps_result(rt):
    ref = quick.remote(5)
    assert actorlib.get(ref, timeout=T) == 5
    actorlib.cancel(ref)
    assert actorlib.get(ref, timeout=T) == 5


def test_cancel_right_after_get_keeps_each_result(rt):
    """A cancel that comes the moment a task's result has come is a no-op, every time
    (on ray, Ray 2.60 itself ended the whole driver within 2 to 15 rounds of this)."""
    for i in range(200):
        ref = quick.remote(i)
        assert actorlib.get(ref, timeout=T) == i
        actorlib.cancel(ref)
        assert actorlib.get(ref, timeout=T) == i


def test_cancelled_error_properties(rt):
    started = Sync.remote()
    ref = async_sleeper.remote(started)
    actorlib.get(started.wait_count.remote(1), timeout=T)
    actorlib.cancel(ref)
    with pytest.raises(exc.TaskCancelledError) as info:
        actorlib.get(ref, timeout=T)
    err = info.value
    assert isinstance(err, exc.ActorlibError)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err) and str(back) == str(err)


@pytest.mark.asyncio
async def test_await_cancelled_task(rt):
    started = Sync.remote()
    ref = async_sleeper.remote(started)
    await started.wait_count.remote(1)
    actorlib.cancel(ref)
    with pytest.raises(exc.TaskCancelledError):
        await asyncio.wait_for(actorlib.get_async(ref), timeout=T)


def test_kill_actor_fails_pending_and_later_calls(rt):
    started, sync = Sync.remote(), Sync.remote()
    w = Worker.remote()
    assert actorlib.get(w.ping.remote(), timeout=T) == 1
    running = w.block.remote(started, sync)
    actorlib.get(started.wait_count.remote(1), timeout=T)
    queued = [w.ping.remote() for _ in range(3)]
    actorlib.kill(w)
    for ref in [running, *queued]:
        with pytest.raises(exc.ActorDiedError):
            actorlib.get(ref, timeout=T)
    with pytest.raises(exc.ActorDiedError) as info:
        actorlib.get(w.ping.remote(), timeout=T)
    assert isinstance(info.value, exc.ActorError)
    assert isinstance(info.value, exc.RayActorError)
    actorlib.get(sync.set.remote(), timeout=T)  # let a thread stuck in block() finish


def test_kill_idle_actor(rt):
    w = Worker.remote()
    assert actorlib.get(w.ping.remote(), timeout=T) == 1
    actorlib.kill(w)
    with pytest.raises(exc.ActorDiedError):
        actorlib.get(w.ping.remote(), timeout=T)


def test_kill_with_restart(rt):
    """kill(no_restart=False) on a restartable actor: it comes back with fresh state."""
    w = Worker.options(max_restarts=1).remote()  # num_restarts left: 1
    assert actorlib.get([w.ping.remote(), w.ping.remote()], timeout=T) == [1, 2]
    actorlib.kill(w, no_restart=False)
    assert actorlib.get(w.ping.remote(), timeout=T) == 1


@pytest.mark.asyncio
async def test_await_call_on_killed_actor(rt):
    w = Worker.remote()
    await w.ping.remote()
    actorlib.kill(w)
    with pytest.raises(exc.ActorDiedError):
        await w.ping.remote()


@actorlib.remote
async def parent_of_blocked(started, rec):
    """Spawn a child that blocks, publish its ref, and wait for it."""
    child = async_sleeper.remote(started)
    await rec.append.remote([child])  # nested: stored as a ref
    return await child


def test_recursive_cancel_cancels_children(rt):
    started, rec = Sync.remote(), Recorder.remote()
    parent = parent_of_blocked.remote(started, rec)
    actorlib.get(started.wait_count.remote(1), timeout=T)  # the child is running
    # The parent publishes the child after submitting it: from another caller than the
    # child's arrive, so in no order with it.
    [[child]] = wait_for(lambda: actorlib.get(rec.items.remote(), timeout=T),
                         "the parent to publish its child", timeout=T)
    actorlib.cancel(parent)  # recursive=True is the default
    with pytest.raises(exc.TaskCancelledError):
        actorlib.get(parent, timeout=T)
    with pytest.raises(exc.TaskCancelledError):
        actorlib.get(child, timeout=T)


@actorlib.remote(num_cpus=0)
class Stepper:
    """Appends each step to an external log; step ``stall`` blocks on its first attempt."""

    def step(self, rec, sync, i, stall):
        if i == stall and actorlib.get(rec.incr.remote("attempts"), timeout=T) == 1:
            actorlib.get(sync.arrive.remote("stalled"), timeout=T)
            actorlib.get(sync.wait.remote("never"), timeout=T)
        actorlib.get(rec.append.remote(i), timeout=T)
        return i


def test_call_order_survives_actor_restart(rt):
    """Calls queued behind a call interrupted by a restart run after its retry, in order."""
    rec, sync = Recorder.remote(), Sync.remote()
    s = Stepper.options(max_restarts=1, max_task_retries=2).remote()
    refs = [s.step.remote(rec, sync, i, 3) for i in range(8)]
    actorlib.get(sync.wait_count.remote(1, "stalled"), timeout=T)
    actorlib.kill(s, no_restart=False)
    assert actorlib.get(refs, timeout=T) == list(range(8))
    assert actorlib.get(rec.items.remote(), timeout=T) == list(range(8))
    assert actorlib.get(rec.value.remote("attempts"), timeout=T) == 2
    actorlib.get(sync.set.remote("never"), timeout=T)  # free a thread stuck in the old instance


def test_restart_without_task_retries_fails_pending_calls(rt):
    """max_task_retries=0: calls pending at the restart fail; later calls reach the new one."""
    rec, sync = Recorder.remote(), Sync.remote()
    s = Stepper.options(max_restarts=1, max_task_retries=0).remote()
    first = s.step.remote(rec, sync, 0, 0)
    actorlib.get(sync.wait_count.remote(1, "stalled"), timeout=T)
    queued = s.step.remote(rec, sync, 1, 0)
    actorlib.kill(s, no_restart=False)
    for ref in (first, queued):
        with pytest.raises(exc.ActorDiedError):
            actorlib.get(ref, timeout=T)
    assert actorlib.get(s.step.remote(rec, sync, 2, 0), timeout=T) == 2
    assert actorlib.get(rec.items.remote(), timeout=T) == [2]
    actorlib.get(sync.set.remote("never"), timeout=T)


def test_killed_actor_is_released(rt):
    w = Worker.remote()
    aid = actorlib.get(w.my_id.remote(), timeout=T)
    assert aid in live_actors()
    actorlib.kill(w)
    wait_until(lambda: aid not in live_actors(), what="killed actor to be released")
