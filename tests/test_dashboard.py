"""The web dashboard's JSON endpoints on every backend, its token guard, its options.

The page itself is tested in a real browser in test_dashboard_browser.py, and the
cluster's head and ``actorlib dashboard`` in test_dashboard_cli.py.
"""

from __future__ import annotations

import sys

import pytest
from dashboard_client import get, snapshot, split
from testkit import Gate, held, wait_for

import actorlib
from actorlib import exceptions as exc
from actorlib.backends.dashboard import guard, server
from actorlib.backends.dashboard import snapshot as snap

T = 60
ON = pytest.mark.init_kwargs(dashboard=True, dashboard_port=0)


@actorlib.remote
def ok(x):
    return x + 1


@actorlib.remote(max_retries=0)
def broken():
    raise ValueError("broken on purpose")


@actorlib.remote(max_restarts=1)
class Counter:
    def incr(self) -> int:
        return 1


def _states(body: dict, name: str) -> list[str]:
    return [row["state"] for row in body["rows"]["tasks"] if row["name"] == name]


def _snapshot_when(url: str, check, what: str) -> dict:
    """The first snapshot that passes ``check``."""
    def attempt() -> dict | None:
        body = snapshot(url)
        return body if check(body) else None

    return wait_for(attempt, what)


@ON
def test_the_snapshot_shows_a_workload_and_follows_it(rt):
    url = rt.dashboard_url
    assert url is not None and rt["webui_url"] == url
    gate = Gate.remote()
    running = held.remote(gate)
    assert actorlib.get(ok.remote(1), timeout=T) == 2
    with pytest.raises(exc.TaskError):
        actorlib.get(broken.remote(), timeout=T)
    counter = Counter.remote()
    actorlib.get(counter.incr.remote(), timeout=T)
    actorlib.kill(counter, no_restart=False)
    actorlib.get(counter.incr.remote(), timeout=T)
    blob = actorlib.put(b"x" * 300_000)

    body = _snapshot_when(url, lambda b: _states(b, "held") == ["RUNNING"],
                          "the held task to run")
    assert body["kinds"][:1] == ["nodes"] and {"actors", "tasks", "objects"} <= set(body["kinds"])
    assert set(body["kinds"]) | set(body["unavailable"]) == set(snap.KINDS)
    tasks = body["summary"]["tasks"]["by_state"]
    assert tasks["RUNNING"] >= 1 and tasks["FINISHED"] >= 1 and tasks["FAILED"] == 1
    assert _states(body, "ok") == ["FINISHED"] and _states(body, "broken") == ["FAILED"]
    live = [row["state"] for row in body["rows"]["tasks"]]
    assert live.index("RUNNING") < live.index("FINISHED")  # live tasks are listed first
    actors = {row["class_name"]: row for row in body["rows"]["actors"]}
    assert actors["Gate"]["state"] == "ALIVE"
    assert actors["Counter"]["state"] == "ALIVE" and actors["Counter"]["num_restarts"] == 1
    assert body["summary"]["actors"]["restarts"] >= 1
    assert sum(body["rate"]["finished"]) >= 1 and sum(body["rate"]["failed"]) == 1
    assert len(body["rate"]["finished"]) == snap.RATE_WINDOW_S
    nodes = body["rows"]["nodes"]
    assert sum(n["resources_total"].get("CPU", 0) for n in nodes) == 4
    assert all(isinstance(n["object_store_bytes"], int) for n in nodes)
    assert body["summary"]["nodes"]["resources_total"]["CPU"] == 4
    assert body["summary"]["objects"]["total_bytes"] >= 300_000
    assert body["time_ms"] > 0 and "driver pid" in body["source"]
    assert body["summary"]["workers"]["alive"] >= 1
    assert all(isinstance(w["pid"], int) for w in body["rows"]["workers"] if w["is_alive"])

    # One kind at a time, with a limit.
    status, objects, _ = get(url, "api/state/objects?limit=10000")
    assert status == 200 and blob.hex() in {o["object_id"] for o in objects["rows"]}
    status, one, _ = get(url, "api/state/tasks?limit=1")
    assert status == 200 and len(one["rows"]) == 1 and one["total"] >= 4

    # It follows the workload: the held task ends, the actor dies.
    actorlib.get(gate.open.remote(), timeout=T)
    assert actorlib.get(running, timeout=T) == "opened"
    actorlib.kill(counter)
    after = _snapshot_when(
        url, lambda b: _states(b, "held") == ["FINISHED"] and "DEAD" in {
            a["state"] for a in b["rows"]["actors"]},
        "the held task to finish and the actor to die",
    )
    assert after["summary"]["tasks"]["by_state"].get("RUNNING", 0) == 0
    assert after["time_ms"] >= body["time_ms"]
    del blob


