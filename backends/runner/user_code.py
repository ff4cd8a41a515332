"""Running user code, whatever hosts it: the steps around one task or call.

Load the code (unpickled once per worker, :class:`CodeCache`), unpack the arguments
(top-level refs replaced by their values, :func:`build_args`), call it (driving an
``async def`` on the thread's own loop, :func:`run_sync_or_async`) with its
``runtime_env["env_vars"]`` applied (:func:`env_vars`), then pack the results or the
error with its traceback (:func:`pack_results`, :func:`pack_error`). Shared so that the
thread and process backends cannot drift apart in semantics; the process backend and the
cluster's head use :func:`pack_error` for failures they report themselves.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import traceback
from collections.abc import Iterator
from pickle import dumps as _dumps
from types import CoroutineType
from typing import TYPE_CHECKING, Any

from actorlib.backends.base import ObjectStore
from actorlib.core.serialization import (
    PLAIN_SCALARS,
    Serialized,
    deserialize,
    loads_function,
    serialize,
)
from actorlib.core.specs import Args, CodeRef, Dep, RetryExceptions
from actorlib.exceptions import SerializationError, TaskCancelledError, TaskError, _text_of

if TYPE_CHECKING:
    # Only ``async def`` code needs asyncio: a process that runs plain functions never
    # imports it (nor ssl, which it brings).
    import asyncio


log = logging.getLogger("actorlib")


class _Pid:
    """This process's id, read per task without a system call (kept right across fork),
    and how many forks away from the process that imported this module it is.

    One instance (``PID``), not class attributes: CPython 3.11 specializes no attribute
    read of a class, and every task and call reads these."""

    __slots__ = ("forks", "value")

    def __init__(self) -> None:
        self.value = os.getpid()
        self.forks = 0

    def refresh(self) -> None:
        self.value = os.getpid()
        self.forks += 1


PID = _Pid()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=PID.refresh)


def leave_forked_child(failure: BaseException | None) -> None:
    """End a process that user code forked (``os.fork()`` without ``exec``) as it comes
    back out of that code, as ``multiprocessing`` ends its forked children.

    Called where a task, an actor call or a constructor ends, when ``PID.forks`` changed
    while it ran: the process is then a copy of the one that runs the work, and going on
    would report the work's outcome a second time (the child's, perhaps first) and, in a
    worker process, serve that worker's messages beside it. The exit status is that of
    the ``SystemExit`` raised (``sys.exit(3)``: 3), 1 after another exception (its
    traceback on stderr), 0 when the code returned.
    """
    code: Any = 0
    if isinstance(failure, SystemExit):
        code = failure.code
        if code is None:
            code = 0
        elif not isinstance(code, int):
            print(code, file=sys.stderr)
            code = 1
    elif failure is not None:
        traceback.print_exception(failure)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # closed or replaced by the user code: nothing to keep
            pass
    os._exit(code)


class CodeCache:
    """Functions and classes by id: unpickled once per worker, then reused."""

    def __init__(self) -> None:
        #: Unpickled, by id (read directly on the hot paths: a hit needs no call).
        self.loaded: dict[int, Any] = {}
        self._blobs: dict[int, bytes] = {}  # received, not unpickled yet

    def remember(self, code: CodeRef) -> None:
        """Keep the code a message brought, whether or not that work ever runs: code is
        sent once per worker, and the message may be for a task cancelled or recalled
        before it started."""
        if code.blob and code.id not in self.loaded:
            self._blobs.setdefault(code.id, code.blob)

    def load(self, code: CodeRef) -> Any:
        obj = self.loaded.get(code.id)
        if obj is None:
            blob = code.blob or self._blobs[code.id]
            obj = self.loaded[code.id] = loads_function(blob)
            self._blobs.pop(code.id, None)
        return obj


def build_args(args: Args, deps: list[Serialized]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if args.payload is None:
        return (), {}
    positional, keywords = deserialize(args.payload)
    if args.deps:
        return _with_deps(positional, keywords, deps)
    return positional, keywords


def _with_deps(
    positional: tuple[Any, ...], keywords: dict[str, Any], deps: list[Serialized]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``build_args``'s arguments with their refs' values in place (apart: the
    comprehensions' cell would be made on every task, with deps or not)."""
    values = [deserialize(d) for d in deps]
    positional = tuple(values[a.index] if type(a) is Dep else a for a in positional)
    keywords = {k: values[v.index] if type(v) is Dep else v for k, v in keywords.items()}
    return positional, keywords


