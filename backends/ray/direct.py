"""A plain actor call handed to Ray's core worker directly, without Ray's Python layers.

Ray's ``handle.method.remote(data)`` runs, per call and in Python: its auto-init and
tracing wrappers, ``ActorMethod._remote`` (each option's default looked up again, one
validated), its tensor-transport check of the arguments, and
``ActorHandle._actor_method_call``, whose ``flatten_args`` builds an
``inspect.Signature`` and binds the arguments to it. For actorlib's calls all of that
has one answer per actor: the method is actorlib's own host method, which takes any
arguments, with Ray's defaults. Measured on Ray 2.60 (main-thread CPU per call), those
layers cost 15-20 us of a 35-55 us submission. So a plain call (Ray's default options,
its spec and payload as its one ``bytes`` argument, no ref arguments) goes to
``CoreWorker.submit_actor_task`` with the values those layers would have passed.

Only where that is known to be what Ray does: the core worker's ``submit_actor_task``
must have exactly the signature this module was written against (Cython embeds it in
the docstring), the handle must be a Python actor's plain ``ActorHandle`` (not Ray
Client's), the method must have Ray's defaults (no decorator, no tensor transport, one
return, no ``retry_exceptions`` list), and Ray's tracing must be off (its wrapper adds
the tracing context as an argument). Anything else takes Ray's ``.remote()``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from actorlib.backends.ray.connector import ray_module

ray = ray_module()

#: ``CoreWorker.submit_actor_task``'s signature as this module calls it (Ray 2.60).
_SUBMIT_ACTOR_TASK = (
    "CoreWorker.submit_actor_task(self, Language language, ActorID actor_id, "
    "FunctionDescriptor function_descriptor, args, string name, int num_returns, "
    "int max_retries, bool retry_exceptions, retry_exception_allowlist, "
    "double num_method_cpus, string concurrency_group_name, "
    "int64_t generator_backpressure_num_objects, int64_t num_objects_per_yield, "
    "bool enable_task_events, tensor_transport: Optional[str], dict labels=None)"
)

#: Submits one call or task: its one ``bytes`` argument -> Ray's ref of its return.
DirectCall = Callable[[bytes], Any]


def _signature_known(method: str, signature: str) -> bool:
    try:
        from ray._raylet import CoreWorker  # type: ignore[attr-defined]

        doc = getattr(CoreWorker, method).__doc__ or ""
    except (ImportError, AttributeError):
        return False
    return doc.strip().startswith(signature)


_KNOWN = _signature_known("submit_actor_task", _SUBMIT_ACTOR_TASK)


def _tracing() -> bool:
    try:
        from ray.util.tracing.tracing_helper import _is_tracing_enabled
    except ImportError:
        return True  # cannot tell: Ray's own path
    return bool(_is_tracing_enabled())


def direct_call(handle: Any, method: str) -> DirectCall | None:
    """A submit of ``handle``'s ``method`` with one ``bytes`` argument and Ray's default
    options, straight to Ray's core worker; None where that is not known to be what
    Ray's ``.remote()`` would do (see the module docstring)."""
    if not _KNOWN or type(handle) is not ray.actor.ActorHandle or _tracing():
        return None
    try:
        if handle._ray_is_cross_language:
            return None
        bound = getattr(handle, method)
        descriptor = handle._ray_function_descriptor[method]
        language, actor_id = handle._ray_actor_language, handle._ray_actor_id
        cpus = handle._ray_actor_method_cpus
        num_returns = bound._num_returns
        retries = bound._max_task_retries
        retry_exceptions = bound._retry_exceptions
        events = bound._enable_task_events
        backpressure = bound._generator_backpressure_num_objects
        per_yield = bound._num_objects_per_yield
        if (bound._decorator is not None or bound._tensor_transport is not None
                or num_returns not in (None, 1) or retry_exceptions not in (None, False)):
            return None
        from ray._common.signature import DUMMY_TYPE
    except (AttributeError, KeyError, ImportError):
        return None
    retries = 0 if retries is None else retries
    backpressure = -1 if backpressure is None else backpressure
    per_yield = 1 if per_yield is None else per_yield
    worker = ray._private.worker.global_worker

    def submit(data: bytes) -> Any:
        core = worker.core_worker
        # As ``flatten_args`` lays out one positional argument.
        return core.submit_actor_task(
            language, actor_id, descriptor, [DUMMY_TYPE, data], "", 1, retries, False,
            None, cpus, b"", backpressure, per_yield, events, None, None)[0]

    return submit

