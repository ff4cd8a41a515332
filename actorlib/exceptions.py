"""Errors raised by actorlib.

Every error derives from :class:`ActorlibError`. Two families are kept apart on purpose:
:class:`RuntimeClosedError` means *you closed it* (the runtime was shut down); everything
else means *it broke* (your code raised, a worker died, a timeout expired). Each error
pickles, so it can cross process and machine boundaries unchanged.

Ray's names are kept as aliases (``RayError``, ``RayTaskError``, ``RayActorError``), so
``except ray.exceptions.RayTaskError`` works with ``import actorlib as ray``.

The errors of :class:`actorlib.Executor` and :class:`actorlib.Pool` are here too
(``ExecutorShutdownError``, ``BrokenExecutorError`` ...). They are also
``concurrent.futures``' errors, whose module costs every process importing this one
about 10 ms, so they are defined in :mod:`actorlib.executor_errors` and imported from
there on first use.

This module is a leaf: every layer may import it, and at import it imports nothing from
actorlib.
"""

from __future__ import annotations

import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from actorlib.executor_errors import (
        BrokenExecutorError,
        ExecutorInitializerError,
        ExecutorShutdownError,
        ExecutorTimeoutError,
        ExecutorWorkerError,
    )

__all__ = [
    "ActorAlreadyExistsError",
    "ActorDiedError",
    "ActorError",
    "ActorHandleNotFoundError",
    "ActorPlacementGroupRemoved",
    "ActorRuntimeEnvSetupError",
    "ActorUnavailableError",
    "ActorUnschedulableError",
    "ActorlibError",
    "ActorlibWarning",
    "AsyncioActorExit",
    "BackendUnavailableError",
    "BlockingGetWarning",
    "BrokenExecutorError",
    "CrossLanguageError",
    "ExecutorInitializerError",
    "ExecutorShutdownError",
    "ExecutorTimeoutError",
    "ExecutorWorkerError",
    "GetTimeoutError",
    "InfeasibleResourceError",
    "InternalError",
    "LocalRayletDiedError",
    "NodeDiedError",
    "NotSupportedError",
    "ObjectFetchTimedOutError",
    "ObjectFreedError",
    "ObjectLostError",
    "ObjectReconstructionFailedError",
    "ObjectRefStreamEndOfStreamError",
    "ObjectStoreFullError",
    "OutOfDiskError",
    "OutOfMemoryError",
    "OwnerDiedError",
    "PendingCallsLimitExceeded",
    "RayActorError",
    "RayError",
    "RaySystemError",
    "RayTaskError",
    "ReferenceCountingAssertionError",
    "RuntimeClosedError",
    "RuntimeEnvSetupError",
    "SerializationError",
    "SystemFailureError",
    "TaskCancelledError",
    "TaskError",
    "TaskPlacementGroupRemoved",
    "TaskUnschedulableError",
    "UnserializableException",
    "UserCodeException",
    "WorkerCrashedError",
]


class ActorlibError(Exception):
    """Root of every error actorlib raises."""

    def __reduce__(self) -> Any:
        return (_rebuild_plain, (type(self), self.args, self.__dict__))


def _rebuild_plain(cls: type, args: tuple[Any, ...], state: dict[str, Any]) -> BaseException:
    err: BaseException = cls.__new__(cls)  # type: ignore[call-overload]
    Exception.__init__(err, *args)
    err.__dict__.update(state)
    return err


class RuntimeClosedError(ActorlibError, RuntimeError):
    """The runtime was shut down (by you) while this was pending, or before it was asked."""


class SystemFailureError(ActorlibError):
    """Something in actorlib's machinery broke (not your code)."""


class InternalError(SystemFailureError):
    """actorlib's core hit a bug of its own while handling this work.

    Only the work concerned fails; the runtime goes on serving everything else. The
    traceback is in the log of the ``actorlib.core`` logger.
    """


