"""Where the simulator's choices come from, which faults it may inject, and traces.

A choice is an index into the list of runnable steps, ordered oldest first, followed by
the faults that may land now: ``choose(n, faults)`` returns an int in
``range(n + faults)``. Index 0 is always "the oldest runnable step", so a source that
always answers 0 runs first come, first served, and a shrinking search (hypothesis)
converges on the fewest deviations from that.

A trace is the list of choices made where there was more than one option, written
compactly after a header naming the fault plan: ``sim1:<flags>:`` then ``.``-separated
numbers, a run of k zeros written ``zk`` (``sim1::z12.1.z3.2``, ``sim1:kd1:z4.7``).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from actorlib.backends.sim.errors import ReplayDivergedError

TRACE_PREFIX = "sim1:"


class Choices:
    """A source of choices. Subclasses implement ``choose``."""

    def choose(self, n: int, faults: int = 0) -> int:
        raise NotImplementedError

    def describe(self) -> str:
        return type(self).__name__


class FirstChoices(Choices):
    """Always the oldest runnable step; never a fault. The plain FIFO run."""

    def choose(self, n: int, faults: int = 0) -> int:
        return 0


class RandomChoices(Choices):
    """Uniform among runnable steps; a fault with probability ``fault_rate`` when one may land."""

    def __init__(self, seed: int = 0, fault_rate: float = 0.05) -> None:
        self.seed = seed
        self.fault_rate = fault_rate
        self._rng = random.Random(seed)

    def choose(self, n: int, faults: int = 0) -> int:
        rng = self._rng
        if faults and (n == 0 or rng.random() < self.fault_rate):
            return n + rng.randrange(faults)
        # ``randrange(n)`` is ``_randbelow(n)`` for n > 0 (the same numbers from the same
        # seed), less its checks of the arguments.
        return rng._randbelow(n) if n > 0 else rng.randrange(n)  # type: ignore[attr-defined]

    def describe(self) -> str:
        return f"RandomChoices(seed={self.seed})"


class PCTChoices(Choices):
    """A probabilistic-concurrency-testing style source (Burckhardt et al., 2010), adapted.

    Each runnable step gets a random priority when first offered; the highest runs.
    At ``depth`` change points drawn at random in the first ``horizon`` choices, the
    step about to run is demoted below all others. Finds bugs that need a few specific
    preemptions far more often than uniform choice does. Needs the steps' keys, which
    the simulator passes as ``keys``.
    """

    def __init__(self, seed: int = 0, depth: int = 3, horizon: int = 200) -> None:
        self.seed = seed
        self._rng = random.Random(seed)
        self._changes = set(self._rng.sample(range(horizon), min(depth, horizon)))
        self._priority: dict[object, float] = {}
        self._count = 0
        self.keys: list[object] = []

    def choose(self, n: int, faults: int = 0) -> int:
        rng = self._rng
        if faults and rng.random() < 0.02:
            return n + rng.randrange(faults)
        if n == 0:
            return rng.randrange(faults)
        keys = self.keys[:n] if len(self.keys) >= n else list(range(n))
        priority = self._priority
        for key in keys:
            if key not in priority:
                priority[key] = rng.random() + 1.0
        best = max(range(n), key=lambda i: priority[keys[i]])
        if self._count in self._changes:
            priority[keys[best]] = rng.random() * 0.5  # demoted below every fresh step
            best = max(range(n), key=lambda i: priority[keys[i]])
        self._count += 1
        return best

    def describe(self) -> str:
        return f"PCTChoices(seed={self.seed})"


class ReplayChoices(Choices):
    """The choices of a recorded trace, then the oldest step (0) once it is used up."""

    def __init__(self, trace: str | list[int]) -> None:
        self.nodes = 1  # the simulated nodes the recorded run had
        if isinstance(trace, str):
            self.choices, self.faults, self.explore_time = decode_trace(trace)
            self.nodes = trace_nodes(trace)
        else:
            self.choices, self.faults, self.explore_time = list(trace), FaultPlan(), False
        self._at = 0

    def choose(self, n: int, faults: int = 0) -> int:
        if self._at >= len(self.choices):
            return 0
        choice = self.choices[self._at]
        self._at += 1
        if choice >= n + faults:
            raise ReplayDivergedError(
                f"the trace chose option {choice} at choice {self._at}, but only "
                f"{n + faults} were open: the program is not the one that was recorded"
            )
        return choice


class DrawChoices(Choices):
    """Choices from a ``draw(n) -> int in range(n)`` function (hypothesis data)."""

    def __init__(self, draw: Callable[[int], int]) -> None:
        self._draw = draw

    def choose(self, n: int, faults: int = 0) -> int:
        return self._draw(n + faults)

    def describe(self) -> str:
        return "choices drawn by hypothesis (the trace is in the failure's notes)"


@dataclass(frozen=True)
class FaultPlan:
    """Which faults the simulator may inject, and how many in one run.

    ``kill_worker``: the worker running a task dies while the task is paused (in
    ``get``); ``restart_actor``: an actor's worker dies between steps (the core restarts
    it if ``max_restarts`` allows, retrying calls per ``max_task_retries``);
    ``drop_before_reply``: a task or call runs to the end and its worker dies before the
    result gets out (the side effects happened; the result is lost); ``delay_reply``: a
    task's or call's reply (a message) is held back, and delivered at a later step of the
    scheduler's choosing, other steps running meanwhile; ``lose_node``: every worker of a
    simulated node other than the driver's dies at once, its actors and tasks with them,
    and the values its store held are lost (``simulate(nodes=2)`` or more); ``lose_object``:
    a value kept in a node's store (64 KiB and up; smaller ones travel inline) vanishes:
    the core re-runs the task that made it where it can, else ``get`` raises
    ``ObjectLostError``.
    """

    kill_worker: bool = False
    restart_actor: bool = False
    drop_before_reply: bool = False
    delay_reply: bool = False
    lose_node: bool = False
    lose_object: bool = False
    max_faults: int = 1

    @property
    def any(self) -> bool:
        return self.max_faults > 0 and (
            self.kill_worker or self.restart_actor or self.drop_before_reply
            or self.delay_reply or self.lose_node or self.lose_object
        )


_FAULT_LETTERS = (
    ("kill_worker", "k"), ("restart_actor", "a"), ("drop_before_reply", "d"),
    ("delay_reply", "m"), ("lose_node", "n"), ("lose_object", "o"),
)


def encode_trace(choices: list[int], faults: FaultPlan | None = None,
                 explore_time: bool = False, nodes: int = 1) -> str:
    """``sim1:<flags>:<choices>``: flags name the fault plan (k, a, d, m, n, o and the
    budget), ``t`` explored time and ``x<n>`` the number of simulated nodes (when more
    than one), which a replay needs to offer the same options."""
    flags = ""
    if faults is not None and faults.any:
        flags = "".join(letter for name, letter in _FAULT_LETTERS if getattr(faults, name))
        flags += str(faults.max_faults)
    if explore_time:
        flags += "t"
    if nodes != 1:
        flags += f"x{nodes}"
    parts: list[str] = []
    zeros = 0
    for choice in choices:
        if choice == 0:
            zeros += 1
            continue
        if zeros:
            parts.append("0" if zeros == 1 else f"z{zeros}")
            zeros = 0
        parts.append(str(choice))
    if zeros:
        parts.append("0" if zeros == 1 else f"z{zeros}")
    return f"{TRACE_PREFIX}{flags}:{'.'.join(parts)}"


def decode_trace(trace: str) -> tuple[list[int], FaultPlan, bool]:
    """The choices, the fault plan and the explore-time flag of a trace."""
    text = trace.strip()
    if not text.startswith(TRACE_PREFIX) or text.count(":") != 2:
        raise ValueError(f"not a simulation trace ({TRACE_PREFIX}<flags>:<choices>): {trace!r}")
    flags, _, body = text[len(TRACE_PREFIX):].partition(":")
    flags = flags.partition("x")[0]
    digits = "".join(c for c in flags if c.isdigit())
    plan = FaultPlan(
        **{name: letter in flags for name, letter in _FAULT_LETTERS},
        max_faults=int(digits) if digits else 0,
    )
    out: list[int] = []
    for part in filter(None, body.split(".")):
        if part.startswith("z"):
            out.extend([0] * int(part[1:]))
        else:
            out.append(int(part))
    return out, plan, "t" in flags


def trace_nodes(trace: str) -> int:
    """The number of simulated nodes a trace was recorded with (``x<n>`` in its flags)."""
    flags = trace.strip()[len(TRACE_PREFIX):].partition(":")[0]
    _, x, count = flags.partition("x")
    if not x:
        return 1
    if not count.isdigit() or int(count) < 1:
        raise ValueError(f"not a simulation trace (bad node count x{count}): {trace!r}")
    return int(count)
