"""``ray.util.actor_pool``: the module path Ray code imports ``ActorPool`` from."""

from actorlib.actor_pool import ActorPool

__all__ = ["ActorPool"]
