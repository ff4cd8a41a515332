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
from collections.abc import Iterator
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


# 3,000 offers keep CI's run short; ACTORLIB_HYPOTHESIS_PROFILE=thorough offers 40,000.
OFFERS = 40_000 if os.environ.get("ACTORLIB_HYPOTHESIS_PROFILE") == "thorough" else 3_000


def _busy(stop: threading.Event) -> None:
    """Load: a thread that keeps the driver's GIL busy (as the core loop does)."""
    while not stop.is_set():
        sum(range(2000))


@pytest.mark.slow
def test_every_offered_task_is_taken_exactly_once_by_one_side() -> None:
    """Under load, the driver offers tasks (ids of many prefixes, as nested submitters
    mint them) while the worker claims them from several threads, and takes some back
    (a recall, a cancel, a withdrawal) at once or after a while, without waiting for the
    lock: each id is won by exactly one side. A slot the worker clears while the driver
    looks for a free one must not lose the id the driver writes there next (it did when
    the slots were written byte by byte)."""
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
        for n in range(OFFERS):
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


# The worker's end of a race on one slot: it claims each id as it arrives, from one
# thread, and reports the ids it did not find.
CLAIM_AT_ONCE = textwrap.dedent("""
    import sys
    from actorlib.backends.process.claims import ClaimTable

    table = ClaimTable(int(sys.argv[1]))
    missed = [line for line in sys.stdin if not table.take(int(line))]
    print(len(missed))
""")
# Enough offers for the race below to show within a run (about 10 a run of 300,000
# lost when the slots were written byte by byte).
TIGHT_OFFERS = 1_000_000 if os.environ.get("ACTORLIB_HYPOTHESIS_PROFILE") == "thorough" else 300_000


@pytest.mark.slow
def test_a_slot_cleared_as_the_driver_offers_it_keeps_the_new_id() -> None:
    """The driver picks a free slot without the lock, while the worker clears the slot of
    a task it claims: a slot that reads zero must stay zero until the driver writes it.
    Written as bytes (``struct.pack_into`` zeroes the slot, then writes its bytes), the
    driver could find it zero between the two and write a new id that the worker's
    second write then wiped: that task was neither started nor taken back, and the
    driver waited for it for ever. The worker claims each id as soon as it arrives,
    and the driver offers the next ones in a tight loop: every id must be found."""
    table = ClaimTable.create()
    proc = subprocess.Popen(
        [sys.executable, "-c", CLAIM_AT_ONCE, str(table.fd)], pass_fds=[table.fd],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdin is not None
        for task_id in range(1 << 40, (1 << 40) + TIGHT_OFFERS):
            if not table.offer(task_id):  # the worker is behind: let it catch up, and
                proc.stdin.flush()  # look for a free slot as the worker clears them
                spins = 0
                while not table.offer(task_id):
                    spins += 1
                    if spins % 100_000 == 0 and proc.poll() is not None:
                        pytest.fail(f"the worker side exited with {proc.returncode}")
            proc.stdin.write(f"{task_id}\n")
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        table.close()
    assert out.split() == ["0"], f"offered ids the worker never found: {out.strip()}"


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
        self.outcomes: list[Outcome] = []
        self.recalled: list[int] = []
        self.changed = threading.Condition()

    def task_finished(self, outcome: Outcome) -> None:
        with self.changed:
            self.finished.append(outcome.id)
            self.outcomes.append(outcome)
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


class _Spin:
    """A task that runs until released or interrupted (a cancel), noting each start."""

    __name__ = "spin"

    def __init__(self) -> None:
        self.starts = 0
        self.interrupted = 0
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self) -> str:
        self.starts += 1
        self.started.set()
        try:
            while not self.release.wait(0.005):  # Python between waits: a cancel lands
                pass
        except KeyboardInterrupt:
            self.interrupted += 1
            raise
        return "ran to its end"


class _HeldClaims:
    """A worker's claims (``ClaimTable.take``) that a task thread other than the test's
    makes only once ``go`` is set: the moment a thread claims is the test's to choose.
    With ``late_s``, a thread whose claim failed is slow to go on (it may be descheduled
    there): it sleeps that long before it forgets the copy it reached for."""

    def __init__(self, table: ClaimTable, late_s: float = 0.0) -> None:
        self.table = table
        self.go = threading.Event()
        self.late_s = late_s
        self.failed = threading.Event()

    def __call__(self, task_id: int) -> bool | None:
        if threading.current_thread() is threading.main_thread():
            return self.table.take(task_id)
        assert self.go.wait(T)
        taken = self.table.take(task_id)
        if not taken:
            self.failed.set()
            time.sleep(self.late_s)
        return taken


