"""Plain tasks and actor calls handed to Ray's core worker directly, without Ray's
Python layers.

Ray's ``handle.method.remote(data)`` runs, per call and in Python: its auto-init and
tracing wrappers, ``ActorMethod._remote`` (each option's default looked up again, one
validated), its tensor-transport check of the arguments, and
``ActorHandle._actor_method_call``, whose ``flatten_args`` builds an
``inspect.Signature`` and binds the arguments to it. For actorlib's calls all of that
has one answer per actor: the method is actorlib's own host method, which takes any
arguments, with Ray's defaults. Measured on Ray 2.60 (main-thread CPU per call), those
layers cost 15-20 us of a 35-55 us submission. So a call with Ray's default options and
no ref arguments goes to ``CoreWorker.submit_actor_task`` with the values those layers
would have passed: a plain one to the host's Ray method of its own name with its
payload alone (or nothing), any other to the host's ``call`` with its spec and payload
as its one ``bytes`` argument (see :func:`.worker.remote_host`).

A task's ``RemoteFunction._remote`` does more per call: each of Ray's ~30 task options
filled with its default again (``RAY_TASK_MAX_RETRIES`` read from the environment), its
resources and placement group worked out again, its usage recorded. For one function
and one set of options (one of actorlib's task templates) those are the same on every
call made from a driver, so once Ray's own ``.remote()`` has submitted (and exported)
the function, its later calls go to ``CoreWorker.submit_task`` with those values.

Only where that is known to be what Ray does: the core worker's ``submit_actor_task``
must have exactly the signature this module was written against (Cython embeds it in
the docstring), the handle must be a Python actor's plain ``ActorHandle`` (not Ray
Client's), the method must have Ray's defaults (no decorator, no tensor transport, one
return, no ``retry_exceptions`` list), and Ray's tracing must be off (its wrapper adds
the tracing context as an argument). Anything else takes Ray's ``.remote()``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from actorlib.backends.ray.connector import ray_module
from actorlib.backends.ray.wire import wrapper_cells

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

#: ``CoreWorker.submit_task``'s signature as this module calls it (Ray 2.60).
_SUBMIT_TASK = (
    "CoreWorker.submit_task(self, Language language, FunctionDescriptor "
    "function_descriptor, args, string name, int num_returns, resources, int max_retries, "
    "bool retry_exceptions, retry_exception_allowlist, scheduling_strategy, "
    "string debugger_breakpoint, string serialized_runtime_env_info, "
    "int64_t generator_backpressure_num_objects, int64_t num_objects_per_yield, "
    "bool enable_task_events, labels, label_selector, fallback_strategy)"
)

#: Submits one call or task: its one ``bytes`` argument (or None), then the Ray refs of
#: its ref arguments -> Ray's ref(s) of its return(s).
DirectCall = Callable[..., Any]
DirectTask = DirectCall


def _signature_known(method: str, signature: str) -> bool:
    try:
        from ray._raylet import CoreWorker  # type: ignore[attr-defined, unused-ignore]

        doc = getattr(CoreWorker, method).__doc__ or ""
    except (ImportError, AttributeError):
        return False
    return doc.strip().startswith(signature)


_KNOWN = _signature_known("submit_actor_task", _SUBMIT_ACTOR_TASK)
_KNOWN_TASK = _signature_known("submit_task", _SUBMIT_TASK)


def _tracing() -> bool:
    try:
        from ray.util.tracing.tracing_helper import _is_tracing_enabled
    except ImportError:
        return True  # cannot tell: Ray's own path
    return bool(_is_tracing_enabled())


def direct_call(handle: Any, method: str) -> DirectCall | None:
    """A submit of ``handle``'s ``method`` with one ``bytes`` argument (or none), then
    Ray refs, and Ray's default options, straight to Ray's core worker; None where that is not known
    to be what Ray's ``.remote()`` would do (see the module docstring)."""
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

    def submit(data: bytes | None, *deps: Any) -> Any:
        core = worker.core_worker
        # As ``flatten_args`` lays out positional arguments: the payload (or none), then
        # each ref (a Ray ``ObjectRef``, which Ray passes by reference and resolves).
        args: list[Any] = [] if data is None and not deps else [DUMMY_TYPE, data]
        for dep in deps:
            args += (DUMMY_TYPE, dep)
        return core.submit_actor_task(
            language, actor_id, descriptor, args,
            "", 1, retries, False, None, cpus, b"", backpressure, per_yield, events, None,
            None)[0]

    return submit


