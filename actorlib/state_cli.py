"""``actorlib list``, ``summary`` and ``get``: the state API from another terminal.

The rows come from a cluster's head (a ``StateQuery`` on a CLI connection, as ``actorlib
status`` asks for its ``Status``) or from a local driver's state socket
(:mod:`actorlib.backends.state_socket`); filtering, limits and summaries are
:mod:`actorlib.util.state`'s own, so the command line and the Python API agree.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from actorlib.backends import state_socket
from actorlib.backends.cluster import sessions
from actorlib.backends.transport import tokens
from actorlib.backends.transport.messages import StateQuery, StateRows
from actorlib.util import state

FORMATS = ("table", "json")
LIST_KINDS = state.KINDS
SUMMARY_KINDS = ("tasks", "actors", "objects")
GET_KINDS = ("task", "actor")
COMMANDS = ("list", "summary", "get")
DEFAULT_TIMEOUT_S = state_socket.TIMEOUT_S


def add_source_arguments(parser: argparse.ArgumentParser, pid_flag: str = "--pid") -> None:
    """Where a command reads its rows: a cluster (``--address``, ``--token-file``) or a
    local driver (``pid_flag``); shared by every command that looks at a running job."""
    parser.add_argument("--address", help="HOST:PORT of a cluster's head, or 'auto' "
                        "(default: the local session)")
    parser.add_argument("--token-file", help="the cluster token (default: "
                        "$ACTORLIB_CLUSTER_TOKEN or the local session's)")
    parser.add_argument(pid_flag, type=int, metavar="PID", help="a local driver (a script "
                        "that called init() without a cluster) by its process id; default: "
                        "the local cluster if there is one, else the newest local driver")
    add_timeout_argument(parser)


def add_timeout_argument(parser: argparse.ArgumentParser) -> None:
    """``--timeout``: how long to wait for each answer before saying the source is stuck."""
    parser.add_argument("--timeout", type=positive_seconds, default=DEFAULT_TIMEOUT_S,
                        metavar="SECONDS", help="give up on an answer after this long "
                        f"(default {DEFAULT_TIMEOUT_S:g})")


def positive_seconds(text: str) -> float:
    """A ``--timeout`` value: a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def add_arguments(sub: Any) -> None:
    def common(parser: argparse.ArgumentParser) -> None:
        add_source_arguments(parser)
        parser.add_argument("--format", default="table", choices=FORMATS,
                            help="aligned columns (default) or JSON")

    listing = sub.add_parser("list", help="list tasks, actors, objects, nodes, workers, "
                             "placement groups, jobs or metrics (state API)")
    listing.add_argument("kind", type=list_kind, choices=LIST_KINDS,
                         help="what to list (Ray's spelling placement-groups works too)")
    listing.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                         help="keep rows whose KEY equals VALUE (KEY!=VALUE: differs); "
                         "repeatable")
    listing.add_argument("--limit", type=int, default=state.DEFAULT_LIMIT,
                         help=f"at most this many rows (default {state.DEFAULT_LIMIT})")
    listing.add_argument("--detail", action="store_true", help="every field of each row")
    common(listing)
    summary = sub.add_parser("summary", help="tasks, actors or objects counted by state")
    summary.add_argument("kind", choices=SUMMARY_KINDS)
    common(summary)
    get = sub.add_parser("get", help="one task or actor by its hex id")
    get.add_argument("kind", choices=GET_KINDS)
    get.add_argument("id", help="the task's or actor's hex id")
    common(get)


def list_kind(text: str) -> str:
    """A kind as Ray's CLI spells it (``placement-groups``) or as the state API does."""
    return text.replace("-", "_")


def parse_filter(text: str) -> tuple[str, str, str]:
    """``key=value`` or ``key!=value`` as a state API filter."""
    for op in ("!=", "="):
        key, sep, value = text.partition(op)
        if sep and key.strip():
            return key.strip(), op, value.strip()
    raise ValueError(f"--filter: expected KEY=VALUE or KEY!=VALUE, got {text!r}")


def head_fetcher(
    address: str | None, token_file: str | None, timeout: float = 10.0,
) -> state.Fetch:
    """Rows from the head at ``address``, for :mod:`actorlib.util.state`'s ``_fetch``."""
    from actorlib.cluster_cli import ask_head

    def fetch(kind: str) -> list[dict[str, Any]]:
        _, reply = ask_head(address, token_file, StateQuery(1, kind), StateRows, timeout)
        if reply.error is not None:
            raise ValueError(reply.error)
        rows: list[dict[str, Any]] = reply.rows
        return rows

    return fetch


def local_fetcher(pid: int | None, timeout: float = state_socket.TIMEOUT_S) -> state.Fetch:
    """Rows from the local driver ``pid`` (None: the newest)."""
    path = state_socket.driver_socket(pid)

    def fetch(kind: str) -> list[dict[str, Any]]:
        return state_socket.query(path, kind, timeout)

    return fetch


def remote_fetcher(
    address: str | None, pid: int | None = None, token_file: str | None = None,
    timeout: float = 10.0,
) -> state.Fetch:
    """Where rows come from outside this process: the local driver ``pid``, the head at
    ``address``, else this machine's cluster if it has one, else its newest local driver."""
    if pid is not None:
        if address:
            raise ValueError("--pid (a local driver) and --address (a cluster) exclude "
                             "each other")
        return local_fetcher(pid, timeout)
    if address or os.environ.get(sessions.ADDRESS_ENV) or sessions.live_session():
        return head_fetcher(address, token_file, timeout)
    return local_fetcher(None, timeout)


