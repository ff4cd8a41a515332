"""How a task's or call's spec reaches a Ray worker, at little cost per call.

Handing Ray the spec object made Ray pickle it through its own (Python-level) pickler
on every ``.remote()``, and building Ray's ``.options()`` for it validated every option
each time: together a fifth of the driver's time per task. What a spec holds besides its
ids is the same for every call of one function (or method) with one set of options, so
that part is pickled once (a *template*; for a task, with Ray's ``.options()`` wrapper
beside it) and each call sends ONE ``bytes`` argument: a small header, the template,
the ids (actorlib's are wider than msgpack's 64-bit integers) and, when it is small, the
arguments' payload. Ray passes ``bytes`` as they are, where a list of fields cost it
msgpack on both sides and every further argument costs it a serialization and an
argument slot of its own in the task. Workers keep each template they have unpickled,
by its bytes.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import pickle
import struct
from collections.abc import Callable, Hashable
from typing import Any

from actorlib.core.ids import FROM_BACKEND
from actorlib.core.specs import NO_ARGS, CallSpec, TaskSpec
from actorlib.exceptions import SerializationError

#: Distinct templates kept per process, the least recently used dropped first (a
#: ``.options(name=...)`` per call makes one template per call).
_KEEP = 512
#: Bytes per id on the wire (ids are a 63-bit prefix and a 40-bit counter).
_ID_BYTES = 16
#: A payload up to this size travels inside the one ``bytes`` argument; a larger one is
#: an argument of its own (Ray puts an argument over 100 KiB into its object store).
INLINE_MAX = 32 * 1024
#: The header: the template's length, then how many ids follow it.
_HEAD = struct.Struct("<II")


def _task_key(spec: TaskSpec, with_name: bool = True) -> Hashable:
    """Everything in ``spec`` but its ids and arguments (unhashable if some part of it
    cannot be a key: it is then translated afresh each time), and but its name unless
    ``with_name``."""
    return (
        spec.function, tuple(spec.resources.items()), spec.num_returns, spec.max_retries,
        spec.retry_exceptions, spec.scheduling_strategy,
        None if spec.env_vars is None else tuple(spec.env_vars.items()),
        spec.name if with_name else None,
        spec.namespace, spec.max_calls, spec.generator, spec.backpressure,
        spec.concurrency, spec.code_env,
    )


#: Submits one task by name: (Ray arguments, the task's Ray name) -> Ray's refs.
NamedSubmit = Callable[[list[Any], str], Any]
#: Ray functions bound to a template (:func:`named_submit`) a process makes at most. Ray
#: keeps each for as long as the driver's job (exported to the GCS, imported by each
#: worker that runs it), and exporting one costs a GCS round trip: templates made per
#: call (a ``retry_exceptions`` list or a strategy object made anew for each call) then
#: take the argument path, as they did before submits by name.
_NAMED_MAX = 64


class TaskCallers:
    """Per distinct task template: Ray's remote function with the task's options applied,
    and the template's pickled bytes, made once; for a task :func:`task_name` can carry,
    a submit by name instead (see :func:`named_submit`)."""

    def __init__(
        self, make: Callable[[TaskSpec], Any],
        make_named: Callable[[TaskSpec, bytes], NamedSubmit | None] | None = None,
    ) -> None:
        self._make = make  # spec -> Ray's ``.options(...)`` wrapper for it
        self._make_named = make_named
        self._cache: collections.OrderedDict[
            Hashable, tuple[Any, bytes, NamedSubmit | None]] = collections.OrderedDict()
        # By the key without the task's name (its Ray name carries it): kept for good, as
        # Ray keeps the function (at most ``_NAMED_MAX``).
        self._named: dict[Hashable, NamedSubmit | None] = {}
        # By the whole key: a Ray function per template for its plain tasks (see
        # :meth:`plain`), kept for good as well (at most ``_NAMED_MAX``).
        self._plain: dict[Hashable, Any] = {}

    def plain(self, spec: TaskSpec, make: Callable[[TaskSpec, bytes], Any]) -> Any:
        """The submit of ``spec``'s template's plain tasks (``make(spec, template)``, made
        once), or None: a template that cannot be a key, ``_NAMED_MAX`` made, or none
        that ``make`` could make."""
        try:
            key: Hashable = _task_key(spec)
            return self._plain[key]
        except TypeError:
            return None
        except KeyError:
            pass
        if len(self._plain) >= _NAMED_MAX:
            return None
        found = self._plain[key] = make(spec, self.get(spec)[1])
        return found

    def _named_for(self, spec: TaskSpec, template: TaskSpec) -> NamedSubmit | None:
        """The submit by name of ``spec``'s template, its name left out (so a name per
        call binds no Ray function per call); None once ``_NAMED_MAX`` are made."""
        assert self._make_named is not None
        key = _task_key(spec, with_name=False)
        try:
            return self._named[key]
        except KeyError:
            pass
        if len(self._named) >= _NAMED_MAX:
            return None
        unnamed = dataclasses.replace(template, name="")
        named = self._named[key] = self._make_named(spec, pickle.dumps(unnamed, protocol=5))
        return named

    def get(self, spec: TaskSpec) -> tuple[Any, bytes, NamedSubmit | None]:
        key: Hashable | None = _task_key(spec)
        cache = self._cache
        try:
            found = cache.get(key)  # hashed once, here
        except TypeError:  # a part that cannot be a key
            key, found = None, None
        if found is not None:
            cache.move_to_end(key)
            return found
        template = dataclasses.replace(
            spec, task_id=0, args=NO_ARGS, return_ids=(), caller_id=0
        )
        # The C pickler: a spec's parts that may live in the driver's ``__main__`` (its
        # function, the classes of ``retry_exceptions``) carry their own cloudpickled bytes.
        data = pickle.dumps(template, protocol=5)
        named = None
        if self._make_named is not None and key is not None and nameable(spec):
            named = self._named_for(spec, template)
        found = (self._make(spec), data, named)
        if key is not None:
            if len(cache) >= _KEEP:
                cache.popitem(last=False)
            cache[key] = found
        return found


def pack(template: bytes, ids: tuple[int, ...], payload: bytes | None) -> bytes:
    """One call's argument: the template, the ids and the (small) payload, in one ``bytes``."""
    return b"".join((_HEAD.pack(len(template), len(ids)), template,
                     *[i.to_bytes(_ID_BYTES, "little") for i in ids], payload or b""))


