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
from concurrent.futures.process import BrokenProcessPool

from actorlib.exceptions import (
    ActorlibError,
    GetTimeoutError,
    RuntimeClosedError,
    WorkerCrashedError,
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
