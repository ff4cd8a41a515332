"""Hooks for actorlib's own tests: what the core still holds."""

from __future__ import annotations

import gc

from actorlib import session
from actorlib.core.ids import id_hex


def _state() -> dict[str, object]:
    rt = session.runtime()
    if rt is None:
        raise RuntimeError("actorlib is not initialized")
    gc.collect()
    rt.flush()
    return rt.debug_state()


def live_object_ids() -> set[str]:
    """Hex ids of every object the core still holds, after pending ref drops are applied."""
    return {id_hex(i) for i in _state()["objects"]}  # type: ignore[attr-defined]


def live_actor_ids() -> set[str]:
    return {id_hex(i) for i in _state()["actors"]}  # type: ignore[attr-defined]


def core_problems() -> list[str]:
    """Broken bookkeeping rules in the core (see ``actorlib.core.invariants``); [] if none."""
    return list(_state().get("problems", []))  # type: ignore[call-overload]
