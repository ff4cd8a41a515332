"""actorlib: Ray Core's model (tasks, actors, futures, an object store) as a small library.

Most Ray Core code runs unchanged with ``import actorlib as ray``.
"""

from typing import TYPE_CHECKING, Any

from actorlib import exceptions

# Bound now: ``actorlib.progress`` is also the name of its module, which, imported later
# by other code, would otherwise take the function's place (the module is light).
from actorlib.progress import progress

if TYPE_CHECKING:
    from actorlib.actor import ActorClass, ActorHandle, ActorMethod, method
    from actorlib.actor_pool import ActorPool
    from actorlib.api import (
        RuntimeContext,
        as_completed,
        available_resources,
        cancel,
        cluster_resources,
        get,
        get_actor,
        get_async,
        get_gpu_ids,
        get_runtime_context,
        kill,
        nodes,
        put,
        remote,
        wait,
        wait_async,
    )
    from actorlib.core.generators import DynamicObjectRefGenerator, ObjectRefGenerator
    from actorlib.core.ids import (
        ActorID,
        JobID,
        NodeID,
        PlacementGroupID,
        TaskID,
        WorkerID,
    )
    from actorlib.core.refs import ObjectRef
    from actorlib.core.refs import ObjectRef as ObjectID
    from actorlib.core.specs import NodeAffinitySchedulingStrategy
    from actorlib.executor import Executor
    from actorlib.logging_config import LoggingConfig
    from actorlib.pool import Pool
    from actorlib.remote_function import RemoteFunction
    from actorlib.session import RuntimeInfo, init, is_initialized, shutdown
    from actorlib.trace import timeline

# Every public name is imported on first use (PEP 562). A worker process imports this
# package (its modules live in it) but needs none of the API: importing it all there
# would cost every worker tens of milliseconds at boot and megabytes of memory; and a
# driver pays for the runtime's modules in ``init()``, after its first worker is on its
# way, not at ``import actorlib``.
_LAZY = {
    **dict.fromkeys(("ActorClass", "ActorHandle", "ActorMethod", "method"), "actorlib.actor"),
    **dict.fromkeys((
        "RuntimeContext", "as_completed", "available_resources", "cancel",
        "cluster_resources", "get", "get_actor", "get_async", "get_gpu_ids",
        "get_runtime_context", "kill", "nodes", "put", "remote", "wait", "wait_async",
    ), "actorlib.api"),
    **dict.fromkeys(
        ("DynamicObjectRefGenerator", "ObjectRefGenerator"), "actorlib.core.generators"
    ),
    **dict.fromkeys(("ObjectRef", "ObjectID"), "actorlib.core.refs"),
    # Ray's id classes (what ``get_runtime_context()``'s ``*_id`` properties return);
    # ``ObjectID`` is ``ObjectRef``, as in Ray, where it is the ref's old name.
    **dict.fromkeys(
        ("ActorID", "JobID", "NodeID", "PlacementGroupID", "TaskID", "WorkerID"),
        "actorlib.core.ids",
    ),
    "NodeAffinitySchedulingStrategy": "actorlib.core.specs",
    "RemoteFunction": "actorlib.remote_function",
    **dict.fromkeys(("RuntimeInfo", "init", "is_initialized", "shutdown"), "actorlib.session"),
    "ActorPool": "actorlib.actor_pool",
    "Executor": "actorlib.executor",
    "LoggingConfig": "actorlib.logging_config",
    "Pool": "actorlib.pool",
    "timeline": "actorlib.trace",
}
#: Names bound to another name of their module.
_ALIASES = {"ObjectID": "ObjectRef"}
# Ray's submodules reachable as attributes of the package (``ray.util.queue``,
# ``ray.actor.exit_actor()`` ...) after a bare ``import``, as Ray's are.
_LAZY_MODULES = frozenset({
    "util", "runtime_env", "job_config", "runtime_context", "actor", "remote_function",
    "cloudpickle",
})
# Ray's libraries beyond Ray Core: code written for them needs Ray, and says so at once
# (still an AttributeError, so ``hasattr`` and ``getattr(..., default)`` keep working).
_RAY_LIBRARIES = {
    "data": "Ray Data", "train": "Ray Train", "tune": "Ray Tune", "serve": "Ray Serve",
    "rllib": "RLlib", "air": "Ray AIR", "workflow": "Ray Workflows",
    "dag": "Ray's DAG API (.bind())", "experimental": "Ray's experimental APIs",
}


def _not_in_actorlib(what: str, module: str, name: str) -> AttributeError:
    """The error for a name of Ray's that actorlib leaves to Ray, saying what to do."""
    return AttributeError(
        f"module {module!r} has no attribute {name!r}: actorlib brings Ray Core's API, not "
        f"{what}; code that uses it needs Ray itself (see docs/ray-compatibility.md, "
        "'What does not exist')"
    )


def __getattr__(name: str) -> Any:
    import importlib

    if name in _LAZY_MODULES:  # ``actorlib.util`` after a bare ``import actorlib``, as Ray
        value = importlib.import_module(f"actorlib.{name}")
        globals()[name] = value
        return value
    module = _LAZY.get(name)
    if module is None:
        if name in _RAY_LIBRARIES:
            raise _not_in_actorlib(_RAY_LIBRARIES[name], "actorlib", name)
        raise AttributeError(f"module 'actorlib' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), _ALIASES.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *_LAZY_MODULES})


from actorlib.core.release import RELEASE as __version__  # noqa: E402

__all__ = [
    "ActorClass",
    "ActorHandle",
    "ActorID",
    "ActorMethod",
    "ActorPool",
    "DynamicObjectRefGenerator",
    "Executor",
    "JobID",
    "LoggingConfig",
    "NodeAffinitySchedulingStrategy",
    "NodeID",
    "ObjectID",
    "ObjectRef",
    "ObjectRefGenerator",
    "PlacementGroupID",
    "Pool",
    "RemoteFunction",
    "RuntimeContext",
    "RuntimeInfo",
    "TaskID",
    "WorkerID",
    "__version__",
    "as_completed",
    "available_resources",
    "cancel",
    "cluster_resources",
    "exceptions",
    "get",
    "get_actor",
    "get_async",
    "get_gpu_ids",
    "get_runtime_context",
    "init",
    "is_initialized",
    "kill",
    "method",
    "nodes",
    "progress",
    "put",
    "remote",
    "shutdown",
    "timeline",
    "wait",
    "wait_async",
]
