"""What every workload is written with: the :class:`Env`, the sizes, and the remote code.

The remote code (``small_value``, ``Actor``, ...) is module-level so that every worker, and
the alternatives' ``ProcessPoolExecutor`` and ``multiprocessing.Pool``, import it by
reference; the sizes (``BATCH``, ``MAP_ITEMS``) are shared with the alternatives so that
both sides measure the same amount of work. Separate from the workloads themselves
(:mod:`actorlib.bench.workloads`, :mod:`actorlib.bench.fresh_process`,
:mod:`actorlib.bench.alternatives`) because all of them build on it and it must import
nothing of theirs.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BATCH",
    "DEFAULT_GET_LARGE_MB",
    "DEFAULT_LARGE_MB",
    "MAP_ITEMS",
    "Actor",
    "AsyncActor",
    "Env",
    "SkipWorkload",
    "call_own_actor",
    "first_element",
    "make_refs",
    "need_numpy",
    "need_psutil",
    "small_value",
    "trivial",
]

DEFAULT_LARGE_MB = 256  # put_large, task_arg_large
DEFAULT_GET_LARGE_MB = 1024  # get_large (Ray's "get of a 1 GiB array")
BATCH = 1000  # calls per step of the "async" workloads (Ray's harness uses 1000 too)
MAP_ITEMS = 10_000


@dataclass
class Env:
    """What a workload needs: the API module and the run's settings."""

    api: Any  # the actorlib module, or ray
    target: str  # "actorlib", "ray", or an alternative's name
    backend: str | None
    num_cpus: int
    large_mb: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. an alternative's pool

    @property
    def api_name(self) -> str:
        return str(self.api.__name__)

    def large_bytes(self, default_mb: int) -> int:
        return (self.large_mb if self.large_mb is not None else default_mb) * 1024 * 1024


# --------------------------------------------------------------------------- remote code
# Module-level, so that every worker (and ProcessPoolExecutor / multiprocessing.Pool)
# imports them by reference.


def small_value() -> bytes:
    return b"ok"


def trivial(x: Any) -> Any:
    return x


def first_element(a: Any) -> float:
    return float(a[0])


_ARRAYS: dict[int, Any] = {}


def large_array(nbytes: int) -> Any:
    """An array of ``nbytes`` made once per worker process and returned every time: what
    ``task_result_large`` times is the result's way into the store and out to the driver."""
    arr = _ARRAYS.get(nbytes)
    if arr is None:
        import numpy as np

        arr = _ARRAYS[nbytes] = np.full(nbytes // 8, 1.0)
    return arr


def call_own_actor(api_name: str, actor: Any, n: int) -> int:
    """A caller task of ``actor_n_n``: ``n`` async calls to its own actor."""
    api = importlib.import_module(api_name)
    api.get([actor.small_value.remote() for _ in range(n)])
    return n


def make_refs(api_name: str, n: int) -> list[Any]:
    """The task of ``refs_10000``: a result holding ``n`` refs."""
    api = importlib.import_module(api_name)
    return [api.put(1) for _ in range(n)]


class Actor:
    def small_value(self) -> bytes:
        return b"ok"


class AsyncActor:
    async def small_value(self) -> bytes:
        return b"ok"


def need_numpy() -> Any:
    try:
        return importlib.import_module("numpy")
    except ImportError as exc:
        raise SkipWorkload("numpy is not installed") from exc


def need_psutil() -> Any:
    try:
        return importlib.import_module("psutil")
    except ImportError as exc:
        raise SkipWorkload("psutil is not installed") from exc


class SkipWorkload(Exception):
    """Raised by a workload that cannot run here; the message is the reason."""