class TaskError(ActorlibError):
    """An exception raised by a task or actor method, re-raised where its result is read.

    ``get`` raises an instance of a class deriving from both ``TaskError`` and the original
    exception's class, so ``except ValueError`` catches a remote ``ValueError``. The original
    exception is ``.cause``; the message carries the remote traceback.
    """

    #: Whether ``cause`` crosses as its class, ``args`` and attributes, rebuilt without
    #: calling its ``__init__``: set for a cause whose own pickling does not come back
    #: (pickle calls ``cls(*args)``, which fails for an ``__init__`` that needs arguments
    #: its ``args`` do not hold). Plain objects cross that way in any case.
    cause_by_state = False

    def __init__(
        self,
        function_name: str,
        traceback_str: str,
        cause: BaseException | None = None,
        cause_type_name: str | None = None,
        cause_message: str | None = None,
    ) -> None:
        """``cause_type_name`` and ``cause_message`` stand in for a cause that could not
        cross (it did not pickle, or not unpickle): the error still says what it was."""
        self.function_name = function_name
        self.traceback_str = traceback_str
        self.cause = cause
        self.cause_type_name = cause_type_name or (
            type(cause).__name__ if cause is not None else "Exception"
        )
        self.cause_message = cause_message
        super().__init__(self._message())

    def _message(self) -> str:
        cause = self.cause
        text = self.cause_message if cause is None and self.cause_message is not None else cause
        return (
            f"{self.cause_type_name} raised in {self.function_name}: "
            f"{_text_of(text)}\n\nRemote traceback:\n{self.traceback_str.rstrip()}"
        )

    def __str__(self) -> str:
        return self._message()

    def __reduce__(self) -> Any:
        cause = self.cause
        if cause is not None and self.cause_by_state:
            return (
                _rebuild_task_error,
                (self.function_name, self.traceback_str, _ByState(cause),
                 self.cause_type_name, getattr(self, "cause_message", None), True),
            )
        return (
            _rebuild_task_error,
            (self.function_name, self.traceback_str, cause, self.cause_type_name,
             getattr(self, "cause_message", None)),
        )

    def as_instanceof_cause(self) -> TaskError:
        """Return this error as an instance of ``TaskError`` *and* of the cause's class."""
        cause = self.cause
        if cause is None or isinstance(self, type(cause)):
            return self
        cls = _dual_class(type(cause))
        if cls is None:
            return self
        try:
            err: TaskError = cls.__new__(cls)  # type: ignore[call-overload]
        except Exception:  # a cause class whose __new__ insists on arguments
            return self
        err.function_name = self.function_name
        err.traceback_str = self.traceback_str
        err.cause = cause
        err.cause_type_name = self.cause_type_name
        err.cause_message = self.cause_message
        if self.cause_by_state:
            err.cause_by_state = True
        err.args = (self._message(),)
        # The original's attributes (errno, filename, custom fields) stay readable: a
        # SystemExit's ``code`` too, so that one nobody catches ends the caller with the
        # status the task gave ``sys.exit()`` (as ProcessPoolExecutor's), not with 0.
        copy_builtin_fields(cause, err)
        for key, value in getattr(cause, "__dict__", {}).items():
            err.__dict__.setdefault(key, value)
        err.__cause__ = cause
        return err


def copy_builtin_fields(source: BaseException, target: BaseException) -> None:
    """The builtin exception fields ``args`` does not carry (``errno``, ``filename``,
    ``code``, ``name`` ...): slots of the C classes, not in ``__dict__``."""
    for name in _fields_of(type(source)):
        value = getattr(source, name, None)
        if value is None:  # unset (OSError shows a filename2 set to None)
            continue
        try:
            setattr(target, name, value)
        except (AttributeError, TypeError):
            pass


_fields: dict[type, tuple[str, ...]] = {}


def _fields_of(cls: type) -> tuple[str, ...]:
    """The C-level fields of ``cls``'s builtin exception classes (found once per class)."""
    found = _fields.get(cls)
    if found is None:
        found = _fields[cls] = tuple(
            name
            for klass in cls.__mro__ if klass.__module__ == "builtins"
            for name, field in vars(klass).items()
            if isinstance(field, (types.MemberDescriptorType, types.GetSetDescriptorType))
            and not name.startswith("__") and name != "args"  # (args: set apart)
        )
    return found


def _text_of(value: object) -> str:
    """``str(value)``, or a stand-in naming its type when the user's ``__str__`` raises:
    the error must still be made, sent and raised (a failure here would leave the task's
    result unset, and its callers waiting forever)."""
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__}: str() failed>"


_dual_classes: dict[type, type | None] = {}


def _dual_class(cause_cls: type[BaseException]) -> type | None:
    """A class deriving from TaskError and ``cause_cls``, or None when Python forbids one."""
    if cause_cls in _dual_classes:
        return _dual_classes[cause_cls]
    cls: type | None
    try:
        cls = type(
            f"TaskError({cause_cls.__name__})",
            (TaskError, cause_cls),
            {"__module__": __name__, "__str__": TaskError.__str__,
             "__reduce__": TaskError.__reduce__, "__init__": TaskError.__init__},
        )
    except TypeError:  # layout conflicts, final classes
        cls = None
    _dual_classes[cause_cls] = cls
    return cls


class UnloadableCause(Exception):
    """Stands in for a task's exception whose class cannot be loaded where the error is
    read (a module only the worker had): the error still names the class and keeps the
    message and the remote traceback (see ``serialization.deserialize``)."""

    origin = ""  # the missing class, "module.name"
    reason = ""  # why it could not be loaded

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, dict):
            self.__dict__.update(state)


