"""Property-based testing of actor programs on the deterministic ``sim`` backend.

Run a test body under the simulator, with every open choice (which task starts next, which
caller's call an actor takes next, which coroutine resumes, where a fault lands) drawn from
hypothesis, so hypothesis explores schedules, shrinks a failing one and stores it in its
example database; or from a seeded RNG for long random explorations; or from a printed
trace, to replay a failure step for step. See ``docs/testing.md``.

```python
from actorlib.testing import explore, invariant, peek

@explore(max_examples=200)
def test_transfers_never_overdraw():
    a, b = Account.remote(100), Account.remote(0)
    invariant(lambda: peek(a).balance >= 0)
    actorlib.get([transfer.remote(a, b, 70), transfer.remote(a, b, 70)])
```

This module picks and starts a backend (``sim``), like ``actorlib.session``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from actorlib import session
from actorlib.actor import ActorHandle
from actorlib.backends import sim as _sim
from actorlib.backends.sim import (
    Choices,
    DeadlockError,
    FaultPlan,
    FirstChoices,
    InvariantViolation,
    NotRunning,
    RandomChoices,
    ReplayChoices,
    ReplayDivergedError,
    SimulationError,
    StepBudgetExceeded,
)
from actorlib.backends.sim.choices import DrawChoices, PCTChoices
from actorlib.backends.sim.settings import REPLAY_ENV, SimSettings

F = TypeVar("F", bound=Callable[..., Any])

#: Steps one run may take before it fails with :class:`StepBudgetExceeded`.
DEFAULT_MAX_STEPS = 20_000


class Schedule:
    """Where one simulated run takes its choices from, and which faults it may suffer."""

    def __init__(
        self, choices: Choices | None = None, faults: FaultPlan | None = None,
        explore_time: bool = False,
    ) -> None:
        self.choices = choices if choices is not None else FirstChoices()
        self.faults = faults if faults is not None else FaultPlan()
        self.explore_time = explore_time

    def __repr__(self) -> str:
        extra = f", faults={self.faults}" if self.faults.any else ""
        return f"Schedule({self.choices.describe()}{extra})"


@dataclass
class Simulation:
    """What ``simulate`` yields: the run so far (steps, the trace that replays it)."""

    _backend: Any = None

    @property
    def steps(self) -> int:
        return int(self._backend.steps)

    @property
    def log(self) -> list[str]:
        """The name of every step taken, in order."""
        return list(self._backend.log)

    @property
    def trace(self) -> str:
        """Pass to :func:`replay` (or ``$ACTORLIB_SIM_REPLAY``) to run the same again."""
        return str(self._backend.trace)

    @property
    def choices(self) -> list[int]:
        return list(self._backend.choices_made)

    @property
    def now(self) -> float:
        """Virtual time, in seconds."""
        return float(self._backend.clock.now)

    @property
    def faults_injected(self) -> int:
        return int(self._backend.faults_used)


# -- hypothesis strategies ---------------------------------------------------------------


def faults(
    *, kill_worker: bool = False, restart_actor: bool = False, drop_before_reply: bool = False,
    delay_reply: bool = False, lose_node: bool = False, lose_object: bool = False,
    max_faults: int = 1,
) -> Any:
    """A strategy of fault plans: the kinds allowed, and up to ``max_faults`` of them per
    run (hypothesis shrinks toward fewer). What each kind does: :class:`FaultPlan`."""
    from hypothesis import strategies as st

    return st.builds(
        FaultPlan, kill_worker=st.just(kill_worker), restart_actor=st.just(restart_actor),
        drop_before_reply=st.just(drop_before_reply), delay_reply=st.just(delay_reply),
        lose_node=st.just(lose_node), lose_object=st.just(lose_object),
        max_faults=st.integers(min_value=0, max_value=max_faults),
    )


@functools.lru_cache(maxsize=256)
def _indices(n: int) -> Any:
    """The strategy of a choice among ``n`` options, made once per ``n``: a draw is taken
    at every choice of a run, and building the strategy each time cost a third of it."""
    from hypothesis import strategies as st

    return st.integers(min_value=0, max_value=n - 1)


def schedules(faults: Any = None, *, explore_time: bool = False) -> Any:
    """A strategy of :class:`Schedule`: each choice of the run is drawn from hypothesis
    when the run makes it (``faults``: a :func:`faults` strategy, or a FaultPlan)."""
    from hypothesis import strategies as st

    @st.composite
    def build(draw: Any) -> Schedule:
        if faults is None:
            plan = FaultPlan()
        elif isinstance(faults, FaultPlan):
            plan = faults
        else:
            plan = draw(faults)

        def choose(n: int) -> int:
            return int(draw(_indices(n)))

        return Schedule(DrawChoices(choose), plan, explore_time)

    return build()


# -- running under the simulator ---------------------------------------------------------


def simulate(
    schedule: Schedule | None = None, *, seed: int | None = None, trace: str | None = None,
    max_steps: int = DEFAULT_MAX_STEPS, invariants: tuple[Callable[[], Any], ...] = (),
    on_step: Callable[[str], None] | None = None, nodes: int | None = None,
    preempt: float = 0.0, **init_kwargs: Any,
) -> contextlib.AbstractContextManager[Simulation]:
    """Start actorlib on the ``sim`` backend for the ``with`` body; shut it down after.

    Choices come from ``schedule``, else a ``trace`` to replay, else ``seed`` (random),
    else ``$ACTORLIB_SIM_REPLAY``, else the oldest step each time. ``nodes``: simulated
    nodes, each with the resources ``init_kwargs`` ask for (default 1, or as many as the
    replayed trace had). ``preempt``: seconds of real time a step may run user code
    before it runs on beside the simulation (for tasks that spin in real time; off by
    default, as it makes the run depend on real time). A failure raised in the body
    carries the trace that replays it (an exception note).

    The arguments are checked here, not when the ``with`` starts: ``simulate(body)``,
    written as ``search(body)`` is, would otherwise run nothing and pass.
    """
    if schedule is not None and not isinstance(schedule, Schedule):
        hint = (
            " simulate() runs the body of a `with` statement: `with simulate(): body()`; "
            "search(body) and exhaust(body) take a function"
            if callable(schedule) else ""
        )
        raise TypeError(
            f"simulate(schedule=...) takes a Schedule (from schedules()), got "
            f"{type(schedule).__name__}.{hint}"
        )
    if nodes is not None and (type(nodes) is not int or nodes < 1):
        raise ValueError(f"simulate(nodes={nodes!r}): expected a whole number of nodes, 1 or more")
    if not isinstance(preempt, (int, float)) or isinstance(preempt, bool) or preempt < 0:
        raise ValueError(f"simulate(preempt={preempt!r}): expected seconds, 0 (off) or more")
    return _simulate(schedule, seed, trace, max_steps, invariants, on_step, nodes,
                     float(preempt), init_kwargs)


@contextlib.contextmanager
def _simulate(
    schedule: Schedule | None, seed: int | None, trace: str | None, max_steps: int,
    invariants: tuple[Callable[[], Any], ...], on_step: Callable[[str], None] | None,
    nodes: int | None, preempt: float, init_kwargs: dict[str, Any],
) -> Iterator[Simulation]:
    if schedule is None:
        trace = trace or os.environ.get(REPLAY_ENV) or None
        if trace is not None:
            replayed = ReplayChoices(trace)
            schedule = Schedule(replayed, replayed.faults, replayed.explore_time)
            if nodes is None:
                nodes = replayed.nodes
        elif seed is not None:
            schedule = Schedule(RandomChoices(seed))
        else:
            schedule = Schedule()
    settings = SimSettings(
        choices=schedule.choices, faults=schedule.faults, max_steps=max_steps,
        invariants=list(invariants), explore_time=schedule.explore_time, on_step=on_step,
        nodes=1 if nodes is None else nodes, preempt=preempt,
    )
    if session.runtime() is not None:
        raise RuntimeError("simulate() starts its own runtime: call actorlib.shutdown() first")
    _sim.configure(settings)
    try:
        session.init(backend="sim", **init_kwargs)
    finally:
        _sim.configure(None)
    backend = _sim.current()
    assert backend is not None
    run = Simulation(backend)
    try:
        try:
            yield run
        except BaseException as exc:
            if not isinstance(exc, SimulationError):
                _annotate(exc, run)
            raise
        failure = backend.failure
        if failure is not None:  # the body caught it; the run still failed
            raise failure
    finally:
        session.shutdown()


def _annotate(exc: BaseException, run: Simulation) -> None:
    if getattr(exc, "_actorlib_sim_noted", False):
        return
    tail = run.log[-30:]
    first = len(run.log) - len(tail) + 1
    steps = "\n".join(f"  {first + i:4d}. {name}" for i, name in enumerate(tail))
    add_note = getattr(exc, "add_note", None)  # Python 3.11+
    if add_note is not None:
        add_note(
            f"simulation: {run.steps} steps, virtual time {run.now:g}s; last {len(tail)}:\n"
            f"{steps}\nreplay with: actorlib.testing.replay({run.trace!r})"
        )
    with contextlib.suppress(AttributeError, TypeError):
        exc._actorlib_sim_noted = True  # type: ignore[attr-defined]
        exc.sim_trace = run.trace  # type: ignore[attr-defined]
        exc.sim_steps = run.log  # type: ignore[attr-defined]


def explore(
    max_examples: int = 100, *, faults: Any = None, explore_time: bool = False,
    max_steps: int = DEFAULT_MAX_STEPS, database: Any = "default", **init_kwargs: Any,
) -> Callable[[F], F]:
    """Decorate a test: run its body under ``sim`` with schedules drawn by hypothesis.

    Hypothesis explores up to ``max_examples`` schedules, shrinks a failing one and keeps
    it in its example database (``database=None`` to not). With ``$ACTORLIB_SIM_REPLAY``
    set, the body runs once, replaying that trace instead. pytest fixtures still work:
    the decorated function keeps its signature.
    """

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if os.environ.get(REPLAY_ENV):
                with simulate(max_steps=max_steps, **init_kwargs):
                    return fn(*args, **kwargs)
            from hypothesis import HealthCheck, Phase, given, settings

            def body(schedule: Schedule) -> None:
                with simulate(schedule, max_steps=max_steps, **init_kwargs):
                    fn(*args, **kwargs)

            # One example database entry per decorated test, not per this inner function.
            body._hypothesis_internal_add_digest = (  # type: ignore[attr-defined]
                f"{fn.__module__}.{fn.__qualname__}".encode()
            )
            extra: dict[str, Any] = {} if database == "default" else {"database": database}
            # No ``explain`` phase: after the first failure it traces every later run
            # line by line (sys.settrace), which over a simulated run's many steps made
            # one hunt take minutes instead of seconds; the printed schedule trace is
            # the explanation a failure needs.
            test = settings(
                max_examples=max_examples, deadline=None,
                suppress_health_check=list(HealthCheck), **extra,
                phases=[phase for phase in Phase if phase is not Phase.explain],
            )(given(schedule=schedules(faults, explore_time=explore_time))(body))
            test()
            return None

        return wrapper  # type: ignore[return-value]

    return decorate


def replay(trace: str, **init_kwargs: Any) -> Callable[[F], F]:
    """Decorate a test: run its body once, replaying ``trace`` step for step."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with simulate(trace=trace, **init_kwargs):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


