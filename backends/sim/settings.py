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

__all__ = [
    "IDLE_DRIVE_ENV", "MAX_STEPS_ENV", "PREEMPT_ENV", "REPLAY_ENV", "SEED_ENV", "SimSettings",
    "settings_from_env",
]

REPLAY_ENV = "ACTORLIB_SIM_REPLAY"
SEED_ENV = "ACTORLIB_SIM_SEED"
MAX_STEPS_ENV = "ACTORLIB_SIM_MAX_STEPS"  # default for a plain init: 0, no limit
IDLE_DRIVE_ENV = "ACTORLIB_SIM_IDLE_DRIVE"  # seconds; default for a plain init: 0, off
PREEMPT_ENV = "ACTORLIB_SIM_PREEMPT"  # seconds; default for a plain init: 0, off


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
    #: 0 (the default): steps run only while a thread waits in ``get``/``wait``, so the
    #: run is a function of its choices. > 0: once no thread has driven the simulation
    #: for this many seconds of real time, a background thread runs the runnable steps
    #: (a program that waits on something else, a ``concurrent.futures`` future, a lock,
    #: ``time.sleep``, still progresses), at the price of exact replay.
    idle_drive: float = 0.0
    #: 0 (the default): a step runs until its user code ends or waits in ``get``, so a
    #: task that spins in real time (polls a file or a flag, sleeps in a loop) holds the
    #: run. > 0: once a step has run user code for this many seconds of real time, it is
    #: preempted: it runs on beside the simulation, which takes other steps meanwhile (a
    #: cancel interrupts it as on the thread backend), and it rejoins the run as a paused
    #: step when it ends or calls ``get``. Real time then decides what runs when: a run
    #: that preempts is not replayed exactly.
    preempt: float = 0.0
    #: Simulated nodes, each with the resources ``init`` asks for (``num_cpus``, ...).
    #: The driver runs on the first; a ``lose_node`` fault takes one of the others.
    nodes: int = 1


def settings_from_env() -> SimSettings:
    max_steps = _number(MAX_STEPS_ENV, int, 0)
    idle_drive = _number(IDLE_DRIVE_ENV, float, 0.0)
    preempt = _number(PREEMPT_ENV, float, 0.0)
    replay = os.environ.get(REPLAY_ENV)
    if replay:
        choices = ReplayChoices(replay)
        return SimSettings(choices=choices, faults=choices.faults, max_steps=max_steps,
                           explore_time=choices.explore_time, idle_drive=idle_drive,
                           nodes=choices.nodes, preempt=preempt)
    return SimSettings(choices=RandomChoices(_number(SEED_ENV, int, 0)),
                       max_steps=max_steps, idle_drive=idle_drive, preempt=preempt)


def _number(name: str, kind: type[Any], default: Any) -> Any:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        raise ValueError(
            f"${name}={text!r}: expected a non-negative {kind.__name__}"
        ) from None
    if value < 0:
        raise ValueError(f"${name}={text!r}: expected a non-negative {kind.__name__}")
    return value
