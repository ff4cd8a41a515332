"""``actorlib.Executor``: a real ``concurrent.futures.Executor`` whose calls run as actorlib tasks.

A drop-in for ``ProcessPoolExecutor``::

    from actorlib import Executor as ProcessPoolExecutor

Built only on actorlib's public API (``remote``, ``.options``, ``cancel``,
``ObjectRef.future()``, ``init``/``shutdown``/``is_initialized``), so it runs unchanged on
every backend.

How it works. Submitted calls wait in the executor's own queue; at most ``max_workers``
of them are handed to actorlib at a time, as tasks. A future is PENDING (and
``cancel()`` succeeds) while its call waits in that queue, and RUNNING once handed over,
exactly like ``ProcessPoolExecutor``'s pending-work queue and call queue. Results arrive
through ``ObjectRef.future()``; each completion hands the next queued call over.

Per-worker set-up (``initializer``) runs inside the task, once per worker and executor,
before that worker's first task of this executor; ``max_tasks_per_child`` reruns it after
that many tasks on a worker (workers belong to the runtime and are not replaced, see
docs/migration.md).
"""

from __future__ import annotations

import concurrent.futures
import functools
import itertools
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

from actorlib.api import cancel, cluster_resources
from actorlib.exceptions import (
    BrokenExecutorError,
    ExecutorInitializerError,
    ExecutorShutdownError,
    ExecutorTimeoutError,
    ExecutorWorkerError,
    RuntimeClosedError,
    SerializationError,
    WorkerCrashedError,
)
from actorlib.executor_tasks import (
    CallTasks,
    ChunkFuture,
    InitializerFailed,
    Prepare,
    UnpicklableTasks,
    partial_results,
)
from actorlib.remote_function import RemoteFunction
from actorlib.runtime_lease import acquire_runtime, release_runtime
from actorlib.session import is_initialized

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
    """Errors at the executor boundary: worker deaths become ``BrokenExecutor`` too."""
    if isinstance(exc, InitializerFailed):
        err: BaseException = ExecutorInitializerError(str(getattr(exc, "cause", None) or exc))
    elif isinstance(exc, WorkerCrashedError) and not isinstance(exc, BrokenExecutorError):
        err = ExecutorWorkerError(*exc.args)
    else:
        return exc
    err.__cause__ = exc
    return err


# -- the executor ------------------------------------------------------------------------


class _Item:
    """One queued or running call (a chunk of calls for ``map`` with ``chunksize > 1``)."""

    __slots__ = ("args", "chunked", "future", "kwargs", "ref", "task")

    def __init__(
        self, future: Future[Any], task: RemoteFunction[Any, Any], args: tuple[Any, ...],
        kwargs: dict[str, Any], chunked: bool,
    ) -> None:
        self.future = future
        self.task = task
        self.args: tuple[Any, ...] | None = args
        self.kwargs: dict[str, Any] | None = kwargs
        self.chunked = chunked
        self.ref: Any = None