def fetcher(args: argparse.Namespace) -> state.Fetch:
    """The command line's source of rows (see :func:`remote_fetcher`)."""
    fetch = remote_fetcher(args.address, args.pid, args.token_file, args.timeout)
    note_choice(args.pid, args.address)
    return fetch


def note_choice(pid: int | None, address: str | None, flag: str = "--pid") -> None:
    """With several local drivers running and none named, say on stderr which one the
    command asks (the newest that listens), and how to ask another."""
    if pid is not None or address or os.environ.get(sessions.ADDRESS_ENV) \
            or sessions.live_session():
        return
    drivers = state_socket.local_drivers()
    if len(drivers) < 2:
        return
    try:
        path = state_socket.driver_socket(None)
    except ConnectionError:
        return
    chosen = next(p for p, candidate in drivers if candidate == path)
    others = ", ".join(str(p) for p, _ in drivers if p != chosen)
    print(f"actorlib: {len(drivers)} local drivers are running; asking pid {chosen}, the "
          f"newest (others: {others}; pick one with {flag} PID)", file=sys.stderr)


def local_status(pid: int | None = None, timeout: float = state_socket.TIMEOUT_S,
                 ) -> dict[str, Any]:
    """``actorlib status`` of a local driver (``pid``; None: the newest), in the shape a
    head answers, built from its state rows."""
    path = state_socket.driver_socket(pid)
    if pid is None:
        pid = state_socket.pid_of(path)
        note_choice(None, None)  # the status's first line names the driver too

    def rows(kind: str) -> list[dict[str, Any]]:
        return state_socket.query(path, kind, timeout)

    tasks, actors, objects = rows("tasks"), rows("actors"), rows("objects")
    workers = [w for w in rows("workers") if w["is_alive"]]
    nodes = []
    for node in rows("nodes"):
        here = node["node_id"]
        nodes.append({
            "node_id": here, "address": "this machine",
            "resources": node["resources_total"], "available": node["resources_available"],
            "running_tasks": sum(1 for t in tasks if t["node_id"] == here
                                 and t["state"] == "RUNNING" and t["type"] == "NORMAL_TASK"),
            "actors": sum(1 for a in actors if a["node_id"] == here and a["state"] == "ALIVE"),
            "workers": sum(1 for w in workers if w["node_id"] == here),
            "idle_workers": sum(1 for w in workers
                                if w["node_id"] == here and not w["current_task_ids"]),
            "object_store_bytes": sum(o["object_size"] or 0 for o in objects
                                      if here in o["where"] and not o["spilled"]),
        })

    def by_state(items: list[dict[str, Any]]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for item in items:
            counts[item["state"]] = counts.get(item["state"], 0) + 1
        return counts

    demand = rows("demand")
    return {
        "driver_pid": pid, "nodes": nodes, "drivers": 1,
        "tasks": sum(1 for t in tasks if t["state"] not in ("FINISHED", "FAILED")),
        "queued_tasks": sum(d["count"] for d in demand),
        "actors": sum(1 for a in actors if a["state"] != "DEAD"),
        "tasks_by_state": by_state(tasks), "actors_by_state": by_state(actors),
        "demand": demand,
        "spilled_bytes": sum(o["object_size"] or 0 for o in objects if o["spilled"]),
    }


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, dict):
        return ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in sorted(value.items()))
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    return str(value)


def table(rows: list[dict[str, Any]]) -> str:
    """Rows as aligned columns under an upper-case header."""
    if not rows:
        return "(none)"
    columns = list(rows[0])
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def _summary_rows(kind: str, summary: dict[str, Any]) -> list[dict[str, Any]]:
    cluster = summary["cluster"]
    if kind == "objects":
        return [cluster]
    return [
        {**{k: v for k, v in group.items() if k != "state_counts"},
         "total": sum(group["state_counts"].values()),
         "state_counts": group["state_counts"]}
        for group in cluster["summary"].values()
    ]


def _output(args: argparse.Namespace, value: Any, rows: list[dict[str, Any]]) -> None:
    if args.format == "json":
        print(json.dumps(value, indent=2, default=str))
    else:
        print(table(rows))


def run(args: argparse.Namespace) -> int:
    """Run ``list``/``summary``/``get``; failures become one line on stderr."""
    try:
        fetch = fetcher(args)
        if args.command == "list":
            filters = [parse_filter(f) for f in args.filter]
            rows: list[dict[str, Any]] = list(
                state.select(args.kind, fetch(args.kind), filters, args.limit, args.detail))
            _output(args, rows, rows)
        elif args.command == "summary":
            summarize = {"tasks": state.summarize_tasks, "actors": state.summarize_actors,
                         "objects": state.summarize_objects}[args.kind]
            summary = summarize(_fetch=fetch)
            _output(args, summary, _summary_rows(args.kind, summary))
        else:
            getter = state.get_task if args.kind == "task" else state.get_actor
            row = getter(args.id, _fetch=fetch)
            if row is None:
                print(f"actorlib get: no {args.kind} with id {args.id}", file=sys.stderr)
                return 1
            _output(args, row, [{"field": k, "value": _cell(v)} for k, v in row.items()])
    except ValueError as exc:
        print(f"actorlib {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (ConnectionError, OSError, tokens.AuthError) as exc:
        print(f"actorlib {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0
