"""``actorlib bench``: Ray's microbenchmark workloads, side by side with the alternatives.

    actorlib bench [--backend process] [--workloads a,b] [--rounds 3] [--warmup 1]
                   [--against ray,processpool,mp-pool,loky] [--json FILE] [--plot FILE.png]

Each target (actorlib on ``--backend``, and each alternative) runs in its own fresh
subprocess; see :mod:`actorlib.bench.runner`. The workloads are in
:mod:`actorlib.bench.workloads` (actorlib, and the registry), :mod:`actorlib.bench.fresh_process`
(startup and idle memory, for every target) and :mod:`actorlib.bench.alternatives`; what they
share (the ``Env``, the sizes, the remote code) is in :mod:`actorlib.bench.workload_kit`.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

from actorlib.bench.alternatives import ALTERNATIVES, unavailable_reason
from actorlib.bench.workloads import DESCRIPTIONS, WORKLOADS

__all__ = ["WORKLOADS", "add_arguments", "run"]


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def pass_order(targets: list[str], number: int) -> list[str]:
    """The targets' order in pass ``number`` (from 1): as given, and reversed in every
    second pass, so a target that runs first (a colder machine) or right after another's
    teardown does so as often as each other target."""
    return targets if number % 2 else targets[::-1]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", default="process",
                        help="actorlib backend to measure (default: process)")
    parser.add_argument("--workloads", type=_csv, default=None, metavar="A,B,...",
                        help="comma-separated workload ids (default: all): "
                             + ", ".join(WORKLOADS))
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (default: 3)")
    parser.add_argument("--passes", type=int, default=1,
                        help="run every target this many times, taking turns, and pool "
                             "each target's rounds: a machine whose speed drifts over "
                             "minutes then weighs on every target alike. Every second "
                             "pass runs the targets in reverse order, so none is always "
                             "the first or the last (default: 1)")
    parser.add_argument("--warmup", type=int, default=1,
                        help="discarded warm-up rounds (default: 1)")
    parser.add_argument("--duration", type=float, default=1.0, metavar="SECONDS",
                        help="length of one round of a repeated step (default: 1.0)")
    parser.add_argument("--against", type=_csv, default=[], metavar="A,B,...",
                        help="alternatives to run too: " + ",".join(ALTERNATIVES))
    parser.add_argument("--num-cpus", type=int, default=2,
                        help="CPUs / workers for every target (default: 2)")
    parser.add_argument("--large-mb", type=int, default=None, metavar="MIB",
                        help="size of the large arrays (default: 256 for put_large, "
                             "task_arg_large and task_result_large, 1024 for get_large)")
    parser.add_argument("--json", metavar="FILE", help="write the full results as JSON")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="draw the ratios as a bar chart (needs matplotlib)")
    parser.add_argument("--timeout", type=float, default=1800, metavar="SECONDS",
                        help="give up on a target after this long (default: 1800)")
    parser.add_argument("--paired", action="store_true",
                        help="with --backend ray --against ray: run both in one process "
                             "on one Ray instance, taking turns round by round, and "
                             "report each turn's ratio too (see actorlib.bench.paired): "
                             "the ray backend's overhead over Ray, which two fresh Rays "
                             "on a small machine vary by more than it")
    parser.add_argument("--list", action="store_true",
                        help="list the workloads and what each measures, then exit")


def run(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    from actorlib.bench import report, runner

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    if args.list:
        for name, text in DESCRIPTIONS.items():
            print(f"{name:20} {text}")
        return 0
    chosen = args.workloads or list(WORKLOADS)
    unknown = [x for x in chosen if x not in WORKLOADS]
    if unknown:
        log(f"actorlib bench: unknown workload(s): {', '.join(unknown)}; "
            f"choose from {', '.join(WORKLOADS)}")
        return 2
    if (args.rounds < 1 or args.passes < 1 or args.warmup < 0 or args.duration <= 0
            or args.num_cpus < 1):
        log("actorlib bench: need --rounds >= 1, --passes >= 1, --warmup >= 0, "
            "--duration > 0, --num-cpus >= 1")
        return 2
    bad = [a for a in args.against if a not in ALTERNATIVES]
    if bad:
        log(f"actorlib bench: unknown alternative(s): {', '.join(bad)}; "
            f"choose from {', '.join(ALTERNATIVES)}")
        return 2
    if args.plot:
        try:
            report.require_matplotlib()
        except report.PlotUnavailableError as exc:
            log(f"actorlib bench: {exc}")
            return 2
        if not args.against:
            log("actorlib bench: --plot draws ratios against alternatives; add --against")
            return 2

    if args.paired and (args.backend != "ray" or args.against != ["ray"]):
        log("actorlib bench: --paired compares the ray backend with Ray on one Ray "
            "instance: it needs --backend ray --against ray")
        return 2

    skipped_targets: dict[str, str] = {}
    against: list[str] = []
    for name in dict.fromkeys(args.against):
        reason = unavailable_reason(name)
        if reason:
            skipped_targets[name] = reason
        else:
            against.append(name)

    base_spec: dict[str, Any] = {
        "workloads": chosen, "rounds": args.rounds, "warmup": args.warmup,
        "duration": args.duration, "num_cpus": args.num_cpus, "large_mb": args.large_mb,
    }
    passes: dict[str, list[dict[str, Any]]] = {t: [] for t in ["actorlib", *against]}
    paired: dict[str, dict[str, Any]] = {}
    for number in range(1, args.passes + 1):
        if args.paired and against:
            of = f" (pass {number} of {args.passes})" if args.passes > 1 else ""
            log(f"running actorlib (ray backend) and ray in one fresh process{of} ...")
            both = runner.run_target(dict(base_spec, target="paired"), args.timeout)
            for target in passes:  # a failed run: each side fails with its reason
                passes[target].append(
                    dict(both["targets"][target], wall_s=both.get("wall_s", 0.0))
                    if "targets" in both else dict(both, target=target))
            for metric, entry in both.get("paired", {}).items():
                paired.setdefault(metric, {"ratios": []})["ratios"] += entry["ratios"]
            continue
        for target in pass_order(list(passes), number):
            results = passes[target]
            spec = dict(base_spec, target=target)
            if target == "actorlib":
                spec["backend"] = args.backend
            label = f"actorlib ({args.backend} backend)" if target == "actorlib" else target
            of = f" (pass {number} of {args.passes})" if args.passes > 1 else ""
            log(f"running {label} in a fresh process{of} ...")
            results.append(runner.run_target(spec, args.timeout))
    targets = {t: runner.pooled(results) for t, results in passes.items()}

    command = "actorlib bench" + (" " + shlex.join(argv) if argv else "")
    result: dict[str, Any] = {
        "command": command,
        "machine": runner.machine_info(),
        "versions": runner.package_versions(),
        "options": {
            "backend": args.backend, "workloads": chosen, "rounds": args.rounds,
            "passes": args.passes, "warmup": args.warmup, "duration": args.duration,
            "num_cpus": args.num_cpus, "paired": args.paired,
            "large_mb": args.large_mb, "against": against,
        },
        "ratio_note": report.RATIO_NOTE,
        "skipped_targets": skipped_targets,
        "targets": targets,
        "rows": report.build_rows(targets, against),
    }
    print(report.table(result))
    if paired:
        from actorlib.bench.paired import median_of, table

        result["paired"] = median_of(paired)
        print(table(result["paired"]))
    if args.json:
        report.write_json(result, args.json)
        log(f"wrote {args.json}")
    if args.plot:
        report.plot(result, args.plot)
        log(f"wrote {args.plot}")
    failed = [t for t, r in targets.items() if r.get("failed")]
    return 1 if "actorlib" in failed else 0
