"""Placement groups on the API side: the handle, the scheduling strategy, their checks.

A :class:`PlacementGroup` is a handle to bundles of resources the core reserves all at
once (see :mod:`actorlib.core.placement_groups`); work scheduled with
:class:`PlacementGroupSchedulingStrategy` runs in one of its bundles, from the bundle's
resources. The module functions (``placement_group()``, ``remove_placement_group()``...)
live in :mod:`actorlib.util.placement_group`, where Ray has them.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from actorlib.core.execution_context import ExecutionContext, current_execution
from actorlib.core.ids import PlacementGroupID, id_hex
from actorlib.core.refs import ObjectRef
from actorlib.core.specs import Bundle, PlacementGroupStrategy
from actorlib.core.strings import plain_str

STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


class PlacementGroup:
    """A handle to a placement group: its id and bundles; ``ready()`` and ``wait()``.

    Handles are plain values: they pickle into tasks and actors, and two handles to one
    group are equal.
    """

    __slots__ = ("_bundles", "_id")

    def __init__(self, id: PlacementGroupID | int, bundle_specs: Any = ()) -> None:
        self._id = int(id)
        self._bundles: tuple[Bundle, ...] = tuple(
            b if isinstance(b, tuple) else tuple(sorted(b.items())) for b in bundle_specs
        )

    @property
    def id(self) -> PlacementGroupID:
        return PlacementGroupID(self._id)

    @property
    def bundle_specs(self) -> list[dict[str, float]]:
        """Each bundle's resources, by bundle index."""
        return [dict(b) for b in self._bundles]

    @property
    def bundle_count(self) -> int:
        return len(self._bundles)

    def ready(self) -> ObjectRef[PlacementGroup]:
        """A ref that resolves to this handle once every bundle is reserved (``get`` it,
        ``await`` it, or ``wait`` on it); to an error if the group is removed first."""
        from actorlib import session
        from actorlib.core.serialization import serialize

        client = session.client()
        value = client.store.seal(serialize(self, label="a placement group"))
        object_id = client.ids.next()
        client.placement_group_ready(self._id, object_id, value)
        return ObjectRef(object_id, client, "PlacementGroup.ready")

    def wait(self, timeout_seconds: float | int = 30) -> bool:
        """Wait until the group is reserved: True if it is, False if ``timeout_seconds``
        passed first."""
        if isinstance(timeout_seconds, bool) or not isinstance(timeout_seconds, (int, float)) \
                or not timeout_seconds >= 0:
            raise ValueError(
                f"timeout_seconds must be a number of seconds >= 0, got {timeout_seconds!r}"
            )
        from actorlib.api import wait

        ready, _ = wait([self.ready()], timeout=float(timeout_seconds))
        return bool(ready)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PlacementGroup) and other._id == self._id

    def __hash__(self) -> int:
        return hash(self._id)

    def __repr__(self) -> str:
        return f"PlacementGroup(id={id_hex(self._id)}, bundles={self.bundle_specs})"

    def __reduce__(self) -> Any:
        return (PlacementGroup, (self._id, self._bundles))


def validate_bundles(bundles: Any) -> tuple[Bundle, ...]:
    """Ray's rules for bundles: a non-empty list of non-empty dicts of amounts >= 0, each
    asking for something."""
    accepted = 'a non-empty list of dicts of resource name -> amount, e.g. [{"CPU": 1}]'
    if isinstance(bundles, dict) or not isinstance(bundles, (list, tuple)):
        raise TypeError(f"bundles must be {accepted}, got {type(bundles).__name__} {bundles!r}")
    if not bundles:
        raise ValueError(f"bundles must be {accepted}, got an empty list")
    out = []
    for index, bundle in enumerate(bundles):
        if not isinstance(bundle, dict) or not all(isinstance(k, str) for k in bundle):
            raise TypeError(f"bundles[{index}] must be a dict of resource name -> amount, "
                            f"got {type(bundle).__name__} {bundle!r}")
        for key, amount in bundle.items():
            if isinstance(amount, bool) or not isinstance(amount, (int, float)) \
                    or not amount >= 0 or math.isinf(amount):
                raise ValueError(
                    f"bundles[{index}][{key!r}] must be a number >= 0, got {amount!r}"
                )
        if not any(bundle.values()):
            raise ValueError(
                f"bundles[{index}] must ask for some resource (a bundle cannot be empty or "
                f"all zero), got {bundle!r}"
            )
        out.append(tuple(sorted((plain_str(k), float(v)) for k, v in bundle.items() if v)))
    return tuple(out)


