"""Object bytes on a blocking socket: requests, sending a stored buffer, receiving into one.

The object servers and their readers speak a small protocol over authenticated sockets:
a request is a length-prefixed pickle; a ``read`` answer is the object's size (or
:data:`MISSING`) followed by the raw bytes; other answers are length-prefixed pickles.

Bytes are moved the cheapest way the kernel offers: a file is sent with ``sendfile`` (the
kernel copies page-cache pages straight into the socket), anything else (an arena extent)
from its read-only mapping with one ``sendall``; the receiver ``recv_into`` s its
destination's mapping directly: an extent of its own arena, whose pages are already there
(:class:`ExtentDestination`), else a new file (:class:`Destination`). A large object
moves over several connections at once, each carrying one slice.
"""

from __future__ import annotations

import mmap
import os
import pickle
import socket
import ssl
import struct
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from actorlib.backends.process.arena import Arena, Extent
from actorlib.backends.process.arena_segments import reserve_range
from actorlib.backends.process.shm_files import full_store_error, unlink
from actorlib.exceptions import ObjectLostError

__all__ = [
    "MISSING",
    "ROLE",
    "STREAMS",
    "STREAM_MIN",
    "Destination",
    "ExtentDestination",
    "Receiver",
    "encode",
    "fill",
    "fill_buffer",
    "read_reply",
    "recv_exactly",
    "recv_into",
    "send_buffer",
    "send_file",
    "slices",
]

ROLE = "objects"
#: Objects at least this large travel over :data:`STREAMS` connections at once.
STREAM_MIN = 64 * 2**20
STREAMS = 2
#: Largest single ``recv_into``/``sendfile`` call (the kernel's own limit is ~2 GiB).
STEP = 256 * 2**20
MISSING = 2**64 - 1  # a ``read`` answer's size: "no such object here"
HEADER = struct.Struct("!I")
SIZE = struct.Struct("!Q")
#: Bytes of a destination reserved at a time, just ahead of receiving them.
RESERVE_STEP = 32 * 2**20


def encode(request: tuple[Any, ...]) -> bytes:
    payload = pickle.dumps(request, protocol=5)
    return HEADER.pack(len(payload)) + payload


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray(size)
    recv_into(sock, memoryview(data))
    return bytes(data)


def recv_into(sock: socket.socket, view: memoryview) -> None:
    """Fill ``view`` from ``sock``; ``EOFError`` if the peer closes first."""
    offset, size = 0, view.nbytes
    while offset < size:
        n = _recv_part(sock, view, offset, min(STEP, size - offset))
        if not n:
            raise EOFError("the object server closed the connection")
        offset += n


def _recv_part(sock: socket.socket, view: memoryview, offset: int, most: int) -> int:
    with view[offset:] as rest:  # released even when an error's traceback lives on:
        return sock.recv_into(rest, most)  # a mapping still viewed cannot be closed


def _recv_slice(sock: socket.socket, view: memoryview, lo: int, hi: int) -> None:
    with view[lo:hi] as part:
        recv_into(sock, part)


def _recv_reserving(sock: socket.socket, view: memoryview, lo: int, hi: int,
                    reserve: Callable[[int, int], None]) -> None:
    """Bytes ``lo:hi`` of ``view`` from ``sock``, ``reserve`` called for each
    :data:`RESERVE_STEP` just before its bytes arrive."""
    for start in range(lo, hi, RESERVE_STEP):
        stop = min(start + RESERVE_STEP, hi)
        reserve(start, stop)
        _recv_slice(sock, view, start, stop)


def _reserve(fd: int, offset: int, length: int, size: int, where: str) -> None:
    """Give a store file's range its pages now; a full store is
    :class:`ObjectStoreFullError` (for an object of ``size`` bytes in ``where``)."""
    try:
        reserve_range(fd, offset, length)
    except OSError as exc:
        full = full_store_error(f"{size} bytes", where, exc)
        if full is not None:
            raise full from exc
        raise


def read_reply(sock: socket.socket) -> Any:
    (length,) = HEADER.unpack(recv_exactly(sock, HEADER.size))
    return pickle.loads(recv_exactly(sock, length))


