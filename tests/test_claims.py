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
import os
import random
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest
from testkit import T

import actorlib
from actorlib import exceptions as exc
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


# -- the runner given a task again ---------------------------------------------------------

RELEASE = {name: threading.Event() for name in ("first", "second")}
RAN: list[str] = []


def _hold(name: str) -> str:
    RELEASE[name].wait(T)
    return name


def _run_once(name: str) -> str:
    RAN.append(name)
    return name


class _Reports:
    """What a runner reports to the core: ends and hand-backs, in order."""

    def __init__(self) -> None:
        self.finished: list[int] = []
        self.recalled: list[int] = []
        self.changed = threading.Condition()

    def task_finished(self, outcome: Outcome) -> None:
        with self.changed:
            self.finished.append(outcome.id)
            self.changed.notify_all()

    def task_recalled(self, task_id: int, attempt: int) -> None:
        with self.changed:
            self.recalled.append(task_id)
            self.changed.notify_all()

    def wait_finished(self, task_id: int) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: task_id in self.finished, T)


def _run(runner: LocalRunner, task_id: int, fn: Any, follows: int = 0) -> TaskRun:
    runner.code.loaded[task_id] = fn  # as if unpickled here: the very function, no copy
    code = CodeRef(task_id, fn.func.__name__, b"")
    spec = TaskSpec(task_id=task_id, function=code, args=NO_ARGS, return_ids=(task_id + 1,),
                    num_returns=1, resources={"CPU": 1.0}, name=fn.func.__name__)
    return TaskRun(spec, "node", [], follows=follows)


def test_a_task_sent_again_runs_only_as_its_new_copy():
    """The core took back a task queued behind a task that waits (in ``get``, say) and
    sent it again, behind another: the copy left behind the first must not start (nor
    take the new copy's claim) when the first ends, and a recall of the new copy is
    answered. Else the core waits for that recall for ever."""
    import functools

    table = ClaimTable.create()
    reports = _Reports()
    runner = LocalRunner(reports, HeapStore(), table.take)  # type: ignore[arg-type]
    first, second, queued = 1 << 41, 2 << 41, 3 << 41
    RAN.clear()
    for event in RELEASE.values():
        event.clear()
    try:
        runner.run_task(_run(runner, first, functools.partial(_hold, "first")))
        assert table.offer(queued)
        again = functools.partial(_run_once, "queued")
        runner.run_task(_run(runner, queued, again, follows=first))
        assert table.take(queued, wait=False) is True  # the core took it back
        runner.run_task(_run(runner, second, functools.partial(_hold, "second")))
        assert table.offer(queued)  # and sent it again, behind another task
        runner.run_task(_run(runner, queued, again, follows=second))
        RELEASE["first"].set()
        reports.wait_finished(first)  # its thread took its next task before this report
        runner.recall(queued)
        assert reports.recalled == [queued], "the new copy is handed back"
        RELEASE["second"].set()
        reports.wait_finished(second)
        assert RAN == [] and queued not in reports.finished
    finally:
        for event in RELEASE.values():
            event.set()
        runner.stop()
        table.close()


# -- end to end ----------------------------------------------------------------------------


def _mark(path: str, i: int, delay: float) -> int:
    """Leave a mark per start in ``path`` (O_APPEND: one whole line per write)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{i}\n".encode())
    finally:
        os.close(fd)
    if delay:
        time.sleep(delay)
    return i


mark = actorlib.remote(_mark)


@actorlib.remote
def marks_nested(path: str, first: int, n: int) -> list[int]:
    """Tasks of its own, waited for: it lends its CPU, and what waits behind it comes back."""
    return actorlib.get([mark.remote(path, first + i, 0.0) for i in range(n)], timeout=T)


@pytest.mark.slow
def test_under_load_each_task_starts_once_or_never(rt, tmp_path):
    """Executor calls (some withdrawn while queued), tasks (some cancelled) and parents
    that wait for tasks of their own, all at once: more work than CPUs, so tasks queue
    behind running ones and come back (withdrawals, cancels, parents blocking). A
    withdrawn call never starts, a cancelled task starts at most once, everything else
    starts exactly once and returns its value: nothing is lost."""
    rng = random.Random(13)
    path = str(tmp_path / "marks")
    delays = [0.0, 0.0, 0.0, 0.001, 0.005]
    with actorlib.Executor(3) as pool:
        futures = [pool.submit(_mark, path, i, rng.choice(delays)) for i in range(150)]
        refs = [mark.remote(path, 1000 + i, rng.choice(delays)) for i in range(100)]
        parents = [marks_nested.remote(path, 2000 + 100 * k, 12) for k in range(6)]
        withdrawn = {i for i, future in enumerate(futures)
                     if rng.random() < 0.3 and future.cancel()}
        cancelled = {i for i, ref in enumerate(refs) if rng.random() < 0.3}
        for i in sorted(cancelled):
            actorlib.cancel(refs[i])
        for i, future in enumerate(futures):
            if i not in withdrawn:
                assert future.result(timeout=T) == i
    returned = set()
    for i, ref in enumerate(refs):
        try:
            assert actorlib.get(ref, timeout=T) == 1000 + i
            returned.add(1000 + i)
        except exc.TaskCancelledError:
            assert i in cancelled, f"task {i} was not cancelled"
    nested = actorlib.get(parents, timeout=T)
    assert nested == [[2000 + 100 * k + i for i in range(12)] for k in range(6)]
    with open(path) as lines:
        starts = collections.Counter(int(line) for line in lines)
    assert all(n == 1 for n in starts.values()), {i: n for i, n in starts.items() if n > 1}
    expected = ({i for i in range(150) if i not in withdrawn} | returned
                | {2000 + 100 * k + i for k in range(6) for i in range(12)})
    assert expected <= set(starts), sorted(expected - set(starts))
    assert not set(starts) & withdrawn, "a withdrawn call started"
