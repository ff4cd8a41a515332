"""``exit_actor()``: an actor ends itself (Ray's ``ray.actor.exit_actor``)."""

from __future__ import annotations

from actorlib.core.actor_exit import exit_actor

__all__ = ["exit_actor"]
