"""``actorlib.util.metrics``: Ray's custom metrics (``ray.util.metrics``).

``Counter``, ``Gauge`` and ``Histogram`` take Ray's arguments and validate tags as Ray
does. Recorded anywhere (the driver, a task, an actor, on any backend), the values are
folded together by the runtime's core: ``actorlib.util.state.list_metrics()`` lists them,
``actorlib list metrics`` prints them, and the dashboard serves them in Prometheus' text
format at ``/metrics`` (on the ray backend they go to Ray's own metrics instead).

Updates are batched in each process (see :mod:`actorlib.core.metrics`) and reach the core
a moment later, as Ray exports its metrics in the background. Recorded with no runtime
(before ``init``, after ``shutdown``), they are dropped, as Ray drops them.
"""

from __future__ import annotations

import itertools
import math
import re
from typing import Any

from actorlib.core import context
from actorlib.core import metrics as core_metrics
from actorlib.core.metrics import Batch
from actorlib.core.strings import plain_str
from actorlib.exceptions import RuntimeClosedError

__all__ = ["Counter", "Gauge", "Histogram", "Metric"]

#: Prometheus' metric names (its client's pattern, as Ray checks them).
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


def _send(batch: Batch, delivered: Any) -> None:
    client = context.current()
    if client is None or client.closed:
        raise RuntimeClosedError("no runtime to record metrics in")
    client.record_metrics(batch, delivered)


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"value must be int or float, got {type(value)}.")
    return value


class Metric:
    """What every metric shares: a name, a description, tag keys and default tags."""

    _kind = ""

    def __init__(self, name: str, description: str = "",
                 tag_keys: tuple[str, ...] | None = None) -> None:
        if not isinstance(name, str):
            raise TypeError(f"Metric name must be str, got {type(name)}.")
        if len(name) == 0:
            raise ValueError("Empty name is not allowed. Please provide a metric name.")
        if not _NAME.match(name):
            # Ray warns and drops such a metric's data; a name that can never be exported
            # is a mistake to say at once.
            raise ValueError(f"Invalid metric name: {name}. Metric names can only contain "
                             "letters, numbers, _, and :, and cannot start with a number.")
        if not isinstance(description, str):
            raise TypeError(f"description must be str, got {type(description)}.")
        keys = tag_keys or ()
        if not isinstance(keys, tuple):
            raise TypeError(f"tag_keys should be a tuple type, got: {type(keys)}")
        for key in keys:
            if not isinstance(key, str):
                raise TypeError(f"Tag keys must be str, got {type(key)}.")
        # Exact str throughout: a record travels to the core in another process, where a
        # str subclass of the caller's own (its ``__main__``, say) would not unpickle.
        self._name = plain_str(name)
        self._description = plain_str(description)
        self._tag_keys: tuple[str, ...] = tuple(plain_str(key) for key in keys)
        self._default_tags: dict[str, str] = {}
        self._boundaries: tuple[float, ...] = ()
        self._definition: core_metrics.Definition | None = None  # made at the first record

    def set_default_tags(self, default_tags: dict[str, str]) -> Metric:
        """Tags every record uses unless it passes its own; returns the metric itself."""
        for key, value in default_tags.items():
            if key not in self._tag_keys:
                raise ValueError(f"Unrecognized tag key {key}.")
            if not isinstance(value, str):
                raise TypeError(f"Tag values must be str, got {type(value)}.")
        self._default_tags = {plain_str(k): plain_str(v) for k, v in default_tags.items()}
        return self

    @property
    def info(self) -> dict[str, Any]:
        """Ray's description of the metric."""
        return {"name": self._name, "description": self._description,
                "tag_keys": self._tag_keys, "default_tags": self._default_tags}

    def _tags(self, tags: dict[str, str] | None) -> tuple[str, ...]:
        """The record's tag values in tag-key order: its own over the defaults."""
        final = self._default_tags
        if tags:
            for key, value in tags.items():
                if not isinstance(value, str):
                    raise TypeError(f"Tag values must be str, got {type(value)}.")
                if key not in self._tag_keys:
                    raise ValueError(f"Unrecognized tag key {key}.")
            final = {**final, **{plain_str(k): plain_str(v) for k, v in tags.items()}}
        missing = [key for key in self._tag_keys if key not in final]
        if missing:
            raise ValueError(f"Missing value for tag key(s): {','.join(missing)}.")
        return tuple(final[key] for key in self._tag_keys)

    def _record(self, value: float, tags: dict[str, str] | None) -> None:
        definition = self._definition
        if definition is None:  # one tuple per metric: the batch tells it by identity
            definition = self._definition = (
                self._kind, self._description, self._tag_keys, self._boundaries)
        try:
            core_metrics.pending.record(self._name, definition, self._tags(tags), value, _send)
        except RuntimeClosedError:
            core_metrics.pending.reset()  # no runtime: dropped, as Ray drops them

    def __reduce__(self) -> Any:
        return (type(self)._rebuild, (self._name, self._description, self._tag_keys,
                                      self._boundaries, self._default_tags))

    @classmethod
    def _rebuild(cls, name: str, description: str, tag_keys: tuple[str, ...],
                 boundaries: tuple[float, ...], default_tags: dict[str, str]) -> Metric:
        """A metric sent to a task or actor, its default tags kept."""
        metric = cls.__new__(cls)
        Metric.__init__(metric, name, description, tag_keys)
        metric._boundaries = boundaries
        metric._default_tags = default_tags
        return metric


