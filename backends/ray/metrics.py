"""``actorlib.util.metrics`` on the ray backend: each batch recorded in Ray's own metrics.

Ray's metrics agent exports them (Prometheus, Ray's dashboard); actorlib's state API is
not served on this backend, so ``list_metrics()`` is not either. A process keeps one Ray
metric object per name, made on first use.
"""

from __future__ import annotations

import threading
from typing import Any

from actorlib.core.metrics import COUNTER, GAUGE, Batch

_lock = threading.Lock()
_made: dict[str, Any] = {}


def _metric(name: str, definition: tuple[Any, ...]) -> Any:
    from ray.util import metrics

    kind, description, tag_keys, boundaries = definition
    with _lock:
        made = _made.get(name)
        if made is None:
            if kind == COUNTER:
                made = metrics.Counter(name, description, tag_keys)
            elif kind == GAUGE:
                made = metrics.Gauge(name, description, tag_keys)
            else:
                made = metrics.Histogram(name, description, list(boundaries), tag_keys)
            _made[name] = made
        return made


def record(batch: Batch) -> None:
    """Every update of ``batch``, recorded in Ray's metric of its name."""
    definitions, values = batch
    for (name, tag_values), value in values.items():
        definition = definitions[name]
        metric = _metric(name, definition)
        tags = dict(zip(definition[2], tag_values, strict=True))
        if definition[0] == COUNTER:
            metric.inc(value, tags)
        elif definition[0] == GAUGE:
            metric.set(value, tags)
        else:
            for point in value:
                metric.observe(point, tags)
