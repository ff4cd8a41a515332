"""Running tasks and actors as steps: starting them, their jobs, their replies, killing them.

Each step the controller picks (a task starts, an actor's constructor or a call runs, an
async actor's coroutine resumes) is launched here on a worker
(:mod:`actorlib.backends.sim.threads`) and reported to the core when it ends; the faults
that hit a task or an actor (its worker killed, a reply dropped) are applied here too.
:class:`SimTask` and :class:`SimHost` are what the simulator holds of a task and of one
incarnation of an actor. Separate because this is the backend's execution of user code,
while the controller (:mod:`actorlib.backends.sim.backend`) only decides what runs when.
"""

from __future__ import annotations

import _thread
import asyncio
import collections
import inspect
from types import AsyncGeneratorType, CoroutineType, GeneratorType
from typing import Any

from actorlib.backends.base import ObjectStore
from actorlib.backends.runner.streaming import Gates, exactly, is_generator
from actorlib.backends.runner.user_code import (
    PID,
    CodeCache,
    build_args,
    env_vars,
    leave_forked_child,
    pack_error,
    pack_results,
)
from actorlib.backends.sim.choosing import Choosing
from actorlib.backends.sim.generators import CallLoop, SimProducer
from actorlib.backends.sim.loop import Clock, SimLoop, run_handle, task_of
from actorlib.backends.sim.store import SimStore
from actorlib.backends.sim.threads import Posting, SimWorker, Unwind, Wait
from actorlib.core.actor_exit import (
    forget_shutdown,
    has_shutdown,
    register_shutdown,
    run_shutdown,
)
from actorlib.core.builtin_methods import builtin
from actorlib.core.execution_context import ExecutionContext, current_execution
from actorlib.core.ids import id_hex
from actorlib.core.records import ActorStart, CallRun, Outcome, TaskRun
from actorlib.core.specs import DRIVER_CALLER, CallSpec
from actorlib.exceptions import TaskCancelledError, WorkerCrashedError

__all__ = ["NODE_ID", "Box", "Running", "SimHost", "SimTask", "error_outcome", "node_name"]

#: Read once: CPython 3.11 looks a C method up on its slow path at each
#: ``current_execution.set(...)``, and every task does it twice.
_enter_execution = current_execution.set
_leave_execution = current_execution.reset

NODE_ID = "sim-node-0"  # the first node: the driver's

#: What ``is_generator`` asks of a result, asked inline on every task and call.
_GENERATORS = (GeneratorType, AsyncGeneratorType)


def node_name(index: int) -> str:
    return f"sim-node-{index}"


class Box:
    """What a job produced: its outcome, and the result kept alive until it is out."""

    __slots__ = ("ok", "outcome", "result")

    def __init__(self) -> None:
        self.outcome: Outcome | None = None
        self.result: Any = None
        self.ok = False


class CallJob:
    """A sync actor's call as a job of a worker (``_call_job``, ``_call_done``)."""

    __slots__ = ("box", "group", "host", "run")

    def __init__(self, host: SimHost, run: CallRun, group: str) -> None:
        self.host = host
        self.run = run
        self.group = group
        self.box = Box()


class SimTask(Box):
    """A task of the run, and (as a :class:`Box`) what its job produced: one object a
    task, not two."""

    __slots__ = ("abandoned", "age", "ctx", "item", "label", "loop", "run", "worker")

    def __init__(self, run: TaskRun, label: str) -> None:
        self.outcome = None
        self.result = None
        self.ok = False
        self.run = run
        self.label = label
        #: Its "starts" step, made once (listed at every turn until it starts), and that
        #: step's age (given at the first turn that lists it).
        self.item: Any = None
        self.age: int | None = None
        #: Ended for the core while its preempted worker still runs (force-cancelled,
        #: killed): what it returns later is dropped.
        self.abandoned = False
        self.worker: SimWorker | None = None
        self.ctx: ExecutionContext | None = None
        self.loop: SimLoop | None = None  # an ``async def`` task's own loop


