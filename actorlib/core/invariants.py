"""The core's bookkeeping checked against itself: every task in exactly one place.

A task lost between two places (dispatched but held by no worker, queued twice, holding
resources it no longer uses) shows up as a hang much later, far from its cause. This
check states the rules and finds a break at once. It runs on the core loop, between
events, where every rule must hold; tests call it often (``debug_state``), and it costs
nothing when nobody asks.
"""

from __future__ import annotations

from collections import Counter

from actorlib.core.actors import Actors, ActorState
from actorlib.core.ids import id_hex
from actorlib.core.placement_groups import GroupState, PlacementGroups
from actorlib.core.scheduler import EPS, Node, Scheduler
from actorlib.core.streams import Streams
from actorlib.core.tasks import FOLLOWING, QUEUED, RUNNING, WAITING, Tasks, chain_head

TASK_STATES = (WAITING, QUEUED, FOLLOWING, RUNNING)  # a task leaves the records when DONE


def problems(
    scheduler: Scheduler, tasks: Tasks, actors: Actors, streams: Streams | None = None,
    groups: PlacementGroups | None = None,
) -> list[str]:
    """Every broken rule, as a sentence naming the task or node; empty when all hold."""
    found: list[str] = []
    queued = Counter(id(work) for work in scheduler.queued_work())
    # Taken off its queue with an ended task's placement, dispatched after the batch.
    queued.update(id(rec) for rec, _placement in tasks.handed)
    found += _task_problems(tasks, queued)
    found += _limit_problems(scheduler, tasks)
    found += _actor_problems(actors, queued)
    found += _resource_problems(scheduler, tasks, actors, groups)
    if groups is not None:
        found += _group_problems(scheduler, groups)
    if streams is not None:
        found += _stream_problems(streams, tasks, actors)
    return found


def _stream_problems(streams: Streams, tasks: Tasks, actors: Actors) -> list[str]:
    """An open stream belongs to live work and waits on a pending slot; a consumed-slot
    hook belongs to a live slot."""
    found: list[str] = []
    objects = streams.objects
    for producer, stream in streams.by_producer.items():
        where = f"stream of {id_hex(producer)}"
        if producer not in tasks.records and producer not in actors.calls:
            found.append(f"{where} is open but its task or call has ended")
        if streams.by_head.get(stream.head) is not stream:
            found.append(f"{where} is missing from the streams by head")
        entry = objects.get(stream.pending)
        if entry is not None and entry.value is not None:
            found.append(f"{where} waits on slot {id_hex(stream.pending)}, which has a value")
    found += [
        f"a consumed-slot hook outlived its slot {id_hex(slot)}"
        for slot in objects.drop_hooks if slot not in objects
    ]
    return found


def _limit_problems(scheduler: Scheduler, tasks: Tasks) -> list[str]:
    """Each concurrency limit counts exactly the placed tasks under it, within the limit
    (a pipelined one, FOLLOWING, takes its leader's slot when that one ends)."""
    found: list[str] = []
    placed: Counter[str] = Counter()
    for rec in tasks.records.values():
        limit = rec.spec.concurrency
        if limit is None:
            continue
        if rec.placement is not None:
            placed[limit[0]] += 1
            if placed[limit[0]] > limit[1]:
                found.append(f"concurrency limit {limit[0]!r}: more than {limit[1]} placed")
    if dict(placed) != scheduler.limited:
        found.append(f"concurrency limits count {scheduler.limited}, placed tasks {dict(placed)}")
    return found


def _task_problems(tasks: Tasks, queued: Counter[int]) -> list[str]:
    found: list[str] = []
    for task_id, rec in tasks.records.items():
        name = f"task {rec.spec.name} ({id_hex(task_id)}) {rec.state.value}"
        if rec.spec.task_id != task_id:
            found.append(f"{name} is filed under another id")
        if rec.state not in TASK_STATES:
            found.append(f"{name}: unknown state")
        times = queued[id(rec)]
        if times != (1 if rec.state is QUEUED else 0):
            found.append(f"{name} is in the scheduler's queues {times} time(s)")
        following = tasks.followers.get(task_id) is rec
        if following != (rec.state is FOLLOWING):
            found.append(f"{name} is {'' if following else 'not '}among the followers")
        if (rec.placement is not None) != (rec.state is RUNNING):
            found.append(f"{name} {'holds' if rec.placement else 'lacks'} a placement")
        if rec.state is WAITING and rec.remaining <= 0:
            found.append(f"{name} waits for no argument")
        leader = rec.leader
        if leader is not None and (
            leader.successor is not rec or (leader.state is not RUNNING
                                            and leader.state is not FOLLOWING)
        ):
            found.append(f"{name} follows {leader.spec.name} ({leader.state.value}), which "
                         "does not lead it")
        successor = rec.successor
        if successor is not None and (
            successor.leader is not rec or successor.state is not FOLLOWING
        ):
            found.append(f"{name} leads {successor.spec.name} ({successor.state.value}), which "
                         "does not follow it")
        if rec.state is not RUNNING and rec.state is not FOLLOWING and task_id in tasks.leaders:
            found.append(f"{name} may lead but neither runs nor follows")
        if rec.state is RUNNING and rec.leader is None:
            length, tail = 1, rec
            while tail.successor is not None and length <= tasks.depth:
                tail, length = tail.successor, length + 1
            if length > tasks.depth:
                found.append(f"{name} heads a chain longer than {tasks.depth}")
    for task_id, rec in tasks.followers.items():
        if tasks.records.get(task_id) is not rec:
            found.append(f"follower {id_hex(task_id)} is not a live task")
    for task_id, rec in tasks.leaders.items():
        if tasks.records.get(task_id) is not rec:
            found.append(f"leader {id_hex(task_id)} is not a live task")
        elif rec.successor is not None or rec.blocked or rec.recalling:
            found.append(f"leader {rec.spec.name} ({id_hex(task_id)}) cannot lead")
        else:
            head = chain_head(rec)
            if head.state is not RUNNING or head.blocked:
                found.append(f"leader {rec.spec.name} ({id_hex(task_id)}) is in a chain "
                             f"whose head {head.spec.name} ({head.state.value}) does not run")
    return found


