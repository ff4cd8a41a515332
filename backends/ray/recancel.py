"""A task's soft cancel, sent to Ray again until the task has ended.

Ray 2.60 drops a cancel that reaches the worker between its receiving the task and
starting it: the worker finds it neither running nor in its queue ("Cancelling a task
that's not running"), answers that the attempt failed, and Ray does not try again, so the
task runs to its end as if never cancelled (a task blocked in ``get`` on a call that never
returns: for good). Ray retries only a cancel that found the task running. So each soft
cancel of a task is sent again a few times, backing off, until the task's result has come;
the worker lets a second interrupt of a task whose first one landed pass (see
``worker._note_cancels``), so a task that catches the interrupt still sees it once.

The cancels sent again are never recursive. A recursive cancel makes Ray's worker cancel
every task and actor call the task has pending as it arrives, whether its interrupt lets
it pass or not: sent again, it cancelled the work a task that caught the interrupt
submitted after it (a cleanup call, a ``wait`` on a gate), which no backend cancels (a
cancel reaches the children the task has when it is made). The first cancel, if it
landed, cancelled those; one Ray dropped met a task that had not started, with none.

Every cancel the backend sends on its own (these, and those of shutdown and of a removed
placement group) goes through :func:`cancel_pending`, which never cancels what has ended.

A cancel that meets a plain task just as its reply comes ends the whole driver in Ray
2.60: its submitter has already let the task go as running but its task manager has not
filed the result, so the cancel fails the task and the filing then fails a check ("Tried
to complete task that was not pending", an abort). A Pool leaving its block after an error
force-cancels calls that are ending right then: on plain Ray too, 1 run in 5 of a
``with Pool(2)`` around a failing ``map`` ended the driver. So a forced cancel, and those
of shutdown and of a removed placement group, first leave the tasks a moment
(:data:`SETTLE_S`) to end by themselves; only those still running are cancelled. That
covers tasks ending as the cancel is made, not one whose end meets the cancel later:
short tasks that outlast the moment (waiting for a worker Ray restarts after a forced
cancel killed one) still meet Ray's fault (numbers on the Ray backend page).
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from typing import Any

from actorlib.backends.ray.connector import ray_module
from actorlib.core.interruptible import shield_signals

ray = ray_module()

#: Seconds after the cancel (then after each resend) to look again: 7.5 s in all.
DELAYS = (0.5, 1.0, 2.0, 4.0)

#: Seconds a forced cancel leaves a plain task to end by itself (see the module docstring).
SETTLE_S = 0.1


class SettleWindow:
    """The moment forced cancels leave their tasks, shared by a burst of them: the first
    cancel opens it, those within it wait only for what is left of it (a Pool's
    ``terminate`` cancels its calls one by one, and waits once)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until = 0.0

    def still_running(self, ref: Any) -> bool:
        """Whether ``ref``'s task is still running once the window is over."""
        now = time.monotonic()
        with self._lock:
            if self._until <= now:
                self._until = now + SETTLE_S
            left = self._until - now
        return bool(_unfinished([ref], left))


class Recanceller:
    """Resends the soft cancels of tasks that have not ended, from one thread of its own
    started with the first cancel, until :meth:`close`."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        # (due, order, Ray ref, resends so far)
        self._due: list[tuple[float, int, Any, int]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = False

    def add(self, ref: Any) -> None:
        """``ref``'s task was sent a soft cancel now: look again later (and send it
        again, not recursive: see the module docstring)."""
        with self._cond:
            if self._closed:
                return
            heapq.heappush(self._due, (time.monotonic() + DELAYS[0], next(self._order),
                                       ref, 0))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="actorlib-ray-recancel")
                self._thread.start()
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._due.clear()
            thread, self._thread = self._thread, None
            self._cond.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        shield_signals()
        while True:
            with self._cond:
                while not self._closed and (
                        not self._due or self._due[0][0] > time.monotonic()):
                    self._cond.wait(self._due[0][0] - time.monotonic() if self._due else None)
                if self._closed:
                    return
                now = time.monotonic()
                ripe = []
                while self._due and self._due[0][0] <= now:
                    ripe.append(heapq.heappop(self._due))
            for _, _, ref, sent in ripe:
                if not self._resend(ref) or sent + 1 >= len(DELAYS):
                    continue
                with self._cond:
                    if not self._closed:
                        heapq.heappush(self._due, (time.monotonic() + DELAYS[sent + 1],
                                                   next(self._order), ref, sent + 1))

    @staticmethod
    def _resend(ref: Any) -> bool:
        """Cancel ``ref``'s task again unless it has ended; whether it had not."""
        return cancel_pending([ref], force=False, recursive=False) > 0


def cancel_pending(tasks: list[Any], *, force: bool, recursive: bool,
                   settle: float = 0.0) -> int:
    """Cancel those of ``tasks`` (Ray refs, or streams: always) whose results have not
    come within ``settle`` seconds; how many cancels were sent. Never one whose result
    has come: Ray 2.60 ends the driver for a cancel that meets a result it is still
    filing (see the module docstring)."""
    pending = _unfinished([r for r in tasks if isinstance(r, ray.ObjectRef)], settle)
    if pending is None:
        return 0
    sent = 0
    for task in [*pending, *(r for r in tasks if not isinstance(r, ray.ObjectRef))]:
        try:
            ray.cancel(task, force=force, recursive=recursive)
        except Exception:  # ended meanwhile
            continue
        sent += 1
    return sent


def _unfinished(refs: list[Any], timeout: float) -> list[Any] | None:
    """Those of ``refs`` whose results have not come within ``timeout`` seconds; None if
    Ray is gone (its tasks went with it)."""
    if not refs:
        return []
    try:
        return list(ray.wait(refs, num_returns=len(refs), timeout=timeout,
                             fetch_local=False)[1])
    except Exception:
        return None
