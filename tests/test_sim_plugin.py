"""The ``sim`` pytest fixture (actorlib's pytest11 plugin), run on the example in
docs/testing.md, and the replay section a failing test's report gets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "testing.md"


def _fixture_example() -> str:
    """The python block of the docs' "The `sim` pytest fixture" section."""
    section = DOC.read_text().split("## The `sim` pytest fixture", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert block is not None, "docs/testing.md lost its fixture example"
    return "import actorlib\n" + block[1]


def _run(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_user=source)
    # A subprocess: the plugin is found through the installed entry point, as a user's is.
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", *args)


def test_the_documented_example_passes(pytester: pytest.Pytester) -> None:
    result = _run(pytester, _fixture_example())
    result.assert_outcomes(passed=1)


FAILING = '''
import actorlib
import pytest


@actorlib.remote
class Box:
    def __init__(self):
        self.items = []

    def put(self, x):
        self.items.append(x)
        return list(self.items)


@actorlib.remote
def put(box, x):
    return actorlib.get(box.put.remote(x))


@pytest.mark.sim(seed=SEED)
def test_order(sim):
    box = Box.remote()
    last = actorlib.get([put.remote(box, 1), put.remote(box, 2)])
    assert last[1] == [1, 2], last


@actorlib.remote
class Asker:
    def ask(self, other, me):
        return actorlib.get(other.ask_back.remote(me))

    def answer(self):
        return 1


@actorlib.remote
class Teller:
    def ask_back(self, asker):
        return actorlib.get(asker.answer.remote())  # Asker is busy in ask: never runs


def test_a_deadlock_fails_fast(sim):
    asker, teller = Asker.remote(), Teller.remote()
    actorlib.get(asker.ask.remote(teller, asker))
'''


def test_a_failing_test_reports_the_trace_that_replays_it(pytester: pytest.Pytester) -> None:
    for seed in range(40):  # the first seed whose schedule runs put(2) first
        result = _run(pytester, FAILING.replace("SEED", str(seed)), "-k", "test_order")
        if result.ret != 0:
            break
    else:
        pytest.fail("no seed in 40 ran the second put first")
    out = result.stdout.str()
    assert "actorlib sim" in out and "AssertionError" in out, out
    trace = re.search(r"replay with: ACTORLIB_SIM_REPLAY='([^']+)'", out)
    assert trace is not None, out
    replayed = _run(pytester, FAILING.replace("seed=SEED", f"trace={trace[1]!r}"),
                    "-k", "test_order")
    replayed.assert_outcomes(failed=1)
    assert "[2, 1]" in replayed.stdout.str() or "[2]" in replayed.stdout.str()


def test_a_deadlock_fails_fast_with_the_report(pytester: pytest.Pytester) -> None:
    result = _run(pytester, FAILING.replace("SEED", "0"), "-k", "deadlock")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "DeadlockError" in out and "nothing can run" in out, out
    assert "Teller#1.ask_back from Asker#1 waits for Asker#1.answer (queued on Asker#1)" in out, out


def test_marker_takes_keywords_only(pytester: pytest.Pytester) -> None:
    result = _run(pytester, "import pytest\n\n@pytest.mark.sim(3)\ndef test_x(sim):\n"
                  "    pass\n")
    result.assert_outcomes(errors=1)
    assert "keyword arguments only" in result.stdout.str()
