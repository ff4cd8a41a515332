"""The wire form of messages (:mod:`~.messages`): every record as ``(tag, *fields)``, the
per-task ones flattened to builtins.

``RunTask``, ``RunCall``, ``TaskFinished`` and ``CallFinished`` make up almost all
traffic; ``SubmitTask``, ``SubmitCall`` and ``Ready`` the rest when tasks and actors
call other actors and tasks. Pickled as records they cost the C pickler a class lookup
per record (six in a ``RunTask``) and a dataclass ``__init__`` per record on the way
in: about 18 us to encode and 17 us to decode a task on the test machine, on both sides
of every task.
Flattened into a tuple of builtins (tagged with a small int) they pickle and unpickle
several times faster, and the records are rebuilt by direct calls. Anything unusual
(``retry_exceptions`` classes, a node-affinity strategy) takes the ordinary path, the
tagged record: this is an optimisation, never a second format to keep in step by hand
beyond these seven. Every other record is its tag and its fields, a tuple the C pickler
writes without a class lookup for the message itself. The flat forms an event loop sends
one peer in one turn go as one frame (``BATCH``): one pickle for the lot, not one each.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, overload

from actorlib.backends.transport.messages import (
    TAGS,
    CallFinished,
    Ready,
    RunCall,
    RunTask,
    SubmitCall,
    SubmitTask,
    TaskFinished,
)
from actorlib.core.records import CallRun, Outcome, TaskRun, require_fields
from actorlib.core.serialization import Serialized, _rebuild_serialized
from actorlib.core.specs import NO_ARGS, Args, CallSpec, CodeRef, TaskSpec

# Tags of the flat forms (other records' tags start at messages.FIRST_TAG).
RUN_TASK, RUN_CALL, TASK_FINISHED, CALL_FINISHED = 1, 2, 3, 4
SUBMIT_TASK, SUBMIT_CALL, READY = 5, 6, 7
BATCH = 9  # the flat forms of several records in one frame (``batch_body``)


def _value(obj: Serialized | None) -> tuple[Any, ...] | None:
    if obj is None:
        return None
    if type(obj) is Serialized and obj.locations is None and not obj.buffers:
        # Small values, nearly every value sent: what __reduce__ gives, with no call.
        return (obj.data, (), obj.contained, obj.is_error, None)
    return obj.__reduce__()[1]


def _values(objs: list[Serialized] | None) -> list[tuple[Any, ...] | None] | None:
    # None and [] (a call's deps, nearly always) as they are, and one value (a result,
    # nearly always) without a comprehension's frame.
    if not objs:
        return objs  # type: ignore[return-value]
    if len(objs) == 1:
        return [_value(objs[0])]
    return [_value(obj) for obj in objs]


def _rebuild(flat: tuple[Any, ...] | None) -> Serialized | None:
    if flat is None:
        return None
    if flat[4] is not None:
        return _rebuild_serialized(*flat)
    # Without locations there is nothing to map: the value made here, without its
    # dataclass's ``__init__`` (see ``_make``). ``_finished`` and ``_ready`` make their
    # small values the same way, written out (a change here goes there too).
    value = _make(Serialized)
    value.data, value.buffers, value.contained, value.is_error, value.locations = flat
    value.read = False
    return value


@overload
def _rebuild_all(flat: list[tuple[Any, ...]]) -> list[Serialized]: ...
@overload
def _rebuild_all(flat: None) -> None: ...
def _rebuild_all(flat: list[tuple[Any, ...]] | None) -> list[Serialized] | None:
    if not flat:  # None, or [] (a call's deps, nearly always): no comprehension's frame
        return flat  # type: ignore[return-value]
    if len(flat) == 1:  # one value (a result, nearly always): neither
        return [_rebuild(flat[0])]  # type: ignore[list-item]
    return [Serialized(*v) if v[4] is None else _rebuild_serialized(*v) for v in flat]


def _code(code: CodeRef, known: set[int] | None) -> tuple[Any, ...]:
    blob = code.blob
    if known is not None:
        if code.id in known:
            blob = b""
        else:
            known.add(code.id)
    return (code.id, code.name, blob, code.is_async)


def _task_spec(spec: TaskSpec, known_code: set[int] | None) -> tuple[Any, ...] | None:
    if (type(spec.retry_exceptions) is not bool or type(spec.scheduling_strategy) is not str
            or spec.max_calls or spec.generator or spec.code_env):
        return None
    payload = spec.args.payload  # (no ``_value`` for none, as in ``_flat_run_call``)
    return (
        spec.task_id, _code(spec.function, known_code),
        None if payload is None else _value(payload), spec.args.deps, spec.return_ids,
        spec.num_returns, spec.resources, spec.max_retries, spec.retry_exceptions,
        spec.scheduling_strategy, spec.env_vars, spec.name, spec.caller_id, spec.attempt,
        spec.namespace, spec.concurrency,
    )


# Code a peer already holds arrives as the same (id, name, b"", is_async) for every task
# of it: one CodeRef (frozen) serves them all, saving a frozen dataclass's __init__ (the
# dearest part of reading a task). Bounded: past the limit, new ones are simply built.
_CODE_REFS: dict[tuple[Any, ...], CodeRef] = {}
_CODE_REFS_MAX = 4096


def _code_ref(code: tuple[Any, ...]) -> CodeRef:
    ref = _CODE_REFS.get(code)
    if ref is None:
        ref = CodeRef(*code)
        if not ref.blob and len(_CODE_REFS) < _CODE_REFS_MAX:
            _CODE_REFS[code] = ref
    return ref


def _rebuild_task_spec(flat: tuple[Any, ...]) -> TaskSpec:
    # Without ``TaskSpec.__init__`` (see ``_make``): every field set. A task without
    # arguments shares ``NO_ARGS``, as a call does.
    spec = _make(TaskSpec)
    (spec.task_id, code, payload, deps, spec.return_ids, spec.num_returns, spec.resources,
     spec.max_retries, spec.retry_exceptions, spec.scheduling_strategy, spec.env_vars,
     spec.name, spec.caller_id, spec.attempt, spec.namespace, spec.concurrency) = flat
    spec.function = _code_ref(code)
    spec.args = NO_ARGS if payload is None and not deps else Args(_rebuild(payload), deps)
    spec.max_calls = 0  # (the flat form is only for tasks without these)
    spec.generator = ""
    spec.backpressure = -1
    spec.code_env = None
    return spec


def _rebuild_call_spec(flat: tuple[Any, ...]) -> CallSpec:
    # Without ``CallSpec.__init__`` (see ``_make``), every field set; a call without
    # arguments shares ``NO_ARGS``. Every call a worker submits comes here; ``_run_call``
    # holds the same steps written out (a change here goes there too).
    spec = _make(CallSpec)
    (spec.call_id, spec.actor_id, spec.method, payload, deps, spec.return_ids,
     spec.num_returns, spec.caller_id, spec.max_task_retries, spec.retry_exceptions,
     spec.attempt) = flat
    spec.args = NO_ARGS if payload is None and not deps else Args(_rebuild(payload), deps)
    spec.concurrency_group = None  # (the flat form is only for calls without these)
    spec.generator = ""
    spec.backpressure = -1
    return spec


def _flat_run_task(message: RunTask, known_code: set[int] | None) -> tuple[Any, ...] | None:
    run = message.run
    spec = _task_spec(run.spec, known_code)
    if spec is None:
        return None
    deps = run.deps  # (no ``_values`` for none, nearly every task)
    return (RUN_TASK, spec, run.node_id, _values(deps) if deps else deps, run.gpu_ids,
            run.follows, run.job)


def _flat_run_call(message: RunCall, known_code: set[int] | None) -> tuple[Any, ...] | None:
    call = message.run
    spec = call.spec
    # The same flat spec as ``_flat_submit_call``'s, written out (every call sent comes
    # here; a change there goes here too), with no ``_values`` for no dependencies.
    if (type(spec.retry_exceptions) is not bool or spec.concurrency_group is not None
            or spec.generator):
        return None
    payload = spec.args.payload
    deps = call.deps
    return (
        RUN_CALL,
        (spec.call_id, spec.actor_id, spec.method,
         None if payload is None else _value(payload), spec.args.deps, spec.return_ids,
         spec.num_returns, spec.caller_id, spec.max_task_retries, spec.retry_exceptions,
         spec.attempt),
        _values(deps) if deps else deps, call.incarnation,
    )


def _flat_submit_task(message: SubmitTask, known_code: set[int] | None) -> tuple[Any, ...] | None:
    spec = _task_spec(message.spec, known_code)
    return None if spec is None else (SUBMIT_TASK, spec)


def _flat_submit_call(message: SubmitCall, known_code: set[int] | None) -> tuple[Any, ...] | None:
    # Every call a worker makes comes here: no ``_value`` for a call without arguments.
    # ``_flat_run_call`` holds the same flat spec (a change here goes there too).
    cs = message.spec
    if (type(cs.retry_exceptions) is not bool or cs.concurrency_group is not None
            or cs.generator):
        return None
    payload = cs.args.payload
    return (SUBMIT_CALL, (
        cs.call_id, cs.actor_id, cs.method, None if payload is None else _value(payload),
        cs.args.deps, cs.return_ids, cs.num_returns, cs.caller_id, cs.max_task_retries,
        cs.retry_exceptions, cs.attempt,
    ))


def _flat_ready(message: Ready, known_code: set[int] | None) -> tuple[Any, ...]:
    return (READY, message.token, message.object_id, _value(message.value))


def batch_body(flats: list[tuple[Any, ...]]) -> tuple[Any, ...]:
    """The flat forms of several records as one frame's body. A loop turn that hands a
    worker many tasks or calls, or tells a peer of many results, pickles them in one go:
    the C pickler's set-up is paid once, and the strings every record repeats (a method's
    name, a resource's) go once with the rest as references. About 2.4 us a record as a
    frame each, 1.0 us in a batch; 1.7 and 0.7 us to unpickle. The receiver's
    :class:`~.framing.Decoder` hands the records on one by one (``Several``)."""
    return (BATCH, flats)


class Several(list[Any]):
    """The records one frame carried (``BATCH``), for the decoder to hand on in order."""

    __slots__ = ()


def _batch(body: tuple[Any, ...]) -> Several:
    several = Several()
    for flat in body[1]:
        several.append(READERS[flat[0]](flat))
    return several


def _ready(flat: tuple[Any, ...]) -> Ready:
    wire = flat[3]
    if wire[4] is None:  # ``_rebuild(wire)``, without its frame (nearly every value)
        value = _make(Serialized)
        value.data, value.buffers, value.contained, value.is_error, value.locations = wire
        value.read = False
    else:
        value = _rebuild_serialized(*wire)
    return _new(Ready, (flat[1], flat[2], value))


def _flat_outcome(tag: int) -> Callable[[Any, set[int] | None], tuple[Any, ...]]:
    def flat(message: TaskFinished | CallFinished, known_code: set[int] | None) -> tuple[Any, ...]:
        outcome = message.outcome
        values = outcome.values
        if values and len(values) == 1:
            # One small value (a result, nearly always): ``_values``' and ``_value``'s
            # work without their frames.
            obj = values[0]
            if type(obj) is Serialized and obj.locations is None and not obj.buffers:
                flat_values: Any = [(obj.data, (), obj.contained, obj.is_error, None)]
            else:
                flat_values = [_value(obj)]
        else:
            flat_values = _values(values)
        return (
            tag, outcome.id, outcome.attempt, flat_values,
            None if outcome.error is None else _value(outcome.error), outcome.retryable,
            outcome.pid,
        )

    return flat


#: The flattener of each per-task record: its flat form, or None if this one is unusual.
FLATTEN: dict[type, Callable[[Any, set[int] | None], tuple[Any, ...] | None]] = {
    RunTask: _flat_run_task, RunCall: _flat_run_call,
    TaskFinished: _flat_outcome(TASK_FINISHED), CallFinished: _flat_outcome(CALL_FINISHED),
    SubmitTask: _flat_submit_task, SubmitCall: _flat_submit_call, Ready: _flat_ready,
}


# Records are rebuilt with tuple.__new__: a NamedTuple's own __new__ is a Python function,
# twice the cost on a path taken twice per task.
_new = tuple.__new__


# The records rebuilt for every task, call and outcome are made without their dataclass's
# ``__init__``, their slots set by the readers below (a class called with an ``__init__``
# costs ~600 instructions more on CPython 3.11): every field, as checked here at import.
_make = object.__new__
require_fields(
    "the codec's readers",
    (TaskSpec, ("task_id", "function", "args", "return_ids", "num_returns", "resources",
                "max_retries", "retry_exceptions", "scheduling_strategy", "env_vars",
                "name", "caller_id", "attempt", "namespace", "max_calls", "generator",
                "backpressure", "concurrency", "code_env")),
    (TaskRun, ("spec", "node_id", "deps", "gpu_ids", "follows", "job")),
    (CallSpec, ("call_id", "actor_id", "method", "args", "return_ids", "num_returns",
                "caller_id", "max_task_retries", "retry_exceptions", "attempt",
                "concurrency_group", "generator", "backpressure")),
    (CallRun, ("spec", "deps", "incarnation")),
    (Outcome, ("id", "attempt", "values", "error", "retryable", "pid")),
    (Serialized, ("data", "buffers", "contained", "is_error", "locations", "read")),
)


def _run_task(flat: tuple[Any, ...]) -> RunTask:
    run = _make(TaskRun)
    _, spec, run.node_id, dep_values, run.gpu_ids, run.follows, run.job = flat
    run.spec = _rebuild_task_spec(spec)
    run.deps = _rebuild_all(dep_values) if dep_values else []
    return _new(RunTask, (run,))


def _run_call(flat: tuple[Any, ...]) -> RunCall:
    _, cs, dep_values, incarnation = flat
    # ``_rebuild_call_spec(cs)`` written out (every call received comes here; a change
    # there goes here too). A call without arguments (most) shares ``NO_ARGS``: nothing
    # changes an ``Args``.
    spec = _make(CallSpec)
    (spec.call_id, spec.actor_id, spec.method, payload, deps, spec.return_ids,
     spec.num_returns, spec.caller_id, spec.max_task_retries, spec.retry_exceptions,
     spec.attempt) = cs
    spec.args = NO_ARGS if payload is None and not deps else Args(_rebuild(payload), deps)
    spec.concurrency_group = None  # (the flat form is only for calls without these)
    spec.generator = ""
    spec.backpressure = -1
    run = _make(CallRun)
    run.spec = spec
    run.deps = _rebuild_all(dep_values) if dep_values else []
    run.incarnation = incarnation
    return _new(RunCall, (run,))


def _finished(cls: type[TaskFinished] | type[CallFinished]) -> Callable[[tuple[Any, ...]], Any]:
    def read(flat: tuple[Any, ...]) -> TaskFinished | CallFinished:
        outcome = _make(Outcome)
        _, outcome.id, outcome.attempt, values, error, outcome.retryable, outcome.pid = flat
        if values and len(values) == 1 and values[0][4] is None:
            # One value without locations (a small result, nearly always):
            # ``_rebuild_all``'s and ``_rebuild``'s work without their frames.
            value = _make(Serialized)
            (value.data, value.buffers, value.contained, value.is_error,
             value.locations) = values[0]
            value.read = False
            outcome.values = [value]
        else:
            outcome.values = _rebuild_all(values)
        outcome.error = None if error is None else _rebuild(error)
        return _new(cls, (outcome,))

    return read


def _record_reader(cls: type) -> Callable[[tuple[Any, ...]], Any]:
    size = 1 + len(cls._fields)  # type: ignore[attr-defined]

    def read(body: tuple[Any, ...]) -> Any:
        # A record of the wrong size is no record: the receiver rejects it.
        return _new(cls, body[1:]) if len(body) == size else body

    return read


#: How to read each tag: the flat forms, then every record as ``(tag, *fields)``.
READERS: dict[int, Callable[[tuple[Any, ...]], Any]] = {
    RUN_TASK: _run_task,
    RUN_CALL: _run_call,
    TASK_FINISHED: _finished(TaskFinished),
    CALL_FINISHED: _finished(CallFinished),
    SUBMIT_TASK: lambda flat: _new(SubmitTask, (_rebuild_task_spec(flat[1]),)),
    SUBMIT_CALL: lambda flat: _new(SubmitCall, (_rebuild_call_spec(flat[1]),)),
    READY: _ready,
    BATCH: _batch,
    **{tag: _record_reader(cls) for cls, tag in TAGS.items()},
}
