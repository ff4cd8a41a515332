"""The ``sim`` backend: tasks and actors run one step at a time, every choice scheduled.

How it stays deterministic while the core runs on its own loop thread (see
``docs/testing.md``):

- User code runs on worker threads of this backend, but only one thread runs at a time:
  a worker runs when the controller hands it the baton (``_switch``) and hands it back
  when its job ends or when it would block in ``get`` (``waiting.blocking_wait``).
- The controller is the test's own thread, inside its blocking ``get``: it waits for the
  core to go quiet (``_quiesce``), applies what the core asked of the backend (the
  backend's methods only queue commands), lists the runnable steps, asks the choice
  source for one, runs it, and repeats until the test's own wait is satisfied *and*
  chosen.
- Async actors run on a :class:`~actorlib.backends.sim.loop.SimLoop` each: one ready
  coroutine step at a time, in virtual time.
"""

from __future__ import annotations

import _thread
import asyncio
import collections
import functools
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from actorlib.backends.base import Backend, BackendConfig, CoreEvents
from actorlib.backends.runner.user_code import (
    CodeCache,
    build_args,
    env_vars,
    pack_error,
    pack_results,
)
from actorlib.backends.sim.choices import (
    Choices,
    FaultPlan,
    PCTChoices,
    RandomChoices,
    ReplayChoices,
    encode_trace,
)
from actorlib.backends.sim.errors import (
    DeadlockError,
    InvariantViolation,
    NotRunning,
    SimulationError,
    StepBudgetExceeded,
)
from actorlib.backends.sim.loop import Clock, SimLoop, run_handle, task_of
from actorlib.core import waiting
from actorlib.core.execution_context import ExecutionContext, current_execution
from actorlib.core.ids import id_hex
from actorlib.core.records import ActorStart, CallRun, NodeInfo, Outcome, TaskRun
from actorlib.core.specs import DRIVER_CALLER, CallSpec
from actorlib.exceptions import ActorDiedError, TaskCancelledError, WorkerCrashedError

log = logging.getLogger("actorlib.sim")

NODE_ID = "sim-node-0"
DEFAULT_CPUS = 8.0
DEFAULT_MEMORY = float(8 << 30)
#: Environment: a trace to replay (``sim1:...``) or a seed, for ``init(backend="sim")``.
REPLAY_ENV = "ACTORLIB_SIM_REPLAY"
SEED_ENV = "ACTORLIB_SIM_SEED"
MAX_STEPS_ENV = "ACTORLIB_SIM_MAX_STEPS"  # default for a plain init: 0, no limit


class _Unwind(BaseException):
    """Raised in user code whose worker the simulation killed or stopped."""


@dataclass
class SimSettings:
    """How one simulated run makes its choices and what it checks."""

    choices: Choices = field(default_factory=RandomChoices)
    faults: FaultPlan = field(default_factory=FaultPlan)
    #: Steps the whole run may take (0: no limit) before it fails with StepBudgetExceeded.
    max_steps: int = 20_000
    #: False (the default): virtual time jumps to the next timer only when nothing else
    #: can run (trio's autojump clock). True: "time passes" is one more choice at every
    #: step, so timeouts may fire while work is still runnable (slow work, explored).
    explore_time: bool = False
    invariants: list[Callable[[], Any]] = field(default_factory=list)
    #: Called with each step's name as it runs (a live trace; tests of the simulator).
    on_step: Callable[[str], None] | None = None


_next: SimSettings | None = None
_current: SimBackend | None = None


def configure(settings: SimSettings | None) -> None:
    """Use ``settings`` for the next ``init(backend="sim")`` in this process."""
    global _next
    _next = settings


def current() -> SimBackend | None:
    """The running simulation, if any."""
    return _current


def _settings_from_env() -> SimSettings:
    max_steps = int(os.environ.get(MAX_STEPS_ENV, "0"))
    replay = os.environ.get(REPLAY_ENV)
    if replay:
        choices = ReplayChoices(replay)
        return SimSettings(choices=choices, faults=choices.faults, max_steps=max_steps,
                           explore_time=choices.explore_time)
    return SimSettings(choices=RandomChoices(int(os.environ.get(SEED_ENV, "0"))),
                       max_steps=max_steps)


class _Wait:
    """What a paused thread waits for: ``ready()``, or virtual time reaching ``deadline``."""

    __slots__ = ("deadline", "ids", "ready", "serial", "timed_out")

    _serials = 0

    def __init__(
        self, ready: Callable[[], bool], deadline: float | None, ids: list[int]
    ) -> None:
        self.ready = ready
        self.deadline = deadline
        self.ids = ids
        self.timed_out = False
        # Made by the one thread running now: the same sequence in every replay.
        _Wait._serials += 1
        self.serial = _Wait._serials