class Executor(concurrent.futures.Executor):
    """A ``concurrent.futures.Executor`` that runs each call as an actorlib task.

    If actorlib is not initialized, the executor starts a runtime on ``backend`` with
    ``num_cpus=max_workers`` (plus ``init_kwargs``) and stops it in ``shutdown()``;
    otherwise it uses the running one and leaves it running. Either way at most
    ``max_workers`` calls run at once.

    ``max_retries``: how often a call whose worker died is rerun (actorlib's task option).
    ``mp_context`` is accepted for ``ProcessPoolExecutor`` compatibility and ignored.
    """

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
        # No more than max_workers calls are handed to actorlib at a time. (Not more: a
        # task blocked in get() lends its CPU back, so the runtime's num_cpus alone would
        # not bound them.)
        self._window = max_workers
        self._token = uuid.uuid4().hex
        prepare: Prepare | None = None
        if initializer is not None:
            prepare = (self._token, initializer, tuple(initargs), max_tasks_per_child)
        self._prepare = prepare
        self._task_options: dict[str, Any] = {"num_cpus": 1, "max_retries": max_retries}
        # Weak keys: the executor keeps no submitted callable alive (a bound method, made
        # anew for each call, is therefore pickled anew each time, with its object's
        # state at submission, as the stdlib does).
        self._tasks: weakref.WeakKeyDictionary[Any, CallTasks] = weakref.WeakKeyDictionary()

        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._queue: deque[_Item] = deque()
        self._running: set[_Item] = set()
        self._inflight = 0
        self._outstanding = 0  # queued + running
        self._shutdown = False
        self._released = False
        self._release_lock = threading.Lock()
        self._broken: str | None = None
        self._pumping = threading.local()

    # -- public API --------------------------------------------------------------------

    @property
    def max_workers(self) -> int:
        return self._max_workers

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Schedule ``fn(*args, **kwargs)``; return a ``concurrent.futures.Future``."""
        return self._enqueue(self._tasks_for(fn).call, args, kwargs, False)

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
        if chunksize == 1:
            futures = [self._enqueue(tasks.call, args, {}, False) for args in calls]
            sizes = None
        else:
            futures, sizes = [], []
            for chunk in _batched(calls, chunksize):
                futures.append(self._enqueue(tasks.chunk(fn), (chunk,), {}, True))
                sizes.append(len(chunk))
        bar = _bar_for(futures, sizes) if progress else None
        return _results(futures, end, chunksize > 1, bar)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking calls; optionally cancel queued ones; optionally wait for the rest.

        A runtime the executor started is shut down once every call has finished.
        """
        with self._lock:
            self._shutdown = True
            dropped = list(self._queue) if cancel_futures else []
            if cancel_futures:
                self._queue.clear()
        for item in dropped:
            item.future.cancel()  # still PENDING: queued items were never handed over
        if dropped:
            with self._lock:
                self._outstanding -= len(dropped)
                self._idle.notify_all()
        if wait:
            with self._lock:
                while self._outstanding > 0:
                    self._idle.wait()
            self._release()
        else:
            self._release_when_idle()

    # -- for Pool ----------------------------------------------------------------------

    def _submit_chunk(self, fn: Callable[..., Any], chunk: list[tuple[Any, ...]]) -> Future[Any]:
        return self._enqueue(self._tasks_for(fn).chunk(fn), (chunk,), {}, True)

    def _terminate(self) -> None:
        """Cancel queued calls, interrupt running ones, stop at once (``Pool.terminate``)."""
        with self._lock:
            self._shutdown = True
            queued, running = self._take_pending()
        for item in queued:
            item.future.cancel()
        error = ExecutorShutdownError("the pool was terminated before this call finished")
        for item in running:
            if item.ref is not None:
                try:
                    cancel(item.ref, force=True)
                except Exception:
                    pass
            _settle_future(item.future, None, error)
        self._release()

    # -- internals ---------------------------------------------------------------------

    def _tasks_for(self, fn: Callable[..., Any]) -> CallTasks | UnpicklableTasks:
        if not callable(fn):
            raise TypeError(f"{fn!r} is not callable")
        if isinstance(fn, RemoteFunction):
            fn = fn._function
        try:
            tasks = self._tasks.get(fn)
        except TypeError:  # unhashable or not weakly referable: not cached
            tasks = None
        if tasks is not None:
            return tasks
        try:
            tasks = CallTasks(fn, self._prepare, self._task_options)
        except SerializationError:
            return UnpicklableTasks(fn, self._prepare, self._task_options)
        try:
            with self._lock:
                self._tasks[fn] = tasks
        except TypeError:
            pass
        return tasks

    def _enqueue(
        self, task: RemoteFunction[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any],
        chunked: bool,
    ) -> Future[Any]:
        future: Future[Any] = ChunkFuture() if chunked else Future()
        with self._lock:
            if self._broken is not None:
                raise BrokenExecutorError(self._broken)
            if self._shutdown:
                raise ExecutorShutdownError("cannot schedule new futures after shutdown")
            self._queue.append(_Item(future, task, args, kwargs, chunked))
            self._outstanding += 1
        self._pump()
        return future

    def _pump(self) -> None:
        """Hand queued calls to actorlib while fewer than the window are running."""
        local = self._pumping
        if getattr(local, "active", False):
            return  # re-entered from a done-callback: the outer loop carries on
        local.active = True
        try:
            while True:
                with self._lock:
                    if self._inflight >= self._window or not self._queue:
                        return
                    item = self._queue.popleft()
                    if not item.future.set_running_or_notify_cancel():
                        self._outstanding -= 1  # cancelled while queued: never runs
                        if self._outstanding == 0:
                            self._idle.notify_all()
                        continue
                    self._inflight += 1
                    self._running.add(item)
                self._launch(item)
        finally:
            local.active = False

    def _launch(self, item: _Item) -> None:
        try:
            if not is_initialized():
                raise RuntimeClosedError("actorlib was shut down under the executor")
            args, kwargs = item.args or (), item.kwargs or {}
            item.ref = item.task.remote(*args, **kwargs)
        except Exception as exc:
            self._done(item, None, exc)
            return
        item.args = item.kwargs = None
        item.ref.future().add_done_callback(functools.partial(self._on_done, item))

    def _on_done(self, item: _Item, ref_future: Future[Any]) -> None:
        exc = ref_future.exception()
        if exc is None:
            self._done(item, ref_future.result(), None)
        else:
            self._done(item, None, exc)
        self._pump()

    def _done(self, item: _Item, result: Any, exc: BaseException | None) -> None:
        if exc is not None:
            if item.chunked and isinstance(item.future, ChunkFuture):
                item.future.keep_partial(exc)
            exc = _translate(exc)
            if isinstance(exc, ExecutorInitializerError):
                self._break(str(exc))
        _settle_future(item.future, result, exc)
        item.ref = None
        with self._lock:
            self._inflight -= 1
            self._running.discard(item)
            self._outstanding -= 1
            idle = self._outstanding == 0
            if idle:
                self._idle.notify_all()
        if idle and self._shutdown:
            self._release_when_idle()

    def _break(self, message: str) -> None:
        """The initializer failed: fail every pending call and refuse new ones (stdlib)."""
        with self._lock:
            if self._broken is not None:
                return
            self._broken = message
            queued, running = self._take_pending()
        for item in queued:
            error = ExecutorInitializerError(message)
            if item.future.set_running_or_notify_cancel():
                item.future.set_exception(error)
        for item in running:
            if item.ref is not None:
                try:
                    cancel(item.ref)
                except Exception:
                    pass
            _settle_future(item.future, None, ExecutorInitializerError(message))

    def _take_pending(self) -> tuple[list[Any], list[Any]]:
        """Empty the queue (call with the lock held): the queued and the running calls."""
        queued = list(self._queue)
        self._queue.clear()
        self._outstanding -= len(queued)
        return queued, list(self._running)

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


