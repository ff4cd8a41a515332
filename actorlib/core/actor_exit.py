"""An actor ending itself from inside one of its calls.

Ray's ``ray.actor.exit_actor()`` (re-exported by :mod:`actorlib.actor_exit`) and Ray's
built-in ``__ray_terminate__`` call (which runs it: see
:mod:`actorlib.core.builtin_methods`) both end here. In the core because the hosts that
run actors (backends) answer ``__ray_terminate__`` without the API layer.
"""

from __future__ import annotations

import sys
from typing import NoReturn

from actorlib.core import context
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
    client = context.current()
    if ctx is None or ctx.actor_id is None or client is None:
        raise TypeError("exit_actor() can only be called inside an actor.")
    client.kill_actor(ctx.actor_id, True)
    # (asyncio only if something imported it: a worker of plain tasks never does.)
    asyncio = sys.modules.get("asyncio")
    if asyncio is None or asyncio._get_running_loop() is None:
        raise _ExitActor("exit_actor() was called.")
    raise _ExitAsyncActor("exit_actor() was called.")
