"""Seeing what runs: ``list_workers``, ``actorlib stack``, ``actorlib.timeline``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

import actorlib
from actorlib import debug_cli
from actorlib.util import state

pytestmark = pytest.mark.shared_runtime

T = 60


@actorlib.remote
def sleeps_until(path):
    """Blocked in time.sleep until ``path`` exists; returns the pid that ran it."""
    while not os.path.exists(path):
        time.sleep(0.05)
    return os.getpid()


@actorlib.remote
def quick(x):
    return x * 2


@actorlib.remote
class Host:
    def pid(self) -> int:
        return os.getpid()

    def twice(self, x):
        return x * 2


def _wait_for(predicate, what: str):
    deadline = time.monotonic() + T
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _worker_running(name: str) -> dict | None:
    for worker in state.list_workers(detail=True):
        if name in worker["current_task_names"]:
            return worker
    return None


def test_list_workers_shows_what_each_runs(rt, tmp_path):
    release = tmp_path / "release"
    blocked = sleeps_until.remote(str(release))
    host = Host.remote()
    actor_pid = actorlib.get(host.pid.remote(), timeout=T)

    worker = _wait_for(lambda: _worker_running("sleeps_until"), "a worker running the task")
    assert worker["is_alive"] and worker["pid"] > 0
    assert worker["worker_type"] in ("WORKER", "DRIVER")
    assert worker["node_id"] in {n["node_id"] for n in state.list_nodes()}
    task_id = state.list_tasks(filters=[("name", "=", "sleeps_until")])[0]["task_id"]
    assert task_id in worker["current_task_ids"]
    running = state.get_task(task_id)
    assert running["state"] == "RUNNING" and running["worker_pid"] == worker["pid"]

    # The actor's process is a worker too, and its row says which pid hosts it.
    alive = [w for w in state.list_workers() if w["is_alive"]]
    assert actor_pid in {w["pid"] for w in alive}
    actor_id = state.list_actors(filters=[("class_name", "=", "Host")])[0]["actor_id"]
    _wait_for(lambda: state.get_actor(actor_id)["pid"] == actor_pid, "the actor's pid")
    assert state.list_workers(filters=[("pid", "=", actor_pid)])

    release.write_text("go")
    assert actorlib.get(blocked, timeout=T) == worker["pid"]  # the pid listed ran it
    _wait_for(lambda: state.get_task(task_id)["state"] == "FINISHED", "the task to finish")
    assert state.get_task(task_id)["worker_pid"] == worker["pid"]
    _wait_for(lambda: _worker_running("sleeps_until") is None, "the worker to be idle")
    del host


def test_stack_shows_a_task_blocked_in_time_sleep(rt, tmp_path):
    release = tmp_path / "release"
    blocked = sleeps_until.remote(str(release))
    try:
        worker = _wait_for(lambda: _worker_running("sleeps_until"), "the task to run")
        task_id = worker["current_task_ids"][worker["current_task_names"].index("sleeps_until")]
        chosen = debug_cli.targets(state.list_workers(detail=True), task=task_id)
        assert [w["pid"] for w in chosen] == [worker["pid"]]
        text, failed = debug_cli.stacks_of(chosen)
        assert failed == 0, text
        assert f"== pid {worker['pid']}" in text and "running sleeps_until" in text
        # faulthandler's frame line for the task: its file, line and function.
        assert "test_observe.py\", line" in text and "in sleeps_until" in text

        # The command line, asking the process by pid.
        out = subprocess.run(
            [sys.executable, "-m", "actorlib", "stack", "--pid", str(worker["pid"])],
            capture_output=True, text=True, timeout=T,
        )
        assert out.returncode == 0, out.stderr
        assert "in sleeps_until" in out.stdout
    finally:
        release.write_text("go")
    actorlib.get(blocked, timeout=T)


def test_stack_names_what_it_cannot_find(rt):
    with pytest.raises(LookupError, match="no live worker with a running task"):
        debug_cli.targets(state.list_workers(detail=True), task="00000000deadbeef")
    with pytest.raises(LookupError, match="no live worker with pid"):
        debug_cli.targets(state.list_workers(detail=True), pid=1)


def test_timeline_holds_one_span_per_task(rt, tmp_path):
    assert actorlib.get([quick.remote(i) for i in range(5)], timeout=T) == [0, 2, 4, 6, 8]
    host = Host.remote()
    assert actorlib.get([host.twice.remote(i) for i in range(3)], timeout=T) == [0, 2, 4]
    path = tmp_path / "trace.json"
    assert actorlib.timeline(str(path)) is None
    events = json.loads(path.read_text())
    tasks = [e for e in events if e.get("cat") == "task" and e["name"] == "quick"]
    calls = [e for e in events if e.get("cat") == "actor_task" and e["name"] == "Host.twice"]
    assert len(tasks) == 5 and len(calls) == 3
    for span in tasks + calls:
        assert span["ph"] == "X" and span["dur"] >= 0 and span["pid"] > 0
        assert span["args"]["scheduling_delay_ms"] >= 0
    # Each worker's spans are laid out on lanes that never overlap.
    lanes: dict[tuple[int, int], list[tuple[float, float]]] = {}
    for e in events:
        if e.get("ph") == "X":
            lanes.setdefault((e["pid"], e["tid"]), []).append((e["ts"], e["ts"] + e["dur"]))
    for spans in lanes.values():
        spans.sort()
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))
    names = {e["pid"]: e["args"]["name"] for e in events if e.get("name") == "process_name"}
    assert all(names[span["pid"]].startswith("worker pid=") for span in tasks)
    assert actorlib.timeline() is not None  # without a file: the events
    del host
