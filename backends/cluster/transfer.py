"""Object bytes on a blocking socket: requests, sending a stored buffer, receiving into one.

The object servers and their readers speak a small protocol over authenticated sockets:
a request is a length-prefixed pickle; a ``read`` answer is the object's size (or
:data:`MISSING`) followed by the raw bytes; other answers are length-prefixed pickles.

Bytes are moved the cheapest way the kernel offers: a file is sent with ``sendfile`` (the
kernel copies page-cache pages straight into the socket), anything else (an arena extent)
from its read-only mapping with one ``sendall``; the receiver ``recv_into`` s its
destination's mapping directly, the pages populated first with
``MADV_POPULATE_WRITE`` (a full tmpfs then fails with an error, not SIGBUS, and the copy
takes no page faults). A large object moves over several connections at once, each
carrying one slice.
"""

from __future__ import annotations

import errno
import mmap
import os
import pickle
import socket
import ssl
import struct
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from actorlib.backends.process.shm_files import reserve, unlink
from actorlib.exceptions import ObjectLostError, ObjectStoreFullError

__all__ = [
    "MISSING",
    "ROLE",
    "STREAMS",
    "STREAM_MIN",
    "encode",
    "fill_buffer",
    "fill_file",
    "populate",
    "read_reply",
    "recv_exactly",
    "recv_into",
    "send_buffer",
    "send_file",
    "slices",
    "writable_file",
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
#: Not in :mod:`mmap` before Python 3.13; Linux 5.14+ (EINVAL before: reserve instead).
MADV_POPULATE_WRITE = getattr(
    mmap, "MADV_POPULATE_WRITE", 23 if sys.platform.startswith("linux") else None
)


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
        n = sock.recv_into(view[offset:], min(STEP, size - offset))
        if not n:
            raise EOFError("the object server closed the connection")
        offset += n


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


def writable_file(path: str, size: int) -> tuple[mmap.mmap | None, bool]:
    """Create ``path`` (exclusively) of ``size`` bytes and map it writable.

    Returns the mapping (None for an empty file) and whether its pages still need
    :func:`populate`. The caller closes the mapping; on error nothing is left.
    """
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        if not size:
            return None, False
        if MADV_POPULATE_WRITE is None:
            _reserve(fd, size, path)  # no populate here: reserve the blocks instead
            return mmap.mmap(fd, size), False
        os.ftruncate(fd, size)
        return mmap.mmap(fd, size), True
    except BaseException:
        unlink(path)
        raise
    finally:
        os.close(fd)


def _reserve(fd: int, size: int, path: str) -> None:
    try:
        reserve(fd, size)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _full(size, path, exc) from exc
        raise


def _full(size: int, path: str, exc: OSError) -> ObjectStoreFullError:
    return ObjectStoreFullError(
        f"No room for a copy of {size} bytes in {os.path.dirname(path)}: {exc.strerror}. "
        "Free objects, lower object_store_memory, or give the machine more shared memory."
    )


def populate(mapped: mmap.mmap, lo: int, hi: int, path: str) -> None:
    """Allocate and map the pages of ``lo:hi`` now: an error if the store is full.

    A write through the mapping into a full tmpfs would kill the process with SIGBUS;
    ``MADV_POPULATE_WRITE`` reports it as ``EFAULT`` instead, and the copy that follows
    takes no page faults. Kernels without it (EINVAL) reserve the file's blocks with
    ``posix_fallocate``.
    """
    start = lo - lo % mmap.PAGESIZE
    try:
        mapped.madvise(MADV_POPULATE_WRITE, start, hi - start)  # type: ignore[arg-type]
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            fd = os.open(path, os.O_RDWR)
            try:
                _reserve(fd, mapped.size(), path)
            finally:
                os.close(fd)
            return
        if exc.errno in (errno.EFAULT, errno.ENOMEM, errno.ENOSPC):
            raise _full(hi - lo, path, exc) from exc
        raise


Connect = Callable[[], socket.socket]
Request = Callable[[int, int], tuple[Any, ...]]


def fill_file(path: str, size: int, connect: Connect, request: Request,
              release: Callable[[socket.socket], None]) -> None:
    """Create ``path`` and fill it with ``size`` bytes read from an object server.

    Each slice (:func:`slices`) goes over a connection of its own from ``connect``: it
    sends ``request(lo, hi)``, reads the announced size, then ``recv_into`` s the file's
    mapping. Connections that finished cleanly go back through ``release``. On any error
    the file is removed.
    """
    mapped, needs_populate = writable_file(path, size)
    if mapped is None:
        return
    view = memoryview(mapped)
    try:

        def before(lo: int, hi: int) -> None:
            if needs_populate:
                populate(mapped, lo, hi, path)

        _fill(view, connect, request, release, before)
    except BaseException:
        unlink(path)
        raise
    finally:
        view.release()
        mapped.close()


def fill_buffer(size: int, connect: Connect, request: Request,
                release: Callable[[socket.socket], None]) -> bytearray:
    """:func:`fill_file` into this process's memory (a reader on another machine)."""
    data = bytearray(size)
    view = memoryview(data)
    try:
        _fill(view, connect, request, release, None)
    finally:
        view.release()
    return data


def _fill(view: memoryview, connect: Connect, request: Request,
          release: Callable[[socket.socket], None],
          before: Callable[[int, int], None] | None) -> None:
    size = view.nbytes

    def one(part: tuple[int, int]) -> None:
        lo, hi = part
        if before is not None:
            before(lo, hi)
        sock = connect()
        try:
            sock.sendall(encode(request(lo, hi)))
            (announced,) = SIZE.unpack(recv_exactly(sock, SIZE.size))
            if announced != size:
                raise ObjectLostError("the object is no longer where it was")
            recv_into(sock, view[lo:hi])
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

