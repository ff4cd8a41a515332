"""``actorlib.util``: Ray's ``ray.util`` names, so ``from ray.util import ActorPool`` translates."""

from actorlib.actor_pool import ActorPool

__all__ = ["ActorPool"]