@ON
def test_bad_requests_get_a_clear_error(rt):
    url = rt.dashboard_url
    status, body, _ = get(url, "api/state/colours")
    assert status == 404 and "unknown state kind 'colours'" in body["error"]
    for query in ("limit=-1", "limit=x", f"limit={snap.MAX_LIMIT + 1}"):
        status, body, _ = get(url, f"api/snapshot?{query}")
        assert status == 400 and body["error"].startswith("limit: expected an integer"), query
    status, body, _ = get(url, "static/secrets.txt")
    assert status == 404


@ON
def test_requests_without_the_token_get_401(rt):
    url = rt.dashboard_url
    for path in ("", "api/snapshot", "api/state/tasks", "static/dashboard.js"):
        status, body, headers = get(url, path, token=None)
        assert status == 401, path
        assert "token" in body["error"] and headers["Cache-Control"] == "no-store"
        status, _, _ = get(url, path, token="not-the-token")
        assert status == 401, path


@actorlib.remote
def count_requests(n: int) -> int:
    from actorlib.util.metrics import Counter

    requests = Counter("dash_requests", "requests served", tag_keys=("route",))
    for _ in range(n):
        requests.inc(tags={"route": "/a"})
    return n


@ON
def test_metrics_and_jobs_are_served_in_the_snapshot_and_as_prometheus_text(rt):
    url = rt.dashboard_url
    assert actorlib.get(count_requests.remote(3), timeout=T) == 3

    def scraped() -> str | None:
        status, text, headers = get(url, "metrics")
        assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return text if 'dash_requests_total{route="/a"} 3.0' in text else None

    text = wait_for(scraped, "the counter in /metrics")
    assert "# TYPE dash_requests counter" in text.splitlines()
    body = _snapshot_when(url, lambda b: b["rows"].get("metrics"), "metrics rows")
    assert {"jobs", "metrics"} <= set(body["kinds"])
    assert body["rows"]["metrics"][0]["name"] == "dash_requests"
    assert [job["status"] for job in body["rows"]["jobs"]] == ["RUNNING"]
    status, _, _ = get(url, "metrics", token=None)
    assert status == 401


@ON
def test_the_timeline_endpoint_serves_the_chrome_trace(rt):
    url = rt.dashboard_url
    assert actorlib.get([ok.remote(i) for i in range(3)], timeout=T) == [1, 2, 3]
    status, events, headers = get(url, "api/timeline")
    assert status == 200 and "Content-Disposition" not in headers
    spans = [e for e in events if e["ph"] == "X" and e["name"] == "ok"]
    assert len(spans) == 3 and all(e["cat"] == "task" and e["dur"] >= 0 for e in spans)
    assert {e["pid"] for e in spans} <= {e["pid"] for e in events if e["name"] == "process_name"}
    status, again, headers = get(url, "api/timeline?download=1")
    assert status == 200 and len([e for e in again if e.get("name") == "ok"]) == 3
    assert headers["Content-Disposition"] == 'attachment; filename="timeline.json"'
    for page in ("timeline", "logs"):
        status, text, headers = get(url, page)
        assert status == 200 and headers["Content-Type"].startswith("text/html"), page
        assert "static/common.js" in text
    status, _, _ = get(url, "api/timeline", token=None)
    assert status == 401


def test_off_by_default(rt):
    assert rt.dashboard_url is None and rt["webui_url"] is None


# -- the server on its own: rows from a function, no runtime -----------------------------------


ROWS = {
    "nodes": [{"node_id": "n1", "state": "ALIVE", "resources_total": {"CPU": 2.0},
               "resources_available": {"CPU": 1.0}}],
    "tasks": [{"task_id": "t1", "name": "f", "state": "FINISHED", "end_time_ms": None},
              {"task_id": "t2", "name": "g", "state": "RUNNING"}],
    "actors": [],
    "objects": [{"object_id": "o1", "object_size": 10, "where": ["n1"], "spilled": True,
                 "task_status": "FINISHED"}],
}


def _fetch(kind: str) -> list[dict]:
    if kind not in ROWS:
        raise ValueError(f"unknown state kind {kind!r}")
    return ROWS[kind]


@pytest.fixture
def served():
    dashboard = server.DashboardServer(_fetch, port=0, source="a test")
    dashboard.start()
    try:
        yield dashboard
    finally:
        dashboard.stop()


