"""The thread backend: tasks on a pool of threads, each actor on threads of its own.

Good for I/O-bound work, for code that releases the GIL (numpy, most C extensions), and
for tests and notebooks where start-up must be instant. Semantics are the same as on
the process backend: arguments and results are pickled (a task never mutates the
caller's objects), code is unpickled once per worker, objects are read-only.

Limits that come with sharing one process: ``runtime_env["env_vars"]`` is applied to the
process environment while the task runs, visible to code running beside it; a running task can
be interrupted by ``cancel`` only between Python bytecodes (a C call such as ``time.sleep``
ends first). ``force=True`` cannot kill a thread either: it ends the task at once for the
caller and the scheduler (its ref fails, its CPU is free) and abandons the interrupted
thread, whose result is discarded whenever it returns.
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import functools
import queue
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from actorlib.backends.base import Backend, BackendConfig, CoreEvents
from actorlib.backends.execution import (
    CodeCache,
    build_args,
    env_vars,
    local_node_resources,
    pack_error,
    pack_results,
    run_sync_or_async,
)
from actorlib.backends.output import thread_backend_started, thread_backend_stopped
from actorlib.core.execution_context import ExecutionContext, current_execution
from actorlib.core.exiting import exiting
from actorlib.core.loop import new_event_loop
from actorlib.core.records import ActorStart, CallRun, NodeInfo, Outcome, TaskRun
from actorlib.core.specs import CallSpec
from actorlib.exceptions import ActorDiedError, TaskCancelledError

_STOP = object()
#: How long ``stop`` waits for threads still running user code: in all, not per thread.
STOP_GRACE_S = 10.0
#: The same at interpreter exit (after Ctrl-C, say), after which they are abandoned.
EXIT_GRACE_S = 0.5


def _raise_in_thread(thread_id: int, exc_type: type[BaseException]) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc_type)
    )


class _LoopHolder:
    """A thread's own event loop for ``async def`` tasks, made on first use."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self.current_task: asyncio.Task[Any] | None = None

    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = new_event_loop()
        return self._loop

    def close(self) -> None:
        if self._loop is not None:
            self._loop.close()
            self._loop = None


