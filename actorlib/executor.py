"""``actorlib.Executor``: a real ``concurrent.futures.Executor`` whose calls run as actorlib tasks.

A drop-in for ``ProcessPoolExecutor``::

    from actorlib import Executor as ProcessPoolExecutor

Built only on actorlib's public API (``remote``, ``.options``, ``cancel``,
``ObjectRef.future()``, ``init``/``shutdown``/``is_initialized``), so it runs unchanged on
every backend.

How it works. Every submitted call is handed to actorlib at once, as a task carrying a
concurrency limit of ``max_workers`` for this executor (``_concurrency``): the core's
scheduler places at most that many on workers at a time, and a task waiting in ``get``
keeps its slot (only its CPU is lent), so the bound holds as ``ProcessPoolExecutor``'s
does. The rest wait in the core's queue, where each completion starts the next one
without a round trip through this executor. A future shows RUNNING for up to
``max_workers`` calls in submission order, PENDING for the others; ``cancel()`` of a
PENDING future asks the core to withdraw its task, which succeeds only if no worker has
it yet (then it never runs); otherwise the call has started and the future is RUNNING.
Results arrive through ``ObjectRef.future()``.

Per-worker set-up (``initializer``) runs inside the task, once per worker and executor,
before that worker's first task of this executor. ``max_tasks_per_child`` is the tasks'
``max_calls``: a worker process that ran that many of this executor's tasks exits and a
fresh one replaces it; on the thread and sim backends, which have no process to replace,
the initializer runs again after that many tasks instead (see docs/migration.md).

At interpreter exit, calls still in flight run to their end before the runtime stops
(``_finish_at_exit``), as ``ProcessPoolExecutor``'s do; a call's error is raised as the
stdlib raises it (``executor_errors.as_stdlib_error``).
"""

from __future__ import annotations

import concurrent.futures
import functools
import sys
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

from actorlib.api import cancel, cluster_resources
from actorlib.core import context, waiting
from actorlib.core.interruptible import SIGNAL_LOOK_S, FutureCondition
from actorlib.core.serialization import Serialized
from actorlib.core.waiting import client_of, completer
from actorlib.exceptions import (
    BrokenExecutorError,
    ExecutorInitializerError,
    ExecutorShutdownError,
    ExecutorTimeoutError,
    ExecutorWorkerError,
    RuntimeClosedError,
    SerializationError,
    TaskError,
    WorkerCrashedError,
)
from actorlib.executor_errors import as_stdlib_error
from actorlib.executor_results import (
    Item,
    Unread,
    batched,
    ordered_results,
    progress_bar,
    read_result,
    settle_future,
)
from actorlib.executor_tasks import (
    CallTasks,
    ChunkFuture,
    ExecutorFuture,
    FailingTasks,
    InitializerFailed,
    MapFuture,
    Prepare,
)
from actorlib.remote_function import RemoteFunction
from actorlib.runtime_lease import acquire_runtime, release_runtime
from actorlib.session import ended_by_signal, is_initialized

__all__ = [
    "BrokenExecutorError",
    "Executor",
    "ExecutorInitializerError",
    "ExecutorShutdownError",
    "ExecutorTimeoutError",
    "ExecutorWorkerError",
]

T = TypeVar("T")


# -- errors at the executor boundary ---------------------------------------------------


def _translate(exc: BaseException) -> BaseException:
    """Errors at the executor boundary: worker deaths become ``BrokenExecutor`` too; a
    call's own error is raised as the stdlib raises it (``as_stdlib_error``)."""
    if isinstance(exc, InitializerFailed):
        err: BaseException = ExecutorInitializerError(str(getattr(exc, "cause", None) or exc))
    elif isinstance(exc, WorkerCrashedError) and not isinstance(exc, BrokenExecutorError):
        err = ExecutorWorkerError(*exc.args)
    elif isinstance(exc, TaskError):
        return as_stdlib_error(exc)  # the call's own error, as the stdlib raises it
    else:
        return exc
    err.__cause__ = exc
    return err


def _no_callable() -> None:
    """A dead weak reference's answer: ``Executor._last_tasks`` before any callable."""
    return None


# -- at interpreter exit -----------------------------------------------------------------

#: Executors that may have calls in flight (weakly: a call in flight keeps its executor).
_executors: weakref.WeakSet[Executor] = weakref.WeakSet()
_exit_hook_lock = threading.Lock()
_exit_hook = False