@dataclass
class Found:
    """A failing run found by :func:`search`."""

    error: BaseException
    trace: str
    steps: int
    runs: int
    seconds: float
    seed: int


def search(
    body: Callable[[], Any], *, iterations: int = 1000, seed: int = 0,
    strategy: str = "random", faults: FaultPlan | None = None,
    max_steps: int = DEFAULT_MAX_STEPS, **init_kwargs: Any,
) -> Found | None:
    """Run ``body`` under up to ``iterations`` seeded schedules (``strategy``: "random"
    or "pct"); return the first failure (its trace replays it), or None."""
    started = time.perf_counter()
    for i in range(iterations):
        run_seed = seed + i
        choices: Choices = (
            PCTChoices(run_seed) if strategy == "pct" else RandomChoices(run_seed)
        )
        schedule = Schedule(choices, faults or FaultPlan())
        sim_run: Simulation | None = None
        try:
            with simulate(schedule, max_steps=max_steps, **init_kwargs) as sim_run:
                body()
        except Exception as exc:
            trace = sim_run.trace if sim_run is not None else ""
            steps = sim_run.steps if sim_run is not None else 0
            return Found(exc, trace, steps, i + 1, time.perf_counter() - started, run_seed)
    return None


@dataclass
class Exhausted:
    """What :func:`exhaust` saw: every schedule, or the first failing one."""

    runs: int
    complete: bool  # every schedule was run (False: stopped at max_runs or a failure)
    failure: BaseException | None = None
    trace: str = ""
    results: list[Any] = field(default_factory=list)


