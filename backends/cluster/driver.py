"""The ``cluster`` backend, driver side: connect to a head, or start a private cluster.

``init(address="host:port")`` (or ``"auto"``, or ``$ACTORLIB_ADDRESS``) connects this
driver to a running cluster (``actorlib start``). ``init(backend="cluster")`` without an
address starts a private one on this machine (a head and one node, with the resources
given to ``init``) and stops it at ``shutdown()``.

The driver holds no core: its client forwards the API to the head's core, as a process
worker forwards it to its driver, and reads large objects from the nodes that hold them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from actorlib.backends.base import BackendConfig, Connector, HeapStore
from actorlib.backends.cluster.objects import Directory, DriverMapper
from actorlib.backends.output import OutputWriter
from actorlib.backends.private_dir import is_private, private_dir
from actorlib.backends.process import portable, shm_store
from actorlib.backends.process.worker import RemoteCoreClient
from actorlib.backends.transport import auth as cluster_auth
from actorlib.backends.transport import wire
from actorlib.backends.transport.messages import (
    DriverHello,
    Nodes,
    Output,
    Ready,
    Reply,
    ToDriver,
    Welcome,
)
from actorlib.core.loop import LoopThread
from actorlib.core.serialization import map_readonly, set_buffer_mapper
from actorlib.exceptions import NotSupportedError

ADDRESS_ENV = "ACTORLIB_ADDRESS"
LATEST_NAME = "session_latest"


# -- the sessions root ---------------------------------------------------------------------
#
# ``actorlib start`` keeps its sessions (token, logs, ``cluster.json``) under one directory
# per user, and ``init(address="auto")`` trusts what it finds there. In a world-writable
# ``/tmp`` that name is predictable: another local user could create it first and so
# choose where drivers connect. So the root is used only when it is ours and nobody else
# may write to it, and files in it are created exclusively, never through a symlink.


def sessions_root() -> str:
    """``$XDG_RUNTIME_DIR/actorlib`` where that directory is usable, else ``$TMPDIR/actorlib-$UID``.

    ``$XDG_RUNTIME_DIR`` is private to the user by specification (and not world-writable),
    so it is preferred; it is read on each call so that tests and tools can redirect it.
    """
    xdg = os.environ.get("XDG_RUNTIME_DIR", "")
    if xdg and os.path.isabs(xdg) and is_private(xdg):
        return os.path.join(xdg, "actorlib")
    return os.path.join(tempfile.gettempdir(), f"actorlib-{os.getuid()}")


def checked_root(create: bool = False) -> str | None:
    """The sessions root, after checking nobody else controls it; ``None`` if it is absent.

    Raises ``PermissionError`` (naming the path, its owner and mode, and the fix) for a
    root that is a symlink, not a directory, not ours, or writable by group or others:
    another user could choose where ``init(address='auto')`` connects. ``create`` makes it
    (mode 0700) when missing.
    """
    return private_dir(sessions_root(), "sessions directory", create=create,
                       fix="set TMPDIR to a private directory")


def latest_session() -> str | None:
    """The newest session directory (``session_latest``), if it is a session of ours."""
    root = checked_root()
    if root is None:
        return None
    try:
        target = os.readlink(os.path.join(root, LATEST_NAME))
    except OSError:  # absent, or not a symlink: not something ``start`` made
        return None
    name = os.path.basename(target)
    path = os.path.join(root, name)
    if os.path.dirname(target) not in ("", root) or not name.startswith("session_"):
        return None
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        return None
    return path


def write_private(path: str, data: bytes) -> None:
    """Write ``path`` (mode 0600) whole or not at all: a fresh temporary file, renamed.

    ``O_EXCL | O_NOFOLLOW`` never opens a file or symlink someone else put there; the
    rename replaces the name itself, not what it might point to.
    """
    tmp = f"{path}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_private(path: str) -> bytes:
    """Read a session file, refusing a symlink or a file that is not ours."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
            raise PermissionError(f"refusing {path}: not a regular file of yours")
        return os.read(fd, 1 << 20)
    finally:
        os.close(fd)


