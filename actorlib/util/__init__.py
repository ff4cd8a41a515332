"""``actorlib.util``: Ray's ``ray.util`` names, so ``from ray.util import ActorPool`` translates.

Submodules as in Ray: ``actorlib.util.state`` (the state API), ``actorlib.util.metrics``
(``Counter``, ``Gauge``, ``Histogram``), ``actorlib.util.queue``
(``Queue``), ``actorlib.util.scheduling_strategies`` and ``actorlib.util.placement_group``
(reserved bundles of resources), ``actorlib.util.debug`` (``log_once``), and
``actorlib.util.pdb`` (``set_trace()`` in tasks and actors; the module
``actorlib.util.rpdb``, as in Ray), ``actorlib.util.joblib`` (``register_ray``: joblib's
``"ray"`` backend).
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, Any

from actorlib import session
from actorlib.actor_pool import ActorPool
from actorlib.core.execution_context import current_execution

# Loaded with the package, as in Ray, where ``ray.util.scheduling_strategies.X`` and
# ``ray.util.accelerators`` work after a bare ``import ray``.
from actorlib.util import accelerators, metrics, scheduling_strategies, state
from actorlib.util.check_serialize import inspect_serializability
from actorlib.util.debug import disable_log_once_globally, enable_periodic_logging, log_once
from actorlib.util.helpers import as_completed, map_unordered
from actorlib.util.placement_group import (
    PlacementGroup,
    get_current_placement_group,
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from actorlib.util.serialization import deregister_serializer, register_serializer

if TYPE_CHECKING:
    from actorlib.util import rpdb as pdb

__all__ = [
    "ActorPool",
    "PlacementGroup",
    "accelerators",
    "as_completed",
    "deregister_serializer",
    "disable_log_once_globally",
    "enable_periodic_logging",
    "get_current_placement_group",
    "get_node_instance_id",
    "get_node_ip_address",
    "get_placement_group",
    "inspect_serializability",
    "list_named_actors",
    "log_once",
    "map_unordered",
    "metrics",
    "pdb",
    "placement_group",
    "placement_group_table",
    "register_serializer",
    "remove_placement_group",
    "scheduling_strategies",
    "state",
]


_RAY_ONLY = {
    "collective": "ray.util.collective", "dask": "Dask on Ray (ray.util.dask)",
    "joblib": "the joblib backend (ray.util.joblib)", "spark": "Spark on Ray",
}


#: Submodules loaded on first use, so that ``ray.util.queue.Queue`` works after a bare
#: ``import actorlib as ray``, where ``from ray.util.queue import Queue`` cannot be written.
_LAZY_SUBMODULES = frozenset({"queue", "multiprocessing", "actor_pool", "rpdb", "joblib"})
#: ``actorlib.util.pdb`` is the module ``rpdb`` (as Ray's ``ray.util.pdb`` is), loaded on
#: first use: most programs never debug, and ``pdb`` costs milliseconds to import.
_LAZY_ALIASES = {"pdb": "rpdb"}


if not TYPE_CHECKING:  # hidden from type checkers, which would take any name as Any

    def __getattr__(name: str) -> Any:
        if name in _LAZY_SUBMODULES or name in _LAZY_ALIASES:
            import importlib

            return importlib.import_module(f"actorlib.util.{_LAZY_ALIASES.get(name, name)}")
        if name in _RAY_ONLY:
            from actorlib import _not_in_actorlib

            raise _not_in_actorlib(_RAY_ONLY[name], "actorlib.util", name)
        raise AttributeError(f"module 'actorlib.util' has no attribute {name!r}")


def _this_machine_ip() -> str:
    """The address this machine reaches others from (a UDP connect sends no packet)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("8.8.8.8", 80))
            return str(s.getsockname()[0])
    except OSError:  # no route at all: a machine on its own
        return "127.0.0.1"


def get_node_ip_address() -> str:
    """The IP address of the node the caller runs on, as ``nodes()`` reports it.

    In a task or actor: its node's address. In a driver running its own runtime (thread,
    process backends) the one local node's; elsewhere (before ``init``, or a driver
    connected to a cluster, which is on no node) this machine's outgoing address.
    """
    ctx = current_execution.get()
    rt = session.runtime()
    if ctx is not None:
        client = session.client()
        for node in client.nodes():
            if node.node_id == ctx.node_id and node.address:
                return node.address
    elif rt is not None and getattr(rt, "address", None) is None:
        nodes = rt.nodes()
        if nodes and nodes[0].address:
            return nodes[0].address
    return _this_machine_ip()


def get_node_instance_id() -> str:
    """The cloud instance id of the node the caller runs on, as Ray's: the
    ``RAY_CLOUD_INSTANCE_ID`` environment variable that the deployment (KubeRay, a cloud
    launcher) sets on the node, and "" where none does. Tasks and actors see their node's,
    which their worker inherits (the driver's on the thread, process and sim backends;
    the node daemon's on a cluster)."""
    return os.environ.get("RAY_CLOUD_INSTANCE_ID", "")


def list_named_actors(all_namespaces: bool = False) -> list[Any]:
    """The names of the live named actors in this job's namespace, as Ray's does.

    ``all_namespaces=True``: every namespace's, as ``{"name": ..., "namespace": ...}``.
    """
    client = session.client()
    if all_namespaces:
        return [{"name": name, "namespace": ns} for ns, name in client.named_actors(None)]
    return [name for _, name in client.named_actors(client.namespace)]