def _finish_at_exit() -> None:
    """Let calls already submitted finish before the interpreter exits (and, with it,
    actorlib's runtime): ``ProcessPoolExecutor`` runs them to their end at exit, also
    after ``shutdown(wait=False)`` or with no shutdown at all. Registered where the
    stdlib's own hook is (``threading._register_atexit``: before ``atexit`` handlers,
    so before actorlib's runtime stops).

    Not when Ctrl-C or a SIGTERM/SIGHUP ended the script: a Ctrl-C at a terminal stops
    the stdlib's workers too (they share its process group), and a SIGTERM kills its
    process at once; actorlib's workers are not signalled, the runtime's shutdown stops
    them. (A Ctrl-C while this waits stops the wait.)"""
    if isinstance(getattr(sys, "last_value", None), KeyboardInterrupt) or ended_by_signal():
        return
    for executor in list(_executors):
        if executor._waits_at_exit:
            executor._wait_idle()


def _register_exit_hook() -> None:
    global _exit_hook
    with _exit_hook_lock:
        if _exit_hook:
            return
        _exit_hook = True
    register = getattr(threading, "_register_atexit", None)
    try:
        if register is None:
            raise RuntimeError
        register(_finish_at_exit)
    except RuntimeError:  # no such hook, or the interpreter is already exiting
        import atexit

        atexit.register(_finish_at_exit)  # after the runtime's own: runs first


# -- the executor ------------------------------------------------------------------------


