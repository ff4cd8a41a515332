"""What :class:`actorlib.Executor` (and so :class:`actorlib.Pool`) runs as actorlib tasks.

For each callable, the remote functions that run it: one call, or a chunk of calls
(``map`` with ``chunksize > 1``, every ``Pool`` map). Their bodies run the executor's
``initializer`` first where a worker has not run it yet, and a chunk that fails carries
the results before its failing item back with the error, where :class:`ChunkFuture`
keeps them for whoever reads the results in order.

The bodies run in workers: this module imports nothing that a worker does not need
(not the executor and its ``concurrent.futures.process`` errors).
"""

from __future__ import annotations

import functools
import inspect
import itertools
import threading
import types
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import _base as futures_base
from typing import Any

from actorlib.api import remote
from actorlib.core.interruptible import DONE_STATES, FutureCondition
from actorlib.core.refs import ObjectRef
from actorlib.core.waiting import DrivenFuture
from actorlib.remote_function import RemoteFunction


class InitializerFailed(Exception):
    """Raised in a worker when the executor's initializer failed there."""


# -- what runs in the worker -------------------------------------------------------------

_worker_local = threading.local()
_PARTIAL = "_actorlib_chunk_results"

#: What a worker needs to run an executor's initializer: (executor token, initializer,
#: its arguments, ``max_tasks_per_child``).
Prepare = tuple[str, Callable[..., Any] | None, tuple[Any, ...], int | None]


def prepare_worker(
    token: str, initializer: Callable[..., Any] | None, initargs: tuple[Any, ...],
    max_tasks: int | None,
) -> None:
    """Run the initializer before this worker's first task of executor ``token``."""
    states: dict[str, list[Any]] | None = getattr(_worker_local, "states", None)
    if states is None:
        states = _worker_local.states = {}
    state = states.get(token)
    if state is not None and state[1] is not None:
        raise InitializerFailed(state[1])
    if state is None or (max_tasks is not None and state[0] >= max_tasks):
        if initializer is not None:
            try:
                initializer(*initargs)
            except Exception as exc:
                name = getattr(initializer, "__qualname__", repr(initializer))
                message = f"The executor's initializer {name} raised {type(exc).__name__}: {exc}"
                states[token] = [0, message]
                raise InitializerFailed(message) from exc
        state = states[token] = [0, None]
    state[0] += 1


def _name_of(fn: Any) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if isinstance(name, str):
        return name
    return type(fn).__name__


def _is_async(fn: Any) -> bool:
    target = fn.func if isinstance(fn, functools.partial) else fn
    return inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(
        getattr(target, "__call__", None)  # noqa: B004 - a callable instance's method
    )


def _make_call(
    fn: Callable[..., Any], box: list[Any], prepare: Prepare | None
) -> Callable[..., Any]:
    """The task body for ``fn``, which it reads from ``box`` (see ``_detached``)."""
    if _is_async(fn):
        async def call_async(*args: Any, **kwargs: Any) -> Any:
            if prepare is not None:
                prepare_worker(*prepare)
            result = await box[0](*args, **kwargs)
            if isinstance(result, _GENERATORS):
                _fail_generator(result)
            return result

        return call_async

    def call(*args: Any, **kwargs: Any) -> Any:
        if prepare is not None:
            prepare_worker(*prepare)
        result = box[0](*args, **kwargs)
        if isinstance(result, _GENERATORS):
            _fail_generator(result)
        return result

    return call


#: What a call may not return: a task returning one streams its items, but the stdlib's
#: pools fail the call (a generator does not pickle), and so does the executor.
_GENERATORS = (types.GeneratorType, types.AsyncGeneratorType)


def _fail_generator(result: Any) -> None:
    raise TypeError(f"cannot pickle {type(result).__name__!r} object")


def _note_partial(exc: BaseException, done: list[Any]) -> None:
    """Attach the chunk's results before the failing item to the error (it crosses back)."""
    try:
        setattr(exc, _PARTIAL, done)
    except Exception:
        pass


