"""A sync actor runs every call on one thread, in each caller's order, whatever else the
worker does meanwhile.

In a worker process the actor's thread reads the worker's socket itself while idle, so a
call is read and run there with no hop to another thread; reading passes to a spare thread
while a call waits in ``get``, runs long or is signalled a cancel, and comes back to the
actor's thread with the next call. None of that may show: user code keeps its thread (a
thread-local connection, a library that checks its thread), the calls keep their order,
and a worker does not grow threads as reading moves back and forth.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from testkit import Sync, T, kill_all, run_script

import actorlib

pytestmark = pytest.mark.shared_runtime

#: Longer than a process worker's watchdog slice (0.1 s): reading passes to a spare.
LONG_S = 0.15


@actorlib.remote(num_cpus=0)
def square(x: int) -> int:
    return x * x


@actorlib.remote(num_cpus=0)
class Echo:
    def echo(self, x: Any) -> Any:
        return x


@actorlib.remote(num_cpus=0)
class ThreadLog:
    """Notes the thread and order of every call; flags two calls that overlap."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []  # (seq, thread ident)
        self.local = threading.local()
        self.local.mine = True  # a thread-local made in __init__, read by every call
        self.overlap = False
        self.running = False
        self.threads_seen = 0

    def step(self, seq: int, kind: str, helper: Any = None) -> int:
        if self.running:
            self.overlap = True
        self.running = True
        try:
            if kind == "long":
                time.sleep(LONG_S)
            elif kind == "task":
                assert actorlib.get(square.remote(seq), timeout=T) == seq * seq
            elif kind == "actor":
                assert actorlib.get(helper.echo.remote(seq), timeout=T) == seq
            elif kind == "spin":
                end = time.monotonic() + LONG_S
                while time.monotonic() < end:
                    pass
            assert getattr(self.local, "mine", False), "a call ran on another thread"
            self.calls.append((seq, threading.get_ident()))
            self.threads_seen = max(self.threads_seen, threading.active_count())
            return seq
        finally:
            self.running = False

    def report(self) -> tuple[list[tuple[int, int]], bool, int, int]:
        return self.calls, self.overlap, self.threads_seen, threading.get_ident()

    def reset(self) -> None:
        """Forget the calls so far (a property's next example), keeping the thread."""
        self.calls = []
        self.overlap = False


def _check(log: Any, n: int) -> int:
    calls, overlap, threads_seen, report_thread = actorlib.get(log.report.remote(), timeout=T)
    assert not overlap, "two calls of a sync actor overlapped"
    assert [seq for seq, _ in calls] == list(range(n)), "calls ran out of order"
    idents = {ident for _, ident in calls} | {report_thread}
    assert len(idents) == 1, f"a sync actor's calls ran on {len(idents)} threads"
    return threads_seen


def test_every_call_runs_on_the_actors_thread_while_reading_moves(rt: Any) -> None:
    log, helper = ThreadLog.remote(), Echo.remote()
    kinds = ["quick"] * 5 + ["long", "quick", "quick", "task", "quick", "spin", "actor",
                             "quick", "long", "long", "quick"] + ["quick"] * 5
    refs = [log.step.remote(i, kind, helper) for i, kind in enumerate(kinds)]
    assert actorlib.get(refs, timeout=T) == list(range(len(kinds)))
    _check(log, len(kinds))


def test_calls_sent_one_at_a_time_around_long_ones_keep_the_thread(rt: Any) -> None:
    """Each call sent once the last one returned: the idle actor's thread reads it (or,
    after a long one, another thread reads it and reading comes back)."""
    log = ThreadLog.remote()
    n = 0
    for _ in range(3):
        for kind in ["quick", "quick", "long", "quick", "task", "quick"]:
            assert actorlib.get(log.step.remote(n, kind), timeout=T) == n
            n += 1
    _check(log, n)


