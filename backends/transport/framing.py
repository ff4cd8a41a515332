"""Frames of the wire protocol, and the blocking end a worker process holds.

The encoding (:func:`encode`, :class:`Decoder`) and :class:`BlockingConnection` live here,
apart from the asyncio end (:mod:`~.wire`): a worker process talks through a blocking
socket and a reader thread, and importing asyncio there (with ssl, which it pulls in)
would cost every worker's boot and memory for nothing. See :mod:`~.wire` for the format.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import pickle
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from actorlib.backends.transport import codec
from actorlib.backends.transport.messages import name_of
from actorlib.core.specs import shipping_to

log = logging.getLogger("actorlib.wire")

HEADER = struct.Struct("!I")
_FLATTEN = codec.FLATTEN
_READERS = codec.READERS
_TAGS = codec.TAGS
MAX_FRAME = 2**32 - 1

def encode(message: Any, known_code: set[int] | None = None) -> bytes:
    """A record's frame: flat if it is a per-task kind (``codec.FLATTEN``), else
    ``(tag, *fields)``; ``known_code`` (code ids the peer holds) is updated as code goes.
    Anything that is not a record goes as it is (the receiver rejects it)."""
    flatten = _FLATTEN.get(type(message))
    flat = None if flatten is None else flatten(message, known_code)
    if flat is not None:
        payload = pickle.dumps(flat, protocol=5)
    else:
        tag = _TAGS.get(type(message))
        # (tag,) + message: a third of the cost of (tag, *message)
        body = message if tag is None else (tag,) + message  # noqa: RUF005
        if known_code is None:
            payload = pickle.dumps(body, protocol=5)
        else:
            with shipping_to(known_code):
                payload = pickle.dumps(body, protocol=5)
    if len(payload) > MAX_FRAME:
        raise ValueError(f"message of {len(payload)} bytes is too large for one frame")
    return HEADER.pack(len(payload)) + payload


class Sender(Protocol):
    """Either connection, as code that only sends sees it."""

    def send(self, message: Any, known_code: set[int] | None = None) -> None: ...


class Decoder:
    """Splits a byte stream into messages."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes | memoryview) -> list[Any]:
        buffer = self._buffer
        buffer += data
        messages = []
        offset = 0
        size = len(buffer)
        view = memoryview(buffer)
        try:
            while size - offset >= HEADER.size:
                (length,) = HEADER.unpack_from(buffer, offset)
                end = offset + HEADER.size + length
                if end > size:
                    break
                frame = view[offset + HEADER.size : end]
                offset = end
                try:
                    body = pickle.loads(frame)
                    # The record it holds (``codec.READERS``); anything else is passed
                    # on as it is, for the receiver to reject (no handler takes it).
                    if type(body) is tuple and body and type(body[0]) is int:
                        reader = _READERS.get(body[0])
                        if reader is not None:
                            body = reader(body)
                    messages.append(body)
                except Exception:  # one bad frame must not take the others with it
                    log.exception("actorlib: dropped a message that could not be decoded")
                finally:
                    frame.release()
        finally:
            view.release()
        if offset:
            del buffer[:offset]
        return messages


