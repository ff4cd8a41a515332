"""One thread of a :class:`~actorlib.backends.runner.local_runner.LocalRunner`'s task pool.

It runs one task at a time, then the tasks queued behind it (``TaskRun.follows``), and
takes a cancel: before the task starts (it never starts), or while it runs (the task's
``async def`` is cancelled on its loop, sync code gets ``KeyboardInterrupt``).

Lock order, in a process worker (whose runner claims queued tasks, see
:mod:`actorlib.backends.process.claims`): a thread's ``lock``, then the claim table's
thread lock (``ClaimTable._threads``), then the table's record lock, which the driver
only ever tries without waiting. A thread claims its next queued task with its ``lock``
held (``_next_follower``), so taking a queued copy off the queue, deciding its claim and
moving the task's ``owner`` entry are one step to the runner's reader, which takes that
``lock`` (``drop_stale``, ``take_back``) and sees the copy queued, claimed here or
forgotten, never in between: a task sent again whose copy left behind started is
ignored, and a cancel of it reaches that copy. Hence: nobody takes a thread's ``lock``
while holding the claim table's locks or another thread's ``lock``, and the reader
claims (``LocalRunner.claimed``) holding no thread's ``lock``. Under a ``lock`` a
cancel only signals (an asynchronous exception, a loop's wake-up, a lock released), it
never waits. The runner's ``owner`` dict is written by the reader and by the threads,
one operation at a time (atomic under the GIL); while a copy is queued behind a thread's
task, its entry is set, claimed or dropped under that thread's ``lock`` only.
"""

from __future__ import annotations

import collections
import queue
import threading
from types import AsyncGeneratorType, CoroutineType, GeneratorType
from typing import TYPE_CHECKING, Any

from actorlib.backends.runner.interrupts import held_back, raise_in_thread, until_done
from actorlib.backends.runner.streaming import Producer, exactly, is_generator, produce_sync
from actorlib.backends.runner.user_code import (
    PID,
    LoopHolder,
    build_args,
    drive,
    env_vars,
    leave_forked_child,
    pack_error,
    pack_results,
    run_sync_or_async,
)
from actorlib.core import late_interrupts
from actorlib.core.execution_context import ExecutionContext, current_execution
from actorlib.core.interruptible import idle_get, unshield_signals
from actorlib.core.records import Outcome, TaskRun, require_fields
from actorlib.core.specs import TaskSpec
from actorlib.exceptions import TaskCancelledError

if TYPE_CHECKING:
    from actorlib.backends.runner.local_runner import LocalRunner

#: What a task's function may return that is run further here (``_driven``); none of
#: these types can be subclassed, so a ``type() in`` test is exact.
_DRIVEN = frozenset({CoroutineType, GeneratorType, AsyncGeneratorType})

#: Put in a thread's (or an actor's) queue: the thread ends when it reads it.
STOP = object()

#: ``current_execution.set`` and ``.reset``, read once: 3.11 specializes no read of a C
#: method of a module global, and every task and call reads them.
enter_execution = current_execution.set
leave_execution = current_execution.reset


#: ``TaskThread._execute`` makes these records without ``__init__`` (a class called with
#: an ``__init__`` costs ~600 instructions more on CPython 3.11), setting these fields: a
#: field added to one of them is added there too (this fails at import until it is).
_TASK_RECORDS = (
    (ExecutionContext, ("node_id", "task_id", "actor_id", "gpu_ids", "namespace", "cancelled",
                        "wakeup", "spec", "incarnation", "method", "code", "lost_interrupt")),
    (Outcome, ("id", "attempt", "values", "error", "retryable", "pid")),
)
require_fields("TaskThread._execute", *_TASK_RECORDS)
_new_record = object.__new__


async def _await(coro: Any) -> Any:
    return await coro


