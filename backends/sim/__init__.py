"""The deterministic simulation backend: every open choice made by a scheduler.

``backend="sim"`` runs tasks and actors in this process, one step at a time, and lets a
*choice source* (a seeded RNG, a recorded trace, hypothesis data) pick every choice the
core leaves open: which task starts next, which caller's call an actor takes next, which
coroutine of an async actor resumes, when virtual time moves, where a fault lands. The
same choices give the same run, step for step. See ``docs/testing.md``; the user-facing
side is :mod:`actorlib.testing`.

Modules: ``backend`` (the backend and its controller loop), built in layers from
``threads`` (worker threads that run one at a time, the baton), ``choosing`` (picking each
step and fault, the trace, invariant checks), ``running`` (tasks and actors as steps) and
``steps`` (the runnable steps at each turn, virtual time moving); ``deadlock`` (the
cycle of waits a deadlock report names); ``settings`` (how a run is
set up), ``loop`` (the virtual-time event loop of async actors), ``choices`` (choice
sources, fault plans, trace encoding), ``errors`` (what a failed simulation raises),
``store`` (the simulated nodes' object stores, where a value can be lost),
``generators`` (a generator's items as steps).
"""

from __future__ import annotations

from actorlib.backends.sim.backend import SimBackend, configure, current
from actorlib.backends.sim.choices import (
    Choices,
    FaultPlan,
    FirstChoices,
    RandomChoices,
    ReplayChoices,
    decode_trace,
    encode_trace,
)
from actorlib.backends.sim.errors import (
    DeadlockError,
    InvariantViolation,
    NotRunning,
    ReplayDivergedError,
    SimulationError,
    StepBudgetExceeded,
)
from actorlib.backends.sim.settings import SimSettings

__all__ = [
    "Choices",
    "DeadlockError",
    "FaultPlan",
    "FirstChoices",
    "InvariantViolation",
    "NotRunning",
    "RandomChoices",
    "ReplayChoices",
    "ReplayDivergedError",
    "SimBackend",
    "SimSettings",
    "SimulationError",
    "StepBudgetExceeded",
    "configure",
    "current",
    "decode_trace",
    "encode_trace",
]
