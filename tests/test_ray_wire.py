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
    named_submit,
    named_task,
    pack,
    task_data,
    task_name,
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
    caller_a, template_a, named_a = callers.get(first)
    caller_b, template_b, _ = callers.get(second)
    assert named_a is None  # no way to submit by name given
    # One translation for every call of one function with the same options.
    assert (caller_a, template_a) == (caller_b, template_b) and len(made) == 1
    rebuilt, inline = task_spec(task_data(second, template_b, b"args"))
    assert pickle.dumps(rebuilt) == pickle.dumps(second) and inline == b"args"
    assert rebuilt.retry_exceptions.types == (KeyError,)
    # Other options: another template.
    _, template_c, _ = callers.get(_spec(WIDE, num_returns=1, return_ids=(WIDE + 1,)))
    assert template_c != template_a and len(made) == 2


def test_a_task_with_one_return_is_submitted_by_name_its_ids_in_the_name() -> None:
    """A task of one return needs no argument of actorlib's: its template is bound into
    its Ray function (made once per template) and its ids travel in its Ray name."""
    bound: list[bytes] = []
    callers = TaskCallers(lambda spec: object(),
                          lambda spec, template: bound.append(template) or "submit")
    spec = _spec(WIDE, num_returns=1, return_ids=(WIDE + 1,))
    _, _, named = callers.get(spec)
    assert named == "submit" and len(bound) == 1
    template = bound[0]
    again = _spec(WIDE + 50, num_returns=1, return_ids=(WIDE + 51,), caller_id=WIDE + 52)
    assert callers.get(again)[2] == "submit" and len(bound) == 1
    name = task_name(again)
    assert name.startswith("f ")  # what Ray's dashboard shows first: the task's name
    rebuilt = named_task(template, name)
    assert (rebuilt.task_id, rebuilt.caller_id) == (WIDE + 50, WIDE + 52)
    assert rebuilt.function == spec.function and rebuilt.retry_exceptions.types == (KeyError,)
    assert named_task(template, task_name(_spec(
        WIDE, num_returns=1, name=None, return_ids=(WIDE + 1,)))).task_id == WIDE
    # Several returns or a generator: the return ids travel as an argument, as before.
    assert callers.get(_spec(WIDE))[2] is None
    assert callers.get(_spec(WIDE, num_returns=1, generator="streaming"))[2] is None


def test_a_name_per_call_binds_no_ray_function_per_call() -> None:
    """Ray keeps each function bound to a template for the driver's whole job (exported
    to the GCS, imported by every worker running it; each export a GCS round trip): a
    name per call (``options(name=f"req-{i}")``) must not bind one per call. The name
    travels in the Ray name, as the ids do."""
    bound: list[bytes] = []
    callers = TaskCallers(lambda spec: object(),
                          lambda spec, template: bound.append(template) or "submit")
    specs = [_spec(WIDE + 10 * i, num_returns=1, return_ids=(WIDE + 10 * i + 1,),
                   name=f"req {i}") for i in range(20)]
    assert all(callers.get(spec)[2] == "submit" for spec in specs)
    assert len(bound) == 1
    for spec in specs:
        rebuilt = named_task(bound[0], task_name(spec))
        assert (rebuilt.name, rebuilt.task_id, rebuilt.caller_id) == (
            spec.name, spec.task_id, spec.caller_id)
    unnamed = _spec(WIDE, num_returns=1, name=None, return_ids=(WIDE + 1,))
    assert callers.get(unnamed)[2] == "submit" and len(bound) == 1
    assert named_task(bound[0], task_name(unnamed)).name == ""


def test_templates_made_per_call_stop_binding_ray_functions() -> None:
    """A template made anew per call (``options(retry_exceptions=[E])`` in a loop: a new
    ``ExceptionTypes`` each time) binds no Ray function past ``_NAMED_MAX``: those
    tasks take the argument path, which Ray keeps nothing for."""
    from actorlib.backends.ray import wire

    bound: list[bytes] = []
    callers = TaskCallers(lambda spec: object(),
                          lambda spec, template: bound.append(template) or "submit")
    got = [callers.get(_spec(WIDE, num_returns=1, return_ids=(WIDE + 1,),
                             retry_exceptions=ExceptionTypes((KeyError,))))[2]
           for _ in range(wire._NAMED_MAX + 36)]
    assert len(bound) == wire._NAMED_MAX
    assert got == ["submit"] * wire._NAMED_MAX + [None] * 36


def test_a_submit_by_name_passes_rays_validated_options_and_the_name() -> None:
    """``named_submit`` calls what Ray's ``.options()`` wrapper would, the name added; a
    wrapper of another shape (another Ray) gives None: the spec then goes as an argument."""
    calls: list[dict[str, object]] = []

    class Function:
        def _remote(self, **kwargs: object) -> str:
            calls.append(kwargs)
            return "ref"

    def options(**updated_options: object) -> object:
        func_cls, serialized_runtime_env_info = Function(), "{}"

        class Wrapper:
            def remote(self, *args: object) -> object:
                return func_cls._remote(args=args, kwargs={}, name=None,
                                        serialized_runtime_env_info=serialized_runtime_env_info,
                                        **updated_options)
        return Wrapper()

    submit = named_submit(options(num_cpus=1, name="user's", max_retries=3))
    assert submit is not None
    assert submit([b"payload"], "f 1 2") == "ref"
    assert calls == [dict(args=[b"payload"], kwargs={}, serialized_runtime_env_info="{}",
                          name="f 1 2", num_cpus=1, max_retries=3)]
    assert named_submit(object()) is None

    class Other:
        def remote(self, *args: object) -> None:
            return None
    assert named_submit(Other()) is None


def test_options_that_cannot_be_a_key_are_translated_each_time() -> None:
    made: list[TaskSpec] = []
    callers = TaskCallers(lambda spec: made.append(spec) or object())
    spec = _spec(WIDE, scheduling_strategy=["not", "hashable"])
    _, template, _ = callers.get(spec)
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
    with_ref = Serialized(b"data", (), (WIDE,), False)
    box = packed(with_ref, {WIDE: "ray ref"})
    assert isinstance(box, Box) and box.refs == {WIDE: "ray ref"}
    with_buffer = Serialized(b"data", [b"x" * 10], (), False)
    assert isinstance(packed(with_buffer, {}), Box)
