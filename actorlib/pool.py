"""``actorlib.Pool``: ``multiprocessing.Pool``'s API on actorlib tasks.

A drop-in for ``multiprocessing.Pool``::

    from actorlib import Pool

    with Pool(4) as pool:
        print(pool.map(f, range(10)))

Built on :class:`actorlib.Executor` (so it starts a runtime of its own when actorlib is not
initialized, or shares the running one). Differences from ``multiprocessing`` are listed
in docs/migration.md.
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, FIRST_EXCEPTION, CancelledError, Future
from concurrent.futures.process import _RemoteTraceback
from typing import Any, Generic, TypeVar

from actorlib.core import interruptible
from actorlib.core.waiting import drive_futures
from actorlib.exceptions import ExecutorShutdownError, GetTimeoutError
from actorlib.executor import Executor
from actorlib.executor_results import read_unread, wait_futures
from actorlib.executor_tasks import partial_results

__all__ = ["ApplyResult", "AsyncResult", "IMapIterator", "MapResult", "Pool", "PoolTimeoutError"]

T = TypeVar("T")

_RUN, _CLOSE, _TERMINATE = "RUN", "CLOSE", "TERMINATE"


def _sequence(iterable: Iterable[Any]) -> Sequence[Any]:
    """A map's items, in hand: a list or a range as given, anything else in a list."""
    return iterable if isinstance(iterable, (list, range)) else list(iterable)


class PoolTimeoutError(GetTimeoutError, multiprocessing.TimeoutError):
    """``AsyncResult.get(timeout)``/``IMapIterator.next(timeout)`` gave up waiting.

    Also a ``multiprocessing.TimeoutError`` and a builtin ``TimeoutError``.
    """


def _pool_error(exc: BaseException) -> BaseException:
    """A call's error as the pool raises it: a call's own error carries its remote
    traceback as ``multiprocessing.pool.RemoteTraceback``, as multiprocessing's does
    (the executor's is ``concurrent.futures``')."""
    if isinstance(exc, CancelledError):
        return ExecutorShutdownError("the pool was terminated before this call finished")
    cause = exc.__cause__
    if isinstance(cause, _RemoteTraceback):
        from multiprocessing.pool import (  # type: ignore[attr-defined]  # (not in typeshed)
            RemoteTraceback,  # on the first error only
        )

        exc.__cause__ = RemoteTraceback(cause.tb)
    return exc


class ApplyResult(Generic[T]):
    """The result of ``apply_async`` (``multiprocessing.pool.AsyncResult``'s API).

    Callbacks run before the result is marked ready, as in ``multiprocessing``: once
    ``get()`` returns, the callback has been called.
    """

    def __init__(
        self, callback: Callable[[T], object] | None,
        error_callback: Callable[[BaseException], object] | None,
    ) -> None:
        self._event = threading.Event()
        self._set_lock = threading.Lock()
        self._settled = False
        self._callback = callback
        self._error_callback = error_callback
        self._value: Any = None
        self._error: BaseException | None = None
        #: The futures that settle it (``wait`` drives them first on ``sim``).
        self._sources: list[Future[Any]] = []

    def _set(self, value: Any, error: BaseException | None) -> None:
        with self._set_lock:
            if self._settled:
                return
            self._settled = True
        self._value, self._error = value, error
        self._sources = []  # (no cycle through a future's callbacks)
        try:
            if error is None:
                if self._callback is not None:
                    self._callback(value)
            elif self._error_callback is not None:
                self._error_callback(error)
        finally:
            self._event.set()

    def _from_future(self, future: Future[Any]) -> None:
        try:
            value = future.result()
        except BaseException as exc:
            self._set(None, _pool_error(exc))
        else:
            self._set(value, None)

    def ready(self) -> bool:
        return self._event.is_set()

    def successful(self) -> bool:
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return self._error is None

    def wait(self, timeout: float | None = None) -> None:
        if not self._event.is_set():
            timeout = drive_futures(self._sources, FIRST_EXCEPTION, timeout)
        interruptible.wait(self._event, timeout)  # on the main thread: Ctrl-C gets in

    def get(self, timeout: float | None = None) -> T:
        self.wait(timeout)
        if not self.ready():
            raise PoolTimeoutError(f"the result was not ready within {timeout} s")
        if self._error is not None:
            raise self._error
        return self._value


AsyncResult = ApplyResult


