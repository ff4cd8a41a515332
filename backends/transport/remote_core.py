"""The actorlib API where the core runs in another process: a client that forwards it.

A process worker's client speaks to its driver's core, a cluster node's and driver's to
the head's. Every call becomes a message (``messages.ClientCall``); the few that must
answer wait for a ``Reply``, and values awaited with ``watch`` arrive as ``Ready``. The
core's side of the same connection is
:class:`~actorlib.backends.transport.client_link.ClientLink`; events of the work a
process runs travel the other way through
:class:`~actorlib.backends.transport.forwarding.ForwardedEvents`.
"""

from __future__ import annotations

import itertools
import pickle
import threading
from collections.abc import Callable
from typing import Any

from actorlib.backends.base import ObjectStore
from actorlib.backends.transport import framing
from actorlib.backends.transport.messages import (
    AddRef,
    CancelObject,
    ClientCall,
    CreateActor,
    DropRef,
    KillActor,
    Put,
    Reply,
    Request,
    SubmitCall,
    SubmitTask,
    TaskBlocked,
    Unwatch,
    Watch,
)
from actorlib.core import interruptible
from actorlib.core.execution_context import current_execution
from actorlib.core.ids import IdAllocator
from actorlib.core.metrics import Batch
from actorlib.core.objects import Watcher, first_ready
from actorlib.core.records import NodeInfo
from actorlib.core.scheduler import Scheduler
from actorlib.core.serialization import UNREAD, Serialized
from actorlib.core.specs import ActorSpec, CallSpec, PlacementGroupSpec, TaskSpec
from actorlib.exceptions import RuntimeClosedError

#: How many ids a client remembers as ready (see ``RemoteCoreClient._ready_ids``); past it
#: the memory starts over (a cache: forgetting costs a round trip, nothing else).
READY_IDS_KEPT = 100_000


# Records made with tuple.__new__ where every call or ref comes (as ``codec._new``).
_new = tuple.__new__


def _never() -> bool:
    return False


def _nothing() -> None:
    pass


