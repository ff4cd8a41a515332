"""The state API (``actorlib.util.state``): list, summarize and get over a live workload."""

from __future__ import annotations

import gc
import json
import os
import pickle
import sys
import time

import pytest
from testkit import Gate, held, wait_for

import actorlib
import actorlib as ray
from actorlib import _testing, session
from actorlib import exceptions as exc
from actorlib.core import state as core_state
from actorlib.util import state

T = 60


@actorlib.remote
def ok(x):
    return x + 1


@actorlib.remote(max_retries=0)
def broken():
    raise ValueError("broken on purpose")


@actorlib.remote(max_restarts=1)
class Counter:
    def __init__(self) -> None:
        self.n = 0

    def incr(self) -> int:
        self.n += 1
        return self.n


@actorlib.remote
def rows_from_inside(kind):
    return [row["state"] for row in state.list_tasks(filters=[("name", "=", kind)])]


def _one(name: str) -> dict:
    rows = state.list_tasks(filters=[("name", "=", name)], detail=True)
    assert len(rows) == 1, rows
    return rows[0]


def test_list_jobs_shows_this_driver(rt):
    mine = actorlib.get_runtime_context().get_job_id()
    jobs = {job["job_id"]: job for job in state.list_jobs(detail=True)}
    job = jobs[mine]
    assert job["type"] == "DRIVER" and job["status"] == "RUNNING"
    assert job["driver_info"]["pid"] == str(os.getpid())
    assert job["start_time"] <= time.time() * 1000 and job["end_time"] is None
    # This process's command line, as Ray shows it: pytest's, or a pytest-xdist worker's.
    assert job["entrypoint"] == " ".join([os.path.basename(sys.executable), *sys.argv])
    assert state.list_jobs(filters=[("status", "=", "SUCCEEDED"), ("job_id", "=", mine)]) == []
    # From inside a task too: the same table.
    assert actorlib.get(jobs_from_inside.remote(), timeout=T) == sorted(jobs)


@actorlib.remote
def jobs_from_inside():
    return sorted(job["job_id"] for job in state.list_jobs())


def test_workload_states(rt):
    gate = Gate.remote()
    running = held.remote(gate)
    assert actorlib.get(ok.remote(1), timeout=T) == 2
    with pytest.raises(exc.TaskError):
        actorlib.get(broken.remote(), timeout=T)
    counter = Counter.remote()
    assert actorlib.get(counter.incr.remote(), timeout=T) == 1
    actorlib.kill(counter, no_restart=False)
    assert actorlib.get(counter.incr.remote(), timeout=T) == 1  # a fresh incarnation

    # The held task runs once its call on the gate is in flight.
    wait_for(lambda: state.list_tasks(filters=[("name", "=", "Gate.wait")]), "Gate.wait")
    row = _one("held")
    assert row["state"] == "RUNNING"
    assert row["type"] == "NORMAL_TASK"
    assert row["node_id"] in {n["node_id"] for n in state.list_nodes()}
    assert row["creation_time_ms"] <= row["start_time_ms"]
    assert row["end_time_ms"] is None
    finished = _one("ok")
    assert finished["state"] == "FINISHED"
    assert finished["start_time_ms"] <= finished["end_time_ms"]
    assert _one("broken")["state"] == "FAILED"
    assert _one("Gate.wait")["type"] == "ACTOR_TASK"
    calls = state.list_tasks(filters=[("name", "=", "Counter.incr")])
    assert [c["state"] for c in calls] == ["FINISHED", "FINISHED"]

    # Filters, limit, detail, get.
    unfinished = state.list_tasks(filters=[("state", "!=", "FINISHED")])
    assert unfinished and all(t["state"] != "FINISHED" for t in unfinished)
    assert len(state.list_tasks(limit=2)) == 2
    assert "creation_time_ms" not in state.list_tasks()[0]
    got = state.get_task(row["task_id"])
    assert got is not None and got["name"] == "held"
    assert state.get_task("00000000deadbeef") is None

    actors = {a["class_name"]: a for a in state.list_actors(detail=True)}
    assert actors["Counter"]["state"] == "ALIVE"
    assert actors["Counter"]["num_restarts"] == 1
    assert actors["Gate"]["state"] == "ALIVE"
    assert state.get_actor(actors["Counter"]["actor_id"])["class_name"] == "Counter"
    assert state.list_actors(filters=[("state", "=", "DEAD")]) == []

    summary = state.summarize_tasks()["cluster"]["summary"]
    assert summary["ok"]["state_counts"] == {"FINISHED": 1}
    assert summary["broken"]["state_counts"] == {"FAILED": 1}
    assert summary["held"]["state_counts"] == {"RUNNING": 1}
    assert state.summarize_actors()["cluster"]["summary"]["Counter"]["state_counts"] == {
        "ALIVE": 1
    }

    # The same API inside a task (forwarded to the core on the process and cluster backends).
    assert actorlib.get(rows_from_inside.remote("ok"), timeout=T) == ["FINISHED"]

    actorlib.get(gate.open.remote(), timeout=T)
    assert actorlib.get(running, timeout=T) == "opened"
    wait_for(lambda: _one("held")["state"] == "FINISHED", "held to finish")

    actorlib.kill(counter)
    wait_for(lambda: state.list_actors(filters=[("class_name", "=", "Counter"),
                                                 ("state", "=", "DEAD")]), "Counter dead")
    dead = state.get_actor(actors["Counter"]["actor_id"])
    assert "killed" in dead["death_cause"]
    # With its last handle gone the core forgets it; the state API still lists it, dead.
    del counter
    gc.collect()
    _testing.live_actor_ids()  # applies the dropped handle
    assert state.get_actor(actors["Counter"]["actor_id"])["state"] == "DEAD"


