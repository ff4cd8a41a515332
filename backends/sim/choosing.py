"""Making and recording the run's choices: picking a step, landing a fault, the trace.

Every open choice goes through :meth:`Choosing._pick` (which runnable step runs next) or
:meth:`Choosing._choose_fault` (whether a fault lands at a point where one may); both ask
the choice source and record the answer, so the run can be replayed from its trace. Also
here: the step log, the invariant checks after each step, and turning a failure into a
:class:`~actorlib.backends.sim.errors.SimulationError` that carries the trace. Separate
because this is the simulator's whole contract with its choice sources, independent of
what a step does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from actorlib.backends.sim.choices import Choices, FaultPlan, PCTChoices, encode_trace
from actorlib.backends.sim.errors import InvariantViolation, NotRunning, SimulationError
from actorlib.backends.sim.settings import SimSettings
from actorlib.backends.sim.threads import Baton

__all__ = ["Choosing", "Item"]

#: A runnable step: (key, name, action). The key identifies it across choices (its age).
Item = tuple[Any, str, Callable[[], Any]]


class Choosing(Baton):
    """The choices made so far, the steps taken, and the checks after each."""

    settings: SimSettings
    source: Choices
    faults: FaultPlan
    invariants: list[Callable[[], Any]]

    def __init__(self) -> None:
        super().__init__()
        self._born: dict[Any, int] = {}
        self._births = 0
        self._failure: SimulationError | None = None
        self._faulty = False  # the fault plan allows any fault (``faults.any``)
        self.steps = 0
        self.faults_used = 0
        self.choices_made: list[int] = []
        self.options: list[int] = []  # how many options each choice had
        self.log: list[str] = []
        # Asked at every step: read from the settings once, when the run starts.
        self._on_step: Callable[[str], None] | None = None

    def _pick(self, items: list[Item], faults: list[Item]) -> Item:
        born = self._born
        if not faults and len(items) == 1:  # no choice: nothing asked, nothing recorded
            picked = items[0]
            if born:
                born.pop(picked[0], None)
            return picked
        options = items + faults if faults else items
        if isinstance(self.source, PCTChoices):
            self.source.keys = [key for key, _, _ in items]
        if len(options) == 1:
            choice = 0
        else:
            choice = self.source.choose(len(items), len(faults))
            self.choices_made.append(choice)
            self.options.append(len(options))
        picked = options[choice]
        if born:  # (empty in a turn of only tasks: theirs are kept on them)
            born.pop(picked[0], None)
        if choice >= len(items):
            self.faults_used += 1
        return picked

    def _choose_fault(self, allowed: bool, name: str) -> bool:
        """A point where one fault may land (``drop_before_reply``, ``delay_reply``, as
        ``allowed`` says): 1 means it does."""
        if not (allowed and self.faults_used < self.faults.max_faults):
            return False
        choice = self.source.choose(1, 1)
        self.choices_made.append(choice)
        self.options.append(2)
        if choice:
            self.faults_used += 1
            self._record(name)
        return bool(choice)

    def _record(self, name: str) -> None:
        self.steps += 1
        self.log.append(name)
        if self._on_step is not None:
            self._on_step(name)

    @property
    def trace(self) -> str:
        return encode_trace(self.choices_made, self.faults, self.settings.explore_time,
                            self.settings.nodes)

    def _fail(self, error: SimulationError) -> None:
        error.trace = self.trace
        error.steps = list(self.log)
        tail = self.log[-30:]
        shown = "\n".join(
            f"  {len(self.log) - len(tail) + i + 1:4d}. {name}" for i, name in enumerate(tail)
        )
        error.args = (
            f"{error.args[0]}\n\nlast {len(tail)} of {len(self.log)} steps:\n{shown}\n\n"
            f"replay with: actorlib.testing.replay({self.trace!r})",
        )
        self._failure = error
        raise error

    def _check_invariants(self) -> None:
        for check in self.invariants:
            try:
                ok = check()
            except NotRunning:
                continue
            except AssertionError as exc:
                self._fail(InvariantViolation(
                    f"invariant {_name_of(check)} failed after step {self.steps}: {exc}"
                ))
            if ok is False:
                self._fail(InvariantViolation(
                    f"invariant {_name_of(check)} is false after step {self.steps}"
                ))


def _name_of(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)