def unpack(data: bytes) -> tuple[bytes, list[int], bytes | None]:
    """:func:`pack`'s parts (no payload: None; a pickle is never empty)."""
    length, count = _HEAD.unpack_from(data)
    at = _HEAD.size + length
    ids = [int.from_bytes(data[i:i + _ID_BYTES], "little")
           for i in range(at, at + count * _ID_BYTES, _ID_BYTES)]
    at += count * _ID_BYTES
    return data[_HEAD.size:_HEAD.size + length], ids, data[at:] if len(data) > at else None


_FIELDS = tuple(f.name for f in dataclasses.fields(TaskSpec))  # its __init__'s order
_TASK_ID, _RETURN_IDS, _CALLER_ID = (
    _FIELDS.index("task_id"), _FIELDS.index("return_ids"), _FIELDS.index("caller_id")
)
_NAME, _FUNCTION = _FIELDS.index("name"), _FIELDS.index("function")
#: A template's bytes -> what it stands for (a task's spec's field values, a call's
#: fields), the least recently used dropped first.
_templates: collections.OrderedDict[bytes, Any] = collections.OrderedDict()


def _template(data: bytes, make: Callable[[Any], Any], what: str) -> Any:
    found = _templates.get(data)
    if found is None:
        try:
            loaded = pickle.loads(data)
        except Exception as exc:  # a class this worker cannot load: say so, not a bare error
            raise SerializationError(
                f"The message carrying {what} could not be decoded in the worker process "
                f"(pid {os.getpid()}): {type(exc).__name__}: {exc}") from exc
        found = make(loaded)
        if len(_templates) >= _KEEP:
            _templates.popitem(last=False)
        _templates[data] = found
    else:
        _templates.move_to_end(data)
    return found


