"""Hooks for actorlib's own tests: what the core still holds."""

from __future__ import annotations

import gc
from typing import Any

from actorlib import session
from actorlib.core.ids import id_hex


def _state() -> dict[str, Any]:
    rt = session.runtime()
    if rt is None:
        raise RuntimeError("actorlib is not initialized")
    gc.collect()
    rt.flush()
    return rt.debug_state()


def live_object_ids() -> set[str]:
    """Hex ids of every object the core still holds, after pending ref drops are applied."""
    return {id_hex(i) for i in _state()["objects"]}


def live_actor_ids() -> set[str]:
    return {id_hex(i) for i in _state()["actors"]}


def core_problems() -> list[str]:
    """Broken bookkeeping rules in the core (see ``actorlib.core.invariants``); [] if none."""
    return list(_state().get("problems", []))


def holdings() -> dict[str, Any]:
    """Everything the core holds, after pending ref drops are applied, in one look: hex ids
    of live ``objects`` and ``actors``, counts of pending ``tasks``, actor ``calls`` and
    ``queued`` work, actor ``names`` taken (``namespace/name``), and broken rules
    (``problems``). The tests' shared runtime must be back where it started after each
    test (``tests/conftest.py``)."""
    state = _state()
    return {
        "objects": {id_hex(i) for i in state["objects"]},
        "actors": {id_hex(i) for i in state["actors"]},
        "tasks": state["tasks"],
        "calls": state.get("calls", 0),
        "queued": state["queued"],
        "names": list(state.get("names", [])),
        "problems": list(state.get("problems", [])),
    }


def idle_worker_pids() -> set[int]:
    """Pids of the worker processes this driver's process backend keeps with no work in
    them (no task, no actor): the pool a later task would run on. Empty on a backend
    without local worker processes."""
    from actorlib.core.runtime import Runtime

    rt = session.runtime()
    if not isinstance(rt, Runtime):
        return set()
    try:
        from actorlib.backends.process.backend import ProcessBackend
    except ImportError:  # no process backend on this platform
        return set()
    backend = rt.backend
    if not isinstance(backend, ProcessBackend):
        return set()
    return rt._loop.call(lambda: {w.pid for w in backend._workers if w.idle})
