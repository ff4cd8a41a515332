"""What this machine offers as one node: CPUs, schedulable memory, GPUs, custom resources.

Probed where a node starts: the thread and process backends, and a cluster's node daemon.
"""

from __future__ import annotations

import os

from actorlib.backends.base import BackendConfig


def schedulable_memory() -> int:
    """Bytes of ``memory`` a node offers to tasks: 70% of what is free now (as Ray does)."""
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not POSIX: assume 4 GiB
        free = 4 << 30
    return int(free * 0.7)


def local_node_resources(config: BackendConfig) -> dict[str, float]:
    """What this machine offers as one node: CPUs, memory, GPUs and custom resources."""
    cpus = config.num_cpus if config.num_cpus is not None else (os.cpu_count() or 1)
    resources = {"CPU": float(cpus), "memory": float(schedulable_memory())}
    if config.num_gpus:
        resources["GPU"] = float(config.num_gpus)
    resources.update({k: float(v) for k, v in config.resources.items()})
    return resources
