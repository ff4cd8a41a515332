"""Methods every actor answers without its class defining them.

Ray's actors have ``__ray_ready__``, which programs call to wait until an actor has
been constructed (``ray.get(actor.__ray_ready__.remote())``). A call of it is queued and
run like any call, so it returns only after the constructor (and the calls queued
before it): its host finds the method here when the instance has none of its own.
"""

from __future__ import annotations

__all__ = ["READY_METHOD", "ready"]

#: The name of Ray's readiness call.
READY_METHOD = "__ray_ready__"


def ready() -> bool:
    """``__ray_ready__``: the actor was constructed (its host only runs calls then)."""
    return True
