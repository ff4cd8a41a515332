"""The core's event loop, on a thread of its own, and the batched way into it.

Other threads never touch core state. They append ``(fn, args)`` to an inbox; the first
append after a drain wakes the loop once (``call_soon_threadsafe``), and the loop runs
everything queued in one turn. A burst of ``.remote()`` calls thus costs one wake-up, not
one per call, and needs no lock: deque appends and pops are atomic. Posts made on the
loop thread itself (a worker's message, an event raised while draining) never write the
loop's wake-up fd: they join the running drain, or the next turn via ``call_soon``.

Inline mode (:meth:`LoopThread.run_inline`, for a backend whose methods any thread may
call, the thread backend): the core's state is owned by whichever thread holds the
core lock, not by the loop thread alone. A post made through :meth:`post_inline` (a
submission, a watch, a task's end) runs the inbox on the posting thread at once when no
other thread is running it, so a task goes caller → task thread → caller with no hop
through the loop thread. A post that finds the lock taken only queues: the holder checks
the inbox again after releasing the lock, so nothing is left behind. Nothing ever waits
for the lock except the loop thread, so no lock order can deadlock.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from _thread import get_ident
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from actorlib.core.fds import fill_standard_fds
from actorlib.core.interruptible import shield_signals
from actorlib.exceptions import RuntimeClosedError

T = TypeVar("T")
log = logging.getLogger("actorlib.core")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where installed, asyncio's own loop otherwise."""
    fill_standard_fds()
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _nothing() -> None:
    """Posted to wake the loop thread for what is queued already."""


