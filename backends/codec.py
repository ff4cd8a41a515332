"""A flat encoding of the four messages sent once per task or actor call.

``RUN_TASK``, ``RUN_CALL``, ``TASK_FINISHED`` and ``CALL_FINISHED`` make up almost all
traffic. Pickled as records they cost the C pickler a class lookup per record (six in
a ``RUN_TASK``) and a dataclass ``__init__`` per record on the way in: about 18 us to
encode and 17 us to decode a task on the test machine, on both sides of every task.
Flattened into a tuple of builtins (tagged with an int where other messages have their
name) they pickle and unpickle several times faster, and the records are rebuilt by
direct calls. Anything unusual (``retry_exceptions`` classes, a node-affinity strategy)
takes the ordinary pickle path: this is an optimisation, never a second format to keep
in step by hand beyond these four.
"""

from __future__ import annotations

from typing import Any

from actorlib.backends.base import CallRun, Outcome, TaskRun

from actorlib.core.serialization import Serialized, _rebuild_serialized
from actorlib.core.specs import Args, CallSpec, CodeRef, TaskSpec

RUN_TASK, RUN_CALL, TASK_FINISHED, CALL_FINISHED = 1, 2, 3, 4
KINDS = {"run_task": RUN_TASK, "run_call": RUN_CALL,
         "task_finished": TASK_FINISHED, "call_finished": CALL_FINISHED}
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


def flatten(message: tuple[Any, ...], known_code: set[int] | None) -> tuple[Any, ...] | None:
    """The flat form of ``message``, or None if it must be pickled as it is."""
    tag = KINDS.get(message[0])
    if tag is None or len(message) != 2:
        return None
    body = message[1]
    if tag == RUN_TASK:
        run: TaskRun = body
        spec = run.spec
        if type(spec.retry_exceptions) is not bool or type(spec.scheduling_strategy) is not str:
            return None
        return (
            tag, spec.task_id, _code(spec.function, known_code), _value(spec.args.payload),
            spec.args.deps, spec.return_ids, spec.num_returns, spec.resources,
            spec.max_retries, spec.retry_exceptions, spec.scheduling_strategy, spec.env_vars,
            spec.name, spec.caller_id, spec.attempt, spec.namespace,
            run.node_id, _values(run.deps), run.gpu_ids, run.follows,
        )
    if tag == RUN_CALL:
        call: CallRun = body
        cs = call.spec
        if type(cs.retry_exceptions) is not bool:
            return None
        return (
            tag, cs.call_id, cs.actor_id, cs.method, _value(cs.args.payload), cs.args.deps,
            cs.return_ids, cs.num_returns, cs.caller_id, cs.max_task_retries,
            cs.retry_exceptions, cs.attempt, _values(call.deps), call.incarnation,
        )
    outcome: Outcome = body
    return (
        tag, outcome.id, outcome.attempt, _values(outcome.values), _value(outcome.error),
        outcome.retryable,
    )


def unflatten(flat: tuple[Any, ...]) -> tuple[Any, ...]:
    """The message ``flatten`` made ``flat`` from."""
    tag = flat[0]
    if tag == RUN_TASK:
        (_, task_id, code, payload, deps, return_ids, num_returns, resources, max_retries,
         retry_exceptions, strategy, env_vars, name, caller_id, attempt, namespace,
         node_id, dep_values, gpu_ids, follows) = flat
        spec = TaskSpec(
            task_id, CodeRef(*code), Args(_rebuild(payload), deps), return_ids, num_returns,
            resources, max_retries, retry_exceptions, strategy, env_vars, name, caller_id,
            attempt, namespace,
        )
        return ("run_task", TaskRun(spec, node_id, _rebuild_all(dep_values) or [],
                                    gpu_ids, follows))
    if tag == RUN_CALL:
        (_, call_id, actor_id, method, payload, deps, return_ids, num_returns, caller_id,
         max_task_retries, retry_exceptions, attempt, dep_values, incarnation) = flat
        cs = CallSpec(
            call_id, actor_id, method, Args(_rebuild(payload), deps), return_ids, num_returns,
            caller_id, max_task_retries, retry_exceptions, attempt,
        )
        return ("run_call", CallRun(cs, _rebuild_all(dep_values) or [], incarnation))
    _, id_, attempt, values, error, retryable = flat
    return (NAMES[tag], Outcome(id_, attempt, _rebuild_all(values), _rebuild(error), retryable))
