"""Instructions per operation of the hot paths, counted by callgrind (steady under load).

``python tools/callgrind_ops.py [--python PY] [WORKLOAD ...]`` runs each workload twice
under ``valgrind --tool=callgrind`` (one warm-up batch, then 1 or 3 batches of 1,000
operations) and prints the difference of the two whole-process counts divided by the
2,000 operations between them: start-up, imports and shutdown cancel out. ``--python``
picks the interpreter (for example a venv with the compiled core against one without).
The process backend is counted in the driver only: its workers run outside valgrind.

Workloads: ``thread_tasks`` (``get([f.remote() for _ in range(1000)])`` on the thread
backend), ``thread_calls`` (the same on one actor), ``sim_tasks``, ``sim_calls`` (the
``sim`` backend) and ``process_tasks`` (the ``tasks_async`` bench row's driver).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any

BATCH = 1000
WORKLOADS = ("thread_tasks", "thread_calls", "sim_tasks", "sim_calls", "process_tasks")


def small_value() -> bytes:
    return b"ok"


class Actor:
    def small_value(self) -> bytes:
        return b"ok"


def run(workload: str, batches: int) -> None:
    """The measured program: a warm-up batch, then ``batches`` batches of ``workload``."""
    import actorlib

    backend, kind = workload.split("_")
    actorlib.init(backend=backend, num_cpus=2)
    step: Callable[[], Any]
    if kind == "tasks":
        f = actorlib.remote(small_value)
        step = lambda: actorlib.get([f.remote() for _ in range(BATCH)])  # noqa: E731
    else:
        a = actorlib.remote(Actor).remote()
        step = lambda: actorlib.get([a.small_value.remote() for _ in range(BATCH)])  # noqa: E731
    try:
        for _ in range(1 + batches):
            step()
    finally:
        actorlib.shutdown()


def count(python: str, workload: str, batches: int) -> int:
    """Instructions (``Ir``) of the whole process for ``batches`` batches."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", python,
             os.path.abspath(__file__), "--run", workload, str(batches)],
            check=True, capture_output=True, cwd=tmp,
        )
        with open(out) as f:
            text = f.read()
    match = re.search(r"^summary: (\d+)", text, re.M) or re.search(r"^totals: (\d+)", text, re.M)
    if match is None:
        raise RuntimeError(f"no instruction total in callgrind's output for {workload}")
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--run", nargs=2, metavar=("WORKLOAD", "BATCHES"), help=argparse.SUPPRESS)
    parser.add_argument("workloads", nargs="*", default=list(WORKLOADS))
    args = parser.parse_args()
    if args.run:
        run(args.run[0], int(args.run[1]))
        return
    for workload in args.workloads:
        if workload not in WORKLOADS:
            parser.error(f"unknown workload {workload!r}; choose from {', '.join(WORKLOADS)}")
        per_op = (count(args.python, workload, 3) - count(args.python, workload, 1)) / (2 * BATCH)
        print(f"{workload}: {per_op:,.0f} instructions per operation", flush=True)


if __name__ == "__main__":
    main()