class Packed:
    """Results already stored, one by one (a generator with an int ``num_returns``)."""

    __slots__ = ("values",)

    def __init__(self, values: list[Serialized]) -> None:
        self.values = values


def serialize_result(value: Any, label: str = "value") -> Serialized:
    """``serialize(value)`` for a result or an item a runner packs.

    The user's pickling code (a ``__reduce__``) raising ``KeyboardInterrupt``,
    ``SystemExit`` or another ``BaseException`` is a ``SerializationError`` naming the
    value: escaping, it would end the runner packing the result (a dead worker thread,
    an outcome never made) rather than fail the task."""
    try:
        return serialize(value, label=label)
    except Exception:
        raise
    except BaseException as exc:
        raise SerializationError(
            f"Could not serialize {label} of type {type(value).__name__}: pickling it "
            f"raised {exc!r}"
        ) from exc


def pack_results(
    result: Any, num_returns: int, name: str, store: ObjectStore
) -> list[Serialized]:
    """Serialize the return value(s) into ``store``-owned memory (results are copies)."""
    if type(result) is Packed:
        return result.values
    if num_returns == 1:
        if type(result) in PLAIN_SCALARS:
            # ``serialize``'s plainest case, without its frame (most results): nothing
            # out of band, nothing for the store to keep
            return [Serialized(_dumps(result, 5), (), (), False)]
        try:
            value = serialize(result)
        except BaseException:  # again, to name the result in the error (rare)
            value = serialize_result(result, f"the result of {name}")
        # Without out-of-band buffers (nearly every result) a store has nothing to keep:
        # every ``seal`` returns such a value as it is, so it is not called.
        return [store.seal(value) if value.buffers else value]
    if num_returns == 0:
        return []
    return _pack_several(result, num_returns, name, store)


def _pack_several(
    result: Any, num_returns: int, name: str, store: ObjectStore
) -> list[Serialized]:
    """``pack_results`` of several returns (apart: its comprehension's cells would be
    made on every task)."""
    try:
        items = list(result)
    except TypeError:
        items = None
    if items is None or len(items) != num_returns:
        got = "a non-iterable" if items is None else f"{len(items)} values"
        raise ValueError(f"{name} has num_returns={num_returns} but returned {got}")
    return [
        store.seal(serialize_result(item, f"result {i} of {name}"))
        for i, item in enumerate(items)
    ]


def _user_traceback(exc: BaseException) -> str:
    tb = exc.__traceback__
    # Drop actorlib's own frames above the user's code.
    while tb is not None and tb.tb_frame.f_globals.get("__name__", "").startswith(
        ("actorlib.", "backends.")
    ):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__))


def _is_asyncio_cancel(exc: BaseException) -> bool:
    asyncio = sys.modules.get("asyncio")  # none can have been raised without it
    return asyncio is not None and isinstance(exc, asyncio.CancelledError)


def _round_trip(error: TaskError) -> Serialized:
    """``error`` serialized, once it is known to deserialize (``SerializationError``).

    The user's pickling code (a ``__reduce__``) raising ``KeyboardInterrupt``,
    ``SystemExit`` or another ``BaseException`` is a ``SerializationError`` too: escaping
    here, it would end the runner packing the error, and the result would never come."""
    try:
        packed = serialize(error, is_error=True)
        deserialize(packed)
    except SerializationError:
        raise
    except BaseException as exc:
        raise SerializationError(f"pickling the error raised {exc!r}") from exc
    return packed


