"""The ``sim`` backend: tasks and actors run one step at a time, every choice scheduled.

How it stays deterministic while the core runs on its own loop thread (see
``docs/testing.md``):

- User code runs on worker threads of this backend, but only one thread runs at a time:
  a worker runs when the controller hands it the baton (``_switch``) and hands it back
  when its job ends or when it would block in ``get`` (``waiting.blocking_wait``).
- The controller is the test's own thread, inside its blocking ``get``: it has the core
  lent to the simulation's threads (``_borrow``) and runs what was posted to it
  (``_quiesce``), applies what the core asked of the backend (the backend's methods only
  queue commands), lists the runnable steps, asks the choice source for one, runs it,
  and repeats until the test's own wait is satisfied *and* chosen. A worker whose job
  ends takes the next steps the same way (``_take_steps``), running jobs inline, until
  the driver's wait is chosen or a job pauses: no thread switch per step.
- Async actors run on a :class:`~actorlib.backends.sim.loop.SimLoop` each: one ready
  coroutine step at a time, in virtual time.

The backend's parts, one concept a module, each a layer of :class:`SimBackend`:
``threads`` (worker emulation: the baton), ``choosing`` (picking steps and faults, the
trace, invariants), ``running`` (tasks and actors as steps), ``steps`` (the runnable steps
and virtual time); this module is the controller that drives them, and the backend's
interface to the core.
"""

from __future__ import annotations

import _thread
import asyncio
import collections
import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from actorlib.backends import stacks
from actorlib.backends.base import Backend, BackendConfig, CoreEvents
from actorlib.backends.output import thread_backend_started, thread_backend_stopped
from actorlib.backends.sim.deadlock import deadlock_report
from actorlib.backends.sim.errors import (
    DeadlockError,
    NotRunning,
    SimulationError,
    StepBudgetExceeded,
)
from actorlib.backends.sim.gc_policy import GcPolicy
from actorlib.backends.sim.loop import run_handle
from actorlib.backends.sim.running import NODE_ID, SimHost, SimTask, error_outcome, node_name
from actorlib.backends.sim.settings import SimSettings, settings_from_env
from actorlib.backends.sim.steps import DRIVER_STEP, Steps
from actorlib.backends.sim.store import SimStore, node_of
from actorlib.backends.sim.threads import Posting, Wait
from actorlib.backends.thread import this_process
from actorlib.core import late_interrupts, waiting
from actorlib.core.execution_context import ExecutionContext
from actorlib.core.ids import id_hex
from actorlib.core.records import ActorStart, CallRun, NodeInfo, TaskRun
from actorlib.exceptions import ActorDiedError

__all__ = ["SimBackend", "configure", "current"]

log = logging.getLogger("actorlib.sim")

DEFAULT_CPUS = 8.0
DEFAULT_MEMORY = float(8 << 30)

_next: SimSettings | None = None
_current: SimBackend | None = None


def configure(settings: SimSettings | None) -> None:
    """Use ``settings`` for the next ``init(backend="sim")`` in this process."""
    global _next
    _next = settings


def current() -> SimBackend | None:
    """The running simulation, if any."""
    return _current


#: With the idle driver off: how long runnable work may wait with no thread driving
#: before the simulator says why the program seems to hang, and how often it looks.
STALL_WARN_S = 10.0
STALL_LOOK_S = 2.0