@actorlib.remote
class Line:
    """Calls that stay running until a gate opens, on an actor that runs ``max_concurrency``
    of them at once."""

    def hold(self, gate):
        return actorlib.get(gate.wait.remote())


@pytest.mark.parametrize("places", [1, 2])
def test_calls_queued_in_the_actor_wait_for_a_place_to_run(rt, places):
    """Of the calls handed to an actor, only as many as it runs at once read RUNNING; the
    others wait (SUBMITTED_TO_WORKER, no start time) and start when a place frees. The
    timeline then shows at most that many at once, not every call from its hand-over."""
    gate = Gate.remote()
    line = Line.options(max_concurrency=places).remote()
    refs = [line.hold.remote(gate) for _ in range(5)]

    def states():
        return sorted(row["state"] for row in
                      state.list_tasks(filters=[("name", "=", "Line.hold")], detail=True))

    wait_for(lambda: states().count("RUNNING") == places, f"{places} calls to run")
    assert states() == ["RUNNING"] * places + ["SUBMITTED_TO_WORKER"] * (5 - places)
    for row in state.list_tasks(filters=[("name", "=", "Line.hold")], detail=True):
        running = row["state"] == "RUNNING"
        assert (row["start_time_ms"] is not None) is running, row
        assert row["worker_pid"] is not None, row  # handed to the actor's worker
    current = [name for w in state.list_workers(detail=True) for name in w["current_task_names"]]
    assert current.count("Line.hold") == places, current

    actorlib.get(gate.open.remote(), timeout=T)
    assert actorlib.get(refs, timeout=T) == ["opened"] * 5
    rows = state.list_tasks(filters=[("name", "=", "Line.hold")], detail=True)
    assert [row["state"] for row in rows] == ["FINISHED"] * 5
    spans = sorted((row["start_time_ms"], row["end_time_ms"]) for row in rows)
    for start, end in spans:
        assert start <= end
        assert sum(1 for s, e in spans if s <= start < e) <= places, spans
    events = [e for e in actorlib.timeline() if e.get("cat") == "actor_task"
              and e["name"] == "Line.hold"]
    assert len(events) == 5
    for e in events:
        at_once = sum(1 for f in events if f["ts"] <= e["ts"] < f["ts"] + f["dur"])
        assert at_once <= places, events
    actorlib.kill(line)


