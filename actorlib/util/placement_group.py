"""Ray's ``ray.util.placement_group`` names, importable so Ray code loads.

actorlib has no placement groups (gang-reserving resource bundles across nodes). Rather
than fake one (a "reservation" that reserves nothing), creating, looking up or removing a
placement group raises :class:`~actorlib.exceptions.NotSupportedError`. The questions that
have a true answer without them are answered: no code runs in a placement group
(``get_current_placement_group()`` is None) and the table of groups is empty.
"""

from __future__ import annotations

from typing import Any, NoReturn

from actorlib.exceptions import NotSupportedError

__all__ = [
    "PlacementGroup",
    "get_current_placement_group",
    "get_placement_group",
    "placement_group",
    "placement_group_table",
    "remove_placement_group",
]

_MESSAGE = (
    "Placement groups are not supported by actorlib ({what}). Reserve resources with "
    "num_cpus/num_gpus/resources on each task or actor, and pin work to a node with "
    "NodeAffinitySchedulingStrategy; code that needs gang scheduling needs Ray itself."
)


def _unsupported(what: str) -> NoReturn:
    raise NotSupportedError(_MESSAGE.format(what=what))


class PlacementGroup:
    """Ray's placement-group handle; raises ``NotSupportedError`` when constructed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _unsupported("PlacementGroup()")


def placement_group(*args: Any, **kwargs: Any) -> NoReturn:
    _unsupported("placement_group()")


def get_placement_group(placement_group_name: str) -> NoReturn:
    _unsupported(f"get_placement_group({placement_group_name!r})")


def remove_placement_group(placement_group: Any) -> NoReturn:
    _unsupported("remove_placement_group()")


def placement_group_table(placement_group: Any = None) -> dict[str, Any]:
    """Every placement group there is: none."""
    if placement_group is not None:
        _unsupported("placement_group_table(pg)")
    return {}


def get_current_placement_group() -> None:
    """The placement group the caller runs in: never one, in actorlib."""
    return None
