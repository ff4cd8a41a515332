"""Tasks queued behind another on a worker: each starts at most once, and none is lost.

The driver offers a pipelined task in the worker's claim table and may take it back
without the worker (``backends/process/claims.py``); the worker's runner queues it behind
the running task and claims it before starting it. Here: the table between two real
processes under load, with take-backs racing the worker's claims; the runner given a
task again after the core took a queued copy back; and the whole path end to end, with
cancels and withdrawals of queued tasks.
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
import random
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from testkit import T

import actorlib
from actorlib.backends.base import HeapStore
from actorlib.backends.process.claims import ClaimTable
from actorlib.backends.runner.local_runner import LocalRunner
from actorlib.core.records import Outcome, TaskRun
from actorlib.core.specs import NO_ARGS, CodeRef, TaskSpec

# The worker's end of the stress: ids arrive on stdin in the order the driver offered
# them (as RunTask messages do); several threads claim them (as task threads do), and
# the ids each claimed go back on stdout at the end.
WORKER_SIDE = textwrap.dedent("""
    import sys, threading, queue
    from actorlib.backends.process.claims import ClaimTable

    table = ClaimTable(int(sys.argv[1]))
    jobs = queue.SimpleQueue()
    won = []

    def claim():
        while (task_id := jobs.get()) is not None:
            if table.take(task_id):
                won.append(task_id)

    threads = [threading.Thread(target=claim) for _ in range(3)]
    for thread in threads:
        thread.start()
    for line in sys.stdin:
        jobs.put(int(line))
    for thread in threads:
        jobs.put(None)
    for thread in threads:
        thread.join()
    print(" ".join(map(str, won)))
""")


def _busy(stop: threading.Event) -> None:
    """Load: a thread that keeps the driver's GIL busy (as the core loop does)."""
    while not stop.is_set():
        sum(range(2000))


@pytest.mark.slow
def test_every_offered_task_is_taken_exactly_once_by_one_side():
    """Under load, the driver offers tasks (ids of many prefixes, as nested submitters
    mint them) while the worker claims them from several threads, and takes some back
    (a recall, a cancel, a withdrawal) at once or after a while, without waiting for the
    lock: each id is won by exactly one side."""
    table = ClaimTable.create()
    rng = random.Random(7)
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER_SIDE, str(table.fd)], pass_fds=[table.fd],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    stop = threading.Event()
    load = threading.Thread(target=_busy, args=(stop,), daemon=True)
    load.start()
    taken_back: list[int] = []
    offered: list[int] = []
    pending: collections.deque[int] = collections.deque()
    try:
        assert proc.stdin is not None
        for n in range(20_000):
            task_id = (rng.randrange(1, 300) << 40) | (n + 1)
            while not table.offer(task_id):  # every slot taken: the worker is behind
                proc.stdin.flush()
                if pending:  # take the oldest back, as a recall would
                    victim = pending.popleft()
                    if table.take(victim, wait=False):
                        taken_back.append(victim)
                else:
                    time.sleep(0.001)
            offered.append(task_id)
            proc.stdin.write(f"{task_id}\n")
            if n % 16 == 0:
                proc.stdin.flush()
            pending.append(task_id)
            if rng.random() < 0.3:  # a take-back racing the worker's claim
                victim = pending.popleft() if rng.random() < 0.5 else pending.pop()
                if table.take(victim, wait=False):
                    taken_back.append(victim)
            while len(pending) > 200:
                pending.popleft()
        out, _ = proc.communicate(timeout=120)
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        table.close()
    won = [int(word) for word in out.split()]
    assert not set(won) & set(taken_back), "a task taken back also started"
    assert len(won) == len(set(won)), "a task started twice"
    assert sorted(won + taken_back) == sorted(offered), "a task neither started nor came back"
