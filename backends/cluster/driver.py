"""The ``cluster`` backend, driver side: connect to a head, or start a private cluster.

``init(address="host:port")`` (or ``"auto"``, or ``$ACTORLIB_ADDRESS``) connects this
driver to a running cluster (``actorlib start``). ``init(backend="cluster")`` without an
address starts a private one on this machine (a head and one node, with the resources
given to ``init``) and stops it at ``shutdown()``.

The driver holds no core: its client forwards the API to the head's core, as a process
worker forwards it to its driver. Object bytes never pass through the head: the driver
puts large buffers into a node's store (:mod:`.driver_store`) and reads them from the
nodes (:mod:`.objects`), zero-copy from a node on its own machine.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from actorlib.backends.base import BackendConfig, Connector
from actorlib.backends.cluster.daemons import PrivateCluster
from actorlib.backends.cluster.driver_store import DriverStore
from actorlib.backends.cluster.objects import Directory, DriverMapper, NodeLinks
from actorlib.backends.cluster.sessions import ADDRESS_ENV, resolve_address
from actorlib.backends.output import OutputWriter
from actorlib.backends.transport import auth as cluster_auth
from actorlib.backends.transport import tokens, wire
from actorlib.backends.transport.framing import Undecodable
from actorlib.backends.transport.messages import (
    DriverHello,
    Nodes,
    Output,
    Ready,
    Reply,
    ToDriver,
    UnhandledError,
    Welcome,
)
from actorlib.backends.transport.remote_core import RemoteCoreClient
from actorlib.core.jobs import entrypoint
from actorlib.core.loop import LoopThread
from actorlib.core.serialization import Serialized, Unavailable, map_readonly, set_buffer_mapper
from actorlib.core.waiting import report_unhandled


class ClusterClient(RemoteCoreClient):
    """The driver's client: the actorlib API, forwarded to the head's core."""

    def __init__(self, address: str, token: bytes, namespace: str,
                 tls: cluster_auth.TLSConfig | None = None,
                 private: PrivateCluster | None = None, log_to_driver: bool = True,
                 setup: dict[str, Any] | None = None) -> None:
        self.address = address
        self.log_to_driver = log_to_driver
        self.setup = setup  # logging and setup hook for the workers (``JobSetup``)
        # Output from our tasks is written on a thread of its own; what the head sends
        # after it waits until it is written (``_held``), as on the process backend.
        self._held = 0
        self._writer = OutputWriter(self._written)
        self.private = private
        self.directory: Directory = {}
        # Nodes announced between the Welcome and the end of __init__ wait here, or the
        # welcome's (older) list would overwrite them.
        self._early_nodes: Nodes | None = None
        self._welcomed = False
        self._handlers = self._handler_table()
        self._io = LoopThread("actorlib-cluster-io")
        self._io.start()
        host, _, port = address.rpartition(":")
        ctx = tls.client_context() if tls is not None else None
        try:
            welcome = self._io.run_coroutine(self._connect(host, int(port), token, ctx), 60)
        except BaseException:
            self._io.stop()
            raise
        self.links = NodeLinks(lambda: self.directory, token, ctx)
        self._mapper = DriverMapper(self.links)
        #: id -> [refs held here, pickle stream, contained ids, locations, inline buffers]
        self._own: dict[int, list[Any]] = {}
        self._own_lock = threading.RLock()  # a ref may die (GC) while we hold it
        super().__init__(self.conn, welcome.prefix, namespace, DriverStore(self.links),
                         welcome.nodes)
        self.directory = dict(welcome.directory)
        self._io.call(self._welcome_done)
        set_buffer_mapper(self._mapper)

    async def _connect(self, host: str, port: int, token: bytes, ctx: Any) -> Welcome:
        loop = asyncio.get_running_loop()
        reader, writer = await cluster_auth.open_connection(host, port, token, "driver", tls=ctx)
        self._welcome: asyncio.Future[Welcome] = loop.create_future()
        self.conn = wire.Connection(loop, self._on_message, self._on_lost, salvage=True)
        cluster_auth.hand_over(reader, writer, self.conn)
        self.conn.send(DriverHello(os.getpid(), list(sys.path), self.log_to_driver, self.setup,
                                   entrypoint()))
        return await asyncio.wait_for(self._welcome, 30)

    def _handler_table(self) -> dict[type, Callable[[Any], None]]:
        """One handler per record of ``messages.ToDriver``, but for ``Output`` (written on
        a thread of its own, what follows it held back until it is written)."""
        return {
            Ready: self._ready, Reply: self._reply, Nodes: self._on_nodes,
            Welcome: self._on_welcome, UnhandledError: self._unhandled,
            Undecodable: self._undecodable,
        }

    def _on_message(self, message: ToDriver) -> None:
        if type(message) is Output or self._held:
            self._held += 1
            if type(message) is Output:
                self._writer.put(message.stream, message.text, None)
            else:
                self._writer.put(None, "", message)
            return
        self._handlers[type(message)](message)

    def _written(self, held: list[ToDriver | None]) -> None:
        self._io.post(self._release, held)

    def _release(self, held: list[ToDriver | None]) -> None:
        for message in held:
            self._held -= 1
            if message is not None:
                self._handlers[type(message)](message)

    def _ready(self, message: Ready) -> None:
        self.on_ready(message.token, message.object_id, message.value)

    def _unhandled(self, message: UnhandledError) -> None:
        """An error of this driver's work that nobody read died in the head: report it
        here, where its core would if it ran in this process."""
        report_unhandled(message.value)

    def _reply(self, message: Reply) -> None:
        self.on_reply(message.req, message.ok, message.value)

    def _undecodable(self, message: Undecodable) -> None:
        """A message from the head that did not decode here (the decoder logged it): a
        reply ends its request with the error, rather than the caller waiting forever."""
        self.undecodable_reply(message, "the driver")

    def _on_nodes(self, message: Nodes) -> None:
        if self._welcomed:
            self.directory = dict(message.directory)
            self.set_nodes(message.nodes)
        else:
            self._early_nodes = message

    def _on_welcome(self, message: Welcome) -> None:
        self._welcome.set_result(message)

    def _welcome_done(self) -> None:
        """On the I/O thread, so no Nodes message can slip in between."""
        self._welcomed = True
        if self._early_nodes is not None:
            self._on_nodes(self._early_nodes)
            self._early_nodes = None

    def _on_lost(self) -> None:
        if not self.closed:
            self.close(f"the actorlib cluster head at {self.address} went away")

    # -- what this driver put: read here, without a round trip to the head ---------------

    def put(self, id_: int, value: Serialized) -> None:
        """Send the value to the head, and remember how to read it while we hold a ref.

        Only its pickle stream and locations are kept, never a mapping of its buffers (a
        mapping would keep the node from freeing the memory when it spills the object).
        """
        locations = value.locations
        inline = list(value.buffers) if locations is None else [
            b if loc is None else None for b, loc in zip(value.buffers, locations, strict=True)
        ]
        with self._own_lock:
            self._own[id_] = [1, value.data, value.contained, locations, inline]
        try:
            super().put(id_, value)
        except BaseException:
            with self._own_lock:
                self._own.pop(id_, None)
            raise

    def add_ref(self, id_: int) -> None:
        with self._own_lock:
            own = self._own.get(id_)
            if own is not None:
                own[0] += 1
        super().add_ref(id_)

    def drop_ref(self, id_: int) -> None:
        with self._own_lock:
            own = self._own.get(id_)
            if own is not None:
                own[0] -= 1
                if own[0] <= 0:
                    del self._own[id_]
        super().drop_ref(id_)

    def ready_value(self, id_: int) -> Serialized | None:
        """A value this driver put, mapped from its node's store (zero-copy nearby)."""
        if self.closed:
            return None
        own = self._own.get(id_)
        if own is None:
            return None
        _, data, contained, locations, inline = own
        if locations is None:
            return Serialized(data, list(inline), contained)
        mapped = [
            self._mapper(*loc) if loc is not None else b
            for loc, b in zip(locations, inline, strict=True)
        ]
        if any(isinstance(b, Unavailable) for b in mapped):
            return None  # gone from its node: the head says what happened
        return Serialized(data, mapped, contained, False, list(locations))

    def debug_state(self) -> dict[str, Any]:
        result: dict[str, Any] = self._request("debug_state")
        return result

    def wait_for_nodes(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self._nodes) < count:
            if self.closed or time.monotonic() > deadline:
                raise TimeoutError(f"{count} node(s) did not join the cluster at {self.address}")
            time.sleep(0.01)

    def shutdown(self) -> None:
        self.closed = True
        try:
            self._io.run_coroutine(self.conn.aclose(), 10)
        finally:
            self._io.stop()
        self._writer.close()
        set_buffer_mapper(map_readonly)
        self.links.close()
        if self.private is not None:
            self.private.stop()