class _TaskWorker:
    """One pool thread; runs one task at a time, then any queued behind it."""

    def __init__(self, backend: ThreadBackend, index: int) -> None:
        self.backend = backend
        self.jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.loops = _LoopHolder()
        self.running: int | None = None  # task id, guarded by ``lock``
        self.current: TaskRun | None = None  # the running task's run, under ``lock``
        self.context: ExecutionContext | None = None  # the running task's, under ``lock``
        # Under ``lock``: tasks given to this thread and cancelled before they started.
        self.cancelled_early: set[int] = set()
        self.lock = threading.Lock()
        # Guarded by ``lock``: tasks queued behind the current one (TaskRun.follows), and
        # whether the thread has work (so a task may queue behind it).
        self.followers: collections.deque[TaskRun] = collections.deque()
        self.busy = False
        self.thread = threading.Thread(
            target=self._run, name=f"actorlib-task-{index}", daemon=True
        )
        self.thread.start()

    def _run(self) -> None:
        try:
            while True:
                run = self.jobs.get()
                if run is _STOP:
                    return
                if not self.backend.claimed(run):  # the core took it back meanwhile
                    self.backend._owner.pop(run.spec.task_id, None)
                    run = self._next_follower()
                while run is not None:
                    # ``result`` stays alive until the outcome is out: refs inside it
                    # must not be dropped before the core holds them for the outcome.
                    outcome, result = self._execute(run)
                    # The next task is taken before the outcome goes out: whoever hears
                    # of the outcome may rely on that task having started (no recall).
                    run = self._next_follower()
                    self.backend.events.task_finished(outcome)
                    del outcome, result
                self.backend._idle.append(self)
        finally:
            self.loops.close()

    def _next_follower(self) -> TaskRun | None:
        """The next queued task this thread may start (one the core did not take back)."""
        backend = self.backend
        while True:
            with self.lock:
                run = self.followers.popleft() if self.followers else None
                if run is None:
                    self.busy = False
                    return None
            if backend.claimed(run):
                return run
            backend._owner.pop(run.spec.task_id, None)

    def _execute(self, run: TaskRun) -> tuple[Outcome, Any]:
        backend = self.backend
        spec = run.spec
        ctx = ExecutionContext(
            run.node_id, task_id=spec.task_id, gpu_ids=run.gpu_ids, namespace=spec.namespace,
            spec=spec,
        )
        token = current_execution.set(ctx)
        result: Any = None
        with self.lock:
            self.running = spec.task_id
            self.current = run
            self.context = ctx
            if spec.task_id in self.cancelled_early:
                self.cancelled_early.discard(spec.task_id)
                ctx.cancelled = True
        failure: BaseException | None = None
        try:
            # A cancel may raise KeyboardInterrupt anywhere until ``running`` is cleared
            # under the lock, including inside the except clause: the outer try catches
            # that too, so every task ends with exactly one outcome.
            try:
                if ctx.cancelled:
                    raise TaskCancelledError(f"Task {spec.name} was cancelled.")
                fn = backend.code.load(spec.function)
                args, kwargs = build_args(spec.args, run.deps)
                with env_vars(spec.env_vars):
                    result = run_sync_or_async(fn, args, kwargs, self.loops)
            except BaseException as exc:
                failure = exc
            finally:
                with self.lock:
                    self.running = None
                    self.current = None
        except KeyboardInterrupt as exc:
            failure = exc
            self.running = None
            self.current = None
        if ctx.cancelled:
            # Cancelled, whatever the code made of the interrupt (it may have swallowed
            # it and returned): the caller's ``get`` raises TaskCancelledError.
            failure, result = TaskCancelledError(f"Task {spec.name} was cancelled."), None
        try:
            if failure is None:
                try:
                    values = pack_results(result, spec.num_returns, spec.name, backend.store)
                except BaseException as exc:  # an unpicklable result, a full store
                    failure = exc
                else:
                    outcome = Outcome(spec.task_id, spec.attempt, values=values)
            if failure is not None:
                error, retryable = pack_error(failure, spec.name, spec.retry_exceptions)
                outcome = Outcome(spec.task_id, spec.attempt, error=error, retryable=retryable)
        finally:
            current_execution.reset(token)
            backend._owner.pop(spec.task_id, None)
        return outcome, result

    def queue_behind(self, run: TaskRun) -> bool:
        """Queue ``run`` after the current work, unless there is none."""
        with self.lock:
            if not self.busy:
                return False
            self.followers.append(run)
            return True

    def take_follower(self, task_id: int) -> TaskRun | None:
        with self.lock:
            for run in self.followers:
                if run.spec.task_id == task_id:
                    self.followers.remove(run)
                    return run
        return None

    def abandon(self, task_id: int) -> tuple[TaskRun, list[TaskRun]] | None:
        """``cancel(force=True)`` of the task running here: interrupt it, and hand back its
        run and the tasks queued behind it, which must not wait for this thread (a thread
        cannot be killed; it may be in a C call for long). None if it does not run here."""
        with self.lock:
            run = self.current
            if run is None or self.running != task_id:
                return None
            followers = list(self.followers)
            self.followers.clear()
        self.cancel(task_id)
        return run, followers

    def cancel(self, task_id: int) -> None:
        with self.lock:
            if self.running != task_id:
                # Given to this thread, not started yet: it must not start (a cancel that
                # arrives first is not lost). Its outcome is the cancellation.
                self.cancelled_early.add(task_id)
                return
            ctx = self.context
            if ctx is not None:
                ctx.cancelled = True  # seen by get_runtime_context().is_canceled()
            task = self.loops.current_task
            if task is not None and self.loops._loop is not None:
                self.loops._loop.call_soon_threadsafe(task.cancel)
                return
            # As in Ray: KeyboardInterrupt in the task's thread, so its ``finally`` blocks
            # run, and an ``except Exception`` in it does not swallow the cancel.
            _raise_in_thread(self.thread.ident or 0, KeyboardInterrupt)
            if ctx is not None:
                wakeup = ctx.wakeup
                if wakeup is not None:
                    wakeup()  # the task is blocked in get: the exception fires as it wakes