def _task_fields(base: TaskSpec) -> list[Any]:
    return [getattr(base, name) for name in _FIELDS]


def task_data(spec: TaskSpec, template: bytes, payload: bytes | None) -> bytes:
    """The one argument of a task (its template made by :class:`TaskCallers`)."""
    return pack(template, (spec.task_id, spec.caller_id, *spec.return_ids), payload)


def task_spec(data: bytes) -> tuple[TaskSpec, bytes | None]:
    """In the worker: the spec a task was submitted with, and its inline payload."""
    template, ids, payload = unpack(data)
    values = list(_template(template, _task_fields, f"task {ids[0]:016x}"))
    task_id, caller_id, *return_ids = ids
    values[_TASK_ID], values[_RETURN_IDS], values[_CALLER_ID] = (
        task_id, tuple(return_ids), caller_id
    )
    return TaskSpec(*values), payload


def nameable(spec: TaskSpec) -> bool:
    """Whether a task's ids fit in its Ray name (:func:`task_name`): the worker needs no
    return ids of a task with one return and no generator."""
    return spec.num_returns == 1 and not spec.generator


def task_name(spec: TaskSpec) -> str:
    """A task's Ray name, carrying its ids: what Ray's dashboard and state API show
    (the task's name, then its id and its caller's)."""
    return f"{spec.name or spec.function.name} {spec.task_id:x} {spec.caller_id:x}"


def named_task(template: bytes, name: str) -> TaskSpec:
    """In the worker: the spec of a task submitted by :func:`task_name` (its template
    bound without the task's name: the Ray name's first part is that name, or the
    function's when the task has none)."""
    shown, task_id, caller_id = name.rsplit(" ", 2)
    values = list(_template(template, _task_fields, f"task {shown}"))
    values[_TASK_ID], values[_CALLER_ID] = int(task_id, 16), int(caller_id, 16)
    if shown != values[_FUNCTION].name:
        values[_NAME] = shown
    return TaskSpec(*values)


def wrapper_cells(options_wrapper: Any) -> dict[str, Any] | None:
    """What Ray's ``.options()`` wrapper of a remote function closed over (``func_cls``,
    ``updated_options``, ``serialized_runtime_env_info``, ...), by name; None where it
    is not such a wrapper (another Ray version)."""
    remote = getattr(getattr(options_wrapper, "remote", None), "__func__", None)
    closure = getattr(remote, "__closure__", None)
    if remote is None or not closure:
        return None
    try:
        return dict(zip(remote.__code__.co_freevars,
                        (cell.cell_contents for cell in closure), strict=True))
    except (ValueError, AttributeError):  # an empty cell, a changed wrapper
        return None


def named_submit(options_wrapper: Any) -> NamedSubmit | None:
    """A submit that names each task, from Ray's ``.options()`` wrapper of a remote
    function: the wrapper's ``remote`` calls the function's ``_remote`` with the options
    it validated once, and so does this, with the task's name added. A task then passes
    Ray no argument of actorlib's own: its spec is the name, its template bound into
    the Ray function (a ``bytes`` argument cost Ray a pickling per task, about a third
    of the driver's time per task). None where that wrapper is not as expected (another
    Ray version): the task's spec then travels as an argument."""
    cells = wrapper_cells(options_wrapper)
    if cells is None:
        return None
    try:
        submit = cells["func_cls"]._remote
        options = {k: v for k, v in cells["updated_options"].items() if k != "name"}
        runtime_env = cells["serialized_runtime_env_info"]
    except (KeyError, ValueError, AttributeError):
        return None

    def named(args: list[Any], name: str) -> Any:
        return submit(args=args, kwargs={}, serialized_runtime_env_info=runtime_env,
                      name=name, **options)

    return named