class ClusterConnector(Connector):
    """Registered as ``cluster``. A driver holds no core here: :meth:`connect` gives it a
    client of the head's (the head runs :class:`~actorlib.backends.cluster.head.HeadBackend`).
    """

    name = "cluster"
    runtime_env_files = frozenset({"working_dir", "py_modules"})  # nodes' process workers
    serves_state = True  # answered by the head, through this driver's client

    @classmethod
    def connect(cls, config: BackendConfig, namespace: str) -> ClusterClient:
        output = config.options.get("output") or {}
        setup = {"logging": output.get("logging"), "setup_hook": output.get("setup_hook")}
        private = None
        token_file: str | None
        if config.address is None and not os.environ.get(ADDRESS_ENV):
            private = PrivateCluster(config)
            address, token_file = private.address, private.token_file
        else:
            if config.options.get("spill_root") is not None:
                raise ValueError(
                    "object_spilling_directory is for the runtime init() starts; the nodes "
                    "of a cluster it joins spill where `actorlib start "
                    "--object-spilling-directory` says"
                )
            address, token_file = resolve_address(config.address)
        try:
            token = tokens.resolve_token(token_file=token_file)
            client = ClusterClient(address, token, namespace, cluster_auth.TLSConfig.from_env(),
                                   private, bool(config.options.get("log_to_driver", True)),
                                   setup)
            if private is not None:
                try:
                    client.wait_for_nodes(1)
                except TimeoutError as exc:
                    logs = f"{private.log_tail('node')}\n{private.log_tail('head')}"
                    client.shutdown()  # removes the logs
                    raise TimeoutError(f"{exc}\n{logs}") from None
            return client
        except BaseException:
            if private is not None:
                private.stop()
            raise