class TaskThread:
    """One pool thread; runs one task at a time, then any queued behind it."""

    def __init__(self, runner: LocalRunner, index: int, start: bool = True) -> None:
        self.runner = runner
        self.jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.loops = LoopHolder()
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
        if start:  # else its tasks run on a thread of the caller's (``ident``)
            self.thread.start()

    @property
    def ident(self) -> int:
        """The thread its tasks run on (where a cancel interrupts them)."""
        return self.thread.ident or 0

    def _run(self) -> None:
        runner = self.runner
        unshield_signals()  # it runs user code; idle, it is shielded (idle_get)
        try:
            while True:
                run = idle_get(self.jobs)
                if run is STOP:
                    return
                # Claimed already, if it follows a task (``LocalRunner.run_task``).
                self.run_chain(run)
                runner.thread_idle(self)
        finally:
            self.loops.close()

    def run_chain(self, run: TaskRun | None) -> None:
        """``run``, then each task queued behind it meanwhile, until none is left."""
        runner = self.runner
        while run is not None:
            # ``result`` stays alive until the outcome is out: refs inside it must not be
            # dropped before the core holds them for the outcome.
            outcome, result = self._execute(run)
            # The next task is taken before the outcome goes out: whoever hears of the
            # outcome may rely on that task having started (no recall).
            run = self._next_follower()
            # The drops go with the outcome: whoever gets the result then finds the refs
            # it held released (a worker's drops would come a moment late).
            if runner.alone or runner.sends_alone(outcome):  # (``alone``: no call)
                runner.events.task_finished(outcome)
                del outcome, result
            else:
                with runner.together():
                    runner.events.task_finished(outcome)
                    del outcome, result

    def _next_follower(self) -> TaskRun | None:
        """The next queued task this thread may start (one the core did not take back).

        Each is claimed with the lock held (lock order: this lock, then the claim
        table's): ``LocalRunner.drop_stale`` then finds a copy of a task still queued
        here, or claimed here (its ``owner`` entry this thread), or forgotten, never
        taken off the queue with its claim undecided.
        """
        runner = self.runner
        lock = self.lock
        # acquire/release, not ``with``: 3.11's ``with`` makes and drops two bound methods
        # (``__enter__``, ``__exit__``), ~800 instructions a task. Safe here: no cancel's
        # interrupt is pending once ``_execute`` has returned (see its ``except``).
        lock.acquire()
        try:
            followers = self.followers
            while followers:
                run = followers.popleft()
                if runner.claim is None:
                    return run
                if runner.claimed(run):  # a follower: ``follows`` set
                    runner.owner[run.spec.task_id] = self  # the claim's holder runs it
                    return run
                runner.forget(run.spec.task_id, self)  # the core took it back meanwhile
            self.busy = False
            return None
        finally:
            lock.release()

    def _execute(self, run: TaskRun) -> tuple[Outcome, Any]:
        runner = self.runner
        spec = run.spec
        # The context's slots set here, without its class call: every field, as
        # ``_TASK_RECORDS`` checks (so is the outcome below).
        ctx = _new_record(ExecutionContext)
        ctx.node_id = run.node_id
        ctx.task_id = spec.task_id
        ctx.actor_id = None
        ctx.gpu_ids = run.gpu_ids
        ctx.namespace = spec.namespace
        ctx.cancelled = False
        ctx.wakeup = None
        ctx.spec = spec
        ctx.incarnation = 0
        ctx.method = ""
        ctx.code = None
        ctx.lost_interrupt = False
        token = enter_execution(ctx)
        result: Any = None
        failure: BaseException | None = None
        forks = PID.forks
        lock = self.lock
        lock.acquire()
        self.running = spec.task_id
        self.current = run
        self.context = ctx
        if spec.task_id in self.cancelled_early:
            self.cancelled_early.discard(spec.task_id)
            ctx.cancelled = True
        try:
            # A cancel may raise KeyboardInterrupt anywhere from the lock's release until
            # ``running`` is cleared under the lock, including inside the except clause:
            # the outer try catches that too, so every task ends with exactly one outcome.
            try:
                # Released in the try, not by a ``with`` above it: a cancel waiting for the
                # lock may raise its interrupt as the release returns (Python looks for
                # one after each call), which must not escape this method. (And no
                # ``with``: it makes and drops two bound methods a task.)
                lock.release()
                if ctx.cancelled:
                    raise TaskCancelledError(f"Task {spec.name} was cancelled.")
                fn = runner.code.loaded.get(spec.function.id)
                if fn is None:
                    fn = runner.code.load(spec.function)
                ctx.code = fn
                if spec.env_vars:
                    args, kwargs = build_args(spec.args, run.deps)
                    with env_vars(spec.env_vars):
                        result = self._driven(spec, fn(*args, **kwargs))
                else:
                    # The common task: no environment to apply, often no arguments.
                    if spec.args.payload is None:
                        result = fn()
                    else:
                        args, kwargs = build_args(spec.args, run.deps)
                        result = fn(*args, **kwargs)
                    if spec.generator or type(result) in _DRIVEN:
                        result = self._driven(spec, result)
            except BaseException as exc:
                failure = exc
            finally:
                # Not ``with`` (two bound methods made a task), and ``acquire`` inside the
                # ``try``: a cancel's interrupt is raised only as a call returns, so it
                # lands with the lock held (released below), never before it is taken.
                try:
                    lock.acquire()
                    self.running = None
                    self.current = None
                    self.context = None  # its spec holds the arguments (arena pins)
                finally:
                    lock.release()
        except KeyboardInterrupt as exc:
            failure = exc
            self.running = None
            self.current = None
            self.context = None
        if PID.forks != forks:  # a process the task forked, come back out of it
            leave_forked_child(failure)
        if ctx.cancelled:
            # Cancelled, whatever the code made of the interrupt (it may have swallowed
            # it and returned): the caller's ``get`` raises TaskCancelledError.
            failure, result = TaskCancelledError(f"Task {spec.name} was cancelled."), None
        try:
            if failure is None:
                try:
                    values = pack_results(result, spec.num_returns, spec.name, runner.store)
                except BaseException as exc:  # an unpicklable result, a full store
                    failure = exc
                else:
                    outcome = _new_record(Outcome)
                    outcome.id = spec.task_id
                    outcome.attempt = spec.attempt
                    outcome.values = values
                    outcome.error = None
                    outcome.retryable = False
                    outcome.pid = PID.value
            if failure is not None:
                error, retryable = pack_error(failure, spec.name, spec.retry_exceptions)
                outcome = Outcome(
                    spec.task_id, spec.attempt, error=error, retryable=retryable, pid=PID.value
                )
        finally:
            leave_execution(token)
            runner.owner.pop(spec.task_id, None)  # ``runner.forget``, without its frame
            # The failure's traceback holds this frame, which holds the failure: without
            # this, the cycle keeps the task's arguments (refs, actor handles) alive until
            # a garbage collection, which an idle worker process may not run for long.
            del failure
        return outcome, result

    def _driven(self, spec: TaskSpec, result: Any) -> Any:
        """What a call of the task's function returned, run to its end here: a
        coroutine on this thread's loop, a generator's items produced."""
        if type(result) is CoroutineType:
            result = drive(result, self.loops)
        if spec.generator or is_generator(result):
            result = self._generated(spec, result)
        return result

    def _generated(self, spec: TaskSpec, result: Any) -> Any:
        """Drive a generator task here (its items go out as they come)."""
        if not spec.generator:
            return exactly(result, spec.num_returns, spec.name, self.runner.store)
        runner = self.runner
        producer = Producer(spec, spec.task_id, spec.name, runner.events, runner.store,
                            runner.gates)
        return produce_sync(
            producer, result, lambda coro: run_sync_or_async(_await, (coro,), {}, self.loops)
        )

    def queue_behind(self, run: TaskRun) -> bool:
        """Queue ``run`` after the current work, unless there is none."""
        lock = self.lock
        lock.acquire()  # not ``with``: see ``_next_follower`` (called by the core's owner)
        try:
            if not self.busy:
                return False
            self.followers.append(run)
            # Under the lock: this thread may claim it, run it and drop the entry at once.
            self.runner.owner[run.spec.task_id] = self
            return True
        finally:
            lock.release()

    def take_follower(self, task_id: int) -> TaskRun | None:
        """Take ``task_id``'s copy off the queue; None if none waits there."""
        with self.lock:
            return self.unqueue(task_id)

    def unqueue(self, task_id: int) -> TaskRun | None:
        """``take_follower``, for a caller that holds ``lock``."""
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
            if self.loops.cancel_current():
                return
            # As in Ray: KeyboardInterrupt in the task's thread, so its ``finally`` blocks
            # run, and an ``except Exception`` in it does not swallow the cancel.
            until_done(self.lock, lambda: self._interrupt(ctx))

    def _interrupt(self, ctx: ExecutionContext | None) -> bool:
        """(``lock`` held) KeyboardInterrupt in the run of ``ctx``, unless its thread is
        importing or in a finalizer (False: not yet, see :mod:`~.interrupts`). True once
        sent, or when that run has ended meanwhile."""
        if ctx is None or self.context is not ctx:
            return True
        with late_interrupts.GATE:  # the look and the raise, with no write in between
            if held_back(self.ident):
                return False
            raise_in_thread(self.ident, KeyboardInterrupt)
        wakeup = ctx.wakeup
        if wakeup is not None:
            wakeup()  # the task is blocked in get: the exception fires as it wakes
        return True
