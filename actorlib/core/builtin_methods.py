"""Methods every actor answers without its class defining them.

Ray's actors have ``__ray_ready__``, which programs call to wait until an actor has
been constructed (``ray.get(actor.__ray_ready__.remote())``), and ``__ray_terminate__``,
which ends it after the calls sent before (Ray's runs ``exit_actor()``; so does this
one). A call of either is queued and run like any call: its host finds the method here
(:func:`builtin`) when the instance has no attribute of that name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from actorlib.core.actor_exit import exit_actor

__all__ = ["BUILTIN_METHODS", "READY_METHOD", "TERMINATE_METHOD", "builtin", "ready"]

#: The names of Ray's readiness and termination calls.
READY_METHOD = "__ray_ready__"
TERMINATE_METHOD = "__ray_terminate__"


def ready() -> bool:
    """``__ray_ready__``: the actor was constructed (its host only runs calls then)."""
    return True


#: Each built-in method by name.
BUILTIN_METHODS: dict[str, Callable[[], Any]] = {
    READY_METHOD: ready, TERMINATE_METHOD: exit_actor,
}


def builtin(name: str, error: AttributeError) -> Callable[[], Any]:
    """The built-in method ``name``, for an instance without one (``error``: what looking
    it up on the instance raised, raised again for any other name)."""
    method = BUILTIN_METHODS.get(name)
    if method is None:
        raise error
    return method
