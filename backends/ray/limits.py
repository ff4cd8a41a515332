"""Concurrency limits (``TaskSpec.concurrency``: the Executor's ``max_workers``) on Ray.

Ray has no such limit, and its CPUs do not bound work either: a task blocked in
``ray.get`` lends its CPU, and Ray starts another. So this process keeps the tasks over
a key's limit to itself (:class:`Held`) and submits the oldest one each time one of the
key's tasks ends. A held task is not in Ray at all, so withdrawing it (the Executor's
``cancel()`` of a queued future) is certain to keep it from running.

The bound counts the tasks this process submitted under a key (the core's scheduler
counts a whole runtime's); the Executor submits all of its calls from one process.
:class:`Limits` is the bookkeeping (the client's lock held around every call);
:class:`HeldTasks`, part of the client, holds, submits and withdraws the tasks.
"""

from __future__ import annotations

import functools
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

from actorlib.backends.ray.boxes import Box
from actorlib.backends.ray.connector import ray_module
from actorlib.backends.ray.errors import error_value
from actorlib.backends.ray.interrupts import SigintDeferred
from actorlib.core import interruptible
from actorlib.core.serialization import Serialized
from actorlib.core.specs import TaskSpec
from actorlib.core.values import cancelled_value
from actorlib.core.waiting import completer
from actorlib.exceptions import NotSupportedError, RuntimeClosedError

#: A held task's states: waiting for a slot, given one (to be submitted), being
#: submitted or in Ray, or withdrawn (it never runs).
QUEUED, RELEASED, SUBMITTED, WITHDRAWN = "queued", "released", "submitted", "withdrawn"

ray = ray_module()


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
        #: How many held tasks still stand in for Ray refs (none: the waits skip looking).
        self.standing = 0

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
        self.standing += 1
        return held

    def stood(self, held: Held) -> None:
        """``held``'s ids map to Ray refs now (it was submitted, or resolved)."""
        if not held.submitted.is_set():
            held.submitted.set()
            self.standing -= 1

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
        self.standing = 0