class CallTemplates:
    """Per distinct set of a call's options (its method among them): their pickled
    bytes, made once."""

    def __init__(self) -> None:
        self._cache: collections.OrderedDict[Hashable, bytes] = collections.OrderedDict()

    def get(self, spec: CallSpec) -> bytes:
        key = (spec.method, spec.num_returns, spec.max_task_retries, spec.retry_exceptions,
               spec.attempt, spec.concurrency_group, spec.generator, spec.backpressure)
        cache = self._cache
        found = cache.get(key)
        if found is None:
            found = pickle.dumps(key, protocol=5)
            if len(cache) >= _KEEP:
                cache.popitem(last=False)
            cache[key] = found
        return found


def call_data(spec: CallSpec, template: bytes, payload: bytes | None) -> bytes:
    """The one argument of a call (its template made by :class:`CallTemplates`)."""
    return pack(template, (spec.call_id, spec.actor_id, spec.caller_id, *spec.return_ids),
                payload)


def call_spec(data: bytes) -> tuple[CallSpec, bytes | None]:
    """In the worker: the spec of a call from :func:`call_data`, and its inline payload."""
    template, ids, payload = unpack(data)
    (method, num_returns, max_task_retries, retry_exceptions, attempt, group, generator,
     backpressure) = _template(template, tuple, f"actor call {ids[0]:016x}")
    call_id, actor_id, caller_id, *return_ids = ids
    return CallSpec(call_id, actor_id, method, NO_ARGS, tuple(return_ids), num_returns,
                    caller_id, max_task_retries, retry_exceptions, attempt, group,
                    generator, backpressure), payload


def ray_call_id(task_id: bytes) -> int:
    """The id of a call that carries no ids of its own (a plain call to a method of its
    host's own, :func:`.worker.remote_host`), made from its Ray task id's ``binary()``:
    the caller from the ref Ray returned, the actor from the task it runs, so both say
    the same (``ref.task_id()``, ``get_task_id()``). Its first 16 bytes are unique per
    call: Ray's own 8 for the task, then the actor's (a cluster-unique id). Its top bit
    (:data:`~actorlib.core.ids.FROM_BACKEND`) keeps it apart from every minted id."""
    return int.from_bytes(task_id[:16], "big") | FROM_BACKEND


def ray_task_id(task_id: bytes, prefix: int) -> int:
    """:func:`ray_call_id` for a plain task (:func:`.worker.plain_task`): Ray's own 8
    bytes of its task id under the submitting process's id prefix, which
    ``get_job_id()`` in the task reads (:func:`~actorlib.core.ids.prefix_of`)."""
    return FROM_BACKEND | prefix << 64 | int.from_bytes(task_id[:8], "big")


def plain_task_spec(template: bytes, task_id: int) -> TaskSpec:
    """In the worker: the spec of a plain task, its template bound into its Ray
    function, its id :func:`ray_task_id`."""
    values = list(_template(template, _task_fields, f"task {task_id:x}"))
    values[_TASK_ID] = task_id
    return TaskSpec(*values)


def call_name(class_name: str, spec: CallSpec) -> str | None:
    """A plain call's whole spec as its Ray task's name, or None for one that needs more
    (its fields then travel as :func:`call_data`). The worker needs only the method and
    the call's id of a call with one return, no generator and no ``retry_exceptions``
    (Ray applies the other options itself), and a name costs Ray less than an argument:
    a call with no arguments then passes Ray none, as a plain Ray call does. Ray shows
    the name (``Class.method`` and the call's id) in its dashboard and state API."""
    if spec.num_returns != 1 or spec.generator or spec.retry_exceptions:
        return None
    return f"{class_name}.{spec.method} {spec.call_id:x}"


def named_call(name: str, actor_id: int) -> CallSpec:
    """In the worker: the spec of a call :func:`call_name` named (the fields it uses)."""
    head, _, call_id = name.rpartition(" ")
    return CallSpec(int(call_id, 16), actor_id, head.rpartition(".")[2], NO_ARGS, (), 1)