class Executor(concurrent.futures.Executor):
    """A ``concurrent.futures.Executor`` that runs each call as an actorlib task.

    If actorlib is not initialized, the executor starts a runtime on ``backend`` with
    ``num_cpus=max_workers`` (plus ``init_kwargs``) and stops it in ``shutdown()``;
    otherwise it uses the running one and leaves it running. Either way at most
    ``max_workers`` calls run at once.

    ``max_retries``: how often a call whose worker died is rerun (actorlib's task option).
    ``mp_context`` is accepted for ``ProcessPoolExecutor`` compatibility and ignored.
    """

    #: At interpreter exit, wait for the calls in flight (``ProcessPoolExecutor`` does;
    #: ``Pool``'s does not: multiprocessing terminates a pool at exit).
    _waits_at_exit = True

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        backend: str | None = None,
        initializer: Callable[..., Any] | None = None,
        initargs: tuple[Any, ...] = (),
        max_tasks_per_child: int | None = None,
        max_retries: int = 3,
        mp_context: Any = None,
        **init_kwargs: Any,
    ) -> None:
        if max_workers is not None:
            if isinstance(max_workers, bool) or not isinstance(max_workers, int):
                raise TypeError(f"max_workers must be an int, got {max_workers!r}")
            if max_workers <= 0:
                raise ValueError("max_workers must be greater than 0")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if max_tasks_per_child is not None:
            if isinstance(max_tasks_per_child, bool) or not isinstance(max_tasks_per_child, int):
                raise TypeError("max_tasks_per_child must be an integer")
            if max_tasks_per_child <= 0:
                raise ValueError("max_tasks_per_child must be >= 1")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < -1:
            raise ValueError(f"max_retries must be an int >= -1, got {max_retries!r}")
        self._owns_runtime = acquire_runtime(backend, max_workers, init_kwargs)
        if max_workers is None:
            max_workers = max(1, int(cluster_resources().get("CPU", 1)))
        self._max_workers = max_workers
        self._token = uuid.uuid4().hex
        prepare: Prepare | None = None
        if initializer is not None:
            prepare = (self._token, initializer, tuple(initargs), max_tasks_per_child)
        self._prepare = prepare
        # The core runs at most max_workers of this executor's tasks at once. (The
        # runtime's num_cpus alone would not bound them: a task blocked in get() lends
        # its CPU back, not its slot under the limit.)
        self._task_options: dict[str, Any] = {
            "num_cpus": 1, "max_retries": max_retries,
            "_concurrency": (f"executor-{self._token}", max_workers),
        }
        if max_tasks_per_child is not None:
            # A worker process retires after that many of this executor's tasks (they
            # count together: they share the concurrency key) and a fresh one replaces
            # it, as the stdlib's does; where there is no process to replace (thread,
            # sim), the initializer runs again instead (``prepare_worker``).
            self._task_options["max_calls"] = max_tasks_per_child
        # Weak keys: the executor keeps no submitted callable alive (a bound method, made
        # anew for each call, is therefore pickled anew each time, with its object's
        # state at submission, as the stdlib does).
        self._tasks: weakref.WeakKeyDictionary[Any, CallTasks] = weakref.WeakKeyDictionary()
        # The last callable's (weakly) and its tasks, asked first: a loop of ``submit``
        # calls one function, and a weak dictionary's ``get`` is a Python frame.
        self._last_tasks: tuple[Callable[[], Any], Any] = (_no_callable, None)

        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending: deque[Item] = deque()  # futures PENDING, in submission order
        self._live: set[Item] = set()  # submitted, not done
        self._marked = 0  # futures shown RUNNING, not settled
        self._outstanding = 0  # submitted, future not settled yet
        self._shutdown = False
        self._released = False
        self._release_lock = threading.Lock()
        self._broken: str | None = None
        # Results come in on the core's thread; the futures thread settles them in batches.
        self._arrivals: list[tuple[Item, Serialized]] = []
        self._arrivals_lock = threading.Lock()
        self._draining = False
        _register_exit_hook()
        _executors.add(self)

    # -- public API --------------------------------------------------------------------

    @property
    def max_workers(self) -> int:
        return self._max_workers

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Schedule ``fn(*args, **kwargs)``; return a ``concurrent.futures.Future``."""
        item = self._enqueue(self._tasks_for(fn).call, args, kwargs, False)
        ref = item.ref
        if ref is not None:  # ``_watch([item])``, without its comprehension and lookups
            id_ = ref.id
            client_of([ref]).watch([id_], functools.partial(self._arrived, {id_: item}))
        return item.future

    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        progress: bool = False,
    ) -> Iterator[T]:
        """``fn`` over the zipped iterables; results in order, lazily, submitted at once.

        An error raised by one call is raised when iteration reaches that item; the
        results before it (in its chunk too) are yielded first. ``timeout`` counts from
        this call; ``ExecutorTimeoutError`` (a ``TimeoutError``) when it passes.
        ``progress=True`` shows a progress bar (tqdm) of completed items.
        """
        if isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        end = None if timeout is None else time.monotonic() + timeout
        tasks = self._tasks_for(fn)
        calls = zip(*iterables)  # noqa: B905 - stops at the shortest, like the stdlib
        items: list[Item] = []
        sizes: list[int] | None = None
        try:
            if chunksize == 1:
                # Read by map's iterator alone unless a progress bar watches: MapFutures,
                # one condition for all
                shared = None if progress else FutureCondition()
                direct = shared is not None
                items.extend(
                    self._enqueue(tasks.call, args, {}, False, direct, shared) for args in calls
                )
            else:
                sizes = []
                # One iterable: its items go bare, the worker calls fn(item).
                spread = len(iterables) != 1
                source = calls if spread else iterables[0]
                for chunk in batched(source, chunksize):
                    items.append(
                        self._enqueue(tasks.chunk(fn), (chunk, spread), {}, True, not progress)
                    )
                    sizes.append(len(chunk))
        finally:
            # Watched even if the iterables raised part way: those calls run and end.
            self._watch(items)
        futures = [item.future for item in items]
        bar = progress_bar(futures, sizes) if progress else None
        return ordered_results(items, end, chunksize > 1, bar, self._cancel_items)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking calls; optionally cancel queued ones; optionally wait for the rest.

        A runtime the executor started is shut down once every call has finished.
        """
        with self._lock:
            self._shutdown = True
        if cancel_futures:
            self._cancel_items(list(self._pending))
        if wait:
            self._wait_idle()
            self._release()
        else:
            self._release_when_idle()

    def _wait_idle(self) -> None:
        """Wait until every call submitted has ended (or the runtime is gone under us)."""
        if waiting.hook_runs_work:  # (sim) the calls run only while we wait through it
            with self._lock:
                futures = [item.future for item in self._live]
            waiting.drive_futures(futures, concurrent.futures.ALL_COMPLETED, None)
        with self._lock:
            while self._outstanding > 0:
                if not self._idle.wait(SIGNAL_LOOK_S) and not is_initialized():
                    return  # shut down under the executor: its futures are failing

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> bool | None:
        """``shutdown(wait=True)``; first, if Ctrl-C (or a SIGTERM/SIGHUP) ended the block,
        withdraw the queued calls and interrupt the running ones: a Ctrl-C at a terminal
        reaches the stdlib's workers too (the running calls raise ``KeyboardInterrupt``,
        the pool breaks), so its block ends at once; actorlib's workers are not signalled."""
        if exc_type is not None and (
            issubclass(exc_type, KeyboardInterrupt) or ended_by_signal()
        ):
            self._interrupt()
        return super().__exit__(exc_type, exc_val, exc_tb)

    def _interrupt(self) -> None:
        """Withdraw the queued calls; stop the running ones (``cancel(force=True)``)."""
        self._cancel_items(list(self._pending))
        with self._lock:
            running = [item.ref for item in self._live if item.ref is not None]
        for ref in running:
            try:
                cancel(ref, force=True)  # (a call in a C function, a sleep, stops too)
            except Exception:  # ended meanwhile, or the runtime is going
                pass

    # -- for Pool ----------------------------------------------------------------------

    def _submit_chunk(self, fn: Callable[..., Any], chunk: list[Any], spread: bool) -> Future[Any]:
        """A chunk of calls of ``fn``: each item a tuple of arguments if ``spread``, else
        the one argument."""
        item = self._enqueue(self._tasks_for(fn).chunk(fn), (chunk, spread), {}, True)
        self._watch([item])
        return item.future

    def _submit_chunks(
        self, fn: Callable[..., Any], chunks: list[list[Any]], spread: bool,
    ) -> list[Future[Any]]:
        """Chunks as ``_submit_chunk`` makes them, for a caller that waits for them all and
        reads them itself (``Pool.map``): their futures carry no callbacks, so results
        settle them as they arrive (``Item.direct``; read with ``read_unread``)."""
        tasks = self._tasks_for(fn)
        items: list[Item] = []
        try:
            for chunk in chunks:
                items.append(self._enqueue(tasks.chunk(fn), (chunk, spread), {}, True, True))
        finally:
            self._watch(items)  # in one request, also if a submission raised part way
        return [item.future for item in items]

    def _terminate(self) -> None:
        """Cancel queued calls, interrupt running ones, stop at once (``Pool.terminate``)."""
        with self._lock:
            self._shutdown = True
        self._cancel_items(list(self._pending))
        error = ExecutorShutdownError("the pool was terminated before this call finished")
        for item in self._take_live():
            try:
                cancel(item.ref, force=True)
            except Exception:
                pass
            self._settle(item, None, error)
        self._release()

    # -- internals ---------------------------------------------------------------------

    def _tasks_for(self, fn: Callable[..., Any]) -> CallTasks | FailingTasks:
        if not callable(fn):
            # The stdlib's pools fail each call's future (the worker calls it), not submit.
            return FailingTasks(fn, self._prepare, self._task_options)
        if isinstance(fn, RemoteFunction):
            fn = fn._function
        last = self._last_tasks  # (one read: another thread may replace it)
        if last[0]() is fn:
            return last[1]
        try:
            known = self._tasks.get(fn)
        except TypeError:  # unhashable or not weakly referable: not cached
            return self._new_tasks(fn)
        if known is None:
            made = self._new_tasks(fn)
            if not isinstance(made, CallTasks):
                return made
            try:
                with self._lock:
                    self._tasks[fn] = made
            except TypeError:
                return made
            known = made
        self._last_tasks = (weakref.ref(fn), known)
        return known

    def _new_tasks(self, fn: Callable[..., Any]) -> CallTasks | FailingTasks:
        try:
            return CallTasks(fn, self._prepare, self._task_options)
        except SerializationError:
            return FailingTasks(fn, self._prepare, self._task_options)

    def _enqueue(
        self, task: RemoteFunction[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any],
        chunked: bool, direct: bool = False, shared: FutureCondition | None = None,
    ) -> Item:
        """Submit one call (or chunk); ``shared``: a ``map``'s condition, for its
        :class:`MapFuture` (a direct future read by map's iterator only)."""
        future = (ChunkFuture() if chunked else ExecutorFuture() if shared is None
                  else MapFuture(shared))
        item = Item(future, chunked, direct)
        with self._lock:
            if self._broken is not None:
                raise BrokenExecutorError(self._broken)
            if self._shutdown:
                raise ExecutorShutdownError("cannot schedule new futures after shutdown")
            self._outstanding += 1
            self._live.add(item)
        try:
            if context.current() is None:  # (remote() would start a runtime)
                raise RuntimeClosedError("actorlib was shut down under the executor")
            item.ref = task.remote(*args, **kwargs)
        except Exception as exc:
            with self._lock:
                taken, item.done = item.done, True  # taken: a terminate settled it
                self._live.discard(item)
            if not taken:
                self._settle(item, None, exc)
            return item
        with self._lock:
            if not item.done:  # (a terminate may have settled it meanwhile: not attached)
                # cancel() asks the core (see _cancel) until settled (the stdlib's again);
                # (sim) the future's wait drives the run until its call's ref is ready
                future.attach(self, item)
                if self._marked < self._max_workers and not self._pending:
                    self._mark(item)
                else:
                    self._pending.append(item)
        return item

    def _mark(self, item: Item) -> None:
        """Show ``item``'s future RUNNING (lock held; it is PENDING: not done)."""
        item.marked = True
        self._marked += 1
        item.future.set_running_or_notify_cancel()

    def _promote(self) -> None:
        """Show the oldest PENDING futures RUNNING while fewer than max_workers are."""
        pending = self._pending
        while self._marked < self._max_workers and pending:
            item = pending.popleft()
            if not item.done and not item.marked:  # marked: a cancel found it started
                self._mark(item)

    def _cancel(self, item: Item) -> bool:
        """``Future.cancel`` for a submitted call: withdrawn from the core if no worker
        has it yet, else it has started (RUNNING) and is not cancelled."""
        return self._cancel_items([item]) == 1 or item.future.cancelled()

    def _cancel_items(self, items: list[Item]) -> int:
        """Cancel those of ``items`` whose futures are PENDING, in one request to the core;
        those a worker has already are shown RUNNING. Returns how many were cancelled."""
        with self._lock:
            asked = [i for i in items if not i.done and not i.marked and i.ref is not None]
            if not asked:
                return 0
            try:
                taken = client_of([asked[0].ref]).withdraw([i.ref.id for i in asked])
            except Exception:  # the runtime is gone (or going): nothing can be withdrawn
                taken = [False] * len(asked)
            withdrawn = []
            for item, took in zip(asked, taken, strict=True):
                if took:
                    item.done = True
                    self._live.discard(item)
                    withdrawn.append(item)
                else:
                    self._mark(item)
            if withdrawn:
                gone = set(map(id, withdrawn))
                self._pending = deque(i for i in self._pending if id(i) not in gone)
        for item in withdrawn:
            item.future.detach()
            Future.cancel(item.future)
        if withdrawn:
            with self._lock:
                self._outstanding -= len(withdrawn)
                idle = self._outstanding == 0
                if idle:
                    self._idle.notify_all()
            if idle and self._shutdown:
                self._release_when_idle()
        return len(withdrawn)

    def _watch(self, items: list[Item]) -> None:
        """Have the core report when these calls' results are in, in one request.
        (``submit`` does it inline for its one item: a change here goes there too.)"""
        by_id = {item.ref.id: item for item in items if item.ref is not None}
        if by_id:
            first = next(iter(by_id.values())).ref
            client_of([first]).watch(list(by_id), functools.partial(self._arrived, by_id))

    def _arrived(self, by_id: dict[int, Item], id_: int, value: Serialized) -> None:
        """A result is in (on the core's thread: only queue it; results are read and
        futures settled on the futures thread, in batches)."""
        item = by_id.pop(id_)
        if item.direct and not value.is_error and self._settle_unread(item, value):
            return
        with self._arrivals_lock:
            self._arrivals.append((item, value))
            if self._draining:
                return
            self._draining = True
        completer.submit(self._drain)

    def _settle_unread(self, item: Item, value: Serialized) -> bool:
        """Settle a ``map`` call's future with its result unread, here on the thread the
        result came in on: its consumer wakes straight from here, not through the futures
        thread. Only a value held whole in its bytes (no shared memory, no refs: it reads
        the same after the runtime is gone), and only if the executor's lock is free at
        once (its holder may be waiting for the core, whose thread this may be: see
        ``_cancel_items``). False: not settled, nothing changed."""
        if value.locations is not None or value.buffers or value.contained:
            return False
        if not self._lock.acquire(blocking=False):
            return False
        try:
            if item.done:
                return True  # withdrawn, or failed by a broken or terminated executor
            self._take_done(item)
            self._promote()
        finally:
            self._lock.release()
        item.future.detach()
        settle_future(item.future, Unread(value), None)
        item.ref = None
        if not self._lock.acquire(blocking=False):
            completer.submit(self._count_settled)
            return True
        try:
            idle = self._one_settled()
        finally:
            self._lock.release()
        if idle and self._shutdown:
            completer.submit(self._release_when_idle)  # it may wait: not on this thread
        return True

    def _take_done(self, item: Item) -> None:
        """``item`` has ended: no longer live, nor RUNNING (lock held; it was not done)."""
        item.done = True
        self._live.discard(item)
        if item.marked:
            self._marked -= 1

    def _drain(self) -> None:
        """Settle the futures of every result that has come in (the futures thread)."""
        try:
            self._drain_arrivals()
        except BaseException:
            with self._arrivals_lock:  # a bug here must not stop later results for good
                self._draining = False
            raise

    def _drain_arrivals(self) -> None:
        while True:
            with self._arrivals_lock:
                batch, self._arrivals = self._arrivals, []
                if not batch:
                    self._draining = False
                    return
            outcomes = [(item, *read_result(value)) for item, value in batch]
            with self._lock:
                live = []
                for outcome in outcomes:
                    item = outcome[0]
                    if item.done:
                        continue  # withdrawn, or failed by a broken or terminated executor
                    self._take_done(item)
                    live.append(outcome)
                self._promote()
            del batch, outcomes
            settled = 0
            try:
                for item, result, failure in live:
                    self._resolve(item, result, failure)
                    settled += 1
            finally:
                # Counted once for the batch: one lock section, not one per future.
                self._count_settled(settled)
            del live

    def _settle(self, item: Item, result: Any, exc: BaseException | None) -> None:
        """Resolve ``item``'s future (it is done: no longer live or pending) and count it."""
        self._resolve(item, result, exc)
        self._count_settled()

    def _resolve(self, item: Item, result: Any, exc: BaseException | None) -> None:
        """:meth:`_settle` without the count (the caller's)."""
        if exc is not None:
            if item.chunked and isinstance(item.future, ChunkFuture):
                item.future.keep_partial(exc)
            exc = _translate(exc)
            if isinstance(exc, ExecutorInitializerError):
                self._break(str(exc))
        item.future.detach()
        settle_future(item.future, result, exc)
        item.ref = None

    def _count_settled(self, settled: int = 1) -> None:
        """More futures settled: wake ``shutdown(wait=True)`` once none is left."""
        if not settled:
            return
        with self._lock:
            idle = self._one_settled(settled)
        if idle and self._shutdown:
            self._release_when_idle()

    def _one_settled(self, settled: int = 1) -> bool:
        """Count settled futures (lock held); True if none is outstanding now."""
        self._outstanding -= settled
        idle = self._outstanding == 0
        if idle:
            self._idle.notify_all()
        return idle

    def _break(self, message: str) -> None:
        """The initializer failed: fail every pending call and refuse new ones (stdlib)."""
        with self._lock:
            if self._broken is not None:
                return
            self._broken = message
        for item in self._take_live():
            if item.ref is not None:
                try:
                    cancel(item.ref)  # dequeued if waiting, interrupted if running
                except Exception:
                    pass
            self._settle(item, None, ExecutorInitializerError(message))

    def _take_live(self) -> list[Item]:
        """Every call not done yet, now done here (the caller settles their futures)."""
        with self._lock:
            items = list(self._live)
            self._live.clear()
            self._pending.clear()
            for item in items:
                item.done = True
                if item.marked:
                    self._marked -= 1
        return items

    def _release(self) -> None:
        with self._release_lock:  # held throughout: a second caller waits for the first
            if self._released:
                return
            self._released = True
            if self._owns_runtime:
                release_runtime()

    def _release_when_idle(self) -> None:
        """Release the runtime once idle, from a thread that is not one of actorlib's own."""
        if not self._owns_runtime:
            self._release()
            return
        with self._lock:
            if self._outstanding > 0 or self._released:
                return
        threading.Thread(
            target=self._release, name="actorlib-executor-release", daemon=True
        ).start()

    def __repr__(self) -> str:
        state = "shut down" if self._shutdown else "running"
        return f"<actorlib.Executor max_workers={self._max_workers} {state}>"
