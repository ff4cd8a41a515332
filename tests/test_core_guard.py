"""A bug in a core handler fails only the work it concerns; the core goes on serving.

The fault is injected by replacing a core handler, so these tests run where the core
lives in the test's own process (thread and process backends). The cluster's head runs
the same ``Runtime`` class (and its parts, ``Tasks`` and ``Actors``).
"""

from __future__ import annotations

import logging

import pytest
from testkit import T, wait_until

import actorlib
from actorlib import exceptions as exc
from actorlib.core.actors import Actors
from actorlib.core.tasks import Tasks

pytestmark = pytest.mark.parametrize("backend", ["thread", "process"])


@actorlib.remote
def victim():
    return "should not arrive"


@actorlib.remote
def ok(x=None):
    return x


@actorlib.remote(num_cpus=0)
class Counter:
    def __init__(self):
        self.n = 0

    def incr(self):
        self.n += 1
        return self.n


def _broken_for(name: str, handler):
    """``handler`` (``Tasks.finished`` or ``Actors.call_finished``), raising for work
    named ``name`` (a task's or a call's)."""

    def broken(self, outcome, *args):
        if isinstance(self, Tasks):
            work = self.records.get(outcome.id)
            if work is not None and work.spec.name == name:
                raise RuntimeError("injected core bug")
        else:
            actor_id = self.calls.get(outcome.id)
            actor = self.records.get(actor_id) if actor_id is not None else None
            call = actor.mailbox.in_flight(outcome.id) if actor is not None else None
            if call is not None and call.spec.method == name:
                raise RuntimeError("injected core bug")
        return handler(self, outcome, *args)

    return broken


@pytest.fixture
def runtime(backend, _leak_check):
    actorlib.init(backend=backend, num_cpus=2)
    try:
        yield
    finally:
        actorlib.shutdown()


def test_a_failing_task_handler_fails_that_task_only(runtime, monkeypatch, caplog):
    monkeypatch.setattr(Tasks, "finished", _broken_for("victim", Tasks.finished))
    with (
        caplog.at_level(logging.ERROR, logger="actorlib.core"),
        pytest.raises(exc.InternalError, match=r"internal error.*actorlib\.core"),
    ):
        actorlib.get(victim.remote(), timeout=T)
    assert "injected core bug" in caplog.text
    # The next tasks run, and the victim's CPU came back.
    assert actorlib.get([ok.remote(i) for i in range(10)], timeout=T) == list(range(10))
    wait_until(lambda: actorlib.available_resources().get("CPU") == 2, timeout=T,
               what="every CPU to be free again")
    assert isinstance(exc.InternalError("x"), exc.SystemFailureError)


def test_a_failing_call_handler_fails_that_call_only(runtime, monkeypatch, caplog):
    monkeypatch.setattr(Actors, "call_finished", _broken_for("incr", Actors.call_finished))
    counter = Counter.remote()
    with (
        caplog.at_level(logging.ERROR, logger="actorlib.core"),
        pytest.raises(exc.InternalError),
    ):
        actorlib.get(counter.incr.remote(), timeout=T)
    monkeypatch.undo()
    # The actor goes on, in order, and so does everything else.
    assert actorlib.get([counter.incr.remote() for _ in range(3)], timeout=T) == [2, 3, 4]
    assert actorlib.get(ok.remote(1), timeout=T) == 1


def test_a_failing_submit_fails_that_submission_only(runtime, monkeypatch, caplog):
    real = Tasks.submit

    def broken(self, spec):
        if spec.name == "victim":
            raise RuntimeError("injected core bug")
        real(self, spec)

    monkeypatch.setattr(Tasks, "submit", broken)
    with (
        caplog.at_level(logging.ERROR, logger="actorlib.core"),
        pytest.raises(exc.InternalError),
    ):
        actorlib.get(victim.remote(), timeout=T)
    assert actorlib.get(ok.remote(2), timeout=T) == 2
