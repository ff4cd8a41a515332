"""Each fault kind of ``actorlib.testing.faults`` on its own: where it lands, what the run
then does (retried, restarted, or failed with the error the guarantees name)."""

from __future__ import annotations

import pytest

import actorlib
from actorlib.exceptions import ActorDiedError, WorkerCrashedError
from actorlib.testing import FaultPlan, Schedule, simulate


class FaultWhenever:
    """A choice source that lands a fault at the first point one may land, once ``after``
    choices were made; otherwise the oldest step."""

    def __init__(self, after: int = 0) -> None:
        self.after = after
        self.made = 0

    def choose(self, n: int, faults: int = 0) -> int:
        self.made += 1
        return n if faults and self.made > self.after else 0

    def describe(self) -> str:
        return "FaultWhenever"


def _faulty(after: int = 0, **kinds: bool) -> Schedule:
    return Schedule(FaultWhenever(after), FaultPlan(**kinds, max_faults=1))  # type: ignore[arg-type]


@actorlib.remote(num_cpus=0)
def identity(x):
    return x


@actorlib.remote(num_cpus=0, max_retries=2)
def doubled_via(x):
    return 2 * actorlib.get(identity.remote(x))


@actorlib.remote(num_cpus=0, max_retries=0)
def doubled_via_once(x):
    return 2 * actorlib.get(identity.remote(x))


# --------------------------------------------------------------------------- kill_worker


def test_kill_worker_kills_a_paused_task_which_is_retried():
    with simulate(_faulty(kill_worker=True)) as run:
        assert actorlib.get(doubled_via.remote(5)) == 10
    assert run.faults_injected == 1
    assert "worker running doubled_via#1 killed" in run.log, run.log
    assert "task doubled_via#1 starts (attempt 2)" in run.log, run.log


def test_kill_worker_without_retries_fails_the_task():
    with simulate(_faulty(kill_worker=True)) as run, pytest.raises(WorkerCrashedError):
        actorlib.get(doubled_via_once.remote(5))
    assert "worker running doubled_via_once#1 killed" in run.log, run.log


# --------------------------------------------------------------------------- drop_before_reply

@actorlib.remote(num_cpus=0, max_retries=1)
def note(path, x):
    with open(path, "a") as f:  # a side effect: it happens even when the reply is lost
        f.write(f"{x}\n")
    return x


@actorlib.remote(num_cpus=0, max_retries=0)
def note_once(path, x):
    with open(path, "a") as f:
        f.write(f"{x}\n")
    return x


def test_drop_before_reply_loses_a_tasks_result_after_its_side_effects(tmp_path):
    notes = tmp_path / "notes"
    with simulate(_faulty(drop_before_reply=True)) as run:
        assert actorlib.get(note.remote(str(notes), 7)) == 7
    assert notes.read_text().split() == ["7", "7"]  # ran twice; the first result was lost
    assert "worker running note#1 dies before its reply" in run.log, run.log
    assert "task note#1 starts (attempt 2)" in run.log, run.log


def test_drop_before_reply_without_retries_fails_the_task(tmp_path):
    notes = tmp_path / "notes"
    with simulate(_faulty(drop_before_reply=True)), pytest.raises(WorkerCrashedError):
        actorlib.get(note_once.remote(str(notes), 7))
    assert notes.read_text().split() == ["7"]


@actorlib.remote(num_cpus=0, max_restarts=1, max_task_retries=1)
class Counter:
    def __init__(self):
        self.n = 0

    def incr(self):
        self.n += 1
        return self.n


def test_drop_before_reply_on_a_call_kills_the_actor_which_restarts_and_retries():
    with simulate(_faulty(drop_before_reply=True)) as run:
        counter = Counter.remote()
        # The dropped reply's incarnation died with its count; the retry runs on the next.
        assert actorlib.get(counter.incr.remote()) == 1
        assert actorlib.get(counter.incr.remote()) == 2
    assert "Counter#1 dies before replying to incr" in run.log, run.log
    assert "Counter#1.__init__ (restart)" in run.log, run.log


# --------------------------------------------------------------------------- restart_actor


def test_restart_actor_kills_an_actor_between_calls_which_restarts_and_serves_the_rest():
    with simulate(_faulty(after=2, restart_actor=True)) as run:
        counter = Counter.remote()
        # Two calls served, then the actor dies: the third runs on a fresh incarnation.
        assert actorlib.get([counter.incr.remote() for _ in range(3)]) == [1, 2, 1]
        assert actorlib.get(counter.incr.remote()) == 2
    assert run.faults_injected == 1
    assert run.log[:5] == [
        "Counter#1.__init__", "Counter#1.incr from driver", "Counter#1.incr from driver",
        "actor Counter#1 killed (its worker died)", "Counter#1.__init__ (restart)",
    ], run.log


@actorlib.remote(num_cpus=0, max_restarts=0)
class Fragile:
    def ping(self):
        return "pong"


def test_restart_actor_without_restarts_fails_later_calls_with_actor_died_error():
    with simulate(_faulty(restart_actor=True)) as run:
        fragile = Fragile.remote()
        with pytest.raises(ActorDiedError):
            for _ in range(3):
                actorlib.get(fragile.ping.remote())
    assert "actor Fragile#1 killed (its worker died)" in run.log, run.log
