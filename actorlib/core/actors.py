"""Actor records and their mailboxes: ordering, restarts, lifetime.

Ordering rule: calls from one caller are handed to the backend in submission order, and a
call is handed over only when every earlier call from that caller has been handed over
(so a later call whose arguments are ready first still waits). The backend starts calls
in the order it receives them. When an actor dies, its calls in flight go back to the
*front* of their callers' queues, in order, so a retried call still runs before every
later one. A call that may be retried on an application error holds back its caller's
later calls until it has finally finished.

Runs on the core loop only; no locks.
"""

from __future__ import annotations

import collections
import enum

from actorlib.core.scheduler import Placement
from actorlib.core.specs import ActorSpec, CallSpec


class ActorState(enum.Enum):
    WAITING = "waiting"  # for constructor arguments or resources
    STARTING = "starting"  # constructor running; calls may be queued behind it
    ALIVE = "alive"
    RESTARTING = "restarting"
    DEAD = "dead"


class CallRecord:
    __slots__ = ("cancelled", "remaining", "spec")

    def __init__(self, spec: CallSpec) -> None:
        self.spec = spec
        self.remaining = 0  # dependencies not yet ready
        self.cancelled = False


class ActorRecord:
    __slots__ = (
        "barrier",
        "dead_error",
        "handle_refs",
        "incarnation",
        "inflight",
        "job",
        "no_restart",
        "placement",
        "queues",
        "remaining",
        "restarts",
        "spec",
        "state",
    )

    def __init__(self, spec: ActorSpec, job: int = 0) -> None:
        self.spec = spec
        self.job = job  # the driver whose actor this is (Runtime._job_of)
        self.state = ActorState.WAITING
        self.incarnation = 0
        self.placement: Placement | None = None
        self.handle_refs = 1
        self.restarts = 0
        self.remaining = 0
        self.no_restart = False
        self.dead_error: BaseException | None = None
        # caller id -> calls not yet handed to the backend, in submission order
        self.queues: dict[int, collections.deque[CallRecord]] = {}
        # call id -> call handed to the backend, in hand-over order
        self.inflight: dict[int, CallRecord] = {}
        # caller id -> call that must finish before the caller's next one is handed over
        self.barrier: dict[int, int] = {}

    @property
    def accepts_calls(self) -> bool:
        return self.state in (ActorState.STARTING, ActorState.ALIVE)

    @property
    def idle(self) -> bool:
        return not self.inflight and not any(self.queues.values())

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

    def requeue_inflight(self, max_task_retries: int) -> list[CallRecord]:
        """After a death: put retryable calls back at the front; return the ones out of tries."""
        failed: list[CallRecord] = []
        retry: dict[int, list[CallRecord]] = {}
        for call in self.inflight.values():
            limit = call.spec.max_task_retries
            if limit is None:
                limit = max_task_retries
            if not call.cancelled and (limit < 0 or call.spec.attempt < limit):
                call.spec.attempt += 1
                retry.setdefault(call.spec.caller_id, []).append(call)
            else:
                failed.append(call)
        self.inflight.clear()
        self.barrier.clear()
        for caller, calls in retry.items():
            queue = self.queues.get(caller)
            if queue is None:
                queue = self.queues[caller] = collections.deque()
            queue.extendleft(reversed(calls))
        return failed

    def drain_all(self) -> list[CallRecord]:
        calls = list(self.inflight.values())
        for queue in self.queues.values():
            calls.extend(queue)
        self.inflight.clear()
        self.queues.clear()
        self.barrier.clear()
        return calls