class _ActorHost:
    """An actor's instance and the threads (or event loop) that run its calls."""

    def __init__(self, backend: ThreadBackend, start: ActorStart) -> None:
        self.backend = backend
        self.start = start
        self.spec = start.spec
        self.actor_id = start.spec.actor_id
        self.incarnation = start.incarnation
        self.instance: Any = None
        self.stopped = False
        self.cancelled: set[int] = set()
        self.pending: set[int] = set()  # calls received and not finished
        self.calls: queue.SimpleQueue[Any] = queue.SimpleQueue()
        # Sync actors with concurrency groups: a queue (and threads) per named group;
        # ``calls`` is the default group's.
        self.group_calls: dict[str, queue.SimpleQueue[Any]] = {
            group: queue.SimpleQueue() for group in start.spec.concurrency_groups or {}
        } if not start.spec.is_async else {}
        self.threads: list[threading.Thread] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.tasks: dict[int, asyncio.Task[Any]] = {}
        self.ready = threading.Event()
        name = f"actorlib-actor-{start.spec.cls.name}"
        target = self._run_async if start.spec.is_async else self._run_sync
        first = threading.Thread(target=target, name=name, daemon=True)
        self.threads.append(first)
        first.start()

    def _context(self, call_id: int | None = None) -> ExecutionContext:
        return ExecutionContext(
            self.start.node_id, task_id=call_id, actor_id=self.actor_id, gpu_ids=self.start.gpu_ids,
            namespace=self.spec.namespace, spec=self.spec, incarnation=self.incarnation,
        )

    def _construct(self) -> bool:
        spec = self.spec
        events = self.backend.events
        token = current_execution.set(self._context())
        try:
            cls = self.backend.code.load(spec.cls)
            args, kwargs = build_args(spec.args, self.start.deps)
            with env_vars(spec.env_vars):
                self.instance = cls(*args, **kwargs)
        except BaseException as exc:
            error, _ = pack_error(exc, f"{spec.cls.name}.__init__", False)
            events.actor_init_failed(self.actor_id, self.incarnation, error)
            return False
        finally:
            current_execution.reset(token)
        events.actor_started(self.actor_id, self.incarnation)
        return True

    # -- sync and threaded actors ---------------------------------------------------------

    def _run_sync(self) -> None:
        ok = self._construct()
        self.ready.set()
        if not ok:
            return
        name = self.spec.cls.name
        limits = {"": self.spec.max_concurrency, **(self.spec.concurrency_groups or {})}
        for group, limit in limits.items():
            calls = self.group_calls.get(group, self.calls)
            for i in range(1 if group == "" else 0, limit):
                t = threading.Thread(
                    target=self._serve, args=(calls,),
                    name=f"actorlib-actor-{name}-{group or 'default'}-{i}", daemon=True,
                )
                self.threads.append(t)
                t.start()
        self._serve(self.calls)
        for t in self.threads[1:]:
            t.join()
        self.instance = None  # drop the actor's state (and the refs and handles it holds)

    def _serve(self, calls: queue.SimpleQueue[Any]) -> None:
        while True:
            run = calls.get()
            if run is _STOP or self.stopped:
                calls.put(_STOP)  # wake the next sibling thread too
                return
            self._call(run)

    def _group_of(self, spec: CallSpec) -> str:
        """The call's concurrency group: set for this call, else its method's, else ""."""
        if spec.concurrency_group is not None:
            return spec.concurrency_group
        groups = self.spec.method_groups
        return groups.get(spec.method, "") if groups else ""

    def _unknown_group(self, run: CallRun, group: str) -> None:
        known = sorted(self.spec.concurrency_groups or {})
        error, _ = pack_error(
            ValueError(
                f"concurrency group {group!r} is not one of actor "
                f"{self.spec.cls.name}'s concurrency_groups ({', '.join(known) or 'none'})"
            ),
            f"{self.spec.cls.name}.{run.spec.method}", False,
        )
        self.pending.discard(run.spec.call_id)
        self.backend.events.call_finished(Outcome(run.spec.call_id, run.spec.attempt, error=error))

    def _call(self, run: CallRun) -> None:
        spec = run.spec
        if spec.call_id in self.cancelled:
            self.cancelled.discard(spec.call_id)
            self.pending.discard(spec.call_id)
            error, _ = pack_error(TaskCancelledError(), spec.method, False)
            self.backend.events.call_finished(Outcome(spec.call_id, spec.attempt, error=error))
            return
        token = current_execution.set(self._context(spec.call_id))
        result: Any = None
        name = f"{self.spec.cls.name}.{spec.method}"
        try:
            method = getattr(self.instance, spec.method)
            args, kwargs = build_args(spec.args, run.deps)
            with env_vars(self.spec.env_vars):
                result = method(*args, **kwargs)
            values = pack_results(result, spec.num_returns, name, self.backend.store)
            outcome = Outcome(spec.call_id, spec.attempt, values=values)
        except BaseException as exc:
            error, retryable = pack_error(exc, name, spec.retry_exceptions)
            outcome = Outcome(spec.call_id, spec.attempt, error=error, retryable=retryable)
        finally:
            current_execution.reset(token)
        self.pending.discard(spec.call_id)
        self.backend.events.call_finished(outcome)

    # -- async actors ---------------------------------------------------------------------

    def _run_async(self) -> None:
        loop = self.loop = new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            ok = self._construct()
            self.ready.set()
            if ok:
                loop.run_until_complete(self._serve_async())
        finally:
            self.instance = None
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for t in pending:
                t.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve_async(self) -> None:
        """Start calls in arrival order, at most each group's limit at once. A full group
        holds back only its own calls: each group waits in a queue of its own."""
        limits = {"": self.spec.max_concurrency, **(self.spec.concurrency_groups or {})}
        self._running = dict.fromkeys(limits, 0)
        self._waiting: dict[str, collections.deque[CallRun]] = {
            g: collections.deque() for g in limits
        }
        self._limits = limits
        calls = self.calls
        while True:
            while not calls.empty():
                run = calls.get_nowait()
                if run is _STOP or self.stopped:
                    return
                group = self._group_of(run.spec)
                if group not in limits:
                    self._unknown_group(run, group)
                    continue
                self._waiting[group].append(run)
                self._start_async(group)
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            if calls.empty():  # re-check after publishing the waiter (see submit)
                await waiter
            self._waiter = None

    def _start_async(self, group: str) -> None:
        waiting = self._waiting[group]
        while waiting and self._running[group] < self._limits[group]:
            run = waiting.popleft()
            self._running[group] += 1
            call_id = run.spec.call_id
            task = asyncio.get_running_loop().create_task(self._call_async(run))
            self.tasks[call_id] = task
            task.add_done_callback(functools.partial(self._done, call_id, group))

    def _done(self, call_id: int, group: str, _task: object) -> None:
        self.tasks.pop(call_id, None)
        self._running[group] -= 1
        if not self.stopped:
            self._start_async(group)

    async def _call_async(self, run: CallRun) -> None:
        spec = run.spec
        name = f"{self.spec.cls.name}.{spec.method}"
        current_execution.set(self._context(spec.call_id))
        if spec.call_id in self.cancelled:
            self.cancelled.discard(spec.call_id)
            self.pending.discard(spec.call_id)
            error, _ = pack_error(TaskCancelledError(), name, False)
            self.backend.events.call_finished(Outcome(spec.call_id, spec.attempt, error=error))
            return
        try:
            method = getattr(self.instance, spec.method)
            args, kwargs = build_args(spec.args, run.deps)
            result = method(*args, **kwargs)
            if asyncio.iscoroutine(result):
                result = await result
            values = pack_results(result, spec.num_returns, name, self.backend.store)
            outcome = Outcome(spec.call_id, spec.attempt, values=values)
        except BaseException as exc:
            error, retryable = pack_error(exc, name, spec.retry_exceptions)
            outcome = Outcome(spec.call_id, spec.attempt, error=error, retryable=retryable)
        self.pending.discard(spec.call_id)
        self.backend.events.call_finished(outcome)

    _waiter: asyncio.Future[None] | None = None

    def submit(self, run: Any) -> None:
        if run is _STOP:
            for group_calls in self.group_calls.values():
                group_calls.put(_STOP)
        else:
            self.pending.add(run.spec.call_id)
            if self.group_calls:  # a sync actor with groups: to its group's threads
                group = self._group_of(run.spec)
                if group:
                    calls = self.group_calls.get(group)
                    if calls is None:
                        self._unknown_group(run, group)
                    else:
                        calls.put(run)
                    return
        self.calls.put(run)
        waiter = self._waiter
        if waiter is not None and self.loop is not None:
            try:
                self.loop.call_soon_threadsafe(_resolve, waiter)
            except RuntimeError:  # loop already closed
                pass

    def cancel(self, call_id: int) -> bool:
        """Cancel a call this actor holds; False if it holds no such call."""
        if call_id not in self.pending:
            return False
        self.cancelled.add(call_id)
        task = self.tasks.get(call_id)
        if task is not None and self.loop is not None:
            try:
                self.loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:
                pass
        return True

    def stop(self, force: bool) -> None:
        if force:
            self.stopped = True
        self.submit(_STOP)
        if force and self.loop is not None:
            loop = self.loop
            for task in list(self.tasks.values()):
                try:
                    loop.call_soon_threadsafe(task.cancel)
                except RuntimeError:
                    pass

    def alive(self) -> bool:
        return any(t.is_alive() for t in self.threads)

    def join(self, timeout: float | None = None) -> None:
        for t in list(self.threads):
            t.join(timeout)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class ThreadBackend(Backend):
    name = "thread"
    pipelines = True

    def __init__(self) -> None:
        self.code = CodeCache()
        self._idle: list[_TaskWorker] = []
        self._workers: list[_TaskWorker] = []
        self._owner: dict[int, _TaskWorker] = {}  # the thread of every task not finished
        self._actors: dict[int, _ActorHost] = {}
        self._retired: list[_ActorHost] = []

    async def start(self, events: CoreEvents, config: BackendConfig) -> list[NodeInfo]:
        self.events = events
        resources = local_node_resources(config)
        self.node_id = uuid.uuid4().hex[:16]
        thread_backend_started(config.options)  # lines from tasks get their prefix
        return [NodeInfo(self.node_id, resources)]

    #: In a process worker: whether a queued-behind task may start here, or the core took
    #: it back without asking (see :mod:`actorlib.backends.process.claims`). None: always.
    claim: Callable[[int], bool | None] | None = None

    def claimed(self, run: TaskRun) -> bool:
        return not run.follows or self.claim is None or bool(self.claim(run.spec.task_id))

    def run_task(self, run: TaskRun) -> None:
        task_id = run.spec.task_id
        self.code.remember(run.spec.function)
        if run.follows:
            owner = self._owner.get(run.follows)
            if owner is not None and owner.queue_behind(run):
                self._owner[task_id] = owner
                return
        worker = self._take_thread()
        self._owner[task_id] = worker
        worker.jobs.put(run)

    def _take_thread(self) -> _TaskWorker:
        try:
            worker = self._idle.pop()
        except IndexError:
            worker = _TaskWorker(self, len(self._workers))
            self._workers.append(worker)
        with worker.lock:
            worker.busy = True
        return worker

    def recall(self, task_id: int) -> None:
        run = self.take_back(task_id)
        if run is not None:
            self.events.task_recalled(task_id, run.spec.attempt)

    def take_back(self, task_id: int) -> TaskRun | None:
        """Take back a task still queued behind another; None if it has started."""
        owner = self._owner.get(task_id)
        run = owner.take_follower(task_id) if owner is not None else None
        if run is not None:
            self._owner.pop(task_id, None)
            if not self.claimed(run):
                return None  # the core took it back first, and knows
        return run

    def start_actor(self, start: ActorStart) -> None:
        old = self._actors.pop(start.spec.actor_id, None)
        if old is not None:
            old.stop(force=True)
            self._retired.append(old)
        self._actors[start.spec.actor_id] = _ActorHost(self, start)

    def run_call(self, run: CallRun) -> None:
        host = self._actors.get(run.spec.actor_id)
        if host is None or host.incarnation != run.incarnation:
            died = ActorDiedError("The actor is not running.")
            error, _ = pack_error(died, run.spec.method, False)
            self.events.call_finished(Outcome(run.spec.call_id, run.spec.attempt, error=error))
            return
        host.submit(run)

    def stop_actor(self, actor_id: int, *, force: bool) -> None:
        host = self._actors.pop(actor_id, None)
        if host is not None:
            host.stop(force)
            self._retired = [h for h in self._retired if h.alive()]
            self._retired.append(host)

    def cancel(self, id: int, *, force: bool) -> None:
        queued = self.take_back(id)
        if queued is not None:
            spec = queued.spec
            error, _ = pack_error(TaskCancelledError(), spec.name, False)
            self.events.task_finished(Outcome(id, spec.attempt, error=error))
            return
        worker = self._owner.get(id)
        if worker is not None:
            abandoned = worker.abandon(id) if force else None
            if abandoned is None:
                worker.cancel(id)  # a no-op unless it runs there now
                return
            # force: the task ends now for everyone but its thread, which is interrupted
            # (KeyboardInterrupt) and abandoned; what it returns later is discarded (the
            # core no longer knows the task). Its CPU is free at once, as when Ray kills
            # the worker: a thread stuck in a C call must not hold a CPU for ever.
            run, followers = abandoned
            for follower in followers:  # back to the core, to start elsewhere
                self._owner.pop(follower.spec.task_id, None)
                self.events.task_recalled(follower.spec.task_id, follower.spec.attempt)
            self._owner.pop(id, None)
            error, _ = pack_error(TaskCancelledError(), run.spec.name, False)
            self.events.task_finished(Outcome(id, run.spec.attempt, error=error))
            return
        for host in self._actors.values():
            if host.cancel(id):
                return

    async def stop(self) -> None:
        loop = asyncio.get_running_loop()
        for host in list(self._actors.values()):
            host.stop(force=True)
            self._retired.append(host)
        self._actors.clear()
        for worker in self._workers:
            worker.jobs.put(_STOP)
        for task_id, worker in list(self._owner.items()):
            worker.cancel(task_id)

        done: asyncio.Future[None] = loop.create_future()

        # User code cannot be killed, only interrupted between bytecodes: a thread in a
        # long C call (time.sleep, a socket) finishes when it finishes. At exit it is
        # abandoned after a short grace (a daemon thread, it dies with the interpreter).
        deadline = time.monotonic() + (EXIT_GRACE_S if exiting() else STOP_GRACE_S)

        def join_all() -> None:
            # A plain thread, not the loop's executor: this also runs from atexit, when
            # executors refuse new work. The loop stays free for workers still finishing.
            threads = [w.thread for w in self._workers]
            threads += [t for host in self._retired for t in list(host.threads)]
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))
            loop.call_soon_threadsafe(_resolve, done)

        threading.Thread(target=join_all, name="actorlib-thread-stop", daemon=True).start()
        await done
        thread_backend_stopped()