class LoopThread:
    def __init__(self, name: str = "actorlib-core") -> None:
        self.loop = new_event_loop()
        self._inbox: collections.deque[tuple[Callable[..., Any], tuple[Any, ...]]] = (
            collections.deque()
        )
        self._wake_pending = False
        self._ident: int | None = None  # the loop thread's, once it runs
        self._after_drain: list[Callable[[], None]] = []
        self._closed = False
        # While lent (``lend``): whether the calling thread is the borrower.
        self._borrower: Callable[[], bool] | None = None
        self._os_thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._ready = threading.Event()
        # Inline mode: who runs the inbox holds ``_core_lock``; ``_owner`` is its ident.
        self._inline_on = False
        self._core_lock = threading.Lock()
        self._owner: int | None = None

    def start(self) -> None:
        self._os_thread.start()
        self._ready.wait()

    def on_drained(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` after each batch of posted work (used to schedule once per batch)."""
        self._after_drain.append(fn)

    @property
    def thread(self) -> threading.Thread:
        return self._os_thread

    def in_loop_thread(self) -> bool:
        return threading.current_thread() is self._os_thread

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop, soon, in posting order. Callable from any thread."""
        self._inbox.append((fn, args))
        if not self._wake_pending:
            self._wake()

    def _wake(self) -> None:
        """Have the loop drain the inbox soon (no wake-up is pending)."""
        self._wake_pending = True
        try:
            if get_ident() == self._ident:
                self.loop.call_soon(self._drain)
            else:
                self.loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # loop closed during shutdown: nothing will run it
            self._wake_pending = False

    def idle(self) -> bool:
        """Whether everything posted so far has been handled, the hooks after each batch
        included: nothing is in the inbox and no drain is due or running. Callable from
        any thread; a post made after it answers is not covered."""
        return not self._wake_pending and not self._inbox and self._owner is None

    # -- inline mode: the posting thread runs the core's work ------------------------------

    def run_inline(self, on: bool) -> None:
        """Let threads that post with :meth:`post_inline` run the inbox themselves (on), or
        hand everything back to the loop thread (off: before a backend stops, say)."""
        self._inline_on = on
        if not on and self._inbox:
            self.post(_nothing)  # a post queued by a thread that found the lock taken

    def post_inline(self, fn: Callable[..., Any], *args: Any) -> None:
        """Like :meth:`post`, but in inline mode run the inbox here unless another thread
        is running it (then that thread runs this too). Only from a thread that holds no
        lock the core's work may take (a backend's or a watcher's): a ref's ``__del__``,
        which may run anywhere, posts with :meth:`post`."""
        self.post_inline_args(fn, args)

    def post_inline_args(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        """:meth:`post_inline` of ``fn(*args)``, the arguments in a tuple: CPython 3.11 calls
        a function taking ``*args`` on its slow path (no specialized call, a C-level call
        into the interpreter again), and every submission and end comes here."""
        inbox = self._inbox
        if not self._inline_on:  # ``post``, without its frame (every submission and end)
            inbox.append((fn, args))
            if not self._wake_pending:
                self._wake()
            return
        ident = get_ident()
        if self._owner == ident:
            inbox.append((fn, args))
            return  # the drain running on this thread takes it
        lock = self._core_lock
        # Nothing queued and the lock free (nearly always): ``fn`` runs at once, with no
        # trip through the inbox. Else it is queued first, and the lock tried after: a
        # thread that releases the lock looks at the inbox after that, so one of the two
        # runs it.
        direct = not inbox and lock.acquire(False)
        if not direct:
            inbox.append((fn, args))
            if not (inbox and lock.acquire(False)):
                return
        # ``_drain_here``, without its frame (every submission and end comes here)
        while True:
            self._owner = ident
            try:
                if direct:
                    direct = False
                    try:
                        fn(*args)
                    except Exception:
                        log.exception("actorlib core: internal error in %r", fn)
                self._run_inbox()  # what was queued meanwhile, then the hooks after it
            finally:
                self._owner = None
                lock.release()
            if not (inbox and lock.acquire(False)):
                return  # (queued after the last look, by a thread that found it taken)

    def _drain_here(self) -> None:
        lock = self._core_lock
        inbox = self._inbox
        while inbox and lock.acquire(False):
            self._owner = get_ident()
            try:
                self._run_inbox()
            finally:
                self._owner = None
                lock.release()
            # A post that found the lock taken only queued: see to it now.

    # -- lending: a backend that runs everything one step at a time (``sim``) ------------

    def lend(self, borrower: Callable[[], bool]) -> bool:
        """Let the borrowing threads run the core's work themselves, until :meth:`reclaim`.

        Only when idle (else False, nothing changed). While lent, a post from any thread
        only queues (``_wake_pending`` stays set, so nothing wakes the loop), the
        borrower runs the queue with :meth:`drain_lent`, and ``call`` from a thread for
        which ``borrower()`` is true drains and runs inline. The borrower guarantees that
        one thread at a time does so (the ``sim`` backend's baton): the core still has
        one owner at a time, without a thread switch per step.
        """
        if self._wake_pending or self._inbox or self._closed:
            return False
        self._wake_pending = True
        self._borrower = borrower
        return True

    def queued(self) -> list[Callable[..., Any]]:
        """The functions posted that wait to run (while lent: what no borrower has
        drained yet). Callable from any thread (the copy is made under the GIL)."""
        return [fn for fn, _args in list(self._inbox)]

    def drain_lent(self) -> None:
        """Run what is queued, and the hooks after it, on the borrowing thread."""
        self._run_inbox()

    def reclaim(self) -> None:
        """End a :meth:`lend`: the loop thread runs whatever is queued, as usual."""
        self._borrower = None
        try:
            self.loop.call_soon_threadsafe(self._drain)  # ``_wake_pending`` is still set
        except RuntimeError:  # loop closed during shutdown: nothing will run it
            self._wake_pending = False

    def _run_inbox(self) -> None:
        inbox = self._inbox
        popleft = inbox.popleft
        while True:
            while inbox:
                fn, args = popleft()
                try:
                    fn(*args)
                except Exception:
                    log.exception("actorlib core: internal error in %r", fn)
            for hook in self._after_drain:
                try:
                    hook()
                except Exception:
                    log.exception("actorlib core: internal error in %r", hook)
            if not inbox:
                return

    def _drain(self) -> None:
        if self._borrower is not None:  # a wake-up that raced a lend: the borrower drains
            return
        # ``_wake_pending`` stays set while draining, so posts made meanwhile (from this
        # thread or others) are picked up here without another wake-up. It is cleared
        # before the inbox is checked one last time: a post that saw it set is seen then.
        with self._core_lock:
            self._owner = self._ident
            try:
                while True:
                    self._run_inbox()
                    self._wake_pending = False
                    if not self._inbox:
                        break
                    self._wake_pending = True
            finally:
                self._owner = None
        if self._inline_on:
            self._drain_here()  # what was posted inline while this thread held the lock

    def call(self, fn: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        """Run ``fn`` on the loop and wait for its result (for rare, blocking queries)."""
        if self.in_loop_thread() or self._owner == get_ident():
            return fn(*args)
        borrower = self._borrower
        if borrower is not None and borrower():
            self._run_inbox()  # what was posted before runs first
            return fn(*args)
        done = threading.Event()
        box: list[Any] = []

        def run() -> None:
            try:
                box.append((True, fn(*args)))
            except BaseException as exc:
                box.append((False, exc))
            done.set()

        self.post(run)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not done.wait(0.1):
            if not self._os_thread.is_alive():
                raise RuntimeClosedError("actorlib was shut down")
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"the actorlib core did not answer within {timeout} s")
        ok, value = box[0]
        if ok:
            return value
        raise value

    def run_coroutine(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def _run(self) -> None:
        shield_signals()  # threads and processes started here: see shield_signals
        asyncio.set_event_loop(self.loop)
        self._ident = get_ident()
        self.loop.call_soon(self._ready.set)
        try:
            self.loop.run_forever()
        finally:
            self._closed = True
        self._close_loop()

    def _close_loop(self) -> None:
        """Cancel what is left and close the loop, on its own thread: the thread calling
        :meth:`stop` may run an event loop of its own (a Jupyter kernel's), and a loop
        cannot run in a thread where another one runs."""
        loop = self.loop
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()

    def stop(self) -> None:
        """Drain what is queued, stop the loop and join the thread (which closes it)."""
        if not self._os_thread.is_alive():
            return

        def halt() -> None:
            self._drain()
            self.loop.stop()

        self.loop.call_soon_threadsafe(halt)
        self._os_thread.join()
