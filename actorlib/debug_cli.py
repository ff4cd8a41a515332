"""``actorlib stack``, ``logs`` and ``timeline``: why a program hangs, what its workers
said, and where time went.

``stack`` prints the Python stack of every thread of the workers asked for: all live
workers by default, or the one with ``--pid``, the one hosting ``--actor``, the one
running ``--task``. The workers come from ``list_workers`` (the same sources as ``actorlib
list``); each dumps its own stacks on a signal (:mod:`actorlib.backends.stacks`), so
this works on a worker stuck in a C call. The runtime that listed them asks for each
dump where the worker runs: a local driver on this machine, a cluster's head through the
worker's node, so workers on other machines answer too.

``logs`` prints a worker's log (what its tasks and actors printed and logged), the one
of ``--pid``, ``--actor`` or ``--task`` or a file ``actorlib logs`` lists, through
:func:`actorlib.util.state.get_log` (``--follow``: as it grows).

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

COMMANDS = ("stack", "logs", "timeline")
#: ``--tail``'s default, ``get_log``'s (and Ray's ``ray logs``).
DEFAULT_TAIL = 1000


def add_arguments(sub: Any) -> None:

    stack = sub.add_parser("stack", help="the Python stacks of workers (debug a hang)")
    which = stack.add_mutually_exclusive_group()
    which.add_argument("--pid", type=int, help="only this worker process")
    which.add_argument("--actor", metavar="ID", help="only the worker hosting this actor")
    which.add_argument("--task", metavar="ID", help="only the worker running this task "
                       "or actor call")
    stack.add_argument(
        "--without-gil", action="store_true",
        help="with --pid alone: read the stacks from the signal handler, without the GIL, "
        "for a process whose main thread does not answer (stuck in a C call holding the "
        "GIL); this can crash a process whose threads run Python meanwhile")
    state_cli.add_source_arguments(stack, "--driver")
    logs = sub.add_parser(
        "logs", help="a worker's log: what its tasks and actors printed (--follow)",
        description="Without a worker named, list the log files. A local driver keeps "
        "its workers' logs when started with init(log_dir=...); a cluster's nodes always "
        "do.",
    )
    logs.add_argument("filename", nargs="?", help="a log file `actorlib logs` lists "
                      "(worker-PID.log)")
    which = logs.add_mutually_exclusive_group()
    which.add_argument("--pid", type=int, help="the log of this worker process")
    which.add_argument("--actor", metavar="ID", help="the log of the worker hosting this "
                       "actor")
    which.add_argument("--task", metavar="ID", help="the log of the worker that runs or "
                       "ran this task or actor call")
    logs.add_argument("-f", "--follow", action="store_true", help="go on printing lines "
                      "as the worker writes them, until it exits (or Ctrl-C)")
    logs.add_argument("-n", "--tail", type=tail_lines, default=DEFAULT_TAIL, metavar="N",
                      help=f"the last N lines (default {DEFAULT_TAIL}; -1: all, up to "
                      "1 MiB)")
    logs.add_argument("--node-id", help="only a worker (or only the files) of this node")
    state_cli.add_source_arguments(logs, "--driver")
    timeline = sub.add_parser("timeline", help="tasks and actor calls as a Chrome trace "
                              "(open in ui.perfetto.dev)")
    timeline.add_argument("-o", "--output", default="timeline.json",
                          help="the file to write (default: timeline.json)")
    state_cli.add_source_arguments(timeline, "--driver")


def tail_lines(text: str) -> int:
    """A ``--tail`` value: a positive number of lines, or -1 for all."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value == 0 or value < -1:
        raise argparse.ArgumentTypeError(f"expected a positive number of lines or -1, "
                                         f"got {text!r}")
    return value


def logs(args: argparse.Namespace) -> int:
    """Print the log ``args`` names (or list the log files), line by line as it comes."""
    fetch = _fetch(args)
    named = [args.filename, args.pid, args.actor, args.task]
    if sum(value is not None for value in named) > 1:
        raise ValueError("name one log: a file name, --pid, --actor or --task")
    if all(value is None for value in named):
        files = state.list_logs(node_id=args.node_id, _fetch=fetch).get(state.LOG_CATEGORY)
        if not files:
            print("actorlib logs: no worker log files (a local driver keeps them when "
                  "started with init(log_dir=...); a cluster's nodes always do)",
                  file=sys.stderr)
            return 1
        print("\n".join(files))
        return 0
    lines = state.get_log(
        node_id=args.node_id, filename=args.filename, pid=args.pid,
        actor_id=args.actor.lower() if args.actor else None,
        task_id=args.task.lower() if args.task else None,
        follow=args.follow, tail=args.tail, _fetch=fetch,
    )
    for line in lines:
        print(line, flush=args.follow)
    return 0


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
    chosen: list[dict[str, Any]], fetch: state.Fetch | None = None, without_gil: bool = False,
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
                text = stacks.dump(worker["pid"], without_gil=without_gil)
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
            direct = args.pid is not None and args.address is None and args.driver is None
            if args.without_gil and not direct:
                raise ValueError("--without-gil needs --pid alone (the process is asked "
                                 "directly, on this machine)")
            if direct:
                # A pid alone needs no runtime: ask that process directly.
                chosen = [{"pid": args.pid, "worker_type": "process", "is_alive": True}]
                fetch = None
            else:
                fetch = _fetch(args)
                workers = state.rows("workers", fetch)
                chosen = targets(workers, args.pid, args.actor, args.task)
            text, failed = stacks_of(chosen, fetch, args.without_gil)
            print(text, end="")
            return 1 if failed == len(chosen) and chosen else 0
        if args.command == "logs":
            return logs(args)
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
