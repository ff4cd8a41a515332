"""Records the hot paths make without calling their class.

``.remote()`` and the core make a call's method object, its ref, its spec, its object
entry, its record and its run with ``object.__new__`` and their fields set in place
(about 600 instructions fewer each on CPython 3.11 than a class call with an
``__init__``); a task's ref, spec, object entry, record and runs likewise, and where it
runs, its spec as read and its execution context, and its outcome. A field added to one
of those classes and not to the path that makes it would be missing only where it is
read; here it fails on the first call or task, on the backends whose core lives in the
test's process.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest
from testkit import T

import actorlib
from actorlib import session
from actorlib.actor import ActorMethod
from actorlib.core.mailbox import CallRecord
from actorlib.core.objects import ObjectEntry
from actorlib.core.records import CallRun, Outcome, TaskRun
from actorlib.core.refs import ObjectRef
from actorlib.core.specs import CallSpec, TaskSpec
from actorlib.core.tasks import TaskRecord


def _unset(obj: Any) -> list[str]:
    """The fields a class call of ``type(obj)`` would have set that ``obj`` lacks."""
    names = [
        name for klass in type(obj).__mro__ for name in getattr(klass, "__slots__", ())
        if name != "__weakref__"
    ]
    if dataclasses.is_dataclass(obj):
        names += [f.name for f in dataclasses.fields(obj)]
    return [name for name in names if not hasattr(obj, name)]


@actorlib.remote(num_cpus=0)
class Slow:
    def wait(self, seconds: float) -> float:
        time.sleep(seconds)
        return seconds


@actorlib.remote
def plain() -> int:
    return 1


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_a_call_s_records_have_every_field(backend: str, _leak_check: None) -> None:
    actorlib.init(backend=backend, num_cpus=1)
    try:
        rt: Any = session._runtime
        runs: list[Any] = []
        run_call = rt.backend.run_call
        rt.backend.run_call = lambda run: (runs.append(run), run_call(run))[1]
        actor = Slow.remote()
        assert actorlib.get(actor.wait.remote(0), timeout=T) == 0
        method = actor.wait
        ref = method.remote(2.0)  # in flight while the core's records are looked at

        def records() -> tuple[Any, Any]:
            call = rt.actors.records[actor._id].mailbox.in_flight(ref._task)
            return rt.objects.entries[ref._id], call

        entry, call = rt._loop.call(records, timeout=T)
        assert call is not None
        made = {
            ActorMethod: method, ObjectRef: ref, ObjectEntry: entry, CallRecord: call,
            CallSpec: call.spec, CallRun: runs[-1],
        }
        for cls, obj in made.items():
            assert type(obj) is cls
            assert _unset(obj) == [], cls.__name__
        task_ref = plain.remote()
        assert _unset(task_ref) == []
        assert actorlib.get([ref, task_ref], timeout=T) == [2.0, 1]
    finally:
        actorlib.shutdown()


@actorlib.remote
def fields_unset(seconds: float) -> list[str]:
    """Sleeps, then names the fields its context and its spec lack where it runs (``_unset``
    written out: the function may be shipped to a worker by value)."""
    from actorlib.core.execution_context import current_execution

    time.sleep(seconds)
    ctx = current_execution.get()
    missing = []
    for obj in (ctx, ctx.spec):
        missing += [
            f"{type(obj).__name__}.{f.name}" for f in dataclasses.fields(obj)
            if not hasattr(obj, f.name)
        ]
    return missing


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_a_task_s_records_have_every_field(backend: str, _leak_check: None) -> None:
    actorlib.init(backend=backend, num_cpus=1)
    try:
        rt: Any = session._runtime
        runs: list[Any] = []
        outcomes: list[Any] = []
        run_task = rt.backend.run_task
        rt.backend.run_task = lambda run: (runs.append(run), run_task(run))[1]
        finished = rt.tasks.finished
        rt.tasks.finished = lambda outcome: (outcomes.append(outcome), finished(outcome))[1]
        assert actorlib.get(fields_unset.remote(0), timeout=T) == []  # the worker is up
        first = fields_unset.remote(2.0)  # placed at once: nothing is queued
        second = fields_unset.remote(0)  # queued behind it on its worker

        def records() -> tuple[list[Any], list[Any]]:
            refs = (first, second)
            return (
                [rt.tasks.records[r._task] for r in refs],
                [rt.objects.entries[r._id] for r in refs],
            )

        tasks, entries = rt._loop.call(records, timeout=T)
        assert [run.follows for run in runs[-2:]] == [0, first._task]  # one of each kind
        made: list[tuple[type, Any]] = [(ObjectRef, first), (ObjectRef, second)]
        made += [(TaskRecord, rec) for rec in tasks] + [(TaskSpec, rec.spec) for rec in tasks]
        made += [(ObjectEntry, entry) for entry in entries]
        made += [(TaskRun, run) for run in runs]
        for cls, obj in made:
            assert type(obj) is cls
            assert _unset(obj) == [], cls.__name__
        assert actorlib.get([first, second], timeout=T) == [[], []]
        assert len(outcomes) == 3
        for outcome in outcomes:
            assert type(outcome) is Outcome
            assert _unset(outcome) == []
    finally:
        actorlib.shutdown()
