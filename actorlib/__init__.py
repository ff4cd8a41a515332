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
from actorlib.core.refs import ObjectRef
from actorlib.core.specs import NodeAffinitySchedulingStrategy
from actorlib.progress import progress
from actorlib.remote_function import RemoteFunction
from actorlib.session import RuntimeInfo, init, is_initialized, shutdown

if TYPE_CHECKING:
    from actorlib.actor_pool import ActorPool
    from actorlib.executor import Executor
    from actorlib.pool import Pool

# Imported on first use: they pull in concurrent.futures.process and multiprocessing,
# which every worker process would otherwise import at boot for nothing.
_LAZY = {
    "ActorPool": "actorlib.actor_pool",
    "Executor": "actorlib.executor",
    "Pool": "actorlib.pool",
}


def __getattr__(name: str) -> Any:
    if name == "util":  # a subpackage, documented as ``actorlib.util.ActorPool``
        import importlib

        return importlib.import_module("actorlib.util")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'actorlib' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

__version__ = "0.1.0"

__all__ = [
    "ActorClass",
    "ActorHandle",
    "ActorMethod",
    "ActorPool",
    "Executor",
    "NodeAffinitySchedulingStrategy",
    "ObjectRef",
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
    "wait",
    "wait_async",
]