class Counter(Metric):
    """A cumulative count that only goes up (Prometheus' counter: ``NAME_total``)."""

    _kind = core_metrics.COUNTER

    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        """Add ``value`` (> 0); ``tags`` override the default tags."""
        if _number(value) <= 0:
            raise ValueError(f"value must be >0, got {value}")
        self._record(value, tags)


class Gauge(Metric):
    """The last value set, per tag set; it can go up and down."""

    _kind = core_metrics.GAUGE

    def set(self, value: float | None, tags: dict[str, str] | None = None) -> None:
        """Set the gauge to ``value`` (``None``: nothing, as in Ray)."""
        if value is None:
            return
        self._record(_number(value), tags)


class Histogram(Metric):
    """Observations counted in buckets: bucket ``i`` holds values up to
    ``boundaries[i]``, the last one the rest (Prometheus' histogram)."""

    _kind = core_metrics.HISTOGRAM

    def __init__(self, name: str, description: str = "",
                 boundaries: list[float] | None = None,
                 tag_keys: tuple[str, ...] | None = None) -> None:
        super().__init__(name, description, tag_keys)
        if boundaries is None or len(boundaries) == 0:
            raise ValueError("boundaries argument should be provided when using the "
                             'Histogram class. e.g., Histogram("name", boundaries=[1.0, 2.0])')
        for i, boundary in enumerate(boundaries):
            _number(boundary)
            if boundary <= 0 or math.isinf(boundary) or math.isnan(boundary):
                raise ValueError(f"Invalid `boundaries` argument at index {i}, {boundaries}. "
                                 "Use positive values for the arguments.")
        if any(a >= b for a, b in itertools.pairwise(boundaries)):
            raise ValueError(f"boundaries must be increasing, got {boundaries}")
        self.boundaries = list(boundaries)
        self._boundaries = tuple(float(b) for b in boundaries)

    def observe(self, value: float, tags: dict[str, str] | None = None) -> None:
        """Count ``value`` in its bucket."""
        self._record(_number(value), tags)

    @property
    def info(self) -> dict[str, Any]:
        return {**super().info, "boundaries": self.boundaries}

    @classmethod
    def _rebuild(cls, name: str, description: str, tag_keys: tuple[str, ...],
                 boundaries: tuple[float, ...], default_tags: dict[str, str]) -> Metric:
        metric = super()._rebuild(name, description, tag_keys, boundaries, default_tags)
        metric.boundaries = list(boundaries)  # type: ignore[attr-defined]
        return metric