def _make_chunk(
    fn: Callable[..., Any], box: list[Any], prepare: Prepare | None
) -> Callable[..., Any]:
    """The task body for a chunk of calls of ``fn``, read from ``box`` (see ``_detached``).

    ``spread``: each item is a tuple of arguments; else each item is the one argument
    (``map`` over one iterable: a tuple per item would cost more to build and pickle,
    on both sides, than the call itself).
    """
    if _is_async(fn):
        async def chunk_async(chunk: list[Any], spread: bool = True) -> list[Any]:
            if prepare is not None:
                prepare_worker(*prepare)
            done: list[Any] = []
            for args in chunk:
                try:
                    done.append(await (box[0](*args) if spread else box[0](args)))
                except Exception as exc:
                    _note_partial(exc, done)
                    raise
            return done

        return chunk_async

    def chunk_sync(chunk: list[Any], spread: bool = True) -> list[Any]:
        if prepare is not None:
            prepare_worker(*prepare)
        fn = box[0]
        done: list[Any] = []
        try:
            if spread:  # (``starmap``: an item that is no iterable fails as in the stdlib)
                for value in itertools.starmap(fn, chunk):
                    done.append(value)
            else:
                for arg in chunk:  # one argument each, sent bare: no tuple per item
                    done.append(fn(arg))
        except Exception as exc:
            _note_partial(exc, done)
            raise
        return done

    return chunk_sync


# -- what comes back ---------------------------------------------------------------------


class ExecutorFuture(DrivenFuture):
    """The future of an executor's call: while the call may still be withdrawn,
    ``cancel`` asks the executor (``attach``), so a cancelled call never runs; then the
    stdlib's ``cancel`` again (``detach``). Attributes, not a bound callable per future:
    an executor keeps a future per call in flight. Its call's ref settles it (``sim``
    waits for that ref first: :class:`~actorlib.core.waiting.DrivenFuture`)."""

    def __init__(self) -> None:
        super().__init__()
        self._executor: Any = None
        self._item: Any = None

    def attach(self, executor: Any, item: Any) -> None:
        """``cancel`` asks ``executor._cancel(item)`` from now on (the call is submitted)."""
        self._executor = executor
        self._item = item

    def detach(self) -> None:
        """``cancel`` is the stdlib's again (settling calls it, or the call has ended)."""
        self._executor = self._item = None

    def settling_ref(self) -> ObjectRef[Any] | None:
        item = self._item
        return None if item is None else item.ref

    def cancel(self) -> bool:
        executor = self._executor
        if executor is None:
            return super().cancel()
        return bool(executor._cancel(self._item))


class MapFuture(ExecutorFuture):
    """The future of one call of ``map`` (``chunksize=1``), read by map's own iterator
    alone: a lighter one, since a ``map`` of 10,000 items makes 10,000.

    Every future of one ``map`` shares one condition (the iterator waits on one future at
    a time), so none makes a lock of its own; marking it RUNNING, settling it and reading
    a result already in take that lock at most, with no Python frame of the condition's,
    and a settle wakes the iterator only if it waits. Anything else (a cancel, an error,
    ``concurrent.futures.wait``, callbacks) takes the stdlib's own code, as on any future.
    """

    def __init__(self, condition: FutureCondition) -> None:
        # Future.__init__'s attributes (a test checks they are all here), the map's condition
        self._condition = condition
        self._shared = condition  # (the same, typed as what it is)
        self._state = futures_base.PENDING
        self._result = None
        self._exception = None
        self._waiters: list[Any] = []
        self._done_callbacks: list[Any] = []
        self._executor: Any = None
        self._item: Any = None

    def set_running_or_notify_cancel(self) -> bool:
        with self._shared:
            if self._state == futures_base.PENDING:
                self._state = futures_base.RUNNING
                return True
        return super().set_running_or_notify_cancel()  # cancelled: the stdlib's answer

    def set_result(self, result: Any) -> None:
        condition = self._shared
        with condition:
            plain = self._state in _NOT_DONE and not self._waiters
            if plain:
                self._result = result
                self._state = futures_base.FINISHED
                if condition._waiters:  # the iterator waits (for this one or another)
                    condition.notify_all()
        if not plain:  # done already (its InvalidStateError), or wait() watches it
            super().set_result(result)
        elif self._done_callbacks:
            self._invoke_callbacks()  # type: ignore[attr-defined]

    def _waited(self, timeout: float | None) -> float | None:
        left = super()._waited(timeout)
        if self._state in DONE_STATES:
            return left
        # Not the main thread (whose wait above ended only when done or timed out): the
        # stdlib's one wait on the condition would take another future's wake-up for a
        # time-out, since the condition is shared. Wait until this one is done.
        with self._condition:
            self._condition.wait_for(self.done, left)
        return 0