def link_latest(session: str) -> None:
    """Point ``session_latest`` at ``session``, atomically (a new link renamed over it)."""
    root = os.path.dirname(session)
    tmp = os.path.join(root, f".{LATEST_NAME}.{os.getpid()}.{os.urandom(4).hex()}")
    os.symlink(os.path.basename(session), tmp)
    try:
        os.replace(tmp, os.path.join(root, LATEST_NAME))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def daemon_command(module: str, *args: str) -> list[str]:
    return [sys.executable, "-c",
            "import sys; sys.path[:] = [p for p in sys.path if p not in ('', '.')]; "
            f"from actorlib.backends.{module} import main; main()", *args]


def handle_daemon_signals(
    stop: Callable[[], None], driver_pid: int | None, driver_fd: int | None = None
) -> None:
    """SIGTERM and SIGINT stop a daemon cleanly; a private cluster's follow its driver.

    A private cluster (``driver_pid`` given) shares its driver's terminal: Ctrl-C and a
    hang-up reach it too, but the driver decides (it stops the cluster in ``shutdown``,
    or carries on if it catches the KeyboardInterrupt). The daemon stops when the driver
    dies however it dies (SIGKILL included), watched through a pidfd, or where there is
    none through the driver's lifeline pipe ``driver_fd`` (see :func:`driver_watch`).
    Ignored signals stay ignored in the workers a node starts.
    """
    signal.signal(signal.SIGTERM, lambda *_: stop())
    if driver_pid is None:
        signal.signal(signal.SIGINT, lambda *_: stop())
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        pidfd = portable.pidfd_open(driver_pid)
    except ProcessLookupError:
        stop()
        return
    if pidfd is None:
        if driver_fd is None:
            raise RuntimeError(
                f"cannot watch driver {driver_pid} here (no pidfd): pass --driver-fd"
            )
        portable.on_lifeline_cut(driver_fd, stop, "actorlib-driver-watch")
        return
    if driver_fd is not None:
        os.close(driver_fd)  # the pidfd is enough
    fd = pidfd

    def watch() -> None:
        select.select([fd], [], [])  # readable once the driver has exited
        os.close(fd)
        stop()

    threading.Thread(target=watch, name="actorlib-driver-watch", daemon=True).start()


def driver_watch(driver_pid: int | None) -> tuple[list[str], list[int]]:
    """A private daemon's arguments and inherited fds to follow its driver (this process).

    The driver's lifeline goes along always: the daemon uses it only without pidfds.
    """
    if driver_pid is None:
        return [], []
    fd = portable.lifeline_fd()
    return ["--driver-pid", str(driver_pid), "--driver-fd", str(fd)], [fd]