class _Worker:
    """A thread that runs user code only while it holds the baton."""

    __slots__ = (
        "go", "index", "job", "label", "on_done", "owner", "sim", "thread", "unwind",
        "unwound", "wait",
    )

    def __init__(self, sim: SimBackend, index: int) -> None:
        self.sim = sim
        self.index = index
        self.go = _thread.allocate_lock()
        self.go.acquire()
        self.job: Callable[[], None] | None = None
        self.on_done: Callable[[bool], None] | None = None
        self.wait: _Wait | None = None
        self.unwind = False
        self.unwound = False
        self.label = ""
        self.owner: Any = None
        self.thread = threading.Thread(
            target=self._main, name=f"actorlib-sim-{index}", daemon=True
        )
        self.thread.start()

    def _main(self) -> None:
        sim = self.sim
        sim._by_ident[_thread.get_ident()] = self
        try:
            while True:
                self.go.acquire()
                job = self.job
                if job is None:
                    return
                self.unwound = False
                try:
                    job()
                except _Unwind:
                    self.unwound = True
                except BaseException:  # a bug of the simulator's own job code
                    log.exception("actorlib sim: internal error in a worker")
                self.job = None
                if not sim._reply_on_controller:
                    # Report the end here, before the baton goes back through the core:
                    # the core has handled the reply when the controller wakes.
                    done, self.on_done = self.on_done, None
                    if done is not None:
                        done(self.unwound)
                sim._hand_back()
        finally:
            sim._by_ident.pop(_thread.get_ident(), None)
            sim._back.release()  # the controller waits for the exit too


class _Posting:
    """The core's events, noting that something was posted (the core must go quiet)."""

    __slots__ = ("_events", "_sim")

    def __init__(self, events: CoreEvents, sim: SimBackend) -> None:
        self._events = events
        self._sim = sim

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._events, name)
        if not callable(attr):
            return attr
        sim = self._sim

        def posting(*args: Any) -> Any:
            sim._posted = True
            return attr(*args)

        return posting


class _Box:
    """What a job produced: its outcome, and the result kept alive until it is out."""

    __slots__ = ("ok", "outcome", "result")

    def __init__(self) -> None:
        self.outcome: Outcome | None = None
        self.result: Any = None
        self.ok = False


class _Task:
    __slots__ = ("box", "ctx", "label", "loop", "run", "worker")

    def __init__(self, run: TaskRun, label: str) -> None:
        self.run = run
        self.label = label
        self.worker: _Worker | None = None
        self.ctx: ExecutionContext | None = None
        self.box = _Box()
        self.loop: SimLoop | None = None  # an ``async def`` task's own loop


class _Host:
    """One incarnation of an actor: its instance, the calls handed to it, what runs."""

    def __init__(self, start: ActorStart, label: str, clock: Clock) -> None:
        spec = start.spec
        self.start = start
        self.spec = spec
        self.label = label
        self.incarnation = start.incarnation
        self.state = "new"  # new -> constructing -> ready -> dead
        self.instance: Any = None
        self.queues: dict[int, collections.deque[CallRun]] = {}
        self.running: dict[int, Any] = {}  # call id -> worker (sync) or asyncio task
        self.limits = {"": spec.max_concurrency, **(spec.concurrency_groups or {})}
        self.busy = dict.fromkeys(self.limits, 0)
        self.worker: _Worker | None = None  # running the constructor or an async step
        self.loop = SimLoop(clock) if spec.is_async else None
        self.tasks: dict[asyncio.Task[Any], str] = {}  # coroutine -> its name in traces
        self.serial: dict[asyncio.Task[Any], int] = {}
        self.finished: list[tuple[CallRun, _Box]] = []
        self.cancelled: set[int] = set()
        self.ctor_box = _Box()

    def context(self, call_id: int | None = None) -> ExecutionContext:
        return ExecutionContext(
            NODE_ID, task_id=call_id, actor_id=self.spec.actor_id, gpu_ids=self.start.gpu_ids,
            namespace=self.spec.namespace, spec=self.spec, incarnation=self.incarnation,
        )

    def group_of(self, spec: CallSpec) -> str:
        if spec.concurrency_group is not None:
            return spec.concurrency_group
        groups = self.spec.method_groups
        return groups.get(spec.method, "") if groups else ""


#: A runnable step: (key, name, action). The key identifies it across choices (its age).
_Item = tuple[Any, str, Callable[[], Any]]


def _no_generators(spec: Any) -> None:
    """Generator tasks and calls are not simulated: their work fails with this error."""
    if spec.generator:
        raise NotImplementedError(
            f"the sim backend does not run num_returns={spec.generator!r} generators"
        )