#: A future's states before it is done.
_NOT_DONE = frozenset({futures_base.PENDING, futures_base.RUNNING})


class ChunkFuture(ExecutorFuture):
    """A chunk's future; ``partial`` holds the results before a failing item."""

    partial: list[Any] | None = None

    def keep_partial(self, exc: BaseException) -> None:
        """Keep the results the failed chunk carried back (and take them off ``exc``)."""
        found = exc.__dict__.pop(_PARTIAL, None)
        cause = getattr(exc, "cause", None)
        if isinstance(cause, BaseException):
            from_cause = cause.__dict__.pop(_PARTIAL, None)
            if found is None:
                found = from_cause
        self.partial = found if isinstance(found, list) else None


def partial_results(future: Future[Any]) -> list[Any] | None:
    """The results before the failing item, if ``future`` is a failed chunk's."""
    return future.partial if isinstance(future, ChunkFuture) else None


# -- the remote functions, per callable --------------------------------------------------


def _detached(
    make: Callable[..., Callable[..., Any]], fn: Callable[..., Any],
    prepare: Prepare | None, options: dict[str, Any],
) -> RemoteFunction[Any, Any]:
    """A remote function running ``make``'s body for ``fn``, holding no reference to ``fn``.

    The body reads ``fn`` from a one-item list; it is pickled (with ``fn``) now, then the
    list is emptied: the cached remote function keeps the pickled bytes, not ``fn`` or
    what ``fn`` holds, so a callable the caller dropped is freed (the stdlib executors
    keep none either). Raises ``SerializationError`` if ``fn`` cannot be pickled.
    """
    box: list[Any] = [fn]
    task = remote(make(fn, box, prepare)).options(name=_name_of(fn), **options)
    try:
        task._code.freeze()
    finally:
        box.clear()
    return task


class CallTasks:
    """The remote functions the executor uses for one callable (made once, cached)."""

    __slots__ = ("__weakref__", "_chunk", "call", "options", "prepare")

    def __init__(
        self, fn: Callable[..., Any], prepare: Prepare | None, options: dict[str, Any]
    ) -> None:
        self.prepare = prepare
        self.options = options
        self.call = _detached(_make_call, fn, prepare, options)
        self._chunk: RemoteFunction[Any, Any] | None = None

    def chunk(self, fn: Callable[..., Any]) -> RemoteFunction[Any, Any]:
        """The chunked form, made on first use from ``fn`` (the caller's, in hand)."""
        if self._chunk is None:
            self._chunk = _detached(_make_chunk, fn, self.prepare, self.options)
        return self._chunk


class FailingTasks:
    """Stands in for :class:`CallTasks` when ``fn`` cannot be pickled, or is not callable:
    each call then fails its future with the ``SerializationError``, or the ``TypeError``
    calling it raises, as ``ProcessPoolExecutor`` and ``multiprocessing.Pool`` fail it
    (``submit`` itself does not raise; ``map`` over nothing returns nothing)."""

    def __init__(self, fn: Any, prepare: Prepare | None, options: dict[str, Any]) -> None:
        self._fn, self._prepare, self._options = fn, prepare, options

    @property
    def call(self) -> Any:
        return self._remote(_make_call)

    def chunk(self, fn: Any) -> Any:
        return self._remote(_make_chunk)

    def _remote(self, make: Callable[..., Callable[..., Any]]) -> Any:
        fn = self._fn
        if not callable(fn):
            return _NotCallable(fn)
        return remote(make(fn, [fn], self._prepare)).options(name=_name_of(fn), **self._options)


class _NotCallable:
    """The remote function of ``fn``, not callable: ``remote()`` raises the ``TypeError``
    calling ``fn`` raises (which fails the call's future)."""

    def __init__(self, fn: Any) -> None:
        self._name = type(fn).__name__

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"{self._name!r} object is not callable")
