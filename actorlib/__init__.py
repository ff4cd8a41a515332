"""actorlib: Ray Core's model (tasks, actors, futures, an object store) as a small library.

Most Ray Core code runs unchanged with ``import actorlib as ray``.
"""

from typing import TYPE_CHECKING, Any

from actorlib import exceptions
from actorlib.actor import ActorClass, ActorHandle, ActorMethod, method
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
from actorlib.core.refs import ObjectRef
from actorlib.core.specs import NodeAffinitySchedulingStrategy
from actorlib.progress import progress
from actorlib.remote_function import RemoteFunction
from actorlib.session import RuntimeInfo, init, is_initialized, shutdown

if TYPE_CHECKING:
    from actorlib.actor_pool import ActorPool
    from actorlib.executor import Executor
    from actorlib.pool import Pool
    from actorlib.trace import timeline

# Imported on first use: they pull in concurrent.futures.process and multiprocessing,
# which every worker process would otherwise import at boot for nothing.
_LAZY = {
    "ActorPool": "actorlib.actor_pool",
    "Executor": "actorlib.executor",
    "Pool": "actorlib.pool",
    "timeline": "actorlib.trace",
}
# Ray's submodules reachable as attributes of the package (``ray.util.queue`` ...).
_LAZY_MODULES = frozenset({"util", "runtime_env", "job_config", "runtime_context"})


def __getattr__(name: str) -> Any:
    import importlib

    if name in _LAZY_MODULES:  # ``actorlib.util`` after a bare ``import actorlib``, as Ray
        value = importlib.import_module(f"actorlib.{name}")
        globals()[name] = value
        return value
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'actorlib' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

__version__ = "0.1.0"

__all__ = [
    "ActorClass",
    "ActorHandle",
    "ActorMethod",
    "ActorPool",
    "DynamicObjectRefGenerator",
    "Executor",
    "NodeAffinitySchedulingStrategy",
    "ObjectRef",
    "ObjectRefGenerator",
    "Pool",
    "RemoteFunction",
    "RuntimeContext",
    "RuntimeInfo",
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
