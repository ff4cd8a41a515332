"""What the dashboard shows, as JSON-ready dicts built from state API rows.

Everything here is made of the rows a ``fetch(kind)`` returns (the same rows as
``actorlib.util.state``'s), so the dashboard looks the same on every backend and from
every place it is served (a local driver, a cluster's head, ``actorlib dashboard``), and
a new kind of rows shows up by adding its name to :data:`KINDS`: a source that does not
know a kind answers ``ValueError``, and the page leaves that section out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from actorlib.core.state import MAX_LOG_TAIL
from actorlib.core.trace_events import trace_events

Fetch = Callable[[str], list[dict[str, Any]]]

#: The kinds of rows the page shows, in its order.
KINDS = ("nodes", "demand", "workers", "actors", "tasks", "objects", "jobs", "metrics")
#: Task states that mean "ended" (the rest are live).
ENDED = frozenset({"FINISHED", "FAILED"})
#: The rate chart: this many one-second buckets, the newest last.
RATE_WINDOW_S = 60
DEFAULT_LIMIT = 200
MAX_LIMIT = 10_000
#: A log tail's default and largest size, in bytes.
DEFAULT_TAIL = 64 * 1024
MAX_TAIL = MAX_LOG_TAIL


def check_limit(text: str | None) -> int:
    """The ``limit`` query parameter: a clear error naming it and its accepted values."""
    if text is None:
        return DEFAULT_LIMIT
    if not text.isdigit() or int(text) > MAX_LIMIT:
        raise ValueError(f"limit: expected an integer from 0 to {MAX_LIMIT}, got {text!r}")
    return int(text)


def check_bytes(text: str | None) -> int:
    """The ``bytes`` query parameter of a log tail."""
    if text is None:
        return DEFAULT_TAIL
    if not text.isdigit() or not 0 < int(text) <= MAX_TAIL:
        raise ValueError(f"bytes: expected an integer from 1 to {MAX_TAIL}, got {text!r}")
    return int(text)


def log_files(fetch: Fetch) -> dict[str, Any]:
    """The worker log files (``logs``), newest first, each with the worker's row if it is
    listed (its actor, what it runs now, alive or not)."""
    files = fetch("logs")
    try:
        workers = {(w.get("node_id"), w.get("pid")): w for w in fetch("workers")}
    except ValueError:
        workers = {}
    rows = []
    for row in files:
        worker = workers.get((row.get("node_id"), row.get("pid"))) or {}
        rows.append({**row, "is_alive": worker.get("is_alive"),
                     "actor_class": worker.get("actor_class"),
                     "current_task_names": worker.get("current_task_names") or []})
    return {"time_ms": int(time.time() * 1000), "total": len(rows), "rows": rows}


def log_tail(fetch: Fetch, pid: int, size: int) -> dict[str, Any]:
    """The last ``size`` bytes of worker ``pid``'s log file, from a line's start."""
    (row,) = fetch(f"log:{pid}:{size}")
    return {"time_ms": int(time.time() * 1000), **row}


def timeline(fetch: Fetch) -> list[dict[str, Any]]:
    """The Chrome trace of the tasks the source remembers (``actorlib.timeline()``'s)."""
    return trace_events(fetch("tasks"))


def count_by(rows: list[dict[str, Any]], key: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        value = str(row.get(key))
        counts[value] = counts.get(value, 0) + 1
    return counts


def task_rate(
    rows: list[dict[str, Any]], now_ms: int, window_s: int = RATE_WINDOW_S,
) -> dict[str, Any]:
    """Tasks ended per second over the last ``window_s`` seconds, finished and failed.

    Built from the ended tasks the core remembers (its last 10,000 tasks and 10,000 actor
    calls), so a reload shows the recent past too; above about 160 ended tasks a second
    the oldest seconds of the window are no longer remembered and read low.
    """
    finished = [0] * window_s
    failed = [0] * window_s
    start = now_ms - window_s * 1000
    for row in rows:
        state = row.get("state")
        end = row.get("end_time_ms")
        if (state not in ENDED or isinstance(end, bool) or not isinstance(end, (int, float))
                or end <= start or end > now_ms):
            continue
        bucket = min(int(end - start) // 1000, window_s - 1)
        (failed if state == "FAILED" else finished)[bucket] += 1
    return {"end_ms": now_ms, "bucket_s": 1, "finished": finished, "failed": failed}


def store_use(objects: list[dict[str, Any]]) -> dict[str | None, dict[str, int]]:
    """Object bytes per node (``None``: small objects kept inline by the core)."""
    use: dict[str | None, dict[str, int]] = {}
    for row in objects:
        size = row.get("object_size") or 0
        spilled = size if row.get("spilled") else 0
        for node in row.get("where") or [None]:
            entry = use.setdefault(node, {"objects": 0, "bytes": 0, "spilled_bytes": 0})
            entry["objects"] += 1
            entry["bytes"] += size
            entry["spilled_bytes"] += spilled
    return use


def _with_store(nodes: list[dict[str, Any]], objects: list[dict[str, Any]] | None,
                ) -> list[dict[str, Any]]:
    if objects is None:
        return nodes
    use = store_use(objects)
    empty = {"objects": 0, "bytes": 0, "spilled_bytes": 0}
    if len(nodes) == 1 and None in use:
        # One node: objects whose node is not recorded (kept inline, or in a store that
        # does not say where) are on this machine all the same.
        node_id = nodes[0].get("node_id")
        own, unplaced = use.get(node_id, empty), use.pop(None)
        use[node_id] = {key: own[key] + unplaced[key] for key in empty}
    return [
        {**row, "object_store_bytes": use.get(row.get("node_id"), empty)["bytes"],
         "spilled_bytes": use.get(row.get("node_id"), empty)["spilled_bytes"]}
        for row in nodes
    ]


def _recent_tasks(rows: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """Live tasks first, then the ended ones, latest first."""
    live = [row for row in rows if row.get("state") not in ENDED]
    ended = sorted((row for row in rows if row.get("state") in ENDED),
                   key=lambda row: row.get("end_time_ms") or 0, reverse=True)
    return (live + ended)[:limit]


def _summary(kind: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"total": len(rows)}
    if kind in ("tasks", "actors", "nodes") or (rows and "state" in rows[0]):
        out["by_state"] = count_by(rows, "state")
    if kind == "workers":
        out["alive"] = sum(1 for row in rows if row.get("is_alive", True))
    elif kind == "demand":
        out["requests"] = sum(int(row.get("count") or 0) for row in rows)
        out["infeasible"] = sum(int(row.get("count") or 0) for row in rows
                                if row.get("infeasible"))
    elif kind == "actors":
        out["restarts"] = sum(int(row.get("num_restarts") or 0) for row in rows)
    elif kind == "objects":
        out["by_status"] = count_by(rows, "task_status")
        out["total_bytes"] = sum(row.get("object_size") or 0 for row in rows)
        out["spilled_bytes"] = sum(row.get("object_size") or 0 for row in rows
                                   if row.get("spilled"))
    elif kind == "nodes":
        total: dict[str, float] = {}
        available: dict[str, float] = {}
        for row in rows:
            if row.get("state", "ALIVE") != "ALIVE":
                continue
            for key, value in (row.get("resources_total") or {}).items():
                total[key] = total.get(key, 0.0) + value
            for key, value in (row.get("resources_available") or {}).items():
                available[key] = available.get(key, 0.0) + value
        out["resources_total"] = total
        out["resources_available"] = available
    return out


def kind_rows(fetch: Fetch, kind: str, limit: int) -> dict[str, Any]:
    """``/api/state/<kind>``: the first ``limit`` rows of one kind and their count.

    ``ValueError`` when the source does not know ``kind``.
    """
    rows = fetch(kind)
    shown = _recent_tasks(rows, limit) if kind == "tasks" else rows[:limit]
    return {"kind": kind, "time_ms": int(time.time() * 1000), "total": len(rows),
            "rows": shown}


def snapshot(fetch: Fetch, limit: int = DEFAULT_LIMIT,
             now_ms: int | None = None) -> dict[str, Any]:
    """``/api/snapshot``: every kind's summary and first ``limit`` rows, and the task rate.

    A kind the source does not know is listed under ``unavailable`` with the reason.
    """
    now = int(time.time() * 1000) if now_ms is None else now_ms
    rows: dict[str, list[dict[str, Any]]] = {}
    unavailable: dict[str, str] = {}
    for kind in KINDS:
        try:
            rows[kind] = fetch(kind)
        except ValueError as exc:
            unavailable[kind] = str(exc)
    if "nodes" in rows:
        rows["nodes"] = _with_store(rows["nodes"], rows.get("objects"))
    return {
        "time_ms": now,
        "kinds": [kind for kind in KINDS if kind in rows],
        "unavailable": unavailable,
        "summary": {kind: _summary(kind, kind_list) for kind, kind_list in rows.items()},
        "rows": {
            kind: _recent_tasks(kind_list, limit) if kind == "tasks" else kind_list[:limit]
            for kind, kind_list in rows.items()
        },
        "rate": task_rate(rows.get("tasks", []), now),
    }