def test_reading_moving_back_and_forth_does_not_grow_threads(rt: Any) -> None:
    log = ThreadLog.remote()
    n = 0
    first = 0
    for round_ in range(8):
        for kind in ["long", "quick", "task"]:
            actorlib.get(log.step.remote(n, kind), timeout=T)
            n += 1
        if round_ == 1:
            first = actorlib.get(log.report.remote(), timeout=T)[2]
    last = _check(log, n)
    assert last <= first + 1, f"the actor's process grew from {first} to {last} threads"


def test_a_cancel_reaches_a_running_call_and_the_next_call_keeps_the_thread(rt: Any) -> None:
    @actorlib.remote(num_cpus=0)
    class Worker:
        def __init__(self) -> None:
            self.ident = threading.get_ident()

        def until_canceled(self, started: Any) -> None:
            ctx = actorlib.get_runtime_context()
            actorlib.get(started.arrive.remote(), timeout=T)
            deadline = time.monotonic() + T
            while not ctx.is_canceled() and time.monotonic() < deadline:
                time.sleep(0.001)
            self.seen = ctx.is_canceled(), threading.get_ident() == self.ident

        def last_seen(self) -> tuple[bool, bool]:
            return self.seen

        def same_thread(self) -> bool:
            return threading.get_ident() == self.ident

    sync = Sync.remote()
    w = Worker.remote()
    assert actorlib.get(w.same_thread.remote(), timeout=T)
    ref = w.until_canceled.remote(sync)
    actorlib.get(sync.wait_count.remote(1), timeout=T)
    actorlib.cancel(ref)
    # Not interrupted (an actor's state is its own): it sees the cancel and returns, and
    # its caller gets the cancel.
    with pytest.raises(actorlib.exceptions.TaskCancelledError):
        actorlib.get(ref, timeout=T)
    assert actorlib.get(w.last_seen.remote(), timeout=T) == (True, True)
    assert actorlib.get([w.same_thread.remote() for _ in range(5)], timeout=T) == [True] * 5


call_kinds = st.lists(
    st.sampled_from(["quick", "quick", "quick", "task", "long", "actor"]), min_size=1,
    max_size=8,
)


@pytest.fixture
def log_and_helper(rt: Any) -> Iterator[tuple[Any, Any]]:
    """One ``ThreadLog`` and its ``Echo`` for all of a property's examples: each example
    resets the log, and its calls meet whatever reading state the last one left (an
    actor per example cost about 2 s on ray, most of the property's time)."""
    actors = ThreadLog.remote(), Echo.remote()
    yield actors
    kill_all(actors)


@given(plan=call_kinds, one_at_a_time=st.booleans())
def test_property_one_thread_in_order_whatever_the_calls(
    log_and_helper: tuple[Any, Any], plan: list[str], one_at_a_time: bool
) -> None:
    log, helper = log_and_helper
    actorlib.get(log.reset.remote(), timeout=T)
    if one_at_a_time:
        for i, kind in enumerate(plan):
            assert actorlib.get(log.step.remote(i, kind, helper), timeout=T) == i
    else:
        refs = [log.step.remote(i, kind, helper) for i, kind in enumerate(plan)]
        assert actorlib.get(refs, timeout=T) == list(range(len(plan)))
    _check(log, len(plan))


@actorlib.remote(num_cpus=0)
class Streamer:
    def items(self, n: int) -> Any:
        yield from range(n)

    def nested(self, x: int) -> int:
        return int(actorlib.get(square.remote(x), timeout=T))


def test_without_the_watchdog_a_paused_stream_and_a_nested_get_still_read(
    monkeypatch: pytest.MonkeyPatch, _leak_check: None
) -> None:
    """With the worker's watchdog looks an hour apart, nothing but the call itself can
    pass reading on: a stream paused by backpressure (it waits for the driver to report
    items consumed) and a nested ``get`` must each leave reading to another thread, or
    they wait forever for a message nobody reads."""
    monkeypatch.setenv("ACTORLIB_INLINE_WATCH_S", "3600")
    actorlib.init(backend="process", num_cpus=1)
    try:
        s = Streamer.remote()
        assert actorlib.get(s.nested.remote(3), timeout=T) == 9
        stream = s.items.options(num_returns="streaming",
                                 _generator_backpressure_num_objects=1).remote(30)
        assert [actorlib.get(ref, timeout=T) for ref in stream] == list(range(30))
        assert actorlib.get([s.nested.remote(i) for i in range(5)], timeout=T) == [
            i * i for i in range(5)]
    finally:
        actorlib.shutdown()


