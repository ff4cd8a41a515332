"""The harness: each target runs in its own fresh subprocess; warm-up, timed rounds.

The parent (``run``) starts ``python -m actorlib.bench.runner SPEC OUT`` once per target,
and collects the JSON each child writes to ``OUT``. In the child, each workload records
its metrics through a :class:`Harness`: ``warmup`` discarded rounds, then ``rounds``
timed ones; the mean and the sample standard deviation of the rounds are reported.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from actorlib.bench import alternatives
from actorlib.bench import workloads as w
from actorlib.bench.workload_kit import Env, SkipWorkload


def higher_is_better(unit: str) -> bool:
    """Rates (``/s``) and ratios to a baseline (``x``) grow as actorlib gets better."""
    return unit.endswith("/s") or unit == "x"


@dataclass
class Settings:
    rounds: int = 3
    warmup: int = 1
    duration: float = 1.0  # seconds per timed round of a repeated step


class Harness:
    """Runs a workload's steps and records its metrics."""

    def __init__(self, settings: Settings, workload: str, log: Callable[[str], None]) -> None:
        self.settings = settings
        self.workload = workload
        self.metrics: dict[str, dict[str, Any]] = {}
        self._log = log

    def timed(
        self, metric: str, step: Callable[[], Any], *, ops: float = 1, unit: str,
        note: str = "",
    ) -> None:
        """Repeat ``step`` (``ops`` operations each) for ``duration`` seconds per round.

        A unit ending in ``/s`` reports operations per second; ``ms`` the time per step.
        """

        def one_round() -> float:
            count = 0
            t0 = time.perf_counter()
            deadline = t0 + self.settings.duration
            while True:
                step()
                count += 1
                now = time.perf_counter()
                if now >= deadline:
                    break
            elapsed = now - t0
            if higher_is_better(unit):
                return ops * count / elapsed
            return elapsed / count * 1000

        for _ in range(self.settings.warmup):
            one_round()
        values = [one_round() for _ in range(self.settings.rounds)]
        self._record(metric, unit, values, {}, note)

    def sample(
        self, measure: Callable[[], tuple[dict[str, float], dict[str, Any]]], *,
        units: dict[str, str], note: str = "",
    ) -> None:
        """Call ``measure`` once per round; it returns ``({metric: value}, extras)``."""
        for _ in range(self.settings.warmup):
            measure()
        rounds = [measure() for _ in range(self.settings.rounds)]
        for metric, unit in units.items():
            values = [r[0][metric] for r in rounds]
            self._record(metric, unit, values, rounds[-1][1], note)

    def _record(
        self, metric: str, unit: str, values: list[float], extras: dict[str, Any], note: str,
    ) -> None:
        mean = statistics.fmean(values)
        stdev = statistics.stdev(values) if len(values) > 1 else 0.0
        self.metrics[metric] = {
            "workload": self.workload,
            "unit": unit,
            "higher_is_better": higher_is_better(unit),
            "mean": mean,
            "stdev": stdev,
            "rounds": values,
            "extras": extras,
            "note": note,
        }
        extra = f"  {extras}" if extras else ""
        self._log(f"    {metric:24} {mean:14.4g} ± {stdev:.3g} {unit}{extra}")


# --------------------------------------------------------------------------- the child


@contextlib.contextmanager
def _started(spec: dict[str, Any]) -> Iterator[Env]:
    target = spec["target"]
    if target == "actorlib":
        import actorlib

        actorlib.init(backend=spec["backend"], num_cpus=spec["num_cpus"])
        try:
            yield Env(actorlib, "actorlib", spec["backend"], spec["num_cpus"])
        finally:
            actorlib.shutdown()
    else:
        with alternatives.started(target, spec["num_cpus"]) as env:
            yield env


def _workloads_of(target: str) -> dict[str, Callable[[Env, Harness], None]]:
    if target == "actorlib":
        return dict(w.WORKLOADS)
    return alternatives.WORKLOADS[target]


