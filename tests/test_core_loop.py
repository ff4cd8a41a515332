"""The core's loop thread and its inline mode (:mod:`actorlib.core.loop`).

In inline mode the thread that posts with ``post_inline`` runs the core's work itself
when no other thread is running it. What must hold whatever the interleaving: every
posted item runs exactly once, never two at a time, each poster's items in the order
it posted them, the hooks after each batch run, nothing is left in the inbox when the
posters stop (a post that found the lock taken is run by the holder), and a blocking
``call`` from inside the core's work runs inline instead of waiting on itself.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from actorlib.core.loop import LoopThread


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    lt = LoopThread(name="actorlib-core-test")
    lt.start()
    try:
        yield lt
    finally:
        lt.stop()


class Recorder:
    """Posted work that checks it never runs beside other posted work."""

    def __init__(self) -> None:
        self.ran: list[Any] = []
        self.threads: list[int] = []
        self.busy = False
        self.overlaps = 0

    def __call__(self, item: Any) -> None:
        if self.busy:
            self.overlaps += 1
        self.busy = True
        self.ran.append(item)
        self.threads.append(threading.get_ident())
        for _ in range(50):  # long enough for another thread to try to get in
            pass
        self.busy = False


def test_a_post_inline_runs_on_the_posting_thread(loop: LoopThread) -> None:
    rec = Recorder()
    loop.run_inline(True)
    loop.post_inline(rec, 1)
    assert rec.ran == [1]  # ran before post_inline returned
    assert rec.threads == [threading.get_ident()]
    assert loop.idle()


def test_without_inline_mode_post_inline_goes_to_the_loop_thread(loop: LoopThread) -> None:
    rec = Recorder()
    loop.post_inline(rec, 1)
    loop.call(lambda: None)
    assert rec.ran == [1]
    assert rec.threads == [loop.thread.ident]


def test_the_hooks_run_after_an_inline_batch(loop: LoopThread) -> None:
    hooks: list[int] = []
    loop.on_drained(lambda: hooks.append(threading.get_ident()))
    loop.run_inline(True)
    loop.post_inline(lambda: None)
    assert hooks == [threading.get_ident()]


def test_a_post_made_while_another_thread_runs_the_core_is_run_by_it(
    loop: LoopThread,
) -> None:
    loop.run_inline(True)
    entered, release = threading.Event(), threading.Event()
    rec = Recorder()

    def hold() -> None:
        entered.set()
        release.wait(10)

    holder = threading.Thread(target=loop.post_inline, args=(hold,))
    holder.start()
    assert entered.wait(10)
    loop.post_inline(rec, "queued")  # the lock is taken: this only queues
    assert rec.ran == []
    assert not loop.idle()
    release.set()
    holder.join(10)
    assert rec.ran == ["queued"]
    assert rec.threads == [holder.ident]
    assert loop.idle()


def test_a_plain_post_waits_for_an_inline_holder(loop: LoopThread) -> None:
    """The loop thread takes the same lock: its batch never runs beside an inline one."""
    loop.run_inline(True)
    entered, release = threading.Event(), threading.Event()
    order: list[str] = []

    def hold() -> None:
        entered.set()
        release.wait(10)
        order.append("inline")

    holder = threading.Thread(target=loop.post_inline, args=(hold,))
    holder.start()
    assert entered.wait(10)
    loop.post(order.append, "posted")
    release.set()
    holder.join(10)
    loop.call(lambda: None)
    assert order == ["inline", "posted"]


def test_call_from_inside_inline_work_runs_at_once(loop: LoopThread) -> None:
    loop.run_inline(True)
    answers: list[int] = []
    loop.post_inline(lambda: answers.append(loop.call(lambda: 7, timeout=5)))
    assert answers == [7]


def test_a_post_inline_from_inside_inline_work_joins_the_running_batch(
    loop: LoopThread,
) -> None:
    loop.run_inline(True)
    order: list[str] = []

    def outer() -> None:
        loop.post_inline(order.append, "inner")
        order.append("outer")  # the inner one runs after this, not inside it

    loop.post_inline(outer)
    assert order == ["outer", "inner"]


def test_turning_inline_mode_off_hands_queued_work_to_the_loop_thread(
    loop: LoopThread,
) -> None:
    loop.run_inline(True)
    rec = Recorder()
    # As if a post had found the lock taken and its holder had not run it yet.
    loop._inbox.append((rec, ("left",)))
    loop.run_inline(False)
    loop.call(lambda: None)
    assert rec.ran == ["left"]
    assert rec.threads == [loop.thread.ident]


@pytest.mark.parametrize("rounds", [3])
def test_many_posting_threads_run_everything_once_in_order_one_at_a_time(
    loop: LoopThread, rounds: int
) -> None:
    """Threads posting inline, and plain posts to the loop thread, all at once."""
    loop.run_inline(True)
    rec = Recorder()
    per_thread = 400
    for _ in range(rounds):
        rec.ran.clear()
        start = threading.Barrier(5)

        def poster(name: int, inline: bool, start: threading.Barrier = start) -> None:
            start.wait(10)
            post = loop.post_inline if inline else loop.post
            for i in range(per_thread):
                post(rec, (name, i))

        threads = [threading.Thread(target=poster, args=(n, n != 0)) for n in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        loop.call(lambda: None)  # the plain posts, after the last inline holder
        assert rec.overlaps == 0
        assert sorted(rec.ran) == sorted((n, i) for n in range(5) for i in range(per_thread))
        for n in range(5):
            mine = [i for name, i in rec.ran if name == n]
            assert mine == list(range(per_thread))
        assert loop.idle()


class _LockPostingBeforeRelease:
    """The core's lock, made to let another thread post just before it is released:
    the narrowest window, after the holder's last look at the inbox."""

    def __init__(self, loop: LoopThread, post: Any) -> None:
        self._lock = threading.Lock()
        self._post = post
        self.posted = False

    def acquire(self, blocking: bool = True) -> bool:
        return self._lock.acquire(blocking)

    def release(self) -> None:
        if not self.posted:
            self.posted = True
            other = threading.Thread(target=self._post)
            other.start()
            other.join(10)  # its try for the lock failed: it only queued
        self._lock.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def test_a_post_queued_just_before_the_holder_releases_is_run_by_it(
    loop: LoopThread,
) -> None:
    loop.run_inline(True)
    rec = Recorder()
    loop._core_lock = _LockPostingBeforeRelease(  # type: ignore[assignment]
        loop, lambda: loop.post_inline(rec, "late")
    )
    loop.post_inline(lambda: None)
    assert loop._core_lock.posted  # type: ignore[attr-defined]
    assert rec.ran == ["late"]  # run by this thread, after it released the lock
    assert rec.threads == [threading.get_ident()]