def test_objects_and_nodes(rt):
    big = actorlib.put(b"x" * 200_000)
    small = actorlib.put(7)
    rows = {o["object_id"]: o for o in state.list_objects()}
    assert rows[big.hex()]["object_size"] >= 200_000
    assert rows[big.hex()]["reference_count"] >= 1
    assert rows[big.hex()]["task_status"] == "FINISHED"
    assert rows[big.hex()]["spilled"] is False
    assert small.hex() in rows
    summary = state.summarize_objects()["cluster"]
    assert summary["total_objects"] >= 2
    assert summary["total_size_bytes"] >= 200_000
    nodes = state.list_nodes()
    assert nodes and all(n["state"] == "ALIVE" for n in nodes)
    assert sum(n["resources_total"].get("CPU", 0) for n in nodes) == 4
    del big, small


def test_placement_groups(rt):
    from actorlib.util.placement_group import placement_group, remove_placement_group

    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="SPREAD", name="state-pg")
    assert pg.wait(T)
    rows = {r["placement_group_id"]: r for r in state.list_placement_groups(detail=True)}
    row = rows[pg.id.hex()]
    assert (row["name"], row["state"], row["strategy"], row["is_detached"]) == (
        "state-pg", "CREATED", "SPREAD", False)
    nodes = {n["node_id"] for n in state.list_nodes()}
    assert [b["unit_resources"] for b in row["bundles"]] == [{"CPU": 1.0}, {"CPU": 1.0}]
    assert all(b["node_id"] in nodes for b in row["bundles"])
    assert set(state.list_placement_groups()[0]) == set(state.BRIEF["placement_groups"])
    remove_placement_group(pg)
    removed = state.list_placement_groups(filters=[("placement_group_id", "=", pg.id.hex())])
    assert [r["state"] for r in removed] == ["REMOVED"]  # kept, as in Ray's table


def test_bad_arguments(rt):
    with pytest.raises(ValueError, match="unknown operator '>'"):
        state.list_tasks(filters=[("state", ">", "RUNNING")])
    with pytest.raises(ValueError, match="unknown key 'colour'"):
        state.list_actors(filters=[("colour", "=", "red")])
    with pytest.raises(ValueError, match="limit"):
        state.list_nodes(limit=-1)
    with pytest.raises(ValueError, match="unknown state kind"):
        state.rows("colours")
    with pytest.raises(ValueError, match="timeout"):
        state.list_tasks(timeout=0)


def test_rows_read_as_attributes_too_as_rays_state_objects_do(rt):
    assert actorlib.get(ok.remote(1), timeout=T) == 2
    counter = Counter.remote()
    assert actorlib.get(counter.incr.remote(), timeout=T) == 1
    for row in (state.list_tasks(filters=[("name", "=", "ok")])[0],
                state.list_tasks(filters=[("name", "=", "ok")], detail=True)[0],
                state.get_actor(counter.actor_id.hex())):
        assert row is not None and row.job_id == row["job_id"] == row.get("job_id")
        plain = row.asdict()
        assert type(plain) is dict and plain == row
        assert json.loads(json.dumps(row)) == plain
        assert pickle.loads(pickle.dumps(row)) == row
        with pytest.raises(AttributeError, match=r"no field 'colour'.*job_id"):
            _ = row.colour
    task = state.list_tasks(filters=[("name", "=", "ok")])[0]
    assert task.state == "FINISHED" and task.name == "ok"
    assert state.get_task(task.task_id).task_id == task.task_id


def test_reachable_as_ray_util_state(rt):
    assert ray.util.state.list_nodes is state.list_nodes


@actorlib.remote
def worker_of() -> tuple[str, int]:
    return actorlib.get_runtime_context().get_worker_id(), os.getpid()


