"""Object bytes between cluster nodes and drivers: the readers' side.

Large buffers live in the shared-memory store of a node (the one whose worker made them,
or the one a driver ``put`` them into). A location ``(path, size)`` names its node by the
store session in the file's name; the head's directory maps sessions to the nodes'
object servers (:mod:`.object_server`).

- A worker reads its own node's objects in place; another node's through its node,
  which copies the object into its store once (:meth:`ObjectServer.localize`) for
  every worker there, and maps the copy read-only, zero-copy.
- A driver on the same machine as a node (same host name, same boot, and the node's
  store directory is the one the driver sees) maps that node's objects directly, and
  has that node fetch other nodes' objects for it: zero-copy, like a worker. A driver
  elsewhere reads the bytes into its own memory, over parallel streams for large ones.

Every connection is authenticated (:mod:`actorlib.backends.transport.auth`) before any
request is unpickled.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any

from actorlib.backends.cluster.transfer import ROLE, encode, fill_buffer, read_reply
from actorlib.backends.process.shm_files import PREFIX
from actorlib.backends.process.shm_store import SharedMemoryStore
from actorlib.backends.transport import auth as cluster_auth
from actorlib.core.serialization import Unavailable, map_readonly
from actorlib.exceptions import ObjectLostError

#: session of a store -> (host, port) of its node's object server
Directory = dict[str, tuple[str, int]]


def session_of(path: str) -> str:
    """The store session that created ``path`` (``actorlib-{pid}-{hex}-...``)."""
    name = os.path.basename(path)
    if not name.startswith(PREFIX):
        raise ValueError(f"not an actorlib object file: {path}")
    parts = name[len(PREFIX):].split("-")
    return f"{parts[0]}-{parts[1]}"


def host_id() -> str:
    """This machine as seen by a process: host name and boot (so a reboot or a clone differs)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
    except OSError:
        boot = ""
    return f"{socket.gethostname()}/{boot}"


class Pool:
    """Authenticated blocking connections to object servers, kept for reuse. Thread-safe.

    A connection carries one request at a time: :meth:`connect` takes one (idle or new),
    :meth:`release` gives it back after a request completed cleanly.
    """

    def __init__(self, token: bytes, tls: ssl.SSLContext | None) -> None:
        self.token = token
        self.tls = tls
        self._idle: dict[tuple[str, int], list[socket.socket]] = {}
        self._lock = threading.Lock()
        self.closed = False

    def connect(self, address: tuple[str, int], fresh: bool = False) -> socket.socket:
        if not fresh:
            with self._lock:
                idle = self._idle.get(address)
                if idle:
                    return idle.pop()
        return cluster_auth.connect(address[0], address[1], self.token, ROLE, tls=self.tls)

    def release(self, address: tuple[str, int], sock: socket.socket) -> None:
        with self._lock:
            if not self.closed:
                self._idle.setdefault(address, []).append(sock)
                return
        sock.close()

    def request(self, address: tuple[str, int], request: tuple[Any, ...],
                read: Callable[[socket.socket], Any] = read_reply) -> Any:
        """Send ``request`` and return ``read(sock)``; a stale kept connection is replaced."""
        for fresh in (False, True):
            sock = self.connect(address, fresh)
            try:
                sock.sendall(encode(request))
                result = read(sock)
            except (ConnectionError, EOFError):
                sock.close()
                if fresh:
                    raise
                continue
            except BaseException:
                sock.close()
                raise
            self.release(address, sock)
            return result
        raise AssertionError("unreachable")

    def fetch(self, address: tuple[str, int], path: str, size: int) -> bytearray:
        """``path``'s bytes from the node at ``address``, into this process's memory."""

        def read(lo: int, hi: int) -> tuple[Any, ...]:
            return ("read", path, size, lo, hi)

        def attempt(fresh: bool) -> bytearray:
            return fill_buffer(size, lambda: self.connect(address, fresh), read,
                               lambda sock: self.release(address, sock))

        try:
            return attempt(False)
        except (ConnectionError, EOFError):  # a kept connection the server had closed
            return attempt(True)

    def close(self) -> None:
        with self._lock:
            self.closed = True
            idle, self._idle = self._idle, {}
        for socks in idle.values():
            for sock in socks:
                sock.close()


def _checked(reply: tuple[bool, Any], path: str) -> Any:
    ok, value = reply
    if not ok:
        raise ObjectLostError(f"could not fetch object {os.path.basename(path)}: {value}")
    return value


Mapper = Callable[[str, int], memoryview]


def map_copy(pool: Pool, server: tuple[str, int], path: str, size: int,
             mapper: Mapper) -> tuple[str, memoryview]:
    """Map the node at ``server``'s copy of ``path``, asking it to make one if needed.

    The copy's location (an extent of that node's arena, or a file of its store) is
    mapped with ``mapper``, a reader of that node's store. The node may drop a copy to
    make room between its answer and our mapping: ask again.
    """
    for attempt in (0, 1):
        local = _checked(pool.request(server, ("localize", path, size)), path)
        try:
            return local, mapper(local, size)
        except FileNotFoundError:
            if attempt:
                raise
    raise AssertionError("unreachable")


