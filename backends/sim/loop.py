"""The event loop of async actors under simulation: virtual time, stepped from outside.

asyncio's own loop runs every ready callback in turn and sleeps in ``select`` until a
timer is due. Here nothing runs by itself: the simulator runs one ready handle at a time
(so it picks which coroutine resumes next), and time is a number it advances when it
chooses to (to the next timer), so ``asyncio.sleep(60)`` takes no wall-clock time.
Runs on CPython's asyncio internals (``_ready``, ``_scheduled``), which have been stable
since 3.7; tested on the versions CI runs.
"""

from __future__ import annotations

import asyncio
import heapq
from typing import Any


class Clock:
    """Virtual seconds since the simulation started."""

    __slots__ = ("now",)

    def __init__(self) -> None:
        self.now = 0.0


class SimLoop(asyncio.BaseEventLoop):
    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self._sim_clock = clock
        self.set_exception_handler(_quiet_when_closed)

    def time(self) -> float:
        return self._sim_clock.now

    def _write_to_self(self) -> None:  # nothing sleeps in select: nothing to wake
        pass

    def _process_events(self, event_list: Any) -> None:  # pragma: no cover - no I/O
        pass

    # -- what the simulator asks --------------------------------------------------------

    def pending(self) -> bool:
        """Whether anything is ready or scheduled (a cheap test before the others)."""
        return bool(self._ready or self._scheduled)  # type: ignore[attr-defined]

    def has_ready(self) -> bool:
        """Whether any handle is in the ready queue (cancelled ones included)."""
        return bool(self._ready)  # type: ignore[attr-defined]

    def ready_handles(self) -> list[asyncio.Handle]:
        return [h for h in self._ready if not h._cancelled]  # type: ignore[attr-defined]

    def drop_cancelled(self) -> None:
        ready = self._ready  # type: ignore[attr-defined]
        for handle in ready:
            if handle._cancelled:
                kept = [h for h in ready if not h._cancelled]
                ready.clear()
                ready.extend(kept)
                return

    def plain_handles(self) -> list[asyncio.Handle]:
        """The ready handles that are plain callbacks (not a coroutine's step)."""
        return [
            h for h in self._ready  # type: ignore[attr-defined]
            if not h._cancelled and not isinstance(getattr(h._callback, "__self__", None),
                                                   asyncio.Task)
        ]

    def next_timer(self) -> float | None:
        """When the earliest live timer is due, None if there is none."""
        scheduled = self._scheduled  # type: ignore[attr-defined]
        while scheduled and scheduled[0]._cancelled:
            heapq.heappop(scheduled)._scheduled = False
            self._timer_cancelled_count -= 1  # type: ignore[attr-defined]
        return scheduled[0]._when if scheduled else None

    def fire_due(self) -> None:
        """Move timers due at the current virtual time to the ready queue (in time order)."""
        scheduled = self._scheduled  # type: ignore[attr-defined]
        now = self._sim_clock.now
        while scheduled:
            head = scheduled[0]
            if head._cancelled:
                heapq.heappop(scheduled)._scheduled = False
                self._timer_cancelled_count -= 1  # type: ignore[attr-defined]
                continue
            if head._when > now:
                return
            handle = heapq.heappop(scheduled)
            handle._scheduled = False
            self._ready.append(handle)  # type: ignore[attr-defined]

    def take(self, handle: asyncio.Handle) -> None:
        self._ready.remove(handle)  # type: ignore[attr-defined]


def task_of(handle: asyncio.Handle) -> asyncio.Task[Any] | None:
    """The task a ready handle steps or wakes, None for a plain callback."""
    owner = getattr(handle._callback, "__self__", None)  # type: ignore[attr-defined]
    return owner if isinstance(owner, asyncio.Task) else None


def run_handle(loop: SimLoop, handle: asyncio.Handle) -> None:
    """Run one handle as the loop would, with ``loop`` as this thread's running loop."""
    previous = asyncio._get_running_loop()
    asyncio._set_running_loop(loop)
    try:
        handle._run()
    finally:
        asyncio._set_running_loop(previous)


def _quiet_when_closed(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """A killed actor's coroutines are dropped mid-await: that is the point, not an error."""
    if loop.is_closed() or getattr(loop, "_sim_dropped", False):
        return
    loop.default_exception_handler(context)