def exhaust(
    body: Callable[[], Any], *, max_runs: int = 10_000, faults: FaultPlan | None = None,
    max_steps: int = DEFAULT_MAX_STEPS, stop_on_failure: bool = True, **init_kwargs: Any,
) -> Exhausted:
    """Run ``body`` under every schedule, depth first (stateless model checking).

    Each run replays a prefix of choices and takes the oldest step after it; the next
    prefix bumps the last choice that had options left. ``results`` collects what each
    run of ``body`` returned. Exhaustive only for small programs: the number of
    schedules grows exponentially with the number of concurrent steps.
    """
    plan = faults or FaultPlan()
    prefix: list[int] = []
    out = Exhausted(0, False)
    while out.runs < max_runs:
        run: Simulation | None = None
        out.runs += 1
        try:
            with simulate(Schedule(ReplayChoices(prefix), plan), max_steps=max_steps,
                          **init_kwargs) as run:
                out.results.append(body())
        except Exception as exc:
            if stop_on_failure:
                out.failure = exc
                out.trace = run.trace if run is not None else ""
                return out
        assert run is not None
        choices, options = run.choices, list(run._backend.options)
        i = len(choices) - 1
        while i >= 0 and choices[i] + 1 >= options[i]:
            i -= 1
        if i < 0:
            out.complete = True
            return out
        prefix = [*choices[:i], choices[i] + 1]
    return out


