"""A node's object server: its store's bytes for other nodes and drivers, copies for its own.

Blocking sockets, a thread per connection: a transfer is a few large system calls
(``sendfile`` out, ``recv_into`` the destination's mapping in), which a thread does at
the socket's speed while the node's event loop goes on. Requests (see
:mod:`.transfer` for the framing):

- ``read path size lo hi``: bytes ``lo:hi`` of one of our objects, or "missing";
- ``localize path size``: a file of ours holding ``path``'s bytes (our own file, or a copy
  of another node's object, fetched once however many readers ask at the same time);
- ``describe``: this node's machine, store and marker (a driver on the same machine then
  maps our files itself), and how many copies of other nodes' objects it holds;
- ``adopt locations``: files a driver on our machine wrote into our store, now ours to
  account for and free;
- ``write sizes``: a driver elsewhere sends a ``put``'s buffers, received straight into
  new files of our store.
"""

from __future__ import annotations

import functools
import logging
import os
import pickle
import secrets
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from actorlib.backends.cluster.node_store import NodeStore
from actorlib.backends.cluster.objects import Directory, Pool, host_id, session_of
from actorlib.backends.cluster.transfer import (
    HEADER,
    MISSING,
    ROLE,
    SIZE,
    Destination,
    Receiver,
    encode,
    fill,
    recv_exactly,
    send_buffer,
    send_file,
)
from actorlib.backends.process.shm_files import PREFIX, next_number, unlink
from actorlib.backends.transport import auth as cluster_auth
from actorlib.backends.transport import tokens
from actorlib.core.serialization import Serialized
from actorlib.exceptions import ObjectLostError, ObjectStoreFullError

log = logging.getLogger("actorlib.cluster")


