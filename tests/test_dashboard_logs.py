"""The dashboard's worker log endpoints: the workers' log files and a tail of one.

A local driver keeps worker log files with ``init(log_dir=...)``; a cluster's nodes keep
them always, and the dashboard reads them through the head, which asks the node where
the worker runs. The page that shows them is loaded in a browser in
test_dashboard_browser.py.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from dashboard_client import get
from testkit import wait_for

import actorlib
from actorlib import exceptions as exc
from actorlib.util import state

T = 60


@actorlib.remote
def printer(n: int) -> int:
    for i in range(n):
        print(f"log line {i} of {n}")
    return os.getpid()


@pytest.mark.parametrize("backend", ["thread", "process", "cluster"])
def test_the_log_files_and_a_tail_of_one(backend: str, tmp_path: Path) -> None:
    options: dict[str, Any] = {} if backend == "cluster" else {"log_dir": str(tmp_path)}
    info = actorlib.init(backend=backend, num_cpus=2, dashboard=True, dashboard_port=0,
                         log_to_driver=False, **options)
    try:
        url = info.dashboard_url
        pid = actorlib.get(printer.remote(200), timeout=T)

        def listed() -> dict[str, Any] | None:
            status, body, _ = get(url, "api/logs")
            assert status == 200, body
            return next((row for row in body["rows"] if row["pid"] == pid), None)

        row = wait_for(listed, "the worker's log file")
        assert row["file"] == f"worker-{pid}.log" and row["size"] > 0
        assert row["is_alive"] is True and row["node_id"] is not None

        status, tail, _ = get(url, f"api/logs/{pid}?bytes=100000")
        assert status == 200, tail
        lines = [line for line in tail["text"].splitlines() if "log line" in line]
        assert len(lines) == 200 and lines[-1].endswith("log line 199 of 200")
        assert lines[0].startswith("(printer pid=") and not tail["truncated"]
        # A short tail starts at a whole line.
        status, short, _ = get(url, f"api/logs/{pid}?bytes=100")
        assert status == 200 and short["truncated"] and short["size"] == tail["size"]
        assert len(short["text"].encode()) <= 100
        assert all(line.startswith("(printer pid=") for line in short["text"].splitlines())

        # The same through Ray's list_logs / get_log.
        logs = state.list_logs()
        assert f"worker-{pid}.log" in logs["worker"]
        assert state.list_logs(glob_filter=f"*-{pid}.log") == {"worker": [f"worker-{pid}.log"]}
        assert state.list_logs(node_id="no-such-node") == {}
        last = list(state.get_log(filename=f"worker-{pid}.log", tail=3))
        assert [line.rsplit(" ", 4)[-4:] for line in last] == [
            ["line", str(i), "of", "200"] for i in (197, 198, 199)]
        assert list(state.get_log(pid=pid, tail=3)) == last
        ref = printer.remote(3)
        by_task = actorlib.get(ref, timeout=T)
        task_log = wait_for(lambda: list(state.get_log(task_id=ref.task_id().hex(), tail=1))
                            or None, "the task's lines")
        assert task_log[0].endswith("log line 2 of 3") and f"worker-{by_task}.log" in (
            state.list_logs()["worker"])
        for bad, error in (({"pid": pid, "node_ip": "10.0.0.1"}, exc.NotSupportedError),
                           ({"pid": pid, "tail": 0}, ValueError),
                           ({"filename": "raylet.out"}, ValueError),
                           ({"pid": pid, "task_id": "00"}, ValueError),
                           ({"pid": 99999999}, LookupError)):
            with pytest.raises(error):
                list(state.get_log(**bad))

        # Bad input: a clear error, nothing read.
        for path, code, words in (
            ("api/logs/abc", 400, "pid: expected"), ("api/logs/0", 400, "pid: expected"),
            (f"api/logs/{pid}?bytes=0", 400, "bytes: expected"),
            (f"api/logs/{pid}?bytes=x", 400, "bytes: expected"),
            ("api/logs/99999999", 404, "99999999"),
        ):
            status, body, _ = get(url, path)
            assert status == code and words in body["error"], (path, body)
        for path in ("api/logs", f"api/logs/{pid}", "logs"):
            status, _, _ = get(url, path, token=None)
            assert status == 401, path
    finally:
        actorlib.shutdown()


def test_without_log_files_the_list_is_empty_and_a_tail_says_why() -> None:
    info = actorlib.init(backend="process", num_cpus=1, dashboard=True, dashboard_port=0)
    try:
        pid = actorlib.get(printer.remote(1), timeout=T)
        status, body, _ = get(info.dashboard_url, "api/logs")
        assert status == 200 and body["rows"] == []
        status, body, _ = get(info.dashboard_url, f"api/logs/{pid}")
        assert status == 404 and "log_dir" in body["error"]
    finally:
        actorlib.shutdown()