# -- inside a simulated run --------------------------------------------------------------


def _running() -> Any:
    backend = _sim.current()
    if backend is None:
        raise RuntimeError("no simulation is running: use simulate(), @explore or @replay")
    return backend


def invariant(check: Callable[[], Any]) -> Callable[[], Any]:
    """Check ``check()`` after every step of the running simulation, from now on.

    It fails the run (:class:`InvariantViolation`) by returning False or raising
    AssertionError; raising :class:`NotRunning` (from :func:`peek` of an actor not
    running now) skips it for that step. It runs between steps, everything paused: it may
    read actors' state with :func:`peek`, and must not call ``get``. Usable as a decorator.
    """
    _running().add_invariant(check)
    return check


def peek(handle: ActorHandle[Any]) -> Any:
    """The live instance behind an actor handle, in the running simulation: for reading
    state in invariants and assertions. Raises :class:`NotRunning` if the actor is not
    running now (not constructed yet, restarting, or dead)."""
    return _running().instance(handle._id)


def current() -> Simulation:
    """The running simulation."""
    return Simulation(_running())


__all__ = [
    "DeadlockError",
    "Exhausted",
    "FaultPlan",
    "Found",
    "InvariantViolation",
    "NotRunning",
    "ReplayDivergedError",
    "Schedule",
    "Simulation",
    "SimulationError",
    "StepBudgetExceeded",
    "current",
    "exhaust",
    "explore",
    "faults",
    "invariant",
    "peek",
    "replay",
    "schedules",
    "search",
    "simulate",
]