class SimHost:
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
        #: call id -> its step (made once, when queued): listed at every turn it heads
        #: its caller's queue, until it starts.
        self.items: dict[int, Any] = {}
        self.running: dict[int, Any] = {}  # call id -> worker (sync) or asyncio task
        self.runs: dict[int, CallRun] = {}  # call id -> the call, while it runs
        #: call id -> its context, while it runs (a cancel raises its ``is_canceled()``)
        self.contexts: dict[int, ExecutionContext] = {}
        self.limits = {"": spec.max_concurrency, **(spec.concurrency_groups or {})}
        self.busy = dict.fromkeys(self.limits, 0)
        self.worker: SimWorker | None = None  # running the constructor or an async step
        # A sync actor's one worker, which runs all its jobs (``Baton._launch``'s ``pin``);
        # threaded and async actors are not pinned (None).
        self.pinned: SimWorker | None = None
        self.pins = not spec.is_async and spec.max_concurrency == 1 and not (
            spec.concurrency_groups)
        self.loop = SimLoop(clock) if spec.is_async else None
        self.tasks: dict[asyncio.Task[Any], str] = {}  # coroutine -> its name in traces
        self.serial: dict[asyncio.Task[Any], int] = {}
        #: coroutine -> its "resumes" step (made once, kept while it lives)
        self.step_items: dict[asyncio.Task[Any], Any] = {}
        self.finished: list[tuple[CallRun, Box]] = []
        self.cancelled: set[int] = set()
        self.ctor_box = Box()
        self.names: dict[str, str] = {}  # method -> ``Class.method`` (see ``name_of``)
        self.seq = 0  # its place in the run's ``_hosts`` (``Running._add_host``)

    def context(self, call_id: int | None = None, method: str = "") -> ExecutionContext:
        # (Positional, in the order of its fields: keywords cost every call.)
        ctx = ExecutionContext(
            self.start.node_id, call_id, self.spec.actor_id, self.start.gpu_ids,
            self.spec.namespace, False, None, self.spec, self.incarnation, method,
            None if self.instance is None else type(self.instance),
        )
        if call_id is not None:
            self.contexts[call_id] = ctx
        return ctx

    def name_of(self, method: str) -> str:
        """``Class.method``, as errors and results name the call (made once a method)."""
        name = self.names[method] = f"{self.spec.cls.name}.{method}"
        return name

    def group_of(self, spec: CallSpec) -> str:
        if spec.concurrency_group is not None:
            return spec.concurrency_group
        groups = self.spec.method_groups
        return groups.get(spec.method, "") if groups else ""


