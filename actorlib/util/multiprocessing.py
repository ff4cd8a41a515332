"""Ray's ``ray.util.multiprocessing``: ``Pool`` is :class:`actorlib.Pool` (stdlib interface)."""

from actorlib.pool import Pool

__all__ = ["Pool"]