def _actor_problems(actors: Actors, queued: Counter[int]) -> list[str]:
    found: list[str] = []
    for actor_id, rec in actors.records.items():
        name = f"actor {rec.spec.cls.name} ({id_hex(actor_id)}) {rec.state.value}"
        times = queued[id(rec)]
        if times > (1 if rec.state is ActorState.WAITING else 0):
            found.append(f"{name} is in the scheduler's queues {times} time(s)")
        holds = rec.placement is not None
        if holds and rec.state in (ActorState.WAITING, ActorState.DEAD):
            found.append(f"{name} holds a placement")
        for call in rec.mailbox.calls():
            if actors.calls.get(call.spec.call_id) != actor_id:
                found.append(f"{name}: call {call.spec.method} "
                             f"({id_hex(call.spec.call_id)}) is not filed under it")
    return found


def _resource_problems(
    scheduler: Scheduler, tasks: Tasks, actors: Actors, groups: PlacementGroups | None
) -> list[str]:
    """Each node's used resources are exactly what its running work and its reserved
    bundles hold; each bundle's, what the work running in it holds."""
    used: dict[int, dict[str, float]] = {}  # by id() of the node or bundle

    def hold(node: Node, request: dict[str, float], lent_cpu: bool) -> None:
        held = used.setdefault(id(node), {})
        for key, amount in request.items():
            if not (lent_cpu and key == "CPU"):
                held[key] = held.get(key, 0.0) + amount

    for rec in tasks.records.values():
        if rec.placement is not None:
            hold(rec.placement.node, rec.placement.request, rec.blocked)
    for _rec, placement in tasks.handed:
        hold(placement.node, placement.request, False)
    for actor in actors.records.values():
        if actor.placement is not None:
            hold(actor.placement.node, actor.placement.request, False)
    bundles: list[tuple[str, Node]] = []
    for group_id, group in (groups.records.items() if groups is not None else ()):
        for index, bundle in enumerate(group.bundles):
            if bundle is not None and bundle.host is not None and bundle.host.alive:
                hold(bundle.host, bundle.total, False)
                bundles.append((f"bundle {index} of group {id_hex(group_id)}", bundle))
    found: list[str] = []
    nodes = [(f"node {n.node_id}", n) for n in scheduler.alive_nodes()]
    for name, node in nodes + bundles:
        held = used.get(id(node), {})
        for key, total in node.total.items():
            in_use = total - node.available.get(key, 0.0)
            if abs(in_use - held.get(key, 0.0)) > 1e3 * EPS:
                found.append(f"{name}: {key} in use {in_use:g}, but running work and "
                             f"reserved bundles hold {held.get(key, 0.0):g}")
    return found


def _group_problems(scheduler: Scheduler, groups: PlacementGroups) -> list[str]:
    """A reserved group has all its bundles (a pending one none); removed ones hold none."""
    found: list[str] = []
    for group_id, rec in groups.records.items():
        name = f"placement group {id_hex(group_id)} {rec.state.value}"
        count = sum(b is not None for b in rec.bundles)
        want = {GroupState.CREATED: len(rec.bundles), GroupState.PENDING: 0,
                GroupState.REMOVED: 0}.get(rec.state)
        if want is not None and count != want:
            found.append(f"{name} holds {count} of its {len(rec.bundles)} bundles")
        if (group_id in scheduler.bundles) != (rec.state in (
            GroupState.CREATED, GroupState.RESCHEDULING
        )):
            has = "has" if group_id in scheduler.bundles else "lacks"
            found.append(f"{name}: the scheduler {has} its bundles")
        waits = rec.state in (GroupState.PENDING, GroupState.RESCHEDULING)
        if (groups.waiting.get(group_id) is rec) != waits:
            found.append(f"{name} is {'not ' if waits else ''}among the waiting groups")
        if (group_id in scheduler.removed_groups) != (rec.state is GroupState.REMOVED):
            found.append(f"{name}: the scheduler's removed set disagrees")
    return found