class _Worker:
    """A worker's runner over its claim table, the core played by the test: task ids
    ``first`` and ``second`` hold until released (``RELEASE``), ``queued`` spins."""

    first, second, queued = 1 << 41, 2 << 41, 3 << 41

    def __init__(self, late_s: float = 0.0) -> None:
        self.table = ClaimTable.create()
        self.claims = _HeldClaims(self.table, late_s)
        self.reports = _Reports()
        self.runner = LocalRunner(self.reports, HeapStore(), self.claims)  # type: ignore[arg-type]
        self.spin = _Spin()
        self.threads: list[threading.Thread] = []  # inline work's (``may_run_inline``)
        for event in RELEASE.values():
            event.clear()

    def run(self, task_id: int, follows: int = 0) -> TaskRun:
        """A ``RunTask`` for ``task_id``, as the driver sends it."""
        import functools

        if task_id == self.queued:
            fn: Any = functools.partial(self.spin)
        else:
            fn = functools.partial(_hold, "first" if task_id == self.first else "second")
        return _run(self.runner, task_id, fn, follows)

    def send(self, task_id: int, follows: int = 0) -> None:
        self.runner.run_task(self.run(task_id, follows))

    def cancel_reaches_the_one_run(self) -> None:
        """The core cancels ``queued``, started here through the claim the core offered
        for the copy it sent last: the driver finds no claim to take back and asks the
        worker, whose cancel must reach the copy that runs."""
        queued, reports = self.queued, self.reports
        assert self.spin.started.wait(T), "the copy left behind started"
        assert self.table.take(queued, wait=False) is False  # so the driver asks the worker
        self.runner.cancel(queued, force=False)
        reports.wait_finished(queued)  # before the task's end: it runs until released
        assert self.spin.interrupted == 1, "the cancel did not reach the task"
        assert reports.outcomes[reports.finished.index(queued)].error is not None

    # As a worker's connection for ``InlineTasks``: inline work runs on another thread
    # (as when reading has passed to a spare thread), the test's thread reads on.

    def may_run_inline(self) -> bool:
        return True

    def run_inline(self, work: Any) -> None:
        thread = threading.Thread(target=work, daemon=True)
        self.threads.append(thread)
        thread.start()

    def close(self) -> None:
        self.claims.go.set()
        self.spin.release.set()
        for event in RELEASE.values():
            event.set()
        self.runner.stop()
        self.runner.join(T)
        for thread in self.threads:
            thread.join(T)
        self.table.close()


@pytest.fixture
def worker() -> Iterator[_Worker]:
    worker = _Worker()
    try:
        yield worker
    finally:
        worker.close()


@pytest.mark.parametrize("left", ["behind its leader", "on a thread of its own"])
def test_a_cancel_reaches_a_copy_left_behind_that_started_through_the_claim_offered_again(
    worker: _Worker, left: str
) -> None:
    """The core took back a task queued on a worker and sent it again, offering its claim
    again; the copy left behind (behind its leader, or given a thread of its own as its
    leader had ended) reached for its claim before the new copy arrived, so it holds the
    new offer and runs. The new copy must then not take the task's entry from the thread
    that runs it, else a cancel finds nothing and is lost; nor run a second time: the
    core gets one outcome. (On a thread of its own, the copy is now claimed as it
    arrives, so the core cannot take it back at all: the cancel must reach it too.)"""
    first, second, queued, table = worker.first, worker.second, worker.queued, worker.table
    if left == "behind its leader":
        worker.claims.go.set()
        worker.send(first)
    assert table.offer(queued)
    worker.send(queued, follows=first)
    taken_back = table.take(queued, wait=False)
    if taken_back:  # the core took it back
        worker.send(second)
        assert table.offer(queued)  # and sends it again, behind another task
        RELEASE["first"].set()  # the task ahead ends first: its thread claims the copy
        worker.claims.go.set()
        assert worker.spin.started.wait(T)
        worker.send(queued, follows=second)  # the new copy
    else:  # claimed by the worker already: it started there, for the core
        assert left == "on a thread of its own"
    worker.cancel_reaches_the_one_run()
    if taken_back:
        RELEASE["second"].set()
        worker.reports.wait_finished(second)
    assert worker.spin.starts == 1, "the task ran twice"
    assert worker.reports.finished.count(queued) == 1
    assert not worker.reports.recalled


@pytest.mark.parametrize("arrives", ["behind a running task", "behind an ended task",
                                     "to be run inline"])
