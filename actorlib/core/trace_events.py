"""Chrome trace events (``actorlib.timeline``'s) from the state API's task rows.

A pure function of the rows, here below the API so every place that has task rows can
draw a timeline: :mod:`actorlib.trace` (``actorlib.timeline()``, ``actorlib timeline``)
and the dashboard's timeline page. See :mod:`actorlib.trace` for the format.
"""

from __future__ import annotations

import time
from typing import Any

#: The track of scheduling delays (real pids are never 0).
SCHEDULER_PID = 0


def _lane(lanes: list[float], start: float, end: float) -> int:
    """The first lane free at ``start`` (spans on one lane never overlap)."""
    for i, busy_until in enumerate(lanes):
        if busy_until <= start:
            lanes[i] = end
            return i
    lanes.append(end)
    return len(lanes) - 1


def trace_events(rows: list[dict[str, Any]], now_ms: float | None = None) -> list[dict[str, Any]]:
    """Chrome trace events for task rows (``list_tasks(detail=True)``'s)."""
    now_ms = time.time() * 1000 if now_ms is None else now_ms
    spans = []
    for row in rows:
        start = row.get("start_time_ms")
        if not start:
            continue  # never started: nothing ran
        end = row.get("end_time_ms") or max(now_ms, start)
        spans.append((start, end, row))
    spans.sort(key=lambda s: s[0])
    events: list[dict[str, Any]] = []
    lanes: dict[int, list[float]] = {}
    nodes: dict[int, str | None] = {}
    for start, end, row in spans:
        pid = row.get("worker_pid") or 0
        if pid not in lanes:
            lanes[pid], nodes[pid] = [], row.get("node_id")
        created = row.get("creation_time_ms") or start
        delay = max(start - created, 0.0)
        args = {
            "task_id": row["task_id"], "attempt": row["attempt_number"],
            "state": row["state"], "node_id": row.get("node_id"),
            "actor_id": row.get("actor_id"), "scheduling_delay_ms": round(delay, 3),
        }
        events.append({
            "name": row["name"], "cat": "task" if row["type"] == "NORMAL_TASK" else "actor_task",
            # ts + dur is exactly end * 1000 (a difference of close floats is exact), so
            # a call that starts as another ends does not overlap it by a rounding
            "ph": "X", "ts": start * 1000, "dur": end * 1000 - start * 1000, "pid": pid,
            "tid": _lane(lanes[pid], start, end), "args": args,
        })
        if delay > 0:
            lanes.setdefault(SCHEDULER_PID, [])
            events.append({
                "name": f"waiting: {row['name']}", "cat": "scheduling", "ph": "X",
                "ts": created * 1000, "dur": start * 1000 - created * 1000,
                "pid": SCHEDULER_PID,
                "tid": _lane(lanes[SCHEDULER_PID], created, start),
                "args": {"task_id": row["task_id"], "attempt": row["attempt_number"]},
            })
    for pid, used in lanes.items():
        if pid == SCHEDULER_PID:
            name = "scheduler (submitted, waiting to start)"
        else:
            node = nodes.get(pid)
            name = f"worker pid={pid}" + (f", node={node}" if node else "") if pid else "worker"
        events.append({"name": "process_name", "ph": "M", "pid": pid, "args": {"name": name}})
        for tid in range(len(used)):
            events.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
                           "args": {"name": f"lane {tid}"}})
    return events
