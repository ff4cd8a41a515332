"""How the ray backend hands specs and values to Ray (``backends/ray/wire.py``,
``boxes.packed``): what a worker rebuilds is what the driver submitted. No Ray needed."""

from __future__ import annotations

import pickle

import cloudpickle

from actorlib.backends.ray.boxes import Box, packed
from actorlib.backends.ray.wire import (
    CallTemplates,
    TaskCallers,
    call_data,
    call_name,
    call_spec,
    named_call,
    pack,
    task_data,
    task_spec,
    unpack,
)
from actorlib.core.labels import LabelSelectorStrategy
from actorlib.core.serialization import Serialized, serialize
from actorlib.core.specs import NO_ARGS, CallSpec, CodeRef, ExceptionTypes, TaskSpec

WIDE = (1 << 102) | 12345  # actorlib ids: a 63-bit prefix over a 40-bit counter
RETRY = ExceptionTypes((KeyError,))  # one per remote function, as its options hold it


def _spec(task_id: int, **changes: object) -> TaskSpec:
    fields: dict[str, object] = dict(
        task_id=task_id, function=CodeRef(7, "f", cloudpickle.dumps(len)), args=NO_ARGS,
        return_ids=(task_id + 1, task_id + 2), num_returns=2, resources={"CPU": 1.0},
        retry_exceptions=RETRY, caller_id=WIDE + 9, name="f",
        namespace="ns", env_vars={"A": "1"},
        scheduling_strategy=LabelSelectorStrategy(((("zone", False, ("a",)),),)),
    )
    fields.update(changes)
    return TaskSpec(**fields)  # type: ignore[arg-type]


def test_wide_ids_a_template_and_a_payload_round_trip_in_one_bytes() -> None:
    ids = (0, 1, WIDE, (1 << 103) - 1)
    data = pack(b"template", ids, b"payload")
    assert type(data) is bytes
    assert unpack(data) == (b"template", list(ids), b"payload")
    assert unpack(pack(b"t", (), None)) == (b"t", [], None)
    many = tuple(range(WIDE, WIDE + 300))  # more returns than a byte counts
    assert unpack(pack(b"", many, None)) == (b"", list(many), None)


def test_a_task_spec_is_rebuilt_from_its_template_and_ids() -> None:
    made: list[TaskSpec] = []
    callers = TaskCallers(lambda spec: made.append(spec) or object())
    first, second = _spec(WIDE), _spec(WIDE + 100)
    caller_a, template_a = callers.get(first)
    caller_b, template_b = callers.get(second)
    # One translation for every call of one function with the same options.
    assert (caller_a, template_a) == (caller_b, template_b) and len(made) == 1
    rebuilt, inline = task_spec(task_data(second, template_b, b"args"))
    assert pickle.dumps(rebuilt) == pickle.dumps(second) and inline == b"args"
    assert rebuilt.retry_exceptions.types == (KeyError,)
    # Other options: another template.
    _, template_c = callers.get(_spec(WIDE, num_returns=1, return_ids=(WIDE + 1,)))
    assert template_c != template_a and len(made) == 2


def test_options_that_cannot_be_a_key_are_translated_each_time() -> None:
    made: list[TaskSpec] = []
    callers = TaskCallers(lambda spec: made.append(spec) or object())
    spec = _spec(WIDE, scheduling_strategy=["not", "hashable"])
    _, template = callers.get(spec)
    callers.get(spec)
    assert len(made) == 2
    rebuilt, inline = task_spec(task_data(spec, template, None))
    assert rebuilt.scheduling_strategy == ["not", "hashable"] and inline is None


def test_a_call_spec_travels_as_one_bytes_its_options_pickled_once() -> None:
    spec = CallSpec(WIDE + 3, WIDE + 4, "m", NO_ARGS, (WIDE + 5,), 1, WIDE + 6, 2, RETRY,
                    0, "io", "", -1)
    templates = CallTemplates()
    template = templates.get(spec)
    data = call_data(spec, template, None)
    assert type(data) is bytes  # Ray passes bytes as they are (no msgpack, no pickle)
    rebuilt, inline = call_spec(data)
    assert inline is None and rebuilt.retry_exceptions.types == (KeyError,)
    assert pickle.dumps(rebuilt) == pickle.dumps(spec)
    later = CallSpec(WIDE + 7, WIDE + 4, "m", NO_ARGS, (WIDE + 8,), 1, WIDE + 6, 2, RETRY,
                     0, "io", "", -1)
    assert templates.get(later) is template  # same method and options: same template
    assert call_spec(call_data(later, template, b"x"))[0].call_id == WIDE + 7
    other = CallSpec(WIDE + 9, WIDE + 4, "n", NO_ARGS, (WIDE + 10,), 1)
    assert templates.get(other) != template


def test_a_plain_call_travels_as_its_ray_task_name() -> None:
    spec = CallSpec(WIDE + 3, WIDE + 4, "add", NO_ARGS, (WIDE + 5,), 1, WIDE + 6, 2,
                    concurrency_group="io")  # Ray's own options: Ray applies them
    name = call_name("Outer.Tally", spec)
    assert name == f"Outer.Tally.add {WIDE + 3:x}"  # what Ray's dashboard shows
    rebuilt = named_call(name, WIDE + 4)
    assert (rebuilt.call_id, rebuilt.actor_id, rebuilt.method, rebuilt.num_returns) == (
        WIDE + 3, WIDE + 4, "add", 1)
    assert not rebuilt.retry_exceptions and rebuilt.generator == ""
    # What the worker needs more of travels as the call's data (call_data).
    assert call_name("T", CallSpec(1, 2, "m", NO_ARGS, (3, 4), 2)) is None
    assert call_name("T", CallSpec(1, 2, "m", NO_ARGS, (3,), 1, retry_exceptions=RETRY)) is None
    assert call_name("T", CallSpec(1, 2, "m", NO_ARGS, (3,), 1, generator="dynamic")) is None


def test_plain_values_go_to_ray_as_bytes_and_the_rest_in_a_box() -> None:
    plain = serialize({"a": 1})
    assert packed(plain, {}) == plain.data
    error = serialize(ValueError("x"), is_error=True)
    assert isinstance(packed(error, {}), Box)
    with_ref = Serialized(b"data", [], (WIDE,), False)
    box = packed(with_ref, {WIDE: "ray ref"})
    assert isinstance(box, Box) and box.refs == {WIDE: "ray ref"}
    with_buffer = Serialized(b"data", [b"x" * 10], (), False)
    assert isinstance(packed(with_buffer, {}), Box)
