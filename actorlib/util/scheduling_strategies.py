"""Ray's ``ray.util.scheduling_strategies``: where a task or actor may run.

``"DEFAULT"``, ``"SPREAD"``, :class:`NodeAffinitySchedulingStrategy`,
:class:`PlacementGroupSchedulingStrategy` and :class:`NodeLabelSchedulingStrategy` (with
its operators ``In``, ``NotIn``, ``Exists``, ``DoesNotExist``, matched against the labels
nodes are given at ``init``/``actorlib start``).
"""

from __future__ import annotations

from actorlib.core.specs import NodeAffinitySchedulingStrategy
from actorlib.label_strategy import DoesNotExist, Exists, In, NodeLabelSchedulingStrategy, NotIn
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
