"""``actorlib test-explore``: finds the example race, prints a trace that replays it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BANK = f"{ROOT / 'examples' / 'testing_actors.py'}:bank_day"


def explore(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "actorlib", "test-explore", *args],
        capture_output=True, text=True, timeout=300, cwd=cwd,
    )


@pytest.mark.parametrize("strategy", ["random", "pct"])
def test_finds_the_bank_race_and_the_printed_trace_replays_it(strategy: str) -> None:
    found = explore(BANK, "--iterations", "300", "--strategy", strategy, "--seed", "1")
    assert found.returncode == 1, found.stdout + found.stderr
    assert "AssertionError: alice overdrawn" in found.stdout
    head = re.search(r"failed on run (\d+) of 300 \(seed (\d+), (\d+) steps", found.stdout)
    assert head is not None, found.stdout
    assert int(head[2]) == int(head[1])  # seeds 1, 2, ...: run n has seed n
    trace = re.search(r"--replay '([^']+)'", found.stdout)
    assert trace is not None, found.stdout

    replayed = explore(BANK, "--replay", trace[1])
    assert replayed.returncode == 1, replayed.stdout + replayed.stderr
    assert "the replay failed, as recorded" in replayed.stdout
    steps = re.findall(r"^\s+\d+\. (.+)$", replayed.stdout, re.MULTILINE)
    assert len(steps) == int(head[3])
    again = explore(BANK, "--iterations", "300", "--strategy", strategy, "--seed", "1")
    # Seeded: the same search finds the same run (all but the time it took).
    assert _timeless(again.stdout) == _timeless(found.stdout)


def _timeless(out: str) -> str:
    return re.sub(r"steps, [0-9.]+s\)", "steps)", out)


def test_a_correct_function_passes_every_run(tmp_path: Path) -> None:
    (tmp_path / "fine.py").write_text(
        "import actorlib\n\n"
        "@actorlib.remote\nclass C:\n    def __init__(self):\n        self.n = 0\n"
        "    def incr(self):\n        self.n += 1\n        return self.n\n\n"
        "def body():\n    c = C.remote()\n"
        "    assert sorted(actorlib.get([c.incr.remote() for _ in range(3)])) == [1, 2, 3]\n"
    )
    ok = explore("fine:body", "--iterations", "20", cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "fine:body" not in ok.stdout and "body: no failure in 20 runs" in ok.stdout


def test_node_loss_is_explored_on_several_nodes_and_replayed(tmp_path: Path) -> None:
    (tmp_path / "fragile.py").write_text(
        "import actorlib\n"
        "from actorlib.util.scheduling_strategies import NodeAffinitySchedulingStrategy\n\n"
        "@actorlib.remote(num_cpus=1, max_restarts=0)\nclass Once:\n"
        "    def ping(self):\n        return 'pong'\n\n"
        "def body():\n"
        "    once = Once.options(scheduling_strategy=NodeAffinitySchedulingStrategy(\n"
        "        'sim-node-1', soft=True)).remote()\n"
        "    assert actorlib.get([once.ping.remote() for _ in range(3)]) == ['pong'] * 3\n"
    )
    found = explore("fragile:body", "--iterations", "50", "--faults", "lose_node",
                    "--nodes", "2", cwd=tmp_path)
    assert found.returncode == 1, found.stdout + found.stderr
    assert "node sim-node-1 lost (its workers died)" in found.stdout
    trace = re.search(r"--replay '([^']+)'", found.stdout)
    assert trace is not None and ":n1x2:" in trace[1], found.stdout
    replayed = explore("fragile:body", "--replay", trace[1], cwd=tmp_path)
    assert "the replay failed, as recorded" in replayed.stdout, replayed.stdout
    assert "node sim-node-1 lost (its workers died)" in replayed.stdout


@pytest.mark.parametrize(("args", "message"), [
    ([BANK, "--nodes", "0"], "expected a positive integer"),
    (["nocolon"], "expected MODULE:FUNCTION"),
    (["no_such_module_xyz:f"], "No module named"),
    ([BANK, "--faults", "meteor"], "--faults: unknown kind(s) meteor; accepted: kill_worker"),
    ([BANK, "--iterations", "0"], "expected a positive integer"),
    ([BANK, "--strategy", "dfs"], "invalid choice: 'dfs'"),
])
def test_bad_input_is_named(args: list[str], message: str) -> None:
    bad = explore(*args)
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert message in bad.stderr