class SimBackend(Steps, Backend):
    """The sim backend: the controller over its layers (see the module docstring)."""

    name = "sim"
    pipelines = False
    #: A run is often one of thousands in a test: no state socket (and its thread) for
    #: each, unless ``$ACTORLIB_STATE_SOCKET=1`` asks.
    serves_state = False

    def __init__(self) -> None:
        super().__init__()
        self._commands: collections.deque[tuple[Any, ...]] = collections.deque()
        self._previous_hook: Any = None
        # Held by whoever runs steps: the driver in its get, or the idle driver.
        self._drive_lock = threading.Lock()
        self._last_drive = time.monotonic()
        self._idle_thread: threading.Thread | None = None
        self._stall_timer: asyncio.TimerHandle | None = None
        self._warn_idle = self._warn_long = False  # what ``_watch_stall`` may still say
        self._seen_steps = (0, time.monotonic())  # the step count at a look, and since
        self._started_at = time.monotonic()
        self._chain_ok = False  # workers may take steps (see ``_take_steps``)
        self._handoff: Any = None  # a step a worker chose for the driver to take
        self._chain_error: BaseException | None = None
        self._max_steps = 0  # the step budget (settings.max_steps), asked at every step
        # What each coroutine the simulator steps awaits (its wait's lock, the ids).
        self._gc = GcPolicy()  # the collector's settings for the run (``gc_policy``)
        self._awaits: weakref.WeakKeyDictionary[asyncio.Task[Any], tuple[Any, list[int]]] = (
            weakref.WeakKeyDictionary()
        )

    # == lifecycle =========================================================================

    async def start(self, events: CoreEvents, config: BackendConfig) -> list[NodeInfo]:
        global _next, _current
        view = events.view
        if view is None:
            raise RuntimeError("the sim backend runs in the process of the core it reports to")
        self._raw_events = events
        self._core = view
        self.events = Posting(events, self)
        self._core_loop = asyncio.get_running_loop()
        settings = _next if _next is not None else settings_from_env()
        _next = None
        self.settings = settings
        self.source = settings.choices
        self.faults = settings.faults
        self._faulty = settings.faults.any  # asked at every step: computed once
        self._max_steps = settings.max_steps
        self._on_step = settings.on_step
        # A reply may be dropped or delayed (a fault): decided on the controller, so
        # replies are sent from there (a worker must never switch to another worker, and
        # what the choice source raises, hypothesis's end of data say, must reach the
        # driver).
        self._reply_on_controller = (
            self.faults.drop_before_reply or self.faults.delay_reply
        ) and self.faults.max_faults > 0
        self.invariants = list(settings.invariants)
        self._preempt = settings.preempt
        cpus = config.num_cpus if config.num_cpus is not None else DEFAULT_CPUS
        resources = {"CPU": float(cpus), "memory": DEFAULT_MEMORY}
        if config.num_gpus:
            resources["GPU"] = float(config.num_gpus)
        resources.update({k: float(v) for k, v in config.resources.items()})
        if settings.nodes < 1:
            raise ValueError(f"the sim backend needs at least one node (nodes={settings.nodes})")
        self.nodes = [node_name(i) for i in range(settings.nodes)]
        self.store = self.sim_store = SimStore(NODE_ID, self._sealed_by)
        thread_backend_started(config.options)  # tasks run in this process: prefix lines
        self.worker_log_dir = config.options.get("log_dir")
        stacks.enable_in_driver()  # and `actorlib stack` asks this process
        late_interrupts.keep_cancels()  # a cancel landing in a finalizer still interrupts
        self._previous_hook = waiting.blocking_wait
        waiting.blocking_wait = self._blocking_wait
        waiting.hook_runs_work = True  # a future's wait goes through it too
        _current = self
        if settings.idle_drive > 0:
            self._idle_thread = threading.Thread(
                target=self._idle_driver, args=(settings.idle_drive,),
                name="actorlib-sim-idle", daemon=True,
            )
            self._idle_thread.start()
        self._warn_idle = settings.idle_drive <= 0
        self._warn_long = settings.preempt <= 0
        if self._warn_idle or self._warn_long:
            self._stall_timer = self._core_loop.call_later(STALL_LOOK_S, self._watch_stall)
        self._gc.enter()  # (last: nothing above can fail after it)
        return [NodeInfo(node, dict(resources), labels=dict(config.labels))
                for node in self.nodes]

    def workers(self) -> list[dict[str, Any]]:
        return this_process(NODE_ID)  # every node's work runs in this one process

    def locate(self, path: str) -> str | None:
        node = node_of(path)
        return node if node in self.nodes else None

    def _sealed_by(self, ctx: ExecutionContext | None) -> str:
        if ctx is None:
            return "driver"
        work = ctx.actor_id if ctx.actor_id is not None else ctx.task_id
        return self._labels.get(work or 0, "driver")

    async def stop(self) -> None:
        global _current
        self._stopping = True
        if self._stall_timer is not None:
            self._stall_timer.cancel()
        self._give_back()  # the core's loop runs what is left, and the shutdown's reports
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def finish() -> None:
            try:
                with self._drive_lock:  # the idle driver is between steps, and stops
                    pass
                if self._idle_thread is not None:
                    self._idle_thread.join(5)
                self._stop_everything()
            except BaseException:
                log.exception("actorlib sim: error while stopping")
            finally:
                loop.call_soon_threadsafe(_resolve, done)

        threading.Thread(target=finish, name="actorlib-sim-stop", daemon=True).start()
        await done
        self._gc.exit()
        thread_backend_stopped()
        stacks.disable_in_driver()
        late_interrupts.restore_unraisable_hook()
        if waiting.blocking_wait == self._blocking_wait:
            waiting.blocking_wait = self._previous_hook
            waiting.hook_runs_work = False
        if _current is self:
            _current = None

    def _stop_everything(self) -> None:
        deadline = time.monotonic() + 5
        while self._detached() and time.monotonic() < deadline:
            for worker in self._workers:  # preempted: let them come back to be ended
                if worker.detached:
                    self._interrupt(worker)
            self._rejoined.wait(0.01)
            self._rejoined.clear()
        for host in list(self._hosts.values()):
            self._dispose(host)
        self._hosts.clear()
        self._async_hosts.clear()
        self._listing.clear()
        for task in list(self._started.values()):
            if task.worker is not None and task.worker.wait is not None:
                self._unwind(task.worker)
        self._started.clear()
        self._pending.clear()
        self._pending_items.clear()
        self._unaged.clear()
        for worker in self._workers:
            if worker.wait is not None:  # anything else still paused
                self._unwind(worker)
        for worker in self._workers:
            worker.job = None
            worker.resumer = self._back
            worker.go.release()
            self._back.acquire()
            worker.thread.join(5)

    # == what the core asks (its loop thread): only queued, applied by the controller =====

    def run_task(self, run: TaskRun) -> None:
        self._commands.append(("task", run))

    def start_actor(self, start: ActorStart) -> None:
        self._commands.append(("actor", start))

    def run_call(self, run: CallRun) -> None:
        self._commands.append(("call", run))

    def stop_actor(self, actor_id: int, *, force: bool) -> None:
        self._commands.append(("stop", actor_id, force))

    def cancel(self, id: int, *, force: bool) -> None:
        self._commands.append(("cancel", id, force))

    def items_consumed(self, id: int, consumed: int) -> None:
        """The consumer of the stream ``id`` produces has taken ``consumed`` items: a
        producer paused by backpressure may go on (its wait is ready)."""
        self.gates.consumed(id, consumed)

    # == the controller: the test's thread, blocked in get ==================================

    def _blocking_wait(
        self, lock: Any, timeout: float | None, ids: list[int], asynchronous: bool,
        need: int = 0,
    ) -> bool:
        ident = _thread.get_ident()
        worker = self._by_ident.get(ident)
        if worker is not None:
            if asynchronous:  # an await in a coroutine the simulator steps: it waits there
                task = asyncio.current_task()
                if task is not None:  # kept for a deadlock report
                    self._awaits[task] = (lock, ids)
                return True
            return self._worker_wait(worker, lock, timeout, ids)
        if self._stopping or (self._driver_ident not in (None, ident)):
            if asynchronous:
                return True
            return bool(lock.acquire(timeout=-1 if timeout is None else timeout))
        self._driver_ident = ident
        with self._drive_lock:
            self._borrow()
            try:
                return self._drive(lock, timeout, ids, asynchronous)
            finally:
                if self._idle_thread is not None:
                    self._give_back()  # the idle driver may borrow it next
                # Else the driver keeps the core between its drives: its submissions
                # only queue (no wake-up of the core's loop, no thread running beside
                # it), and its next drive runs them in one batch.
                self._last_drive = time.monotonic()

    def _drive(
        self, lock: Any, timeout: float | None, ids: list[int], asynchronous: bool = False
    ) -> bool:
        if self._failure is not None:
            raise self._failure
        if timeout is not None and timeout <= 0.001:
            self._settle()
            return bool(lock.acquire(False))
        deadline = None if timeout is None else self.clock.now + timeout
        wait = Wait(lambda: not lock.locked(), deadline, ids)
        ready = wait.ready  # (called through a local: a slot's function is a slow read)
        self._driver_wait = wait
        self._posted = True  # the driver ran code since it last waited
        # Workers may take steps themselves (``_take_steps``): a synchronous wait only
        # (an async driver decides on its own loop), and no reply decided here.
        self._chain_ok = not asynchronous and not self._reply_on_controller
        try:
            while True:
                if self._chain_error is not None:
                    error, self._chain_error = self._chain_error, None
                    raise error
                if self._failure is not None:
                    raise self._failure
                item, self._handoff = self._handoff, None
                if item is None:
                    self._settle()
                    self._check_invariants()
                    items, faults = self._runnable()
                    if not items and not faults:
                        if asynchronous and _other_coroutines():
                            return True  # another coroutine of the driver's loop may end it
                        waited = time.monotonic()
                        if self._await_rejoin():  # preempted work runs on: it may end this
                            self._pass_real_time(time.monotonic() - waited)
                            continue
                        self._fail(DeadlockError(self._deadlock_report()))
                    if (asynchronous and self._idle_thread is not None and _only_time(items)
                            and _other_coroutines()):
                        return True  # time moves at the idle driver's real-time pace
                    self._check_budget()
                    item = self._pick(items, faults)
                    self._record(item[1])
                action = item[2]
                if action is DRIVER_STEP:
                    if ready():
                        lock.acquire()
                        return True
                    return False
                action()
        finally:
            self._chain_ok = False
            self._driver_wait = None
            self._handoff = None

    def _take_steps(self, worker: Any) -> None:
        """Take the next steps on this worker, whose job just ended, while the driver
        waits: the same settle, checks, choice and record the driver's loop makes, in the
        same order, so the run is the same step for step. A step the driver must take
        (its own wait ending) or that nothing can run goes back to the driver, with a
        failure to raise there; every other step runs here, a job inline."""
        # ``may_chain`` turns false when the worker is resumed by a step that goes on
        # after it (its job unwound): that step's thread must get the baton back first.
        while (self._chain_ok and worker.may_chain and self._handoff is None
               and not self._stopping):
            try:
                self._settle()
                if self.invariants:
                    self._check_invariants()
                items, faults = self._runnable()
                if not items and not faults:
                    return  # the driver reports the deadlock
                if self._max_steps and self.steps >= self._max_steps:
                    self._check_budget()
                item = self._pick(items, faults)
                self._record(item[1])
                if item[2] is DRIVER_STEP:
                    self._handoff = item
                    return
                item[2]()
            except SimulationError as exc:  # the driver raises it (``_fail`` kept it)
                if self._failure is None:
                    self._chain_error = exc
                return
            except BaseException as exc:
                self._chain_error = exc
                return

    # == the idle driver (settings.idle_drive > 0), or a word when it is off ==============

    def _watch_stall(self) -> None:
        """On the core's loop, every few seconds: say once, rather than hang without a
        word, why a run stopped moving. Without the idle driver: a program waiting on
        anything but actorlib's waits (the stdlib's ``concurrent.futures.wait``, a lock, a
        polling loop) with work ready to run. Without preemption: a step whose user code
        has run for long in real time (it sleeps, spins or waits outside actorlib; a step
        runs to its end or its next ``get``). It only reads: the run's choices are not touched."""
        self._stall_timer = None
        if self._stopping:
            return
        now = time.monotonic()
        driving = self._drive_lock.locked()
        if self._failure is None and self._warn_idle and not driving and (
            now - self._last_drive >= STALL_WARN_S and self._work_waits()
        ):
            self._warn_idle = False
            log.warning(
                "actorlib sim: no thread has waited in get/wait for %.0f s while work is "
                "ready to run, and only such a wait runs the simulation's steps. A program "
                "that waits on something else (the stdlib's concurrent.futures.wait or "
                "as_completed, a lock, a sleep in a loop) needs the idle driver: "
                "ACTORLIB_SIM_IDLE_DRIVE=0.01 (or SimSettings(idle_drive=...)), at the price "
                "of exact replay "
                "(docs/testing.md, 'the idle driver')", STALL_WARN_S,
            )
        steps, since = self._seen_steps
        if steps != self.steps or not driving:
            self._seen_steps = (self.steps, now)
        elif self._failure is None and self._warn_long and now - since >= STALL_WARN_S:
            self._warn_long = False
            log.warning(
                "actorlib sim: the step %r has run user code for %.0f s of real time, and "
                "the simulation waits for it: each step runs until its code ends or waits "
                "in get (sleeping, spinning or waiting outside actorlib holds the run). "
                "ACTORLIB_SIM_PREEMPT=0.05 (or simulate(preempt=...)) lets such code run "
                "on beside the simulation, at the price of exact replay (docs/testing.md)",
                self.log[-1] if self.log else "?", now - since,
            )
        if self._warn_idle or self._warn_long:
            self._stall_timer = self._core_loop.call_later(STALL_LOOK_S, self._watch_stall)

    def _work_waits(self) -> bool:
        """Whether something could run: a submission not yet handed to the simulation
        (posted to the core, or asked of this backend by the core), a task waiting to
        start, a call waiting for its actor. Read from the core's loop while no thread
        drives (a racing driver only makes the answer stale)."""
        try:
            return self._core.queued() or bool(self._commands or self._pending) or any(
                host.queues for host in list(self._hosts.values())
            )
        except RuntimeError:  # a dict changed under the look: a thread is running steps
            return False

    def _idle_driver(self, idle: float) -> None:
        """Run the runnable steps whenever no thread has driven for ``idle`` seconds: the
        driver waits on something the simulator does not see (a future, a lock, a sleep)."""
        while not self._stopping:
            time.sleep(idle)
            if self._failure is not None or not self._drive_lock.acquire(False):
                continue
            try:
                if not self._stopping and time.monotonic() - self._last_drive >= idle:
                    self._borrow()
                    try:
                        self._drive_idle()
                    finally:
                        self._give_back()
            except SimulationError:
                pass  # kept in self._failure: the driver's next get raises it
            except BaseException:
                log.exception("actorlib sim: error in the idle driver")
            finally:
                self._last_drive = time.monotonic()
                self._drive_lock.release()

    def _drive_idle(self, max_steps: int = 1000) -> None:
        """Up to ``max_steps`` steps, until nothing but the driver could run."""
        for _ in range(max_steps):
            if self._stopping:
                return
            self._settle()
            self._check_invariants()
            items, faults = self._runnable()
            if not items:
                return
            if _only_time(items):
                # Virtual time keeps to real time here: a driver waiting on real time
                # (a future, a sleep) must not see a timeout that has not really passed.
                real = time.monotonic() - self._started_at
                if real <= self.clock.now:
                    return
                self.clock.now = min(items[0][0][1], real)
                self._record(f"time advances to {self.clock.now:g}s")
                continue
            self._check_budget()
            _key, name, action = self._pick(items, faults)
            self._record(name)
            action()

    def _check_budget(self) -> None:
        if 0 < self.settings.max_steps <= self.steps:
            self._fail(StepBudgetExceeded(
                f"the run took {self.steps} steps and the test still waits "
                f"(max_steps={self.settings.max_steps}): a livelock, or raise the budget"
            ))

    # == quiet core, applied commands ======================================================

    def _settle(self) -> None:
        while True:
            if self._posted:  # else the core has nothing new: skip the round trip
                self._posted = False
                if self._lent:
                    self._core.drain()  # (``_quiesce``, lent: the baton's holder runs it)
                else:
                    self._quiesce()
            # (No loop anywhere, the common case of sync actors and plain tasks: no
            # callback can be ready, nothing to call.)
            if not self._commands and not (
                (self._async_hosts or self._started or self._call_loops)
                and self._plain_callbacks()
            ):
                return
            while self._commands:
                self._apply(self._commands.popleft())

    def _apply(self, command: tuple[Any, ...]) -> None:
        kind = command[0]
        if kind == "task":
            run: TaskRun = command[1]
            self.code.remember(run.spec.function)
            task_id = run.spec.task_id
            label = self._labels.get(task_id)
            if label is None:
                label = self._labels[task_id] = self._new_label(run.spec.name or "task")
            self._pend(SimTask(run, label))
        elif kind == "actor":
            start: ActorStart = command[1]
            self.code.remember(start.spec.cls)
            actor_id = start.spec.actor_id
            old = self._hosts.pop(actor_id, None)
            if old is not None:
                self._dispose(old)
            label = self._labels.get(actor_id)
            if label is None:
                label = self._labels[actor_id] = self._new_label(start.spec.cls.name)
            made = self._hosts[actor_id] = SimHost(start, label, self.clock)
            self._add_host(made)
        elif kind == "call":
            call: CallRun = command[1]
            host = self._hosts.get(call.spec.actor_id)
            if host is None or host.incarnation != call.incarnation or host.state == "dead":
                died = ActorDiedError("The actor is not running.")
                self._reply(call.spec, error_outcome(
                    call.spec.call_id, call.spec.attempt, died, call.spec.method,
                ))
                return
            queue = host.queues.get(call.spec.caller_id)
            if queue is None:
                queue = host.queues[call.spec.caller_id] = collections.deque()
            queue.append(call)
            if host.loop is None:
                self._relist(host)
        elif kind == "stop":
            host = self._hosts.pop(command[1], None)
            if host is not None:
                self._stop_actor(host, command[2])
        elif kind == "cancel":
            self._cancel(command[1], command[2])

    def _plain_callbacks(self) -> bool:
        """Run the plain callbacks (not coroutine steps) ready on async actors' loops: a
        ref became ready, a timer fired. They are plumbing, not interleaving points."""
        ran = False
        for host in list(self._async_hosts):
            loop = host.loop
            if loop is None or host.worker is not None or host.state == "dead":
                continue
            if not loop.pending():  # nothing ready, no timer: nothing to run
                continue
            loop.fire_due()
            loop.drop_cancelled()
            for handle in loop.plain_handles():
                loop.take(handle)
                run_handle(loop, handle)
                ran = self._posted = True
        for task in self._started.values():
            if task.loop is not None:
                task.loop.fire_due()
        for call in self._call_loops:
            if call.loop is not None:
                call.loop.fire_due()
        return ran

    def _preempted(self, worker: Any) -> None:
        self._record(f"{worker.label} preempted (runs on in real time)")

    # == reports ===========================================================================

    def _deadlock_report(self) -> str:
        return deadlock_report(self)

    def _awaited_by(self, task: asyncio.Task[Any]) -> list[int]:
        """The objects a coroutine of the simulation awaits now (none if it does not)."""
        entry = self._awaits.get(task)
        return entry[1] if entry is not None and entry[0].locked() else []

    def _awaited_on(self, loop: Any) -> list[int]:
        """The objects the coroutines of ``loop`` (an async task's) await now."""
        if loop is None:
            return []
        return [i for task in list(self._awaits) if task.get_loop() is loop
                for i in self._awaited_by(task)]

    # == for actorlib.testing ==============================================================

    def instance(self, actor_id: int) -> Any:
        """The live instance of an actor (for invariants); NotRunning if there is none."""
        host = self._hosts.get(actor_id)
        if host is None or host.state != "ready" or host.instance is None:
            raise NotRunning(f"actor {self._labels.get(actor_id, id_hex(actor_id))} is not running")
        return host.instance

    def add_invariant(self, check: Callable[[], Any]) -> None:
        self.invariants.append(check)

    @property
    def failure(self) -> SimulationError | None:
        return self._failure


def _only_time(items: list[Any]) -> bool:
    return len(items) == 1 and items[0][0][0] == "clock"


def _other_coroutines() -> bool:
    """Whether the driver's event loop has coroutines besides the one waiting (they may
    be what ends its wait: a timeout, another ``remote`` call), or is not asyncio."""
    try:
        tasks = asyncio.all_tasks()
    except RuntimeError:  # not asyncio (trio): its other tasks are not visible here
        return True
    return len(tasks) > 1


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
