"""Migrating from ProcessPoolExecutor: the same code on both, then what actorlib adds.

What it shows:
- One function, `checksum_jobs(executor_class)`, written against the
  `concurrent.futures` API (`submit`, `map`, `as_completed`), run unchanged on
  `concurrent.futures.ProcessPoolExecutor` and on `actorlib.Executor`: the results are
  equal, and both are timed. The job is CPU-bound: chains of SHA-256 digests.
- A worker that dies in the middle of a call (`os._exit`, as a segfault or the OOM
  killer would end it). On `ProcessPoolExecutor` the pool breaks: the call and every
  other pending call fail with `BrokenProcessPool`, and the pool cannot be used again.
  On `actorlib.Executor` the call is rerun on a fresh worker (`max_retries`) and every
  result arrives; the crash is visible only in the attempt count.
- A call that crashes its worker every time runs out of retries and raises
  `ExecutorWorkerError`, which is a `BrokenProcessPool` too (existing `except` clauses
  keep working); the executor stays usable for the next call.

A worker crash can only be shown where calls run in worker processes (the process and
cluster backends); on the thread backend `os._exit` would end this script, so that part
is skipped with a message.

Expected output (times vary):

    checksums of 16 chains x 60,000 rounds, 2 workers
      ProcessPoolExecutor   0.46 s
      actorlib.Executor     0.88 s   (same 16 digests; runtime started in 0.12 s)
    a worker crashes (os._exit) during call 5 of 8:
      ProcessPoolExecutor: 3 of 8 calls failed with BrokenProcessPool:
        A process in the process pool was terminated abruptly while the future was [...]
        and the pool takes no new calls: submit raises BrokenProcessPool too
      actorlib.Executor:   8 of 8 calls returned the right digest; call 5 ran 2 times
    a call that crashes its worker every time, max_retries=2:
      ExecutorWorkerError (a BrokenProcessPool: True) after 3 attempts
      the executor still runs calls: True
    done

Run it with:  python examples/executor_migration.py          (full size)
              python examples/executor_migration.py --small  (the size the tests use)
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import sys
import tempfile
import textwrap
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import actorlib
from actorlib.executor import ExecutorWorkerError

SMALL = "--small" in sys.argv or os.environ.get("ACTORLIB_EXAMPLE_SIZE") == "small"
CHAINS = 8 if SMALL else 16
ROUNDS = 20_000 if SMALL else 60_000
WORKERS = 2
CRASH_CALLS, CRASH_AT = 8, 5


def sha_chain(seed: int, rounds: int = ROUNDS) -> str:
    """SHA-256 applied ``rounds`` times, starting from the seed's bytes."""
    digest = seed.to_bytes(8, "little")
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()


def checksum_jobs(executor_class: type[concurrent.futures.Executor]) -> list[str]:
    """Plain concurrent.futures code: nothing here knows which executor it runs on."""
    with executor_class(max_workers=WORKERS) as pool:
        half = CHAINS // 2
        first = list(pool.map(sha_chain, range(half)))
        futures = {pool.submit(sha_chain, seed): seed for seed in range(half, CHAINS)}
        rest = {futures[f]: f.result() for f in as_completed(futures)}
    return first + [rest[seed] for seed in range(half, CHAINS)]


