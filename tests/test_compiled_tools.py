"""The tools that measured a mypyc-compiled core (docs/performance.md, "A compiled core")
keep working on the tree they measure: the measured program runs on each backend it
names, and bad input is refused with a clear message before any valgrind run or build."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TOOLS = Path(__file__).resolve().parent.parent / "tools"


def run_tool(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(TOOLS / name), *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("workload", ["thread_tasks", "sim_calls", "process_tasks"])
def test_the_measured_program_runs_its_batches(workload):
    proc = run_tool("callgrind_ops.py", "--run", workload, "1")
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_an_unknown_workload_is_refused_naming_the_choices():
    proc = run_tool("callgrind_ops.py", "thread_taks")
    assert proc.returncode == 2
    assert "unknown workload 'thread_taks'" in proc.stderr
    assert "thread_tasks" in proc.stderr.split("choose from")[1]


def test_the_compiled_core_needs_a_venv(tmp_path):
    proc = run_tool("compiled_core.py", str(tmp_path))
    assert proc.returncode == 2
    assert "is not a venv (no bin/python)" in proc.stderr
    assert list(tmp_path.iterdir()) == []  # nothing installed, nothing built
