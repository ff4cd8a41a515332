"""``actorlib test-explore``: long seeded explorations of a test function under ``sim``.

Hypothesis is the tool for a test suite (shrinking, an example database); this is for a
long search outside it: thousands of seeded schedules of one function, random or
PCT-style, stopping at the first failure with the trace that replays it
(``--replay TRACE`` runs that one schedule again, printing every step). See
docs/testing.md.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "load_target", "run"]

STRATEGIES = ("random", "pct")
FAULT_KINDS = (
    "kill_worker", "restart_actor", "drop_before_reply", "delay_reply", "lose_node", "lose_object",
)


def add_arguments(sub: Any) -> None:
    p = sub.add_parser(
        "test-explore", help="run a test function under many seeded sim schedules",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    p.add_argument("target", help="MODULE:FUNCTION (MODULE: a dotted name or a .py path); "
                   "the function takes no arguments")
    p.add_argument("--iterations", type=_positive, default=1000,
                   help="schedules to run at most (default 1000)")
    p.add_argument("--strategy", choices=STRATEGIES, default="random",
                   help="random: each choice uniform; pct: priority-based (default random)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first run; run i uses "
                   "seed+i (default 0)")
    p.add_argument("--max-steps", type=_positive, default=20_000,
                   help="steps one run may take (default 20000)")
    p.add_argument("--faults", default="", help="comma-separated fault kinds to inject: "
                   + ", ".join(FAULT_KINDS))
    p.add_argument("--max-faults", type=int, default=1, help="faults per run (default 1)")
    p.add_argument("--nodes", type=_positive, default=1,
                   help="simulated nodes (default 1; lose_node needs 2 or more)")
    p.add_argument("--replay", metavar="TRACE", help="run once from TRACE, print every step")


def run(args: argparse.Namespace) -> int:
    from actorlib.testing import FaultPlan, SimulationError, search, simulate

    try:
        body = load_target(args.target)
        kinds = [k.strip() for k in args.faults.split(",") if k.strip()]
        unknown = [k for k in kinds if k not in FAULT_KINDS]
        if unknown:
            raise ValueError(f"--faults: unknown kind(s) {', '.join(unknown)}; "
                             f"accepted: {', '.join(FAULT_KINDS)}")
    except (ValueError, ImportError, AttributeError) as exc:
        print(f"actorlib test-explore: {exc}", file=sys.stderr)
        return 2
    name = args.target.rpartition(":")[2]
    if args.replay:
        sim_run = None
        try:
            with simulate(trace=args.replay, max_steps=args.max_steps) as sim_run:
                body()
        except Exception as exc:
            _print_steps(sim_run.log if sim_run is not None else [])
            print(f"{name}: the replay failed, as recorded")
            _print_error(exc, isinstance(exc, SimulationError))
            return 1
        assert sim_run is not None
        _print_steps(sim_run.log)
        print(f"{name}: the replay passed ({sim_run.steps} steps)")
        return 0
    plan = FaultPlan(**{k: True for k in kinds}, max_faults=args.max_faults if kinds else 0)
    found = search(body, iterations=args.iterations, seed=args.seed, strategy=args.strategy,
                   faults=plan, max_steps=args.max_steps, nodes=args.nodes)
    if found is None:
        print(f"{name}: no failure in {args.iterations} runs ({args.strategy}, seeds "
              f"{args.seed}..{args.seed + args.iterations - 1})")
        return 0
    print(f"{name}: failed on run {found.runs} of {args.iterations} (seed {found.seed}, "
          f"{found.steps} steps, {found.seconds:.2f}s)")
    _print_error(found.error, isinstance(found.error, SimulationError))
    steps = getattr(found.error, "sim_steps", None) or getattr(found.error, "steps", None)
    if steps and not isinstance(found.error, SimulationError):
        tail = list(steps)[-30:]
        print(f"last {len(tail)} of {len(steps)} steps:")
        first = len(steps) - len(tail) + 1
        for i, step in enumerate(tail):
            print(f"  {first + i:4d}. {step}")
    print(f"replay with: actorlib test-explore {args.target} --replay {found.trace!r}")
    print(f"         or: ACTORLIB_SIM_REPLAY={found.trace!r} (simulate(), @explore), "
          f"actorlib.testing.replay({found.trace!r})")
    return 1


def load_target(target: str) -> Callable[[], Any]:
    """The function ``MODULE:FUNCTION`` names (MODULE: dotted, or a path to a .py file)."""
    module_name, sep, attr = target.rpartition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"target {target!r}: expected MODULE:FUNCTION, e.g. tests.test_x:test_y "
                         "or path/to/file.py:function")
    module: Any
    if module_name.endswith(".py") or "/" in module_name:
        path = Path(module_name)
        if not path.is_file():
            raise ImportError(f"target {target!r}: no file {module_name}")
        sys.path.insert(0, str(path.resolve().parent))
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module  # pickling by reference finds its functions
        spec.loader.exec_module(module)
    else:
        sys.path.insert(0, ".")
        module = importlib.import_module(module_name)
    fn = module
    for part in attr.split("."):
        fn = getattr(fn, part)
    if not callable(fn):
        raise ValueError(f"target {target!r} is not callable")
    return fn


def _print_error(exc: BaseException, simulated: bool) -> None:
    """The error (the simulator's own report includes its steps and trace), without the
    exception note of the steps that ``simulate`` adds: printed once, below."""
    print(f"{type(exc).__name__}: {exc}")
    if not simulated and exc.__traceback__ is not None:
        frames = traceback.extract_tb(exc.__traceback__)[-3:]
        print("".join(traceback.format_list(frames)).rstrip())


def _print_steps(log: list[str]) -> None:
    for i, step in enumerate(log, 1):
        print(f"  {i:4d}. {step}")


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value