class MapResult(ApplyResult[list[T]]):
    """The result of ``map_async``/``starmap_async``: a list, or the first error."""

    def __init__(
        self, futures: list[Future[Any]], callback: Callable[[list[T]], object] | None,
        error_callback: Callable[[BaseException], object] | None,
    ) -> None:
        super().__init__(callback, error_callback)
        self._futures = self._sources = futures
        self._left = len(futures)
        self._lock = threading.Lock()
        if not futures:
            self._set([], None)
        for future in futures:
            future.add_done_callback(self._chunk_done)

    def _chunk_done(self, future: Future[Any]) -> None:
        if future.cancelled() or future.exception() is not None:
            exc = CancelledError() if future.cancelled() else future.exception()
            assert exc is not None
            # Like multiprocessing: the first failure settles the whole map at once;
            # the chunks not started yet are not run.
            self._set(None, _pool_error(exc))
            for other in self._futures:
                other.cancel()
            return
        with self._lock:
            self._left -= 1
            last = self._left == 0
        if last:
            values: list[Any] = []
            for f in self._futures:
                values.extend(f.result())
            self._set(values, None)


class IMapIterator(Iterator[T]):
    """``imap``/``imap_unordered``'s iterator, with ``next(timeout)`` like multiprocessing's.

    The input is read lazily: a bounded number of chunks is kept in flight, so infinite
    or huge iterables work with bounded memory.
    """

    def __init__(
        self, pool: Pool, fn: Callable[..., Any], iterable: Iterable[Any], chunksize: int,
        ordered: bool, star: bool, bar: Any = None,
    ) -> None:
        self._pool = pool
        self._fn = fn
        try:
            self._source: Iterator[Any] = iter(iterable)
        except TypeError as exc:  # not iterable: raised by the first next(), as in multiprocessing
            self._source = _raising(exc)
        self._chunksize = chunksize
        self._ordered = ordered
        self._star = star
        self._bar = bar
        self._lookahead = max(4, 2 * pool._processes)
        self._inflight: deque[Future[Any]] = deque()
        self._completed: queue.SimpleQueue[Future[Any]] = queue.SimpleQueue()
        self._buffer: deque[Any] = deque()
        self._exhausted = False
        self._finished = False
        self._pending_error: BaseException | None = None
        self._lock = threading.Lock()
        self._fill()

    def _fill(self) -> None:
        while not self._exhausted and len(self._inflight) < self._lookahead:
            chunk = []
            failed: Exception | None = None
            try:
                for item in self._source:
                    chunk.append(_star_args(item) if self._star else item)
                    if len(chunk) >= self._chunksize:
                        break
            except Exception as exc:
                # Like multiprocessing: the input's error takes the next item's place,
                # after the results of the items read before it; then the input ends.
                failed = exc
            if not chunk and failed is None:
                self._exhausted = True
                return
            if len(chunk) < self._chunksize:
                self._exhausted = True
            if chunk:
                self._track(self._pool._executor._submit_chunk(self._fn, chunk, self._star),
                            len(chunk))
            if failed is not None:
                error: Future[Any] = Future()
                error.set_exception(failed)
                self._track(error, 0)

    def _track(self, future: Future[Any], size: int) -> None:
        """``future`` (of a chunk of ``size`` items) is in flight, read in its turn."""
        if self._bar is not None and size:
            future.add_done_callback(_advance(self._bar, size))
        if not self._ordered:
            future.add_done_callback(self._completed.put)
        self._inflight.append(future)

    def __iter__(self) -> IMapIterator[T]:
        return self

    def __next__(self) -> T:
        return self.next()

    def next(self, timeout: float | None = None) -> T:
        with self._lock:
            if self._buffer:
                return self._buffer.popleft()
            if self._pending_error is not None:
                error, self._pending_error = self._pending_error, None
                raise error
            if self._finished or (not self._inflight and self._exhausted):
                self._close_bar()
                raise StopIteration
            if self._ordered:
                future = self._inflight[0]
                try:
                    future.exception(timeout)  # an InterruptibleFuture: Ctrl-C gets in
                except TimeoutError:
                    raise PoolTimeoutError(
                        f"the next result was not ready within {timeout} s"
                    ) from None
                except CancelledError:
                    pass
                self._inflight.popleft()
            else:
                if self._completed.empty():  # (sim) the calls run only while one waits
                    timeout = drive_futures(self._inflight, FIRST_COMPLETED, timeout)
                try:
                    future = interruptible.get(self._completed, timeout)
                except queue.Empty:
                    raise PoolTimeoutError(
                        f"no result was ready within {timeout} s"
                    ) from None
                self._inflight.remove(future)
            self._fill()
            if future.cancelled() or future.exception() is not None:
                exc = _pool_error(
                    CancelledError() if future.cancelled() else future.exception()  # type: ignore[arg-type]
                )
                partial = partial_results(future)
                if self._chunksize > 1:
                    # Like multiprocessing: a failed chunk ends a chunked iteration.
                    self._finished = True
                    for other in self._inflight:
                        other.cancel()
                    self._close_bar()
                if partial:
                    self._buffer.extend(partial)
                    self._pending_error = exc
                    return self._buffer.popleft()
                raise exc
            values = future.result()
            self._buffer.extend(values)
            return self._buffer.popleft()

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _raising(exc: Exception) -> Iterator[Any]:
    """An input that raises ``exc`` when read."""
    raise exc
    yield  # a generator