def test_get_by_id_of_every_kind_as_ray_does(rt, backend_name, caplog):
    """Ray's getters: one row with every field (``get_objects``: a list), None (``[]``)
    for an unknown id, hex ids compared case-insensitively (names exactly), Ray's keyword
    arguments taken."""
    from actorlib.util.placement_group import placement_group, remove_placement_group

    node = state.list_nodes()[0]
    got = state.get_node(node["node_id"])
    assert got is not None and got.node_id == node["node_id"] and got.state == "ALIVE"
    assert got["resources_total"] == node["resources_total"]
    # The sim backend names its nodes ("sim-node-0"); the others give them hex ids.
    named = backend_name == "sim"
    assert state.get_node(node["node_id"].upper(), timeout=5, _explain=False) == (
        None if named else got)
    assert state.get_node("00ff00ff00ff00ff") is None

    ref = worker_of.remote()
    worker_id, pid = actorlib.get(ref, timeout=T)
    assert state.get_task(ref).name == "worker_of"  # a ref names its task, as in Ray
    # ... also a ref rebuilt from its id alone, which does not carry its task: the core's
    # object table names it (Ray reads it off the id).
    rebuilt = actorlib.ObjectRef.from_hex(ref.hex())
    assert rebuilt.task_id().is_nil()
    assert state.get_task(rebuilt).name == "worker_of"
    counter = Counter.remote()
    call = counter.incr.remote()
    assert actorlib.get(call, timeout=T) == 1
    assert state.get_task(actorlib.ObjectRef.from_hex(call.hex())).name == "Counter.incr"
    assert state.get_task(actorlib.ObjectRef.from_hex(actorlib.put(1).hex())) is None
    del rebuilt, counter, call
    worker = state.get_worker(worker_id)
    assert worker is not None and (worker.pid, worker.is_alive) == (pid, True)
    assert "exit_detail" in worker  # every field, as detail=True lists it
    assert state.get_worker("00000000deadbeef") is None

    job_id = actorlib.get_runtime_context().get_job_id()
    job = state.get_job(job_id)
    assert job is not None and (job.type, job.status, job.submission_id) == (
        "DRIVER", "RUNNING", None)
    assert job["driver_info"]["pid"] == str(os.getpid())
    assert state.get_job("raysubmit_unknown") is None
    assert state.get_job("None") is None  # no submission id is not an id

    ref = actorlib.put(b"x" * 1000)
    objects = state.get_objects(ref.hex())
    assert isinstance(objects, list) and [o.object_id for o in objects] == [ref.hex()]
    assert objects[0]["object_size"] >= 1000 and objects[0]["reference_count"] >= 1
    assert state.get_objects("00000000deadbeef") == []

    pg = placement_group([{"CPU": 1}], name="get-pg")
    assert pg.wait(T)
    group = state.get_placement_group(pg.id.hex())
    assert group is not None and (group.name, group.state) == ("get-pg", "CREATED")
    assert [b["unit_resources"] for b in group.bundles] == [{"CPU": 1.0}]
    remove_placement_group(pg)
    assert state.get_placement_group(pg.id.hex()).state == "REMOVED"
    assert state.get_placement_group("00000000deadbeef") is None

    with pytest.raises(TypeError, match="id string"):
        state.get_node(7)
    # Ray's positional order (id, address, timeout, _explain); _explain logs each answer.
    with caplog.at_level("INFO", logger="actorlib.util.state"):
        assert state.get_job(job_id, None, 10, True) == job
        assert state.list_nodes(None, None, 100, 10, False, True, True)
    said = [r.getMessage() for r in caplog.records if r.name == "actorlib.util.state"]
    assert len(said) == 2 and " jobs rows in " in said[0] and " nodes rows in " in said[1]
    del ref