@actorlib.remote(num_cpus=0)
class Poller:
    def quick(self) -> int:
        return 1

    def items(self, n: int) -> Any:
        yield from range(n)

    def until_canceled(self, limit_s: float) -> bool:
        """Polls ``is_canceled`` and does nothing else (no ``get``, which would pass
        reading on by itself)."""
        ctx = actorlib.get_runtime_context()
        deadline = time.monotonic() + limit_s
        while not ctx.is_canceled() and time.monotonic() < deadline:
            time.sleep(0.002)
        return ctx.is_canceled()


def test_a_stream_right_behind_a_call_runs(rt: Any) -> None:
    """A call and a generator call sent together while another thread reads: the call
    hands reading to the actor's thread with the generator call still decoded behind it,
    which the actor's thread queues for itself; it must run it, not wait in ``recv``
    for another message first (it did: the stream stalled until the next call)."""
    p = Poller.remote()
    for _ in range(6):
        ref = p.quick.remote()
        stream = p.items.options(num_returns="streaming").remote(3)
        assert actorlib.get(ref, timeout=T) == 1
        actorlib.get(stream.completed(), timeout=T)
        assert [actorlib.get(r, timeout=T) for r in stream] == [0, 1, 2]


_CANCEL_SCRIPT = """
import time
import actorlib

@actorlib.remote(num_cpus=0)
class Poller:
    def quick(self):
        return 1

    def until_canceled(self, limit_s):
        # Polls is_canceled and does nothing else (a get would pass reading on itself).
        ctx = actorlib.get_runtime_context()
        deadline = time.monotonic() + limit_s
        while not ctx.is_canceled() and time.monotonic() < deadline:
            time.sleep(0.002)
        return ctx.is_canceled()

actorlib.init(num_cpus=1)
p = Poller.remote()
# The worker's first looks come 0.1 s apart, doubling while nothing runs; the first that
# sees a call ran since the last sets them an hour apart.
end = time.monotonic() + 2.0
while time.monotonic() < end:
    assert actorlib.get(p.quick.remote()) == 1
    time.sleep(0.05)
running = p.until_canceled.remote(10.0)
time.sleep(0.2)  # read and started by the actor's thread, as inline work
queued = p.quick.remote()
time.sleep(0.1)
started = time.monotonic()
actorlib.cancel(queued)
try:
    actorlib.get(queued, timeout=30)
    print("queued: ran")
except actorlib.exceptions.TaskCancelledError:
    print(f"queued: cancelled {time.monotonic() - started:.2f}")
started = time.monotonic()
actorlib.cancel(running)
try:  # it sees is_canceled() and returns: its caller gets the cancel when it ends
    print(f"running: {actorlib.get(running, timeout=30)}")
except actorlib.exceptions.TaskCancelledError:
    print(f"running: cancelled {time.monotonic() - started:.2f}")
actorlib.shutdown()
"""


def test_a_cancel_reaches_a_call_run_inline_whatever_the_watchdog(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the watchdog's looks an hour apart, only the driver's nudge passes reading
    on while a call runs as the reading thread's inline work: a cancel of that call, and
    of one queued behind it, must still be read at once (they waited for the call's end).
    In a script of its own: under pytest something else happens to pass reading on."""
    script = tmp_path / "cancel_inline.py"
    script.write_text(_CANCEL_SCRIPT)
    monkeypatch.setenv("ACTORLIB_INLINE_WATCH_S", "3600")
    out = run_script(str(script), "process", timeout=T).stdout.split()
    assert out[:2] == ["queued:", "cancelled"] and float(out[2]) < 2.0, out
    assert out[3:5] == ["running:", "cancelled"] and float(out[5]) < 2.0, out