def child_main(spec: dict[str, Any]) -> dict[str, Any]:
    """Run ``spec["workloads"]`` on ``spec["target"]`` in this process."""
    target = spec["target"]
    settings = Settings(spec["rounds"], spec["warmup"], spec["duration"])

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    table = _workloads_of(target)
    result: dict[str, Any] = {
        "target": target,
        "backend": spec.get("backend") if target == "actorlib" else None,
        "metrics": {},
        "skipped": {},
        "errors": {},
    }
    with _started(spec) as env:
        env.large_mb = spec.get("large_mb")
        for name in spec["workloads"]:
            fn = table.get(name)
            if fn is None:
                result["skipped"][name] = alternatives.not_applicable_reason(target, name)
                continue
            log(f"  {name}")
            h = Harness(settings, name, log)
            try:
                fn(env, h)
            except SkipWorkload as exc:
                result["skipped"][name] = str(exc)
            except Exception as exc:
                traceback.print_exc()
                result["errors"][name] = f"{type(exc).__name__}: {exc}"
            result["metrics"].update(h.metrics)
    return result


# --------------------------------------------------------------------------- the parent


def run_target(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run one target in a fresh interpreter; its stdout/stderr go to our stderr."""
    fd, out = tempfile.mkstemp(prefix="actorlib-bench-", suffix=".json")
    os.close(fd)
    env = dict(os.environ)
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "actorlib.bench.runner", json.dumps(spec), out],
            stdout=sys.stderr, stderr=sys.stderr, timeout=timeout, env=env,
        )
        elapsed = time.perf_counter() - t0
        if proc.returncode != 0:
            return _failed(spec, f"the benchmark process exited with code {proc.returncode}")
        with open(out) as f:
            result: dict[str, Any] = json.load(f)
        result["wall_s"] = round(elapsed, 2)
        return result
    except subprocess.TimeoutExpired:
        return _failed(spec, f"timed out after {timeout:.0f} s")
    finally:
        with contextlib.suppress(OSError):
            os.unlink(out)


def pooled(passes: list[dict[str, Any]]) -> dict[str, Any]:
    """One target's results from several passes (``--passes``) as one: each metric's
    rounds from every pass that measured it, with their mean and deviation; its extras
    from the last such pass. A workload that failed or was skipped in any pass says so."""
    if len(passes) == 1:
        return passes[0]
    merged: dict[str, Any] = {
        "target": passes[0]["target"], "backend": passes[0].get("backend"),
        "metrics": {}, "skipped": {}, "errors": {},
        "wall_s": round(sum(p.get("wall_s", 0.0) for p in passes), 2),
        "passes": len(passes),
    }
    for result in passes:
        merged["skipped"].update(result.get("skipped", {}))
        merged["errors"].update(result.get("errors", {}))
        if result.get("failed"):
            merged["failed"] = result["failed"]
        for metric, m in result.get("metrics", {}).items():
            kept = merged["metrics"].get(metric)
            rounds = (kept["rounds"] if kept else []) + list(m["rounds"])
            merged["metrics"][metric] = dict(
                m, rounds=rounds, mean=statistics.fmean(rounds),
                stdev=statistics.stdev(rounds) if len(rounds) > 1 else 0.0,
            )
    return merged


def _failed(spec: dict[str, Any], reason: str) -> dict[str, Any]:
    return {
        "target": spec["target"], "backend": spec.get("backend"), "metrics": {},
        "skipped": {}, "errors": dict.fromkeys(spec["workloads"], reason), "failed": reason,
    }


def package_versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {}
    for name in ("actorlib", "cloudpickle", "uvloop", "anyio", "numpy", "psutil", "loky",
                 "ray", "matplotlib"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine_info() -> dict[str, Any]:
    import platform

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
    }
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(ImportError):
        psutil = importlib.import_module("psutil")
        info["memory_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    return info


def exit_with_parent(parent: int, every_s: float = 1.0, grace_s: float = 10.0) -> None:
    """End this child once its parent is gone: a parent killed outright (SIGKILL, a
    closed terminal's job) cannot end a target that hangs, and its timeout went with it.
    The main thread gets a KeyboardInterrupt first, so the target's runtime (a local Ray,
    a pool) is shut down; then, ``grace_s`` later, the process exits regardless."""
    import signal
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        # A real signal to the main thread (not ``interrupt_main``): it also ends a wait
        # the main thread sleeps in.
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
        time.sleep(grace_s)
        os._exit(3)

    threading.Thread(target=watch, name="actorlib-bench-parent", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    """The child's entry point: ``python -m actorlib.bench.runner SPEC_JSON OUT``."""
    args = sys.argv[1:] if argv is None else argv
    exit_with_parent(os.getppid())
    spec, out = json.loads(args[0]), args[1]
    if spec["target"] == "paired":
        from actorlib.bench import paired

        result = paired.child_main(spec)
    else:
        result = child_main(spec)
    with open(out, "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