def test_getters_compare_hex_ids_in_either_case_and_names_exactly():
    """Ray's ids are hex, written in lower case: found in either case. A cluster node's
    name (or a submission id) is not an id: ``get_node("LEFT")`` does not find ``left``."""
    tables = {
        "nodes": [{"node_id": "left"}, {"node_id": "Right"}, {"node_id": "00ff00ff00ff00ff"}],
        "jobs": [{"job_id": "00000000000000ab", "submission_id": "raysubmit_Ab"}],
    }

    def fetch(kind: str) -> list[dict]:
        return tables[kind]

    assert state.get_node("left", _fetch=fetch).node_id == "left"
    assert state.get_node("Right", _fetch=fetch).node_id == "Right"
    for name in ("LEFT", "Left", "right", "RIGHT"):
        assert state.get_node(name, _fetch=fetch) is None, name
    assert state.get_node("00FF00FF00FF00FF", _fetch=fetch).node_id == "00ff00ff00ff00ff"
    assert state.get_job("raysubmit_Ab", _fetch=fetch).job_id == "00000000000000ab"
    assert state.get_job("RAYSUBMIT_AB", _fetch=fetch) is None
    assert state.get_job("00000000000000AB", _fetch=fetch).job_id == "00000000000000ab"


def test_what_actorlib_has_no_table_for_says_so(rt):
    for name in ("list_runtime_envs", "list_cluster_events"):
        with pytest.raises(exc.NotSupportedError, match=name):
            getattr(ray.util.state, name)(limit=10, _explain=False)
    for name in ("get_job", "get_node", "get_objects", "get_placement_group", "get_worker"):
        assert getattr(ray.util.state, name) is getattr(state, name)


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_the_core_keeps_a_bounded_history(backend, monkeypatch):
    """Where the core lives in this process: the ended-task ring is bounded, and a
    forgotten actor is listed from a row of its own, not from its record."""
    monkeypatch.setattr(core_state, "ENDED_KEPT", 5)
    actorlib.init(backend=backend, num_cpus=2)
    try:
        assert actorlib.get([ok.remote(i) for i in range(8)], timeout=T) == list(range(1, 9))
        assert len(state.list_tasks(filters=[("name", "=", "ok")])) == 5
        counter = Counter.remote()
        actor_id = state.list_actors(filters=[("class_name", "=", "Counter")])[0]["actor_id"]
        assert actorlib.get(counter.incr.remote(), timeout=T) == 1
        del counter
        gc.collect()
        rt = session.runtime()
        wait_for(lambda: not rt.actors.records, "the actor to be forgotten")
        row = state.get_actor(actor_id)
        assert row["state"] == "DEAD" and "out of scope" in row["death_cause"]
    finally:
        actorlib.shutdown()


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_the_ended_history_holds_nothing_the_collector_walks(backend):
    """The ended tasks and calls the core keeps for the state API (10,000 of each) are
    tuples of plain values: the collector stops tracking each at its first pass, so they
    never fill its oldest generation, and an ended task's placement is not kept."""
    actorlib.init(backend=backend, num_cpus=2)
    try:
        counter = Counter.remote()
        assert actorlib.get([ok.remote(i) for i in range(4)], timeout=T) == [1, 2, 3, 4]
        assert actorlib.get(counter.incr.remote(), timeout=T) == 1
        rt = session.runtime()
        gc.collect()
        ended = [*rt.tasks.ended, *rt.actors.ended]
        assert len(ended) >= 5
        assert not [row for row in ended if gc.is_tracked(row)], ended
        rows = {r["name"]: r for r in state.list_tasks(filters=[("state", "=", "FINISHED")])}
        assert rows["ok"]["node_id"] and rows["Counter.incr"]["node_id"]
    finally:
        actorlib.shutdown()


def test_spilled_objects_are_listed_as_spilled():
    """The process backend's store moves objects over its capacity to disk: the state API
    says which, and counts their bytes."""
    np = pytest.importorskip("numpy")
    mib = 1 << 20
    actorlib.init(backend="process", num_cpus=2, object_store_memory=96 * mib)
    try:
        refs = [actorlib.put(np.full(4 * mib, float(i))) for i in range(4)]  # 128 MiB
        rows = {o["object_id"]: o for o in state.list_objects(detail=True)}
        spilled = [rows[r.hex()]["spilled"] for r in refs]
        assert spilled[0] and not spilled[-1], spilled
        summary = state.summarize_objects()["cluster"]
        assert summary["spilled_bytes"] >= 32 * mib
        assert state.list_objects(filters=[("spilled", "=", True)])
        del refs
    finally:
        actorlib.shutdown()
