"""Ray's ``ray.util.scheduling_strategies``: where a task or actor may run.

``"DEFAULT"``, ``"SPREAD"``, :class:`NodeAffinitySchedulingStrategy` and
:class:`PlacementGroupSchedulingStrategy` are supported. Node-label strategies are
importable, so Ray code loads, but constructing one raises
:class:`~actorlib.exceptions.NotSupportedError`: actorlib has no node labels, and placing
work somewhere else silently would be wrong.
"""

from __future__ import annotations

from typing import Any, NoReturn

from actorlib.core.specs import NodeAffinitySchedulingStrategy
from actorlib.exceptions import NotSupportedError
from actorlib.placement import PlacementGroupSchedulingStrategy

__all__ = [
    "DEFAULT_SCHEDULING_STRATEGY",
    "SPREAD_SCHEDULING_STRATEGY",
    "DoesNotExist",
    "Exists",
    "In",
    "NodeAffinitySchedulingStrategy",
    "NodeLabelSchedulingStrategy",
    "NotIn",
    "PlacementGroupSchedulingStrategy",
]

DEFAULT_SCHEDULING_STRATEGY = "DEFAULT"
SPREAD_SCHEDULING_STRATEGY = "SPREAD"


def _unsupported(feature: str) -> NoReturn:
    raise NotSupportedError(
        f"{feature} is not supported by actorlib (it has no {_WHY[feature]}). Supported "
        'scheduling strategies: "DEFAULT", "SPREAD", NodeAffinitySchedulingStrategy, '
        "PlacementGroupSchedulingStrategy."
    )


_WHY = {
    "NodeLabelSchedulingStrategy": "node labels",
    "In": "node labels",
    "NotIn": "node labels",
    "Exists": "node labels",
    "DoesNotExist": "node labels",
}


class NodeLabelSchedulingStrategy:
    """Ray's node-label strategy; raises ``NotSupportedError`` when constructed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _unsupported("NodeLabelSchedulingStrategy")


class In:
    """A node-label operator; raises ``NotSupportedError`` when constructed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _unsupported("In")


class NotIn:
    """A node-label operator; raises ``NotSupportedError`` when constructed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _unsupported("NotIn")


class Exists:
    """A node-label operator; raises ``NotSupportedError`` when constructed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _unsupported("Exists")


class DoesNotExist:
    """A node-label operator; raises ``NotSupportedError`` when constructed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _unsupported("DoesNotExist")