def wait_for_file(path: str, proc: subprocess.Popen[bytes], what: str, log: str,
                  timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with open(path) as f:
                data: dict[str, Any] = json.load(f)
            return data
        if proc.poll() is not None:
            raise RuntimeError(f"the {what} exited with code {proc.returncode}; see {log}")
        time.sleep(0.02)
    raise TimeoutError(f"the {what} did not start within {timeout:g} s; see {log}")


def start_head(session_dir: str, token_file: str, host: str = "127.0.0.1", port: int = 0,
               *, detach: bool = False, wait: bool = True, driver_pid: int | None = None,
               dashboard: tuple[str, int] | None = None,
               ) -> tuple[subprocess.Popen[bytes], str]:
    """Start a head daemon; returns it and its ``host:port``.

    ``wait=False`` returns at once (``port`` must then be given): nodes started meanwhile
    keep trying to connect until the head listens. ``driver_pid``: a private cluster's
    head, which stops with that driver (see :func:`handle_daemon_signals`).
    ``dashboard``: ``(host, port)`` to serve the web dashboard on; its URL is then in the
    session's ``head.json``.
    """
    ready = os.path.join(session_dir, "head.json")
    log = os.path.join(session_dir, "logs", "head.log")
    os.makedirs(os.path.dirname(log), exist_ok=True)
    extra, fds = driver_watch(driver_pid)
    if dashboard is not None:
        extra += ["--dashboard-host", dashboard[0], "--dashboard-port", str(dashboard[1])]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            daemon_command("cluster.head", "--host", host, "--port", str(port),
                           "--token-file", token_file, "--ready-file", ready, *extra),
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=detach, pass_fds=fds,
        )
    if not wait:
        return proc, f"{host}:{port}"
    info = wait_for_file(ready, proc, "head", log)
    return proc, f"{info['host']}:{info['port']}"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def start_node(session_dir: str, token_file: str, address: str, *, name: str = "node",
               num_cpus: float | None = None, num_gpus: float | None = None,
               resources: dict[str, float] | None = None,
               object_store_memory: int | None = None, host: str = "127.0.0.1",
               labels: dict[str, str] | None = None,
               node_id: str | None = None, detach: bool = False,
               driver_pid: int | None = None) -> subprocess.Popen[bytes]:
    log = os.path.join(session_dir, "logs", f"{name}.log")
    os.makedirs(os.path.dirname(log), exist_ok=True)
    extra, fds = driver_watch(driver_pid)
    args = ["--address", address, "--token-file", token_file, "--host", host, *extra]
    if num_cpus is not None:
        args += ["--num-cpus", str(num_cpus)]
    if num_gpus is not None:
        args += ["--num-gpus", str(num_gpus)]
    if resources:
        args += ["--resources", json.dumps(resources)]
    if object_store_memory is not None:
        args += ["--object-store-memory", str(object_store_memory)]
    if labels:
        args += ["--labels", ",".join(f"{k}={v}" for k, v in labels.items())]
    if node_id is not None:
        args += ["--node-id", node_id]
    with open(log, "ab") as out:
        return subprocess.Popen(
            daemon_command("cluster.node", *args), stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=detach, pass_fds=fds,
        )