def test_a_copy_sent_again_after_the_copy_left_behind_ran_to_its_end_never_runs(
    worker: _Worker, arrives: str
) -> None:
    """As above, but the copy left behind (started through the claim offered for the new
    copy) has ended, its outcome sent, before the new copy arrives: no ``owner`` entry
    is left to find. The new copy, however it arrives, must not start too (its claim is
    spent): the core gets one outcome, and no hand-back."""
    from actorlib.backends.process.inline_tasks import InlineTasks

    runner, table, queued, reports = worker.runner, worker.table, worker.queued, worker.reports
    ended = 4 << 41  # a task ended here meanwhile
    worker.claims.go.set()
    worker.send(worker.first)
    assert table.offer(queued)
    worker.send(queued, follows=worker.first)
    assert table.take(queued, wait=False) is True  # the core took it back
    worker.send(worker.second)
    assert table.offer(queued)  # and sends it again
    worker.spin.release.set()
    RELEASE["first"].set()  # the task ahead ends: its thread claims the copy left behind
    reports.wait_finished(queued)
    assert not runner.runs(queued)
    if arrives == "behind a running task":
        worker.send(queued, follows=worker.second)
    elif arrives == "behind an ended task":
        worker.send(queued, follows=ended)
    else:
        inline = InlineTasks(runner, worker)  # type: ignore[arg-type]
        assert inline.run(worker.run(queued, follows=ended))
    RELEASE["second"].set()
    reports.wait_finished(worker.second)
    runner.stop()  # a thread ends its chain first: a copy claimed there runs before
    runner.join(T)
    for thread in worker.threads:
        thread.join(T)
    assert worker.spin.starts == 1, "the task ran twice"
    assert reports.finished.count(queued) == 1
    assert not reports.recalled
    assert not runner.runs(queued)


def test_a_copy_arriving_while_a_thread_decides_its_claim_waits_for_the_answer() -> None:
    """The task ahead ended and its thread reached for the copy left behind, but the core
    had taken back the claim it offered since (a recall of the copy it sent next): the
    claim fails. Copies sent meanwhile arrive before that thread has forgotten its copy:
    the runner must wait for the thread's answer, not take that thread for the one that
    runs the task and ignore them (the task would never run, and the core wait for it
    for ever). The thread claims under its lock for that."""
    worker = _Worker(late_s=0.3)
    first, second, queued, table = worker.first, worker.second, worker.queued, worker.table
    try:
        worker.send(first)
        assert table.offer(queued)
        worker.send(queued, follows=first)
        assert table.take(queued, wait=False) is True  # the core took copy 1 back
        worker.send(second)
        assert table.offer(queued)  # copy 2, on its way
        RELEASE["first"].set()  # copy 1's thread reaches for its claim (held at ``go``)
        assert table.take(queued, wait=False) is True  # the core recalls copy 2
        worker.claims.go.set()
        assert worker.claims.failed.wait(T)  # copy 1's claim failed; its thread is slow
        assert table.offer(queued)  # copy 3, on its way
        worker.send(queued, follows=second)  # copy 2 arrives
        worker.send(queued, follows=second)  # copy 3 arrives
        RELEASE["second"].set()
        assert worker.spin.started.wait(T), "the task never ran"
        worker.spin.release.set()
        worker.reports.wait_finished(queued)
        assert worker.spin.starts == 1, "the task ran twice"
        assert worker.reports.finished.count(queued) == 1
    finally:
        worker.close()


def test_a_copy_sent_again_to_be_run_inline_leaves_the_task_with_the_copy_that_runs(
    worker: _Worker,
) -> None:
    """As above, the new copy reaching ``InlineTasks`` (a worker runs a plain task on its
    reading thread when nothing runs there): it is ignored, and the cancel reaches the
    copy left behind, which runs."""
    from actorlib.backends.process.inline_tasks import InlineTasks

    runner, table, queued = worker.runner, worker.table, worker.queued
    busy, ended = worker.second, 4 << 41  # ``ended``: a task ended here meanwhile
    inline = InlineTasks(runner, worker)  # type: ignore[arg-type]
    worker.claims.go.set()
    assert inline.run(worker.run(busy))
    # The reading thread's tasks are busy: the next task goes to a task thread.
    assert not inline.run(worker.run(worker.first))
    worker.send(worker.first)
    assert table.offer(queued)
    run = worker.run(queued, follows=worker.first)
    assert not inline.run(run)  # queued behind a task thread's task
    runner.run_task(run)
    assert table.take(queued, wait=False) is True  # the core took it back
    RELEASE["second"].set()
    worker.reports.wait_finished(busy)
    for thread in worker.threads:
        thread.join(T)
    assert table.offer(queued)  # and sends it again, behind a task ended meanwhile
    RELEASE["first"].set()
    assert worker.spin.started.wait(T)
    assert inline.run(worker.run(queued, follows=ended))
    worker.cancel_reaches_the_one_run()
    assert worker.spin.starts == 1, "the task ran twice"
    assert worker.reports.finished.count(queued) == 1


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
