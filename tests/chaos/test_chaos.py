"""Fault injection: real worker processes killed at random under a mixed load.

Every result must arrive exactly once and be right, nothing may stall, actor order must
hold across restarts, and the core's bookkeeping must stay consistent throughout. A few
seconds each by default; ``ACTORLIB_CHAOS_SECONDS=150`` makes a soak of each.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
from testkit import T

import actorlib
from actorlib import _testing

SECONDS = float(os.environ.get("ACTORLIB_CHAOS_SECONDS", "4"))
pytestmark = pytest.mark.chaos


@pytest.fixture
def chaos_rt(_leak_check: None) -> Iterator[None]:
    actorlib.init(backend="process", num_cpus=2)
    try:
        yield
    finally:
        actorlib.shutdown()


class Killer:
    """SIGKILLs a random worker process of this driver every ``every`` seconds.

    With ``progress`` (a counter of work done), a kill waits until the count has moved
    since the previous kill. An actor lives in one process, and under load a fresh
    interpreter can take longer to boot than the gap between kills: without this its
    restarts would never get to run a call (a kill storm, not a stall of actorlib's).
    """

    def __init__(
        self, every: float, spare: set[int] | None = None,
        progress: Callable[[], int] | None = None,
    ) -> None:
        self.every = every
        self.spare = spare or set()
        self.progress = progress
        self.kills = 0
        self._stop = threading.Event()
        self._rng = random.Random(os.getpid())
        self._thread = threading.Thread(target=self._run, name="chaos-killer")

    def __enter__(self) -> Killer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        me = psutil.Process()
        seen = None
        while not self._stop.wait(self._rng.uniform(0.5, 1.5) * self.every):
            if self.progress is not None:
                now = self.progress()
                if now == seen:
                    continue
                seen = now
            workers = [p for p in me.children() if p.pid not in self.spare]
            if workers:
                try:
                    self._rng.choice(workers).send_signal(signal.SIGKILL)
                    self.kills += 1
                except psutil.Error:
                    pass


@actorlib.remote(max_retries=-1)
def square(i: int) -> int:
    time.sleep(random.random() * 0.002)
    return i * i


@actorlib.remote(max_retries=-1)
def checksum(array: np.ndarray) -> int:
    return int(array.sum())


@actorlib.remote(max_restarts=-1, max_task_retries=-1, num_cpus=0)
class Ordered:
    """Logs each call's sequence number as it starts, to a file that outlives restarts."""

    def __init__(self, log: str) -> None:
        self.log = log

    def step(self, seq: int) -> int:
        with open(self.log, "a") as f:
            f.write(f"{seq}\n")
        time.sleep(0.001)
        return seq


def _lines(path: Path) -> Callable[[], int]:
    """How many calls have started, as counted by an :class:`Ordered` log."""
    return lambda: path.read_bytes().count(b"\n") if path.exists() else 0


def _no_problems() -> None:
    problems = _testing.core_problems()
    assert not problems, problems


def test_tasks_under_worker_kills_run_exactly_once_each(chaos_rt: None) -> None:
    deadline = time.monotonic() + SECONDS
    batches = [0]
    with Killer(every=0.3, progress=lambda: batches[0]) as killer:
        while time.monotonic() < deadline:
            refs = [square.remote(i) for i in range(200)]
            assert actorlib.get(refs, timeout=T) == [i * i for i in range(200)]
            batches[0] += 1
            _no_problems()
    assert batches[0] > 0 and killer.kills > 0


def test_actor_order_holds_across_restarts_from_kills(chaos_rt: None, tmp_path: Path) -> None:
    log = tmp_path / "log"
    actor = Ordered.remote(str(log))
    deadline = time.monotonic() + SECONDS
    seq = 0
    with Killer(every=0.4, progress=_lines(log)) as killer:
        while time.monotonic() < deadline:
            refs = [actor.step.remote(seq + i) for i in range(50)]
            assert actorlib.get(refs, timeout=T) == list(range(seq, seq + 50))
            seq += 50
            _no_problems()
    started = [int(line) for line in log.read_text().split()]
    # A call may start again after a crash, but never after a later call has started.
    assert started == sorted(started), "a later call started before an earlier one finished"
    assert set(started) == set(range(seq))
    assert killer.kills > 0


def test_objects_under_worker_kills_keep_their_bytes(chaos_rt: None) -> None:
    rng = np.random.default_rng(7)
    deadline = time.monotonic() + SECONDS
    batches = [0]
    with Killer(every=0.3, progress=lambda: batches[0]) as killer:
        while time.monotonic() < deadline:
            arrays = [rng.integers(0, 1000, size=200_000) for _ in range(6)]
            refs = [actorlib.put(a) for a in arrays]
            sums = actorlib.get([checksum.remote(r) for r in refs], timeout=T)
            assert sums == [int(a.sum()) for a in arrays]
            for ref, array in zip(refs, arrays, strict=True):
                assert np.array_equal(actorlib.get(ref, timeout=T), array)
            batches[0] += 1
            _no_problems()
    assert killer.kills > 0


@actorlib.remote(max_retries=-1)
def large_result(seed: int) -> np.ndarray:
    """A 2 MiB result: written by the worker into an extent of the driver's arena."""
    return np.random.default_rng(seed).integers(0, 2**31, size=256 * 1024, dtype=np.int64)


def test_large_results_under_worker_kills_keep_their_bytes_and_leak_no_extent(
    chaos_rt: None,
) -> None:
    import hashlib

    from actorlib import session

    def expected(seed: int) -> str:
        array = np.random.default_rng(seed).integers(0, 2**31, size=256 * 1024, dtype=np.int64)
        return hashlib.sha256(array.tobytes()).hexdigest()

    store = session.runtime().backend.store
    deadline = time.monotonic() + SECONDS
    batches = [0]
    with Killer(every=0.3, progress=lambda: batches[0]) as killer:
        while time.monotonic() < deadline or batches[0] == 0:
            seeds = range(batches[0] * 6, batches[0] * 6 + 6)
            refs = [large_result.remote(seed) for seed in seeds]
            for ref, seed in zip(refs, seeds, strict=True):
                value = actorlib.get(ref, timeout=T)
                assert hashlib.sha256(value.tobytes()).hexdigest() == expected(seed)
                assert not value.flags.writeable
            batches[0] += 1
            _no_problems()
            del refs, ref, value
    assert killer.kills > 0
    # Every extent granted to a worker was adopted with its result or given back when
    # that worker died; with every ref gone, nothing is left in the arena.
    assert store.granted() == 0
    deadline = time.monotonic() + T
    while store.arena.live() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.arena.live() == []


def test_mixed_load_under_kills_stalls_nothing(chaos_rt: None, tmp_path: Path) -> None:
    """Tasks, nested tasks, actor calls and puts at once, while workers die."""

    @actorlib.remote(max_retries=-1)
    def parent(n: int) -> int:
        return sum(actorlib.get([square.remote(i) for i in range(n)], timeout=T))

    log = tmp_path / "log"
    actor = Ordered.remote(str(log))
    deadline = time.monotonic() + SECONDS
    with Killer(every=0.3, progress=_lines(log)) as killer:
        seq = 0
        while time.monotonic() < deadline:
            refs: list[Any] = [parent.remote(5) for _ in range(4)]
            refs += [square.remote(i) for i in range(50)]
            calls = [actor.step.remote(seq + i) for i in range(10)]
            big = actorlib.put(np.arange(100_000))
            total = checksum.remote(big)
            assert actorlib.get(refs, timeout=T) == [30] * 4 + [i * i for i in range(50)]
            assert actorlib.get(calls, timeout=T) == list(range(seq, seq + 10))
            assert actorlib.get(total, timeout=T) == int(np.arange(100_000).sum())
            seq += 10
            _no_problems()
    assert killer.kills > 0


@actorlib.remote(max_retries=-1)
def digest(array: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(array.tobytes()).hexdigest()


def test_store_pressure_under_kills_keeps_every_byte(_leak_check: None) -> None:
    """Eight times the store's capacity in live objects, spilled and read back by tasks
    whose workers are killed meanwhile: every checksum matches."""
    import hashlib

    store = 24 * 1024 * 1024
    actorlib.init(backend="process", num_cpus=2, object_store_memory=store)
    try:
        rng = np.random.default_rng(11)
        arrays = [rng.integers(0, 2**31, size=store // 8 // 4, dtype=np.int64)
                  for _ in range(32)]  # 8 x the capacity, all alive at once
        expected = [hashlib.sha256(a.tobytes()).hexdigest() for a in arrays]
        refs = [actorlib.put(a) for a in arrays]
        deadline = time.monotonic() + SECONDS
        with Killer(every=0.3) as killer:
            rounds = 0
            while time.monotonic() < deadline or rounds == 0:
                order = random.Random(rounds).sample(range(len(refs)), len(refs))
                got = actorlib.get([digest.remote(refs[i]) for i in order], timeout=T)
                assert got == [expected[i] for i in order]
                rounds += 1
                _no_problems()
        for ref, want in zip(refs, expected, strict=True):
            assert hashlib.sha256(actorlib.get(ref, timeout=T).tobytes()).hexdigest() == want
        assert killer.kills > 0
    finally:
        actorlib.shutdown()