class Running(Choosing):
    """The tasks and actor incarnations of the run, and the steps that run their code."""

    events: Posting
    store: ObjectStore
    # The same store, for what only the simulator asks of it, and read on every task's
    # and call's path: CPython 3.11 reads ``store`` on its slow path (it shadows
    # ``Backend.store``, a class attribute).
    sim_store: SimStore
    nodes: list[str]  # the nodes alive, the driver's first

    def __init__(self) -> None:
        super().__init__()
        self.code = CodeCache()
        self._pending: dict[int, SimTask] = {}  # task id -> not started
        #: task id -> its "starts" step, for each task of ``_pending`` in the same order:
        #: a turn lists them with no attribute read per task (changed with ``_pending``).
        self._pending_items: dict[int, Any] = {}
        self._started: dict[int, SimTask] = {}  # task id -> started, not finished
        self._hosts: dict[int, SimHost] = {}  # actor id -> current incarnation
        # The hosts a turn asks for steps (``Steps._runnable``), so an idle one costs
        # nothing: every async host (its loop may become ready anywhere) and the sync
        # hosts that may have a step (new, or a call queued), dropped by the turn that
        # finds them idle; in the order of ``_hosts`` (``seq``) once ``_listing_sorted``.
        # ``_async_hosts``: the async ones alone, in that order. Only hosts of ``_hosts``.
        self._listing: dict[SimHost, None] = {}
        self._listing_sorted = True
        self._async_hosts: dict[SimHost, None] = {}
        self._host_seq = 0
        self._labels: dict[int, str] = {DRIVER_CALLER: "driver"}
        self._counts: dict[str, int] = {}  # (a dict: a Counter's item update is slower)
        #: Replies held back by ``delay_reply`` faults: key -> (step name, delivery).
        self._delayed: dict[tuple[str, int], tuple[str, Any]] = {}
        self._delays = 0
        self.gates = Gates()  # the streams of generator tasks and calls, by producer
        self._call_loops: set[CallLoop] = set()  # async generators of sync actors' calls
        # A task's job and its end, bound once (every task is launched with them; reading
        # a bound method off this many-attribute object is a slow lookup each time).
        self._task_steps = (self._task_job, self._task_done)
        self._call_steps = (self._call_job, self._call_done)  # (a sync actor's call's)

    def _new_label(self, name: str) -> str:
        count = self._counts[name] = self._counts.get(name, 0) + 1
        return f"{name}#{count}"

    def _caller(self, caller_id: int) -> str:
        label = self._labels.get(caller_id)
        return label if label is not None else f"caller {id_hex(caller_id)}"

    def _start_task(self, task_id: int) -> None:
        """The step of a task waiting to start (``Steps._pend``), which names it by id."""
        task = self._started[task_id] = self._pending.pop(task_id)
        del self._pending_items[task_id]
        job, done = self._task_steps
        self._launch(job, done, task, f"task {task.label}", task, task)

    def _task_job(self, task: SimTask) -> None:
        run = task.run
        spec = run.spec
        # (Positional, in the order of its fields: keywords cost every task.)
        ctx = task.ctx = ExecutionContext(
            run.node_id, spec.task_id, None, run.gpu_ids, spec.namespace, False, None, spec,
        )
        token = _enter_execution(ctx)
        box: Box = task
        failure: BaseException | None = None
        forks = PID.forks
        try:
            try:
                fn = self.code.loaded.get(spec.function.id) or self.code.load(spec.function)
                ctx.code = fn
                args, kwargs = build_args(spec.args, run.deps)
                if spec.env_vars:
                    with env_vars(spec.env_vars):
                        result = self._call_task(task, fn, args, kwargs)
                else:  # the common case, without a context manager's cost on every task
                    result = self._call_task(task, fn, args, kwargs)
                box.result = result
            except Unwind:
                raise
            except BaseException as exc:
                failure = exc
            if PID.forks != forks:  # a process the task forked, come back out of it
                leave_forked_child(failure)
            if ctx.cancelled:
                failure, box.result = TaskCancelledError(f"Task {spec.name} was cancelled."), None
            if failure is None:
                try:  # (``_succeeded``, without its frame: every task comes here)
                    box.outcome = Outcome(spec.task_id, spec.attempt, pack_results(
                        box.result, spec.num_returns, spec.name, self.sim_store), None, False,
                        PID.value)  # (values, error, retryable, pid: no keywords, as above)
                except Exception as exc:
                    failure = exc
            if failure is not None:
                error, retryable = pack_error(failure, spec.name, spec.retry_exceptions)
                box.outcome = Outcome(
                    spec.task_id, spec.attempt, error=error, retryable=retryable, pid=PID.value
                )
        finally:
            _leave_execution(token)

    def _call_task(self, task: SimTask, fn: Any, args: Any, kwargs: Any) -> Any:
        # (Straight to ``fn`` unless preemption is on: one frame fewer on every task.)
        result = fn(*args, **kwargs) if self._preempt <= 0 else self._user(fn, *args, **kwargs)
        if isinstance(result, CoroutineType):  # (``inspect.iscoroutine``, one frame fewer)
            result = self._run_coroutine(task, result)
        spec = task.run.spec
        if spec.generator or isinstance(result, _GENERATORS):  # (``is_generator``)
            result = self._generated(spec, spec.task_id, spec.name, result, task)
        return result

    def _generated(self, spec: Any, work_id: int, name: str, result: Any,
                   holder: SimTask | CallLoop) -> Any:
        """A generator's result, driven here: its items out one step at a time
        (``num_returns="streaming"``/``"dynamic"``), or exactly ``num_returns`` values."""
        if not spec.generator:
            return exactly(result, spec.num_returns, name, self.store)
        producer = SimProducer(self, spec, work_id, name)
        producer.check(result)
        if inspect.isasyncgen(result):
            return self._run_coroutine(holder, producer.drain_async(result))
        return producer.drain(result)

    def _run_coroutine(self, task: SimTask | CallLoop, coro: Any) -> Any:
        """An ``async def`` task (or an async generator): its own loop, stepped here;
        paused while nothing is ready."""
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
                    self._park(worker, Wait(lambda: bool(loop.ready_handles()), None, []))
                    continue
                loop.take(handles[0])
                self._user(run_handle, loop, handles[0])
            return runner.result()
        except Unwind:
            runner.cancel()
            loop._sim_dropped = True  # type: ignore[attr-defined]
            raise
        finally:
            task.loop = None
            if runner.done():
                loop.close()

    def _task_done(self, task: SimTask, unwound: bool) -> None:
        spec = task.run.spec
        self._started.pop(spec.task_id, None)
        task.worker = None
        if unwound or task.abandoned:
            return
        box: Box = task
        outcome = box.outcome
        assert outcome is not None
        if not self._reply_on_controller:  # no reply is dropped or delayed: the fast path
            self._posted = True  # (what ``self.events`` does, without its extra frame)
            self._raw_events.task_finished(outcome)
            box.result = None
            return
        if self._choose_fault(self.faults.drop_before_reply,
                              f"worker running {task.label} dies before its reply"):
            self.events.task_crashed(spec.task_id, spec.attempt, WorkerCrashedError(
                "the simulator killed the worker before it replied"
            ))
            box.result = None
            return
        self._send(f"task {task.label}", self.events.task_finished, outcome, box)

    def _kill_task(self, task: SimTask, why: str = "the simulator killed the worker running it",
                   ) -> None:
        spec = task.run.spec
        worker = task.worker
        if worker is not None and worker.detached and self._abandon(worker):
            task.abandoned = True  # preempted: it unwinds once back in the simulator's code
        elif worker is not None:
            self._unwind(worker)
        self._started.pop(spec.task_id, None)
        self.events.task_crashed(spec.task_id, spec.attempt, WorkerCrashedError(why))

    def _construct(self, host: SimHost) -> None:
        host.state = "constructing"
        self._launch(self._ctor_job, self._ctor_done, host, f"{host.label}.__init__", host, host,
                     pin=host if host.pins else None)

    def _ctor_job(self, host: SimHost) -> None:
        spec = host.spec
        box = host.ctor_box = Box()
        token = current_execution.set(host.context())
        forks = PID.forks
        try:
            cls = self.code.load(spec.cls)
            args, kwargs = build_args(spec.args, host.start.deps)
            with env_vars(spec.env_vars):
                host.instance = self._user(cls, *args, **kwargs)
            if PID.forks != forks:  # a process the constructor forked, come back out
                leave_forked_child(None)
            register_shutdown(spec.actor_id, host.instance)
            box.ok = True
        except Unwind:
            raise
        except BaseException as exc:
            if PID.forks != forks:
                leave_forked_child(exc)
            error, _ = pack_error(exc, f"{spec.cls.name}.__init__", False)
            box.outcome = Outcome(0, 0, error=error)
        finally:
            current_execution.reset(token)

    def _stop_actor(self, host: SimHost, force: bool) -> None:
        """End ``host``: at once if killed; else (its handles gone, its calls done) after
        its ``__ray_shutdown__``, which runs as its calls do, on its worker."""
        if force or host.state != "ready" or not has_shutdown(host.spec.actor_id):
            self._dispose(host)
            return
        self._launch(self._shutdown_job, self._shutdown_done, host,
                     f"{host.label}.__ray_shutdown__", host, host,
                     pin=host if host.pins else None)

    def _shutdown_job(self, host: SimHost) -> None:
        token = current_execution.set(host.context())
        try:
            run_shutdown(host.spec.actor_id)
        finally:
            current_execution.reset(token)

    def _shutdown_done(self, host: SimHost, unwound: bool) -> None:
        self._dispose(host)

    def _ctor_done(self, host: SimHost, unwound: bool) -> None:
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

    def _start_call(self, host: SimHost, caller: int) -> None:
        queue = host.queues[caller]
        run = queue.popleft()
        if not queue:
            del host.queues[caller]
        spec = run.spec
        item = host.items.pop(spec.call_id, None)
        if spec.call_id in host.cancelled:  # its cancellation is reported already
            host.cancelled.discard(spec.call_id)
            return
        group = host.group_of(spec) if host.spec.concurrency_groups else ""
        if group not in host.limits:
            known = ", ".join(sorted(host.spec.concurrency_groups or {})) or "none"
            self._reply(spec, error_outcome(spec.call_id, spec.attempt, ValueError(
                f"concurrency group {group!r} is not one of actor {host.spec.cls.name}'s "
                f"concurrency_groups ({known})"), spec.method))
            return
        host.busy[group] += 1
        host.runs[spec.call_id] = run
        name = item[1] if item is not None else (
            f"{host.label}.{spec.method} from {self._caller(caller)}"
        )
        if host.loop is None:
            # (One object for the job: no closure, no binding function made for a call.)
            job, done = self._call_steps
            self._launch(job, done, CallJob(host, run, group), name, host,
                         pin=host if host.pins else None)
            return
        loop = host.loop
        box = Box()
        task = loop.create_task(self._call_async(host, run, box, group))
        host.tasks[task] = name
        host.running[spec.call_id] = task
        self._async_step(host, task)

    def _succeeded(self, spec: Any, work_id: int, result: Any, name: str) -> Outcome:
        """The outcome of a step that returned ``result``, packed as the real runners pack
        it (a generator's items are out already: see :class:`SimProducer`)."""
        values = pack_results(result, spec.num_returns, name, self.store)
        return Outcome(work_id, spec.attempt, values=values, pid=PID.value)

    def _call_job(self, job: CallJob) -> None:
        host, run, box = job.host, job.run, job.box
        spec = run.spec
        host.running[spec.call_id] = self._by_ident[_thread.get_ident()]  # its worker
        token = _enter_execution(host.context(spec.call_id, spec.method))
        name = host.names.get(spec.method) or host.name_of(spec.method)
        forks = PID.forks
        try:
            try:
                method = getattr(host.instance, spec.method)
            except AttributeError as exc:
                method = builtin(spec.method, exc)
            args, kwargs = build_args(spec.args, run.deps)
            if host.spec.env_vars:
                with env_vars(host.spec.env_vars):
                    box.result = self._user(method, *args, **kwargs)
            elif self._preempt <= 0:  # the common case: no context manager, no extra frame
                box.result = method(*args, **kwargs)
            else:
                box.result = self._user(method, *args, **kwargs)
            if spec.generator or isinstance(box.result, _GENERATORS):  # (``is_generator``)
                box.result = self._call_generated(spec, name, box.result)
            if PID.forks != forks:  # a process the call forked, come back out of it
                leave_forked_child(None)
            # (``_succeeded``, without its frame: every call comes here)
            box.outcome = Outcome(spec.call_id, spec.attempt, pack_results(
                box.result, spec.num_returns, name, self.sim_store), None, False,
                PID.value)  # (values, error, retryable, pid: positional, as in ``_task_job``)
        except Unwind:
            raise
        except BaseException as exc:
            if PID.forks != forks:
                leave_forked_child(exc)
            error, retryable = pack_error(exc, name, spec.retry_exceptions)
            box.outcome = Outcome(
                spec.call_id, spec.attempt, error=error, retryable=retryable, pid=PID.value
            )
        finally:
            _leave_execution(token)

    def _call_generated(self, spec: CallSpec, name: str, result: Any) -> Any:
        """A sync or threaded actor's generator call (an async generator on a loop of its
        own, made for the call)."""
        holder = CallLoop(self._by_ident.get(_thread.get_ident()))
        self._call_loops.add(holder)
        try:
            return self._generated(spec, spec.call_id, name, result, holder)
        finally:
            self._call_loops.discard(holder)

    def _call_done(self, job: CallJob, unwound: bool) -> None:
        host, run, box, group = job.host, job.run, job.box, job.group
        host.running.pop(run.spec.call_id, None)
        host.runs.pop(run.spec.call_id, None)
        host.contexts.pop(run.spec.call_id, None)
        if host.state == "dead" or unwound:
            return
        host.busy[group] -= 1
        self._deliver(host, run, box)

    def _deliver(self, host: SimHost, run: CallRun, box: Box) -> None:
        outcome = box.outcome
        assert outcome is not None
        if not self._reply_on_controller:  # no reply is dropped or delayed: the fast path
            self._posted = True  # (what ``self.events`` does, without its extra frame)
            self._raw_events.call_finished(outcome)
            box.result = None
            return
        if self._choose_fault(self.faults.drop_before_reply,
                              f"{host.label} dies before replying to {run.spec.method}"):
            self._kill_actor(host)
            return
        self._send(f"{host.label}.{run.spec.method} to {self._caller(run.spec.caller_id)}",
                   self.events.call_finished, outcome, box)

    def _send(self, what: str, report: Any, outcome: Outcome, box: Box) -> None:
        """Report ``outcome`` to the core now, or (a ``delay_reply`` fault) hold it back
        as a step of its own, delivered when the scheduler picks it."""
        if not self._choose_fault(self.faults.delay_reply, f"reply of {what} delayed"):
            report(outcome)
            box.result = None
            return
        self._delays += 1

        def deliver() -> None:
            report(outcome)
            box.result = None  # kept alive until its reply is out

        self._delayed[("reply", self._delays)] = (f"reply of {what} delivered", deliver)

    async def _call_async(self, host: SimHost, run: CallRun, box: Box, group: str) -> None:
        spec = run.spec
        name = host.names.get(spec.method) or host.name_of(spec.method)
        current_execution.set(host.context(spec.call_id, spec.method))
        forks = PID.forks
        try:
            try:
                method = getattr(host.instance, spec.method)
            except AttributeError as exc:
                method = builtin(spec.method, exc)
            args, kwargs = build_args(spec.args, run.deps)
            result = method(*args, **kwargs)
            if inspect.iscoroutine(result):  # not asyncio's: it takes generators too
                result = await result
            if spec.generator or is_generator(result):
                if spec.generator:
                    result = await SimProducer(self, spec, spec.call_id, name).drain_async(
                        result)
                else:
                    result = exactly(result, spec.num_returns, name, self.store)
            box.result = result
            if PID.forks != forks:  # a process the call forked, come back out of it
                leave_forked_child(None)
            box.outcome = self._succeeded(spec, spec.call_id, result, name)
        except Unwind:
            raise
        except BaseException as exc:
            if PID.forks != forks:
                leave_forked_child(exc)
            error, retryable = pack_error(exc, name, spec.retry_exceptions)
            box.outcome = Outcome(
                spec.call_id, spec.attempt, error=error, retryable=retryable, pid=PID.value
            )
        if host.state != "dead":
            host.running.pop(spec.call_id, None)
            host.runs.pop(spec.call_id, None)
            host.contexts.pop(spec.call_id, None)
            host.busy[group] -= 1
            host.finished.append((run, box))

    def _async_step(self, host: SimHost, task: asyncio.Task[Any]) -> None:
        loop = host.loop
        assert loop is not None
        self._launch(self._step_job, self._step_done, (loop, host, task),
                     host.tasks.get(task, host.label), host, host)

    def _step_job(self, step: tuple[SimLoop, SimHost, asyncio.Task[Any]]) -> None:
        loop, _, task = step
        for handle in loop.ready_handles():
            if task_of(handle) is task:
                loop.take(handle)
                self._user(run_handle, loop, handle)
                return

    def _step_done(self, step: tuple[SimLoop, SimHost, asyncio.Task[Any]], unwound: bool,
                   ) -> None:
        _, host, task = step
        host.worker = None
        if task.done():
            host.tasks.pop(task, None)
            host.serial.pop(task, None)
            host.step_items.pop(task, None)
        if unwound or host.state == "dead" or not host.finished:
            return
        finished, host.finished = host.finished, []
        for run, box in finished:
            if host.state == "dead":
                break
            self._deliver(host, run, box)

    def _kill_actor(self, host: SimHost, why: str = "the simulator killed the actor's worker",
                    ) -> None:
        actor_id, incarnation = host.spec.actor_id, host.incarnation
        if self._hosts.get(actor_id) is host:
            del self._hosts[actor_id]
        self._dispose(host)
        self.events.actor_died(actor_id, incarnation, WorkerCrashedError(why))

    def _lose_node(self, node: str) -> None:
        """Every worker of ``node`` dies at once: its tasks crash (started or not), its
        actors die, the values its store held are lost; then the node is gone."""
        self.nodes.remove(node)
        why = f"the simulator lost node {node}"
        for task in [t for t in self._started.values() if t.run.node_id == node]:
            self._kill_task(task, why)
        for task in [t for t in self._pending.values() if t.run.node_id == node]:
            spec = task.run.spec
            del self._pending[spec.task_id]
            del self._pending_items[spec.task_id]
            self.events.task_crashed(spec.task_id, spec.attempt, WorkerCrashedError(why))
        for host in [h for h in self._hosts.values() if h.start.node_id == node]:
            self._kill_actor(host, why)
        paths = self.sim_store.on_node(node)
        if paths:
            self.events.objects_lost(self.sim_store.lose(paths), why)
        self.events.node_removed(node)

    def _lose_object(self, paths: list[str]) -> None:
        """A value in a node's store vanishes (its bytes are gone; its refs live on)."""
        self.events.objects_lost(self.sim_store.lose(set(paths)), "the simulator lost it")

    def _add_host(self, host: SimHost) -> None:
        """``host`` is the actor's current incarnation (in ``_hosts`` already)."""
        self._host_seq += 1
        host.seq = self._host_seq  # the newest: its place in ``_listing`` is the last
        self._listing[host] = None
        if host.loop is not None:
            self._async_hosts[host] = None

    def _relist(self, host: SimHost) -> None:
        """A call was queued on the sync ``host``: it may have a step again."""
        listing = self._listing
        if host not in listing:
            listing[host] = None
            if host.seq != self._host_seq:  # not the newest: out of order now
                self._listing_sorted = False

    def _dispose(self, host: SimHost) -> None:
        """The incarnation is gone: end whatever of its user code is paused, drop the rest."""
        forget_shutdown(host.spec.actor_id)
        self._async_hosts.pop(host, None)
        self._listing.pop(host, None)
        if host.pinned is not None:
            self._unpin(host)
        if host.state == "dead" and host.instance is None:
            # Its constructor failed (or never ran): no coroutine ever ran on its loop,
            # which is closed here, not left to the garbage collector's warning.
            loop = host.loop
            if loop is not None and not loop.is_closed() and not asyncio.all_tasks(loop):
                loop.close()
            return
        host.state = "dead"
        host.queues.clear()
        host.items.clear()
        paused = [w for w in self._workers if w.owner is host and w.wait is not None]
        for worker in paused:
            self._unwind(worker)
        loop = host.loop
        if loop is not None and not loop.is_closed():
            loop._sim_dropped = True  # type: ignore[attr-defined]
            self._launch(_drop_loop, _ignore, loop, f"{host.label} dropped", host, unwind=True)
        host.worker = None
        host.instance = None
        host.tasks.clear()
        host.serial.clear()
        host.step_items.clear()
        host.running.clear()
        host.runs.clear()
        host.contexts.clear()
        host.finished = []

    def _cancel(self, id_: int, force: bool) -> None:
        task = self._pending.pop(id_, None)
        if task is not None:
            del self._pending_items[id_]
            spec = task.run.spec
            self.events.task_finished(error_outcome(id_, spec.attempt, TaskCancelledError(),
                                                     spec.name))
            return
        task = self._started.get(id_)
        if task is not None:
            ctx = task.ctx
            if ctx is None:
                return
            ctx.cancelled = True
            worker = task.worker
            if worker is not None and worker.detached:
                # Preempted: KeyboardInterrupt in its user code, as on the thread backend
                # (or, out of it, when it rejoins the run); forced, it also ends for
                # everyone now (its thread may sit in a long C call), never runs user
                # code again, and what it returns later is dropped.
                if force and self._abandon(worker):
                    task.abandoned = True
                    self._started.pop(id_, None)
                    spec = task.run.spec
                    self.events.task_finished(error_outcome(id_, spec.attempt,
                                                             TaskCancelledError(), spec.name))
                    return
                if not force and self._interrupt(worker):
                    return
                # (It rejoined the run meanwhile: paused, it is cancelled as below.)
            if force and task.worker is not None and task.worker.wait is not None:
                self._unwind(task.worker)
                self._started.pop(id_, None)
                spec = task.run.spec
                self.events.task_finished(error_outcome(id_, spec.attempt,
                                                         TaskCancelledError(), spec.name))
                return
            if task.loop is not None:
                for t in asyncio.all_tasks(task.loop):
                    t.cancel()
            elif ctx.wakeup is not None:
                ctx.wakeup()
            return
        # An actor call: one still queued ends now (not after the calls ahead of it) and
        # is skipped when it comes up; a running one is not interrupted unless its actor
        # is async (as on every backend, see ActorHost.cancel).
        for host in self._hosts.values():
            for queue in host.queues.values():
                for run in queue:
                    if run.spec.call_id == id_:
                        host.cancelled.add(id_)
                        self._reply(run.spec, error_outcome(
                            id_, run.spec.attempt, TaskCancelledError(), run.spec.method))
                        return
            ctx = host.contexts.get(id_)
            if ctx is not None:
                ctx.cancelled = True
            running = host.running.get(id_)
            if isinstance(running, asyncio.Task):
                running.cancel()
                return
            if ctx is not None:
                return

    def _reply(self, spec: CallSpec, outcome: Outcome) -> None:
        self.events.call_finished(outcome)


def _ignore(loop: SimLoop, unwound: bool) -> None:
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


def error_outcome(id_: int, attempt: int, exc: BaseException, name: str) -> Outcome:
    error, _ = pack_error(exc, name, False)
    return Outcome(id_, attempt, error=error)
