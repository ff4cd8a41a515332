"""The errors of :class:`actorlib.Executor` and :class:`actorlib.Pool`.

Exported by :mod:`actorlib.exceptions` (their documented home, with every other actorlib
error) and by :mod:`actorlib.executor`. They are also ``concurrent.futures``' errors
(``except BrokenProcessPool`` and ``except TimeoutError`` keep working), and
``concurrent.futures.process`` imports ``multiprocessing``, which costs every process
that imports ``actorlib.exceptions`` (every worker, at start) about 10 ms: so they live
here, and ``actorlib.exceptions`` imports this module on first use.
"""

from __future__ import annotations

import concurrent.futures
from concurrent.futures.process import BrokenProcessPool, _RemoteTraceback
from typing import Any

from actorlib.exceptions import (
    ActorlibError,
    GetTimeoutError,
    RuntimeClosedError,
    TaskError,
    WorkerCrashedError,
    copy_builtin_fields,
)

__all__ = [
    "BrokenExecutorError",
    "ExecutorInitializerError",
    "ExecutorShutdownError",
    "ExecutorTimeoutError",
    "ExecutorWorkerError",
]


class ExecutorShutdownError(RuntimeClosedError):
    """``submit``/``map`` after ``shutdown()`` (a ``RuntimeError``, like the stdlib's)."""


class BrokenExecutorError(ActorlibError, BrokenProcessPool):
    """The executor cannot run calls any more (``except BrokenProcessPool`` catches it)."""


class ExecutorInitializerError(BrokenExecutorError):
    """The ``initializer`` raised in a worker: the executor is broken, like the stdlib's."""


class ExecutorWorkerError(WorkerCrashedError, BrokenExecutorError):
    """The worker running a call died (and the call ran out of ``max_retries``)."""


class ExecutorTimeoutError(GetTimeoutError, concurrent.futures.TimeoutError):
    """``map``'s ``timeout`` passed before the next result was ready."""


# -- a call's own error, as the stdlib's pools raise it ----------------------------------


def as_stdlib_error(err: TaskError) -> BaseException:
    """``err`` (a call raised) shaped as ``ProcessPoolExecutor`` raises it.

    The stdlib re-raises the original exception, its ``args``, ``str()`` and attributes
    unchanged, with the remote traceback as ``__cause__`` (a ``_RemoteTraceback``).
    ``get`` raises a ``TaskError`` whose message is the remote traceback: code written
    for the stdlib that reads ``e.args[0]``, ``str(e)`` or ``e.errno`` would read
    something else. This is that error as the stdlib shows it, still a ``TaskError``
    (``.cause``, ``.traceback_str``). ``err`` itself where the original did not cross or
    its class admits no such subclass.
    """
    cause = err.cause
    if cause is None:
        return err
    cls = _stdlib_shaped_class(type(cause))
    if cls is None:
        return err
    try:
        shaped: Any = cls.__new__(cls, *cause.args)
    except Exception:  # a class whose __new__ insists on other arguments
        return err
    shaped.args = cause.args
    copy_builtin_fields(cause, shaped)
    shaped.__dict__.update(getattr(cause, "__dict__", {}))
    shaped.function_name = err.function_name
    shaped.traceback_str = err.traceback_str
    shaped.cause = cause
    shaped.cause_type_name = err.cause_type_name
    shaped.cause_message = err.cause_message
    if err.cause_by_state:
        shaped.cause_by_state = True
    tb = err.traceback_str if err.traceback_str.endswith("\n") else err.traceback_str + "\n"
    # (typeshed has its argument as a traceback: it is the formatted text)
    shaped.__cause__ = _RemoteTraceback(f'\n"""\n{tb}"""')  # type: ignore[arg-type]
    return shaped


_stdlib_shaped: dict[type, type | None] = {}


def _stdlib_shaped_class(cause_cls: type[BaseException]) -> type | None:
    """A ``TaskError`` and ``cause_cls`` that shows as ``cause_cls`` (name, ``str``,
    ``repr``), and pickles as what :func:`as_stdlib_error` made it from."""
    if cause_cls in _stdlib_shaped:
        return _stdlib_shaped[cause_cls]
    bases = (cause_cls,) if issubclass(cause_cls, TaskError) else (TaskError, cause_cls)
    cls: type | None
    try:
        cls = type(cause_cls.__name__, bases, {
            "__module__": cause_cls.__module__, "__qualname__": cause_cls.__qualname__,
            "__str__": cause_cls.__str__, "__repr__": cause_cls.__repr__,
            "__reduce__": _reduce_stdlib_shaped,
        })
    except TypeError:  # layout conflicts, final classes
        cls = None
    _stdlib_shaped[cause_cls] = cls
    return cls


def _reduce_stdlib_shaped(self: TaskError) -> tuple[Any, ...]:
    return (_rebuild_stdlib_shaped, (TaskError.__reduce__(self),))


def _rebuild_stdlib_shaped(reduced: tuple[Any, ...]) -> BaseException:
    rebuild, args = reduced
    err = rebuild(*args)
    return as_stdlib_error(err) if isinstance(err, TaskError) else err
