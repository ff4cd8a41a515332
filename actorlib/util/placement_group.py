"""Ray's ``ray.util.placement_group``: reserve bundles of resources, all at once.

``placement_group(bundles, strategy)`` asks the core to reserve every bundle (each on one
node, the strategy saying how they spread across nodes) and returns a handle at once;
``pg.ready()`` resolves when the reservation is made. Work scheduled with
``PlacementGroupSchedulingStrategy(pg, bundle_index)`` then runs from a bundle's
resources. A group no set of nodes could ever hold is refused here, with the cluster's
capacity in the message, rather than left pending forever.
"""

from __future__ import annotations

from typing import Any

from actorlib import session
from actorlib.arguments import caller_id
from actorlib.core.ids import id_hex
from actorlib.core.labels import Selector, parse_selector
from actorlib.core.specs import PlacementGroupSpec
from actorlib.core.strings import plain_str
from actorlib.exceptions import NotSupportedError
from actorlib.placement import (
    PlacementGroup,
    current_group,
    validate_bundles,
    validate_strategy,
)

__all__ = [
    "PlacementGroup",
    "get_current_placement_group",
    "get_placement_group",
    "placement_group",
    "placement_group_table",
    "remove_placement_group",
]


def placement_group(
    bundles: list[dict[str, float]], strategy: str = "PACK", name: str = "",
    lifetime: str | None = None, bundle_label_selector: list[dict[str, str]] | None = None,
    **ray_only: Any,
) -> PlacementGroup:
    """Reserve ``bundles`` (a list of resource dicts) with ``strategy``: "PACK" (as few
    nodes as will do), "SPREAD" (different nodes where it can), "STRICT_PACK" (one node)
    or "STRICT_SPREAD" (a different node each). Returns at once; ``ready()`` tells when.

    ``name`` makes it reachable with ``get_placement_group(name)``; ``lifetime="detached"``
    keeps it after the creating driver ends. ``bundle_label_selector``: one
    ``label_selector`` per bundle (``{}`` for any node); each bundle goes only on a node
    whose labels match its selector. Raises ``InfeasibleResourceError`` if no set of nodes
    can ever hold it.
    """
    unknown = sorted(set(ray_only) - {"_soft_target_node_id"})
    if unknown:
        raise TypeError(f"placement_group() got unexpected keyword argument(s) "
                        f"{', '.join(map(repr, unknown))}")
    given = sorted(k for k, v in ray_only.items() if v is not None)
    if given:
        raise NotSupportedError(
            f"placement_group(): {', '.join(given)} is not supported by actorlib (it has no "
            "soft node targets); bundles go where the strategy and bundle_label_selector "
            "put them."
        )
    specs = validate_bundles(bundles)
    selectors = _bundle_selectors(bundle_label_selector, len(specs))
    strategy = validate_strategy(strategy)
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__} {name!r}")
    name = plain_str(name)
    if lifetime not in (None, "detached"):
        raise ValueError(f'lifetime must be None or "detached", got {lifetime!r}')
    client = session.client()
    group_id = client.ids.next()
    client.create_placement_group(PlacementGroupSpec(
        group_id, specs, strategy, name, client.namespace, lifetime == "detached",
        caller_id(), selectors,
    ))
    return PlacementGroup(group_id, specs)


def _bundle_selectors(value: Any, count: int) -> tuple[Selector, ...]:
    """``bundle_label_selector``: a list of one label selector per bundle, or None."""
    if value is None:
        return ()
    accepted = (f"a list of {count} label selector dict(s), one per bundle, like "
                '[{"zone": "a"}] ({} for any node)')
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"bundle_label_selector must be {accepted}, got "
                        f"{type(value).__name__} {value!r}")
    if len(value) != count:
        raise ValueError(f"bundle_label_selector must be {accepted}, got {len(value)}: "
                         f"{value!r}")
    selectors = tuple(parse_selector(s, f"bundle_label_selector[{i}]")
                      for i, s in enumerate(value))
    return selectors if any(selectors) else ()


def remove_placement_group(placement_group: PlacementGroup) -> None:
    """Remove the group: its actors are killed, its tasks cancelled (those still waiting
    fail), and its resources freed."""
    if not isinstance(placement_group, PlacementGroup):
        raise TypeError("remove_placement_group() takes a PlacementGroup, got "
                        f"{type(placement_group).__name__} {placement_group!r}")
    session.client().remove_placement_group(int(placement_group.id))


def get_placement_group(placement_group_name: str) -> PlacementGroup:
    """The live group named ``placement_group_name`` in this job's namespace."""
    if not isinstance(placement_group_name, str):
        raise TypeError("placement_group_name must be a str, got "
                        f"{type(placement_group_name).__name__} {placement_group_name!r}")
    placement_group_name = plain_str(placement_group_name)  # it travels to the core
    client = session.client()
    spec = client.lookup_placement_group(placement_group_name, client.namespace)
    if spec is None:
        raise ValueError(
            f"Failed to look up placement group with name: {placement_group_name!r} (none "
            f"in namespace {client.namespace!r})."
        )
    return PlacementGroup(spec.group_id, spec.bundles)


def placement_group_table(placement_group: PlacementGroup | None = None) -> dict[str, Any]:
    """Every group's state by id hex, as Ray's; for one group, its row."""
    rows = session.client().placement_groups()
    if placement_group is None:
        return {row["placement_group_id"]: row for row in rows}
    if not isinstance(placement_group, PlacementGroup):
        raise TypeError("placement_group_table() takes a PlacementGroup or None, got "
                        f"{type(placement_group).__name__} {placement_group!r}")
    wanted = id_hex(int(placement_group.id))
    for row in rows:
        if row["placement_group_id"] == wanted:
            return row
    return {}


def get_current_placement_group() -> PlacementGroup | None:
    """The group the calling task or actor runs in; None in a driver or outside groups."""
    return current_group()