def direct_task(options_wrapper: Any) -> DirectTask | None:
    """A submit of the tasks of Ray's ``.options()`` wrapper of a remote function (one
    ``bytes`` argument, then Ray refs) straight to Ray's core worker, in a driver,
    with the values Ray's ``_remote`` computes for those options; None where they are
    not known to be the same on every call (a placement group, a generator, tracing, a
    function not exported yet: see the module docstring)."""
    if not _KNOWN_TASK or _tracing():
        return None
    cells = wrapper_cells(options_wrapper)
    if cells is None:
        return None
    try:
        from ray import remote_function
        from ray._common.ray_option_utils import task_options
        from ray._common.signature import DUMMY_TYPE
        from ray._common.utils import resources_from_ray_options
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        function = cells["func_cls"]
        options = dict(cells["updated_options"])
        runtime_env = cells["serialized_runtime_env_info"] or "{}"
        worker = ray._private.worker.global_worker
        if (function._is_cross_language or function._decorator is not None
                or function._function_signature is None
                or remote_function._task_launch_hook is not None
                or worker.mode != ray._private.worker.SCRIPT_MODE
                or function._last_export_cluster_and_job != worker.current_cluster_and_job):
            return None
        language, descriptor = function._language, function._function_descriptor
        options.pop("max_calls", None)
        for key, option in task_options.items():  # Ray's defaults, as ``_remote`` fills them
            default = option.default_value
            if key == "max_retries":
                default = int(os.environ.get("RAY_TASK_MAX_RETRIES", default))
            options.setdefault(key, default)
        num_returns = options["num_returns"]
        strategy = options["scheduling_strategy"]
        if (type(num_returns) is not int or num_returns < 0
                or options["placement_group"] not in ("default", None)
                or options["placement_group_bundle_index"] != -1
                or options["placement_group_capture_child_tasks"] is not None
                or options["_num_objects_per_yield"] not in (None, 1)
                or isinstance(strategy, PlacementGroupSchedulingStrategy)):
            return None
        if strategy is None:  # no group to capture in a driver: Ray's default
            strategy = "DEFAULT"
        resources = resources_from_ray_options(options)
    except (AttributeError, KeyError, ImportError, ValueError, TypeError):
        return None
    retry_exceptions = options["retry_exceptions"]
    allowlist = None
    if isinstance(retry_exceptions, (list, tuple)):
        allowlist, retry_exceptions = tuple(retry_exceptions), True
    name = options["name"] or ""
    max_retries = options["max_retries"]
    backpressure = options["_generator_backpressure_num_objects"]
    backpressure = -1 if backpressure is None else backpressure
    events = options.get("enable_task_events")
    labels = options.get("_labels")
    selector = options.get("label_selector")
    fallback = options.get("fallback_strategy")

    def submit(data: bytes | None, *deps: Any) -> Any:
        # As ``flatten_args`` lays out positional arguments: the payload, then each ref
        # (a Ray ``ObjectRef``, which Ray passes by reference and resolves).
        args: list[Any] = [] if data is None and not deps else [DUMMY_TYPE, data]
        for dep in deps:
            args += (DUMMY_TYPE, dep)
        refs = worker.core_worker.submit_task(
            language, descriptor, args, name,
            num_returns, resources, max_retries, retry_exceptions, allowlist, strategy,
            worker.debugger_breakpoint, runtime_env, backpressure, 1, events, labels,
            selector, fallback)
        worker.debugger_breakpoint = b""
        if len(refs) == 1:
            return refs[0]
        return refs or None

    return submit


class RayTask:
    """Ray's ``.options()`` wrapper of a task function, whose plain submissions (one
    ``bytes`` argument) go straight to Ray's core worker once Ray's own ``.remote()``
    has submitted one (and so exported the function): see :func:`direct_task`."""

    __slots__ = ("_direct", "_untried", "wrapper")

    def __init__(self, wrapper: Any, direct: bool) -> None:
        self.wrapper = wrapper
        self._direct: DirectTask | None = None
        self._untried = direct  # a direct submit may be made after the next submission

    def remote(self, data: bytes | None, *rest: Any) -> Any:
        """Submit a task whose first argument is ``data`` (None and no ``rest``: none
        at all); a direct submit only where ``rest`` is Ray refs alone."""
        direct = self._direct
        if direct is not None and all(type(r) is ray.ObjectRef for r in rest):
            return direct(data, *rest)
        out = self.wrapper.remote(*rest) if data is None else self.wrapper.remote(data, *rest)
        if self._untried:
            self._untried = False
            self._direct = direct_task(self.wrapper)
        return out