class HeldTasks:
    """The client's side of the limits: it holds tasks, submits them as slots free,
    withdraws them. Part of :class:`~.client.RayCore`, whose tables and lock it uses."""

    closed: bool
    _lock: threading.RLock
    _refs: dict[int, list[Any]]
    _watches: dict[Any, set[int]]
    _watchers: dict[int, set[Any]]
    _hooked: set[int]
    _large: set[Any]
    _limits: Limits

    if TYPE_CHECKING:  # the client's own
        def _ray_ref(self, id_: int) -> Any: ...
        def _completed(self, id_: int, data: Any) -> None: ...
        def _deliver(self, id_: int, data: Any, hooked: bool = False) -> None: ...
        def _send(self, spec: TaskSpec) -> Any: ...
        def _accepted(self, spec: TaskSpec, out: Any, held: Held | None = None) -> None: ...
        def _adopt_returns(
            self, ids: tuple[int, ...], out: Any, held: Held | None = None,
        ) -> list[Any]: ...

    def _admit(self, spec: TaskSpec) -> bool:
        """True if ``spec`` goes to Ray now; else it is held, its ids standing for it."""
        if spec.generator == "streaming" or not spec.return_ids:
            raise NotSupportedError(
                "a concurrency limit (_concurrency) on the ray backend needs a task with "
                "at least one return that is not a streaming generator"
            )
        with self._lock:
            held = self._limits.admit(spec)
            if held is None:
                return True
            for id_ in spec.return_ids:
                self._refs[id_] = [held, 1, False]
        return False

    def _track(self, spec: TaskSpec, refs: list[Any]) -> None:
        """A limited task is in Ray: its slot frees when its first return completes.
        Its watched returns get their completion callbacks now (a watch made while it
        was held could not hook a Ray ref)."""
        assert spec.concurrency is not None
        first = spec.return_ids[0]
        with self._lock:
            self._limits.tracked[first] = (spec.concurrency[0], refs[0])
            hook = [(id_, ref) for id_, ref in zip(spec.return_ids, refs, strict=True)
                    if id_ not in self._hooked and (id_ == first or self._is_watched(id_))]
            self._hooked.update(id_ for id_, _ in hook)
        for id_, ref in hook:
            ref._on_completed(functools.partial(self._completed, id_))

    def _is_watched(self, id_: int) -> bool:
        """With the lock held: some watch waits for ``id_``."""
        if id_ in self._watchers:
            return True
        return any(id_ in self._watches.get(callback, ()) for callback in self._large)

    def _slot_freed(self, id_: int) -> None:
        """A limited task ended (on Ray's callback thread): its slot goes to the oldest
        held task of its key, submitted from the completer thread (Ray's callback
        thread must not wait for Ray)."""
        with self._lock:
            found = self._limits.tracked.pop(id_, None)
        if found is not None:
            self._give_back(found[0])

    def _give_back(self, key: str) -> None:
        """A slot under ``key`` is free (its task ended, or never reached Ray)."""
        with self._lock:
            released = self._limits.leave(key)
        if released:
            completer.submit(functools.partial(self._submit_held, released))

    def _submit_held(self, helds: list[Held]) -> None:
        """Submit released held tasks, each once (a ``ray_ref`` of one may come first).

        A task Ray refused never runs: its ids hold the error and its slot frees. A
        Ctrl-C while one is submitted inline (from the main thread) is held back until
        Ray has it and its ids and slot are tracked (:mod:`.interrupts`), then goes on
        up; the other tasks are submitted by the completer. Any other interruption
        that ``.remote()`` itself raises counts as a refusal."""
        for i, held in enumerate(helds):
            try:
                # From marking it SUBMITTED until Ray has it and it is tracked: a Ctrl-C
                # meanwhile is raised once that is done (at the block's end).
                with SigintDeferred():
                    self._submit_one(held)
            except BaseException:
                if i + 1 < len(helds):  # the others still go to Ray
                    completer.submit(functools.partial(self._submit_held, helds[i + 1:]))
                raise

    def _submit_one(self, held: Held) -> None:
        with self._lock:
            if held.state is not RELEASED:
                return
            held.state = SUBMITTED
        try:
            if self.closed:
                return
            try:
                out = self._send(held.spec)
            except BaseException as exc:  # its ids hold the error, its slot frees
                try:
                    self._resolve(held, error_value(exc))
                finally:
                    self._give_back(held.key)
                if not isinstance(exc, Exception):
                    raise
                return
            self._accepted(held.spec, out, held)
        finally:
            with self._lock:
                self._limits.stood(held)

    def _take_now(self, id_: int, held: Held) -> Any:
        """The Ray ref of a held task's return, needed now (the ref goes into other
        work, which Ray must see depend on it): the task is submitted out of turn,
        beyond its limit, unless a slot took it already."""
        with self._lock:
            self._limits.take_now(held)
        self._submit_held([held])
        # Another thread may be submitting it (the completer, in Ray's ``.remote()``):
        # on the main thread, Ctrl-C gets in meanwhile.
        interruptible.wait(held.submitted)
        with self._lock:
            ref = self._ray_ref(id_)
        if type(ref) is Held:
            raise RuntimeClosedError("actorlib was shut down")
        return ref

    def _resolve(self, held: Held, value: Serialized) -> None:
        """A held task that will not run: its return ids hold ``value`` (an error)."""
        ids = held.spec.return_ids
        try:
            self._adopt_returns(ids, [ray.put(Box(value, {})) for _ in ids], held)
        finally:  # a waiting _take_now goes on (and finds no ref) even if Ray failed
            with self._lock:
                self._limits.stood(held)
        for id_ in ids:
            self._deliver(id_, value)

    def withdraw(self, object_ids: list[int]) -> list[bool]:
        """Only a task held over its concurrency limit is taken back: Ray cannot tell
        whether a task it has is about to start (a cancel that cannot be kept is never
        promised). The withdrawn task's returns hold its cancellation error."""
        taken = []
        for id_ in object_ids:
            with self._lock:
                entry = self._refs.get(id_)
                held = entry[0] if entry is not None else None
                took = type(held) is Held and self._limits.withdraw(held)
            if took:
                assert type(held) is Held
                self._resolve(held, cancelled_value(held.spec.name))
            taken.append(took)
        return taken