def test_the_token_in_the_url_becomes_a_cookie(served):
    _, token = split(served.url)
    status, page, headers = get(served.url, f"?token={token}", token=None)
    assert status == 200 and "<canvas" in page
    cookie = headers["Set-Cookie"]
    assert cookie.startswith(f"{guard.cookie_name(served.port)}={token};")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    jar = {"Cookie": f"{guard.cookie_name(served.port)}={token}"}
    status, script, _ = get(served.url, "static/dashboard.js", token=None, headers=jar)
    assert status == 200 and "api/snapshot" in script
    status, _, _ = get(served.url, "api/snapshot", token=None,
                       headers={"Cookie": f"{guard.cookie_name(served.port)}=wrong"})
    assert status == 401


def test_a_kind_the_source_lacks_is_listed_as_unavailable(served):
    body = snapshot(served.url)
    assert body["kinds"] == ["nodes", "actors", "tasks", "objects"]
    assert set(body["unavailable"]) == {"demand", "workers", "jobs", "metrics"}
    assert "unknown state kind 'workers'" in body["unavailable"]["workers"]
    assert body["rows"]["nodes"][0]["object_store_bytes"] == 10
    assert body["rows"]["nodes"][0]["spilled_bytes"] == 10
    assert body["summary"]["objects"]["spilled_bytes"] == 10
    assert [t["task_id"] for t in body["rows"]["tasks"]] == ["t2", "t1"]
    assert body["source"] == "a test" and body["build_ms"] >= 0


def test_a_failing_source_is_a_503_and_the_server_stays_up():
    calls = []

    def fetch(kind: str) -> list[dict]:
        calls.append(kind)
        raise ConnectionError("the driver at /x closed the connection")

    dashboard = server.DashboardServer(fetch, port=0)
    dashboard.start()
    try:
        for _ in range(2):
            status, body, _ = get(dashboard.url, "api/snapshot")
            assert status == 503 and "closed the connection" in body["error"]
    finally:
        dashboard.stop()
    assert calls


def test_a_taken_port_is_a_clear_error(served):
    with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{served.port}"):
        server.start(_fetch, port=served.port)
    other = server.start(_fetch)  # the default port falls back to a free one when taken
    other.stop()


def test_the_task_rate_counts_ended_tasks_per_second():
    now = 100_000
    rows = [
        {"state": "FINISHED", "end_time_ms": now - 500.25},  # the core's are floats
        {"state": "FINISHED", "end_time_ms": now - 1500},
        {"state": "FAILED", "end_time_ms": now - 1200},
        {"state": "FINISHED", "end_time_ms": now - 61_000},  # outside the window
        {"state": "RUNNING", "end_time_ms": None},
    ]
    rate = snap.task_rate(rows, now)
    assert rate["finished"][-1] == 1 and rate["finished"][-2] == 1
    assert rate["failed"][-2] == 1 and sum(rate["finished"]) == 2


def test_the_cluster_token_derives_the_dashboard_token():
    derived = guard.derived_token(b"secret")
    assert derived == guard.derived_token("secret") != guard.derived_token(b"other")
    assert "secret" not in derived and len(derived) == 40


def test_bad_init_options_fail_before_anything_starts():
    with pytest.raises(ValueError, match=r"dashboard_port=\) takes an int from 0 to 65535"):
        actorlib.init(backend="thread", dashboard=True, dashboard_port=70000)
    with pytest.raises(TypeError, match=r"init\(dashboard=\) takes True or False"):
        actorlib.init(backend="thread", dashboard="yes")
    with pytest.raises(ValueError, match="dashboard_host"):
        actorlib.init(backend="thread", dashboard=True, dashboard_host="")
    assert not actorlib.is_initialized()


def test_without_aiohttp_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "aiohttp", None)
    with pytest.raises(ImportError, match=r"pip install 'actorlib\[dashboard\]'"):
        actorlib.init(backend="thread", include_dashboard=True, dashboard_port=0)
    assert not actorlib.is_initialized()


def test_a_source_that_lists_workers_shows_them():
    workers = [{"worker_id": "w1", "pid": 4242, "node_id": "n1", "state": "ALIVE"},
               {"worker_id": "w2", "pid": 4243, "node_id": "n1", "state": "IDLE"}]
    body = snap.snapshot(lambda kind: workers if kind == "workers" else _fetch(kind))
    assert "workers" in body["kinds"] and "workers" not in body["unavailable"]
    assert body["rows"]["workers"] == workers
    assert body["summary"]["workers"] == {"total": 2, "alive": 2,
                                          "by_state": {"ALIVE": 1, "IDLE": 1}}