def sha_chain_crashing(seed: int, crash_seed: int, log_dir: str, every_time: bool) -> str:
    """``sha_chain``, except that the worker dies halfway through ``crash_seed``'s chain
    (on its first attempt only, unless ``every_time``). Attempts are logged to files."""
    attempts = Path(log_dir) / f"attempts-{seed}"
    with attempts.open("a") as f:
        f.write(f"{os.getpid()}\n")
    n = len(attempts.read_text().splitlines())
    if seed == crash_seed and (every_time or n == 1):
        sha_chain(seed, ROUNDS // 2)
        os._exit(13)  # no exception, no cleanup: the process is simply gone
    return sha_chain(seed)


def attempts_of(log_dir: str, seed: int) -> int:
    path = Path(log_dir) / f"attempts-{seed}"
    return len(path.read_text().splitlines()) if path.exists() else 0


def stdlib_crash() -> tuple[list[BrokenProcessPool], bool]:
    """ProcessPoolExecutor with a worker dying: the failed calls, and if it took more."""
    with tempfile.TemporaryDirectory() as log_dir, \
            ProcessPoolExecutor(max_workers=WORKERS) as pool:
        futures = [pool.submit(sha_chain_crashing, s, CRASH_AT, log_dir, False)
                   for s in range(CRASH_CALLS)]
        broken = []
        for f in futures:
            try:
                f.result()
            except BrokenProcessPool as exc:
                broken.append(exc)
        try:
            pool.submit(sha_chain, 1)
        except BrokenProcessPool:
            return broken, False
        return broken, True


def crash_demo(expected: list[str], broken: list[BrokenProcessPool], reusable: bool) -> None:
    print(f"a worker crashes (os._exit) during call {CRASH_AT} of {CRASH_CALLS}:")
    seeds = range(CRASH_CALLS)
    assert broken, "ProcessPoolExecutor survived a dead worker?"
    print(f"  ProcessPoolExecutor: {len(broken)} of {CRASH_CALLS} calls failed with "
          f"BrokenProcessPool:\n    {textwrap.shorten(str(broken[0]), 80)}")
    assert not reusable
    print("    and the pool takes no new calls: submit raises BrokenProcessPool too")

    with tempfile.TemporaryDirectory() as log_dir:
        with actorlib.Executor(max_workers=WORKERS, max_retries=2) as pool:
            got = list(pool.map(sha_chain_crashing, seeds, [CRASH_AT] * CRASH_CALLS,
                                [log_dir] * CRASH_CALLS, [False] * CRASH_CALLS))
        assert got == expected[:CRASH_CALLS], "a retried call returned a wrong digest"
        runs = attempts_of(log_dir, CRASH_AT)
        assert runs == 2, f"call {CRASH_AT} ran {runs} times, expected a crash and a rerun"
        print(f"  actorlib.Executor:   {len(got)} of {CRASH_CALLS} calls returned the right "
              f"digest; call {CRASH_AT} ran {runs} times")

    print("a call that crashes its worker every time, max_retries=2:")
    with (tempfile.TemporaryDirectory() as log_dir,
          actorlib.Executor(max_workers=WORKERS, max_retries=2) as pool):
        try:
            pool.submit(sha_chain_crashing, 0, 0, log_dir, True).result()
        except BrokenProcessPool as exc:  # the stdlib's except clause catches it
            caught = exc
        else:
            raise AssertionError("a call whose worker always dies returned")
        assert isinstance(caught, ExecutorWorkerError), type(caught)
        runs = attempts_of(log_dir, 0)
        assert runs == 3, runs  # the first attempt and two retries
        print(f"  {type(caught).__name__} (a BrokenProcessPool: "
              f"{isinstance(caught, BrokenProcessPool)}) after {runs} attempts")
        still = pool.submit(sha_chain, 1).result() == expected[1]
        assert still
        print("  the executor still runs calls:", still)


def main() -> None:
    # The stdlib runs first: forking a process pool after actorlib started threads is not
    # something to show in an example.
    t0 = time.perf_counter()
    stdlib = checksum_jobs(ProcessPoolExecutor)
    t_stdlib = time.perf_counter() - t0
    broken, reusable = stdlib_crash()

    # With a runtime running, every actorlib.Executor below shares it (without one, each
    # `with actorlib.Executor(...)` would start and stop its own).
    t0 = time.perf_counter()
    actorlib.init(ignore_reinit_error=True)
    t_init = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = checksum_jobs(actorlib.Executor)  # the only change: the class
    t_ours = time.perf_counter() - t0
    print(f"checksums of {CHAINS} chains x {ROUNDS:,} rounds, {WORKERS} workers")
    print(f"  ProcessPoolExecutor  {t_stdlib:5.2f} s")
    print(f"  actorlib.Executor    {t_ours:5.2f} s   (same {len(ours)} digests; "
          f"runtime started in {t_init:.2f} s)")
    assert ours == stdlib, "the two executors disagree"
    assert stdlib[-1] == sha_chain(CHAINS - 1), "the last digest differs from the driver's"

    with actorlib.Executor(max_workers=1) as pool:
        in_workers = pool.submit(os.getpid).result() != os.getpid()
    if in_workers:
        crash_demo(stdlib, broken, reusable)
    else:
        print("this backend runs calls in this process: a crashing worker would end the "
              "script, so the crash demo needs ACTORLIB_BACKEND=process (or cluster)")
    actorlib.shutdown()
    print("done")


if __name__ == "__main__":
    main()
