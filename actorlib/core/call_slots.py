"""Which of the calls handed to an actor it runs now, and since when.

An actor's host starts the calls it is handed in the order it gets them, at most each
concurrency group's limit at once (``max_concurrency`` for the default group), and starts
a group's next waiting call as soon as one of that group's calls ends. The core sees every
hand-over and every end, so it follows the same rule here instead of asking the host. A
call handed to a full group *waits* (``SUBMITTED_TO_WORKER`` in the state API, no start
time yet) until an end frees its group's place; it *starts* then. Before its constructor
has returned (the core hears ``actor_started``), an actor has no place at all. Without
this, every call handed over read as running since its hand-over: a sync actor showed
many calls running at once, and the timeline drew them overlapping.

:func:`group_limits` and :func:`group_of` are the rule itself, shared with the host
(``backends/runner/actor_host.py``), so the two cannot drift apart.

Runs on the core loop only, as the mailbox that holds it.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from actorlib.core.mailbox import CallRecord
    from actorlib.core.specs import ActorSpec, CallSpec

def group_limits(spec: ActorSpec) -> dict[str, int]:
    """Each concurrency group's limit: ``max_concurrency`` for the default group ("")."""
    return {"": spec.max_concurrency, **(spec.concurrency_groups or {})}


def group_of(spec: CallSpec, method_groups: dict[str, str] | None) -> str:
    """A call's concurrency group: set for this call, else its method's, else ""."""
    if spec.concurrency_group is not None:
        return spec.concurrency_group
    return method_groups.get(spec.method, "") if method_groups else ""


#: ``CallRecord.group`` of a call that holds no place: its group is not one of the actor's
#: (its host fails it at once), or it is not in flight.
NO_PLACE = None


class CallSlots:
    """An actor's places to run calls, per concurrency group, and the calls waiting for
    one, in hand-over order."""

    __slots__ = ("free", "limits", "method_groups", "waiting")

    def __init__(self, spec: ActorSpec) -> None:
        self.limits = group_limits(spec)
        # places not taken, per group: none until the actor's constructor has returned
        self.free = dict.fromkeys(self.limits, 0)
        self.method_groups = spec.method_groups or {}
        self.waiting: dict[str, collections.deque[CallRecord]] = {}

    def handed(self, call: CallRecord, now: float) -> None:
        """``call`` went to the host: it starts now if its group has a place, else waits."""
        group = group_of(call.spec, self.method_groups)
        free = self.free.get(group)
        if free is None:  # not a group of this actor: failed at once, never waiting
            call.group = NO_PLACE
            call.running = True
            call.started = now
        elif free:
            self.free[group] = free - 1
            call.group = group
            call.running = True
            call.started = now
        else:
            call.group = group
            call.running = False
            call.started = 0.0
            waiting = self.waiting.get(group)
            if waiting is None:
                waiting = self.waiting[group] = collections.deque()
            waiting.append(call)

    def ended(self, call: CallRecord, now: float) -> None:
        """``call``, handed over, is no longer in flight (it ended, or came back to be
        retried): its place goes to its group's first waiting call, which starts now."""
        group = call.group
        if group is NO_PLACE:
            return
        call.group = NO_PLACE
        waiting = self.waiting.get(group)
        if not call.running:  # it never started: it leaves the line
            if waiting is not None and call in waiting:
                waiting.remove(call)
            return
        call.running = False
        if waiting:
            successor = waiting.popleft()
            successor.running = True
            successor.started = now
        else:
            self.free[group] += 1

    def open(self, now: float) -> None:
        """The actor's constructor returned: its places open, and the calls handed to it
        meanwhile start, as many as each group takes."""
        free = self.free
        for group, limit in self.limits.items():
            free[group] = limit
            waiting = self.waiting.get(group)
            while waiting and free[group]:
                call = waiting.popleft()
                call.running = True
                call.started = now
                free[group] -= 1

    def clear(self, calls: Iterable[CallRecord]) -> None:
        """The actor's host is gone: ``calls``, the ones in flight, hold no place any more,
        and there is none until the next incarnation opens."""
        for call in calls:
            call.group = NO_PLACE
            call.running = False
        self.waiting.clear()
        self.free = dict.fromkeys(self.limits, 0)
