"""Ray's exceptions as actorlib's: errors translated at the backend boundary."""

from __future__ import annotations

import importlib
from typing import Any

from actorlib.backends.ray.boxes import Raised, Retryable
from actorlib.core.ids import id_hex
from actorlib.core.serialization import Serialized, serialize
from actorlib.exceptions import (
    ActorAlreadyExistsError,
    ActorDiedError,
    ActorHandleNotFoundError,
    ActorPlacementGroupRemoved,
    ActorUnavailableError,
    ActorUnschedulableError,
    LocalRayletDiedError,
    NodeDiedError,
    ObjectFetchTimedOutError,
    ObjectFreedError,
    ObjectLostError,
    ObjectReconstructionFailedError,
    OutOfDiskError,
    OutOfMemoryError,
    OwnerDiedError,
    ReferenceCountingAssertionError,
    RuntimeEnvSetupError,
    SystemFailureError,
    TaskCancelledError,
    TaskError,
    TaskPlacementGroupRemoved,
    TaskUnschedulableError,
    WorkerCrashedError,
)

#: Ray's exceptions that actorlib has under the same name (subclasses of its broader ones).
_SAME_NAME: tuple[tuple[str, type[BaseException]], ...] = (
    ("NodeDiedError", NodeDiedError), ("OutOfMemoryError", OutOfMemoryError),
    ("OwnerDiedError", OwnerDiedError), ("ObjectFreedError", ObjectFreedError),
    ("ObjectFetchTimedOutError", ObjectFetchTimedOutError),
    ("ObjectReconstructionFailedError", ObjectReconstructionFailedError),
    ("RuntimeEnvSetupError", RuntimeEnvSetupError),
    ("TaskUnschedulableError", TaskUnschedulableError),
    ("ActorUnschedulableError", ActorUnschedulableError),
    ("ReferenceCountingAssertionError", ReferenceCountingAssertionError),
    ("ActorHandleNotFoundError", ActorHandleNotFoundError),
    ("LocalRayletDiedError", LocalRayletDiedError), ("OutOfDiskError", OutOfDiskError),
)


def ended_itself(exc: BaseException) -> str | None:
    """The Ray actor id (hex) of an actor whose ``exit_actor()`` Ray reports as ``exc``,
    else None. Ray 2.60 fails the exiting call with ``ActorUnavailableError`` when
    other calls still run in the actor (threads of a threaded actor), and keeps the
    actor until they end: neither alive nor dead, later calls waiting for them."""
    rx: Any = importlib.import_module("ray.exceptions")
    if isinstance(exc, rx.ActorUnavailableError) and "IntentionalSystemExit" in str(exc):
        actor_id: str | None = exc.actor_id
        return actor_id
    return None


def ended_mid_call(cls_name: str, actor_id: int) -> Serialized:
    """The error of a call (or a stream) still running when its actor ended itself."""
    actor = id_hex(actor_id)
    return serialize(ActorDiedError(
        f"The actor {cls_name} ({actor}) was killed (kill() or exit_actor()).", actor),
        is_error=True)


def translate(exc: BaseException) -> BaseException:
    """The actorlib exception a caller sees for a Ray failure ``exc``."""
    rx: Any = importlib.import_module("ray.exceptions")

    if isinstance(exc, rx.TaskCancelledError):
        return TaskCancelledError(str(exc))
    if isinstance(exc, getattr(rx, "ActorAlreadyExistsError", ())):  # not in older Rays
        return ActorAlreadyExistsError(str(exc))
    if isinstance(exc, rx.TaskPlacementGroupRemoved):
        return TaskPlacementGroupRemoved(
            "The task was cancelled before it started: the placement group it was to run "
            "in was removed.")
    if isinstance(exc, rx.ActorPlacementGroupRemoved):
        return ActorPlacementGroupRemoved(
            "The actor died: the placement group it was to run in was removed.")
    if isinstance(exc, rx.RayTaskError):
        cause = getattr(exc, "cause", None)
        if isinstance(cause, (TaskError, TaskCancelledError)):
            return cause
        # The class Ray's get raises (``as_instanceof_cause``) keeps neither the function's
        # name nor the traceback as attributes (it looks them up on the cause): its text.
        function_name = getattr(exc, "function_name", None) or "a task"
        if isinstance(cause, (KeyboardInterrupt, rx.TaskCancelledError)):
            return TaskCancelledError(f"Task {function_name} was cancelled.")
        return TaskError(function_name, getattr(exc, "traceback_str", None) or str(exc), cause)
    if isinstance(exc, rx.ActorUnavailableError):
        if ended_itself(exc) is not None:
            return ActorDiedError(f"The actor {exc.actor_id} was killed (kill() or "
                                  "exit_actor()).")
        return ActorUnavailableError(str(exc))
    if isinstance(exc, rx.RayActorError):
        if "placement group was removed" in str(exc):
            return ActorPlacementGroupRemoved(
                f"The actor died: the placement group it ran in was removed. ({exc})")
        return ActorDiedError(str(exc))
    for name, ours in _SAME_NAME:  # Ray's finer names first: each is ours of that name
        theirs = getattr(rx, name, None)
        if theirs is not None and isinstance(exc, theirs):
            return ours(str(exc))
    if isinstance(exc, rx.WorkerCrashedError):
        return WorkerCrashedError(str(exc))
    if isinstance(exc, rx.ObjectLostError):
        return ObjectLostError(str(exc))
    if isinstance(exc, (TaskCancelledError, TaskError)):
        return exc
    return SystemFailureError(f"{type(exc).__name__}: {exc}")


def error_value(exc: BaseException) -> Serialized:
    """What a waiter receives for a Ray failure: actorlib's error, serialized."""
    rx: Any = importlib.import_module("ray.exceptions")

    if isinstance(exc, rx.RayTaskError) and isinstance(
            getattr(exc, "cause", None), (Retryable, Raised)):
        packed: Serialized = exc.cause.packed
        return packed
    err: Any = translate(exc)
    if isinstance(err, TaskError):
        err = err.as_instanceof_cause()
    try:
        return serialize(err, is_error=True)
    except Exception:
        return serialize(SystemFailureError(str(err)), is_error=True)
