"""Which runtime this process talks to.

In the driver that is the core :class:`~actorlib.core.runtime.Runtime` itself; inside a
worker process it is a proxy that forwards to the driver's core. The API layer and
unpickled refs find it here, so they never need to know which one they have.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Protocol, cast

if TYPE_CHECKING:
    from collections.abc import Callable

    from actorlib.backends.base import ObjectStore
    from actorlib.core.ids import IdAllocator
    from actorlib.core.metrics import Batch
    from actorlib.core.objects import Watcher
    from actorlib.core.records import NodeInfo
    from actorlib.core.serialization import Serialized
    from actorlib.core.specs import ActorSpec, CallSpec, CodeEnv, PlacementGroupSpec, TaskSpec


class Client(Protocol):
    """What the API layer needs from a runtime. Every method is callable from any thread."""

    ids: IdAllocator
    store: ObjectStore
    closed: bool

    @property
    def namespace(self) -> str: ...

    def add_ref(self, id_: int) -> None: ...
    def drop_ref(self, id_: int) -> None: ...
    def put(self, id_: int, value: Serialized) -> None: ...
    def ready_value(self, id_: int) -> Serialized | None:
        """The value of ``id_`` if this process can read it now without asking the core
        (``get`` of a ready object then skips the round trip); None otherwise, always
        None where the core is in another process."""
    def ready_values(
        self, ids: list[int], need: int, fail_fast: bool, reads: bool = True,
    ) -> dict[int, Serialized]:
        """Those of ``ids`` whose values ``ready_value`` would give, in ``ids`` order,
        stopping at ``need`` of them or (``fail_fast``) at the first error: one call, so
        a backend whose store answers many objects at once asks it once. ``reads``
        False: the caller only asks which are ready (a ``wait``), and a backend whose
        reads cost (Ray's ``get``) may give :data:`~actorlib.core.serialization.UNREAD`
        for a value it did not read."""
    def watch(self, ids: list[int], callback: Watcher, reads: bool = True) -> None:
        """Call ``callback(id, value)`` as each id is ready. ``reads``: the caller reads
        the values (``get``), so an error among them is handled; False for a ``wait``."""
    def unwatch(self, ids: list[int], callback: Watcher) -> None: ...
    def submit_task(self, spec: TaskSpec) -> int | None:
        """Send the task; the id it goes by where the backend names it otherwise than
        ``spec.task_id`` (as :meth:`submit_call`), else None."""
    def create_actor(self, spec: ActorSpec, get_if_exists: bool = False) -> int: ...
    def submit_call(self, spec: CallSpec) -> int | None:
        """Send the call; the id its task goes by where the backend names it otherwise
        than ``spec.call_id`` (what ``ref.task_id()`` and the call's own
        ``get_task_id()`` then report), else None."""
    def cancel(self, object_id: int, force: bool, recursive: bool) -> None:
        """Cancel the task or call making ``object_id``; with ``force``, ``ValueError``
        if that is an actor call not yet ended (as Ray refuses it)."""
    def withdraw(self, object_ids: list[int]) -> list[bool]: ...
    def kill_actor(self, actor_id: int, no_restart: bool) -> None: ...
    def task_blocked(self, task_id: int, blocked: bool) -> None: ...
    def lookup_actor(self, name: str, namespace: str) -> ActorSpec | None: ...
    def named_actors(self, namespace: str | None) -> list[tuple[str, str]]: ...
    def infeasible_reason(self, request: dict[str, float], strategy: Any) -> str | None: ...
    def nodes(self) -> list[NodeInfo]: ...
    def state_rows(self, kind: str) -> list[dict[str, Any]]: ...
    def cluster_resources(self) -> dict[str, float]: ...
    def available_resources(self) -> dict[str, float]: ...
    def flush(self) -> None: ...
    def create_placement_group(self, spec: PlacementGroupSpec) -> None: ...
    def remove_placement_group(self, group_id: int) -> None: ...
    def placement_group_ready(self, group_id: int, object_id: int, value: Serialized) -> None: ...
    def lookup_placement_group(self, name: str, namespace: str) -> PlacementGroupSpec | None: ...
    def placement_groups(self) -> list[dict[str, Any]]: ...
    def record_metrics(self, batch: Batch, done: Callable[[], None] | None = None) -> None:
        """Hand a batch of metric updates to the core without waiting; ``done()`` once
        it holds them (``actorlib.core.metrics``)."""


_current: Client | None = None
#: In a worker process started for a runtime_env ``working_dir`` / ``py_modules``: that
#: environment, which work submitted from here inherits unless it names its own (as in
#: Ray, where a child task runs in its parent's runtime_env).
inherited_code_env: CodeEnv | None = None


def current() -> Client | None:
    return _current  # (``RemoteFunction.remote`` reads ``_current`` itself)


def install(client: Client | None) -> None:
    global _current
    _current = client


class _Forked:
    """The runtime as a process forked from one that uses it sees it (``os.fork()``,
    ``multiprocessing``'s "fork" start method, in the driver or in a task): every use of
    actorlib there raises, instead of waiting forever for a core whose threads, or whose
    connection, the child does not have. Refs it inherited may still be dropped (their
    finalizers run there)."""

    closed = False

    def __getattr__(self, name: str) -> Any:
        if name in ("add_ref", "drop_ref"):
            return _ignore
        raise RuntimeError(
            "actorlib cannot be used in a process forked from one that uses it (os.fork(), "
            "multiprocessing's 'fork' start method): its runtime is the parent's. Call "
            "actorlib in the parent, or start the process with 'spawn'."
        )


def _ignore(*args: Any) -> None:
    pass


def _after_fork_in_child() -> None:
    global _current
    if _current is not None:
        _current = cast("Client", _Forked())


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
