"""A cluster node: process workers and an object store, placed under a head's core.

The node runs the process backend as it runs on one machine, with two changes of
direction: its events (results, crashes, actor starts) go to the head over TCP instead
of to a local core, and its workers' API calls (nested tasks, ``get``, refs) are relayed
to the head through a :class:`~actorlib.backends.transport.remote_core.RemoteCoreClient`. An
:class:`~actorlib.backends.cluster.object_server.ObjectServer` serves its objects to the
rest of the cluster and fetches other nodes' objects for its workers and drivers.

The node exits when it loses its head: its workers die with it, its files are removed.
Run as ``python -m actorlib.backends.cluster.node``; ``actorlib start --address`` does.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from actorlib.backends.base import BackendConfig, HeapStore
from actorlib.backends.cluster.daemons import (
    add_driver_args,
    begin_daemon,
    handle_daemon_signals,
    wait_for_stop,
    write_ready_file,
)
from actorlib.backends.cluster.node_store import NodeStore
from actorlib.backends.cluster.object_server import ObjectServer
from actorlib.backends.cluster.objects import Directory, lazy_mapper
from actorlib.backends.node_resources import local_node_resources
from actorlib.backends.process.backend import ProcessBackend
from actorlib.backends.transport import auth as cluster_auth
from actorlib.backends.transport import tokens, wire
from actorlib.backends.transport.forwarding import ForwardedEvents
from actorlib.backends.transport.messages import (
    CancelRun,
    Exit,
    Free,
    Heartbeat,
    ItemsConsumed,
    JobSetup,
    NodeAnswer,
    NodeHello,
    NodeQuery,
    NodeReady,
    Nodes,
    Ready,
    Recall,
    Reply,
    RunCall,
    RunTask,
    StartActor,
    StopActor,
    SysPath,
    ToNode,
    Welcome,
)
from actorlib.backends.transport.remote_core import RemoteCoreClient
from actorlib.core.labels import parse_labels_arg
from actorlib.core.loop import LoopThread
from actorlib.core.records import NodeInfo
from actorlib.core.serialization import set_buffer_mapper

log = logging.getLogger("actorlib.cluster")

HEARTBEAT_S = 1.0
CONNECT_TIMEOUT_S = 30.0
#: How long a node may take to join its head, connection included.
START_TIMEOUT_S = 60.0


class NodeDaemon:
    def __init__(
        self, head: tuple[str, int], token: bytes, config: BackendConfig, *,
        host: str = "127.0.0.1", tls: cluster_auth.TLSConfig | None = None,
        node_id: str | None = None, ready_file: str | None = None,
    ) -> None:
        self.head = head
        #: Written once the head lists this node as joined: ``actorlib start`` returns
        #: (and a private cluster's driver starts) only then, so ``nodes()`` shows it.
        self.ready_file = ready_file
        self.token = token
        self.config = config
        self.host = host
        self.tls = tls
        self.node_id = node_id or uuid.uuid4().hex[:16]
        self.loop_thread = LoopThread("actorlib-node")
        self.done = threading.Event()
        self.directory: Directory = {}
        self.job_sys_path: list[str] = []  # shared with the backend's worker INIT
        # The drivers' logging and setup hooks (``JobSetup``), shared likewise.
        self.job_setups: dict[int, dict[str, Any]] = {}
        self.backend = ProcessBackend()
        self.objects: ObjectServer | None = None
        self._welcome: asyncio.Future[Welcome] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self.client: RemoteCoreClient | None = None
        self._early_nodes: list[NodeInfo] | None = None  # announced before the client exists
        #: One handler per record of ``messages.ToNode``.
        self._handlers: dict[type, Callable[[Any], None]] = {
            Welcome: self._on_welcome, Nodes: self._on_nodes, Free: self._free,
            SysPath: self._sys_path, JobSetup: self._job_setup, NodeQuery: self._node_query,
            RunTask: self._run_task, RunCall: self._run_call,
            StartActor: self._start_actor, StopActor: self._stop_actor,
            CancelRun: self._cancel, Recall: self._recall, ItemsConsumed: self._items_consumed,
            Exit: self._exit,
            Ready: self._ready, Reply: self._reply,
        }

    # == lifecycle ==========================================================================

    def run(self) -> None:
        self.loop_thread.start()
        try:
            if self._started():
                wait_for_stop(self.done)
        finally:
            try:
                self.loop_thread.run_coroutine(self._stop(), timeout=60)
            finally:
                self.loop_thread.stop()

    def _started(self) -> bool:
        """Run :meth:`_start` (up to a minute: the head may be starting beside us), unless
        told to stop meanwhile: a private cluster's node whose driver is killed during
        ``init()``, or that gets a SIGTERM, would otherwise go on looking for a head that
        never comes for ``CONNECT_TIMEOUT_S``, orphaned. The main thread looks every
        tenth of a second, so the signal's handler runs too."""
        starting = asyncio.run_coroutine_threadsafe(self._start(), self.loop_thread.loop)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                starting.result(timeout=0.1)
                return True
            except concurrent.futures.TimeoutError:
                if self.done.is_set():
                    starting.cancel()
                    return False
                if time.monotonic() > deadline:
                    starting.cancel()
                    raise

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        ctx = self.tls.client_context() if self.tls is not None else None
        deadline = loop.time() + CONNECT_TIMEOUT_S
        while True:  # the head may be starting beside us
            try:
                reader, writer = await cluster_auth.open_connection(
                    self.head[0], self.head[1], self.token, "node", tls=ctx
                )
                break
            except ConnectionRefusedError:
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.02)
        self.conn = wire.Connection(loop, self._on_message, self._on_lost)
        self._welcome = loop.create_future()
        cluster_auth.hand_over(reader, writer, self.conn)
        resources = local_node_resources(self.config)
        self.conn.send(NodeHello(
            self.node_id, resources, self.host, os.getpid(), dict(self.config.labels)
        ))
        welcome = await asyncio.wait_for(self._welcome, 30)
        self.directory = dict(welcome.directory)
        self.job_sys_path.extend(welcome.sys_path)
        client = RemoteCoreClient(
            self.conn, welcome.prefix, "default", HeapStore(), welcome.nodes,
            remembers_ready=False,  # it relays its workers' watches, and never waits
        )
        self.client = client
        if self._early_nodes is not None:
            client.set_nodes(self._early_nodes)
        events = ForwardedEvents(self.conn.send, client, self.loop_thread.post)
        # The object server needs the store, and workers need the server's address: start
        # the backend first, with the address filled in before its first worker starts.
        worker_link: dict[str, Any] = {"token": self.token, "tls": self.tls, "objects": None}
        config = BackendConfig(
            num_cpus=resources.get("CPU"), num_gpus=resources.get("GPU"),
            resources={k: v for k, v in resources.items() if k not in ("CPU", "GPU")},
            object_store_memory=self.config.object_store_memory,
            options={
                "node_id": self.node_id, "prefix_base": welcome.prefix,
                "log_dir": self.config.options.get("log_dir"),  # per-worker log files
                "worker_init": {"cluster": worker_link, "job_sys_path": self.job_sys_path,
                                "job_setups": self.job_setups},
            },
        )
        store = NodeStore.for_node(self.config.object_store_memory,
                                   self.config.options.get("spill_root"))
        self.objects = ObjectServer(store, self.token, lambda: self.directory, self.tls)
        worker_link["objects"] = self.objects.start(self.host)
        self.backend.store_override = store
        self.backend.forward_output = self.conn.send  # workers' output: to the head
        await self.backend.start(events, config)
        set_buffer_mapper(lazy_mapper)  # the node relays locations, never reads them
        self.conn.send(NodeReady(store.session, worker_link["objects"]))
        self._heartbeat = loop.create_task(self._beat())

    async def _beat(self) -> None:
        while True:
            backend = self.backend
            self.conn.send(Heartbeat({
                "workers": len(backend._workers), "idle_workers": len(backend._idle),
                # its own objects and the copies it cached of others'
                "object_store_bytes": backend.store.in_use() + (
                    self.objects.store.copy_bytes() if self.objects is not None else 0
                ),
                "object_store_capacity": getattr(backend.store, "capacity", 0),
                "worker_rows": backend.workers(),  # for list_workers, as of this beat
            }))
            await asyncio.sleep(HEARTBEAT_S)

    async def _stop(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        if self.objects is not None:
            await asyncio.to_thread(self.objects.stop)
        if getattr(self.backend, "events", None) is not None:
            await self.backend.stop()
        if self.client is not None:
            self.client.close("the node is stopping")
        if getattr(self, "conn", None) is not None:
            await self.conn.aclose()

    # == from the head (node loop) ==========================================================

    def _on_lost(self) -> None:
        if not self.done.is_set():
            log.warning("actorlib node %s: lost the head; stopping", self.node_id)
        self.done.set()

    def _on_message(self, message: ToNode) -> None:
        self._handlers[type(message)](message)

    def _run_task(self, message: RunTask) -> None:
        self.backend.run_task(message.run)

    def _run_call(self, message: RunCall) -> None:
        self.backend.run_call(message.run)

    def _start_actor(self, message: StartActor) -> None:
        self.backend.start_actor(message.start)

    def _stop_actor(self, message: StopActor) -> None:
        self.backend.stop_actor(message.actor_id, force=message.force)

    def _cancel(self, message: CancelRun) -> None:
        self.backend.cancel(message.work_id, force=message.force)

    def _recall(self, message: Recall) -> None:
        self.backend.recall(message.task_id)

    def _items_consumed(self, message: ItemsConsumed) -> None:
        self.backend.items_consumed(message.work_id, message.consumed)

    def _ready(self, message: Ready) -> None:  # answers to our workers' requests
        assert self.client is not None  # made before any worker starts
        self.client.on_ready(message.token, message.object_id, message.value)

    def _reply(self, message: Reply) -> None:
        assert self.client is not None
        self.client.on_reply(message.req, message.ok, message.value)

    def _free(self, message: Free) -> None:
        self.backend.store.free_paths(message.paths)

    def _sys_path(self, message: SysPath) -> None:
        self.job_sys_path.extend(message.paths)
        for worker in list(self.backend._workers):
            worker.send(message)

    def _job_setup(self, message: JobSetup) -> None:
        """A driver's logging and hook, for every worker (a new one gets them at Init)."""
        if message.setup is None:
            self.job_setups.pop(message.job, None)
        else:
            self.job_setups[message.job] = message.setup
        for worker in list(self.backend._workers):
            worker.send(message)

    def _node_query(self, message: NodeQuery) -> None:
        """A question about our workers (a stack dump, a log file), answered from a
        thread of its own: a dump waits for the worker to write its stacks."""
        req = message.req
        if message.what == "workers":  # the head's rows of them, fresher than a beat's
            self.conn.send(NodeAnswer(req, self.backend.workers()))
            return
        answer = self.backend.worker_query((message.what, message.pid, message.size))

        def answered(future: Any) -> None:
            error = future.exception()
            reply = (NodeAnswer(req, [], f"{error}") if error is not None
                     else NodeAnswer(req, future.result()))
            self.loop_thread.post(self.conn.send, reply)

        answer.add_done_callback(answered)

    def _on_nodes(self, message: Nodes) -> None:
        self.directory = dict(message.directory)
        if self.ready_file is not None and any(
            n.node_id == self.node_id for n in message.nodes
        ):
            write_ready_file(self.ready_file, {"node_id": self.node_id, "pid": os.getpid()})
            self.ready_file = None
        if self.client is None:
            self._early_nodes = message.nodes
        else:
            self.client.set_nodes(message.nodes)

    def _on_welcome(self, message: Welcome) -> None:
        assert self._welcome is not None
        self._welcome.set_result(message)

    def _exit(self, message: Exit) -> None:
        self.done.set()


def _resources_arg(text: str | None) -> dict[str, float]:
    if not text:
        return {}
    value = json.loads(text)
    if not isinstance(value, dict):
        raise SystemExit("--resources must be a JSON object, e.g. '{\"accel\": 2}'")
    return {str(k): float(v) for k, v in value.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m actorlib.backends.cluster.node")
    parser.add_argument("--address", required=True, help="the head, HOST:PORT")
    parser.add_argument("--token-file", required=True)
    parser.add_argument("--host", default="127.0.0.1", help="address others reach us at")
    parser.add_argument("--num-cpus", type=float)
    parser.add_argument("--num-gpus", type=float)
    parser.add_argument("--resources")
    parser.add_argument("--object-store-memory", type=int)
    parser.add_argument("--object-spilling-directory", help="where the store spills")
    parser.add_argument("--labels", help="this node's labels: name=value,name=value")
    parser.add_argument("--node-id")
    add_driver_args(parser)
    parser.add_argument("--log-dir", help="where each worker keeps its log file")
    parser.add_argument("--ready-file", help="written once the head lists this node")
    args = parser.parse_args(argv)
    begin_daemon("node")
    host, _, port = args.address.rpartition(":")
    config = BackendConfig(
        num_cpus=args.num_cpus, num_gpus=args.num_gpus,
        resources=_resources_arg(args.resources),
        object_store_memory=args.object_store_memory,
        labels=parse_labels_arg(args.labels or ""),
        options={"log_dir": args.log_dir, "spill_root": args.object_spilling_directory},
    )
    token = tokens.resolve_token(token_file=args.token_file)
    daemon = NodeDaemon((host, int(port)), token, config, host=args.host,
                        tls=cluster_auth.TLSConfig.from_env(), node_id=args.node_id,
                        ready_file=args.ready_file)
    handle_daemon_signals(daemon.done.set, args.driver_pid, args.driver_fd)
    socket.setdefaulttimeout(None)
    daemon.run()


if __name__ == "__main__":
    main()