def stop_processes(procs: list[subprocess.Popen[bytes]], timeout: float = 10.0) -> None:
    """SIGTERM every daemon at once (each takes a moment to wind down), then wait."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    # A daemon killed earlier (or its workers) cannot have removed its segments.
    shm_store.remove_dead_sessions()


class PrivateCluster:
    """A head and one node for this driver alone, removed at shutdown."""

    def __init__(self, config: BackendConfig) -> None:
        self.dir = tempfile.mkdtemp(prefix="actorlib-cluster-")
        self.token_file = os.path.join(self.dir, "token")
        cluster_auth.write_token_file(self.token_file, cluster_auth.new_token())
        self.procs: list[subprocess.Popen[bytes]] = []
        try:
            # Head and node start side by side; the node retries until the head listens.
            head, self.address = start_head(self.dir, self.token_file, port=free_port(),
                                            wait=False, driver_pid=os.getpid())
            self.procs.append(head)
            self.procs.append(start_node(
                self.dir, self.token_file, self.address, num_cpus=config.num_cpus,
                num_gpus=config.num_gpus, resources=config.resources,
                object_store_memory=config.object_store_memory, driver_pid=os.getpid(),
                labels=config.labels,
            ))
            wait_for_file(os.path.join(self.dir, "head.json"), head, "head",
                          os.path.join(self.dir, "logs", "head.log"))
        except BaseException:
            self.stop()
            raise

    def log_tail(self, name: str, lines: int = 20) -> str:
        try:
            with open(os.path.join(self.dir, "logs", f"{name}.log")) as f:
                tail = f.read().splitlines()[-lines:]
        except OSError as exc:
            return f"(no {name} log: {exc})"
        return f"last lines of the {name}'s log:\n" + "\n".join(tail)

    def stop(self) -> None:
        stop_processes(self.procs)
        shutil.rmtree(self.dir, ignore_errors=True)


def resolve_address(address: str | None) -> tuple[str, str | None]:
    """``host:port`` and the token file to use, from ``address``, env or the session.

    Raises ``PermissionError`` when the sessions root is not safe to trust (see
    ``checked_root``), rather than connecting where someone else's files point.
    """
    address = address or os.environ.get(ADDRESS_ENV)
    session = latest_session() if address in (None, "", "auto", "local") or (
        address is not None and ":" in address) else None
    info: dict[str, Any] = {}
    if session is not None:
        with contextlib.suppress(FileNotFoundError):
            info = json.loads(read_private(os.path.join(session, "cluster.json")))
    if address in (None, "", "auto", "local"):
        if not info:
            raise ConnectionError(
                "No running actorlib cluster found on this machine (no session in "
                f"{sessions_root()}). Start one with `actorlib start --head`, or pass "
                "address='host:port'."
            )
        return info["address"], info["token_file"]
    assert address is not None
    if ":" not in address:
        raise ValueError(f"a cluster address is 'host:port', got {address!r}")
    if info.get("address") == address:
        return address, info["token_file"]
    return address, None


class ClusterClient(RemoteCoreClient):
    """The driver's client: the actorlib API, forwarded to the head's core."""

    def __init__(self, address: str, token: bytes, namespace: str,
                 tls: cluster_auth.TLSConfig | None = None,
                 private: PrivateCluster | None = None, log_to_driver: bool = True) -> None:
        self.address = address
        self.log_to_driver = log_to_driver
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
        super().__init__(self.conn, welcome.prefix, namespace, HeapStore(), welcome.nodes)
        self.directory = dict(welcome.directory)
        self._io.call(self._welcome_done)
        self.mapper = DriverMapper(lambda: self.directory, token, ctx)
        set_buffer_mapper(self.mapper)

    async def _connect(self, host: str, port: int, token: bytes, ctx: Any) -> Welcome:
        loop = asyncio.get_running_loop()
        reader, writer = await cluster_auth.open_connection(host, port, token, "driver", tls=ctx)
        self._welcome: asyncio.Future[Welcome] = loop.create_future()
        self.conn = wire.Connection(loop, self._on_message, self._on_lost)
        cluster_auth.hand_over(reader, writer, self.conn)
        self.conn.send(DriverHello(os.getpid(), list(sys.path), self.log_to_driver))
        return await asyncio.wait_for(self._welcome, 30)

    def _handler_table(self) -> dict[type, Callable[[Any], None]]:
        """One handler per record of ``messages.ToDriver``, but for ``Output`` (written on
        a thread of its own, what follows it held back until it is written)."""
        return {
            Ready: self._ready, Reply: self._reply, Nodes: self._on_nodes,
            Welcome: self._on_welcome,
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

    def _reply(self, message: Reply) -> None:
        self.on_reply(message.req, message.ok, message.value)

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
        self.mapper.close()
        set_buffer_mapper(map_readonly)
        if self.private is not None:
            self.private.stop()


class ClusterConnector(Connector):
    """Registered as ``cluster``. A driver holds no core here: :meth:`connect` gives it a
    client of the head's (the head runs :class:`~actorlib.backends.cluster.head.HeadBackend`).
    """

    name = "cluster"

    @classmethod
    def connect(cls, config: BackendConfig, namespace: str) -> ClusterClient:
        output = config.options.get("output") or {}
        if output.get("setup_hook") is not None:
            raise NotSupportedError(
                "worker_process_setup_hook is not supported on the cluster backend yet: a "
                "node's worker processes serve every driver of the cluster. Run the setup "
                "at the top of your tasks, or use the process backend."
            )
        private = None
        token_file: str | None
        if config.address is None and not os.environ.get(ADDRESS_ENV):
            private = PrivateCluster(config)
            address, token_file = private.address, private.token_file
        else:
            address, token_file = resolve_address(config.address)
        try:
            token = cluster_auth.resolve_token(token_file=token_file)
            client = ClusterClient(address, token, namespace, cluster_auth.TLSConfig.from_env(),
                                   private, bool(config.options.get("log_to_driver", True)))
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
