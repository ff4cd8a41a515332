"""``actorlib.util.metrics`` (Ray's ``ray.util.metrics``) on every backend.

Values recorded in the driver, in tasks and in actors reach the core, which folds them
together: ``list_metrics()`` shows them and the dashboard serves them as Prometheus text.
Updates travel a moment after they are made (as Ray exports in the background), so the
tests wait for the values they expect. Each test uses metric names of its own: tests of
this module share runtimes, and a runtime keeps every metric recorded in it.
"""

from __future__ import annotations

import pickle
import sys
import types

import pytest
from testkit import T, wait_for

import actorlib
import actorlib as ray
from actorlib.core import metrics as core_metrics
from actorlib.util import state
from actorlib.util.metrics import Counter, Gauge, Histogram

pytestmark = pytest.mark.shared_runtime


def _rows(name: str) -> list[dict]:
    return state.list_metrics(filters=[("name", "=", name)], detail=True)


def _value(name: str, tags: dict[str, str]) -> float | None:
    return next((r["value"] for r in _rows(name) if r["tags"] == tags), None)


def _settles(name: str, expected: dict) -> None:
    """Wait until metric ``name`` shows exactly ``expected`` (tags as sorted tuples ->
    value), then check it."""
    def current() -> dict:
        return {tuple(sorted(r["tags"].items())): r["value"] for r in _rows(name)}

    wait_for(lambda: current() == expected, f"{name} to be {expected} (is {current()})")


@ray.remote
def count_in_task(counter: Counter, times: int) -> int:
    for _ in range(times):
        counter.inc()
    return times


@ray.remote
class Recorder:
    def __init__(self, name: str) -> None:
        self.gauge = Gauge(name, "the last value set", tag_keys=("who",))
        self.gauge.set_default_tags({"who": "recorder"})
        self.latency = Histogram(name + "_latency", "latencies", boundaries=[1.0, 10.0])

    def record(self, value: float) -> float:
        self.gauge.set(value)
        self.latency.observe(value)
        return value


def test_counter_sums_increments_from_the_driver_tasks_and_nested_tasks(rt):
    counter = Counter("t_counter_sum", "calls", tag_keys=("where",))
    driver = counter.set_default_tags({"where": "driver"})
    assert driver is counter  # Ray's set_default_tags returns the metric itself
    counter.inc()
    counter.inc(2.5)
    # A metric pickled into a task keeps its default tags.
    assert actorlib.get([count_in_task.remote(counter, 100) for _ in range(3)],
                        timeout=T) == [100] * 3
    _settles("t_counter_sum", {(("where", "driver"),): 303.5})
    counter.inc(1, tags={"where": "elsewhere"})
    _settles("t_counter_sum", {(("where", "driver"),): 303.5, (("where", "elsewhere"),): 1.0})
    row = _rows("t_counter_sum")[0]
    assert row["type"] == "COUNTER" and row["description"] == "calls"


def test_gauge_and_histogram_recorded_in_an_actor(rt):
    recorder = Recorder.remote("t_actor_gauge")
    assert actorlib.get([recorder.record.remote(v) for v in (0.5, 3, 20, 7)],
                        timeout=T) == [0.5, 3, 20, 7]
    _settles("t_actor_gauge", {(("who", "recorder"),): 7.0})
    wait_for(lambda: _rows("t_actor_gauge_latency")
             and _rows("t_actor_gauge_latency")[0]["count"] == 4, "four observations")
    hist = _rows("t_actor_gauge_latency")[0]
    assert hist["type"] == "HISTOGRAM"
    assert hist["boundaries"] == [1.0, 10.0]
    assert hist["buckets"] == [1, 2, 1]  # <= 1, <= 10, the rest
    assert hist["sum"] == pytest.approx(30.5)
    del recorder


def test_tags_and_values_are_checked_as_ray_checks_them(rt):
    counter = Counter("t_checked", tag_keys=("a", "b"))
    with pytest.raises(ValueError, match=r"Missing value for tag key\(s\): b"):
        counter.inc(tags={"a": "x"})
    with pytest.raises(ValueError, match="Unrecognized tag key c"):
        counter.inc(tags={"a": "x", "b": "y", "c": "z"})
    with pytest.raises(TypeError, match="Tag values must be str"):
        counter.inc(tags={"a": "x", "b": 1})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="Unrecognized tag key z"):
        counter.set_default_tags({"z": "1"})
    with pytest.raises(TypeError, match="Tag values must be str"):
        counter.set_default_tags({"a": 1})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="value must be >0"):
        counter.inc(0, tags={"a": "x", "b": "y"})
    with pytest.raises(TypeError, match="value must be int or float"):
        counter.inc("1", tags={"a": "x", "b": "y"})  # type: ignore[arg-type]
    gauge = Gauge("t_checked_gauge")
    gauge.set(None)  # nothing, as in Ray
    with pytest.raises(TypeError, match="value must be int or float"):
        gauge.set("3")  # type: ignore[arg-type]
    # Nothing refused was recorded: the counter never reached the core.
    gauge.set(1)
    _settles("t_checked_gauge", {(): 1.0})
    assert _rows("t_checked") == []