def _apply_as_given(
    func: Callable[..., Any], args: Any, kwds: Any,
) -> Any:
    """``func(*args, **kwds)`` in the worker, for ``args`` (``kwds``) that are no sequence
    (mapping): its ``TypeError`` is the call's, raised by its result, as in
    multiprocessing."""
    return func(*args, **kwds)


def _star_args(item: Any) -> Any:
    """``starmap``'s item as a tuple of arguments; as given if it is not iterable (the
    worker's call raises its ``TypeError``, as multiprocessing's does)."""
    try:
        return tuple(item)
    except TypeError:
        return item


def _advance(bar: Any, n: int) -> Callable[[Future[Any]], None]:
    lock = threading.Lock()

    def advance(_future: Future[Any]) -> None:
        with lock:
            bar.update(n)

    return advance


class _PoolExecutor(Executor):
    """A pool's executor: its calls do not hold the interpreter's exit up (multiprocessing
    terminates a pool at exit, its work unfinished)."""

    _waits_at_exit = False


class Pool:
    """``multiprocessing.Pool`` on actorlib: ``processes`` calls run at once.

    Extra keyword arguments (``backend=``, and ``init()`` arguments) apply when the pool
    starts its own runtime. ``context`` is accepted for compatibility and ignored.
    """

    def __init__(
        self,
        processes: int | None = None,
        initializer: Callable[..., Any] | None = None,
        initargs: Iterable[Any] = (),
        maxtasksperchild: int | None = None,
        context: Any = None,
        *,
        backend: str | None = None,
        **init_kwargs: Any,
    ) -> None:
        if processes is not None:
            if isinstance(processes, bool) or not isinstance(processes, int):
                raise TypeError(f"processes must be an int, got {processes!r}")
            if processes < 1:
                raise ValueError("Number of processes must be at least 1")
        if maxtasksperchild is not None and (
            isinstance(maxtasksperchild, bool) or not isinstance(maxtasksperchild, int)
            or maxtasksperchild <= 0
        ):
            raise ValueError("maxtasksperchild must be a positive int or None")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        self._executor = _PoolExecutor(
            processes, backend=backend, initializer=initializer, initargs=tuple(initargs),
            max_tasks_per_child=maxtasksperchild, **init_kwargs,
        )
        self._processes = self._executor.max_workers
        self._state = _RUN

    # -- state -------------------------------------------------------------------------

    def _check_running(self) -> None:
        if self._state != _RUN:
            raise ValueError("Pool not running")

    def close(self) -> None:
        """No more work may be submitted; ``join()`` then waits for what was."""
        if self._state == _RUN:
            self._state = _CLOSE

    def terminate(self) -> None:
        """Stop at once: queued calls are dropped, running ones interrupted."""
        self._state = _TERMINATE
        self._executor._terminate()

    def join(self) -> None:
        """Wait for all submitted work (after ``close()`` or ``terminate()``)."""
        if self._state == _RUN:
            raise ValueError("Pool is still running")
        self._executor.shutdown(wait=True)

    def __enter__(self) -> Pool:
        self._check_running()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.terminate()

    def __repr__(self) -> str:
        return f"<actorlib.Pool state={self._state} processes={self._processes}>"

    # -- apply -------------------------------------------------------------------------

    def apply(
        self, func: Callable[..., T], args: Iterable[Any] = (),
        kwds: Mapping[str, Any] | None = None,
    ) -> T:
        return self.apply_async(func, args, kwds).get()

    def apply_async(
        self, func: Callable[..., T], args: Iterable[Any] = (),
        kwds: Mapping[str, Any] | None = None,
        callback: Callable[[T], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
    ) -> ApplyResult[T]:
        self._check_running()
        result: ApplyResult[T] = ApplyResult(callback, error_callback)
        try:
            call_args, call_kwds = tuple(args), dict(kwds or {})
        except (TypeError, ValueError):
            future = self._executor.submit(_apply_as_given, func, args, kwds or {})
        else:
            future = self._executor.submit(func, *call_args, **call_kwds)
        result._sources = [future]
        future.add_done_callback(result._from_future)
        return result

    # -- map ---------------------------------------------------------------------------

    def _chunks(self, items: Sequence[Any], chunksize: int | None, star: bool) -> list[Any]:
        """``items`` in chunks; for ``starmap`` each item a tuple of arguments, else the
        item itself (the worker calls ``func(item)``: see ``executor_tasks._make_chunk``).
        A ``range``'s chunks are ranges: three numbers each to send, not the items."""
        if chunksize is None:
            chunksize, extra = divmod(len(items), self._processes * 4)
            if extra:
                chunksize += 1
        if chunksize < 1 and items:
            raise ValueError(f"Chunksize must be 1+, not {chunksize}")
        calls = [_star_args(x) for x in items] if star else items
        return [calls[i:i + chunksize] for i in range(0, len(calls), max(chunksize, 1))]

    def _map_async(
        self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: int | None,
        star: bool, callback: Any, error_callback: Any, progress: bool = False,
    ) -> MapResult[Any]:
        self._check_running()
        items = _sequence(iterable)
        chunks = self._chunks(items, chunksize, star)
        submit = self._executor._submit_chunk
        futures = [submit(func, chunk, star) for chunk in chunks]
        result: MapResult[Any] = MapResult(futures, callback, error_callback)
        if progress:
            from actorlib.progress import make_bar

            bar = make_bar(total=len(items))
            for future, chunk in zip(futures, chunks, strict=True):
                future.add_done_callback(_advance(bar, len(chunk)))
            result.wait()  # map() blocks anyway
            bar.close()
        return result

    def map(
        self, func: Callable[..., T], iterable: Iterable[Any], chunksize: int | None = None,
        *, progress: bool = False,
    ) -> list[T]:
        """``[func(x) for x in iterable]`` in parallel; raises the first error."""
        if progress:
            return self._map_async(func, iterable, chunksize, False, None, None, True).get()
        return self._map_now(func, iterable, chunksize, False)

    def _map_now(
        self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: int | None,
        star: bool,
    ) -> list[Any]:
        """``map``/``starmap``: as ``map_async(...).get()``, but the caller, who waits for
        every chunk anyway, reads their results itself, with no hop through the futures
        thread. The first failure ends the map at once; chunks not started are not run."""
        self._check_running()
        items = _sequence(iterable)
        chunks = self._chunks(items, chunksize, star)
        futures = self._executor._submit_chunks(func, chunks, star)
        wait_futures(futures, FIRST_EXCEPTION)  # on the main thread: Ctrl-C gets in
        for future in futures:
            if future.done() and (future.cancelled() or future.exception() is not None):
                exc = CancelledError() if future.cancelled() else future.exception()
                assert exc is not None
                for other in futures:
                    other.cancel()
                raise _pool_error(exc)
        values: list[Any] = []
        for future in futures:
            values.extend(read_unread(future.result()))
        return values

    def map_async(
        self, func: Callable[..., T], iterable: Iterable[Any], chunksize: int | None = None,
        callback: Callable[[list[T]], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
    ) -> MapResult[T]:
        return self._map_async(func, iterable, chunksize, False, callback, error_callback)

    def starmap(
        self, func: Callable[..., T], iterable: Iterable[Iterable[Any]],
        chunksize: int | None = None,
    ) -> list[T]:
        """``[func(*args) for args in iterable]`` in parallel."""
        return self._map_now(func, iterable, chunksize, True)

    def starmap_async(
        self, func: Callable[..., T], iterable: Iterable[Iterable[Any]],
        chunksize: int | None = None,
        callback: Callable[[list[T]], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
    ) -> MapResult[T]:
        return self._map_async(func, iterable, chunksize, True, callback, error_callback)

    def _imap(
        self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: int,
        ordered: bool, progress: bool,
    ) -> IMapIterator[Any]:
        self._check_running()
        if isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1:
            raise ValueError(f"Chunksize must be 1+, not {chunksize!r}")
        bar = None
        if progress:
            from actorlib.progress import make_bar

            try:
                total: int | None = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                total = None
            bar = make_bar(total=total)
        return IMapIterator(self, func, iterable, chunksize, ordered, False, bar)

    def imap(
        self, func: Callable[..., T], iterable: Iterable[Any], chunksize: int = 1,
        *, progress: bool = False,
    ) -> IMapIterator[T]:
        """Results in order, lazily; the input is read as results are consumed."""
        return self._imap(func, iterable, chunksize, True, progress)

    def imap_unordered(
        self, func: Callable[..., T], iterable: Iterable[Any], chunksize: int = 1,
        *, progress: bool = False,
    ) -> IMapIterator[T]:
        """Results in completion order, lazily."""
        return self._imap(func, iterable, chunksize, False, progress)

