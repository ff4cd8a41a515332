"""An actor ending itself from inside one of its calls, and its cleanup when it ends.

Ray's ``ray.actor.exit_actor()`` (re-exported by :mod:`actorlib.actor_exit`) and Ray's
built-in ``__ray_terminate__`` call (which runs it: see
:mod:`actorlib.core.builtin_methods`) both end here. In the core because the hosts that
run actors (backends) answer ``__ray_terminate__`` without the API layer.

An actor whose class defines ``__ray_shutdown__`` has it called when it ends gracefully,
as Ray does: its handles gone (after the calls sent before), ``exit_actor()`` or
``__ray_terminate__``; never after ``kill()`` or a crash, nor at a restart. Its host
registers it (:func:`register_shutdown`) once the instance is made, in the process that
runs the actor, and calls or forgets it when the actor ends.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from typing import Any, NoReturn

from actorlib.core import context
from actorlib.core.execution_context import current_execution

__all__ = [
    "SHUTDOWN_METHOD",
    "exit_actor",
    "forget_shutdown",
    "has_shutdown",
    "register_shutdown",
    "run_shutdown",
]

log = logging.getLogger("actorlib")

#: The name of Ray's cleanup method of an actor class.
SHUTDOWN_METHOD = "__ray_shutdown__"

#: The running actors' ``__ray_shutdown__`` in this process, by actor id: kept by the
#: host that made the instance, taken by the first of a graceful end or a kill.
_shutdowns: dict[int, Callable[[], Any]] = {}
_shutdowns_lock = threading.Lock()


def register_shutdown(actor_id: int, instance: Any) -> None:
    """Keep ``instance``'s ``__ray_shutdown__`` for when the actor ends (if its class has
    one: looked up once, at construction)."""
    if getattr(type(instance), SHUTDOWN_METHOD, None) is not None:
        with _shutdowns_lock:
            _shutdowns[actor_id] = getattr(instance, SHUTDOWN_METHOD)


def has_shutdown(actor_id: int) -> bool:
    """Whether the actor has a ``__ray_shutdown__`` still to run."""
    return actor_id in _shutdowns


def forget_shutdown(actor_id: int) -> None:
    """The actor was killed, crashed or is restarting: no cleanup runs."""
    with _shutdowns_lock:
        _shutdowns.pop(actor_id, None)


def run_shutdown(actor_id: int) -> None:
    """The actor ends gracefully: run its ``__ray_shutdown__`` once, here (its error is
    logged, as Ray does: the actor is ending either way)."""
    with _shutdowns_lock:
        hook = _shutdowns.pop(actor_id, None)
    if hook is None:
        return
    try:
        result = hook()
        if hasattr(result, "close") and hasattr(result, "send"):  # a coroutine
            result.close()
            raise TypeError(f"{SHUTDOWN_METHOD} must be a plain method, not async def")
    except Exception:
        log.exception("actorlib: %s of actor %016x raised", SHUTDOWN_METHOD, actor_id)


class _ExitActor(SystemExit):
    """Unwinds a sync actor's method after the exit was requested."""


class _ExitAsyncActor(Exception):
    """The same in an ``async def`` method: a SystemExit would escape the actor's event
    loop and take its thread down instead of ending just this call."""


def exit_actor() -> NoReturn:
    """End the current actor at once, for good: no restart, whatever ``max_restarts`` says.

    The call that runs this and every call still queued fail with ``ActorDiedError``, as
    after ``kill()``. Only inside an actor; elsewhere raises ``TypeError`` (as Ray does).
    """
    ctx = current_execution.get()
    client = context.current()
    if ctx is None or ctx.actor_id is None or client is None:
        raise TypeError("exit_actor() can only be called inside an actor.")
    run_shutdown(ctx.actor_id)  # a graceful end: before the kill, which would skip it
    # A client may end its actor its own way once this call unwinds (the ray backend:
    # Ray's graceful exit, which sends the replies of the calls before; a kill from
    # inside may lose them); every other one kills it now.
    ends_itself = getattr(client, "exit_actor", None)
    if ends_itself is not None:
        ends_itself(ctx.actor_id)
    else:
        client.kill_actor(ctx.actor_id, True)
    # (asyncio only if something imported it: a worker of plain tasks never does.)
    asyncio = sys.modules.get("asyncio")
    if asyncio is None or asyncio._get_running_loop() is None:
        raise _ExitActor("exit_actor() was called.")
    raise _ExitAsyncActor("exit_actor() was called.")
