"""``actorlib stack`` and ``actorlib timeline``: why a program hangs, and where time went.

``stack`` prints the Python stack of every thread of the workers asked for: all live
workers by default, or the one with ``--pid``, the one hosting ``--actor``, the one
running ``--task``. The workers come from ``list_workers`` (the same sources as ``actorlib
list``); each dumps its own stacks on a signal (:mod:`actorlib.backends.stacks`), so
this works on a worker stuck in a C call. The runtime that listed them asks for each
dump where the worker runs: a local driver on this machine, a cluster's head through the
worker's node, so workers on other machines answer too.

``timeline`` writes :func:`actorlib.timeline`'s Chrome trace of the same runtime.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from actorlib import state_cli, trace
from actorlib.backends import stacks
from actorlib.backends.transport import auth as cluster_auth
from actorlib.util import state

COMMANDS = ("stack", "timeline")


def add_arguments(sub: Any) -> None:

    stack = sub.add_parser("stack", help="the Python stacks of workers (debug a hang)")
    which = stack.add_mutually_exclusive_group()
    which.add_argument("--pid", type=int, help="only this worker process")
    which.add_argument("--actor", metavar="ID", help="only the worker hosting this actor")
    which.add_argument("--task", metavar="ID", help="only the worker running this task "
                       "or actor call")
    state_cli.add_source_arguments(stack, "--driver")
    timeline = sub.add_parser("timeline", help="tasks and actor calls as a Chrome trace "
                              "(open in ui.perfetto.dev)")
    timeline.add_argument("-o", "--output", default="timeline.json",
                          help="the file to write (default: timeline.json)")
    state_cli.add_source_arguments(timeline, "--driver")


def targets(
    workers: list[dict[str, Any]], pid: int | None = None, actor: str | None = None,
    task: str | None = None,
) -> list[dict[str, Any]]:
    """The live worker rows (``list_workers(detail=True)``) that ``pid``, ``actor`` or
    ``task`` name (all of them when none is given); ``LookupError`` if none matches."""
    live = [w for w in workers if w["is_alive"]]
    if pid is not None:
        chosen = [w for w in live if w["pid"] == pid]
        what = f"pid {pid}"
    elif actor is not None:
        actor = actor.lower()
        # A worker hosting the actor; else (thread and sim backends) the process that
        # runs everything, when the actor runs there.
        chosen = [w for w in live if w["actor_id"] == actor]
        what = f"actor {actor}"
    elif task is not None:
        task = task.lower()
        chosen = [w for w in live if task in w["current_task_ids"]]
        what = f"a running task {task}"
    else:
        return live
    if not chosen and actor is not None:
        chosen = [w for w in live if w["worker_type"] == "DRIVER"]
    if not chosen:
        raise LookupError(f"no live worker with {what}; see `actorlib list workers`")
    return chosen


def header(worker: dict[str, Any]) -> str:
    parts = [f"pid {worker['pid']}", worker["worker_type"].lower()]
    if worker.get("node_id"):
        parts.append(f"node {worker['node_id']}")
    if worker.get("actor_class"):
        parts.append(f"actor {worker['actor_class']} {worker['actor_id']}")
    if worker.get("current_task_names"):
        parts.append("running " + ", ".join(worker["current_task_names"]))
    return "== " + ", ".join(parts) + " =="


def stacks_of(
    chosen: list[dict[str, Any]], fetch: state.Fetch | None = None,
) -> tuple[str, int]:
    """Each chosen worker's header and stacks, asked of ``fetch``'s runtime (``stack:PID``)
    or, without one, of the process itself; and how many could not be asked."""
    out, failed = [], 0
    for worker in chosen:
        out.append(header(worker))
        try:
            if fetch is not None:
                text = fetch(f"stack:{worker['pid']}")[0]["text"]
            else:
                text = stacks.dump(worker["pid"])
            out.append(text.rstrip("\n"))
        except (ValueError, LookupError, TimeoutError, PermissionError) as exc:
            out.append(f"(no stacks: {exc})")
            failed += 1
        out.append("")
    return "\n".join(out), failed


def _fetch(args: argparse.Namespace) -> state.Fetch:
    fetch = state_cli.remote_fetcher(args.address, args.driver, args.token_file, args.timeout)
    state_cli.note_choice(args.driver, args.address, "--driver")
    return fetch


def run(args: argparse.Namespace) -> int:
    """Run ``stack``/``timeline``; failures become one line on stderr."""
    try:
        if args.command == "stack":
            if args.pid is not None and args.address is None and args.driver is None:
                # A pid alone needs no runtime: ask that process directly.
                chosen = [{"pid": args.pid, "worker_type": "process", "is_alive": True}]
                fetch = None
            else:
                fetch = _fetch(args)
                workers = state.rows("workers", fetch)
                chosen = targets(workers, args.pid, args.actor, args.task)
            text, failed = stacks_of(chosen, fetch)
            print(text, end="")
            return 1 if failed == len(chosen) and chosen else 0
        trace.timeline_of(_fetch(args), args.output)
        with open(args.output) as f:
            count = sum(1 for e in json.load(f) if e.get("cat") in ("task", "actor_task"))
        print(f"wrote {count} task spans to {args.output}; open it in https://ui.perfetto.dev")
    except (ValueError, LookupError) as exc:
        print(f"actorlib {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (ConnectionError, OSError, cluster_auth.AuthError) as exc:
        print(f"actorlib {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0