def validate_strategy(strategy: Any) -> str:
    if not isinstance(strategy, str):
        raise TypeError(f"strategy must be one of {', '.join(map(repr, STRATEGIES))}, got "
                        f"{type(strategy).__name__} {strategy!r}")
    if strategy not in STRATEGIES:
        raise ValueError(
            f"strategy must be one of {', '.join(map(repr, STRATEGIES))}, got {strategy!r}"
        )
    return plain_str(strategy)


class PlacementGroupSchedulingStrategy:
    """Run a task or actor in a bundle of ``placement_group`` (any bundle with room, for
    ``placement_group_bundle_index=-1``). ``placement_group_capture_child_tasks``: the work
    it submits runs in the group too, unless that names a strategy of its own.

    ``placement_group=None`` means no group (the default scheduling, capturing nothing).
    """

    def __init__(
        self, placement_group: PlacementGroup | None, placement_group_bundle_index: int = -1,
        placement_group_capture_child_tasks: bool | None = None,
    ) -> None:
        self.placement_group = placement_group
        self.placement_group_bundle_index = placement_group_bundle_index
        self.placement_group_capture_child_tasks = placement_group_capture_child_tasks
        self._core = core_strategy(
            placement_group, placement_group_bundle_index, placement_group_capture_child_tasks
        )

    def __repr__(self) -> str:
        return (f"PlacementGroupSchedulingStrategy({self.placement_group!r}, "
                f"{self.placement_group_bundle_index}, "
                f"{self.placement_group_capture_child_tasks})")


def core_strategy(
    group: Any, bundle_index: Any = -1, capture: Any = None
) -> PlacementGroupStrategy | str:
    """The core's strategy for a group, index and capture flag, checked ("DEFAULT" for no
    group)."""
    if group is not None and not isinstance(group, PlacementGroup):
        raise TypeError("placement_group must be a PlacementGroup (from placement_group()) "
                        f"or None, got {type(group).__name__} {group!r}")
    if isinstance(bundle_index, bool) or not isinstance(bundle_index, int):
        raise TypeError("placement_group_bundle_index must be an int (-1: any bundle), got "
                        f"{type(bundle_index).__name__} {bundle_index!r}")
    if capture is not None and not isinstance(capture, bool):
        raise TypeError("placement_group_capture_child_tasks must be a bool or None, got "
                        f"{type(capture).__name__} {capture!r}")
    if group is None:
        if bundle_index != -1:
            raise ValueError("placement_group_bundle_index needs a placement_group, got "
                             f"{bundle_index} with placement_group=None")
        return "DEFAULT"
    if not -1 <= bundle_index < group.bundle_count:
        raise ValueError(
            f"placement_group_bundle_index must be -1 (any bundle) or an index below the "
            f"group's {group.bundle_count} bundle(s), got {bundle_index}"
        )
    return PlacementGroupStrategy(group._id, group._bundles, bundle_index, bool(capture))


def inherited_strategy() -> Any:
    """The strategy of work that names none: its parent's placement group, if the parent
    runs in one that captures child tasks; else "DEFAULT"."""
    return strategy_inherited_in(current_execution.get())


def strategy_inherited_in(ctx: ExecutionContext | None) -> Any:
    """:func:`inherited_strategy` for a caller that has its ``current_execution`` at hand."""
    if ctx is not None and ctx.spec is not None:
        strategy = ctx.spec.scheduling_strategy
        if isinstance(strategy, PlacementGroupStrategy) and strategy.capture_child_tasks:
            return dataclasses.replace(strategy, bundle_index=-1)
    return "DEFAULT"


def current_group() -> PlacementGroup | None:
    """The placement group the calling task or actor runs in, if any."""
    ctx = current_execution.get()
    if ctx is None or ctx.spec is None:
        return None
    strategy = ctx.spec.scheduling_strategy
    if isinstance(strategy, PlacementGroupStrategy):
        return PlacementGroup(strategy.group_id, strategy.bundles)
    return None
