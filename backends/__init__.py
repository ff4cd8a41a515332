"""Backends: where actorlib's tasks and actors run. Loaded lazily, by name.

Built in: ``process`` (the default), ``thread``, ``cluster``, and ``sim`` (deterministic
simulation for tests: see ``actorlib.testing``). Third-party packages add more
through the ``actorlib.backends`` entry-point group (``name = "module:Class"``, a
:class:`~actorlib.backends.base.Backend` or a :class:`~actorlib.backends.base.Connector`).
Importing a backend module happens only when it is chosen, so an absent optional
dependency costs nothing.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from actorlib.backends.base import Backend, Connector
    from actorlib.backends.process.launch import Launched

BUILTIN: dict[str, str] = {
    "thread": "actorlib.backends.thread:ThreadBackend",
    "process": "actorlib.backends.process.backend:ProcessBackend",
    "cluster": "actorlib.backends.cluster.driver:ClusterConnector",
    "sim": "actorlib.backends.sim.backend:SimBackend",
    "ray": "actorlib.backends.ray.connector:RayConnector",
}

# The process backend needs POSIX (Unix sockets, fd passing, fcntl locks, mmap); its
# Linux-only parts have portable stand-ins (actorlib.backends.process.portable). Windows: threads.
DEFAULT_BACKEND = "process" if os.name == "posix" else "thread"


def prestart(name: str) -> Launched | None:
    """The first worker of backend ``name``, started before its module is imported.

    ``init()`` calls this first, so the worker's interpreter boots while the driver
    imports the runtime; the backend adopts it (``BackendConfig.options["prestarted"]``),
    and ``init()`` kills it (``discard()``) if it fails before that. Only the ``process``
    backend has one; any other name gets None.
    """
    if name != "process":
        return None
    from actorlib.backends.process.launch import prestart as start_first_worker

    return start_first_worker()


def available() -> dict[str, str]:
    """Every known backend name and where it is defined."""
    from importlib.metadata import entry_points  # only when asked: it is slow to import

    found = dict(BUILTIN)
    for ep in entry_points(group="actorlib.backends"):
        found.setdefault(ep.name, ep.value)
    return found


def load(name: str) -> type[Backend] | type[Connector]:
    known = BUILTIN if name in BUILTIN else available()
    target = known.get(name)
    if target is None:
        raise ValueError(
            f"Unknown actorlib backend {name!r}. Known backends: {', '.join(sorted(known))}."
        )
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"The {name!r} backend is not usable here: {exc}") from exc
    cls: type[Backend] | type[Connector] = getattr(module, attr)
    return cls
