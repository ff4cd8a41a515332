"""User metrics (``actorlib.util.metrics``): recorded where the code runs, kept by the core.

Every process keeps a :class:`Pending` batch of what its code recorded (a counter's sum of
increments, a gauge's last value, a histogram's bucket counts, per metric and tag set),
and hands it to the core through its client (``record_metrics``) with at most one batch
on the way at a time: updates made while one travels are merged into the next, so a
counter increased a million times in a loop costs a few messages, not a million. The
core folds batches into its :class:`MetricTable`, which the state API lists (kind
``metrics``) and the dashboard serves in Prometheus' text format (:func:`prometheus`).
"""

from __future__ import annotations

import bisect
import logging
import math
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("actorlib.core")

COUNTER, GAUGE, HISTOGRAM = "COUNTER", "GAUGE", "HISTOGRAM"

#: What makes a metric: its kind, description, tag keys and (histograms) boundaries.
Definition = tuple[str, str, tuple[str, ...], tuple[float, ...]]
#: One metric with one set of tag values: its name and the values, in tag-key order.
Key = tuple[str, tuple[str, ...]]
#: A counter's total or a gauge's value (float); a histogram's observations (a list) on
#: the way, its [bucket counts..., sum, count] in the core.
Value = Any
#: What travels to the core: definitions by name, then values by key.
Batch = tuple[dict[str, Definition], dict[Key, Value]]


def _merge(kind: str, old: Value, new: Value) -> Value:
    """An update folded into what a process has not sent yet (``old`` None: nothing):
    a counter's increments add up, a gauge keeps its last value, a histogram's
    observations are kept (a backend may hand them on one by one: the ray backend)."""
    if old is None:
        return [new] if kind == HISTOGRAM else new
    if kind == COUNTER:
        return old + new
    if kind == GAUGE:
        return new
    old.append(new)
    return old


def _fold(definition: Definition, old: Value, new: Value) -> Value:
    """A batch's value folded into the core's (``old`` None: nothing yet)."""
    kind, _, _, boundaries = definition
    if kind != HISTOGRAM:
        return float(new) if old is None or kind == GAUGE else old + new
    out = old if old is not None else [0] * (len(boundaries) + 1) + [0.0, 0]
    for value in new:
        out[bisect.bisect_left(boundaries, value)] += 1  # a bucket holds values <= its bound
        out[-2] += value
        out[-1] += 1
    return out


def _same(a: Definition, b: Definition) -> bool:
    """Whether two definitions describe one metric (the description may differ)."""
    return a[0] == b[0] and a[2] == b[2] and a[3] == b[3]


def _clash(name: str, known: Definition, other: Definition) -> None:
    log.warning("actorlib metrics: %s is recorded as a %s with tag keys %s; a %s of that "
                "name with tag keys %s is ignored", name, known[0].lower(), known[2],
                other[0].lower(), other[2])


