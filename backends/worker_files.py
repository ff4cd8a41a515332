"""Answers about this machine's worker processes: their stacks and their log files.

What ``actorlib stack`` and the dashboard's log page ask (``actorlib.core.state``'s worker
queries), answered where the workers run: by a local driver's backend, or by a cluster's
node when its head asks (so a worker on another machine can be asked through the head).

- ``stack:PID``: one row, ``{"pid", "node_id", "text"}``, the threads' stacks of worker
  PID (:func:`actorlib.backends.stacks.dump`);
- ``logs``: a row per worker log file, ``{"node_id", "pid", "file", "size", "mtime_ms"}``;
- ``log:PID:BYTES``: one row, ``{"pid", "node_id", "file", "size", "text", "truncated"}``:
  the last BYTES of that worker's log, from the start of a line.

Only files named ``worker-<pid>.log`` in the backend's own log directory are read, and a
stack dump goes only to a process that registered for it (an actorlib worker of this
user): a pid names a worker, never a path.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import threading
from typing import Any

from actorlib.core.state import WorkerQuery

_LOG_NAME = re.compile(r"^worker-(\d+)\.log$")


def answer(query: WorkerQuery, node_id: str | None, log_dir: str | None) -> list[dict[str, Any]]:
    """The rows of ``query`` on this machine (blocks: a dump waits for the process).

    ``LookupError`` when the worker or its log is not here."""
    what, pid, size = query
    if what == "stack":
        from actorlib.backends import stacks

        return [{"pid": pid, "node_id": node_id, "text": stacks.dump(pid)}]
    if what == "logs":
        return log_files(node_id, log_dir)
    return [tail(pid, size, node_id, log_dir)]


def answer_in_thread(
    query: WorkerQuery, node_id: str | None, log_dir: str | None,
) -> concurrent.futures.Future[list[dict[str, Any]]]:
    """:func:`answer` on a thread of its own, so the caller's loop never waits on it."""
    future: concurrent.futures.Future[list[dict[str, Any]]] = concurrent.futures.Future()

    def run() -> None:
        try:
            future.set_result(answer(query, node_id, log_dir))
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=run, name="actorlib-worker-query", daemon=True).start()
    return future


def log_files(node_id: str | None, log_dir: str | None) -> list[dict[str, Any]]:
    """The worker log files in ``log_dir`` (none without one), newest first."""
    rows: list[dict[str, Any]] = []
    if log_dir is None:
        return rows
    try:
        names = os.listdir(log_dir)
    except OSError:
        return rows
    for name in names:
        match = _LOG_NAME.match(name)
        if match is None:
            continue
        try:
            info = os.stat(os.path.join(log_dir, name))
        except OSError:
            continue
        rows.append({"node_id": node_id, "pid": int(match[1]), "file": name,
                     "size": info.st_size, "mtime_ms": round(info.st_mtime * 1000, 3)})
    rows.sort(key=lambda row: float(row["mtime_ms"]), reverse=True)
    return rows


def tail(pid: int, size: int, node_id: str | None, log_dir: str | None) -> dict[str, Any]:
    """The last ``size`` bytes of worker ``pid``'s log, from the first whole line."""
    name = f"worker-{pid}.log"
    if log_dir is None:
        raise LookupError("no worker log files here: init(log_dir=...) keeps them "
                          "(a cluster's nodes always do)")
    path = os.path.join(log_dir, name)
    try:
        with open(path, "rb") as f:
            total = f.seek(0, os.SEEK_END)
            start = max(total - size, 0)
            f.seek(start)
            data = f.read(total - start)
    except FileNotFoundError:
        raise LookupError(f"no log file of worker pid {pid} here") from None
    if start > 0:  # cut in a line: start at the next whole one
        newline = data.find(b"\n")
        data = data[newline + 1:] if newline >= 0 else b""
    return {"pid": pid, "node_id": node_id, "file": name, "size": total,
            "text": data.decode("utf-8", "replace"), "truncated": start > 0}