class ObjectServer:
    """Serves this node's objects to the cluster, and copies other nodes' for its readers."""

    def __init__(
        self, store: NodeStore, token: bytes, directory: Callable[[], Directory],
        tls: cluster_auth.TLSConfig | None = None,
    ) -> None:
        self.store = store
        self.token = token
        self.tls = tls
        self.directory = directory
        self.pool = Pool(token, tls.client_context() if tls is not None else None)
        self.address: tuple[str, int] = ("", 0)
        self.marker = os.path.join(store.directory, f"{PREFIX}{store.session}-host")
        self._nonce = secrets.token_hex(16)
        self._fetching: dict[str, Future[str]] = {}
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._listener: socket.socket | None = None
        self._handlers: dict[str, Callable[..., None]] = {
            "read": self._read, "localize": self._localize, "describe": self._describe,
            "adopt": self._adopt, "write": self._write,
        }

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, host: str) -> tuple[str, int]:
        fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            os.write(fd, self._nonce.encode())
        finally:
            os.close(fd)
        self._listener = socket.create_server((host, 0), backlog=64)
        self.address = (host, self._listener.getsockname()[1])
        self._spawn(self._accept_all, self._listener)
        return self.address

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
            except OSError:
                pass
            listener.close()
        with self._lock:
            conns = list(self._conns)
            threads = list(self._threads)
        for sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in threads:
            thread.join(timeout=5)
        self.pool.close()
        unlink(self.marker)

    def _spawn(self, target: Callable[[socket.socket], None], sock: socket.socket) -> None:
        def run() -> None:
            try:
                target(sock)
            finally:
                with self._lock:
                    self._threads.discard(thread)

        thread = threading.Thread(target=run, name="actorlib-objects", daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def _accept_all(self, listener: socket.socket) -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return  # stopped
            with self._lock:
                self._conns.add(sock)
            self._spawn(self._serve, sock)

    def _serve(self, sock: socket.socket) -> None:
        conn = sock
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:
                sock.settimeout(cluster_auth.DEFAULT_TIMEOUT)
                conn = self.tls.server_context().wrap_socket(sock, server_side=True)
                conn.settimeout(None)
            if cluster_auth.accept_handshake(conn, self.token) != ROLE:
                return
            while True:
                try:
                    (length,) = HEADER.unpack(recv_exactly(conn, HEADER.size))
                except EOFError:
                    return
                request = pickle.loads(recv_exactly(conn, length))
                handler = self._handlers.get(request[0])
                if handler is None:
                    return
                handler(conn, *request[1:])
        except (tokens.AuthError, OSError, EOFError):
            pass
        except Exception:
            log.exception("actorlib: object server error")
        finally:
            with self._lock:
                self._conns.discard(sock)
            conn.close()

    # -- requests ----------------------------------------------------------------------

    def _read(self, conn: socket.socket, path: str, size: int, lo: int, hi: int) -> None:
        """Bytes ``lo:hi`` of our object ``path``, by ``sendfile`` where it is a file."""
        if not self._ours(path) or not 0 <= lo <= hi <= size:
            conn.sendall(SIZE.pack(MISSING))
            return
        for candidate in (path, os.path.join(self.store.spill_dir, os.path.basename(path))):
            try:
                fd = os.open(candidate, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                conn.sendall(SIZE.pack(size))
                send_file(conn, fd, lo, hi)
            finally:
                os.close(fd)
            return
        try:  # no file of its own (an extent of a shared segment): from its mapping
            view = self.store.map_location(path, size)
        except OSError:
            conn.sendall(SIZE.pack(MISSING))
            return
        try:
            conn.sendall(SIZE.pack(size))
            send_buffer(conn, view, lo, hi)
        finally:
            view.release()

    def _ours(self, path: str) -> bool:
        """Whether ``path`` names an object of our store (never any other file)."""
        return os.path.dirname(path) == self.store.directory and self.store.owns(path)

    def _reply(self, conn: socket.socket, work: Callable[[], Any]) -> None:
        try:
            reply: tuple[bool, Any] = (True, work())
        except Exception as exc:
            reply = (False, f"{type(exc).__name__}: {exc}")
        conn.sendall(encode(reply))

    def _localize(self, conn: socket.socket, path: str, size: int) -> None:
        self._reply(conn, lambda: self.localize(path, size))

    def _describe(self, conn: socket.socket) -> None:
        self._reply(conn, lambda: {
            "host": host_id(), "marker": self.marker, "nonce": self._nonce,
            "store": self.store.config(), "copies": self.store.copies(),
        })

    def _adopt(self, conn: socket.socket, locations: list[tuple[str, int]]) -> None:
        self._reply(conn, lambda: self._take(locations))

    def _take(self, locations: list[tuple[str, int]]) -> list[tuple[str, int]]:
        """Account for files of our store written by someone else (a driver)."""
        for path, size in locations:
            if not self._ours(path) or os.path.getsize(path) != size:
                raise ValueError(f"{path} is not an object file of this node")
        self.store.adopt(Serialized(b"", [None] * len(locations), (), False, list(locations)))
        return locations

    def _write(self, conn: socket.socket, sizes: list[int]) -> None:
        """A ``put`` from a driver elsewhere: its buffers, received into new files."""
        made: list[Destination] = []
        try:
            try:
                if sum(sizes) > self.store.capacity:
                    raise ObjectStoreFullError(
                        f"An object of {sum(sizes)} bytes does not fit in the object store of "
                        f"node {self.address[0]}:{self.address[1]}, whose capacity is "
                        f"{self.store.capacity} bytes. Raise object_store_memory."
                    )
                for size in sizes:
                    name = f"{PREFIX}{self.store.session}-{os.getpid()}-{next_number()}"
                    made.append(Destination(os.path.join(self.store.directory, name), size))
            except Exception as exc:
                conn.sendall(encode((False, f"{type(exc).__name__}: {exc}")))
                raise
            conn.sendall(encode((True, None)))  # go ahead
            for dest in made:
                dest.receive(conn, 0, dest.size)
        except BaseException:
            for dest in made:
                dest.discard()
            raise
        for dest in made:
            dest.close()
        self._reply(conn, lambda: self._take([(dest.path, dest.size) for dest in made]))

    # -- copies of other nodes' objects ------------------------------------------------

    def localize(self, path: str, size: int) -> str:
        """A local file holding ``path``'s bytes: the file itself, or a cached copy."""
        if self.store.owns(path):
            return path
        cached = self.store.cached(path)
        if cached is not None:
            return cached
        with self._lock:
            pending = self._fetching.get(path)
            if pending is None:  # a fetch may have finished since we looked: not twice
                cached = self.store.cached(path)
                if cached is not None:
                    return cached
            mine = pending is None
            if pending is None:
                pending = self._fetching[path] = Future()
        if not mine:
            return pending.result()
        try:
            target = self._fetch(path, size)
        except BaseException as exc:
            pending.set_exception(exc)
            raise
        else:
            pending.set_result(target)
            return target
        finally:
            with self._lock:
                self._fetching.pop(path, None)

    def _fetch(self, path: str, size: int) -> str:
        owner = self.directory().get(session_of(path))
        if owner is None:
            raise ObjectLostError(f"the node holding {os.path.basename(path)} is gone")
        self.store.reserve_copy(path, size)
        try:
            dest = self.store.copy_destination(path, size)
            try:
                self._fill(dest, owner, path)
                local = dest.finish()
            except BaseException:
                dest.discard()  # never a partial copy
                raise
        except BaseException:
            self.store.cancel_copy(path, size)
            raise
        if not self.store.add_copy(path, size, local):
            raise ObjectLostError(f"{os.path.basename(path)} was freed during its transfer")
        return local

    def _fill(self, dest: Receiver, owner: tuple[str, int], path: str) -> None:
        """Receive ``path``'s bytes into ``dest``: over kept connections, and if one of
        those had gone stale, once more over new ones (filling ``dest`` again)."""
        for fresh in (False, True):
            try:
                fill(dest, functools.partial(self.pool.connect, owner, fresh),
                     lambda lo, hi: ("read", path, dest.size, lo, hi),
                     lambda sock: self.pool.release(owner, sock))
                return
            except (ConnectionError, EOFError):
                if fresh:
                    raise ObjectLostError(
                        f"the node holding {os.path.basename(path)} went away during "
                        "the transfer"
                    ) from None
