"""Object bytes between cluster nodes: a per-node object server and the readers' side.

Large buffers live in files of the node that made them (its shared-memory store). A
location ``(path, size)`` names the owner by the store session in the file's name. A
worker that unpickles a location of another node asks its own node's object server to
*localize* it: the node streams the file from the owner in chunks into a cached copy in
its own store (one transfer per node, however many of its workers read it), and the
worker maps that copy read-only, zero-copy. A driver asks the owner directly and reads
the bytes into its own memory.

Every connection is authenticated (:mod:`actorlib.backends.transport.auth`) before any
request is unpickled.
"""

from __future__ import annotations

import asyncio
import logging
import mmap
import os
import pickle
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from typing import Any

from actorlib.backends.process.shm_store import PREFIX, SharedMemoryStore
from actorlib.backends.transport import auth as cluster_auth
from actorlib.backends.transport import tokens
from actorlib.core.serialization import Unavailable, map_readonly
from actorlib.exceptions import ObjectLostError

log = logging.getLogger("actorlib.cluster")

CHUNK = 1 << 20
_HEADER = struct.Struct("!I")
_SIZE = struct.Struct("!Q")
ROLE = "objects"

#: session of a store -> (host, port) of its node's object server
Directory = dict[str, tuple[str, int]]


def session_of(path: str) -> str:
    """The store session that created ``path`` (``actorlib-{pid}-{hex}-...``)."""
    name = os.path.basename(path)
    if not name.startswith(PREFIX):
        raise ValueError(f"not an actorlib object file: {path}")
    parts = name[len(PREFIX):].split("-")
    return f"{parts[0]}-{parts[1]}"


def _encode(request: tuple[Any, ...]) -> bytes:
    payload = pickle.dumps(request, protocol=5)
    return _HEADER.pack(len(payload)) + payload


# == the server (in each node daemon, on its loop) ===========================================


