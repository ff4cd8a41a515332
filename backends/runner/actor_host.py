"""One actor inside a :class:`~actorlib.backends.runner.local_runner.LocalRunner`.

The instance and what runs its calls: one thread for a sync actor (calls one at a time,
in the order delivered), ``max_concurrency`` threads for a threaded one, an event loop on
a thread of its own for an async one (calls interleave up to ``max_concurrency``). With
concurrency groups, each named group has its own queue and limit, so a full group holds
back only its own calls.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import inspect
import queue
import threading
from _thread import get_ident
from collections.abc import Callable
from pickle import dumps
from types import AsyncGeneratorType, GeneratorType
from typing import TYPE_CHECKING, Any, Protocol

from actorlib.backends.runner.streaming import Producer, exactly, is_generator, produce_sync
from actorlib.backends.runner.task_thread import STOP, enter_execution, leave_execution
from actorlib.backends.runner.user_code import (
    PID,
    build_args,
    env_vars,
    leave_forked_child,
    pack_error,
    pack_results,
)
from actorlib.core.actor_exit import forget_shutdown, register_shutdown, run_shutdown
from actorlib.core.builtin_methods import builtin
from actorlib.core.call_slots import group_limits, group_of
from actorlib.core.execution_context import ExecutionContext, current_execution
from actorlib.core.interruptible import idle_get, unshield_signals
from actorlib.core.loop import new_event_loop
from actorlib.core.records import ActorStart, CallRun, Outcome, require_fields
from actorlib.core.serialization import PLAIN_SCALARS, Serialized
from actorlib.core.specs import CallSpec
from actorlib.exceptions import TaskCancelledError

if TYPE_CHECKING:
    from actorlib.backends.runner.local_runner import LocalRunner


#: A sync method's result that is produced item by item (neither can be subclassed).
_GENERATOR_TYPES = frozenset({GeneratorType, AsyncGeneratorType})

#: ``ActorHost._call`` makes these records without ``__init__``, setting these fields: a
#: field added to one of them is added there too (this fails at import until it is).
_CALL_RECORDS = (
    (ExecutionContext, ("node_id", "task_id", "actor_id", "gpu_ids", "namespace", "cancelled",
                        "wakeup", "spec", "incarnation", "method", "code", "lost_interrupt")),
    (Outcome, ("id", "attempt", "values", "error", "retryable", "pid")),
    (Serialized, ("data", "buffers", "contained", "is_error", "locations", "read")),
)
require_fields("ActorHost._call", *_CALL_RECORDS)
_new_record = object.__new__


class Reading(Protocol):
    """A process worker's connection, as a sync actor's thread reads it while idle
    (``BlockingConnection``'s methods of the same names)."""

    def claim_affine(self) -> bool: ...
    def owns_reading(self) -> bool: ...
    def serve_affine(self, no_work: Callable[[], bool]) -> bool: ...
    def hand_to_affine(self) -> None: ...
    def pass_reading(self) -> bool: ...
    def leave_affine(self) -> None: ...
    def may_run_inline(self) -> bool: ...
    def run_inline(self, work: Callable[[], None], lone: bool = False) -> bool: ...


def _run_coroutine(coro: Any) -> Any:
    loop = new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def resolve(fut: asyncio.Future[None]) -> None:
    """Complete ``fut`` unless it is done already (a wake-up sent from another thread)."""
    if not fut.done():
        fut.set_result(None)


class ActorHost:
    """An actor's instance and the threads (or event loop) that run its calls."""

    def __init__(self, runner: LocalRunner, start: ActorStart) -> None:
        self.runner = runner
        self.start = start
        self.spec = start.spec
        self.actor_id = start.spec.actor_id
        self.incarnation = start.incarnation
        self.instance: Any = None
        self.stopped = False
        self._names: dict[str, str] = {}  # method -> "Class.method" (``_name``)
        # Calls received and not finished; those started, with their contexts (where a
        # cancel raises the flag ``is_canceled()`` reads); those cancelled before they
        # started (already reported, skipped when they come up). Under ``_lock``: a
        # cancel comes from the runner's thread while the actor's threads start calls.
        self.pending: dict[int, CallRun] = {}
        self.started: dict[int, ExecutionContext] = {}
        self.cancelled: set[int] = set()
        self._lock = threading.Lock()
        self.calls: queue.SimpleQueue[Any] = queue.SimpleQueue()
        # Sync actors with concurrency groups: a queue (and threads) per named group;
        # ``calls`` is the default group's.
        self.group_calls: dict[str, queue.SimpleQueue[Any]] = {
            group: queue.SimpleQueue() for group in start.spec.concurrency_groups or {}
        } if not start.spec.is_async else {}
        self.threads: list[threading.Thread] = []
        # The ident of the thread of a sync actor that reads the worker's connection
        # while idle (``_serve_reading``), 0 if none, and that connection.
        self.reader = 0
        self._reading: Reading | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.tasks: dict[int, asyncio.Task[Any]] = {}
        # An async actor's loop waits on it for calls (``_serve_async``); read per call by
        # ``submit``: an instance attribute (one shadowing a class attribute is read on
        # 3.11's slow path).
        self._waiter: asyncio.Future[None] | None = None
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
        events = self.runner.events
        token = current_execution.set(self._context())
        forks = PID.forks
        try:
            cls = self.runner.code.load(spec.cls)
            args, kwargs = build_args(spec.args, self.start.deps)
            with env_vars(spec.env_vars):
                self.instance = cls(*args, **kwargs)
            if PID.forks != forks:  # a process the constructor forked, come back out
                leave_forked_child(None)
            register_shutdown(self.actor_id, self.instance)
        except BaseException as exc:
            if PID.forks != forks:
                leave_forked_child(exc)
            error, _ = pack_error(exc, f"{spec.cls.name}.__init__", False)
            events.actor_init_failed(self.actor_id, self.incarnation, error)
            return False
        finally:
            current_execution.reset(token)
        events.actor_started(self.actor_id, self.incarnation)
        return True

    # -- one call, on any kind of actor -------------------------------------------------

    def _name(self, spec: CallSpec) -> str:
        """``Class.method``, made once per method (every call's result is labelled)."""
        names = self._names
        name = names.get(spec.method)
        if name is None:
            name = names[spec.method] = f"{self.spec.cls.name}.{spec.method}"
        return name

    def _invoke(self, run: CallRun) -> Any:
        """Call the method (an ``async def`` returns its coroutine, not awaited here)."""
        try:
            method = getattr(self.instance, run.spec.method)
        except AttributeError as exc:
            method = builtin(run.spec.method, exc)
        args, kwargs = build_args(run.spec.args, run.deps)
        return method(*args, **kwargs)

    def _invoke_sync(self, run: CallRun) -> Any:
        """Call the method on this thread; a generator's items produced here."""
        spec = run.spec
        try:
            method = getattr(self.instance, spec.method)
        except AttributeError as exc:
            method = builtin(spec.method, exc)
        if spec.args.payload is None:
            result = method()
        else:
            args, kwargs = build_args(spec.args, run.deps)
            result = method(*args, **kwargs)
        if spec.generator or type(result) in _GENERATOR_TYPES:
            result = self._generated_sync(run, result)
        return result

    def _producer(self, run: CallRun, result: Any) -> Producer | None:
        """The driver of a generator call's items; None for an int ``num_returns``."""
        if not run.spec.generator:
            return None
        runner = self.runner
        producer = Producer(run.spec, run.spec.call_id, self._name(run.spec), runner.events,
                            runner.store, runner.gates)
        producer.check(result)
        return producer

    def _exactly(self, run: CallRun, result: Any) -> Any:
        return exactly(result, run.spec.num_returns, self._name(run.spec), self.runner.store)

    def _generated_sync(self, run: CallRun, result: Any) -> Any:
        """A sync or threaded actor's generator call, driven on this thread (an async
        generator on a loop of its own, made for the call)."""
        producer = self._producer(run, result)
        if producer is None:
            return self._exactly(run, result)
        return produce_sync(producer, result, _run_coroutine)

    def _packed(self, run: CallRun, result: Any) -> Outcome:
        """The call's result, packed into the store."""
        spec = run.spec
        name = self._names.get(spec.method) or self._name(spec)  # (made once: no frame)
        values = pack_results(result, spec.num_returns, name, self.runner.store)
        # Positional (id, attempt, values, error, retryable, pid): see ``_begin``.
        return Outcome(spec.call_id, spec.attempt, values, None, False, PID.value)

    def _packed_error(self, run: CallRun, exc: BaseException) -> Outcome:
        """The call's error (raised by the method, or in packing its result)."""
        spec = run.spec
        error, retryable = pack_error(exc, self._name(spec), spec.retry_exceptions)
        return Outcome(
            spec.call_id, spec.attempt, error=error, retryable=retryable, pid=PID.value
        )

    def _report(self, run: CallRun, outcome: Outcome) -> None:
        call_id = run.spec.call_id
        lock = self._lock
        lock.acquire()  # not ``with``: see ``_begin``
        try:
            self.pending.pop(call_id, None)
            self.started.pop(call_id, None)
        finally:
            lock.release()
        self.runner.events.call_finished(outcome)

    def _fail(self, run: CallRun, error: BaseException) -> None:
        """End a call that never ran (cancelled while it waited, an unknown group)."""
        packed, _ = pack_error(error, self._name(run.spec), False)
        self._report(run, Outcome(run.spec.call_id, run.spec.attempt, error=packed))

    def _begin(self, run: CallRun) -> ExecutionContext | None:
        """The started call's context; None for a call cancelled before it started (its
        cancellation is reported already)."""
        call_id = run.spec.call_id
        # ``_context(call_id)``, without its frame; positional, in the order of its
        # fields: keywords into a class cost a dict made and unpacked per call (CPython
        # 3.11's ``type_call``).
        ctx = ExecutionContext(
            self.start.node_id,  # node_id
            call_id,  # task_id
            self.actor_id,  # actor_id
            self.start.gpu_ids,  # gpu_ids
            self.spec.namespace,  # namespace
            False,  # cancelled
            None,  # wakeup
            self.spec,  # spec
            self.incarnation,  # incarnation
            run.spec.method,  # method
            type(self.instance),  # code
        )
        # acquire/release, not ``with``: 3.11's ``with`` makes and drops two bound methods
        # (``__enter__``, ``__exit__``) per call. Safe: nothing raises into an actor's
        # threads (a cancel only sets a flag there).
        lock = self._lock
        lock.acquire()
        try:
            if call_id in self.cancelled:
                self.cancelled.discard(call_id)
                return None
            self.started[call_id] = ctx
        finally:
            lock.release()
        return ctx

    def _call(self, run: CallRun) -> None:
        """A call of a sync or threaded actor, on one of its threads.

        ``_begin`` and ``_packed`` are written out here, without their frames and with
        their records made without ``__init__``: every call of a sync actor runs this
        (about 11,000 instructions a call fewer than calling them, ``_report`` and
        ``sends_alone``).
        """
        spec = run.spec
        call_id = spec.call_id
        # ``_begin(run)``: the context, started unless cancelled. Its slots are set here,
        # without ``ExecutionContext.__init__`` (a class called with an ``__init__`` costs
        # ~600 instructions more on CPython 3.11): every field, as ``_CALL_RECORDS``
        # checks. (So are the plain result and the outcome below.)
        ctx = _new_record(ExecutionContext)
        ctx.node_id = self.start.node_id
        ctx.task_id = call_id
        ctx.actor_id = self.actor_id
        ctx.gpu_ids = self.start.gpu_ids
        ctx.namespace = self.spec.namespace
        ctx.cancelled = False
        ctx.wakeup = None
        ctx.spec = self.spec
        ctx.incarnation = self.incarnation
        ctx.method = spec.method
        ctx.code = type(self.instance)
        ctx.lost_interrupt = False
        lock = self._lock
        lock.acquire()  # not ``with``: see ``_begin``
        try:
            if call_id in self.cancelled:
                self.cancelled.discard(call_id)
                return
            self.started[call_id] = ctx
        finally:
            lock.release()
        token = enter_execution(ctx)
        result: Any = None  # kept until the outcome is out (refs inside must stay alive)
        forks = PID.forks
        try:
            if self.spec.env_vars:
                with env_vars(self.spec.env_vars):
                    result = self._invoke_sync(run)
            else:  # the common actor: no environment to apply around each call
                result = self._invoke_sync(run)
            if PID.forks != forks:  # a process the call forked, come back out of it
                leave_forked_child(None)
            if type(result) in PLAIN_SCALARS and spec.num_returns == 1:
                # ``pack_results``' and ``serialize``'s path for one plain value (the
                # common result), without their frames: pickled as they pickle it. No
                # ``store.seal``: a plain value has no out-of-band buffer to copy.
                value = _new_record(Serialized)
                value.data = dumps(result, 5)
                value.buffers = ()
                value.contained = ()
                value.is_error = False
                value.locations = None
                value.read = False
                values = [value]
            else:
                name = self._names.get(spec.method) or self._name(spec)  # (made once)
                values = pack_results(result, spec.num_returns, name, self.runner.store)
            outcome = _new_record(Outcome)
            outcome.id = call_id
            outcome.attempt = spec.attempt
            outcome.values = values
            outcome.error = None
            outcome.retryable = False
            outcome.pid = PID.value
        except BaseException as exc:
            if PID.forks != forks:
                leave_forked_child(exc)
            outcome = self._packed_error(run, exc)
        finally:
            leave_execution(token)
        runner = self.runner
        sent = outcome.values  # (None for an error)
        # ``runner.sends_alone(outcome)`` (``alone``, or a lone value holding no ref),
        # then ``_report``, both without their frames
        if runner.alone or (outcome.error is None and sent is not None
                            and len(sent) == 1 and not sent[0].contained):
            lock.acquire()
            try:
                self.pending.pop(call_id, None)
                self.started.pop(call_id, None)
            finally:
                lock.release()
            runner.events.call_finished(outcome)
            return
        with runner.together():  # the drops go with the outcome (see TaskThread._run)
            self._report(run, outcome)
            del result, outcome, sent

    async def _call_async(self, run: CallRun) -> None:
        """A call of an async actor, as a task on its loop (with a context of its own)."""
        ctx = self._begin(run)
        if ctx is None:
            return
        current_execution.set(ctx)
        result: Any = None  # kept until the outcome is out (refs inside must stay alive)
        forks = PID.forks
        try:
            result = self._invoke(run)
            if inspect.iscoroutine(result):  # not asyncio's: it takes generators too
                result = await result
            if run.spec.generator or is_generator(result):
                producer = self._producer(run, result)
                result = await producer.drain_async(result) if producer else self._exactly(
                    run, result)
            if PID.forks != forks:  # a process the call forked, come back out of it
                leave_forked_child(None)
            outcome = self._packed(run, result)
        except BaseException as exc:
            if PID.forks != forks:
                leave_forked_child(exc)
            outcome = self._packed_error(run, exc)
        if self.runner.sends_alone(outcome):
            self._report(run, outcome)
            return
        with self.runner.together():  # the drops go with the outcome (see TaskThread._run)
            self._report(run, outcome)
            del result, outcome

    def _group_of(self, spec: CallSpec) -> str:
        return group_of(spec, self.spec.method_groups)

    def _unknown_group(self, run: CallRun, group: str) -> None:
        known = sorted(self.spec.concurrency_groups or {})
        self._fail(run, ValueError(
            f"concurrency group {group!r} is not one of actor "
            f"{self.spec.cls.name}'s concurrency_groups ({', '.join(known) or 'none'})"
        ))

    # -- sync and threaded actors ---------------------------------------------------------

    def _run_sync(self) -> None:
        unshield_signals()  # user code runs here; idle, shielded (idle_get)
        ok = self._construct()
        self.ready.set()
        if not ok:
            return
        name = self.spec.cls.name
        limits = group_limits(self.spec)
        for group, limit in limits.items():
            calls = self.group_calls.get(group, self.calls)
            for i in range(1 if group == "" else 0, limit):
                t = threading.Thread(
                    target=self._serve, args=(calls,),
                    name=f"actorlib-actor-{name}-{group or 'default'}-{i}", daemon=True,
                )
                self.threads.append(t)
                t.start()
        reading = self.runner.reading
        if (reading is not None and len(self.threads) == 1 and not self.group_calls
                and reading.claim_affine()):
            self._serve_reading(self.calls, reading)
        else:
            self._serve(self.calls)
        for t in self.threads[1:]:
            t.join()
        self._ended()
        self.instance = None  # drop the actor's state (and the refs and handles it holds)

    def _ended(self) -> None:
        """Its last call is done: ``__ray_shutdown__`` if it ends gracefully (not killed),
        in a context of its own, as a call runs."""
        if self.stopped:
            forget_shutdown(self.actor_id)
            return
        token = current_execution.set(self._context())
        try:
            run_shutdown(self.actor_id)
        finally:
            current_execution.reset(token)

    def _serve(self, calls: queue.SimpleQueue[Any]) -> None:
        unshield_signals()  # a sibling thread starts shielded if started while idle
        while True:
            try:  # ``idle_get``'s first look, without its frame (a burst's calls wait)
                run = calls.get_nowait()
            except queue.Empty:
                run = idle_get(calls)
            if run is STOP or self.stopped:
                calls.put(STOP)  # wake the next sibling thread too
                return
            self._call(run)

    def _serve_reading(self, calls: queue.SimpleQueue[Any], reading: Reading) -> None:
        """The one thread of a sync actor in a worker process: it reads the worker's
        connection itself while idle, so a call is read and run here with no hop to
        another thread and no hand-over of the GIL (:meth:`run_here`). Calls read by
        another thread (while a long call ran, reading passed to a spare) wait in
        ``calls``, and whoever queues one hands reading back here. A call run while this
        thread reads runs as the connection's inline work: reading passes to a spare
        when it waits in ``get``, runs long, or a cancel or exit is signalled."""
        self.reader, self._reading = get_ident(), reading
        no_work = calls.empty
        try:
            while True:
                try:
                    run = calls.get_nowait()
                except queue.Empty:
                    if not reading.serve_affine(no_work):
                        break  # the connection is lost: the worker ends
                    continue
                if run is STOP or self.stopped:
                    calls.put(STOP)
                    return
                if reading.owns_reading():
                    if run.spec.generator:  # its backpressure waits for messages
                        reading.pass_reading()
                        self._call(run)
                    else:
                        reading.run_inline(functools.partial(self._call, run))
                else:
                    self._call(run)
        finally:
            self.reader, self._reading = 0, None
            reading.leave_affine()
        self._serve(calls)

    def run_here(self, run: CallRun) -> bool:
        """Run ``run`` now, on this thread, if it is this actor's reading thread with
        nothing queued before the call (the reader's handler of a call); False: the
        caller hands it on with :meth:`submit`. A call that came in a burst is not run
        here: reading passes to a spare, which queues the rest of the burst while this
        thread runs the calls (reading and running overlap, as with a reader thread). Nor
        is a generator call: a stream paused by backpressure waits for messages (items
        consumed) that only a reading thread receives."""
        reading = self._reading
        if (reading is None or self.reader != get_ident() or self.stopped or run.spec.generator
                or not self.calls.empty()):
            return False
        # Pending before it may run (if it does not, ``submit`` records it again), and
        # the connection's last look (a lone message, at the top of its loop) made as it
        # runs it: one call for both.
        self.pending[run.spec.call_id] = run
        return reading.run_inline(functools.partial(self._call, run), True)

    # -- async actors ---------------------------------------------------------------------

    def _run_async(self) -> None:
        unshield_signals()  # the actor's coroutines run here
        loop = self.loop = new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            ok = self._construct()
            self.ready.set()
            if ok:
                loop.run_until_complete(self._serve_async())
                self._ended()
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
        limits = group_limits(self.spec)
        self._running = dict.fromkeys(limits, 0)
        self._waiting: dict[str, collections.deque[CallRun]] = {
            g: collections.deque() for g in limits
        }
        self._limits = limits
        calls = self.calls
        while True:
            while not calls.empty():
                run = calls.get_nowait()
                if run is STOP or self.stopped:
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

    # -- from the runner ------------------------------------------------------------------

    def submit(self, run: Any) -> None:
        if run is STOP:
            for group_calls in self.group_calls.values():
                group_calls.put(STOP)
        else:
            self.pending[run.spec.call_id] = run
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
        reading = self._reading
        if reading is not None:  # its thread may be waiting while another reads: its turn
            reading.hand_to_affine()
        waiter = self._waiter
        if waiter is not None and self.loop is not None:
            try:
                self.loop.call_soon_threadsafe(resolve, waiter)
            except RuntimeError:  # loop already closed
                pass

    def cancel(self, call_id: int) -> bool:
        """Cancel a call this actor holds; False if it holds no such call.

        One still queued ends now, as cancelled, and is skipped when it comes up (it
        must not wait for the calls ahead of it). A running call of a sync or threaded
        actor is not interrupted (the actor's state is its own, as in Ray): it sees
        ``is_canceled()``, and an error it raises then becomes the cancellation. A
        running call of an async actor gets ``asyncio.CancelledError``.
        """
        with self._lock:
            run = self.pending.get(call_id)
            if run is None:
                return False
            ctx = self.started.get(call_id)
            if ctx is None:
                self.cancelled.add(call_id)
            else:
                ctx.cancelled = True
        if ctx is None:
            self._fail(run, TaskCancelledError())
            return True
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
            forget_shutdown(self.actor_id)  # killed: no cleanup, even if a call runs on
        self.submit(STOP)
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
