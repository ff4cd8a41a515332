"""The head's status report, answered to ``actorlib status`` (a ``StatusQuery``).

Read on the core loop from the head's peers and the core it runs; kept apart from the
head's message handling because it is a view, not a protocol.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from actorlib.backends.cluster.head import HeadBackend


def head_status(head: HeadBackend) -> dict[str, Any]:
    """What ``actorlib status`` shows: the nodes, their load, and the core's counts."""
    core = head.core
    tasks = head.client.state_rows("tasks")
    # The tasks running on each node, as the local report counts them: ``peer.running``
    # holds those queued on its workers behind running ones too (pipelining).
    running: dict[str, int] = {}
    for row in tasks:
        if row["state"] == "RUNNING" and row["type"] == "NORMAL_TASK":
            running[row["node_id"]] = running.get(row["node_id"], 0) + 1
    nodes = []
    for peer in head.nodes.values():
        assert peer.node is not None
        nodes.append({
            "node_id": peer.node.node_id,
            "address": peer.address,
            "resources": peer.node.resources,
            "available": core.node_available(peer.node.node_id) or {},
            "running_tasks": running.get(peer.node.node_id, 0),
            "actors": len(peer.actors),
            **{k: v for k, v in peer.stats.items() if k != "worker_rows"},  # list_workers's
        })
    state = core.debug_state()
    return {
        "nodes": nodes,
        "drivers": sum(1 for p in head.peers if p.role == "driver"),
        "queued_tasks": state.get("queued", 0),
        "tasks": state.get("tasks", 0),
        "actors": len(state.get("actors", ())),
        "tasks_by_state": _count_states(tasks),
        "actors_by_state": _count_states(head.client.state_rows("actors")),
        "demand": head.client.state_rows("demand"),
        "spilled_bytes": sum(row["object_size"] or 0 for row in head.client.state_rows("objects")
                             if row["spilled"]),
    }


def _count_states(rows: list[dict[str, Any]]) -> dict[str, int]:
    """How many of the state API's ``rows`` are in each state (ended tasks too)."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    return counts