def _rebuild_task_error(
    function_name: str,
    traceback_str: str,
    cause: BaseException | None,
    cause_type_name: str | None,
    cause_message: str | None = None,
    cause_by_state: bool = False,
) -> TaskError:
    if isinstance(cause, UnloadableCause):
        text = cause_message if cause_message is not None else (
            _text_of(cause.args[0]) if len(cause.args) == 1 else _text_of(cause))
        return TaskError(function_name, traceback_str, None, cause_type_name,
                         f"{text} (its class {cause.origin} cannot be loaded in this "
                         f"process: {cause.reason})")
    err = TaskError(function_name, traceback_str, cause, cause_type_name, cause_message)
    if cause_by_state:
        err.cause_by_state = True  # so that it pickles again as it came
    return err.as_instanceof_cause()


class _ByState:
    """Pickles as the exception it holds, rebuilt by :func:`_rebuild_exception` (see
    :attr:`TaskError.cause_by_state`)."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def __reduce__(self) -> Any:
        exc = self.exc
        return (_rebuild_exception, (type(exc), exc.args, getattr(exc, "__dict__", None)))


def _rebuild_exception(
    cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any] | None,
) -> BaseException:
    """An exception of ``cls`` with ``args`` and the attributes ``state``, made as pickle
    makes any plain object: without calling ``__init__``, which set them originally."""
    err = cls.__new__(cls, *args)
    err.args = args
    if state:
        err.__dict__.update(state)
    return err


class ActorError(ActorlibError):
    """An actor could not run a call."""

    def __init__(self, message: str = "The actor is unavailable.", actor_id: str | None = None):
        self.actor_id = actor_id
        super().__init__(message)


class ActorDiedError(ActorError):
    """The actor died (killed, crashed, its constructor raised, or out of restarts)."""

    def __init__(
        self,
        message: str = "The actor died.",
        actor_id: str | None = None,
        cause: BaseException | None = None,
    ):
        self.cause = cause
        super().__init__(message, actor_id)
        if cause is not None:
            self.__cause__ = cause


class ActorPlacementGroupRemoved(ActorDiedError):
    """The actor died because its placement group was removed (Ray's name)."""


class ActorAlreadyExistsError(ActorlibError, ValueError):
    """An actor of this name already lives in the namespace (Ray's name; a ``ValueError``
    as in Ray): reach it with ``get_actor()`` or ``options(get_if_exists=True)``."""


class ActorUnavailableError(ActorError):
    """The actor is temporarily unreachable (for example, restarting)."""


class PendingCallsLimitExceeded(ActorError):
    """An actor handle already has ``max_pending_calls`` calls not yet finished: the
    caller is ahead of the actor (back off, or wait for some results)."""


class GetTimeoutError(ActorlibError, TimeoutError):
    """``get``/``wait`` gave up waiting after ``timeout`` seconds."""


class TaskCancelledError(ActorlibError):
    """The task was cancelled with ``cancel()`` before it could produce a result."""


class TaskPlacementGroupRemoved(TaskCancelledError):
    """The task was ended because its placement group was removed (Ray's name)."""


class WorkerCrashedError(ActorlibError):
    """The worker running the task died, and the task ran out of retries."""


class NodeDiedError(WorkerCrashedError):
    """The node running the task died or lost its connection to the cluster's head, and
    the task ran out of retries (Ray's name; a ``WorkerCrashedError`` here)."""


class OutOfMemoryError(WorkerCrashedError):
    """The worker was killed for lack of memory (Ray's name; raised where Ray reports it,
    on the ray backend; a ``WorkerCrashedError``)."""


class ObjectLostError(ActorlibError):
    """An object's value is gone and cannot be rebuilt from its lineage."""


class OwnerDiedError(ObjectLostError):
    """The object's owner died (Ray's name). actorlib's core owns every object, so this
    is raised only on the ray backend; ``except ObjectLostError`` catches it."""


class ObjectFreedError(ObjectLostError):
    """The object was freed explicitly (Ray's ``internal.free``; Ray's name). actorlib has
    no explicit free: raised only on the ray backend."""


class ObjectFetchTimedOutError(ObjectLostError):
    """Fetching the object from another node timed out (Ray's name; raised on the ray
    backend)."""


class ObjectReconstructionFailedError(ObjectLostError):
    """The object was lost with its node, and the task or actor call that made it cannot
    be re-run (an actor call, a task with ``max_retries=0`` or with arguments held in the
    object store). Ray's name; an object ``put`` and lost raises ``ObjectLostError``."""


class ObjectStoreFullError(ActorlibError):
    """The object store has no room for an object, even after spilling."""


class SerializationError(ActorlibError, TypeError):
    """A value could not be pickled (or unpickled) to cross to a worker."""


class InfeasibleResourceError(ActorlibError, ValueError):
    """A resource request that no node in the cluster can ever satisfy."""


class TaskUnschedulableError(InfeasibleResourceError):
    """The task can never be scheduled: its ``NodeAffinitySchedulingStrategy`` (not soft)
    names a node that is not alive (Ray's name; an ``InfeasibleResourceError``)."""


class ActorUnschedulableError(InfeasibleResourceError):
    """The actor can never be scheduled: its ``NodeAffinitySchedulingStrategy`` (not
    soft) names a node that is not alive (Ray's name; an ``InfeasibleResourceError``)."""


class RuntimeEnvSetupError(ActorlibError):
    """The task's or actor's ``runtime_env`` could not be set up where it was to run
    (Ray's name): on actorlib's own backends, a ``working_dir`` / ``py_modules`` package
    the node could not extract or a worker could not enter; on the ray backend, Ray's."""


class ActorRuntimeEnvSetupError(ActorDiedError, RuntimeEnvSetupError):
    """The actor never started: its ``runtime_env`` could not be set up where it was
    placed. Each of its calls raises this.

    An :class:`ActorDiedError` (the actor is dead for good, as after a constructor that
    raised) and a :class:`RuntimeEnvSetupError` (what Ray raises from such an actor's
    calls), so either ``except`` catches it; ``.cause`` is the node's error, naming the
    package and why.
    """


class BackendUnavailableError(ActorlibError, ImportError):
    """A backend's optional dependency is missing or of an unsupported version."""


class NotSupportedError(ActorlibError, NotImplementedError):
    """A Ray feature actorlib does not have (placement groups, ...), named in the message.

    Raised where the feature is used, so code that merely imports Ray's names still loads.
    """


class ActorlibWarning(UserWarning):
    """Root of every warning actorlib emits (filter them all with one category)."""


class BlockingGetWarning(ActorlibWarning):
    """A blocking ``get``/``wait`` ran on a thread whose event loop is running.

    It stalls every other coroutine of that loop until the objects are ready; ``await``
    the ref, or use ``get_async``/``wait_async``. Emitted once per process.
    """


# Ray's other exception names: ``except ray.exceptions.X`` must not itself fail with an
# AttributeError when an error reaches it. Raised where Ray raises them (the ray backend),
# or never.


class ActorHandleNotFoundError(ActorlibError, ValueError):
    """An actor handle could not be found (Ray's name; raised on the ray backend)."""


class AsyncioActorExit(ActorlibError):
    """Ray's exception for ``exit_actor()`` inside an async actor (Ray's name; defined so that
    ``except`` clauses naming it work; actorlib's own ``exit_actor()`` ends the actor itself)."""


class CrossLanguageError(ActorlibError):
    """Ray's error for a call between languages (Ray's name; actorlib is Python only, so it
    is never raised)."""


class LocalRayletDiedError(ActorlibError):
    """The local Ray node's raylet died (Ray's name; raised on the ray backend)."""


class ObjectRefStreamEndOfStreamError(ActorlibError):
    """Ray's signal that a generator's stream has ended (Ray's name; actorlib's generators
    end with ``StopIteration``/``StopAsyncIteration``, as Ray's do for users)."""


class OutOfDiskError(ActorlibError):
    """The node ran out of disk for spilled objects (Ray's name; raised on the ray backend;
    actorlib's own object stores raise ``ObjectStoreFullError``)."""


class ReferenceCountingAssertionError(ObjectLostError, AssertionError):
    """An object was freed while still referenced (Ray's name; raised on the ray backend;
    ``except ObjectLostError`` catches it)."""


class UnserializableException(ActorlibError):
    """Ray's stand-in for a task's exception that could not be pickled (Ray's name; actorlib
    sends such an exception as a ``TaskError`` carrying its type name and message)."""


class UserCodeException(ActorlibError):
    """Ray's wrapper for an exception raised by user code in Ray's internals (Ray's name;
    defined so that ``except`` clauses naming it work)."""


# Ray's names, so `except ray.exceptions.RayTaskError:` keeps working.
RayError = ActorlibError
RayTaskError = TaskError
RayActorError = ActorError
RaySystemError = SystemFailureError


_EXECUTOR_ERRORS = frozenset({
    "BrokenExecutorError", "ExecutorInitializerError", "ExecutorShutdownError",
    "ExecutorTimeoutError", "ExecutorWorkerError",
})

if not TYPE_CHECKING:  # the type checker reads the import at the top instead

    def __getattr__(name: str) -> Any:
        """The Executor's errors, imported on first use (see the module's docstring)."""
        if name in _EXECUTOR_ERRORS:
            from actorlib import executor_errors

            value = getattr(executor_errors, name)
            globals()[name] = value
            return value
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
