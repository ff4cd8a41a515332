"""Resource-aware placement of ready work onto nodes.

Ready work waits in one FIFO per *shape* (its resource request and strategy), like Ray's
scheduling classes: a task that needs a GPU never holds back CPU-only tasks behind it,
and work of one shape starts in submission order. GPUs are handed out by id.

Work may carry a *concurrency limit* ``(key, limit)`` (``TaskSpec.concurrency``): at most
``limit`` items with that key are placed at once, across all nodes, and an item keeps
its slot while it waits in ``get`` (only its CPUs are lent). The limit is part of the
shape, so work held back by its limit never holds back other work.

Placement groups (:mod:`actorlib.core.placement_groups`) reserve *bundles*: each bundle
takes its resources out of its node's free pool and is itself a :class:`Node` (with that
node's id and ``host``), so work placed in a bundle acquires the bundle's resources, never
the node's.

Runs on the core loop only; no locks.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from actorlib.core.ids import id_hex
from actorlib.core.labels import LabelSelectorStrategy, describe_selector, matches
from actorlib.core.records import require_fields
from actorlib.core.specs import NodeAffinitySchedulingStrategy, PlacementGroupStrategy
from actorlib.exceptions import (
    ActorUnschedulableError,
    InfeasibleResourceError,
    TaskUnschedulableError,
)

EPS = 1e-9
NODE_ID_LABEL = "ray.io/node-id"  # every node's own label, as in Ray
MAX_SHAPES = 256  # request dicts whose shape the scheduler remembers (``_shape``)

#: The end of the reason given when a hard node affinity names a node that is not alive.
NODE_NOT_ALIVE = "(from NodeAffinitySchedulingStrategy) is not alive"


def infeasible_error(reason: str, actor: bool = False) -> InfeasibleResourceError:
    """The error for work no node can take: Ray's ``TaskUnschedulableError`` /
    ``ActorUnschedulableError`` when its node affinity names a node that is gone, else
    ``InfeasibleResourceError`` (which both of those are)."""
    if reason.endswith(NODE_NOT_ALIVE):
        return ActorUnschedulableError(reason) if actor else TaskUnschedulableError(reason)
    return InfeasibleResourceError(reason)


@dataclass(slots=True)
class Node:
    """A node (or a placement group's bundle) and the resources it has free."""

    node_id: str
    total: dict[str, float]
    available: dict[str, float]
    gpu_free: dict[int, float] = field(default_factory=dict)  # GPU id -> free fraction
    alive: bool = True
    host: Node | None = None  # a bundle: the node it is reserved on
    labels: dict[str, str] = field(default_factory=dict)

    def fits(self, request: dict[str, float]) -> bool:
        available = self.available
        for key, amount in request.items():
            if available.get(key, 0.0) + EPS < amount:
                return False
        return "GPU" not in request or self._pick_gpus(request["GPU"]) is not None

    def can_ever_fit(self, request: dict[str, float]) -> bool:
        return all(self.total.get(k, 0.0) + EPS >= v for k, v in request.items())

    def _pick_gpus(self, amount: float) -> list[tuple[int, float]] | None:
        if amount <= 0:
            return []
        if amount < 1:
            for gpu, free in self.gpu_free.items():
                if free + EPS >= amount:
                    return [(gpu, amount)]
            return None
        whole = [gpu for gpu, free in self.gpu_free.items() if free >= 1 - EPS]
        need = round(amount)
        if len(whole) < need:
            return None
        return [(gpu, 1.0) for gpu in whole[:need]]

    def acquire(self, request: dict[str, float]) -> tuple[tuple[int, float], ...]:
        available = self.available
        for key, amount in request.items():
            available[key] = available.get(key, 0.0) - amount
        if "GPU" not in request:
            return ()
        gpus = self._pick_gpus(request["GPU"]) or []
        for gpu, share in gpus:
            self.gpu_free[gpu] -= share
        return tuple(gpus)

    def release(self, request: dict[str, float], gpus: tuple[tuple[int, float], ...]) -> None:
        for key, amount in request.items():
            self.available[key] = self.available.get(key, 0.0) + amount
        for gpu, share in gpus:
            self.gpu_free[gpu] += share


@dataclass(slots=True)
class Placement:
    """Where a request was placed: the node, what it took, which GPUs."""

    node: Node
    request: dict[str, float]
    gpus: tuple[tuple[int, float], ...]

    @property
    def gpu_ids(self) -> tuple[int, ...]:
        gpus = self.gpus
        return tuple(gpu for gpu, _ in gpus) if gpus else ()  # (most hold none: no genexpr)

    def release(self) -> None:
        if self.node.alive:
            self.node.release(self.request, self.gpus)


#: ``Scheduler.place_alone`` makes its ``Placement`` without ``__init__`` (a class called
#: with one costs ~600 instructions more on CPython 3.11), setting these fields: a field
#: added to the class is added there too (this fails at import until it is).
_PLACEMENT_FIELDS = ("node", "request", "gpus")
require_fields("Scheduler.place_alone", (Placement, _PLACEMENT_FIELDS))
_new_record = object.__new__


def shape_of(
    request: dict[str, float], strategy: Any, limit: tuple[str, int] | None = None
) -> tuple[Any, ...]:
    return (tuple(sorted(request.items())), strategy, limit)


def describe(request: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in sorted(request.items())) or "nothing"


def _others_queued(queues: dict[tuple[Any, ...], Any], key: tuple[Any, ...]) -> bool:
    """Work of a shape other than ``key`` is queued (apart from ``Scheduler.take_head``:
    a generator's cell would be made on every call)."""
    return any(q for k, q in queues.items() if k != key)


class Scheduler:
    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        # Immutable snapshot of the nodes, read without the loop by submitting threads.
        self.capacity: tuple[Node, ...] = ()
        self._queues: dict[tuple[Any, ...], collections.deque[Any]] = {}
        self._spread = itertools.count()
        # A placement pass is due: work was queued, or resources or nodes changed. Set by
        # whoever frees resources too; the runtime clears it when it places work.
        self.dirty = False
        self._feasibility: tuple[Any, dict[Any, str | None]] = ((), {})
        # The last answer of ``cached_infeasible_reason``: (capacity, request, strategy,
        # reason). A remote function's tasks share one request dict, so the next question
        # is most often the same one: answered by identity, with no key built or hashed
        # (``Tasks.submit`` reads it so, without a call).
        self.last_feasibility: tuple[Any, Any, Any, str | None] = ((), None, None, None)
        # Placement groups, kept by core.placement_groups: each created group's bundles
        # (None where a bundle is not reserved now), and the ids of removed groups.
        self.bundles: dict[int, list[Node | None]] = {}
        self.removed_groups: set[int] = set()
        # Concurrency limits: how many items of each key are placed now.
        self.limited: dict[str, int] = {}
        # Each request seen, as a dict (``place_ready``), made once; keyed by the request
        # alone, not a shape's strategy or concurrency key: as many as the distinct
        # requests a program makes, however many Executors it creates.
        self._requests: dict[Any, dict[str, float]] = {}
        # Placement groups waiting for their bundles (core.placement_groups shares its
        # dict): they come before queued work for any resources freed.
        self.waiting_groups: dict[int, Any] = {}
        self._shapes: dict[int, tuple[dict[str, float], Any, Any, tuple[Any, ...]]] = {}

    def forget_feasibility(self) -> None:
        """Answers cached by :meth:`cached_infeasible_reason` may be wrong now."""
        self._feasibility = ((), {})
        self.last_feasibility = ((), None, None, None)

    # -- nodes -----------------------------------------------------------------------

    def add_node(
        self, node_id: str, resources: dict[str, float], labels: dict[str, str] | None = None
    ) -> None:
        gpus = int(resources.get("GPU", 0))
        self.nodes[node_id] = Node(
            node_id, dict(resources), dict(resources), {i: 1.0 for i in range(gpus)},
            labels={NODE_ID_LABEL: node_id, **(labels or {})},
        )
        self.capacity = tuple(self.nodes.values())
        self.dirty = True

    def remove_node(self, node_id: str) -> None:
        node = self.nodes.pop(node_id, None)
        if node is not None:
            node.alive = False
        self.capacity = tuple(self.nodes.values())
        self.dirty = True

    def alive_nodes(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.alive]

    def infeasible_reason(self, request: dict[str, float], strategy: Any) -> str | None:
        """Why no node can ever host ``request``, or None if one can. Any thread may ask."""
        if isinstance(strategy, PlacementGroupStrategy):
            return self._bundle_reason(request, strategy)
        nodes = [n for n in self.capacity if n.alive]
        if isinstance(strategy, LabelSelectorStrategy):
            return _label_reason(request, strategy, nodes)
        if isinstance(strategy, NodeAffinitySchedulingStrategy) and not strategy.soft:
            target = next((n for n in nodes if n.node_id == strategy.node_id), None)
            if target is None:
                return f"node {strategy.node_id} {NODE_NOT_ALIVE}"
            nodes = [target]
        if any(n.can_ever_fit(request) for n in nodes):
            return None
        capacity = "; ".join(f"{n.node_id}: {describe(n.total)}" for n in nodes) or "no nodes"
        return (
            f"No node can ever satisfy the resource request {{{describe(request)}}}. "
            f"Cluster capacity: {capacity}."
        )

    def _bundle_reason(self, request: dict[str, float], strategy: PlacementGroupStrategy
                       ) -> str | None:
        group = f"placement group {id_hex(strategy.group_id)}"
        if strategy.group_id in self.removed_groups:
            return f"{group} was removed"
        index, bundles = strategy.bundle_index, strategy.bundles
        if index >= len(bundles):
            return f"{group} has {len(bundles)} bundle(s): there is no bundle {index}"
        chosen = [bundles[index]] if index >= 0 else list(bundles)
        for bundle in chosen:
            held = dict(bundle)
            if all(held.get(k, 0.0) + EPS >= v for k, v in request.items() if v > 0):
                return None
        where = f"bundle {index}" if index >= 0 else "any bundle"
        return (
            f"the request {{{describe(request)}}} does not fit in {where} of {group} "
            f"(bundles: {'; '.join('{' + describe(dict(b)) + '}' for b in bundles)}). Work "
            "in a placement group uses its bundle's resources only."
        )

    def cached_infeasible_reason(
        self, request: dict[str, float], strategy: Any
    ) -> str | None:
        """:meth:`infeasible_reason`, cached per request shape until the set of nodes
        changes. Any thread may ask."""
        capacity = self.capacity
        last = self.last_feasibility  # one read: another thread may replace it
        if last[0] is capacity and last[1] is request and last[2] is strategy:
            return last[3]
        cache = self._feasibility
        if cache[0] is not capacity:
            cache = self._feasibility = (capacity, {})
        key = (tuple(request.items()), strategy)
        try:
            reason = cache[1][key]
        except KeyError:
            reason = cache[1][key] = self.infeasible_reason(request, strategy)
        # Holding ``request`` keeps its id from being reused while it is remembered.
        self.last_feasibility = (capacity, request, strategy, reason)
        return reason

    # -- queueing --------------------------------------------------------------------

    def _shape(
        self, request: dict[str, float], strategy: Any, limit: tuple[str, int] | None
    ) -> tuple[Any, ...]:
        """:func:`shape_of`, remembered per request dict: the work of one remote function
        shares its dict, which nothing changes once submitted. The entry keeps the dict
        alive, so its id is not reused while remembered. (``enqueue`` and ``place_alone``
        read its usual answer inline: a change here goes there too.)"""
        shapes = self._shapes
        known = shapes.get(id(request))
        if known is not None and known[0] is request and known[1] == strategy \
                and known[2] == limit:
            return known[3]
        if len(shapes) >= MAX_SHAPES:  # dicts unpickled per task (a worker's): start over
            shapes.clear()
        key = shape_of(request, strategy, limit)
        shapes[id(request)] = (request, strategy, limit, key)
        return key

    def enqueue(
        self, work: Any, request: dict[str, float], strategy: Any,
        limit: tuple[str, int] | None = None, *, front: bool = False,
        behind: Callable[[Any], bool] | None = None,
    ) -> tuple[Any, ...]:
        """Queue ``work``; ``front`` for work handed back that must keep its turn, then
        behind the work at the front for which ``behind`` is true (handed back before it,
        and ahead of it in the first place); ``limit``: its concurrency limit
        ``(key, limit)``, if any. Returns its shape (for ``take_next``)."""
        known = self._shapes.get(id(request))
        if (
            known is not None and known[0] is request and known[1] == strategy
            and known[2] == limit
        ):  # ``_shape``'s usual answer, without its frame (every task comes here)
            key = known[3]
        else:
            key = self._shape(request, strategy, limit)
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = collections.deque()
        # A pass is due only if ``work`` may change what a pass does: the head of a queue
        # decides alone whether its shape is placed (or followed, ``take_next``), so work
        # queued behind a head that the last pass left waiting changes nothing. A burst
        # of submissions thus costs one placement pass, not one each.
        if front or not queue:
            self.dirty = True
        if front:
            if behind is None:
                queue.appendleft(work)
            else:
                at = 0
                for other in queue:
                    if not behind(other):
                        break
                    at += 1
                queue.insert(at, work)
        else:
            queue.append(work)
        return key

    def take_next(
        self, key: tuple[Any, ...], node_id: str, accept: Callable[[Any], bool],
    ) -> Any | None:
        """Pop the oldest work of shape ``key`` (a DEFAULT-strategy one, as ``enqueue``
        returned it) that may run on ``node_id``, if ``accept(work)``.

        For queueing it behind running work of the same shape on that node; None while
        work of another shape waits too (it would never see those resources free).
        """
        queue = self.followable(key, node_id)
        if queue is None or not accept(queue[0]):
            return None
        return queue.popleft()

    def followable(
        self, key: tuple[Any, ...], node_id: str
    ) -> collections.deque[Any] | None:
        """:meth:`take_next` without the pop: the queue of shape ``key`` if its head may
        run on ``node_id`` and no other shape waits, else None. The caller pops the head
        if it takes it (``Tasks``, which tests the head inline: no frame per task)."""
        queues = self._queues
        queue = queues.get(key)
        if not queue:
            return None
        if len(queues) > 1 and self._others_wait(key):
            return None
        preferred = getattr(queue[0], "preferred", None)
        if preferred is not None and preferred != node_id:
            return None
        return queue

    def take_head(self, key: tuple[Any, ...], placement: Placement, kind: type) -> Any | None:
        """Pop the head of shape ``key``'s queue, if it is a ``kind``, to take over
        ``placement``, which work of that shape is giving up, as it is held: when a
        placement pass would give those resources to that head anyway. So when it is
        the only work queued, there is one node, nothing but CPUs and the like (no GPU
        ids, no bundle, no concurrency limit) is held, and no placement group waits for
        room. A burst of one function's tasks then passes each task's CPU on to the next
        one with no release, pass and acquire (``Tasks._release_placement``)."""
        queues = self._queues
        queue = queues.get(key)
        if (
            not queue or type(queue[0]) is not kind or key[1] != "DEFAULT"
            or key[2] is not None or placement.gpus or len(self.nodes) != 1
            or not placement.node.alive or self.waiting_groups
        ):
            return None
        if len(queues) > 1 and _others_queued(queues, key):
            return None
        work = queue.popleft()
        if not queue:
            del queues[key]
        return work

    def place_alone(
        self, request: dict[str, float]
    ) -> tuple[tuple[Any, ...], Placement] | None:
        """Place work of ``request`` (DEFAULT strategy, no concurrency limit) now, without
        queueing it, where the pass after the batch would place it just so: nothing at
        all is queued, no pass is due (nothing freed, no node changed since the last one:
        a follower may be recalled to a freed CPU) and no placement group waits for room.
        Returns its shape (``enqueue``'s) and its placement; None if no node has room or
        a pass must decide (the caller queues it then)."""
        if self.dirty or self.waiting_groups or any(self._queues.values()):
            return None
        node = self._choose(request, "DEFAULT")
        if node is None:
            return None
        known = self._shapes.get(id(request))
        if known is not None and known[0] is request and known[1] == "DEFAULT" \
                and known[2] is None:  # ``_shape``'s usual answer, without its frame
            key = known[3]
        else:
            key = self._shape(request, "DEFAULT", None)
        # ``Placement(node, request, gpus)`` without its class call: every field, as
        # ``_PLACEMENT_FIELDS`` checks
        placement = _new_record(Placement)
        placement.node = node
        placement.request = request
        placement.gpus = node.acquire(request)
        return key, placement

    def give_back(self, placement: Placement) -> None:
        """Free what ``placement`` holds. A pass is due if queued work or a waiting
        placement group may take it; with neither, the next pass due (work queued since)
        finds the room anyway. (Queued work's holder marks a pass due for its own waiters:
        ``Tasks`` for its followers.)"""
        placement.release()
        if self.waiting_groups or any(self._queues.values()):
            self.dirty = True

    def _others_wait(self, key: tuple[Any, ...]) -> bool:
        """Work of a shape other than ``key`` waits for resources (apart from
        ``take_next``: a generator's cells would be made on every call)."""
        return any(
            q and k != key and not self._held_back(k) for k, q in self._queues.items()
        )

    def _held_back(self, shape: tuple[Any, ...]) -> bool:
        """Work of ``shape`` waits for its concurrency limit, not for resources."""
        return self.at_limit(shape[2])

    def at_limit(self, limit: tuple[str, int] | None) -> bool:
        """No more work under ``limit`` may be placed now."""
        return limit is not None and self.limited.get(limit[0], 0) >= limit[1]

    def enter(self, limit: tuple[str, int]) -> None:
        """An item takes a slot under ``limit`` without a placement pass (pipelined)."""
        self.limited[limit[0]] = self.limited.get(limit[0], 0) + 1

    def leave(self, limit: tuple[str, int]) -> None:
        """An item placed under ``limit`` gave its slot back."""
        key = limit[0]
        left = self.limited[key] - 1
        if left:
            self.limited[key] = left
        else:
            del self.limited[key]
        self.dirty = True

    def remove(self, work: Any) -> bool:
        for queue in self._queues.values():
            try:
                queue.remove(work)
            except ValueError:
                continue
            self.dirty = True  # maybe a head that held back the work behind it
            return True
        return False

    def queued_work(self) -> Iterator[Any]:
        for queue in self._queues.values():
            yield from queue

    def has_queued(self) -> bool:
        return any(self._queues.values())

    def queued(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def demand(self) -> list[tuple[dict[str, float], Any, int]]:
        """What waits for resources: ``(request, strategy, how many)`` per shape."""
        return [(dict(key[0]), key[1], len(q)) for key, q in self._queues.items() if q]

    def place_ready(self) -> Iterator[tuple[Any, Placement]]:
        """Yield (work, placement) for every queued item that fits now, FIFO per shape."""
        limited = self.limited
        requests = self._requests
        for key, queue in list(self._queues.items()):
            request = requests.get(key[0])
            if request is None:  # one per request, shared by its placements (never changed)
                request = requests[key[0]] = dict(key[0])
            strategy = key[1]
            limit = key[2]
            while queue:
                if limit is not None and limited.get(limit[0], 0) >= limit[1]:
                    break
                node = self._choose(request, strategy, getattr(queue[0], "preferred", None))
                if node is None:
                    break
                work = queue.popleft()
                if limit is not None:
                    limited[limit[0]] = limited.get(limit[0], 0) + 1
                yield work, Placement(node, request, node.acquire(request))
            if not queue:
                del self._queues[key]

    def _choose(
        self, request: dict[str, float], strategy: Any, preferred: str | None = None
    ) -> Node | None:
        if strategy == "DEFAULT":  # the common case, without the lists below
            best: Node | None = None
            best_cpu = 0.0
            for node in self.nodes.values():
                if node.alive and node.fits(request):
                    if node.node_id == preferred:
                        return node
                    cpu = node.available.get("CPU", 0.0)
                    if best is None or cpu > best_cpu:
                        best, best_cpu = node, cpu
            return best
        if isinstance(strategy, PlacementGroupStrategy):
            return self._choose_bundle(request, strategy)
        nodes = self.alive_nodes()
        if isinstance(strategy, LabelSelectorStrategy):
            for selector in strategy.selectors:  # the first with a node that has room
                fitting = [n for n in nodes if matches(n.labels, selector) and n.fits(request)]
                if fitting:
                    break
            else:
                return None
            if strategy.spread:
                return fitting[next(self._spread) % len(fitting)]
            return max(fitting, key=lambda n: n.available.get("CPU", 0.0))
        if isinstance(strategy, NodeAffinitySchedulingStrategy):
            target = self.nodes.get(strategy.node_id)
            if target is not None and target.alive:
                if target.fits(request):
                    return target
                if not strategy.soft or target.can_ever_fit(request):
                    return None  # wait for room on the chosen node
            elif not strategy.soft:
                return None
        fitting = [n for n in nodes if n.fits(request)]
        if not fitting:
            return None
        if strategy == "SPREAD":
            return fitting[next(self._spread) % len(fitting)]
        # DEFAULT: the node that holds most of the work's argument bytes, when it has
        # room (moving the work is cheaper than moving the data); else the node with the
        # most free CPU, so load evens out.
        if preferred is not None:
            near = self.nodes.get(preferred)
            if near is not None and near in fitting:
                return near
        return max(fitting, key=lambda n: n.available.get("CPU", 0.0))

    def _choose_bundle(self, request: dict[str, float], strategy: PlacementGroupStrategy
                       ) -> Node | None:
        """The bundle of the group with room for ``request``; None while the group waits
        for its reservation (or the bundle for room)."""
        bundles = self.bundles.get(strategy.group_id)
        if not bundles:
            return None
        index = strategy.bundle_index
        for bundle in bundles if index < 0 else bundles[index:index + 1]:
            if bundle is not None and bundle.alive and bundle.fits(request):
                return bundle
        return None


def _label_reason(
    request: dict[str, float], strategy: LabelSelectorStrategy, nodes: list[Node]
) -> str | None:
    """Why no node matching any of the strategy's selectors can ever host ``request``."""
    for selector in strategy.selectors:
        if any(matches(n.labels, selector) and n.can_ever_fit(request) for n in nodes):
            return None
    wanted = " or ".join(describe_selector(s) for s in strategy.selectors)
    labelled = "; ".join(
        f"{n.node_id}: labels {n.labels or '{}'}, {describe(n.total)}" for n in nodes
    ) or "no nodes"
    return (
        f"No node with labels matching {wanted} can ever satisfy the resource request "
        f"{{{describe(request)}}}. Nodes: {labelled}."
    )