def _settle_future(future: Future[Any], result: Any, exc: BaseException | None) -> None:
    try:
        if exc is None:
            future.set_result(result)
        else:
            future.set_exception(exc)
    except concurrent.futures.InvalidStateError:
        pass  # already failed (broken executor, terminate)


def _batched(iterable: Iterable[Any], n: int) -> Iterator[list[Any]]:
    it = iter(iterable)
    while True:
        chunk = list(itertools.islice(it, n))
        if not chunk:
            return
        yield chunk


def _results(
    futures: list[Future[Any]], end: float | None, chunked: bool, bar: Any
) -> Iterator[Any]:
    """Yield results in order; cancel what is left if the consumer stops early."""
    try:
        futures.reverse()
        while futures:
            future = futures[-1]
            try:
                value = future.result(None if end is None else end - time.monotonic())
            except concurrent.futures.TimeoutError as exc:
                if future.done():  # the call itself raised a TimeoutError
                    raise
                raise ExecutorTimeoutError(
                    "map() timed out waiting for the next result"
                ) from exc
            except Exception:
                futures.pop()
                partial = partial_results(future) if chunked else None
                if partial:
                    yield from partial
                raise
            futures.pop()
            del future
            if chunked:
                yield from value
            else:
                yield value
    finally:
        for future in futures:
            future.cancel()
        if bar is not None:
            bar.close()


def _bar_for(futures: list[Future[Any]], sizes: list[int] | None) -> Any:
    from actorlib.progress import make_bar

    total = len(futures) if sizes is None else sum(sizes)
    bar = make_bar(total=total, desc=None)
    lock = threading.Lock()

    def advance(n: int, _future: Future[Any]) -> None:
        with lock:
            bar.update(n)

    for i, future in enumerate(futures):
        future.add_done_callback(functools.partial(advance, 1 if sizes is None else sizes[i]))
    return bar