class ObjectServer:
    """Serves this node's object files to other nodes and drivers; localizes for workers."""

    def __init__(
        self,
        store: SharedMemoryStore,
        token: bytes,
        directory: Callable[[], Directory],
        tls: cluster_auth.TLSConfig | None = None,
    ) -> None:
        self.store = store
        self.token = token
        self.tls = tls
        self.directory = directory
        self._fetching: dict[str, asyncio.Future[str]] = {}
        self._server: asyncio.AbstractServer | None = None
        self.address: tuple[str, int] = ("", 0)

    async def start(self, host: str) -> tuple[str, int]:
        ctx = self.tls.server_context() if self.tls is not None else None
        self._server = await asyncio.start_server(self._serve, host, 0, ssl=ctx)
        sock = self._server.sockets[0]
        self.address = (host, sock.getsockname()[1])
        return self.address

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await cluster_auth.server_handshake(reader, writer, self.token)
            while True:
                try:
                    (length,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
                except asyncio.IncompleteReadError:
                    return
                request = pickle.loads(await reader.readexactly(length))
                if request[0] == "read":
                    await self._send_file(writer, request[1], request[2])
                elif request[0] == "localize":
                    try:
                        local = await self.localize(request[1], request[2])
                        reply: tuple[Any, ...] = (True, local)
                    except Exception as exc:
                        reply = (False, f"{type(exc).__name__}: {exc}")
                    writer.write(_encode(reply))
                    await writer.drain()
                else:
                    return
        except (tokens.AuthError, ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("actorlib: object server error")
        finally:
            writer.close()

    def _open_local(self, path: str) -> int:
        try:
            return os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return os.open(os.path.join(self.store.spill_dir, os.path.basename(path)), os.O_RDONLY)

    async def _send_file(self, writer: asyncio.StreamWriter, path: str, size: int) -> None:
        try:
            if not self.store.owns(path):
                raise FileNotFoundError(path)
            fd = self._open_local(path)
        except OSError:
            writer.write(_SIZE.pack(2**64 - 1))  # "no such object here"
            await writer.drain()
            return
        try:
            writer.write(_SIZE.pack(size))
            if size:
                with mmap.mmap(fd, size, prot=mmap.PROT_READ) as mapped:
                    view = memoryview(mapped)
                    try:
                        for offset in range(0, size, CHUNK):
                            writer.write(view[offset : offset + CHUNK])
                            await writer.drain()  # at most a chunk or two buffered
                    finally:
                        view.release()
            else:
                await writer.drain()
        finally:
            os.close(fd)

    async def localize(self, path: str, size: int) -> str:
        """A local file holding ``path``'s bytes: the file itself, or a cached copy."""
        if self.store.owns(path):
            return path
        target = self.store.cache_path(path)
        if os.path.exists(target):
            return target
        pending = self._fetching.get(path)
        if pending is None:
            pending = self._fetching[path] = asyncio.ensure_future(self._fetch(path, size))
            pending.add_done_callback(lambda _: self._fetching.pop(path, None))
        return await asyncio.shield(pending)

    async def _fetch(self, path: str, size: int) -> str:
        owner = self.directory().get(session_of(path))
        if owner is None:
            raise ObjectLostError(f"the node holding {os.path.basename(path)} is gone")
        ctx = self.tls.client_context() if self.tls is not None else None
        reader, writer = await cluster_auth.open_connection(
            owner[0], owner[1], self.token, ROLE, tls=ctx
        )
        target = self.store.cache_path(path)
        partial = f"{target}.partial"
        try:
            writer.write(_encode(("read", path, size)))
            await writer.drain()
            (announced,) = _SIZE.unpack(await reader.readexactly(_SIZE.size))
            if announced != size:
                raise ObjectLostError(f"object file {os.path.basename(path)} is gone")
            fd = os.open(partial, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
            try:
                if size:
                    os.posix_fallocate(fd, 0, size)
                    offset = 0
                    while offset < size:
                        chunk = await reader.read(min(CHUNK, size - offset))
                        if not chunk:
                            raise ObjectLostError(
                                f"the node holding {os.path.basename(path)} went away "
                                "during the transfer"
                            )
                        os.pwrite(fd, chunk, offset)
                        offset += len(chunk)
            finally:
                os.close(fd)
            os.rename(partial, target)
            return target
        except BaseException:
            try:
                os.unlink(partial)
            except FileNotFoundError:
                pass
            raise
        finally:
            writer.close()


# == readers (blocking; any thread) ===========================================================


class _Channel:
    """One authenticated blocking connection to an object server, reused under a lock."""

    def __init__(self, address: tuple[str, int], token: bytes, tls: ssl.SSLContext | None):
        self.address = address
        self.token = token
        self.tls = tls
        self.lock = threading.Lock()
        self.sock: socket.socket | None = None

    def request(self, request: tuple[Any, ...], read: Callable[[socket.socket], Any]) -> Any:
        with self.lock:
            for attempt in (0, 1):
                if self.sock is None:
                    self.sock = cluster_auth.connect(
                        self.address[0], self.address[1], self.token, ROLE, tls=self.tls
                    )
                try:
                    self.sock.sendall(_encode(request))
                    return read(self.sock)
                except (ConnectionError, EOFError):
                    self.close()
                    if attempt:
                        raise
            raise AssertionError("unreachable")

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray(size)
    _recv_into(sock, memoryview(data))
    return bytes(data)


def _recv_into(sock: socket.socket, view: memoryview) -> None:
    offset = 0
    while offset < view.nbytes:
        n = sock.recv_into(view[offset:], min(CHUNK, view.nbytes - offset))
        if not n:
            raise EOFError("the object server closed the connection")
        offset += n


def _read_reply(sock: socket.socket) -> Any:
    (length,) = _HEADER.unpack(_recv_exactly(sock, _HEADER.size))
    return pickle.loads(_recv_exactly(sock, length))


class WorkerMapper:
    """A worker's buffer mapper: its node's files directly, others' through localize."""

    def __init__(self, store: SharedMemoryStore, server: tuple[str, int], token: bytes,
                 tls: ssl.SSLContext | None) -> None:
        self.store = store
        self.channel = _Channel(server, token, tls)

    def __call__(self, path: str, size: int) -> memoryview | Unavailable:
        try:
            if self.store.owns(path):
                return self.store.map_location(path, size)
            cached = self.store.cache_path(path)
            try:
                return map_readonly(cached, size)
            except FileNotFoundError:
                pass
            ok, local = self.channel.request(("localize", path, size), _read_reply)
            if not ok:
                raise ObjectLostError(f"could not fetch object {os.path.basename(path)}: {local}")
            return map_readonly(local, size)
        except Exception as exc:
            return unavailable(path, exc)


class DriverMapper:
    """A driver's buffer mapper: bytes streamed from the owning node into memory."""

    def __init__(self, directory: Callable[[], Directory], token: bytes,
                 tls: ssl.SSLContext | None) -> None:
        self.directory = directory
        self.token = token
        self.tls = tls
        self._channels: dict[tuple[str, int], _Channel] = {}
        self._lock = threading.Lock()

    def __call__(self, path: str, size: int) -> memoryview | Unavailable:
        try:
            return self._read(path, size)
        except Exception as exc:
            return unavailable(path, exc)

    def _read(self, path: str, size: int) -> memoryview:
        owner = self.directory().get(session_of(path))
        if owner is None:
            raise ObjectLostError(f"the node holding {os.path.basename(path)} is gone")
        with self._lock:
            channel = self._channels.get(owner)
            if channel is None:
                channel = self._channels[owner] = _Channel(owner, self.token, self.tls)
        data = bytearray(size)

        def read(sock: socket.socket) -> None:
            (announced,) = _SIZE.unpack(_recv_exactly(sock, _SIZE.size))
            if announced != size:
                raise ObjectLostError(f"object file {os.path.basename(path)} is gone")
            _recv_into(sock, memoryview(data))

        channel.request(("read", path, size), read)
        return memoryview(data).toreadonly()

    def close(self) -> None:
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()


def unavailable(path: str, exc: Exception) -> Unavailable:
    if isinstance(exc, ObjectLostError):
        return Unavailable(exc)
    lost = ObjectLostError(f"could not read object file {os.path.basename(path)}: {exc}")
    lost.__cause__ = exc
    return Unavailable(lost)


def lazy_mapper(path: str, size: int) -> Any:
    """Daemons pass locations on without reading them."""
    return None