def slices(size: int) -> list[tuple[int, int]]:
    """How ``size`` bytes are split over parallel streams: page-aligned ``(lo, hi)``."""
    if size < STREAM_MIN:
        return [(0, size)]
    step = -(-size // STREAMS // mmap.PAGESIZE) * mmap.PAGESIZE
    return [(lo, min(lo + step, size)) for lo in range(0, size, step)]


# -- sending ---------------------------------------------------------------------------------


def send_file(sock: socket.socket, fd: int, lo: int, hi: int) -> None:
    """Send bytes ``lo:hi`` of the file ``fd``: ``sendfile`` on a plain socket."""
    if isinstance(sock, ssl.SSLSocket):  # TLS: the bytes must pass through us
        with mmap.mmap(fd, hi, prot=mmap.PROT_READ) as mapped:
            view = memoryview(mapped)
            try:
                sock.sendall(view[lo:hi])
            finally:
                view.release()
        return
    offset = lo
    while offset < hi:
        sent = os.sendfile(sock.fileno(), fd, offset, min(STEP, hi - offset))
        if not sent:
            raise EOFError("the object file ended early")
        offset += sent


def send_buffer(sock: socket.socket, view: memoryview, lo: int, hi: int) -> None:
    """Send bytes ``lo:hi`` of a mapped buffer (an arena extent has no file of its own)."""
    flat = view.cast("B") if view.format != "B" or view.ndim != 1 else view
    sock.sendall(flat[lo:hi])


# -- receiving -------------------------------------------------------------------------------


class Receiver(Protocol):
    """Where a transfer's bytes go: ``size`` bytes, filled slice by slice."""

    size: int

    def receive(self, sock: socket.socket, lo: int, hi: int) -> None: ...

    def finish(self) -> str: ...

    def discard(self) -> None: ...


class ExtentDestination:
    """An extent of the receiving node's own arena, filled by ``recv_into``.

    Where the arena's pages are already there (made when its segment was, and kept by
    extents freed since), the bytes land in memory that exists, which costs what the
    copy out of the socket costs: a new file pays, on top, the kernel allocating and
    zeroing every 4 KiB page (measured on a 2-vCPU VM: ~0.2 s of CPU to receive 1 GiB
    into mapped pages, 0.85-1.1 s into a new ``/dev/shm`` file). Parts without pages
    yet (``cold``: a new segment, or space the arena gave back) are reserved one
    :data:`RESERVE_STEP` at a time just before their bytes arrive, as a file's are: a
    full tmpfs fails with :class:`ObjectStoreFullError`, not SIGBUS. Nobody reads the
    extent before :meth:`finish` returns its location; :meth:`discard` frees it.
    """

    def __init__(self, arena: Arena, extent: Extent, cold: list[tuple[int, int]]) -> None:
        self.arena = arena
        self.extent = extent
        self.size = extent.size
        self.cold = cold
        self.reserved: list[tuple[int, int]] = []  # segment ranges of ``cold`` now paged
        self.fd = (os.open(arena.segment_path(extent.base), os.O_RDWR) if cold else -1)
        try:
            self.view = arena.writable(extent)
        except BaseException:
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1
            raise

    def receive(self, sock: socket.socket, lo: int, hi: int) -> None:
        if self.cold:
            _recv_reserving(sock, self.view, lo, hi, self._reserve)
        else:
            _recv_slice(sock, self.view, lo, hi)

    def _reserve(self, lo: int, hi: int) -> None:
        """Reserve the cold parts of the extent's bytes ``lo:hi``."""
        first, last = self.extent.offset + lo, self.extent.offset + hi
        for offset, length in self.cold:
            begin, end = max(offset, first), min(offset + length, last)
            if begin < end:
                _reserve(self.fd, begin, end - begin, self.size,
                         os.path.dirname(self.extent.path))
                self.reserved.append((begin, end - begin))  # one append: thread-safe

    def finish(self) -> str:
        self._close()
        return self.extent.path

    def discard(self) -> None:
        self._close()
        # The parts reserved have pages now: only the rest is reserved again before use.
        self.arena.cool(self.extent.base, self.cold, paged=self.reserved)
        self.arena.release(self.extent.path)

    def _close(self) -> None:
        self.view.release()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Destination:
    """A new file of ``size`` bytes in a store, mapped writable, filled by ``recv_into``.

    Its blocks are reserved (``posix_fallocate``) one :data:`RESERVE_STEP` at a time just
    before the bytes for them are received: a full tmpfs then fails with
    :class:`ObjectStoreFullError` instead of killing the process with SIGBUS, and with
    several streams one allocates pages while another receives. (``fallocate`` releases
    the GIL; ``mmap.madvise`` does not, and populating a large file through it stalls
    every thread of the process.) :meth:`finish` renames it to ``final`` when given (a
    reader that looks for the final name never maps half a copy); on any error
    :meth:`discard` leaves nothing.
    """

    def __init__(self, path: str, size: int, final: str | None = None) -> None:
        self.path = path
        self.size = size
        self.final = final
        self.fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        self.mapped: mmap.mmap | None = None
        try:
            if size:
                os.ftruncate(self.fd, size)
                self.mapped = mmap.mmap(self.fd, size)
        except BaseException:
            self.discard()
            raise
        self.view = memoryview(self.mapped) if self.mapped is not None else memoryview(b"")

    def reserve(self, lo: int, hi: int) -> None:
        _reserve(self.fd, lo, hi - lo, self.size, os.path.dirname(self.path))

    def receive(self, sock: socket.socket, lo: int, hi: int) -> None:
        """Bytes ``lo:hi`` from ``sock``, straight into the file's pages."""
        _recv_reserving(sock, self.view, lo, hi, self.reserve)

    def close(self) -> None:
        self.view.release()
        if self.mapped is not None:
            self.mapped.close()
            self.mapped = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def finish(self) -> str:
        self.close()
        if self.final is None:
            return self.path
        os.rename(self.path, self.final)
        return self.final

    def discard(self) -> None:
        self.close()
        unlink(self.path)


Connect = Callable[[], socket.socket]
Request = Callable[[int, int], tuple[Any, ...]]


def fill(dest: Receiver, connect: Connect, request: Request,
         release: Callable[[socket.socket], None]) -> None:
    """Fill ``dest`` with its ``size`` bytes read from an object server.

    Each slice (:func:`slices`) goes over a connection of its own from ``connect``: it
    sends ``request(lo, hi)``, reads the announced size, then ``recv_into`` s the
    destination. Connections that finished cleanly go back through ``release``. The
    caller discards ``dest`` on error (a retry may fill the same one again).
    """
    _fill(dest.size, dest.receive, connect, request, release)


def fill_buffer(size: int, connect: Connect, request: Request,
                release: Callable[[socket.socket], None]) -> bytearray:
    """:func:`fill` into this process's memory (a reader on another machine)."""
    data = bytearray(size)
    view = memoryview(data)
    try:
        _fill(size, lambda sock, lo, hi: _recv_slice(sock, view, lo, hi), connect, request,
              release)
    finally:
        view.release()
    return data


def _fill(size: int, receive: Callable[[socket.socket, int, int], None], connect: Connect,
          request: Request, release: Callable[[socket.socket], None]) -> None:
    def one(part: tuple[int, int]) -> None:
        lo, hi = part
        sock = connect()
        try:
            sock.sendall(encode(request(lo, hi)))
            (announced,) = SIZE.unpack(recv_exactly(sock, SIZE.size))
            if announced != size:
                raise ObjectLostError("the object is no longer where it was")
            receive(sock, lo, hi)
        except BaseException:
            sock.close()
            raise
        release(sock)

    _run_all(one, slices(size))


def _run_all(one: Callable[[tuple[int, int]], None], parts: Sequence[tuple[int, int]]) -> None:
    """Run ``one`` for every part, the first here and the others on threads."""
    if len(parts) == 1:
        one(parts[0])
        return
    with ThreadPoolExecutor(len(parts) - 1, thread_name_prefix="actorlib-transfer") as pool:
        futures = [pool.submit(one, part) for part in parts[1:]]
        error: BaseException | None = None
        try:
            one(parts[0])
        except BaseException as exc:
            error = exc
        for future in futures:
            failed = future.exception()
            if failed is not None and error is None:
                error = failed
        if error is not None:
            raise error

