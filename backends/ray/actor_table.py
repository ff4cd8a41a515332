"""What Ray's actor table says about an actor: how often it restarted, when a restart
is done. actorlib's incarnation number and a restarting ``kill`` read it."""

from __future__ import annotations

import time
from typing import Any

from actorlib.backends.ray.connector import ray_module

#: How long ``kill(no_restart=False)`` waits for Ray to restart the actor.
RESTART_WAIT_S = 60.0


def restarts(actor_hex: str) -> int | None:
    """How many times Ray restarted the actor (None where Ray's actor table cannot say)."""
    try:
        return int(ray_module()._private.state.actors(actor_hex)["NumRestarts"])
    except Exception:  # a Ray without this table, or an actor it no longer lists
        return None


def kill_and_await_restart(handle: Any) -> None:
    """``ray.kill(handle, no_restart=False)``, returning once Ray has restarted the actor
    (or given it up): Ray's kill is asynchronous, and a call sent right after it would
    still reach the old instance and fail with it. Later calls go to the new instance,
    as on actorlib's other backends."""
    ray = ray_module()
    actor_hex = handle._actor_id.hex()
    before = restarts(actor_hex)
    ray.kill(handle, no_restart=False)
    if before is None:
        return
    deadline = time.monotonic() + RESTART_WAIT_S
    while time.monotonic() < deadline:
        info = ray._private.state.actors(actor_hex)
        state = info.get("State")
        if state == "DEAD":
            return
        if state == "ALIVE" and info.get("NumRestarts", 0) > before:
            _known_here(handle, deadline)
            return
        time.sleep(0.05)


def _known_here(handle: Any, deadline: float) -> None:
    """Until this process's Ray knows the restarted instance: the actor table says it is
    alive before this process hears so, and a call sent meanwhile fails at once ("The
    actor is restarting", ActorUnavailableError: a CI flake under two pytest workers).
    A call of Ray's own readiness method tells."""
    ray = ray_module()
    while time.monotonic() < deadline:
        try:
            ray.get(handle.__ray_ready__.remote(), timeout=max(0.1, deadline - time.monotonic()))
            return
        except ray.exceptions.ActorUnavailableError:
            time.sleep(0.05)
        except Exception:  # died again, or no answer in time: later calls say so
            return