#: Copies a worker remembers where they are (another read then asks its node nothing).
REMEMBERED = 256


class WorkerMapper:
    """A worker's buffer mapper: its node's files directly, others' through localize."""

    def __init__(self, store: SharedMemoryStore, server: tuple[str, int], token: bytes,
                 tls: ssl.SSLContext | None) -> None:
        self.store = store
        self.server = server
        self.pool = Pool(token, tls)
        #: another node's path -> where our node's copy of it was; checked on every use
        #: (an extent freed or reused since fails its generation check, a file is gone)
        self._copies: dict[str, str] = {}
        self._lock = threading.Lock()  # threaded actors read from several threads

    def __call__(self, path: str, size: int) -> memoryview | Unavailable:
        try:
            if self.store.owns(path):
                return self.store.map_location(path, size)
            try:
                return map_readonly(self.store.cache_path(path), size)
            except FileNotFoundError:
                pass
            with self._lock:
                local = self._copies.get(path)
            if local is not None:
                try:
                    return self.store.map_location(local, size)
                except FileNotFoundError:
                    with self._lock:
                        self._copies.pop(path, None)
            local, view = map_copy(self.pool, self.server, path, size, self.store.map_location)
            with self._lock:
                if len(self._copies) >= REMEMBERED:
                    self._copies.pop(next(iter(self._copies)))
                self._copies[path] = local
            return view
        except Exception as exc:
            return unavailable(path, exc)


class NodeLinks:
    """What a driver knows of the nodes' object servers, and which share its machine."""

    def __init__(self, directory: Callable[[], Directory], token: bytes,
                 tls: ssl.SSLContext | None) -> None:
        self.directory = directory
        self.pool = Pool(token, tls)
        self._lock = threading.Lock()
        self._stores: dict[str, SharedMemoryStore | None] = {}  # session -> mapped here?

    def address(self, session: str) -> tuple[str, int]:
        address = self.directory().get(session)
        if address is None:
            raise ObjectLostError(f"the node of object store {session} is gone")
        return address

    def local_store(self, session: str) -> SharedMemoryStore | None:
        """The store of node ``session`` if it is on this machine, attached for reading."""
        with self._lock:
            if session in self._stores:
                return self._stores[session]
        info = _checked(self.pool.request(self.address(session), ("describe",)), session)
        store = SharedMemoryStore.for_worker(info["store"]) if _is_here(info) else None
        with self._lock:
            self._stores[session] = store
        return store

    def local_node(self) -> str | None:
        """The session of a node on this machine (the first found), or None."""
        sessions = sorted(self.directory())
        for session in sessions:
            try:
                if self.local_store(session) is not None:
                    return session
            except (OSError, EOFError, ObjectLostError, cluster_auth.AuthError):
                continue  # going away: not the one
        return None

    def close(self) -> None:
        self.pool.close()
        with self._lock:
            stores = [s for s in self._stores.values() if s is not None]
            self._stores.clear()
        for store in stores:
            close = getattr(store, "close_reader", None)  # stores that map segments once
            if close is not None:
                close()


def _is_here(info: dict[str, Any]) -> bool:
    """Whether a node's store is the one this process sees: same machine, same files.

    The host name and boot id rule out other machines; the marker file (a nonce the node
    wrote into its store directory) rules out a container with its own ``/dev/shm``.
    """
    if info.get("host") != host_id():
        return False
    try:
        with open(info["marker"]) as f:
            return f.read() == info["nonce"]
    except OSError:
        return False


class DriverMapper:
    """A driver's buffer mapper: zero-copy through a node on this machine, else a copy."""

    def __init__(self, links: NodeLinks) -> None:
        self.links = links

    def __call__(self, path: str, size: int) -> memoryview | Unavailable:
        try:
            return self._read(path, size)
        except Exception as exc:
            return unavailable(path, exc)

    def _read(self, path: str, size: int) -> memoryview:
        links = self.links
        session = session_of(path)
        store = links.local_store(session)
        if store is not None:
            return store.map_location(path, size)
        here = links.local_node()
        if here is not None:  # our machine's node fetches it (once for every reader there)
            node = links.local_store(here)
            assert node is not None  # local_node() found it
            return map_copy(links.pool, links.address(here), path, size, node.map_location)[1]
        return memoryview(links.pool.fetch(links.address(session), path, size)).toreadonly()


def unavailable(path: str, exc: Exception) -> Unavailable:
    if isinstance(exc, ObjectLostError):
        return Unavailable(exc)
    lost = ObjectLostError(f"could not read object file {os.path.basename(path)}: {exc}")
    lost.__cause__ = exc
    return Unavailable(lost)


def lazy_mapper(path: str, size: int) -> Any:
    """Daemons pass locations on without reading them."""
    return None