class SimBackend(Backend):
    name = "sim"
    pipelines = False

    def __init__(self) -> None:
        self.code = CodeCache()
        self.clock = Clock()
        self._commands: collections.deque[tuple[Any, ...]] = collections.deque()
        self._by_ident: dict[int, _Worker] = {}
        self._workers: list[_Worker] = []
        self._idle: list[_Worker] = []
        self._back = _thread.allocate_lock()
        self._back.acquire()
        self._pending: dict[int, _Task] = {}  # task id -> not started
        self._started: dict[int, _Task] = {}  # task id -> started, not finished
        self._hosts: dict[int, _Host] = {}  # actor id -> current incarnation
        self._labels: dict[int, str] = {DRIVER_CALLER: "driver"}
        self._counts: collections.Counter[str] = collections.Counter()
        self._born: dict[Any, int] = {}
        self._births = 0
        self._driver_ident: int | None = None
        self._driver_wait: _Wait | None = None
        self._failure: SimulationError | None = None
        self._stopping = False
        self._reply_on_controller = False
        self._posted = True  # something may have reached the core since it was last quiet
        self._previous_hook: Any = None
        self.steps = 0
        self.faults_used = 0
        self.choices_made: list[int] = []
        self.options: list[int] = []  # how many options each choice had
        self.log: list[str] = []

    # == lifecycle =========================================================================

    async def start(self, events: CoreEvents, config: BackendConfig) -> list[NodeInfo]:
        global _next, _current
        self._raw_events = events
        self.events = _Posting(events, self)
        self._core_loop = asyncio.get_running_loop()
        settings = _next if _next is not None else _settings_from_env()
        _next = None
        self.settings = settings
        self.source = settings.choices
        self.faults = settings.faults
        # A reply may be dropped (a fault): decided on the controller, so replies are
        # sent from there (a worker must never switch to another worker).
        self._reply_on_controller = self.faults.drop_before_reply and self.faults.max_faults > 0
        self.invariants = list(settings.invariants)
        cpus = config.num_cpus if config.num_cpus is not None else DEFAULT_CPUS
        resources = {"CPU": float(cpus), "memory": DEFAULT_MEMORY}
        if config.num_gpus:
            resources["GPU"] = float(config.num_gpus)
        resources.update({k: float(v) for k, v in config.resources.items()})
        self._previous_hook = waiting.blocking_wait
        waiting.blocking_wait = self._blocking_wait
        _current = self
        return [NodeInfo(NODE_ID, resources)]

    async def stop(self) -> None:
        global _current
        self._stopping = True
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def finish() -> None:
            try:
                self._stop_everything()
            except BaseException:
                log.exception("actorlib sim: error while stopping")
            finally:
                loop.call_soon_threadsafe(_resolve, done)

        threading.Thread(target=finish, name="actorlib-sim-stop", daemon=True).start()
        await done
        if waiting.blocking_wait == self._blocking_wait:
            waiting.blocking_wait = self._previous_hook
        if _current is self:
            _current = None

    def _stop_everything(self) -> None:
        for host in list(self._hosts.values()):
            self._dispose(host)
        self._hosts.clear()
        for task in list(self._started.values()):
            if task.worker is not None and task.worker.wait is not None:
                self._unwind(task.worker)
        self._started.clear()
        self._pending.clear()
        for worker in self._workers:
            if worker.wait is not None:  # anything else still paused
                self._unwind(worker)
        for worker in self._workers:
            worker.job = None
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
        self._commands.append(("stop", actor_id))

    def cancel(self, id: int, *, force: bool) -> None:
        self._commands.append(("cancel", id, force))

    def items_consumed(self, id: int, consumed: int) -> None:
        """Never needed: this backend produces no streams (see ``_no_generators``)."""

    # == the controller: the test's thread, blocked in get ==================================

    def _blocking_wait(
        self, lock: Any, timeout: float | None, ids: list[int], asynchronous: bool
    ) -> bool:
        ident = _thread.get_ident()
        worker = self._by_ident.get(ident)
        if worker is not None:
            if asynchronous:  # an await in a coroutine the simulator steps: it waits there
                return True
            return self._worker_wait(worker, lock, timeout, ids)
        if self._stopping or (self._driver_ident not in (None, ident)):
            if asynchronous:
                return True
            return bool(lock.acquire(timeout=-1 if timeout is None else timeout))
        self._driver_ident = ident
        return self._drive(lock, timeout, ids)

    def _drive(self, lock: Any, timeout: float | None, ids: list[int]) -> bool:
        if self._failure is not None:
            raise self._failure
        if timeout is not None and timeout <= 0.001:
            self._settle()
            return bool(lock.acquire(False))
        deadline = None if timeout is None else self.clock.now + timeout
        wait = _Wait(lambda: not lock.locked(), deadline, ids)
        self._driver_wait = wait
        self._posted = True  # the driver ran code since it last waited
        try:
            while True:
                self._settle()
                self._check_invariants()
                items, faults = self._runnable()
                if not items and not faults:
                    self._fail(DeadlockError(self._deadlock_report()))
                if 0 < self.settings.max_steps <= self.steps:
                    self._fail(StepBudgetExceeded(
                        f"the run took {self.steps} steps and the test still waits "
                        f"(max_steps={self.settings.max_steps}): a livelock, or raise the budget"
                    ))
                _key, name, action = self._pick(items, faults)
                self._record(name)
                if action is _DRIVER:
                    if wait.ready():
                        lock.acquire()
                        return True
                    return False
                action()
        finally:
            self._driver_wait = None

    def _pick(self, items: list[_Item], faults: list[_Item]) -> _Item:
        options = items + faults
        if isinstance(self.source, PCTChoices):
            self.source.keys = [key for key, _, _ in items]
        if len(options) == 1:
            choice = 0
        else:
            choice = self.source.choose(len(items), len(faults))
            self.choices_made.append(choice)
            self.options.append(len(options))
        picked = options[choice]
        self._born.pop(picked[0], None)
        if choice >= len(items):
            self.faults_used += 1
        return picked

    def _choose_fault(self, name: str) -> bool:
        """A point where one fault may land (``drop_before_reply``): 1 means it does."""
        if not (self.faults.drop_before_reply and self.faults_used < self.faults.max_faults):
            return False
        choice = self.source.choose(1, 1)
        self.choices_made.append(choice)
        self.options.append(2)
        if choice:
            self.faults_used += 1
            self._record(name)
        return bool(choice)

    def _record(self, name: str) -> None:
        self.steps += 1
        self.log.append(name)
        if self.settings.on_step is not None:
            self.settings.on_step(name)

    @property
    def trace(self) -> str:
        return encode_trace(self.choices_made, self.faults, self.settings.explore_time)

    def _fail(self, error: SimulationError) -> None:
        error.trace = self.trace
        error.steps = list(self.log)
        tail = self.log[-30:]
        shown = "\n".join(
            f"  {len(self.log) - len(tail) + i + 1:4d}. {name}" for i, name in enumerate(tail)
        )
        error.args = (
            f"{error.args[0]}\n\nlast {len(tail)} of {len(self.log)} steps:\n{shown}\n\n"
            f"replay with: actorlib.testing.replay({self.trace!r})",
        )
        self._failure = error
        raise error

    def _check_invariants(self) -> None:
        for check in self.invariants:
            try:
                ok = check()
            except NotRunning:
                continue
            except AssertionError as exc:
                self._fail(InvariantViolation(
                    f"invariant {_name_of(check)} failed after step {self.steps}: {exc}"
                ))
            if ok is False:
                self._fail(InvariantViolation(
                    f"invariant {_name_of(check)} is false after step {self.steps}"
                ))

    # == quiet core, applied commands ======================================================

    def _hand_back(self) -> None:
        """A worker gives the baton back, through the core: the controller wakes once the
        core has handled everything the worker posted (one wake-up fewer than a
        separate quiesce)."""
        if self._stopping:
            self._back.release()
        else:
            self._raw_events.post(self._core_loop.call_soon, self._back.release)

    def _quiesce(self) -> None:
        """Wait until the core has handled everything posted so far, scheduling included."""
        lock = _thread.allocate_lock()
        lock.acquire()
        self._raw_events.post(self._core_loop.call_soon, lock.release)
        lock.acquire()

    def _settle(self) -> None:
        while True:
            if self._posted:  # else the core has nothing new: skip the round trip
                self._posted = False
                self._quiesce()
            if not self._commands and not self._plain_callbacks():
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
            self._pending[task_id] = _Task(run, label)
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
            self._hosts[actor_id] = _Host(start, label, self.clock)
        elif kind == "call":
            call: CallRun = command[1]
            host = self._hosts.get(call.spec.actor_id)
            if host is None or host.incarnation != call.incarnation or host.state == "dead":
                died = ActorDiedError("The actor is not running.")
                self._reply(call.spec, _error_outcome(
                    call.spec.call_id, call.spec.attempt, died, call.spec.method,
                ))
                return
            host.queues.setdefault(call.spec.caller_id, collections.deque()).append(call)
        elif kind == "stop":
            host = self._hosts.pop(command[1], None)
            if host is not None:
                self._dispose(host)
        elif kind == "cancel":
            self._cancel(command[1], command[2])

    def _new_label(self, name: str) -> str:
        self._counts[name] += 1
        return f"{name}#{self._counts[name]}"

    def _caller(self, caller_id: int) -> str:
        return self._labels.get(caller_id, f"caller {id_hex(caller_id)}")

    def _plain_callbacks(self) -> bool:
        """Run the plain callbacks (not coroutine steps) ready on async actors' loops: a
        ref became ready, a timer fired. They are plumbing, not interleaving points."""
        ran = False
        for host in list(self._hosts.values()):
            loop = host.loop
            if loop is None or host.worker is not None or host.state == "dead":
                continue
            loop.fire_due()
            loop.drop_cancelled()
            for handle in [h for h in loop.ready_handles() if task_of(h) is None]:
                loop.take(handle)
                run_handle(loop, handle)
                ran = self._posted = True
        for task in self._started.values():
            if task.loop is not None:
                task.loop.fire_due()
        return ran

    # == the runnable steps ================================================================

    def _runnable(self) -> tuple[list[_Item], list[_Item]]:
        items: list[_Item] = []
        faults: list[_Item] = []
        now = self.clock.now
        driver = self._driver_wait
        if driver is not None and (
            driver.ready() or (driver.deadline is not None and driver.deadline <= now)
        ):
            items.append((("driver",), "driver continues", _DRIVER))
        for worker in self._workers:
            wait = worker.wait
            if wait is None:
                continue
            if wait.ready():
                items.append(((
                    "resume", wait.serial), f"{worker.label} resumes",
                    functools.partial(self._resume, worker, False),
                ))
            elif wait.deadline is not None and wait.deadline <= now:
                items.append(((
                    "timeout", wait.serial), f"{worker.label} times out",
                    functools.partial(self._resume, worker, True),
                ))
        for task in self._pending.values():
            spec = task.run.spec
            items.append((
                ("task", spec.task_id, spec.attempt),
                f"task {task.label} starts"
                + (f" (attempt {spec.attempt + 1})" if spec.attempt else ""),
                functools.partial(self._start_task, task),
            ))
        for host in self._hosts.values():
            self._host_items(host, items)
        wake = self._next_wake() if (not items or self.settings.explore_time) else None
        if wake is not None and wake > now:
            items.append((("clock", wake), f"time advances to {wake:g}s",
                          functools.partial(self._advance, wake)))
        if self.faults.any and self.faults_used < self.faults.max_faults:
            if self.faults.kill_worker:
                for task in self._started.values():
                    if task.worker is not None and task.worker.wait is not None:
                        faults.append((
                            ("kill", task.run.spec.task_id), f"worker running {task.label} killed",
                            functools.partial(self._kill_task, task),
                        ))
            if self.faults.restart_actor:
                for host in self._hosts.values():
                    if host.state == "ready":
                        faults.append((
                            ("die", host.spec.actor_id, host.incarnation),
                            f"actor {host.label} killed (its worker died)",
                            functools.partial(self._kill_actor, host),
                        ))
        born = self._born
        keep = {}
        for key, _, _ in items:
            age = born.get(key)
            if age is None:
                age = self._births
                self._births += 1
            keep[key] = age
        self._born = keep
        items.sort(key=lambda item: keep[item[0]])
        return items, faults

    def _host_items(self, host: _Host, items: list[_Item]) -> None:
        if host.state == "new":
            items.append((
                ("ctor", host.spec.actor_id, host.incarnation),
                f"{host.label}.__init__" + (" (restart)" if host.incarnation > 1 else ""),
                functools.partial(self._construct, host),
            ))
            return
        if host.state != "ready" or host.worker is not None:
            return
        for caller, queue in host.queues.items():
            run = queue[0]
            group = host.group_of(run.spec) if host.spec.concurrency_groups else ""
            if group in host.limits and host.busy[group] >= host.limits[group]:
                continue
            items.append((
                ("call", run.spec.call_id, run.spec.attempt),
                f"{host.label}.{run.spec.method} from {self._caller(caller)}",
                functools.partial(self._start_call, host, caller),
            ))
        loop = host.loop
        if loop is not None:
            seen: set[asyncio.Task[Any]] = set()
            for handle in loop.ready_handles():
                task = task_of(handle)
                if task is None or task in seen:
                    continue
                seen.add(task)
                serial = host.serial.get(task)
                if serial is None:
                    serial = host.serial[task] = len(host.serial) + 1
                name = host.tasks.get(task) or f"{host.label} coroutine {serial}"
                items.append((
                    ("step", host.spec.actor_id, host.incarnation, serial),
                    f"{name} resumes", functools.partial(self._async_step, host, task),
                ))

    def _next_wake(self) -> float | None:
        times: list[float] = []
        for host in self._hosts.values():
            if host.loop is not None and host.state != "dead":
                when = host.loop.next_timer()
                if when is not None:
                    times.append(when)
        for task in self._started.values():
            if task.loop is not None:
                when = task.loop.next_timer()
                if when is not None:
                    times.append(when)
        for worker in self._workers:
            if worker.wait is not None and worker.wait.deadline is not None:
                times.append(worker.wait.deadline)
        driver = self._driver_wait
        if driver is not None and driver.deadline is not None:
            times.append(driver.deadline)
        return min(times) if times else None

    def _advance(self, when: float) -> None:
        self.clock.now = max(self.clock.now, when)

    # == running a step ====================================================================

    def _take_worker(self) -> _Worker:
        if self._idle:
            return self._idle.pop()
        worker = _Worker(self, len(self._workers))
        self._workers.append(worker)
        return worker

    def _launch(
        self, job: Callable[[], None], on_done: Callable[[bool], None], label: str, owner: Any,
        bind: Callable[[_Worker | None], None] | None = None, unwind: bool = False,
    ) -> None:
        """Run ``job`` on a worker until it ends or pauses. ``bind(worker)`` first (so the
        job can find its worker); ``on_done(unwound)`` when it ends."""
        worker = self._take_worker()
        worker.job = job
        worker.on_done = on_done
        worker.label = label
        worker.owner = owner
        worker.unwind = unwind
        if bind is not None:
            bind(worker)
        self._switch(worker)

    def _switch(self, worker: _Worker) -> None:
        """Hand ``worker`` the baton; return when it finished its job or paused."""
        worker.go.release()
        self._back.acquire()
        self._posted = self._stopping  # handed back through the core: it is quiet
        if worker.wait is None:  # the job ended
            done, worker.on_done = worker.on_done, None
            worker.owner = None
            worker.unwind = False
            self._idle.append(worker)
            if done is not None:
                done(worker.unwound)

    def _resume(self, worker: _Worker, timed_out: bool) -> None:
        wait = worker.wait
        if wait is not None:
            wait.timed_out = timed_out and not wait.ready()
        self._switch(worker)

    def _unwind(self, worker: _Worker) -> None:
        """End the user code a paused worker runs (its worker died)."""
        worker.unwind = True
        self._switch(worker)

    def _worker_wait(
        self, worker: _Worker, lock: Any, timeout: float | None, ids: list[int]
    ) -> bool:
        if worker.unwind:
            raise _Unwind()
        if timeout is not None and timeout <= 0.001:
            self._quiesce()
            return bool(lock.acquire(False))
        deadline = None if timeout is None else self.clock.now + timeout
        wait = _Wait(lambda: not lock.locked(), deadline, ids)
        self._park(worker, wait)
        if wait.timed_out:
            return False
        lock.acquire()
        return True

    def _park(self, worker: _Worker, wait: _Wait) -> None:
        """Pause this worker (its own thread) until the controller resumes it."""
        if worker.unwind:
            raise _Unwind()
        worker.wait = wait
        self._hand_back()
        worker.go.acquire()
        worker.wait = None
        if worker.unwind:
            raise _Unwind()

    # -- tasks -------------------------------------------------------------------------

    def _start_task(self, task: _Task) -> None:
        spec = task.run.spec
        del self._pending[spec.task_id]
        self._started[spec.task_id] = task
        self._launch(
            functools.partial(self._task_job, task), functools.partial(self._task_done, task),
            f"task {task.label}", task, bind=functools.partial(setattr, task, "worker"),
        )

    def _task_job(self, task: _Task) -> None:
        run = task.run
        spec = run.spec
        ctx = task.ctx = ExecutionContext(
            NODE_ID, task_id=spec.task_id, gpu_ids=run.gpu_ids, namespace=spec.namespace,
            spec=spec,
        )
        token = current_execution.set(ctx)
        box = task.box
        failure: BaseException | None = None
        try:
            try:
                fn = self.code.load(spec.function)
                args, kwargs = build_args(spec.args, run.deps)
                with env_vars(spec.env_vars):
                    result = fn(*args, **kwargs)
                    if asyncio.iscoroutine(result):
                        result = self._run_coroutine(task, result)
                box.result = result
            except _Unwind:
                raise
            except BaseException as exc:
                failure = exc
            if ctx.cancelled:
                failure, box.result = TaskCancelledError(f"Task {spec.name} was cancelled."), None
            if failure is None:
                try:
                    _no_generators(spec)
                    values = pack_results(box.result, spec.num_returns, spec.name, self.store)
                    box.outcome = Outcome(spec.task_id, spec.attempt, values=values)
                except Exception as exc:
                    failure = exc
            if failure is not None:
                error, retryable = pack_error(failure, spec.name, spec.retry_exceptions)
                box.outcome = Outcome(spec.task_id, spec.attempt, error=error, retryable=retryable)
        finally:
            current_execution.reset(token)

    def _run_coroutine(self, task: _Task, coro: Any) -> Any:
        """An ``async def`` task: its own loop, stepped here; paused while nothing is ready."""
        loop = task.loop = SimLoop(self.clock)
        worker = task.worker
        assert worker is not None
        runner = loop.create_task(coro)
        try:
            while not runner.done():
                loop.fire_due()
                handles = loop.ready_handles()
                if not handles:
                    loop.drop_cancelled()
                    self._park(worker, _Wait(lambda: bool(loop.ready_handles()), None, []))
                    continue
                loop.take(handles[0])
                run_handle(loop, handles[0])
            return runner.result()
        except _Unwind:
            runner.cancel()
            loop._sim_dropped = True  # type: ignore[attr-defined]
            raise
        finally:
            task.loop = None
            if runner.done():
                loop.close()

    def _task_done(self, task: _Task, unwound: bool) -> None:
        spec = task.run.spec
        self._started.pop(spec.task_id, None)
        task.worker = None
        if unwound:
            return
        box = task.box
        outcome = box.outcome
        assert outcome is not None
        if self._choose_fault(f"worker running {task.label} dies before its reply"):
            self.events.task_crashed(spec.task_id, spec.attempt, WorkerCrashedError(
                "the simulator killed the worker before it replied"
            ))
        else:
            self.events.task_finished(outcome)
        box.result = None

    def _kill_task(self, task: _Task) -> None:
        spec = task.run.spec
        if task.worker is not None:
            self._unwind(task.worker)
        self._started.pop(spec.task_id, None)
        self.events.task_crashed(spec.task_id, spec.attempt, WorkerCrashedError(
            "the simulator killed the worker running it"
        ))

    # -- actors ------------------------------------------------------------------------

    def _construct(self, host: _Host) -> None:
        host.state = "constructing"
        self._launch(
            functools.partial(self._ctor_job, host), functools.partial(self._ctor_done, host),
            f"{host.label}.__init__", host, bind=functools.partial(setattr, host, "worker"),
        )

    def _ctor_job(self, host: _Host) -> None:
        spec = host.spec
        box = host.ctor_box = _Box()
        token = current_execution.set(host.context())
        try:
            cls = self.code.load(spec.cls)
            args, kwargs = build_args(spec.args, host.start.deps)
            with env_vars(spec.env_vars):
                host.instance = cls(*args, **kwargs)
            box.ok = True
        except _Unwind:
            raise
        except BaseException as exc:
            error, _ = pack_error(exc, f"{spec.cls.name}.__init__", False)
            box.outcome = Outcome(0, 0, error=error)
        finally:
            current_execution.reset(token)

    def _ctor_done(self, host: _Host, unwound: bool) -> None:
        host.worker = None
        if unwound or host.state == "dead":
            return
        box = host.ctor_box
        if box.ok:
            host.state = "ready"
            self.events.actor_started(host.spec.actor_id, host.incarnation)
        else:
            assert box.outcome is not None and box.outcome.error is not None
            host.state = "dead"
            self.events.actor_init_failed(host.spec.actor_id, host.incarnation, box.outcome.error)

    def _start_call(self, host: _Host, caller: int) -> None:
        queue = host.queues[caller]
        run = queue.popleft()
        if not queue:
            del host.queues[caller]
        spec = run.spec
        if spec.call_id in host.cancelled:
            host.cancelled.discard(spec.call_id)
            self._reply(spec, _error_outcome(spec.call_id, spec.attempt, TaskCancelledError(),
                                             spec.method))
            return
        group = host.group_of(spec) if host.spec.concurrency_groups else ""
        if group not in host.limits:
            known = ", ".join(sorted(host.spec.concurrency_groups or {})) or "none"
            self._reply(spec, _error_outcome(spec.call_id, spec.attempt, ValueError(
                f"concurrency group {group!r} is not one of actor {host.spec.cls.name}'s "
                f"concurrency_groups ({known})"), spec.method))
            return
        host.busy[group] += 1
        name = f"{host.label}.{spec.method} from {self._caller(caller)}"
        if host.loop is None:
            box = _Box()
            self._launch(
                functools.partial(self._call_job, host, run, box),
                functools.partial(self._call_done, host, run, box, group),
                name, host, bind=functools.partial(host.running.__setitem__, spec.call_id),
            )
            return
        loop = host.loop
        box = _Box()
        task = loop.create_task(self._call_async(host, run, box, group))
        host.tasks[task] = name
        host.running[spec.call_id] = task
        self._async_step(host, task)

    def _call_job(self, host: _Host, run: CallRun, box: _Box) -> None:
        spec = run.spec
        token = current_execution.set(host.context(spec.call_id))
        name = f"{host.spec.cls.name}.{spec.method}"
        try:
            method = getattr(host.instance, spec.method)
            args, kwargs = build_args(spec.args, run.deps)
            with env_vars(host.spec.env_vars):
                box.result = method(*args, **kwargs)
            _no_generators(spec)
            values = pack_results(box.result, spec.num_returns, name, self.store)
            box.outcome = Outcome(spec.call_id, spec.attempt, values=values)
        except _Unwind:
            raise
        except BaseException as exc:
            error, retryable = pack_error(exc, name, spec.retry_exceptions)
            box.outcome = Outcome(spec.call_id, spec.attempt, error=error, retryable=retryable)
        finally:
            current_execution.reset(token)

    def _call_done(
        self, host: _Host, run: CallRun, box: _Box, group: str, unwound: bool
    ) -> None:
        host.running.pop(run.spec.call_id, None)
        if host.state == "dead" or unwound:
            return
        host.busy[group] -= 1
        self._deliver(host, run, box)

    def _deliver(self, host: _Host, run: CallRun, box: _Box) -> None:
        outcome = box.outcome
        assert outcome is not None
        if self._choose_fault(f"{host.label} dies before replying to {run.spec.method}"):
            self._kill_actor(host)
            return
        self.events.call_finished(outcome)
        box.result = None

    async def _call_async(self, host: _Host, run: CallRun, box: _Box, group: str) -> None:
        spec = run.spec
        name = f"{host.spec.cls.name}.{spec.method}"
        current_execution.set(host.context(spec.call_id))
        try:
            method = getattr(host.instance, spec.method)
            args, kwargs = build_args(spec.args, run.deps)
            result = method(*args, **kwargs)
            if asyncio.iscoroutine(result):
                result = await result
            box.result = result
            _no_generators(spec)
            values = pack_results(result, spec.num_returns, name, self.store)
            box.outcome = Outcome(spec.call_id, spec.attempt, values=values)
        except _Unwind:
            raise
        except BaseException as exc:
            error, retryable = pack_error(exc, name, spec.retry_exceptions)
            box.outcome = Outcome(spec.call_id, spec.attempt, error=error, retryable=retryable)
        if host.state != "dead":
            host.running.pop(spec.call_id, None)
            host.busy[group] -= 1
            host.finished.append((run, box))

    def _async_step(self, host: _Host, task: asyncio.Task[Any]) -> None:
        loop = host.loop
        assert loop is not None
        self._launch(
            functools.partial(self._step_job, loop, task),
            functools.partial(self._step_done, host, task),
            host.tasks.get(task, host.label), host, bind=functools.partial(setattr, host, "worker"),
        )

    @staticmethod
    def _step_job(loop: SimLoop, task: asyncio.Task[Any]) -> None:
        for handle in loop.ready_handles():
            if task_of(handle) is task:
                loop.take(handle)
                run_handle(loop, handle)
                return

    def _step_done(self, host: _Host, task: asyncio.Task[Any], unwound: bool) -> None:
        host.worker = None
        if task.done():
            host.tasks.pop(task, None)
            host.serial.pop(task, None)
        if unwound or host.state == "dead":
            return
        finished, host.finished = host.finished, []
        for run, box in finished:
            if host.state == "dead":
                break
            self._deliver(host, run, box)

    def _kill_actor(self, host: _Host) -> None:
        actor_id, incarnation = host.spec.actor_id, host.incarnation
        if self._hosts.get(actor_id) is host:
            del self._hosts[actor_id]
        self._dispose(host)
        self.events.actor_died(actor_id, incarnation, WorkerCrashedError(
            "the simulator killed the actor's worker"
        ))

    def _dispose(self, host: _Host) -> None:
        """The incarnation is gone: end whatever of its user code is paused, drop the rest."""
        if host.state == "dead" and host.instance is None:
            return
        host.state = "dead"
        host.queues.clear()
        paused = [w for w in self._workers if w.owner is host and w.wait is not None]
        for worker in paused:
            self._unwind(worker)
        loop = host.loop
        if loop is not None and not loop.is_closed():
            loop._sim_dropped = True  # type: ignore[attr-defined]
            self._launch(functools.partial(_drop_loop, loop), _ignore,
                         f"{host.label} dropped", host, unwind=True)
        host.worker = None
        host.instance = None
        host.tasks.clear()
        host.serial.clear()
        host.running.clear()
        host.finished = []

    def _cancel(self, id_: int, force: bool) -> None:
        task = self._pending.pop(id_, None)
        if task is not None:
            spec = task.run.spec
            self.events.task_finished(_error_outcome(id_, spec.attempt, TaskCancelledError(),
                                                     spec.name))
            return
        task = self._started.get(id_)
        if task is not None:
            ctx = task.ctx
            if ctx is None:
                return
            ctx.cancelled = True
            if force and task.worker is not None and task.worker.wait is not None:
                self._unwind(task.worker)
                self._started.pop(id_, None)
                spec = task.run.spec
                self.events.task_finished(_error_outcome(id_, spec.attempt,
                                                         TaskCancelledError(), spec.name))
                return
            if task.loop is not None:
                for t in asyncio.all_tasks(task.loop):
                    t.cancel()
            elif ctx.wakeup is not None:
                ctx.wakeup()
            return
        for host in self._hosts.values():
            for queue in host.queues.values():
                for run in queue:
                    if run.spec.call_id == id_:
                        host.cancelled.add(id_)
                        return
            running = host.running.get(id_)
            if isinstance(running, asyncio.Task):
                running.cancel()
                return

    def _reply(self, spec: CallSpec, outcome: Outcome) -> None:
        self.events.call_finished(outcome)

    # == reports ===========================================================================

    def _deadlock_report(self) -> str:
        producers: dict[int, str] = {}
        for task in [*self._pending.values(), *self._started.values()]:
            for rid in task.run.spec.return_ids:
                producers[rid] = f"task {task.label}"
        for host in self._hosts.values():
            for queue in host.queues.values():
                for run in queue:
                    for rid in run.spec.return_ids:
                        producers[rid] = (
                            f"{host.label}.{run.spec.method} (queued on {host.label})"
                        )
        lines = []
        driver = self._driver_wait
        if driver is not None:
            lines.append("driver waits for " + self._waited(driver.ids, producers))
        for worker in self._workers:
            if worker.wait is not None:
                waits = self._waited(worker.wait.ids, producers) if worker.wait.ids else (
                    "its coroutine"
                )
                lines.append(f"{worker.label} waits for {waits}")
        for host in self._hosts.values():
            busy = [w.label for w in self._workers if w.owner is host and w.wait is not None]
            if busy and host.queues:
                lines.append(f"{host.label} is busy with {', '.join(busy)}; calls queued behind")
        return "deadlock: nothing can run.\n" + "\n".join(f"  {line}" for line in lines)

    @staticmethod
    def _waited(ids: list[int], producers: dict[int, str]) -> str:
        return ", ".join(producers.get(i, f"object {id_hex(i)}") for i in ids) or "nothing"

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


def _DRIVER() -> None:
    """Never called: the step that ends the driver's wait."""


def _ignore(unwound: bool) -> None:
    pass


def _drop_loop(loop: SimLoop) -> None:
    """Cancel a dead actor's coroutines and let them unwind (a blocking get raises)."""
    try:
        for task in asyncio.all_tasks(loop):
            task.cancel()
        for _ in range(1000):
            loop.fire_due()
            handles = loop.ready_handles()
            if not handles:
                break
            loop.take(handles[0])
            run_handle(loop, handles[0])
    finally:
        loop.close()


def _error_outcome(id_: int, attempt: int, exc: BaseException, name: str) -> Outcome:
    error, _ = pack_error(exc, name, False)
    return Outcome(id_, attempt, error=error)


def _name_of(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
