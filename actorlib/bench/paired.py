"""``--paired``: actorlib's ray backend and plain Ray in ONE process on ONE Ray instance.

The ray backend's goal is a small overhead over Ray itself (within about 10%), and two
fresh processes, each starting its own Ray, cannot show that on a small machine: Ray's own
rate moved by a third between two runs a minute apart here. Paired, both sides share the
Ray instance, its worker pool and the machine's moment: each turn runs a workload once
for each side, the order alternating turn by turn, and each turn's ratio compares two
rounds seconds apart. What this hides: the cost of actorlib's import and runtime in the
driver (plain Ray's rounds carry it too), which ``startup`` and ``idle_memory`` measure.
"""

from __future__ import annotations

import importlib
import statistics
import sys
import traceback
from collections.abc import Callable
from typing import Any

from actorlib.bench import alternatives
from actorlib.bench import workloads as w
from actorlib.bench.runner import Harness, Settings, pooled
from actorlib.bench.workload_kit import Env, SkipWorkload

SIDES = ("actorlib", "ray")


def child_main(spec: dict[str, Any]) -> dict[str, Any]:
    """Run ``spec["workloads"]`` on both sides in this process, turn by turn: the two
    targets' results (as :func:`.runner.child_main` makes one) and the paired ratios."""
    import actorlib

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    num_cpus = spec["num_cpus"]
    actorlib.init(backend="ray", num_cpus=num_cpus)
    try:
        ray = importlib.import_module("ray")  # initialized by the ray backend
        envs = {"actorlib": Env(actorlib, "actorlib", "ray", num_cpus, spec.get("large_mb")),
                "ray": Env(ray, "ray", None, num_cpus, spec.get("large_mb"))}
        tables: dict[str, dict[str, Callable[[Env, Harness], None]]] = {
            "actorlib": dict(w.WORKLOADS), "ray": alternatives.WORKLOADS["ray"]}
        turns: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
        paired: dict[str, dict[str, Any]] = {}
        for name in spec["workloads"]:
            log(f"  {name}")
            rounds = _turns(name, envs, tables, spec, turns, log)
            paired.update(_ratios(rounds))
    finally:
        actorlib.shutdown()
    return {"targets": {side: _merged(side, turns[side]) for side in SIDES}, "paired": paired}


def _merged(side: str, turns: list[dict[str, Any]]) -> dict[str, Any]:
    """A side's turns as one target's result of one pass (``pooled`` counts each turn
    as a pass of its own)."""
    if not turns:
        return _result(side)
    merged = pooled(turns)
    merged.pop("passes", None)
    merged.pop("wall_s", None)
    return merged


class _Turn(Harness):
    """One timed round after one untimed step: a workload makes its actor (or array)
    anew at each turn, and an actor's first call waits for its process to start (a round
    of about one call a second, where the usual warm-up round took it)."""

    def timed(self, metric: str, step: Callable[[], Any], *, ops: float = 1, unit: str,
              note: str = "") -> None:
        step()
        super().timed(metric, step, ops=ops, unit=unit, note=note)

    def sample(self, measure: Callable[[], tuple[dict[str, float], dict[str, Any]]], *,
               units: dict[str, str], note: str = "") -> None:
        measure()
        super().sample(measure, units=units, note=note)


def _turns(
    name: str, envs: dict[str, Env], tables: dict[str, dict[str, Any]],
    spec: dict[str, Any], turns: dict[str, list[dict[str, Any]]],
    log: Callable[[str], None],
) -> dict[str, list[dict[str, Any]]]:
    """``name``'s warm-up and timed turns; each side's timed rounds' metrics, in order.
    A side that skips or fails the workload stops there, and says why; the other goes
    on, and the turns both completed keep their ratios."""
    settings = Settings(rounds=1, warmup=0, duration=spec["duration"])
    active = [side for side in SIDES if name in tables[side]]
    for side in SIDES:
        if side not in active:
            turns[side].append(_result(side, skipped={
                name: alternatives.not_applicable_reason(side, name)}))
    rounds: dict[str, list[dict[str, Any]]] = {side: [] for side in active}
    for turn in range(spec["warmup"] + spec["rounds"]):
        timed = turn >= spec["warmup"]
        for side in list(active if turn % 2 == 0 else active[::-1]):
            h = _Turn(settings, name, lambda line: None)
            try:
                tables[side][name](envs[side], h)
            except SkipWorkload as exc:
                active.remove(side)
                turns[side].append(_result(side, skipped={name: str(exc)}))
                continue
            except Exception as exc:
                traceback.print_exc()
                active.remove(side)
                turns[side].append(_result(side, metrics=h.metrics if timed else {},
                                           errors={name: f"{type(exc).__name__}: {exc}"}))
                continue
            if timed:
                rounds[side].append(h.metrics)
                turns[side].append(_result(side, metrics=h.metrics))
                for metric, m in h.metrics.items():
                    log(f"    {side:9} {metric:24} {m['mean']:14.4g} {m['unit']}")
    return rounds


def _ratios(rounds: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per metric, each turn's ratio (> 1: actorlib better)."""
    out: dict[str, dict[str, Any]] = {}
    for ours, theirs in zip(rounds.get("actorlib", []), rounds.get("ray", []), strict=False):
        for metric, m in ours.items():
            other = theirs.get(metric)
            if other is None or not m["mean"] or not other["mean"]:
                continue
            ratio = (m["mean"] / other["mean"] if m["higher_is_better"]
                     else other["mean"] / m["mean"])
            out.setdefault(metric, {"ratios": []})["ratios"].append(ratio)
    return out


def median_of(paired: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each metric's turn ratios (of every pass) with their median."""
    return {metric: {"ratios": entry["ratios"], "median": statistics.median(entry["ratios"])}
            for metric, entry in paired.items() if entry["ratios"]}


def _result(side: str, **parts: dict[str, Any]) -> dict[str, Any]:
    """One turn of one side, shaped as :func:`.runner.child_main`'s result."""
    result: dict[str, Any] = {"target": side, "backend": "ray" if side == "actorlib" else None,
                              "metrics": {}, "skipped": {}, "errors": {}}
    result.update(parts)
    return result


def table(paired: dict[str, dict[str, Any]]) -> str:
    """The paired ratios, one line per metric, for the terminal."""
    lines = ["paired turns (one process, one Ray; > 1: actorlib better): median ratio "
             "[each turn's]"]
    for metric, entry in paired.items():
        turns = ", ".join(f"{r:.2f}" for r in entry["ratios"])
        lines.append(f"  {metric:32} {entry['median']:.2f}x  [{turns}]")
    return "\n".join(lines)
