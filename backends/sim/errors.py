"""What a failed simulation raises (in the test's own thread, from the ``get`` it was in)."""

from __future__ import annotations


class SimulationError(Exception):
    """The simulated run broke a rule of the simulation: deadlock, step budget, invariant.

    ``trace`` replays the run (``actorlib.testing.replay(trace)``); ``steps`` names the
    steps taken, in order.
    """

    def __init__(self, message: str, trace: str = "", steps: list[str] | None = None) -> None:
        super().__init__(message)
        self.trace = trace
        self.steps = list(steps or ())

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.trace, self.steps))


class DeadlockError(SimulationError):
    """The test waits, and nothing can run: every task and actor is blocked."""


class StepBudgetExceeded(SimulationError):
    """The run took more steps than allowed (a livelock, or a budget set too low)."""


class InvariantViolation(SimulationError, AssertionError):
    """An ``actorlib.testing.invariant`` failed after a step."""


class ReplayDivergedError(SimulationError):
    """A replayed trace asked for a choice the run does not offer: the program changed."""


class NotRunning(LookupError):
    """``peek`` of an actor that is not running now (not constructed yet, or dead).

    An invariant that raises it is skipped for that step.
    """
