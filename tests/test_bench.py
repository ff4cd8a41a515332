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


@pytest.mark.parametrize(("args", "message"), [
    (["--workloads", "nope"], "unknown workload"),
    (["--passes", "0"], "--passes >= 1"),
])
def test_bench_rejects_bad_arguments(args, message):
    proc = subprocess.run(
        [sys.executable, "-m", "actorlib", "bench", *args],
        capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode == 2
    assert message in proc.stderr


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


@pytest.mark.timeout(120)
def test_every_workload_ends_on_sim(tmp_path):
    """Each workload runs, or is skipped with its reason, on the sim backend: the Executor
    and Pool rows once hung there (their caller waits on futures, not in ``get``)."""
    import os

    from actorlib.bench.workloads import WORKLOADS

    out = tmp_path / "sim.json"
    env = dict(os.environ)
    env.pop("ACTORLIB_SIM_IDLE_DRIVE", None)  # (tests/sim_suite.py sets it for the suite)
    proc = subprocess.run(
        [sys.executable, "-m", "actorlib", "bench", "--backend", "sim", "--rounds", "1",
         "--warmup", "0", "--duration", "0.05", "--large-mb", "8", "--timeout", "60",
         "--json", str(out)],
        capture_output=True, text=True, timeout=110, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ours = json.loads(out.read_text())["targets"]["actorlib"]
    assert ours["errors"] == {}, ours["errors"]
    futures_rows = {"executor_map_c1", "executor_map_c100", "executor_submit", "pool_map"}
    assert set(ours["skipped"]) == futures_rows
    assert all("ACTORLIB_SIM_IDLE_DRIVE" in why for why in ours["skipped"].values())
    measured = {metric.split(".")[0] for metric in ours["metrics"]}
    assert measured == set(WORKLOADS) - futures_rows


CHILD = """
import sys, time
from actorlib.bench.runner import exit_with_parent
exit_with_parent(int(sys.argv[1]), every_s=0.05, grace_s=5)
print("started", flush=True)
try:
    time.sleep(60)  # a target that hangs
except KeyboardInterrupt:
    print("cleaned up", flush=True)
"""

PARENT = """
import subprocess, sys, os
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], str(os.getpid())],
                         stdout=open(sys.argv[2], "w"))
print(child.pid, flush=True)
child.wait()
"""


@pytest.mark.timeout(30)
def test_a_bench_target_ends_when_the_bench_is_killed(tmp_path):
    """The bench's timeout lives in the parent: killed outright (SIGKILL), it leaves its
    target process behind, which ends by itself, after cleaning up."""
    import os
    import signal
    import time

    log = tmp_path / "child.log"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, CHILD, str(log)],
                              stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    deadline = time.monotonic() + 15
    while "started" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    parent.stdout.close()
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the target outlived its killed parent")
    assert log.read_text().split() == ["started", "cleaned", "up"]


def test_rates_and_ratios_are_better_higher_times_and_sizes_lower():
    from actorlib.bench.runner import higher_is_better

    assert higher_is_better("GB/s") and higher_is_better("x")
    assert not higher_is_better("ms") and not higher_is_better("MB")
    assert not higher_is_better("s/GiB")


def test_passes_pool_each_targets_rounds():
    """``--passes``: a target's rounds from every pass, summarised as one; a workload
    that failed in any pass is reported failed."""
    from actorlib.bench.runner import pooled

    def one(rounds, errors=None, extras=None):
        metric = {"workload": "tasks_sync", "unit": "tasks/s", "higher_is_better": True,
                  "mean": sum(rounds) / len(rounds), "stdev": 0.0, "rounds": rounds,
                  "extras": extras or {}, "note": ""}
        return {"target": "actorlib", "backend": "thread", "metrics": {"tasks_sync": metric},
                "skipped": {}, "errors": errors or {}, "wall_s": 2.0}

    only = one([1.0, 2.0])
    assert pooled([only]) is only
    merged = pooled([one([1.0, 2.0], extras={"pass": 1}),
                     one([3.0, 6.0], errors={"put_small": "boom"}, extras={"pass": 2})])
    m = merged["metrics"]["tasks_sync"]
    assert m["rounds"] == [1.0, 2.0, 3.0, 6.0]
    assert m["mean"] == 3.0
    assert abs(m["stdev"] - (14 / 3) ** 0.5) < 1e-12
    assert m["extras"] == {"pass": 2}
    assert merged["errors"] == {"put_small": "boom"}
    assert merged["passes"] == 2 and merged["wall_s"] == 4.0


def test_passes_take_turns_in_both_orders(monkeypatch, capsys):
    """``--passes``: every second pass runs the targets in reverse order, so no target is
    always the one on the coldest machine or right after another's teardown."""
    import argparse

    import actorlib.bench as bench
    from actorlib.bench import runner

    ran: list[str] = []

    def run_target(spec, timeout):
        ran.append(spec["target"])
        return {"target": spec["target"], "backend": spec.get("backend"), "metrics": {},
                "skipped": {}, "errors": {}, "wall_s": 0.0}

    monkeypatch.setattr(runner, "run_target", run_target)
    monkeypatch.setattr(runner, "machine_info", dict)
    monkeypatch.setattr(runner, "package_versions", dict)
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    code = bench.run(parser.parse_args(["--backend", "thread", "--workloads", "tasks_sync",
                                        "--against", "threadpool", "--passes", "3"]))
    assert code == 0, capsys.readouterr().err
    assert ran == ["actorlib", "threadpool", "threadpool", "actorlib", "actorlib", "threadpool"]


def test_paired_turns_stop_only_the_side_that_fails():
    """``--paired``: a side that fails a workload stops there and says why; the other
    side runs all its turns, and the turns both completed keep their ratios."""
    from actorlib.bench import paired
    from actorlib.bench.workload_kit import Env

    calls = {"actorlib": 0, "ray": 0}

    def workload(side, fail_at):
        def run(env, h):
            calls[side] += 1
            if calls[side] == fail_at:
                raise RuntimeError("broke")
            h.timed("row", lambda: None, unit="ops/s")
        return run

    tables = {"actorlib": {"row": workload("actorlib", fail_at=3)},
              "ray": {"row": workload("ray", fail_at=0)}}
    envs = {side: Env(None, side, None, 1) for side in tables}
    spec = {"warmup": 1, "rounds": 4, "duration": 0.01}
    turns = {side: [] for side in tables}
    rounds = paired._turns("row", envs, tables, spec, turns, lambda line: None)
    assert calls == {"actorlib": 3, "ray": 5}  # one warm-up turn, then four timed ones
    assert len(rounds["actorlib"]) == 1 and len(rounds["ray"]) == 4
    ours = paired._merged("actorlib", turns["actorlib"])
    assert ours["errors"] == {"row": "RuntimeError: broke"}
    assert len(ours["metrics"]["row"]["rounds"]) == 1 and "passes" not in ours
    assert paired._merged("ray", turns["ray"])["errors"] == {}
    assert len(paired._ratios(rounds)["row"]["ratios"]) == 1
