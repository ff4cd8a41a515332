"""Finding actor races with the deterministic ``sim`` backend (see docs/testing.md).

Two real bugs of actor programs, each rare on a real backend:

- a bank transfer that *checks* the balance with one call and *debits* with another: a
  second transfer can read the same balance in between (a check-then-act race across
  two actors), and the account goes negative;
- a read-through cache (an async actor) whose invalidation can be overtaken by a slow
  read: the read stores the value it fetched before the update, after the invalidation,
  and the cache serves that stale value for ever.

The script runs each scenario many times on a real backend ($ACTORLIB_BACKEND, thread by
default) and counts how often the bug shows; then lets hypothesis explore schedules under
``sim``, which finds it, shrinks it and prints a trace that replays it step for step.

    python examples/testing_actors.py           # 200 real runs per scenario
    python examples/testing_actors.py --small   # 10, and a quick random search instead
                                                # of hypothesis's (what the tests run)
"""

from __future__ import annotations

import os
import sys
import time

import actorlib
from actorlib.testing import explore, invariant, peek, search, simulate

# -- the bank ----------------------------------------------------------------------------


@actorlib.remote(num_cpus=0)
class Account:
    def __init__(self, balance: int) -> None:
        self.balance = balance

    def read(self) -> int:
        return self.balance

    def withdraw(self, amount: int) -> None:
        self.balance -= amount

    def deposit(self, amount: int) -> None:
        self.balance += amount


@actorlib.remote(num_cpus=0)
class Ledger:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def record(self, line: str) -> None:
        self.lines.append(line)


@actorlib.remote(num_cpus=0)
def transfer(src, dst, amount: int) -> bool:
    if actorlib.get(src.read.remote()) < amount:  # check ...
        return False
    # ... then act. BUG: another transfer may have debited ``src`` since the check.
    actorlib.get([src.withdraw.remote(amount), dst.deposit.remote(amount)])
    return True


@actorlib.remote(num_cpus=0)
def standing_order(ledger, src, dst, amount: int) -> bool:
    """A scheduled payment: some bookkeeping first, then the same transfer."""
    for step in ("received", "checked", "approved", "scheduled"):
        actorlib.get(ledger.record.remote(f"standing order of {amount}: {step}"))
    return bool(actorlib.get(transfer.remote(src, dst, amount)))


def bank_day(check_invariant: bool = False) -> None:
    """Alice (100) pays a 60 invoice while her 60 standing order to Carol runs."""
    alice, bob, carol = Account.remote(100), Account.remote(0), Account.remote(0)
    ledger = Ledger.remote()
    if check_invariant:
        invariant(lambda: peek(alice).balance >= 0)
    paid = actorlib.get([
        transfer.remote(alice, bob, 60), standing_order.remote(ledger, alice, carol, 60),
    ])
    balances = actorlib.get([a.read.remote() for a in (alice, bob, carol)])
    assert sum(balances) == 100, balances
    assert balances[0] >= 0, f"alice overdrawn: balances {balances}, transfers done {paid}"


# -- the cache ---------------------------------------------------------------------------


@actorlib.remote(num_cpus=0)
class Database:
    def __init__(self) -> None:
        self.rows = {"price": 1}

    def read(self, key: str) -> int:
        return self.rows[key]

    def write(self, key: str, value: int) -> None:
        self.rows[key] = value


@actorlib.remote(num_cpus=0)
class Cache:
    """Read-through, async so one slow read does not hold up the others."""

    def __init__(self, db) -> None:
        self.db = db
        self.entries: dict[str, int] = {}

    async def get(self, key: str) -> int:
        if key not in self.entries:
            value = await self.db.read.remote(key)
            # BUG: an invalidation may have run while we awaited: this value is stale.
            self.entries[key] = value
        return self.entries[key]

    async def invalidate(self, key: str) -> None:
        self.entries.pop(key, None)


@actorlib.remote(num_cpus=0)
def set_price(db, cache, value: int) -> None:
    actorlib.get(db.write.remote("price", value))
    actorlib.get(cache.invalidate.remote("price"))


def price_update() -> None:
    """A customer reads the price while an admin changes it; then everyone reads again."""
    db = Database.remote()
    cache = Cache.remote(db)
    actorlib.get([cache.get.remote("price"), set_price.remote(db, cache, 2)])
    cached, stored = actorlib.get([cache.get.remote("price"), db.read.remote("price")])
    assert cached == stored, f"the cache serves a stale price: {cached}, the database has {stored}"


SCENARIOS = {"bank": bank_day, "cache": price_update}

# -- on a real backend: rare ---------------------------------------------------------------


def real_runs(name: str, runs: int) -> int:
    """How many of ``runs`` real runs of the scenario hit its bug."""
    hits = 0
    actorlib.init(num_cpus=4)
    try:
        for _ in range(runs):
            try:
                SCENARIOS[name]()
            except AssertionError:
                hits += 1
    finally:
        actorlib.shutdown()
    return hits


# -- under sim: found, shrunk, replayed ----------------------------------------------------


def hunt(name: str, max_examples: int = 500) -> tuple[AssertionError, float]:
    """Let hypothesis explore schedules until the scenario fails; the shrunk failure."""
    body = SCENARIOS[name]
    started = time.perf_counter()

    @explore(max_examples=max_examples, database=None)
    def scenario() -> None:
        body()

    try:
        scenario()
    except AssertionError as exc:
        return exc, time.perf_counter() - started
    raise SystemExit(f"{name}: no failing schedule found in {max_examples} examples")


def replay_steps(name: str, trace: str) -> tuple[list[str], str]:
    """Run the scenario once from ``trace``: the steps it took and how it failed."""
    run = None
    try:
        with simulate(trace=trace) as run:
            SCENARIOS[name]()
    except AssertionError as exc:
        assert run is not None
        return run.log, str(exc)
    raise AssertionError("the replay did not fail")


def main() -> None:
    small = "--small" in sys.argv or os.environ.get("ACTORLIB_EXAMPLE_SIZE") == "small"
    runs = 10 if small else 200
    backend = os.environ.get("ACTORLIB_BACKEND", "thread")
    os.environ.setdefault("ACTORLIB_BACKEND", backend)
    for name in SCENARIOS:
        hits = real_runs(name, runs)
        print(f"{name}: the bug showed in {hits} of {runs} runs on the {backend} backend")
        if small:  # quick: seeded random schedules, no shrinking (the tests' size)
            found = search(SCENARIOS[name], iterations=500)
            assert found is not None and isinstance(found.error, AssertionError)
            error, seconds, trace = found.error, found.seconds, found.trace
            steps = error.sim_steps  # type: ignore[attr-defined]
            how = f"random search found it after {found.runs} runs"
        else:
            error, seconds = hunt(name)
            trace = error.sim_trace  # type: ignore[attr-defined]
            steps = error.sim_steps  # type: ignore[attr-defined]
            how = "hypothesis found and shrank it"
        print(f"{name}: under sim, {how} in {seconds:.2f} s: {len(steps)} steps")
        print(f"  {str(error).splitlines()[0]}")
        for i, step in enumerate(steps, 1):
            print(f"  {i:3d}. {step}")
        print(f"  replay: actorlib.testing.replay({trace!r})")
        again, message = replay_steps(name, trace)
        assert again == steps, "the replay took other steps"
        print(f"{name}: replayed step for step: {message}")


if __name__ == "__main__":
    main()
