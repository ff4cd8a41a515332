"""``exit_actor()``: an actor ends itself (Ray's ``ray.actor.exit_actor``)."""

from __future__ import annotations

import asyncio
from typing import NoReturn

from actorlib import session
from actorlib.core.execution_context import current_execution

__all__ = ["exit_actor"]


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
    if ctx is None or ctx.actor_id is None:
        raise TypeError("exit_actor() can only be called inside an actor.")
    session.client().kill_actor(ctx.actor_id, True)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise _ExitActor("exit_actor() was called.") from None
    raise _ExitAsyncActor("exit_actor() was called.")