class Pending:
    """The updates of this process not yet handed to the core (any thread records)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._definitions: dict[str, Definition] = {}
        self._values: dict[Key, Value] = {}
        self._sending = False
        #: Every name this process recorded, as first defined: a later metric of the
        #: same name and another kind or tag keys is dropped (the core does the same
        #: across processes), so one batch never mixes two definitions.
        self._known: dict[str, Definition] = {}
        self._warned: set[str] = set()

    def record(self, name: str, definition: Definition, tags: tuple[str, ...], value: Value,
               send: Callable[[Batch, Callable[[], None]], None]) -> None:
        """Fold one update in; send the batch now unless one is on its way (then the
        answer to that one sends this)."""
        key = (name, tags)
        with self._lock:
            known = self._known.setdefault(name, definition)
            if known is not definition and not _same(known, definition):
                if name not in self._warned:
                    self._warned.add(name)
                    _clash(name, known, definition)
                return
            self._definitions[name] = known
            self._values[key] = _merge(definition[0], self._values.get(key), value)
            if self._sending:
                return
            self._sending = True
        self._send(send)

    def _send(self, send: Callable[[Batch, Callable[[], None]], None]) -> None:
        with self._lock:
            if not self._values:
                self._sending = False
                return
            batch = (self._definitions, self._values)
            self._definitions, self._values = {}, {}

        def delivered() -> None:
            try:
                self._send(send)
            except Exception:  # the runtime went meanwhile: on its reader, never raise
                log.debug("actorlib metrics: a batch could not be sent", exc_info=True)

        try:
            send(batch, delivered)
        except BaseException:
            with self._lock:
                self._sending = False  # the runtime is gone: what it held is lost with it
            raise

    def reset(self) -> None:
        """Forget everything (a new runtime: the old one's metrics are gone with it)."""
        with self._lock:
            self._definitions, self._values = {}, {}
            self._sending = False
            self._known = {}


#: This process's batch (the driver's, or a worker's for the work it runs).
pending = Pending()


class MetricTable:
    """The core's metrics: every process's batches folded together (on the core loop)."""

    def __init__(self) -> None:
        self.definitions: dict[str, Definition] = {}
        self.values: dict[Key, Value] = {}
        self._refused: set[str] = set()

    def apply(self, batch: Batch) -> None:
        definitions, values = batch
        for name, definition in definitions.items():
            known = self.definitions.setdefault(name, definition)
            if not _same(known, definition) and name not in self._refused:
                self._refused.add(name)
                _clash(name, known, definition)
        for key, value in values.items():
            name = key[0]
            known = self.definitions[name]
            if not _same(known, definitions[name]):
                continue  # a clash (logged above): the first definition wins
            self.values[key] = _fold(known, self.values.get(key), value)

    def rows(self) -> list[dict[str, Any]]:
        """One row per metric and tag set, sorted by name (the state API's ``metrics``)."""
        out = []
        for (name, tag_values), value in sorted(self.values.items()):
            kind, description, tag_keys, boundaries = self.definitions[name]
            row: dict[str, Any] = {
                "name": name, "type": kind, "description": description,
                "tags": dict(zip(tag_keys, tag_values, strict=True)),
            }
            if kind == HISTOGRAM:
                buckets = value[:-2]
                row.update(value=value[-2], sum=value[-2], count=int(value[-1]),
                           boundaries=list(boundaries), buckets=[int(b) for b in buckets])
            else:
                row["value"] = value
            out.append(row)
        return out


# == Prometheus' text format ================================================================

def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(tags: dict[str, str], extra: tuple[str, str] | None = None) -> str:
    pairs = [*tags.items(), *([extra] if extra else [])]
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_label(str(v))}"' for k, v in pairs) + "}"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def prometheus(rows: list[dict[str, Any]]) -> str:
    """The metrics rows in Prometheus' text exposition format (version 0.0.4): a counter
    as ``NAME_total``, a histogram as cumulative ``NAME_bucket{le=...}``, ``NAME_sum`` and
    ``NAME_count``, as Prometheus' own client writes them."""
    lines: list[str] = []
    described: set[str] = set()
    for row in rows:
        name, kind, tags = row["name"], row["type"], row["tags"]
        if name not in described:
            described.add(name)
            help_text = row["description"].replace("\\", "\\\\").replace("\n", "\\n")
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind.lower()}")
        if kind == COUNTER:
            lines.append(f"{name}_total{_labels(tags)} {_number(row['value'])}")
        elif kind == GAUGE:
            lines.append(f"{name}{_labels(tags)} {_number(row['value'])}")
        else:
            total = 0
            for bound, count in zip([*row["boundaries"], math.inf], row["buckets"], strict=True):
                total += count
                lines.append(f"{name}_bucket{_labels(tags, ('le', _number(bound)))} {total}")
            lines.append(f"{name}_sum{_labels(tags)} {_number(row['sum'])}")
            lines.append(f"{name}_count{_labels(tags)} {row['count']}")
    return "\n".join(lines) + "\n" if lines else ""
