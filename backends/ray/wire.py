"""How a task's or call's spec reaches a Ray worker, at little cost per call.

Handing Ray the spec object made Ray pickle it through its own (Python-level) pickler
on every ``.remote()``, and building Ray's ``.options()`` for it validated every option
each time: together a fifth of the driver's time per task. What a task's spec holds
besides its ids is the same for every call of one function with one set of options, so
that part is pickled once (a *template*, with Ray's ``.options()`` wrapper beside it)
and each call sends only the template's bytes and the ids, which Ray packs without
pickling (actorlib's ids are wider than msgpack's 64-bit integers: they travel as one
bytes string). A call's spec is a handful of plain fields and travels as a tuple of
them (a list: Ray pickles a tuple). Workers keep each template they have unpickled, by its bytes.
"""

from __future__ import annotations

import collections
import dataclasses
import pickle
from collections.abc import Callable, Hashable
from typing import Any

from actorlib.core.specs import NO_ARGS, CallSpec, TaskSpec

#: Distinct templates kept per process, the least recently used dropped first (a
#: ``.options(name=...)`` per call makes one template per call).
_KEEP = 512
#: Bytes per id on the wire (ids are a 63-bit prefix and a 40-bit counter).
_ID_BYTES = 16


def pack_ids(*ids: int) -> bytes:
    return b"".join(i.to_bytes(_ID_BYTES, "little") for i in ids)


def unpack_ids(data: bytes) -> list[int]:
    return [int.from_bytes(data[i:i + _ID_BYTES], "little")
            for i in range(0, len(data), _ID_BYTES)]


def _task_key(spec: TaskSpec) -> Hashable | None:
    """Everything in ``spec`` but its ids and arguments, or None if some part of it
    cannot be a key (it is then translated afresh each time)."""
    key = (
        spec.function, tuple(spec.resources.items()), spec.num_returns, spec.max_retries,
        spec.retry_exceptions, spec.scheduling_strategy,
        None if spec.env_vars is None else tuple(spec.env_vars.items()), spec.name,
        spec.namespace, spec.max_calls, spec.generator, spec.backpressure,
        spec.concurrency, spec.code_env,
    )
    try:
        hash(key)
    except TypeError:
        return None
    return key


class TaskCallers:
    """Per distinct task template: Ray's remote function with the task's options applied,
    and the template's pickled bytes, made once."""

    def __init__(self, make: Callable[[TaskSpec], Any]) -> None:
        self._make = make  # spec -> Ray's ``.options(...)`` wrapper for it
        self._cache: collections.OrderedDict[Hashable, tuple[Any, bytes]] = (
            collections.OrderedDict())

    def get(self, spec: TaskSpec) -> tuple[Any, bytes]:
        key = _task_key(spec)
        cache = self._cache
        found = None if key is None else cache.get(key)
        if found is not None:
            cache.move_to_end(key)
            return found
        template = dataclasses.replace(
            spec, task_id=0, args=NO_ARGS, return_ids=(), caller_id=0
        )
        # The C pickler: a spec's parts that may live in the driver's ``__main__`` (its
        # function, the classes of ``retry_exceptions``) carry their own cloudpickled bytes.
        found = (self._make(spec), pickle.dumps(template, protocol=5))
        if key is not None:
            if len(cache) >= _KEEP:
                cache.popitem(last=False)
            cache[key] = found
        return found


_FIELDS = tuple(f.name for f in dataclasses.fields(TaskSpec))  # its __init__'s order
_TASK_ID, _RETURN_IDS, _CALLER_ID = (
    _FIELDS.index("task_id"), _FIELDS.index("return_ids"), _FIELDS.index("caller_id")
)
#: A template's bytes -> its spec's field values, the least recently used dropped first.
_templates: collections.OrderedDict[bytes, list[Any]] = collections.OrderedDict()


def task_ids(spec: TaskSpec) -> bytes:
    """The per-call part of a task's spec (its template holds the rest)."""
    return pack_ids(spec.task_id, spec.caller_id, *spec.return_ids)


def task_spec(template: bytes, ids: bytes) -> TaskSpec:
    """In the worker: the spec a task was submitted with."""
    fields = _templates.get(template)
    if fields is None:
        base: TaskSpec = pickle.loads(template)
        fields = [getattr(base, name) for name in _FIELDS]
        if len(_templates) >= _KEEP:
            _templates.popitem(last=False)
        _templates[template] = fields
    else:
        _templates.move_to_end(template)
    task_id, caller_id, *return_ids = unpack_ids(ids)
    values = list(fields)
    values[_TASK_ID], values[_RETURN_IDS], values[_CALLER_ID] = (
        task_id, tuple(return_ids), caller_id
    )
    return TaskSpec(*values)


def call_fields(spec: CallSpec) -> list[Any]:
    """A call's spec as plain fields (its arguments travel beside it), in a list: Ray
    packs a list of plain values without pickling, and pickles a tuple."""
    return [pack_ids(spec.call_id, spec.actor_id, spec.caller_id, *spec.return_ids),
            spec.method, spec.num_returns, spec.max_task_retries, spec.retry_exceptions,
            spec.attempt, spec.concurrency_group, spec.generator, spec.backpressure]


def call_spec(fields: list[Any]) -> CallSpec:
    """In the worker: the spec of a call from :func:`call_fields`."""
    (ids, method, num_returns, max_task_retries, retry_exceptions, attempt, group,
     generator, backpressure) = fields
    call_id, actor_id, caller_id, *return_ids = unpack_ids(ids)
    return CallSpec(call_id, actor_id, method, NO_ARGS, tuple(return_ids), num_returns,
                    caller_id, max_task_retries, retry_exceptions, attempt, group,
                    generator, backpressure)
