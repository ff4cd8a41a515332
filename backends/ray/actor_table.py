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
        if state == "DEAD" or (state == "ALIVE" and info.get("NumRestarts", 0) > before):
            return
        time.sleep(0.05)
