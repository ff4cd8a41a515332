"""Placement groups: bundles of resources reserved all at once, then used by the work in them.

A group is created PENDING. After each batch on the loop (before work is placed) every
waiting group tries to reserve all its bundles; if any bundle finds no room, none is
reserved (nothing is held while waiting) and the group waits for resources to free up.
A reserved bundle takes its resources out of its node's free pool and becomes a
:class:`~actorlib.core.scheduler.Node` of its own (``host``: that node), so the scheduler
places work that names the group into the bundle, from the bundle's resources only.

The strategies place bundles across nodes: STRICT_PACK all on one node, PACK on one if
it can (else as few as it can), STRICT_SPREAD each on a different node, SPREAD on
different nodes where it can. A bundle with a label selector (``bundle_label_selector``)
goes only on a node whose labels match it. A group no set of nodes could ever hold is
refused when it is created. Removing a group (or its driver's end, unless it is
detached) kills the actors in it, fails the tasks waiting for it and cancels those
running in it, and gives its resources back. A node lost takes its bundles with it: the
group is RESCHEDULING until they are reserved again.

Runs on the core loop only; no locks.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

from actorlib.core.actors import Actors
from actorlib.core.ids import id_hex
from actorlib.core.labels import Selector, describe_selector, matches
from actorlib.core.objects import ObjectTable
from actorlib.core.scheduler import Node, Scheduler, describe
from actorlib.core.serialization import Serialized
from actorlib.core.specs import PlacementGroupSpec, PlacementGroupStrategy
from actorlib.core.tasks import Tasks
from actorlib.core.values import error_value
from actorlib.exceptions import (
    ActorPlacementGroupRemoved,
    InfeasibleResourceError,
    TaskCancelledError,
    TaskPlacementGroupRemoved,
)

STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


class GroupState(enum.Enum):
    PENDING = "PENDING"
    CREATED = "CREATED"
    RESCHEDULING = "RESCHEDULING"
    REMOVED = "REMOVED"


class GroupRecord:
    __slots__ = ("bundles", "held", "job", "spec", "state", "waiters")

    def __init__(self, spec: PlacementGroupSpec, job: int) -> None:
        self.spec = spec
        self.job = job
        self.state = GroupState.PENDING
        # Per bundle: its Node while reserved, and what it holds on its host.
        self.bundles: list[Node | None] = [None] * len(spec.bundles)
        self.held: list[tuple[dict[str, float], tuple[tuple[int, float], ...]] | None] = [
            None
        ] * len(spec.bundles)
        self.waiters: list[tuple[int, Serialized]] = []  # ready() objects not yet set

    @property
    def name(self) -> str:
        return f"placement group {id_hex(self.spec.group_id)}" + (
            f" ({self.spec.name!r})" if self.spec.name else ""
        )


def _in_group(strategy: Any, group_id: int) -> bool:
    return isinstance(strategy, PlacementGroupStrategy) and strategy.group_id == group_id


class PlacementGroups:
    """Every placement group of the runtime, by id (removed ones stay, as in Ray's table)."""

    def __init__(
        self, objects: ObjectTable, scheduler: Scheduler, tasks: Tasks, actors: Actors,
        job_of: Callable[[int, int], int],
    ) -> None:
        self.objects = objects
        self.scheduler = scheduler
        self.tasks = tasks
        self.actors = actors
        self._job_of = job_of
        self.records: dict[int, GroupRecord] = {}
        self.names: dict[tuple[str, str], int] = {}
        # PENDING or RESCHEDULING, in order; shared with the scheduler (``take_head``).
        self.waiting: dict[int, GroupRecord] = {}
        scheduler.waiting_groups = self.waiting

    # == creation and readiness ===========================================================

    def create(self, spec: PlacementGroupSpec) -> None:
        """Register a group; raises if its name is taken or no set of nodes could hold it."""
        key = (spec.namespace, spec.name)
        if spec.name and key in self.names:
            raise ValueError(
                f"A placement group named {spec.name!r} already exists in namespace "
                f"{spec.namespace!r}. Use get_placement_group() to reach it."
            )
        reason = never_fits(spec, self.scheduler.alive_nodes())
        if reason is not None:
            raise InfeasibleResourceError(reason)
        rec = self.records[spec.group_id] = GroupRecord(
            spec, self._job_of(spec.caller_id, spec.group_id)
        )
        self.waiting[spec.group_id] = rec
        if spec.name:
            self.names[key] = spec.group_id
        self.scheduler.dirty = True

    def ready(self, group_id: int, object_id: int, value: Serialized) -> None:
        """Make ``object_id`` (one ref counted for the caller) resolve to ``value`` once
        the group is reserved, or to an error if it is removed first."""
        self.objects.create(object_id, 1)
        rec = self.records.get(group_id)
        if rec is None:
            self.objects.set_value(object_id, error_value(ValueError(
                f"placement group {id_hex(group_id)} is not known to this runtime"
            )))
        elif rec.state is GroupState.REMOVED:
            self.objects.set_value(object_id, error_value(self._removed_error(rec)))
        elif rec.state is GroupState.PENDING:
            rec.waiters.append((object_id, value))
        else:
            self.objects.set_value(object_id, value)

    @staticmethod
    def _removed_error(rec: GroupRecord) -> TaskCancelledError:
        return TaskCancelledError(f"The {rec.name} was removed before it was ready.")

    # == reservation (after each batch, before work is placed) ============================

    def reserve(self) -> None:
        """Reserve every waiting group that fits now, all its bundles or none."""
        for rec in list(self.waiting.values()):
            self._try_reserve(rec)

    def _try_reserve(self, rec: GroupRecord) -> None:
        fixed = [b.host for b in rec.bundles if b is not None and b.host is not None]
        todo = [i for i, b in enumerate(rec.bundles) if b is None]
        wanted = [dict(rec.spec.bundles[i]) for i in todo]
        selectors = rec.spec.bundle_selectors
        placed = _assign(wanted, rec.spec.strategy, self.scheduler.alive_nodes(), fixed,
                         tuple(selectors[i] for i in todo) if selectors else (), take=True)
        if placed is None:
            return
        for i, request, (host, gpus) in zip(todo, wanted, placed, strict=True):
            rec.held[i] = (request, gpus)
            rec.bundles[i] = Node(
                host.node_id, dict(request), dict(request),
                {gpu: share for gpu, share in gpus}, host=host,
            )
        self.scheduler.bundles[rec.spec.group_id] = rec.bundles
        rec.state = GroupState.CREATED
        del self.waiting[rec.spec.group_id]
        for object_id, value in rec.waiters:
            self.objects.set_value(object_id, value)
        rec.waiters.clear()

    # == removal ==========================================================================

    def remove(self, group_id: int) -> None:
        """Remove a group: kill its actors, end its tasks, give its resources back."""
        rec = self.records.get(group_id)
        if rec is None or rec.state is GroupState.REMOVED:
            return
        rec.state = GroupState.REMOVED
        self.waiting.pop(group_id, None)
        if self.names.get((rec.spec.namespace, rec.spec.name)) == group_id:
            del self.names[(rec.spec.namespace, rec.spec.name)]
        scheduler = self.scheduler
        scheduler.removed_groups.add(group_id)
        scheduler.forget_feasibility()
        why = f"its {rec.name} was removed"
        for actor in list(self.actors.records.values()):
            if _in_group(actor.spec.scheduling_strategy, group_id):
                self.actors.kill(actor.spec.actor_id, no_restart=True, why=why,
                                 error_type=ActorPlacementGroupRemoved)
        for task in list(self.tasks.records.values()):
            if _in_group(task.spec.scheduling_strategy, group_id):
                self.tasks.fail(task.spec.task_id, TaskPlacementGroupRemoved(
                    f"Task {task.spec.name} was cancelled: {why}."
                ))
        self._release(rec)
        scheduler.bundles.pop(group_id, None)
        for object_id, _ in rec.waiters:
            self.objects.set_value(object_id, error_value(self._removed_error(rec)))
        rec.waiters.clear()
        scheduler.dirty = True

    def _release(self, rec: GroupRecord) -> None:
        for i, bundle in enumerate(rec.bundles):
            held = rec.held[i]
            if bundle is not None and held is not None and bundle.host is not None:
                bundle.alive = False
                if bundle.host.alive:
                    bundle.host.release(*held)
            rec.bundles[i] = None
            rec.held[i] = None

    def end_job(self, job: int) -> None:
        """The driver ``job`` is gone: its groups go too, unless detached."""
        for rec in list(self.records.values()):
            if rec.job == job and not rec.spec.detached:
                self.remove(rec.spec.group_id)

    def node_removed(self, node_id: str) -> None:
        """A node is gone: its bundles are lost and wait to be reserved again elsewhere."""
        for rec in self.records.values():
            lost = [i for i, b in enumerate(rec.bundles) if b is not None and b.node_id == node_id]
            for i in lost:
                bundle = rec.bundles[i]
                assert bundle is not None
                bundle.alive = False
                rec.bundles[i] = None
                rec.held[i] = None
            if lost and rec.state is GroupState.CREATED:
                rec.state = GroupState.RESCHEDULING
                self.waiting[rec.spec.group_id] = rec
        self.scheduler.dirty = True

    # == queries ==========================================================================

    def lookup(self, name: str, namespace: str) -> PlacementGroupSpec | None:
        group_id = self.names.get((namespace, name))
        return None if group_id is None else self.records[group_id].spec

    def table(self) -> list[dict[str, Any]]:
        """Ray's ``placement_group_table`` rows, one per group."""
        return [
            {
                "placement_group_id": id_hex(group_id),
                "name": rec.spec.name,
                "namespace": rec.spec.namespace,
                "bundles": {i: dict(b) for i, b in enumerate(rec.spec.bundles)},
                "bundles_to_node_id": {
                    i: b.node_id for i, b in enumerate(rec.bundles) if b is not None
                },
                "bundle_label_selector": [
                    describe_selector(s) for s in rec.spec.bundle_selectors
                ],
                "strategy": rec.spec.strategy,
                "state": rec.state.value,
                "lifetime": "detached" if rec.spec.detached else "non_detached",
            }
            for group_id, rec in self.records.items()
        ]


# == where bundles go ======================================================================


def never_fits(spec: PlacementGroupSpec, nodes: list[Node]) -> str | None:
    """Why no set of ``nodes`` could ever hold ``spec``'s group (a what-if on the nodes
    empty), or None if one could. Any backend that reserves groups itself asks it too."""
    bundles = [dict(b) for b in spec.bundles]
    empty = [Node(n.node_id, dict(n.total), dict(n.total),
                  {i: 1.0 for i in range(int(n.total.get("GPU", 0)))}, labels=n.labels)
             for n in nodes]
    if _assign(bundles, spec.strategy, empty, [], spec.bundle_selectors) is None:
        return _infeasible(spec, bundles, nodes)
    return None


def _infeasible(spec: PlacementGroupSpec, bundles: list[dict[str, float]], nodes: list[Node]
                ) -> str:
    """The message for a group no set of nodes could ever hold."""
    shown = [describe(b) for b in bundles]
    if spec.bundle_selectors:
        shown = [f"{b} on {describe_selector(s)}" if s else b
                 for b, s in zip(shown, spec.bundle_selectors, strict=True)]
        capacity = "; ".join(f"{n.node_id}: labels {n.labels or '{}'}, {describe(n.total)}"
                             for n in nodes)
    else:
        capacity = "; ".join(f"{n.node_id}: {describe(n.total)}" for n in nodes)
    return (
        f"Cannot create a placement group with strategy {spec.strategy} and bundles "
        f"{', '.join('{' + b + '}' for b in shown)}: no set of nodes can ever hold it. "
        f"Cluster capacity: {capacity or 'no nodes'}."
    )


def _assign(
    bundles: list[dict[str, float]], strategy: str, nodes: list[Node],
    fixed: list[Node], selectors: tuple[Selector, ...] = (), take: bool = False,
) -> list[tuple[Node, tuple[tuple[int, float], ...]]] | None:
    """A node for each of ``bundles`` following ``strategy``, acquiring as it goes; on
    failure everything acquired is released and None returned. ``selectors``, if given,
    has one per bundle: the labels its node must match.

    ``fixed``: hosts of the group's bundles already reserved, which the strategies
    respect. With ``take`` False the caller passes copies of the
    nodes (a what-if on empty nodes); the acquisitions are released all the same.
    """
    used: dict[str, int] = {}
    for host in fixed:
        used[host.node_id] = used.get(host.node_id, 0) + 1
    taken: list[tuple[Node, dict[str, float], tuple[tuple[int, float], ...]]] = []

    def undo() -> None:
        for node, request, gpus in reversed(taken):
            node.release(request, gpus)

    def most_free(candidates: list[Node]) -> list[Node]:
        return sorted(candidates, key=lambda n: -n.available.get("CPU", 0.0))

    # Largest bundles first: a greedy fit fails less often that way.
    order = sorted(range(len(bundles)), key=lambda i: -sum(bundles[i].values()))
    out: list[tuple[Node, tuple[tuple[int, float], ...]] | None] = [None] * len(bundles)
    if strategy in ("STRICT_PACK", "PACK"):
        hosts = {h.node_id for h in fixed}
        candidates = [n for n in nodes if not hosts or n.node_id in hosts]
        for node in most_free(candidates):
            if all(_take(node, bundles[i], taken, out, i, selectors) for i in order):
                break
            undo()
            taken.clear()
            out = [None] * len(bundles)
        else:
            if strategy == "STRICT_PACK":
                return None
            out = [None] * len(bundles)
            for i in order:  # PACK: as few nodes as will do
                ranked = sorted(most_free(nodes), key=lambda n: -used.get(n.node_id, 0))
                if not any(_take(n, bundles[i], taken, out, i, selectors) for n in ranked):
                    undo()
                    return None
                used[out[i][0].node_id] = used.get(out[i][0].node_id, 0) + 1  # type: ignore[index]
    else:
        strict = strategy == "STRICT_SPREAD"
        for i in order:
            ranked = sorted(most_free(nodes), key=lambda n: used.get(n.node_id, 0))
            if strict:
                ranked = [n for n in ranked if not used.get(n.node_id)]
            if not any(_take(n, bundles[i], taken, out, i, selectors) for n in ranked):
                undo()
                return None
            used[out[i][0].node_id] = used.get(out[i][0].node_id, 0) + 1  # type: ignore[index]
    if not take:
        undo()
    return [placed for placed in out if placed is not None]


def _take(
    node: Node, request: dict[str, float],
    taken: list[tuple[Node, dict[str, float], tuple[tuple[int, float], ...]]],
    out: list[tuple[Node, tuple[tuple[int, float], ...]] | None], index: int,
    selectors: tuple[Selector, ...] = (),
) -> bool:
    if not node.fits(request) or (selectors and not matches(node.labels, selectors[index])):
        return False
    gpus = node.acquire(request)
    taken.append((node, request, gpus))
    out[index] = (node, gpus)
    return True
