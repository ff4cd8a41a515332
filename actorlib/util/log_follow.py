"""``get_log(..., follow=True)``: a worker's log as it grows, line by line.

Built on the one question every runtime answers about logs, ``log:PID:BYTES`` (the last
BYTES of a worker's log file, from its first whole line, with the file's size), so it
follows a local driver's workers and a cluster node's alike. Each look asks for what was
added since the last line handed out; a line still being written is held back until its
newline arrives. The iteration ends once the worker has exited and its last lines are
read, so following a finished actor never hangs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

#: How often the file is looked at when nothing new came (Ray's ``interval`` default).
POLL_S = 0.5
#: Extra bytes asked for beyond what is known to be new, so that lines added between
#: looks usually arrive with one question, not two.
SLACK = 64 * 1024

Fetch = Callable[[str], list[dict[str, Any]]]


def _read_from(fetch: Fetch, pid: int, offset: int, known: int, most: int
               ) -> tuple[bytes, int, int] | None:
    """The log's bytes from ``offset`` (a line's start) to its end, where they start in
    the file, and its size; None if the file is shorter than ``offset`` (it was rotated:
    start again from 0). More than ``most`` new bytes: the last ``most`` of them, from a
    whole line (the rest is skipped, as by a ``tail -f`` that fell behind)."""
    want = min(max(known - offset, 0) + SLACK + 1, most)
    while True:
        rows = fetch(f"log:{pid}:{want}")
        total = int(rows[0]["size"]) if rows else offset
        if total < offset:
            return None
        data = rows[0]["text"].encode("utf-8") if rows else b""
        begin = total - len(data)
        if begin <= offset or want >= most:
            # The answer starts at or before the line at ``offset``: cut what came before.
            start = max(begin, offset)
            return data[start - begin:], start, total
        want = min(total - offset + 1, most)  # it grew past the slack: ask again


def follow(fetch: Fetch, pid: int, tail: int, most: int,
           alive: Callable[[], bool], poll_s: float = POLL_S) -> Iterator[str]:
    """Yield the last ``tail`` lines (``-1``: all of the first read) of worker ``pid``'s
    log, then each line added to it, without its newline, until the worker has exited
    (``alive()`` False) and everything it wrote is yielded."""
    offset, known, first, ending = 0, most, True, False
    while True:
        got = _read_from(fetch, pid, offset, known, most)
        if got is None:  # rotated: the new file from its start
            offset, known = 0, 0
            continue
        data, start, known = got
        # Whole lines only: a partial one waits for its newline, unless the worker is gone.
        end = len(data) if ending else data.rfind(b"\n") + 1
        lines = data[:end].decode("utf-8", "replace").splitlines()
        if first:
            first = False
            lines = lines if tail == -1 else lines[-tail:]
        offset = start + end
        yield from lines
        if ending:
            return
        if end == 0:
            # Nothing new: the worker is gone (one last look for what it wrote just
            # before it exited), or wait for more.
            if not alive():
                ending = True
                continue
            time.sleep(poll_s)
