"""How one simulated run is set up: :class:`SimSettings` and the environment variables.

What a test (through :mod:`actorlib.testing`) or ``ACTORLIB_SIM_REPLAY`` /
``ACTORLIB_SIM_SEED`` / ``ACTORLIB_SIM_MAX_STEPS`` choose before the run starts: the choice
source, the fault plan, the step budget, whether time is explored, the invariants. Separate
from the backend so that the testing API and the backend's parts read the settings without
importing the simulator itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from actorlib.backends.sim.choices import Choices, FaultPlan, RandomChoices, ReplayChoices

__all__ = ["MAX_STEPS_ENV", "REPLAY_ENV", "SEED_ENV", "SimSettings", "settings_from_env"]

REPLAY_ENV = "ACTORLIB_SIM_REPLAY"
SEED_ENV = "ACTORLIB_SIM_SEED"
MAX_STEPS_ENV = "ACTORLIB_SIM_MAX_STEPS"  # default for a plain init: 0, no limit


@dataclass
class SimSettings:
    """How one simulated run makes its choices and what it checks."""

    choices: Choices = field(default_factory=RandomChoices)
    faults: FaultPlan = field(default_factory=FaultPlan)
    #: Steps the whole run may take (0: no limit) before it fails with StepBudgetExceeded.
    max_steps: int = 20_000
    #: False (the default): virtual time jumps to the next timer only when nothing else
    #: can run (trio's autojump clock). True: "time passes" is one more choice at every
    #: step, so timeouts may fire while work is still runnable (slow work, explored).
    explore_time: bool = False
    invariants: list[Callable[[], Any]] = field(default_factory=list)
    #: Called with each step's name as it runs (a live trace; tests of the simulator).
    on_step: Callable[[str], None] | None = None


def settings_from_env() -> SimSettings:
    max_steps = int(os.environ.get(MAX_STEPS_ENV, "0"))
    replay = os.environ.get(REPLAY_ENV)
    if replay:
        choices = ReplayChoices(replay)
        return SimSettings(choices=choices, faults=choices.faults, max_steps=max_steps,
                           explore_time=choices.explore_time)
    return SimSettings(choices=RandomChoices(int(os.environ.get(SEED_ENV, "0"))),
                       max_steps=max_steps)
