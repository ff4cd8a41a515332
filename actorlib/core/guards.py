"""The guards that turn a bug in a part of the core into the failure of the work it concerns.

Every handler the core's loop runs for a task, a call or an actor (a backend's report, a
submission, a placement) runs under the guard naming that work: an exception from the
core's own code (never the user's, which is packed as a result) is logged on the
``actorlib.core`` logger and fails that task, call or actor with an
:class:`~actorlib.exceptions.InternalError`; everything else goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from actorlib.core.ids import id_hex
from actorlib.core.records import StreamItem
from actorlib.core.specs import CallSpec, TaskSpec
from actorlib.exceptions import InternalError

if TYPE_CHECKING:
    from actorlib.core.runtime import Runtime

log = logging.getLogger("actorlib.core")


class Guards:
    """The runtime's guards, on the core loop only; reads the runtime's current parts."""

    __slots__ = ("_rt",)

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt

    def stream_item(self, item: StreamItem) -> None:
        """An item of a streaming task or call, guarded as its producer's work."""
        rt = self._rt
        guard = self.task if item.id in rt.tasks.records else self.call
        guard(item.id, rt.streams.item, item)

    def task(self, task_id: int, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:
            self._failed(exc, fn, "task", task_id)

    def task_arg(self, task_id: int, fn: Callable[[Any], None], arg: Any) -> None:
        """:meth:`task` of a handler of one argument (a task's outcome): ``fn(arg)`` is a
        specialized call on CPython 3.11, ``fn(*args)`` is not."""
        try:
            fn(arg)
        except Exception as exc:
            self._failed(exc, fn, "task", task_id)

    def call(self, call_id: int, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:
            self._failed(exc, fn, "call", call_id)

    def actor(self, actor_id: int, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:
            self._failed(exc, fn, "actor", actor_id)

    def submit(self, spec: TaskSpec | CallSpec, fn: Callable[..., None]) -> None:
        try:
            fn(spec)
        except Exception as exc:
            if isinstance(spec, TaskSpec):
                self._failed(exc, fn, "task", spec.task_id, spec.return_ids)
            else:
                self._failed(exc, fn, "call", spec.call_id, spec.return_ids)

    def _failed(
        self, exc: Exception, fn: Callable[..., None], kind: str, work_id: int,
        returns: tuple[int, ...] = (),
    ) -> None:
        """Log a core bug and fail only the work it concerns, so everything else goes on."""
        where = getattr(fn, "__qualname__", repr(fn))
        log.error(
            "actorlib core: internal error in %s handling %s %s; that work fails, the rest "
            "goes on", where, kind, id_hex(work_id), exc_info=exc,
        )
        error = InternalError(
            f"actorlib's core hit an internal error while handling this {kind} "
            f"({id_hex(work_id)}): {type(exc).__name__}: {exc}. Only this work failed; the "
            "traceback is in the log of the 'actorlib.core' logger. Please report it."
        )
        rt = self._rt
        try:
            if kind == "task":
                rt.tasks.abandon(work_id, error, returns)
            elif kind == "call":
                rt.actors.abandon_call(work_id, error, returns)
            else:
                rt.actors.abandon(work_id, error)
        except Exception:
            log.exception("actorlib core: internal error while failing %s %s", kind, work_id)
        rt.scheduler.dirty = True
