"""Tasks: submission, argument waits, dispatch, retries, cancellation and pipelining.

A task's life, one :class:`TaskState` at a time::

    WAITING ──args ready──▶ QUEUED ──placed──▶ RUNNING ──outcome──▶ DONE
                              │  ▲                ▲        │
                              │  └─recalled─┐     │        └─retry─▶ QUEUED
                              └─pipelined─▶ FOLLOWING ─leader ended─┘

WAITING: for its argument refs. QUEUED: in the scheduler's queues. RUNNING: placed on
a node, holding its resources. FOLLOWING: sent to the worker of a running task (its
*leader*) and queued there behind it, holding no resources yet. DONE: its returns are
resolved and it has left :attr:`Tasks.records`.

Pipelining (``Backend.pipelines``): with every CPU busy, the next ready task of the same
shape is sent to the worker of a running task and queued there, so the worker starts it
the moment the first ends instead of after a round trip through the core (mp.Pool's
trick). The queued task holds no resources: the running one's pass to it when that one
ends. A worker holds a chain of up to ``Backend.pipeline_depth`` tasks: the running one
(the chain's head) and those queued behind it, each following the one before it, so it
runs several short tasks while the core is busy and the core reads their outcomes in
batches. A queued task is recalled when a CPU frees elsewhere (the deepest first), so no
task waits behind a long one, and every task behind one that blocks in ``get``.

Runs on the core loop only; no locks. The runtime calls the public methods (guarded:
see :mod:`actorlib.core.guards`); :mod:`actorlib.core.invariants` reads the records.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from actorlib.core.ids import COUNTER_BITS
from actorlib.core.lineage import remember
from actorlib.core.objects import ObjectEntry, ObjectTable
from actorlib.core.records import Outcome, TaskRun, require_fields
from actorlib.core.scheduler import Node, Placement, Scheduler, infeasible_error
from actorlib.core.serialization import Serialized
from actorlib.core.specs import DRIVER_CALLER, TaskSpec
from actorlib.core.state import ended_ring, event_time
from actorlib.core.values import Values, cancelled_value, error_value
from actorlib.exceptions import WorkerCrashedError

if TYPE_CHECKING:  # the interface the core drives; the core never imports a backend
    from actorlib.backends.base import Backend


class TaskState(enum.Enum):
    WAITING = "waiting"
    QUEUED = "queued"
    FOLLOWING = "following"
    RUNNING = "running"
    DONE = "done"


# Plain module names for the hot paths: a global read is several times faster than an
# enum member read through its class (``TaskState.RUNNING``).
WAITING = TaskState.WAITING
QUEUED = TaskState.QUEUED
FOLLOWING = TaskState.FOLLOWING
RUNNING = TaskState.RUNNING
DONE = TaskState.DONE


class TaskRecord:
    __slots__ = (
        "blocked", "cancelled", "children", "created", "job", "leader", "pid", "placement",
        "preferred", "recalling", "remaining", "shape", "spec", "started", "state",
        "successor",
    )

    def __init__(self, spec: TaskSpec, job: int = 0) -> None:
        # ``Tasks.submit`` sets these without calling the class: a slot added here goes
        # there too (``_SUBMIT_SETS``).
        self.spec = spec
        self.job = job  # the driver whose work this is (Runtime.job_of)
        self.state = WAITING
        self.leader: TaskRecord | None = None  # FOLLOWING: the task it waits behind
        self.successor: TaskRecord | None = None  # RUNNING: the task following it
        # Asked back from the worker: FOLLOWING, or RUNNING if its leader ended before
        # the answer came (see Tasks.recalled)
        self.recalling = False
        self.remaining = 0  # WAITING: argument refs not ready yet
        self.placement: Placement | None = None  # RUNNING: where, holding what
        self.cancelled = False  # cancel asked while RUNNING or FOLLOWING
        self.blocked = False  # waits in ``get``: its CPUs are lent out
        self.children: list[int] | None = None  # made with the first child: most have none
        self.preferred: str | None = None  # the node holding most of its argument bytes
        self.created = event_time()  # for the state API (actorlib.core.state)
        self.started = 0.0  # when it last went RUNNING
        self.pid = 0  # the process that ran its last attempt (from its outcome)
        self.shape: tuple[Any, ...] = ()  # its queue's key, as last queued (a leader's)


#: Makes a record whose slots the caller sets, for the hot paths (as in
#: :mod:`actorlib.core.actors`): a class called with an ``__init__`` costs about 600
#: instructions more on CPython 3.11.
new_record = object.__new__
#: The slots ``Tasks.submit`` sets on the ``TaskRecord`` and ``ObjectEntry`` it makes
#: without ``__init__``, and the fields ``dispatch`` and ``_queue_behind`` set on their
#: ``TaskRun``: one added to a class is added there too (this fails at import until it is).
_SUBMIT_SETS = (
    "spec", "job", "state", "leader", "successor", "recalling", "remaining", "placement",
    "cancelled", "blocked", "children", "preferred", "created", "started", "pid", "shape",
)
_ENTRY_SETS = ("refs", "value", "watchers", "producer", "lineage")  # its ``ObjectEntry``
_RUN_FIELDS = ("spec", "node_id", "deps", "gpu_ids", "follows", "job")
require_fields(
    "Tasks.submit, dispatch and _queue_behind",
    (TaskRecord, _SUBMIT_SETS), (ObjectEntry, _ENTRY_SETS), (TaskRun, _RUN_FIELDS),
)


#: The request of a leader whose resources passed to its successor (``_leader_ended``).
HELD_NOTHING: dict[str, float] = {}


def _has_room(
    node: Node, request: dict[str, float], cpus: float, promised: dict[str, float]
) -> bool:
    """Whether ``node`` can place ``request`` besides the CPUs already promised there."""
    taken = promised.get(node.node_id, 0.0)
    return node.fits(request) and node.available.get("CPU", 0.0) + 1e-9 >= taken + cpus


def _leads(rec: TaskRecord) -> bool:
    """Whether a task may have one queued behind it at all (a module function: 3.11
    calls a static method through ``self`` on its slow path)."""
    spec = rec.spec
    return (
        not rec.recalling and spec.scheduling_strategy == "DEFAULT"
        and not spec.generator  # a stream may pause for its consumer for long
        # Its worker may retire after it: a task sent to follow it would start on
        # another worker at once, holding nothing.
        and not spec.max_calls
    )


def chain_head(rec: TaskRecord) -> TaskRecord:
    """The first task of the chain ``rec`` is in (the one running, if the chain's worker
    still runs it)."""
    while rec.leader is not None:
        rec = rec.leader
    return rec


class Tasks:
    """Every live task, from submission until its returns are resolved."""

    def __init__(
        self, objects: ObjectTable, values: Values, scheduler: Scheduler, backend: Backend,
        job_of: Callable[[int, int], int],
    ) -> None:
        """``job_of(caller_id, own_id)``: the driver new work belongs to (the runtime's)."""
        self.objects = objects
        self.values = values
        self.scheduler = scheduler
        self.backend = backend
        self.depth = backend.pipeline_depth  # tasks a chain holds, the running one too
        # Read once (a backend's class attributes): CPython 3.11 reads an instance's
        # class attribute on its slow path, and every task asks.
        self.pipelines = backend.pipelines
        self.has_locality = backend.has_locality
        # Without a take-back at once (a cluster), no task under a concurrency limit (an
        # Executor's call) is queued behind another: ``withdraw`` could not stop it then.
        self.takes_back = backend.takes_back
        self._job_of = job_of
        self.records: dict[int, TaskRecord] = {}
        # Pipelining: the last tasks of chains that may take a task queued behind them on
        # their worker (a chain is shorter than ``depth``), and the tasks so queued
        # (FOLLOWING).
        self.leaders: dict[int, TaskRecord] = {}
        self.followers: dict[int, TaskRecord] = {}
        # A task may lead since the last pass: the runtime calls :meth:`lead` if no
        # placement pass is due.
        self.new_leaders = False
        self.ended = ended_ring()  # the last ended tasks, for the state API
        self._nothing: dict[str, Placement] = {}  # ``_held_nothing``, by node id
        # Queued tasks that took over an ended task's placement, to dispatch after the
        # batch (``dispatch_handed``).
        self.handed: list[tuple[TaskRecord, Placement]] = []

    # == submission and dispatch =========================================================

    def submit(self, spec: TaskSpec) -> None:
        task_id = spec.task_id
        entries = self.objects.entries
        for rid in spec.return_ids:
            # ``ObjectTable.create(rid, 1, task_id)``, without its frame nor
            # ``ObjectEntry.__init__``'s: the entry's slots as that sets them (as
            # ``Actors.submit_call`` makes a call's; a change there goes here too).
            entry = new_record(ObjectEntry)
            entry.refs = 1
            entry.value = None
            entry.watchers = None
            entry.producer = task_id
            entry.lineage = None
            entries[rid] = entry
        args = spec.args
        deps = args.deps
        if deps or (args.payload is not None and args.payload.contained):
            self.values.hold_ids(args.held)  # most tasks hold no refs: no call for them
        if spec.generator == "streaming":
            self.values.open_stream(task_id, spec.return_ids[0], spec.backpressure)
        caller = spec.caller_id
        if caller == DRIVER_CALLER:  # the driver's own task: its job is its id's prefix
            job = task_id >> COUNTER_BITS
        else:
            job = self._job_of(caller, task_id)
            parent = self.records.get(caller)
            if parent is not None:
                if parent.children is None:
                    parent.children = [task_id]
                else:
                    parent.children.append(task_id)
        # ``TaskRecord(spec, job)``, without its class call: every slot as ``__init__``
        # sets it (``_SUBMIT_SETS`` checks the list at import).
        rec = new_record(TaskRecord)
        rec.spec = spec
        rec.job = job
        rec.state = WAITING
        rec.leader = None
        rec.successor = None
        rec.recalling = False
        rec.remaining = 0
        rec.placement = None
        rec.cancelled = False
        rec.blocked = False
        rec.children = None
        rec.preferred = None
        rec.created = event_time()
        rec.started = 0.0
        rec.pid = 0
        rec.shape = ()
        self.records[task_id] = rec
        scheduler = self.scheduler
        last = scheduler.last_feasibility
        if (
            last[1] is spec.resources and last[2] is spec.scheduling_strategy
            and last[0] is scheduler.capacity
        ):  # ``cached_infeasible_reason``'s first answer, without its frame: ``remote()``
            reason = last[3]  # asked the same a moment ago, nearly always
        else:
            reason = scheduler.cached_infeasible_reason(spec.resources, spec.scheduling_strategy)
        if reason is not None:
            self._finish(rec, error_value(infeasible_error(reason)))
            return
        if deps:
            # A partial, not a lambda: a closure makes ``self`` and ``rec`` cells, made
            # on every call of this method, whether it has deps or not.
            rec.remaining = self.values.resolve_deps(
                deps, functools.partial(self._deps_ready, rec)
            )
            if rec.remaining:
                return
            self._deps_ready(rec)
        elif self.has_locality and spec.scheduling_strategy == "DEFAULT":
            self._deps_ready(rec)
        else:  # the plain task: ``_deps_ready``'s queueing, without its frame
            rec.state = QUEUED
            if (
                not scheduler.dirty and spec.concurrency is None and not self.handed
                and spec.scheduling_strategy == "DEFAULT"
            ):
                # Submitted alone (nothing queued, no pass due: ``place_alone``; no task
                # handed a placement waits to be sent): placed and sent now, as the pass
                # after this batch would, with no queue and no pass.
                placed = scheduler.place_alone(spec.resources)
                if placed is not None:
                    rec.shape = placed[0]
                    leading = self.new_leaders
                    self.dispatch(rec, placed[1])
                    # No ``lead`` after the batch for it: nothing is queued to follow it,
                    # and a task queued later in the batch finds its queue empty, which
                    # marks a pass due (``enqueue``), and the pass pipelines.
                    self.new_leaders = leading
                    return
            # (``limit`` positional: CPython 3.11 calls a Python function given a keyword
            # on its slow path, with no specialized call)
            rec.shape = scheduler.enqueue(
                rec, spec.resources, spec.scheduling_strategy, spec.concurrency
            )

    def _deps_ready(self, rec: TaskRecord) -> None:
        if rec.state is not WAITING:
            return  # cancelled meanwhile
        rec.remaining = 0
        spec = rec.spec
        if spec.args.deps:
            error = self.values.first_dep_error(spec.args.deps)
            if error is not None:
                self._finish(rec, error)
                return
        rec.state = QUEUED
        if self.has_locality and spec.scheduling_strategy == "DEFAULT":
            rec.preferred = self._data_node(spec)
        rec.shape = self.scheduler.enqueue(
            rec, spec.resources, spec.scheduling_strategy, limit=spec.concurrency
        )

    def _data_node(self, spec: TaskSpec) -> str | None:
        """The node whose store holds the most bytes of ``spec``'s arguments, if any."""
        values = self.values.dep_values(spec.args.deps)
        if spec.args.payload is not None:
            values.append(spec.args.payload)
        held: dict[str, int] = {}
        for value in values:
            for location in value.locations or ():
                if location is not None:
                    node = self.backend.locate(location[0])
                    if node is not None:
                        held[node] = held.get(node, 0) + location[1]
        return max(held, key=held.__getitem__) if held else None

    def dispatch(self, rec: TaskRecord, placement: Placement) -> None:
        """The scheduler placed ``rec``: run it there."""
        rec.state = RUNNING
        rec.started = event_time()
        rec.placement = placement
        spec = rec.spec
        deps = spec.args.deps
        # ``TaskRun(spec, node_id, deps, gpu_ids)`` without its class call: every field,
        # as ``_RUN_FIELDS`` checks
        run = new_record(TaskRun)
        run.spec = spec
        run.node_id = placement.node.node_id
        run.deps = self.values.dep_values(deps) if deps else []
        run.gpu_ids = placement.gpu_ids if placement.gpus else ()  # (a property: most hold none)
        run.follows = 0
        run.job = 0
        self.backend.run_task(run)
        self._may_lead(rec)

    def rerun(self, spec: TaskSpec) -> None:
        """Queue ``spec`` again, its arguments already in hand (a lineage rebuild)."""
        rec = TaskRecord(spec, self._job_of(spec.caller_id, spec.task_id))
        rec.state = QUEUED
        self.records[spec.task_id] = rec
        rec.shape = self.scheduler.enqueue(
            rec, spec.resources, spec.scheduling_strategy, limit=spec.concurrency
        )

    # == pipelining: a task queued on the worker behind a running one ======================

    def pipeline(self) -> None:
        """After a placement pass: queue tasks behind running ones, recall those that
        could run elsewhere now."""
        self.new_leaders = False
        if self.leaders and self.scheduler.has_queued():
            self._queue_behind_leaders()
        if self.followers:
            self._steal()

    def lead(self) -> None:
        """Without a placement pass (no resources changed hands): queue tasks behind the
        tasks that may lead since the last pass. Nothing can be recalled: no node has
        more room than the last pass left it."""
        self.new_leaders = False
        if self.leaders and self.scheduler.has_queued():
            self._queue_behind_leaders()

    def _may_lead(self, rec: TaskRecord) -> None:
        """The chain ``rec`` is in may take one more task: its last one leads then."""
        if not self.pipelines:
            return
        head = rec  # ``chain_head(rec)``, without its frame (every task's end)
        while head.leader is not None:
            head = head.leader
        placement = head.placement
        if (
            head.state is not RUNNING or placement is None or placement.gpus or head.blocked
            or head.recalling  # handed back maybe, unstarted: leads nothing until it knows
        ):
            return
        tail, length = head, 1
        while tail.successor is not None:
            tail = tail.successor
            length += 1
        if (
            length < self.depth and _leads(tail)
            and (self.takes_back or tail.spec.concurrency is None)
        ):
            self.leaders[tail.spec.task_id] = tail
            self.new_leaders = True

    def _queue_behind_leaders(self) -> None:
        leaders = self.leaders
        for leader in list(leaders.values()):
            chain = [leader.spec.task_id]
            head = leader
            while head.leader is not None:
                head = head.leader
                chain.append(head.spec.task_id)
            placement = head.placement
            assert placement is not None  # a chain's head runs
            if self._queue_behind(leader, chain, placement.node.node_id):
                del leaders[chain[0]]

    def _queue_behind(self, tail: TaskRecord, chain: list[int], node_id: str) -> bool:
        """Queue tasks of its shape behind ``tail``, the last task of a chain (``chain``:
        the ids of its tasks) whose head runs on ``node_id``, until the chain is full or
        no task may follow. True if one was queued: ``tail`` leads no more then (the
        caller's to forget), and the last one queued leads if its chain has room."""
        depth = self.depth
        followable = self.scheduler.followable
        queued = False
        while len(chain) < depth:
            queue = followable(tail.shape, node_id)
            if queue is None:
                break
            rec = queue[0]
            # ``_may_follow``, without its frame: not an actor, and not the child of a
            # task of the chain (that one may be waiting for it)
            if type(rec) is not TaskRecord or rec.spec.caller_id in chain:
                break
            queue.popleft()
            queued = True
            tail.successor = rec
            rec.leader = tail
            rec.state = FOLLOWING
            task_id = rec.spec.task_id
            self.followers[task_id] = rec
            deps = rec.spec.args.deps
            # Behind the chain's last task: the worker that holds it (it may not be
            # the head's, if the head had ended there), in the order sent. ``TaskRun``
            # without its class call, as in ``dispatch``.
            run = new_record(TaskRun)
            run.spec = rec.spec
            run.node_id = node_id
            run.deps = self.values.dep_values(deps) if deps else []
            run.gpu_ids = ()
            run.follows = tail.spec.task_id
            run.job = 0
            self.backend.run_task(run)
            chain.append(task_id)
            if len(chain) >= depth or not _leads(rec):
                return True  # its chain is full, or it leads nothing
            tail = rec
        if queued:
            self.leaders[tail.spec.task_id] = tail  # nothing more followed it: it leads
        return queued

    def _steal(self) -> None:
        """Recall queued tasks that a node has room for now: nothing else wanted it
        (unless their concurrency limit is reached: they could not start there either).
        The deepest first (the last queued), and no more CPUs' worth than a node has
        free: each one recalled is placed again, there."""
        at_limit = self.scheduler.at_limit
        promised: dict[str, float] = {}  # CPUs of the tasks recalled so far, by node
        # Any node with a free CPU may take a recalled task (followers are placed by
        # DEFAULT), not only the one it waits on: with several nodes, a task queued on a
        # busy one must not wait there while another node idles. (None free, the common
        # case when followers exist: each looks at its own node only.)
        others = [
            n for n in self.scheduler.nodes.values()
            if n.alive and n.host is None and n.available.get("CPU", 0.0) > 1e-9
        ]
        # Requests (their queue's key: tasks unpickled from a worker share no dict) no
        # other node has room for in this pass: ``promised`` only grows, so the next ask
        # has none either (one scan of the nodes per request, not one per follower).
        no_room: set[Any] = set()
        followers = list(self.followers.values())
        # A recall on its way (a cluster's goes to the node and back) still frees nothing
        # and will want a CPU when it arrives: promise it one first, so a pass that runs
        # before the answer asks back no more for the same free CPU.
        for rec in followers:
            if rec.recalling and not rec.cancelled and rec.leader is not None:
                self._promise(rec, others, promised, no_room)
        for rec in reversed(followers):
            if rec.recalling or rec.leader is None or at_limit(rec.spec.concurrency):
                continue
            if self._promise(rec, others, promised, no_room):
                self._recall(rec)

    @staticmethod
    def _promise(
        rec: TaskRecord, others: list[Node], promised: dict[str, float], no_room: set[Any]
    ) -> bool:
        """Promise ``rec`` a node's CPUs for when it is handed back: its chain's node if
        that one has room, else another that has; False if none has."""
        placement = chain_head(rec).placement
        if placement is None:
            return False
        request = rec.spec.resources
        cpus = request.get("CPU", 0.0)
        node: Node | None = placement.node
        if not _has_room(placement.node, request, cpus, promised):
            node = None
            key = rec.shape[0] if rec.shape else tuple(sorted(request.items()))
            if key not in no_room:
                node = next((n for n in others if _has_room(n, request, cpus, promised)), None)
                if node is None:
                    no_room.add(key)
        if node is None:
            return False
        promised[node.node_id] = promised.get(node.node_id, 0.0) + cpus
        return True

    def _recall(self, rec: TaskRecord) -> None:
        rec.recalling = True
        self.leaders.pop(rec.spec.task_id, None)  # nothing more is queued behind it
        self.backend.recall(rec.spec.task_id)

    def _unfollow(self, rec: TaskRecord) -> None:
        """``rec`` no longer waits behind its leader (it ended, or came back): the task
        behind it, if any, follows its leader now, as the worker goes on to it."""
        task_id = rec.spec.task_id
        self.followers.pop(task_id, None)
        self.leaders.pop(task_id, None)
        leader, successor = rec.leader, rec.successor
        rec.leader = rec.successor = None
        rec.recalling = False
        if successor is not None:
            successor.leader = leader
        if leader is not None:
            if leader.successor is rec:
                leader.successor = successor
            self._may_lead(leader)

    def _leader_ended(self, rec: TaskRecord, worker_goes_on: bool) -> None:
        """``rec`` stopped running. If its worker goes on, the task behind it starts there
        and takes its resources; if the worker died, that task is reported crashed too.
        (``finished`` does its work inline when none follows: a change here goes there.)"""
        self.leaders.pop(rec.spec.task_id, None)
        successor = rec.successor
        if successor is None:
            return
        rec.successor = None
        successor.leader = None
        if not worker_goes_on:
            # The chain behind it stays FOLLOWING until the backend reports each one,
            # taking nothing more behind it meanwhile.
            follower: TaskRecord | None = successor
            while follower is not None:
                self.leaders.pop(follower.spec.task_id, None)
                after = follower.successor
                follower.leader = follower.successor = None
                follower = after
            return
        self.followers.pop(successor.spec.task_id, None)
        placement = rec.placement
        assert placement is not None
        node = placement.node
        request = successor.spec.resources
        successor.state = RUNNING
        successor.started = event_time()
        spec = successor.spec
        if not rec.blocked and not placement.gpus and (
            # (``is`` first: a burst of one function shares one request dict, and 3.11
            # compares two dicts with ``==`` on its slow path)
            request is placement.request or request == placement.request
        ) and (  # the same limit (a chain is of one shape: always so, but cheap to ask)
            spec.concurrency is rec.spec.concurrency or spec.concurrency == rec.spec.concurrency
        ):
            # The usual case: the resources pass to the successor as they are held (no
            # acquire now, no release at the leader's end), and so does the slot under a
            # concurrency limit, so no placement pass is due: nothing was freed (a slot
            # given back and taken in one step would mark one due, run for nothing on
            # every task's end). The leader keeps where it ran, holding nothing.
            successor.placement = placement
            nothing = self._nothing.get(node.node_id)  # ``_held_nothing``'s usual answer
            rec.placement = (
                nothing if nothing is not None and nothing.node is node
                else self._held_nothing(node)
            )
        else:
            successor.placement = Placement(node, request, node.acquire(request))
            self.scheduler.dirty = True
            if spec.concurrency is not None:  # a slot of its own: the leader's goes back
                self.scheduler.enter(spec.concurrency)  # at its end (``_release_placement``)
        # A recall (or a cancel) asked before this may still hand it back unstarted: it
        # keeps ``recalling`` so :meth:`recalled` takes it back, and its chain takes
        # nothing more until then.
        if successor.successor is not None or self.scheduler.dirty:
            self._may_lead(successor)  # a longer chain, or a pass is due: it comes first
            return
        # Alone in its chain now, holding what its leader held, and no placement pass is
        # due: the next tasks queue behind it at once, in the same step as its leader's
        # end, not after the batch (``lead``). A pass due later in the batch finds them
        # queued, and recalls them if a CPU is free (``_steal``). ``_may_lead``'s test
        # (of a running head holding no GPU, not blocked) and ``_leads``', inline:
        if (
            successor.recalling or spec.scheduling_strategy != "DEFAULT" or spec.generator
            or spec.max_calls or (spec.concurrency is not None and not self.takes_back)
        ):
            return
        task_id = spec.task_id
        if not self._queue_behind(successor, [task_id], node.node_id):
            self.leaders[task_id] = successor
            self.new_leaders = True  # ``lead`` tries again after the batch

    def _held_nothing(self, node: Node) -> Placement:
        """Where an ended leader ran, holding nothing: one per node, shared (never
        changed, read by the state API)."""
        placement = self._nothing.get(node.node_id)
        if placement is None or placement.node is not node:
            placement = self._nothing[node.node_id] = Placement(node, HELD_NOTHING, ())
        return placement

    def recalled(self, task_id: int, attempt: int) -> None:
        """The backend handed back a FOLLOWING task that never started.

        Its leader may have ended meanwhile (its outcome was on the way when the task
        was taken back): the task is RUNNING here then, promoted into the leader's
        resources, though it never started. It gives them back and queues again (or
        ends, if cancelled). A task promoted first and cancelled after is taken back
        too: the cancel of a RUNNING task asks nothing back, but a worker that had not
        claimed it yet hands it back.
        """
        rec = self.records.get(task_id)
        if rec is None or attempt != rec.spec.attempt:
            return
        if rec.state is FOLLOWING:
            self._unfollow(rec)
        elif rec.state is RUNNING and (rec.recalling or rec.cancelled):
            rec.recalling = False
            # The worker goes on to the task queued behind it, which takes what it held.
            # A pass is due (``rec`` queues again, at the front): the one behind it leads
            # after that pass, so nothing queued after ``rec`` is sent ahead of it.
            self.scheduler.dirty = True
            self._leader_ended(rec, worker_goes_on=True)
            self._release_placement(rec)
        else:
            return
        if rec.cancelled:
            self._finish(rec, cancelled_value(rec.spec.name))
            return
        rec.state = QUEUED
        # A chain comes back one task at a time, in whatever order the backend answers:
        # each goes to the front, but behind those of it handed back already that were
        # ahead of it (ids grow with submission), so the chain keeps its order.
        task_id = rec.spec.task_id
        rec.shape = self.scheduler.enqueue(
            rec, rec.spec.resources, "DEFAULT", front=True, limit=rec.spec.concurrency,
            behind=lambda other: type(other) is TaskRecord and other.spec.task_id < task_id,
        )

    # == outcomes ===========================================================================

    def finished(self, outcome: Outcome) -> None:
        rec = self.records.get(outcome.id)
        if rec is None or outcome.attempt != rec.spec.attempt:
            self.values.discard_outcome(outcome)
            return
        if rec.state is RUNNING:
            if rec.successor is None:  # ``_leader_ended``'s work when none follows (most)
                self.leaders.pop(outcome.id, None)
            else:
                self._leader_ended(rec, True)  # worker_goes_on (positional: see ``submit``)
        elif rec.state is FOLLOWING:  # cancelled before it started
            self._unfollow(rec)
        else:
            self.values.discard_outcome(outcome)
            return
        rec.pid = outcome.pid
        spec = rec.spec
        values = self.values
        if outcome.error is not None:
            values.hold_ids(outcome.error.contained)
            if rec.cancelled:
                values.drop_value(outcome.error)
                self._finish(rec, cancelled_value(spec.name))
                return
            if outcome.retryable and self._retry(rec):
                values.drop_value(outcome.error)
                return
            self._finish(rec, outcome.error)
            return
        results = outcome.values
        if (
            results is not None and len(results) == 1 and not spec.generator
            and not results[0].contained and not results[0].locations
        ):  # ``set_results``' work for one inline value holding no ref (nearly every task)
            self.objects.set_value(spec.return_ids[0], results[0])
        elif values.set_results(spec.return_ids, results or []) and not spec.generator:
            remember(self.objects, spec)
        self._finish(rec, None)

    def _retry(self, rec: TaskRecord) -> bool:
        spec = rec.spec
        if spec.max_retries >= 0 and spec.attempt >= spec.max_retries:
            return False
        spec.attempt += 1
        self._release_placement(rec)
        rec.recalling = False  # a hand-back of the last attempt is ignored (its attempt)
        rec.state = QUEUED
        rec.shape = self.scheduler.enqueue(
            rec, spec.resources, spec.scheduling_strategy, limit=spec.concurrency
        )
        return True

    def crashed(self, task_id: int, attempt: int, error: BaseException) -> None:
        """The worker running (or holding) the task died."""
        rec = self.records.get(task_id)
        if rec is None or attempt != rec.spec.attempt:
            return
        if rec.state is FOLLOWING:  # never started: not an attempt
            self.recalled(task_id, attempt)
            return
        if rec.state is not RUNNING:
            return
        self._leader_ended(rec, worker_goes_on=False)
        if rec.cancelled:
            self._finish(rec, cancelled_value(rec.spec.name))
            return
        if self._retry(rec):
            return
        msg = (
            f"The worker running task {rec.spec.name} died after "
            f"{rec.spec.attempt + 1} attempt(s): {error}"
        )
        # A finer cause keeps its name (NodeDiedError: the node went, not just a worker).
        kind = type(error) if isinstance(error, WorkerCrashedError) else WorkerCrashedError
        self._finish(rec, error_value(kind(msg)))

    def _release_placement(self, rec: TaskRecord, pass_on: bool = False) -> None:
        """Give back what ``rec`` holds; ``pass_on`` (its end): to the next task of its
        shape as it is held, where a placement pass would give it to that task anyway
        (``Scheduler.take_head``; the runtime dispatches it after the batch)."""
        placement = rec.placement
        if placement is not None:
            if rec.blocked:
                placement.node.acquire({"CPU": placement.request.get("CPU", 0.0)})
                rec.blocked = False
            rec.placement = None
            if placement.request is HELD_NOTHING:
                return  # its resources and its slot went to its successor (``_leader_ended``)
            if rec.spec.concurrency is not None:
                self.scheduler.leave(rec.spec.concurrency)
            nxt = (
                self.scheduler.take_head(rec.shape, placement, TaskRecord)
                if pass_on else None
            )
            if nxt is None:
                # No pass for nothing: one is due only if anything may take the room
                # (a task submitted next is placed at once then: ``place_alone``).
                self.scheduler.give_back(placement)
                if self.followers:  # one may be recalled to it (``_steal``)
                    self.scheduler.dirty = True
            else:
                self.handed.append((nxt, placement))

    def dispatch_handed(self, guard: Callable[..., None]) -> None:
        """Run the tasks that took over an ended task's placement (``_release_placement``),
        in the order they were handed, each under ``guard`` (the runtime's
        ``Guards.task``); one ended meanwhile (a cancel of a queued task) gives its
        placement back for the next pass."""
        handed, self.handed = self.handed, []
        for rec, placement in handed:
            if rec.state is QUEUED and self.records.get(rec.spec.task_id) is rec:
                guard(rec.spec.task_id, self.dispatch, rec, placement)
            else:
                placement.release()
                self.scheduler.dirty = True

    def _finish(self, rec: TaskRecord, error: Serialized | None) -> None:
        """End a task for good: resolve its returns with ``error`` if given, free its hold."""
        if error is not None:
            self.values.resolve(rec.spec.return_ids, error)
        spec = rec.spec
        placement = rec.placement
        self.ended.append((
            spec.task_id, spec.name, spec.attempt,
            None if placement is None else placement.node.node_id, error is not None,
            rec.job, rec.created, rec.started, event_time(), rec.pid,
        ))
        if placement is not None:
            if placement.request is HELD_NOTHING and not rec.blocked:
                # a leader whose resources (and slot) passed on: ``_release_placement``'s work
                rec.placement = None
            else:
                self._release_placement(rec, True)  # pass_on (positional: see ``submit``)
        rec.state = DONE
        self.leaders.pop(spec.task_id, None)
        del self.records[spec.task_id]
        args = spec.args
        if args.payload is not None or args.deps:  # else nothing to free or release
            self.values.release_args(args)

    def blocked(self, task_id: int, blocked: bool) -> None:
        """A task waits in ``get``: lend its CPUs to others meanwhile (as Ray does)."""
        rec = self.records.get(task_id)
        if rec is None or rec.placement is None or rec.blocked == blocked:
            return
        cpus = {"CPU": rec.placement.request.get("CPU", 0.0)}
        if blocked:
            rec.placement.node.release(cpus, ())
            # Only CPUs are lent, which may not fit the tasks queued behind this one:
            # they come back to the core's queue (unless they start first).
            self.leaders.pop(rec.spec.task_id, None)
            successor = rec.successor
            while successor is not None:
                self.leaders.pop(successor.spec.task_id, None)
                if not successor.recalling:
                    self._recall(successor)
                successor = successor.successor
        else:
            rec.placement.node.acquire(cpus)
        rec.blocked = blocked
        self.scheduler.dirty = True

    # == cancel, a job's end, internal errors ==============================================

    def cancel(self, task_id: int, force: bool, recursive: bool) -> bool:
        """Cancel a live task (and its children, if ``recursive``); False if not one."""
        rec = self.records.get(task_id)
        if rec is None:
            return False
        self._cancel(rec, force, recursive)
        return True

    def _cancel(self, rec: TaskRecord, force: bool, recursive: bool) -> None:
        if recursive:
            for child in rec.children or ():
                child_rec = self.records.get(child)
                if child_rec is not None:
                    self._cancel(child_rec, force, recursive)
        state = rec.state
        if state is WAITING:
            self._finish(rec, cancelled_value(rec.spec.name))
        elif state is QUEUED:
            self.scheduler.remove(rec)
            self._finish(rec, cancelled_value(rec.spec.name))
        elif state is RUNNING and (force or not rec.cancelled):
            # A forced cancel after a plain one still goes through: the task may have
            # caught the KeyboardInterrupt (or sat in a C call that never sees it).
            rec.cancelled = True
            self.backend.cancel(rec.spec.task_id, force=force)
        elif state is FOLLOWING and not rec.cancelled:
            # Not started: the worker drops it from its queue (a hand-back, hence
            # ``recalling``); the task ahead is never stopped for it. ``force`` passes on:
            # the task may have started since (the outcome of the one ahead is on its way,
            # further on a cluster), and then only a forced stop ends one that swallows
            # the interrupt (a job's end: its driver is gone).
            rec.cancelled = True
            rec.recalling = True
            self.leaders.pop(rec.spec.task_id, None)  # nothing more is queued behind it
            self.backend.cancel(rec.spec.task_id, force=force)

    def withdraw(self, task_id: int) -> bool:
        """Cancel a task only if it has not started and can be stopped from starting at
        once: it waits for its arguments, in the scheduler's queue, or queued behind
        another on a worker that hands it back now (``Backend.take_back``). True if so:
        it will never run. The Executor cancels a queued future through this, so a call
        either never starts or was not cancelled."""
        rec = self.records.get(task_id)
        if rec is None:
            return False
        state = rec.state
        if state is FOLLOWING:
            # Asked back already: the answer (handed back, or started) is on its way.
            if rec.recalling or rec.cancelled or not self.backend.take_back(task_id):
                return False
            self._unfollow(rec)
            self._finish(rec, cancelled_value(rec.spec.name))
            return True
        if state is not WAITING and state is not QUEUED:
            return False
        self._cancel(rec, force=False, recursive=False)
        return True

    def fail(self, task_id: int, error: BaseException) -> None:
        """End a task that has not started with ``error`` (its placement group is gone);
        one running (or queued on a worker) is cancelled forcibly."""
        rec = self.records.get(task_id)
        if rec is None:
            return
        if rec.state is WAITING or rec.state is QUEUED:
            self.scheduler.remove(rec)
            self._finish(rec, error_value(error))
        else:
            self._cancel(rec, force=True, recursive=False)

    def end_job(self, job: int) -> None:
        """Cancel every task of the driver ``job`` (running ones forcibly)."""
        for rec in [r for r in self.records.values() if r.job == job]:
            if self.records.get(rec.spec.task_id) is rec:
                self._cancel(rec, force=True, recursive=False)

    def abandon(self, task_id: int, error: BaseException, returns: tuple[int, ...]) -> None:
        """A core bug hit this task: take it out of every structure, fail its returns
        (``returns`` if the task never got a record)."""
        rec = self.records.pop(task_id, None)
        if rec is not None:
            returns = rec.spec.return_ids
            self.scheduler.remove(rec)
            self.leaders.pop(task_id, None)
            if rec.state is FOLLOWING:
                self._unfollow(rec)  # the tasks behind it follow the one ahead of it
            successor, rec.successor = rec.successor, None
            if successor is not None:
                successor.leader = None
            while successor is not None:  # behind a running one: asked back
                self.leaders.pop(successor.spec.task_id, None)
                if successor.state is FOLLOWING and not successor.recalling:
                    self._recall(successor)
                successor = successor.successor
            if rec.state is RUNNING or rec.state is FOLLOWING:
                self.backend.cancel(task_id, force=False)  # its outcome will be discarded
            self._release_placement(rec)
            rec.state = DONE
            self.values.release_args(rec.spec.args)
        self.values.fail_pending(returns, error)