def test_definitions_are_checked_as_ray_checks_them() -> None:
    with pytest.raises(ValueError, match="Empty name is not allowed"):
        Counter("")
    with pytest.raises(ValueError, match="Invalid metric name"):
        Gauge("1starts-with-a-digit")
    with pytest.raises(TypeError, match="tag_keys should be a tuple type"):
        Counter("c", tag_keys=["a"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Tag keys must be str"):
        Counter("c", tag_keys=(1,))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="boundaries argument should be provided"):
        Histogram("h")
    with pytest.raises(ValueError, match="Use positive values"):
        Histogram("h", boundaries=[0, 1])
    with pytest.raises(ValueError, match="increasing"):
        Histogram("h", boundaries=[2, 1])
    hist = Histogram("h", "d", boundaries=[1, 2], tag_keys=("k",))
    assert hist.info == {"name": "h", "description": "d", "tag_keys": ("k",),
                         "default_tags": {}, "boundaries": [1, 2]}
    copy = pickle.loads(pickle.dumps(hist.set_default_tags({"k": "v"})))
    assert copy.info == hist.info


def test_recording_without_a_runtime_drops_the_value() -> None:
    assert not actorlib.is_initialized()
    Counter("t_no_runtime").inc()  # no error, nothing kept: Ray drops them too
    assert core_metrics.pending._values == {}


def test_a_name_recorded_as_two_kinds_keeps_the_first(rt):
    Counter("t_clash").inc(3)
    _settles("t_clash", {(): 3.0})
    Gauge("t_clash").set(100)
    Counter("t_clash").inc(1)
    _settles("t_clash", {(): 4.0})
    assert _rows("t_clash")[0]["type"] == "COUNTER"


def test_metrics_table_folds_batches_and_writes_prometheus_text() -> None:
    table = core_metrics.MetricTable()
    counter = (core_metrics.COUNTER, "calls", ("route",), ())
    hist = (core_metrics.HISTOGRAM, 'a "quoted"\nhelp', (), (1.0, 5.0))
    table.apply(({"calls": counter}, {("calls", ('a"b',)): 2}))
    table.apply(({"calls": counter, "lat": hist},
                 {("calls", ('a"b',)): 1.5, ("lat", ()): [0.5, 1.0, 3.0, 9.0]}))
    text = core_metrics.prometheus(table.rows())
    assert text.splitlines() == [
        "# HELP calls calls",
        "# TYPE calls counter",
        'calls_total{route="a\\"b"} 3.5',
        '# HELP lat a "quoted"\\nhelp',
        "# TYPE lat histogram",
        'lat_bucket{le="1.0"} 2',
        'lat_bucket{le="5.0"} 3',
        'lat_bucket{le="+Inf"} 4',
        "lat_sum 13.5",
        "lat_count 4",
    ]
    assert core_metrics.prometheus([]) == ""


def test_a_process_sends_one_batch_at_a_time_and_merges_the_rest() -> None:
    """While a batch is on its way, updates are merged into the next: a loop of a
    thousand increments costs two messages, not a thousand."""
    pending = core_metrics.Pending()
    sent: list[core_metrics.Batch] = []
    answers: list = []

    def send(batch: core_metrics.Batch, delivered) -> None:
        sent.append(batch)
        answers.append(delivered)

    counter = (core_metrics.COUNTER, "", (), ())
    gauge = (core_metrics.GAUGE, "", ("k",), ())
    hist = (core_metrics.HISTOGRAM, "", (), (1.0,))
    for i in range(1000):
        pending.record("c", counter, (), 1, send)
        pending.record("g", gauge, ("x",), i, send)
        pending.record("h", hist, (), i % 3, send)
    assert len(sent) == 1  # the first update went at once; the rest wait for its answer
    answers.pop(0)()
    assert len(sent) == 2
    _, values = sent[1]
    assert values[("c", ())] == 999 and values[("g", ("x",))] == 999
    # (the gauge and histogram's first updates came after the first batch left)
    assert len(values[("h", ())]) == 1000  # observations kept, to fold into buckets
    answers.pop(0)()
    assert len(sent) == 2  # nothing left: no empty batch
    pending.record("c", counter, (), 1, send)
    assert len(sent) == 3  # idle again: the next update goes at once
    table = core_metrics.MetricTable()
    for batch in sent:
        table.apply(batch)
    rows = {row["name"]: row for row in table.rows()}
    assert rows["c"]["value"] == 1001 and rows["g"]["value"] == 999
    assert rows["h"]["count"] == 1000 and rows["h"]["buckets"] == [667, 333]


def test_names_and_tags_of_a_str_class_only_the_driver_can_import_are_recorded(
    rt, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A metric's name, description, tag keys and values of a ``str`` subclass the core's
    process cannot import (a script's ``__main__``; here a module only the driver has):
    the values are recorded, rather than the batch being dropped where it did not decode
    (a cluster's head)."""
    module = types.ModuleType("_actorlib_driver_only_metric_names")
    text = type("DriverOnlyName", (str,), {"__module__": module.__name__})
    module.DriverOnlyName = text  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    counter = Counter(text("t_driver_only_str_metric"), text("about"), tag_keys=(text("k"),))
    counter.set_default_tags({text("k"): text("default")})
    counter.inc(2, tags={text("k"): text("v")})
    counter.inc(1)
    _settles("t_driver_only_str_metric", {(("k", "v"),): 2.0, (("k", "default"),): 1.0})
