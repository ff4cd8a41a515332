"""Concurrency limits (``TaskSpec.concurrency``: the Executor's ``max_workers``) on Ray.

Ray has no such limit, and its CPUs do not bound work either: a task blocked in
``ray.get`` lends its CPU, and Ray starts another. So this process keeps the tasks over
a key's limit to itself (:class:`Held`) and submits the oldest one each time one of the
key's tasks ends. A held task is not in Ray at all, so withdrawing it (the Executor's
``cancel()`` of a queued future) is certain to keep it from running.

The bound counts the tasks this process submitted under a key (the core's scheduler
counts a whole runtime's); the Executor submits all of its calls from one process.
This module is bookkeeping only: the client (:mod:`.client`) holds its lock around
every call here and makes the Ray calls itself.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from actorlib.core.specs import TaskSpec

#: A held task's states: waiting for a slot, given one (to be submitted), being
#: submitted or in Ray, or withdrawn (it never runs).
QUEUED, RELEASED, SUBMITTED, WITHDRAWN = "queued", "released", "submitted", "withdrawn"


class Held:
    """A task kept out of Ray until a slot under its limit frees; it stands in for the
    Ray refs of its return ids (in the client's table) until it is submitted."""

    __slots__ = ("key", "spec", "state", "submitted")

    def __init__(self, spec: TaskSpec, key: str) -> None:
        self.spec = spec
        self.key = key
        self.state = QUEUED
        # Set once the task is in Ray and its return ids map to Ray's refs.
        self.submitted = threading.Event()


class Limits:
    """Per key: how many of this process's tasks are in Ray, and those held back."""

    def __init__(self) -> None:
        self._running: dict[str, int] = {}
        self._queues: dict[str, deque[Held]] = {}
        #: A submitted limited task's first return id -> (its key, its Ray ref): the
        #: slot frees when that ref completes (kept here so Ray keeps the object until).
        self.tracked: dict[int, tuple[str, Any]] = {}

    def admit(self, spec: TaskSpec) -> Held | None:
        """None if ``spec`` may go to Ray now (its slot is counted), else it is held."""
        assert spec.concurrency is not None
        key, limit = spec.concurrency
        queue = self._queues.get(key)
        if not queue and self._running.get(key, 0) < limit:
            self._running[key] = self._running.get(key, 0) + 1
            return None
        held = Held(spec, key)
        self._queues.setdefault(key, deque()).append(held)
        return held

    def leave(self, key: str) -> list[Held]:
        """A task under ``key`` ended: the held ones that take the freed slots now."""
        left = self._running.get(key, 0) - 1
        if left > 0:
            self._running[key] = left
        else:
            self._running.pop(key, None)
        return self._next(key)

    def _next(self, key: str) -> list[Held]:
        queue = self._queues.get(key)
        out: list[Held] = []
        while queue:
            head = queue[0]
            if head.state is not QUEUED:  # withdrawn, or taken out of turn
                queue.popleft()
                continue
            assert head.spec.concurrency is not None
            if self._running.get(key, 0) >= head.spec.concurrency[1]:
                break
            queue.popleft()
            head.state = RELEASED
            self._running[key] = self._running.get(key, 0) + 1
            out.append(head)
        if queue is not None and not queue:
            del self._queues[key]
        return out

    def withdraw(self, held: Held) -> bool:
        """Take ``held`` back if it still waits for a slot (it will never run)."""
        if held.state is not QUEUED:
            return False
        held.state = WITHDRAWN
        return True

    def take_now(self, held: Held) -> bool:
        """``held`` is needed in Ray at once (its ref goes into other work): submitted
        out of turn, beyond the limit. False if it was withdrawn or released already."""
        if held.state is not QUEUED:
            return False
        held.state = RELEASED
        self._running[held.key] = self._running.get(held.key, 0) + 1
        return True

    def clear(self) -> None:
        """The runtime is shutting down: no held task runs."""
        for queue in self._queues.values():
            for held in queue:
                if held.state is QUEUED:
                    held.state = WITHDRAWN
                held.submitted.set()  # a thread waiting for its submission gives up
        self._queues.clear()
        self._running.clear()
        self.tracked.clear()