def pack_error(
    exc: BaseException, name: str, retry_exceptions: RetryExceptions
) -> tuple[Serialized, bool]:
    """Serialize ``exc`` as a TaskError; say whether ``retry_exceptions`` covers it."""
    if isinstance(exc, TaskCancelledError) or _is_asyncio_cancel(exc):
        cancelled = TaskCancelledError(f"Task {name} was cancelled.")
        return serialize(cancelled, is_error=True), False
    text = _user_traceback(exc)
    cause: BaseException | None = exc
    if isinstance(exc, TaskError):  # re-raised from a nested task: keep the root cause
        cause = exc.cause
        text = f"{text}\nwhich was raised remotely by {exc.function_name}:\n{exc.traceback_str}"
    error = TaskError(name, text, cause)
    try:
        packed = _round_trip(error)
    except SerializationError:
        # Many exceptions pickle but do not unpickle (an ``__init__`` taking arguments
        # other than its ``args``): found out here, not at ``get``. The cause then
        # crosses as its class and state, as pickle carries any other object.
        error.cause_by_state = True
        try:
            packed = _round_trip(error)
        except SerializationError:
            # The caller still learns the type's name, the message and the traceback.
            packed = serialize(
                TaskError(name, text, None, type(cause).__name__, _text_of(cause)),
                is_error=True,
            )
    return packed, _retryable(exc, retry_exceptions)


def _retryable(exc: BaseException, retry_exceptions: RetryExceptions) -> bool:
    """Whether ``retry_exceptions`` covers ``exc``: no, when the check itself fails (a
    listed class that does not unpickle here, or whose metaclass's ``__instancecheck__``
    raises), so that the error is still reported rather than lost with the runner that
    was packing it."""
    if retry_exceptions is True:
        return isinstance(exc, Exception)
    if not retry_exceptions:
        return False
    try:
        return isinstance(exc, retry_exceptions.types)
    except Exception as failure:
        log.warning(
            "actorlib: could not check %s against retry_exceptions (%r); not retrying it",
            type(exc).__name__, failure,
        )
        return False


class LoopHolder:
    """A thread's own event loop for ``async def`` tasks, made on first use."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        #: The task running on it now, so a cancel can reach it from another thread.
        self.current_task: asyncio.Task[Any] | None = None

    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            from actorlib.core.loop import new_event_loop

            self._loop = new_event_loop()
        return self._loop

    def cancel_current(self) -> bool:
        """Cancel the running ``async def`` task (from any thread); False if there is none."""
        task, loop = self.current_task, self._loop
        if task is None or loop is None:
            return False
        loop.call_soon_threadsafe(task.cancel)
        return True

    def close(self) -> None:
        if self._loop is not None:
            self._loop.close()
            self._loop = None


def run_sync_or_async(
    fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any], loop_holder: LoopHolder
) -> Any:
    """Call ``fn``; drive it on this thread's own event loop if it is a coroutine function."""
    result = fn(*args, **kwargs)
    if isinstance(result, CoroutineType):  # inspect.iscoroutine, without its call
        return drive(result, loop_holder)
    return result


def drive(coro: Any, loop_holder: LoopHolder) -> Any:
    """Run the coroutine ``coro`` to its end on this thread's own event loop."""
    loop = loop_holder.loop()
    task = loop.create_task(coro)
    loop_holder.current_task = task
    try:
        return loop.run_until_complete(task)
    finally:
        loop_holder.current_task = None


class _SharedEnviron:
    """``runtime_env["env_vars"]`` for code sharing one process (the thread backend).

    The environment is process-wide, so a variable set for one task is visible to code
    running beside it. Each key is reference-counted: the original value comes back when
    the last task that set it ends. Nothing blocks, so nested tasks never deadlock; two
    concurrent tasks that set one key to different values see the later one.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users: dict[str, int] = {}
        self._saved: dict[str, str | None] = {}

    def enter(self, values: dict[str, str]) -> None:
        with self._lock:
            for key, value in values.items():
                if key not in self._users:
                    self._saved[key] = os.environ.get(key)
                    self._users[key] = 0
                self._users[key] += 1
                os.environ[key] = value

    def exit(self, values: dict[str, str]) -> None:
        with self._lock:
            for key in values:
                self._users[key] -= 1
                if self._users[key] == 0:
                    del self._users[key]
                    old = self._saved.pop(key)
                    if old is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = old


_shared_environ = _SharedEnviron()


@contextlib.contextmanager
def _applied(values: dict[str, str]) -> Iterator[None]:
    _shared_environ.enter(values)
    try:
        yield
    finally:
        _shared_environ.exit(values)


#: Reusable and reentrant: most work sets no env_vars, and pays no generator for them.
_NO_ENV_VARS = contextlib.nullcontext()


def env_vars(values: dict[str, str] | None) -> contextlib.AbstractContextManager[object]:
    """Apply ``runtime_env["env_vars"]`` around user code in a shared process."""
    return _applied(values) if values else _NO_ENV_VARS
