"""``actorlib bench`` runs and writes valid JSON. No timing assertions: numbers are for
people (docs/performance.md), never for the test suite."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

WORKLOADS = ["tasks_sync", "put_small", "startup"]


@pytest.mark.timeout(60)
def test_bench_runs_and_writes_json(backend_name, tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "actorlib", "bench", "--backend", backend_name,
         "--rounds", "1", "--warmup", "0", "--duration", "0.2", "--large-mb", "8",
         "--workloads", ",".join(WORKLOADS), "--against", "processpool",
         "--json", str(out)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert {"command", "machine", "versions", "options", "targets", "rows",
            "skipped_targets"} <= set(result)
    assert result["options"]["backend"] == backend_name
    assert result["options"]["against"] == ["processpool"]
    assert set(result["targets"]) == {"actorlib", "processpool"}
    ours = result["targets"]["actorlib"]
    assert ours["errors"] == {}, ours["errors"]
    assert set(ours["metrics"]) == set(WORKLOADS)
    for metric in ours["metrics"].values():
        assert {"unit", "higher_is_better", "mean", "stdev", "rounds"} <= set(metric)
        assert len(metric["rounds"]) == 1
    # processpool has tasks_sync and startup, and nothing for put_small
    rows = {r["metric"]: r for r in result["rows"]}
    assert set(rows) == set(WORKLOADS)
    assert set(rows["tasks_sync"]["alternatives"]) == {"processpool"}
    assert rows["tasks_sync"]["alternatives"]["processpool"]["ratio"] > 0
    assert rows["put_small"]["alternatives"] == {}
    assert "ratio" in proc.stdout and "tasks_sync" in proc.stdout


@pytest.mark.timeout(90)
def test_thread_backend_is_compared_with_what_it_replaces(tmp_path):
    """``--backend thread --against threadpool,pykka``: the thread pool gets the task rows,
    pykka the actor rows, each under actorlib's own metric ids."""
    out = tmp_path / "bench.json"
    workloads = ["tasks_sync", "tasks_async", "actor_sync", "actor_async"]
    proc = subprocess.run(
        [sys.executable, "-m", "actorlib", "bench", "--backend", "thread",
         "--rounds", "1", "--warmup", "0", "--duration", "0.2",
         "--workloads", ",".join(workloads), "--against", "threadpool,pykka",
         "--json", str(out)],
        capture_output=True, text=True, timeout=90,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert set(result["targets"]) == {"actorlib", "threadpool", "pykka"}
    for target in result["targets"].values():
        assert target["errors"] == {}, target["errors"]
    rows = {r["metric"]: r for r in result["rows"]}
    for task_row in ("tasks_sync", "tasks_async"):
        assert set(rows[task_row]["alternatives"]) == {"threadpool"}
        assert rows[task_row]["alternatives"]["threadpool"]["ratio"] > 0
    for actor_row in ("actor_sync", "actor_async"):
        assert set(rows[actor_row]["alternatives"]) == {"pykka"}
        assert rows[actor_row]["alternatives"]["pykka"]["ratio"] > 0


def test_bench_rejects_unknown_workload():
    proc = subprocess.run(
        [sys.executable, "-m", "actorlib", "bench", "--workloads", "nope"],
        capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode == 2
    assert "unknown workload" in proc.stderr


@pytest.mark.timeout(90)
def test_sim_steps_reports_the_simulators_steps_per_second_on_sim_only(tmp_path):
    kinds = {"sim_steps.calls", "sim_steps.tasks", "sim_steps.coroutine"}
    for backend in ("sim", "thread"):
        out = tmp_path / f"{backend}.json"
        proc = subprocess.run(
            [sys.executable, "-m", "actorlib", "bench", "--backend", backend,
             "--rounds", "1", "--warmup", "0", "--duration", "0.2",
             "--workloads", "sim_steps", "--json", str(out)],
            capture_output=True, text=True, timeout=90,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        ours = json.loads(out.read_text())["targets"]["actorlib"]
        assert ours["errors"] == {}, ours["errors"]
        if backend == "sim":
            assert set(ours["metrics"]) == kinds
            for metric in ours["metrics"].values():
                assert metric["unit"] == "steps/s" and metric["mean"] > 0
                assert metric["extras"]["calls_cpu_us_per_step"] > 0
        else:
            assert ours["metrics"] == {}
            assert "--backend sim" in ours["skipped"]["sim_steps"]


def test_rates_and_ratios_are_better_higher_times_and_sizes_lower():
    from actorlib.bench.runner import higher_is_better

    assert higher_is_better("GB/s") and higher_is_better("x")
    assert not higher_is_better("ms") and not higher_is_better("MB")
    assert not higher_is_better("s/GiB")