class BlockingConnection:
    """The worker's end: one reader at a time, and writes straight to the socket.

    A worker's sends come from the threads running user code; writing from that thread
    (under a lock) puts a result on the wire at once, with no hop to an I/O thread, and
    nothing is left in an outbox if the process dies right after.

    Reading is leader/follower: whichever thread holds the read lock receives, decodes
    and dispatches, in arrival order (one inbox). The I/O thread reads until a sync
    actor's thread takes the lead (:meth:`take_lead`); that thread then reads its own
    next call, with no hop through another thread, and hands reading to whoever the
    process names (:class:`~actorlib.backends.process.lead.ActorLead`) while it runs one.
    A thread that reads and must wait for an answer reads it itself (:meth:`pump`).
    """

    def __init__(
        self,
        sock: socket.socket,
        on_message: Callable[[Any], None],
        on_lost: Callable[[], None],
    ) -> None:
        sock.setblocking(True)
        self._sock = sock
        self._on_message = on_message
        self._on_lost = on_lost
        self._lock = threading.Lock()
        self._held = threading.local()  # .frames: this thread's sends inside together()
        self.closed = False
        self._lost_told = False
        self._read_lock = threading.Lock()
        self._reader_ident: int | None = None  # the thread holding _read_lock
        self._decoder = Decoder()
        self._inbox: collections.deque[Any] = collections.deque()
        # One reused buffer: recv() of a fresh 1 MiB bytes costs an mmap, mremap and
        # munmap per message.
        self._buffer = bytearray(1 << 18)
        self._view = memoryview(self._buffer)
        self._led = False  # a sync actor's thread reads (the I/O thread has stopped)
        self._missed = False  # a non-blocking read found another thread reading
        self._reader = threading.Thread(target=self._read, name="actorlib-io", daemon=True)

    def fileno(self) -> int:
        return self._sock.fileno()

    def start(self) -> None:
        self._reader.start()

    def send(self, message: Any, known_code: set[int] | None = None) -> None:
        """Encode and write; callable from any thread."""
        if self.closed:
            return
        data = encode(message, known_code)
        frames = getattr(self._held, "frames", None)
        if frames is not None:
            frames.append(data)
            return
        self._write(data)

    def _write(self, data: bytes) -> None:
        with self._lock:
            try:
                self._sock.sendall(data)
            except OSError:  # the driver is gone; the reader sees EOF and ends the worker
                self.closed = True

    @contextlib.contextmanager
    def together(self) -> Iterator[None]:
        """What this thread sends inside the block goes out in one write at its end.

        The driver reads one write in one go and queues every message in it on its core
        loop before it handles any: a task's outcome and the drops of the refs its result
        held then count as one step, so no ``get`` returns in between and sees the
        worker still holding them.
        """
        if getattr(self._held, "frames", None) is not None:  # already together
            yield
            return
        frames: list[bytes] = []
        self._held.frames = frames
        try:
            yield
        finally:
            self._held.frames = None
            if frames and not self.closed:
                self._write(b"".join(frames))

    # -- reading -------------------------------------------------------------------------

    def reads_here(self) -> bool:
        """Whether this thread is the one reading (so nobody else would read an answer)."""
        return self._reader_ident == threading.get_ident()

    def read(self, *, block: bool, unless: Callable[[], bool] | None = None) -> bool:
        """Receive what has come (waiting for it if ``block``) and dispatch it; False once
        the connection is lost.

        Without ``block``, it gives up at once if another thread is reading (that thread
        will dispatch what came). ``unless()``, checked under the read lock, skips the
        wait: the caller has work already (dispatched by a reader before it).
        """
        if not self._read_lock.acquire(block):
            # The reader may be about to let go without receiving this: it reads again.
            self._missed = True
            return not self.closed
        self._reader_ident = threading.get_ident()
        try:
            if unless is not None and unless():
                return True
            return self._receive(block)
        finally:
            self._reader_ident = None
            self._read_lock.release()
            if self._missed:
                self._missed = False
                self.read(block=False)

    def pump(self) -> bool:
        """On the reading thread, inside a dispatch: wait for and dispatch the next
        messages (an answer this thread waits for can only come this way)."""
        assert self.reads_here()
        return self._receive(True)

    def _receive(self, block: bool) -> bool:
        """Read lock held: dispatch the inbox, then receive; False once lost."""
        self._dispatch()
        if self.closed:
            return False
        sock = self._sock
        flags = 0 if block else socket.MSG_DONTWAIT
        got = False
        while True:
            try:
                size = sock.recv_into(self._buffer, 0, flags)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                size = 0
            if not size:
                self._lost()
                return False
            self._inbox.extend(self._decoder.feed(self._view[:size]))
            got = True
            if size < len(self._buffer):  # all there was (else more may wait: read on)
                break
            flags = socket.MSG_DONTWAIT
        if got:
            self._dispatch()
        return True

    def _dispatch(self) -> None:
        inbox = self._inbox
        while inbox:
            message = inbox.popleft()
            try:
                self._on_message(message)
            except Exception:
                log.exception("actorlib: error handling message %s", name_of(message))

    def _lost(self) -> None:
        self.closed = True
        if not self._lost_told:
            self._lost_told = True
            self._on_lost()

    def take_lead(self) -> bool:
        """Called on the I/O thread while it dispatches (a sync actor starting): it stops
        reading after this batch, and the caller's thread reads from now on. False if
        reading is not the I/O thread's to give (led already, or not on that thread)."""
        if self._led or threading.current_thread() is not self._reader:
            return False
        self._led = True
        return True

    def give_back_lead(self) -> None:
        """The leading thread stops reading: an I/O thread reads again."""
        if not self._led or self.closed:
            return
        self._led = False
        self._reader = threading.Thread(target=self._read, name="actorlib-io", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._led:
            if not self.read(block=True):
                return
