"""An actor's mailbox: its pending calls and the order they are handed over in.

Ordering rule: calls from one caller are handed to the backend in submission order, and a
call is handed over only when every earlier call from that caller has been handed over
(so a later call whose arguments are ready first still waits). The backend starts calls
in the order it receives them. When an actor dies, its calls in flight go back to the
*front* of their callers' queues, in order, so a retried call still runs before every
later one. A call that may be retried on an application error holds back its caller's
later calls until it has finally finished (its caller's *barrier*).

Every change to the queues goes through a method here, which keeps the rule; the actor's
lifecycle (:mod:`actorlib.core.actors`) decides when calls move.

Runs on the core loop only; no locks.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator

from actorlib.core.call_slots import CallSlots
from actorlib.core.specs import CallSpec
from actorlib.core.state import event_time


class CallRecord:
    __slots__ = ("cancelled", "created", "group", "pid", "remaining", "running", "spec",
                 "started")

    def __init__(self, spec: CallSpec) -> None:
        self.spec = spec
        self.remaining = 0  # dependencies not yet ready
        self.cancelled = False
        self.created = event_time()  # for the state API (actorlib.core.state)
        self.started = 0.0  # when its last attempt started running (see CallSlots)
        self.pid = 0  # the process that ran its last attempt (from its outcome)
        self.group: str | None = None  # the concurrency group whose place it holds
        self.running = False  # handed over and started (else it waits for a place)


def may_retry(call: CallRecord, actor_limit: int) -> bool:
    """Whether ``call`` has a try left: its own ``max_task_retries``, else the actor's
    (``actor_limit``); negative means no limit."""
    limit = call.spec.max_task_retries
    if limit is None:
        limit = actor_limit
    return limit < 0 or call.spec.attempt < limit


class Mailbox:
    __slots__ = ("barrier", "inflight", "queues", "slots")

    def __init__(self, slots: CallSlots) -> None:
        # caller id -> calls not yet handed to the backend, in submission order
        self.queues: dict[int, collections.deque[CallRecord]] = {}
        # call id -> call handed to the backend, in hand-over order
        self.inflight: dict[int, CallRecord] = {}
        # caller id -> call that must finish before the caller's next one is handed over
        self.barrier: dict[int, int] = {}
        # which calls in flight the actor runs now, and which wait for a place
        self.slots = slots

    @property
    def idle(self) -> bool:
        return not self.inflight and not any(self.queues.values())

    def callers(self) -> list[int]:
        """The callers with calls waiting to be handed over."""
        return list(self.queues)

    def calls(self) -> Iterator[CallRecord]:
        """Every pending call: in flight, then waiting."""
        yield from self.inflight.values()
        for queue in self.queues.values():
            yield from queue

    def enqueue(self, call: CallRecord) -> None:
        queue = self.queues.get(call.spec.caller_id)
        if queue is None:
            queue = self.queues[call.spec.caller_id] = collections.deque()
        queue.append(call)

    def next_ready(self, caller: int) -> CallRecord | None:
        """Pop the caller's next call if it may be handed over now."""
        queue = self.queues.get(caller)
        if not queue:
            return None
        if caller in self.barrier:
            return None
        head = queue[0]
        if head.remaining:
            return None
        queue.popleft()
        if not queue:
            del self.queues[caller]
        return head

    def hand_over(self, call: CallRecord) -> None:
        """``call`` (from :meth:`next_ready`) goes to the backend now."""
        spec = call.spec
        self.inflight[spec.call_id] = call
        self.slots.handed(call, event_time())
        if spec.retry_exceptions:
            self.barrier[spec.caller_id] = spec.call_id

    def in_flight(self, call_id: int) -> CallRecord | None:
        return self.inflight.get(call_id)

    def returned(self, call: CallRecord) -> None:
        """``call``, in flight, came back (finished, or to be retried)."""
        spec = call.spec
        del self.inflight[spec.call_id]
        self.slots.ended(call, event_time())
        barrier = self.barrier  # empty unless a call retries on exceptions
        if barrier and barrier.get(spec.caller_id) == spec.call_id:
            del self.barrier[spec.caller_id]

    def retry_first(self, call: CallRecord) -> None:
        """Run ``call``, which came back, again before its caller's later calls."""
        call.spec.attempt += 1
        self._queue(call.spec.caller_id).appendleft(call)

    def _queue(self, caller: int) -> collections.deque[CallRecord]:
        queue = self.queues.get(caller)
        if queue is None:
            queue = self.queues[caller] = collections.deque()
        return queue

    def remove_waiting(self, call_id: int) -> CallRecord | None:
        """Take out a call not yet handed over; None if there is none with that id."""
        for caller, queue in self.queues.items():
            for call in queue:
                if call.spec.call_id == call_id:
                    queue.remove(call)
                    if not queue:
                        del self.queues[caller]
                    return call
        return None

    def remove(self, call_id: int) -> CallRecord | None:
        """Take out a call wherever it is (in flight or waiting), lifting its barrier."""
        call = self.inflight.pop(call_id, None)
        if call is not None:
            self.slots.ended(call, event_time())
        else:
            call = self.remove_waiting(call_id)
        if call is not None:
            caller = call.spec.caller_id
            if self.barrier.get(caller) == call_id:
                del self.barrier[caller]
        return call

    def requeue_inflight(self, max_task_retries: int) -> list[CallRecord]:
        """After a death: put retryable calls back at the front; return the ones out of tries."""
        failed: list[CallRecord] = []
        retry: dict[int, list[CallRecord]] = {}
        for call in self.inflight.values():
            if not call.cancelled and may_retry(call, max_task_retries):
                call.spec.attempt += 1
                retry.setdefault(call.spec.caller_id, []).append(call)
            else:
                failed.append(call)
        self.slots.clear(self.inflight.values())
        self.inflight.clear()
        self.barrier.clear()
        for caller, calls in retry.items():
            self._queue(caller).extendleft(reversed(calls))
        return failed

    def drain_all(self) -> list[CallRecord]:
        calls = list(self.calls())
        self.slots.clear(self.inflight.values())
        self.inflight.clear()
        self.queues.clear()
        self.barrier.clear()
        return calls
