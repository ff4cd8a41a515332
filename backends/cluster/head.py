"""The cluster's head: the core (scheduler, objects, actors, names) and its TCP server.

The head runs an ordinary :class:`~actorlib.core.runtime.Runtime` on a
:class:`HeadBackend`, whose "workers" are whole nodes: node daemons
(:mod:`actorlib.backends.cluster.node`) connect, register their resources and run the
tasks and actors placed on them with process workers. Drivers connect too, and speak to
the core exactly as a process worker speaks to its driver (:class:`ClientLink`): when a
driver disconnects (shut down, crashed or killed), its job ends: its queued and running
tasks are cancelled and its non-detached actors killed at once, and everything it held
is released.

The head never reads object bytes: it passes locations on (``lazy_mapper``) and tells
the owning node when an object is freed.

The head's process is :mod:`actorlib.backends.cluster.head_daemon`; the connection to
one peer is :mod:`.head_peer`, the report ``actorlib status`` shows :mod:`.head_status`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from actorlib.backends.base import Backend, BackendConfig, CoreEvents, CoreView, ObjectStore
from actorlib.backends.cluster.head_peer import HeadPeer
from actorlib.backends.cluster.head_queries import NodeQueries
from actorlib.backends.cluster.head_status import head_status
from actorlib.backends.cluster.objects import lazy_mapper, session_of
from actorlib.backends.runner.user_code import pack_error
from actorlib.backends.silence import RECHECK_S, Looks
from actorlib.backends.transport import auth as cluster_auth
from actorlib.backends.transport import tokens
from actorlib.backends.transport.framing import Undecodable
from actorlib.backends.transport.messages import (
    CLIENT_CALLS,
    ActorDied,
    ActorInitFailed,
    ActorStarted,
    CallFinished,
    CancelRun,
    ClientCall,
    DriverHello,
    Exit,
    Free,
    Heartbeat,
    ItemProduced,
    ItemsConsumed,
    JobSetup,
    NodeAnswer,
    NodeHello,
    NodeReady,
    Nodes,
    Output,
    Recall,
    RunCall,
    RunTask,
    StartActor,
    StateQuery,
    StateRows,
    Status,
    StatusQuery,
    StopActor,
    SysPath,
    TaskCrashed,
    TaskFinished,
    TaskRecalled,
    UnhandledError,
    Welcome,
    name_of,
)
from actorlib.core.ids import DRIVER_PREFIX
from actorlib.core.records import ActorStart, CallRun, NodeInfo, Outcome, TaskRun
from actorlib.core.serialization import Serialized, set_buffer_mapper
from actorlib.core.state import WorkerQuery
from actorlib.exceptions import ActorDiedError, NodeDiedError, WorkerCrashedError

log = logging.getLogger("actorlib.cluster")

#: A node silent for this long (no heartbeat, no message) is declared dead.
NODE_TIMEOUT_S = float(os.environ.get("ACTORLIB_NODE_TIMEOUT_S", "5"))
#: How often the head looks for silent nodes.
WATCH_NODES_S = 1.0
NODE_PREFIX_BLOCK = 1 << 20  # id prefixes per node: one per worker process it may start


class HeadStore(ObjectStore):
    """The head keeps no bytes: freeing an object tells the nodes to drop its files."""

    def __init__(self, head: HeadBackend) -> None:
        self.head = head

    def seal(self, obj: Serialized) -> Serialized:
        return obj

    def free(self, obj: Serialized) -> None:
        if obj.locations:
            paths = [loc[0] for loc in obj.locations if loc is not None]
            if paths:
                self.head.events.post(self.head._broadcast_nodes, Free(paths))


class HeadBackend(Backend):
    name = "cluster"
    has_locality = True
    # A task queued behind a running one goes to that one's node, whose process backend
    # holds it on the worker (its claims are local there); a recall travels as a message,
    # and a queued task cannot be taken back at once (``take_back``: False; hence no
    # Executor call, which ``cancel()`` must be able to withdraw, is queued so:
    # ``takes_back`` stays False).
    pipelines = True
    pipeline_depth = 8
    runs_driver = False  # its drivers connect (each a job of ``list_jobs``)

    def __init__(
        self, token: bytes, host: str = "127.0.0.1", port: int = 0,
        tls: cluster_auth.TLSConfig | None = None,
    ) -> None:
        self.token = token
        self.host = host
        self.port = port
        self.tls = tls
        self.store = HeadStore(self)
        self.peers: set[HeadPeer] = set()
        self.nodes: dict[str, HeadPeer] = {}
        self._task_node: dict[int, HeadPeer] = {}
        self._call_node: dict[int, HeadPeer] = {}
        self._actor_node: dict[int, HeadPeer] = {}
        self._driver_prefixes = itertools.count(DRIVER_PREFIX + 1)
        # Import paths of the jobs so far (existing on the nodes when they share a disk).
        self._job_paths: dict[str, None] = {}
        # Each connected driver's logging and setup hook, for the workers of every node.
        self._job_setups: dict[int, dict[str, Any]] = {}
        self._queries = NodeQueries()  # stacks and log files of the nodes' workers
        self._node_blocks = itertools.count(1)
        self._server: asyncio.AbstractServer | None = None
        self._watchdog: asyncio.Task[None] | None = None
        client_calls: dict[type, Callable[[HeadPeer, Any], None]] = dict.fromkeys(
            CLIENT_CALLS, self._client_call)
        client_calls[Undecodable] = self._undecodable
        #: Per role, a handler per record of what that peer sends (``messages.FromNode``,
        #: ``FromDriver``, ``FromCli``); anything else closes its connection.
        self.handlers: dict[str, dict[type, Callable[[HeadPeer, Any], None]]] = {
            "node": {
                NodeHello: self._node_hello, NodeReady: self._node_ready,
                Heartbeat: self._heartbeat, Output: self._route_output,
                NodeAnswer: self._queries_answered,
                TaskFinished: self._task_finished, CallFinished: self._call_finished,
                ItemProduced: self._item_produced, TaskRecalled: self._task_recalled,
                TaskCrashed: self._task_crashed,
                ActorStarted: self._actor_started, ActorInitFailed: self._actor_init_failed,
                ActorDied: self._actor_died, **client_calls,
            },
            "driver": {DriverHello: self._driver_hello, **client_calls},
            "cli": {StatusQuery: self._status_query, StateQuery: self._state_query},
        }

    # == lifecycle ==========================================================================

    async def start(self, events: CoreEvents, config: BackendConfig) -> list[NodeInfo]:
        self.events = events
        self.client = events.client
        # The core's (a Runtime's): questions about workers, answered once nodes answer.
        self._answer_worker_query: Callable[[str, Callable[[bool, Any], None]], bool] = (
            events.client.answer_worker_query  # type: ignore[attr-defined]
        )
        if events.view is None:
            raise RuntimeError("a cluster head runs its core in its own process")
        self.core: CoreView = events.view
        self.loop = asyncio.get_running_loop()
        set_buffer_mapper(lazy_mapper)
        ctx = self.tls.server_context() if self.tls is not None else None
        self._server = await asyncio.start_server(self._accept, self.host, self.port, ssl=ctx)
        self.port = self._server.sockets[0].getsockname()[1]
        self._watchdog = self.loop.create_task(self._watch_nodes())
        return []  # nodes join as they connect

    async def stop(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._server is not None:
            self._server.close()
        for peer in list(self.peers):
            if peer.node is not None:
                peer.send(Exit())
        await asyncio.sleep(0.05)
        for peer in list(self.peers):
            peer.conn.close()
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        address = "{}:{}".format(*writer.get_extra_info("peername", ("?", 0))[:2])
        try:
            role = await cluster_auth.server_handshake(reader, writer, self.token)
        except (tokens.AuthError, ConnectionError, asyncio.IncompleteReadError):
            writer.close()
            return  # refused and logged by the handshake
        if role not in ("node", "driver", "cli"):
            log.warning("actorlib: refused %s: unknown role %r", address, role)
            writer.close()
            return
        peer = HeadPeer(self, role, address)
        self.peers.add(peer)
        cluster_auth.hand_over(reader, writer, peer.conn)

    async def _watch_nodes(self) -> None:
        """A node that stops talking (hung, or cut off without a FIN) is declared dead;
        only silence the head listened to counts (:mod:`~actorlib.backends.silence`)."""
        looks = Looks(WATCH_NODES_S, time.monotonic())
        while True:
            await asyncio.sleep(WATCH_NODES_S)
            now = time.monotonic()
            if looks.late(now):
                continue
            silent = [p for p in self.nodes.values() if now - p.last_seen > NODE_TIMEOUT_S]
            if not silent:
                continue
            await asyncio.sleep(RECHECK_S)  # the loop reads what the nodes sent meanwhile
            now = time.monotonic()
            for peer in silent:
                if not peer.gone and now - peer.last_seen > NODE_TIMEOUT_S:
                    log.warning("actorlib: node %s at %s stopped responding",
                                peer.node.node_id if peer.node else "?", peer.address)
                    peer.conn.close()

    # == what the core asks (core loop) =====================================================

    def _lost(self, why: str) -> WorkerCrashedError:
        return NodeDiedError(why)

    def run_task(self, run: TaskRun) -> None:
        peer = self.nodes.get(run.node_id)
        spec = run.spec
        if peer is None or peer.gone:
            self.events.task_crashed(spec.task_id, spec.attempt,
                                     self._lost(f"node {run.node_id} is gone"))
            return
        peer.running[spec.task_id] = spec.attempt
        self._task_node[spec.task_id] = peer
        run.job = self.core.job_of_work(spec.task_id) or 0  # its driver's setup applies
        peer.send(RunTask(run))

    def start_actor(self, start: ActorStart) -> None:
        peer = self.nodes.get(start.node_id)
        actor_id = start.spec.actor_id
        if peer is None or peer.gone:
            self.events.actor_died(actor_id, start.incarnation,
                                   self._lost(f"node {start.node_id} is gone"))
            return
        peer.actors[actor_id] = start.incarnation
        self._actor_node[actor_id] = peer
        start.job = self.core.job_of_work(actor_id) or 0
        peer.send(StartActor(start))

    def run_call(self, run: CallRun) -> None:
        peer = self._actor_node.get(run.spec.actor_id)
        if peer is None or peer.gone:
            error, _ = pack_error(ActorDiedError("The actor is not running."),
                                  run.spec.method, False)
            self.events.call_finished(Outcome(run.spec.call_id, run.spec.attempt, error=error))
            return
        self._call_node[run.spec.call_id] = peer
        peer.send(RunCall(run))

    def stop_actor(self, actor_id: int, *, force: bool) -> None:
        peer = self._actor_node.pop(actor_id, None)
        if peer is not None:
            peer.actors.pop(actor_id, None)
            peer.send(StopActor(actor_id, force))

    def recall(self, task_id: int) -> None:
        peer = self._task_node.get(task_id)
        if peer is not None:
            peer.send(Recall(task_id))

    def cancel(self, id: int, *, force: bool) -> None:
        peer = self._task_node.get(id) or self._call_node.get(id)
        if peer is not None:
            peer.send(CancelRun(id, force))

    def refresh_workers(self) -> concurrent.futures.Future[None]:
        """Every node's worker rows as of now, not of its last heartbeat."""
        return self._queries.refresh([p for p in self.nodes.values() if not p.gone])

    def worker_query(self, query: WorkerQuery) -> concurrent.futures.Future[list[dict[str, Any]]]:
        """Asked of the node that runs the worker (every node, for the log files)."""
        return self._queries.ask([p for p in self.nodes.values() if not p.gone], query)

    def items_consumed(self, id: int, consumed: int) -> None:
        peer = self._task_node.get(id) or self._call_node.get(id)
        if peer is not None:
            peer.send(ItemsConsumed(id, consumed))

    # == messages (core loop) ===============================================================

    def _handle(self, peer: HeadPeer, message: Any) -> None:
        """Dispatch a peer's message. A peer that broke the protocol (a message its role
        does not send, or of the wrong shape) loses its connection; the head goes on."""
        if peer.gone:
            return
        try:
            peer.handlers[type(message)](peer, message)
        except Exception as exc:
            log.warning(
                "actorlib: %s %s sent a message the head cannot handle (%s: %s: %.60s); "
                "closing its connection", peer.role, peer.address, name_of(message),
                type(exc).__name__, exc,
            )
            peer.conn.close()

    # -- events from a node --------------------------------------------------------------

    def _task_finished(self, peer: HeadPeer, message: TaskFinished) -> None:
        outcome = message.outcome
        peer.running.pop(outcome.id, None)
        self._task_node.pop(outcome.id, None)
        self.events.task_finished(outcome)

    def _call_finished(self, peer: HeadPeer, message: CallFinished) -> None:
        self._call_node.pop(message.outcome.id, None)
        self.events.call_finished(message.outcome)

    def _item_produced(self, peer: HeadPeer, message: ItemProduced) -> None:
        self.events.item_produced(message.item)

    def _actor_started(self, peer: HeadPeer, message: ActorStarted) -> None:
        self.events.actor_started(message.actor_id, message.incarnation)

    def _actor_init_failed(self, peer: HeadPeer, message: ActorInitFailed) -> None:
        self.events.actor_init_failed(message.actor_id, message.incarnation, message.error)

    def _task_recalled(self, peer: HeadPeer, message: TaskRecalled) -> None:
        """A task queued behind another, handed back unstarted."""
        peer.running.pop(message.task_id, None)
        self._task_node.pop(message.task_id, None)
        self.events.task_recalled(message.task_id, message.attempt)

    def _task_crashed(self, peer: HeadPeer, message: TaskCrashed) -> None:
        peer.running.pop(message.task_id, None)
        self._task_node.pop(message.task_id, None)
        self.events.task_crashed(message.task_id, message.attempt, message.error)

    def _actor_died(self, peer: HeadPeer, message: ActorDied) -> None:
        actor_id = message.actor_id
        if peer.actors.get(actor_id) == message.incarnation:
            del peer.actors[actor_id]
            if self._actor_node.get(actor_id) is peer:
                del self._actor_node[actor_id]
        self.events.actor_died(actor_id, message.incarnation, message.error)

    def _queries_answered(self, peer: HeadPeer, message: NodeAnswer) -> None:
        self._queries.answered(message)

    def _heartbeat(self, peer: HeadPeer, message: Heartbeat) -> None:
        peer.stats = message.stats

    # -- the rest --------------------------------------------------------------------------

    def _client_call(self, peer: HeadPeer, message: ClientCall) -> None:
        peer.link.handle(message)

    def _undecodable(self, peer: HeadPeer, message: Undecodable) -> None:
        """A node's or driver's message that did not decode here (the decoder logged
        it): its request or submission is answered with the error, so the peer does not
        wait forever for it."""
        peer.link.undecodable(message, "the cluster's head")

    def _status_query(self, peer: HeadPeer, message: StatusQuery) -> None:
        peer.send(Status(message.req, head_status(self)))

    def _state_query(self, peer: HeadPeer, message: StateQuery) -> None:
        req = message.req

        def answered(ok: bool, value: Any) -> None:  # a worker query, later
            peer.send(StateRows(req, value, None) if ok else StateRows(req, [], str(value)))

        if self._answer_worker_query(message.kind, answered):
            return
        try:
            rows = self.client.state_rows(message.kind)
        except (ValueError, RuntimeError) as exc:
            peer.send(StateRows(message.req, [], str(exc)))
            return
        peer.send(StateRows(message.req, rows))

    def _node_hello(self, peer: HeadPeer, message: NodeHello) -> None:
        if message.node_id in self.nodes:
            log.warning("actorlib: refused a second node with id %s", message.node_id)
            peer.conn.close()
            return
        peer.node = NodeInfo(message.node_id, dict(message.resources), message.host,
                             labels=dict(message.labels))
        self._welcome(peer, next(self._node_blocks) * NODE_PREFIX_BLOCK)

    def _driver_hello(self, peer: HeadPeer, message: DriverHello) -> None:
        prefix = peer.job = next(self._driver_prefixes)
        peer.log_to_driver = bool(message.log_to_driver)
        self.events.job_started(prefix, message.pid, message.entrypoint,
                                peer.address.rpartition(":")[0])
        new = [p for p in message.sys_path if p not in self._job_paths]
        if new:
            self._job_paths.update(dict.fromkeys(new))
            # Every node connection, joined or still starting (its Welcome may have gone
            # out before these paths were known).
            for node in [p for p in self.peers if p.role == "node"]:
                node.send(SysPath(new))
        if message.setup is not None:
            # Before any of its tasks can reach a node: the same connection, sent first.
            self._job_setups[prefix] = message.setup
            for node in [p for p in self.peers if p.role == "node"]:
                node.send(JobSetup(prefix, message.setup))
        self._welcome(peer, prefix)

    def _welcome(self, peer: HeadPeer, prefix: int) -> None:
        peer.send(Welcome(prefix, self._node_infos(), self._directory(), list(self._job_paths)))
        if peer.role == "node":  # the drivers already connected
            for job, setup in self._job_setups.items():
                peer.send(JobSetup(job, setup))

    def _node_ready(self, peer: HeadPeer, message: NodeReady) -> None:
        if peer.node is None:
            raise ValueError("NodeReady before NodeHello")
        peer.session = message.session
        host, port = message.objects
        peer.objects = (host, port)
        peer.ready = True
        self.nodes[peer.node.node_id] = peer
        log.info("actorlib: node %s joined from %s with %s",
                 peer.node.node_id, peer.address, peer.node.resources)
        self.events.node_added(peer.node.node_id, peer.node.resources, peer.node.labels)
        self._announce()

    def _peer_lost(self, peer: HeadPeer) -> None:
        if peer.gone:
            return
        peer.gone = True
        self.peers.discard(peer)
        if peer.node is not None and self.nodes.get(peer.node.node_id) is peer:
            node_id = peer.node.node_id
            del self.nodes[node_id]
            log.warning("actorlib: node %s (%s) left the cluster", node_id, peer.address)
            why = f"node {node_id} at {peer.address} died or lost its connection to the head"
            self._queries.node_lost(peer, why)
            # Remove the node first, so retries and restarts go elsewhere.
            self.events.node_removed(node_id)
            for task_id, attempt in list(peer.running.items()):
                self._task_node.pop(task_id, None)
                self.events.task_crashed(task_id, attempt, NodeDiedError(why))
            peer.running.clear()
            for call_id, owner in list(self._call_node.items()):
                if owner is peer:
                    del self._call_node[call_id]
            for actor_id, incarnation in list(peer.actors.items()):
                if self._actor_node.get(actor_id) is peer:
                    del self._actor_node[actor_id]
                self.events.actor_died(actor_id, incarnation, NodeDiedError(why))
            peer.actors.clear()
            if peer.session:
                session = peer.session

                def lived_there(value: Serialized) -> bool:
                    return any(
                        loc is not None and session_of(loc[0]) == session
                        for loc in value.locations or ()
                    )

                self.events.objects_lost(lived_there, why)
            self._announce()
        if peer.job is not None:
            # Before its references go: its actors are killed, not left to finish
            # their queued calls as actors out of scope would.
            self.events.job_ended(peer.job)
            if self._job_setups.pop(peer.job, None) is not None:
                for node in [p for p in self.peers if p.role == "node"]:
                    node.send(JobSetup(peer.job, None))
        peer.link.release()

    def _route_output(self, peer: HeadPeer, message: Output) -> None:
        """Output of a task or actor, to the driver whose job it is; output nobody can be
        named for (written outside any task, or after its task ended) to every driver."""
        job = self.core.job_of_work(message.owner) if message.owner else None
        for peer in list(self.peers):
            if peer.role == "driver" and peer.log_to_driver and (job is None or peer.job == job):
                peer.send(message)

    def unhandled_error(self, job: int, value: Serialized) -> bool:
        """An error of ``job``'s work nobody read: to that driver, which reports it (as Ray
        prints it in the driver). Its bytes are copied now: they are freed next."""
        driver = next((p for p in self.peers if p.role == "driver" and p.job == job), None)
        if driver is None:
            return False
        try:
            copy = Serialized(bytes(value.data), [bytes(b) for b in value.buffers], (), True)
        except Exception:  # its buffers are on a node: the head logs what it can
            return False
        driver.send(UnhandledError(copy))
        return True

    # == views ==============================================================================

    def workers(self) -> list[dict[str, Any]]:
        """Each node's workers as of its last heartbeat (``HEARTBEAT_S``)."""
        return [row for peer in self.nodes.values() for row in peer.stats.get("worker_rows", ())]

    def locate(self, path: str) -> str | None:
        try:
            session = session_of(path)
        except ValueError:
            return None
        for node_id, peer in self.nodes.items():
            if peer.session == session:
                return node_id
        return None

    def _node_infos(self) -> list[NodeInfo]:
        return [p.node for p in self.nodes.values() if p.node is not None]

    def _directory(self) -> dict[str, tuple[str, int]]:
        return {p.session: p.objects for p in self.nodes.values() if p.objects is not None}

    def _announce(self) -> None:
        message = Nodes(self._node_infos(), self._directory())
        for peer in list(self.peers):
            if peer.role in ("node", "driver"):
                peer.send(message)

    def _broadcast_nodes(self, message: Free) -> None:
        for peer in list(self.nodes.values()):
            peer.send(message)