class RemoteCoreClient:
    """The actorlib API where the core runs in another process: everything goes to it.

    In a worker (to the driver's core), in a cluster's node and driver (to the head's).
    The core's side of the connection is a
    :class:`~actorlib.backends.transport.client_link.ClientLink`.
    """

    def __init__(
        self, conn: framing.Sender, prefix: int, namespace: str, store: ObjectStore,
        nodes: list[NodeInfo], *, remembers_ready: bool = True,
    ) -> None:
        self.ids = IdAllocator(prefix)
        self._namespace = namespace
        self.store = store
        self.closed = False
        self._send = conn.send
        # A submission or a ref's drop may wait a moment for others to go with it, on a
        # worker's connection (``BlockingConnection.send_soon``); elsewhere it goes at once.
        self._send_soon: Callable[[Any], None] = getattr(conn, "send_soon", conn.send)
        self._flush_submissions: Callable[[], None] = getattr(
            conn, "flush_submissions", _nothing
        )
        self._reads_here: Callable[[], bool] = getattr(conn, "reads_here", _never)
        self._pump: Callable[[], bool] = getattr(conn, "pump", _never)
        # Work running inline on the reading thread hands reading over before it waits.
        self._yield_reading: Callable[[], None] = getattr(conn, "yield_reading", _nothing)
        self._scheduler = Scheduler()
        for node in nodes:
            self._scheduler.add_node(node.node_id, node.resources, node.labels)
        self._nodes = nodes
        self._tokens = itertools.count(1)
        self._watchers: dict[int, list[Any]] = {}  # token -> [callback, ids left]
        # Ids whose objects the core said are ready (a ``Ready`` to any watch, also one
        # that arrived after its wait ended): a ``wait`` on them is answered here, so a
        # loop of ``wait(not_ready)`` costs a round trip to the core only when none of
        # the ids it learnt of is left, not one per call. Readiness only: a ``get`` still
        # asks the core for the value. Only values held inline: one in a node's store may
        # be lost with its node and be pending again while its task re-runs (lineage);
        # and all are forgotten when a node leaves (``set_nodes``): the task's inline
        # results are pending again too.
        self._ready_ids: set[int] = set()
        # Ids a watch asked about since a ref to them was last dropped here: a ``Ready``
        # is remembered only for these, so that one still on its way when the ref was
        # dropped (its wait had ended) does not bring back an id forgotten for good.
        self._asked: set[int] = set()
        # False for a client that only relays watches for others (a cluster node's): it
        # never answers a ``wait`` itself, so remembering would only hold memory.
        self._remembers_ready = remembers_ready
        # A subclass reads some values here (a cluster driver's own puts): a ``wait``
        # answered from ``_ready_ids`` asks it about the others too.
        self._reads_values = type(self).ready_value is not RemoteCoreClient.ready_value
        self._token_of: dict[Any, int] = {}
        self._requests = itertools.count(1)
        self._pending: dict[int, Callable[[bool, Any], None]] = {}

    @property
    def namespace(self) -> str:
        """The running task's job namespace (workers of a cluster serve several jobs)."""
        ctx = current_execution.get()
        if ctx is not None and ctx.namespace:
            return ctx.namespace
        return self._namespace

    def _out(self, message: ClientCall) -> None:
        # (``submit_call`` holds the same steps written out: a change here goes there too.)
        if self.closed:
            raise RuntimeClosedError("actorlib was shut down (the driver is gone).")
        self._send(message)

    # -- refs and objects --------------------------------------------------------------

    def add_ref(self, id_: int) -> None:
        if not self.closed:
            self._send(AddRef(id_))

    def drop_ref(self, id_: int) -> None:
        self._asked.discard(id_)  # first: ``on_ready`` looks at it after it adds the id
        self._ready_ids.discard(id_)
        if not self.closed:
            self._send_soon(_new(DropRef, (id_,)))  # (as in ``submit_call``)

    def put(self, id_: int, value: Serialized) -> None:
        self._out(Put(id_, value))

    def ready_values(
        self, ids: list[int], need: int, fail_fast: bool, reads: bool = True,
    ) -> dict[int, Serialized]:
        if reads or not self._ready_ids:
            if not self._reads_values:  # values live with the core: none here to read
                return {}  # (``first_ready`` would ask ``ready_value`` per id, for None)
            return first_ready(ids, self.ready_value, need, fail_fast)
        ready = self._ready_ids  # a ``wait``: which are ready is all it needs
        read = self.ready_value if self._reads_values else None
        got: dict[int, Serialized] = {}
        for id_ in ids:
            if id_ in ready:
                got[id_] = UNREAD
            elif read is not None and (value := read(id_)) is not None:
                got[id_] = value
            else:
                continue
            if len(got) == need:
                break
        return got

    def ready_value(self, id_: int) -> Serialized | None:
        return None  # values live with the core, in another process: always a watch

    def watch(self, ids: list[int], callback: Watcher, reads: bool = True) -> None:
        # What the caller submitted goes first, before reading is handed over (which may
        # wait for a spare thread): the driver starts on it meanwhile.
        self._flush_submissions()
        self._yield_reading()  # the answer must be read while the caller waits for it
        token = next(self._tokens)
        self._watchers[token] = [callback, len(ids), set(ids)]
        self._token_of[callback] = token
        if self._remembers_ready:
            asked = self._asked
            if len(asked) >= READY_IDS_KEPT:  # ids watched, never dropped nor heard of
                asked.clear()
            asked.update(ids)
        self._out(Watch(token, ids) if reads else Watch(token, ids, False))

    def unwatch(self, ids: list[int], callback: Watcher) -> None:
        token = self._token_of.pop(callback, None)
        if token is not None and self._watchers.pop(token, None) is not None:
            self._send(Unwatch(token, ids))

    def on_ready(self, token: int, id_: int, value: Serialized) -> None:
        # Inline only (but see set_nodes), and held: not dropped since it was watched.
        if self._remembers_ready and not value.locations and id_ in self._asked:
            ready = self._ready_ids
            if len(ready) >= READY_IDS_KEPT:
                ready.clear()
            ready.add(id_)
            if id_ not in self._asked:  # dropped meanwhile, on another thread
                ready.discard(id_)
        entry = self._watchers.get(token)
        if entry is None:
            return
        entry[1] -= 1
        entry[2].discard(id_)
        if entry[1] <= 0:
            del self._watchers[token]
            self._token_of.pop(entry[0], None)
        entry[0](id_, value)

    # -- work ----------------------------------------------------------------------------

    def submit_task(self, spec: TaskSpec) -> None:
        if self.closed:  # (as in ``_out``)
            raise RuntimeClosedError("actorlib was shut down (the driver is gone).")
        self._send_soon(SubmitTask(spec))

    def submit_call(self, spec: CallSpec) -> None:
        # ``_out``, without its frame (every call a task makes; a change there goes here
        # too), and the record made without a NamedTuple's ``__new__`` (Python).
        if self.closed:
            raise RuntimeClosedError("actorlib was shut down (the driver is gone).")
        self._send_soon(_new(SubmitCall, (spec,)))

    def create_actor(self, spec: ActorSpec, get_if_exists: bool = False) -> int:
        if spec.name is None:
            self._out(CreateActor(spec))
            return spec.actor_id
        result: int = self._request("create_actor", spec, get_if_exists)
        return result

    def cancel(self, object_id: int, force: bool, recursive: bool) -> None:
        if force:  # the core may refuse it (an actor call): wait for its answer
            self._request("cancel", object_id, force, recursive)
        else:
            self._out(CancelObject(object_id, force, recursive))

    def withdraw(self, object_ids: list[int]) -> list[bool]:
        result: list[bool] = self._request("withdraw", object_ids)
        return result

    def kill_actor(self, actor_id: int, no_restart: bool) -> None:
        self._out(KillActor(actor_id, no_restart))

    def task_blocked(self, task_id: int, blocked: bool) -> None:
        self._send(TaskBlocked(task_id, blocked))

    # -- queries -------------------------------------------------------------------------

    def infeasible_reason(self, request: dict[str, float], strategy: Any) -> str | None:
        return self._scheduler.infeasible_reason(request, strategy)

    def lookup_actor(self, name: str, namespace: str) -> ActorSpec | None:
        result: ActorSpec | None = self._request("lookup_actor", name, namespace)
        return result

    def named_actors(self, namespace: str | None) -> list[tuple[str, str]]:
        result: list[tuple[str, str]] = self._request("named_actors", namespace)
        return result

    def nodes(self) -> list[NodeInfo]:
        result: list[NodeInfo] = self._request("nodes")
        return result

    def state_rows(self, kind: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._request("state_rows", kind)
        return result

    def cluster_resources(self) -> dict[str, float]:
        result: dict[str, float] = self._request("cluster_resources")
        return result

    def available_resources(self) -> dict[str, float]:
        result: dict[str, float] = self._request("available_resources")
        return result

    def flush(self) -> None:
        self._request("flush")

    def create_placement_group(self, spec: PlacementGroupSpec) -> None:
        self._request("create_placement_group", spec)

    def remove_placement_group(self, group_id: int) -> None:
        self._request("remove_placement_group", group_id)

    def placement_group_ready(self, group_id: int, object_id: int, value: Serialized) -> None:
        self._request("placement_group_ready", group_id, object_id, value)

    def lookup_placement_group(self, name: str, namespace: str) -> PlacementGroupSpec | None:
        result: PlacementGroupSpec | None = self._request("lookup_placement_group", name, namespace)
        return result

    def placement_groups(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._request("placement_groups")
        return result

    def record_metrics(self, batch: Batch, done: Callable[[], None] | None = None) -> None:
        def answered(ok: bool, value: Any) -> None:
            if done is not None:
                done()  # delivered or refused (a clash the core logs): the next may go

        self.forward_request("record_metrics", (batch,), answered)

    def request(self, method: str, *args: Any) -> Any:
        """Ask the other side and wait for its answer (raised if it is an error)."""
        return self._request(method, *args)

    def _request(self, method: str, *args: Any) -> Any:
        self._yield_reading()
        done = threading.Event()
        box: list[Any] = []

        def answered(ok: bool, value: Any) -> None:
            box.append((ok, value))
            done.set()

        self.forward_request(method, args, answered)
        if self._reads_here():
            # Asked on the thread that reads the answers (a finalizer the GC ran while
            # it dispatched, say): it reads until the answer is in, or it never would be.
            while not done.is_set():
                if not self._pump():
                    raise RuntimeClosedError("the connection to the core was lost")
        else:
            interruptible.wait(done)  # a driver's main thread: Ctrl-C gets in meanwhile
        ok, value = box.pop()
        if ok:
            return value
        try:
            raise value
        finally:
            # The error's traceback holds this frame: without this, the cycle keeps the
            # caller's frames (their refs, say) alive until a garbage collection.
            del value

    def forward_request(
        self, method: str, args: tuple[Any, ...], answered: Callable[[bool, Any], None]
    ) -> None:
        """Ask the core without blocking; ``answered(ok, value)`` runs on the reader."""
        req = next(self._requests)
        self._pending[req] = answered
        try:
            self._out(Request(req, method, args))
        except BaseException:
            self._pending.pop(req, None)
            raise

    def on_reply(self, req: int, ok: bool, value: Any) -> None:
        answered = self._pending.pop(req, None)
        if answered is not None:
            answered(ok, value)

    def undecodable_reply(self, message: framing.Undecodable, where: str) -> None:
        """A ``Reply`` that did not decode ``where`` this client runs: its request ends
        with a ``SerializationError`` saying why, rather than its caller waiting forever."""
        record = message.record
        if type(record) is Reply and type(record.req) is int:
            self.on_reply(record.req, False,
                          message.failure("the answer to a request", where))

    def set_nodes(self, nodes: list[NodeInfo]) -> None:
        """The cluster's nodes changed (a cluster client).

        A node gone may have taken objects with it, whose tasks now run again: their
        other results, inline, are pending again too, so every id heard ready is
        forgotten (a ``wait`` asks the core again, which knows)."""
        if {n.node_id for n in self._nodes} - {n.node_id for n in nodes}:
            self._ready_ids.clear()
        scheduler = Scheduler()
        for node in nodes:
            scheduler.add_node(node.node_id, node.resources, node.labels)
        self._scheduler = scheduler
        self._nodes = nodes

    def close(self, why: str = "the driver went away") -> None:
        """The core is gone: fail every request and every object still awaited."""
        self.closed = True
        pending = list(self._pending.values())
        self._pending.clear()
        for answered in pending:
            answered(False, RuntimeClosedError(why))
        watchers = list(self._watchers.values())
        self._watchers.clear()
        self._token_of.clear()
        if watchers:
            lost = Serialized(pickle.dumps(RuntimeClosedError(why), protocol=5), is_error=True)
            for callback, _, ids in watchers:
                for id_ in list(ids):
                    try:
                        callback(id_, lost)
                    except Exception:  # one waiter's failure must not hide the others
                        pass
