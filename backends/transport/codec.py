"""A flat encoding of the messages sent once per task or actor call.

``RUN_TASK``, ``RUN_CALL``, ``TASK_FINISHED`` and ``CALL_FINISHED`` make up almost all
traffic; ``SUBMIT_TASK``, ``SUBMIT_CALL`` and ``READY`` the rest when tasks and actors
call other actors and tasks. Pickled as records they cost the C pickler a class lookup
per record (six in a ``RUN_TASK``) and a dataclass ``__init__`` per record on the way
in: about 18 us to encode and 17 us to decode a task on the test machine, on both sides
of every task.
Flattened into a tuple of builtins (tagged with an int where other messages have their
name) they pickle and unpickle several times faster, and the records are rebuilt by
direct calls. Anything unusual (``retry_exceptions`` classes, a node-affinity strategy)
takes the ordinary pickle path: this is an optimisation, never a second format to keep
in step by hand beyond these seven.
"""

from __future__ import annotations

from typing import Any

from actorlib.core.records import CallRun, Outcome, TaskRun
from actorlib.core.serialization import Serialized, _rebuild_serialized
from actorlib.core.specs import Args, CallSpec, CodeRef, TaskSpec

RUN_TASK, RUN_CALL, TASK_FINISHED, CALL_FINISHED = 1, 2, 3, 4
SUBMIT_TASK, SUBMIT_CALL, READY = 5, 6, 7
KINDS = {"run_task": RUN_TASK, "run_call": RUN_CALL,
         "task_finished": TASK_FINISHED, "call_finished": CALL_FINISHED,
         "submit_task": SUBMIT_TASK, "submit_call": SUBMIT_CALL, "ready": READY}
_SIZES = {RUN_TASK: 2, RUN_CALL: 2, TASK_FINISHED: 2, CALL_FINISHED: 2, SUBMIT_TASK: 2,
          SUBMIT_CALL: 2, READY: 4}
NAMES = {tag: name for name, tag in KINDS.items()}


def _value(obj: Serialized | None) -> tuple[Any, ...] | None:
    return None if obj is None else obj.__reduce__()[1]


def _values(objs: list[Serialized] | None) -> list[tuple[Any, ...]] | None:
    return None if objs is None else [obj.__reduce__()[1] for obj in objs]


def _rebuild(flat: tuple[Any, ...] | None) -> Serialized | None:
    return None if flat is None else _rebuild_serialized(*flat)


def _rebuild_all(flat: list[tuple[Any, ...]] | None) -> list[Serialized] | None:
    return None if flat is None else [_rebuild_serialized(*v) for v in flat]


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
            or spec.max_calls):
        return None
    return (
        spec.task_id, _code(spec.function, known_code), _value(spec.args.payload),
        spec.args.deps, spec.return_ids, spec.num_returns, spec.resources, spec.max_retries,
        spec.retry_exceptions, spec.scheduling_strategy, spec.env_vars, spec.name,
        spec.caller_id, spec.attempt, spec.namespace,
    )


def _call_spec(cs: CallSpec) -> tuple[Any, ...] | None:
    if type(cs.retry_exceptions) is not bool or cs.concurrency_group is not None:
        return None
    return (
        cs.call_id, cs.actor_id, cs.method, _value(cs.args.payload), cs.args.deps,
        cs.return_ids, cs.num_returns, cs.caller_id, cs.max_task_retries,
        cs.retry_exceptions, cs.attempt,
    )


def _rebuild_task_spec(flat: tuple[Any, ...]) -> TaskSpec:
    (task_id, code, payload, deps, return_ids, num_returns, resources, max_retries,
     retry_exceptions, strategy, env_vars, name, caller_id, attempt, namespace) = flat
    return TaskSpec(
        task_id, CodeRef(*code), Args(_rebuild(payload), deps), return_ids, num_returns,
        resources, max_retries, retry_exceptions, strategy, env_vars, name, caller_id,
        attempt, namespace,
    )


def _rebuild_call_spec(flat: tuple[Any, ...]) -> CallSpec:
    (call_id, actor_id, method, payload, deps, return_ids, num_returns, caller_id,
     max_task_retries, retry_exceptions, attempt) = flat
    return CallSpec(
        call_id, actor_id, method, Args(_rebuild(payload), deps), return_ids, num_returns,
        caller_id, max_task_retries, retry_exceptions, attempt,
    )


def flatten(message: tuple[Any, ...], known_code: set[int] | None) -> tuple[Any, ...] | None:
    """The flat form of ``message``, or None if it must be pickled as it is."""
    tag = KINDS.get(message[0])
    if tag is None or len(message) != _SIZES[tag]:
        return None
    body = message[1]
    if tag == RUN_TASK:
        run: TaskRun = body
        spec = _task_spec(run.spec, known_code)
        if spec is None:
            return None
        return (tag, spec, run.node_id, _values(run.deps), run.gpu_ids, run.follows)
    if tag == RUN_CALL:
        call: CallRun = body
        cs = _call_spec(call.spec)
        if cs is None:
            return None
        return (tag, cs, _values(call.deps), call.incarnation)
    if tag == SUBMIT_TASK:
        spec = _task_spec(body, known_code)
        return None if spec is None else (tag, spec)
    if tag == SUBMIT_CALL:
        cs = _call_spec(body)
        return None if cs is None else (tag, cs)
    if tag == READY:
        _, token, id_, value = message
        return (tag, token, id_, _value(value))
    outcome: Outcome = body
    return (
        tag, outcome.id, outcome.attempt, _values(outcome.values), _value(outcome.error),
        outcome.retryable,
    )


def unflatten(flat: tuple[Any, ...]) -> tuple[Any, ...]:
    """The message ``flatten`` made ``flat`` from."""
    tag = flat[0]
    if tag == RUN_TASK:
        _, spec, node_id, dep_values, gpu_ids, follows = flat
        run = TaskRun(
            _rebuild_task_spec(spec), node_id, _rebuild_all(dep_values) or [], gpu_ids, follows
        )
        return ("run_task", run)
    if tag == RUN_CALL:
        _, cs, dep_values, incarnation = flat
        return (
            "run_call",
            CallRun(_rebuild_call_spec(cs), _rebuild_all(dep_values) or [], incarnation),
        )
    if tag == SUBMIT_TASK:
        return ("submit_task", _rebuild_task_spec(flat[1]))
    if tag == SUBMIT_CALL:
        return ("submit_call", _rebuild_call_spec(flat[1]))
    if tag == READY:
        return ("ready", flat[1], flat[2], _rebuild(flat[3]))
    _, id_, attempt, values, error, retryable = flat
    return (NAMES[tag], Outcome(id_, attempt, _rebuild_all(values), _rebuild(error), retryable))
