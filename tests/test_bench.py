"""``actorlib bench`` runs and writes valid JSON. No timing assertions: numbers are for
people (docs/performance.md), never for the test suite."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

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


def test_bench_rejects_unknown_workload():
    proc = subprocess.run(
        [sys.executable, "-m", "actorlib", "bench", "--workloads", "nope"],
        capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode == 2
    assert "unknown workload" in proc.stderr
