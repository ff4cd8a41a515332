"""Frames of the wire protocol, and the blocking end a worker process holds.

The encoding (:func:`encode`, :class:`Decoder`) and :class:`BlockingConnection` live here,
apart from the asyncio end (:mod:`~.wire`): a worker process talks through a blocking
socket and a reader thread, and importing asyncio there (with ssl, which it pulls in)
would cost every worker's boot and memory for nothing. See :mod:`~.wire` for the format.
"""

from __future__ import annotations

import collections
import contextlib
import io
import logging
import os
import pickle
import socket
import struct
import threading
from _thread import get_ident
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple, Protocol

from actorlib.backends.transport import codec
from actorlib.backends.transport.messages import name_of
from actorlib.core import late_interrupts
from actorlib.core.specs import shipping_to
from actorlib.exceptions import SerializationError

log = logging.getLogger("actorlib.wire")

HEADER = struct.Struct("!I")
_HEADER_SIZE = HEADER.size  # a Struct's attribute is read on 3.11's slow path
_FLATTEN = codec.FLATTEN
_READERS = codec.READERS
_TAGS = codec.TAGS
_SEVERAL = codec.Several
MAX_FRAME = 2**32 - 1

def encode_body(body: tuple[Any, ...]) -> bytes:
    """The frame of a body already in its wire form (a flat record, ``codec.batch_body``)."""
    payload = pickle.dumps(body, 5)
    if len(payload) > MAX_FRAME:
        raise frame_too_large(payload)
    return HEADER.pack(len(payload)) + payload


def encode_flats(flats: list[tuple[Any, ...]]) -> bytes:
    """The frames of records already in their wire form: one frame for the lot
    (``codec.batch_body``; one alone as it is), or, if together they pass ``MAX_FRAME``
    (large inline values), a frame each; a record too large alone is dropped with a log
    line (a frame's length field cannot say its size)."""
    try:
        return encode_body(flats[0] if len(flats) == 1 else codec.batch_body(flats))
    except ValueError:
        pass
    frames: list[bytes] = []
    for flat in flats:
        try:
            frames.append(encode_body(flat))
        except ValueError as exc:
            log.error("actorlib: a message was not sent: %s", exc)
    return b"".join(frames)


def encode(message: Any, known_code: set[int] | None = None) -> bytes:
    """A record's frame: flat if it is a per-task kind (``codec.FLATTEN``), else
    ``(tag, *fields)``; ``known_code`` (code ids the peer holds) is updated as code goes.
    Anything that is not a record goes as it is (the receiver rejects it)."""
    flatten = _FLATTEN.get(type(message))
    flat = None if flatten is None else flatten(message, known_code)
    if flat is None:
        return encode_record(message, known_code)
    # The protocol positionally: a keyword costs the C function a slower parse.
    payload = pickle.dumps(flat, 5)
    if len(payload) > MAX_FRAME:
        raise frame_too_large(payload)
    return HEADER.pack(len(payload)) + payload


def encode_record(message: Any, known_code: set[int] | None = None) -> bytes:
    """:func:`encode` of a message without a flat form: ``(tag, *fields)``."""
    tag = _TAGS.get(type(message))
    # (tag,) + message: a third of the cost of (tag, *message)
    body = message if tag is None else (tag,) + message  # noqa: RUF005
    if known_code is None:
        payload = pickle.dumps(body, 5)
    else:
        with shipping_to(known_code):
            payload = pickle.dumps(body, 5)
    if len(payload) > MAX_FRAME:
        raise frame_too_large(payload)
    return HEADER.pack(len(payload)) + payload


def frame_too_large(payload: bytes) -> ValueError:
    """The error for a message too large for one frame (raised by its sender)."""
    return ValueError(f"message of {len(payload)} bytes is too large for one frame")


class Sender(Protocol):
    """Either connection, as code that only sends sees it."""

    def send(self, message: Any, known_code: set[int] | None = None) -> None: ...


class Undecodable(NamedTuple):
    """A received record that did not decode: ``record`` with the parts that failed
    (objects of classes this process cannot load) as :class:`Missing` stand-ins;
    ``error``: why it failed. Never sent: the receiving :class:`Decoder` makes it, so
    that the work the record carried is failed with a clear error rather than lost."""

    record: Any
    error: str

    def failure(self, what: str, where: str) -> SerializationError:
        """The error the work or request this record carried ends with: ``what`` it
        carried, ``where`` (this process) it failed to decode."""
        return SerializationError(
            f"The message carrying {what} could not be decoded in {where} "
            f"(pid {os.getpid()}): {self.error}"
        )


class Missing:
    """Stands in for an object whose class could not be loaded (:class:`Undecodable`)."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Missing:
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __repr__(self) -> str:
        return "<undecodable>"


_OWN_MODULES = frozenset({"builtins", "copyreg", "collections", "_codecs", "pickle"})


class _Salvaging(pickle.Unpickler):
    """Unpickles a frame taking only actorlib's and the builtin classes as they are."""

    def find_class(self, module: str, name: str) -> Any:
        if module in _OWN_MODULES or module == "actorlib" or module.startswith("actorlib."):
            return super().find_class(module, name)
        return Missing


def salvage(frame: bytes | memoryview, exc: BaseException) -> Undecodable | None:
    """The record a frame that failed to decode (``exc``) carried, or None if even its
    record cannot be read."""
    try:
        body = _Salvaging(io.BytesIO(frame)).load()
        if type(body) is tuple and body and type(body[0]) is int:
            reader = _READERS.get(body[0])
            if reader is not None:
                body = reader(body)
    except Exception:
        return None
    if type(body) not in _TAGS:
        return None
    return Undecodable(body, f"{type(exc).__name__}: {exc}")


class Decoder:
    """Splits a byte stream into messages.

    ``salvage``: a frame that does not decode still yields the record it carried, as an
    :class:`Undecodable`, for a receiver that handles it (a worker fails the work); else
    such a frame is dropped with a log line."""

    def __init__(self, salvage: bool = False) -> None:
        self._buffer = bytearray()
        self._salvage = salvage

    def feed(self, data: bytes | memoryview) -> list[Any]:
        buffer = self._buffer
        # Nothing held back (nearly always: a read ends on a frame's end): the frames are
        # read from ``data`` itself, and only a partial last frame is copied to be kept.
        source: bytes | memoryview | bytearray = data
        if buffer:
            buffer += data
            source = buffer
        messages: list[Any] = []
        offset = 0
        size = len(source)
        view = memoryview(source)
        try:
            while size - offset >= _HEADER_SIZE:
                (length,) = HEADER.unpack_from(source, offset)
                start = offset + _HEADER_SIZE
                end = start + length
                if end > size:
                    break
                frame = view[start:end]
                offset = end
                try:
                    body = pickle.loads(frame)
                    # The record it holds (``codec.READERS``); anything else is passed
                    # on as it is, for the receiver to reject (no handler takes it).
                    if type(body) is tuple and body and type(body[0]) is int:
                        reader = _READERS.get(body[0])
                        if reader is not None:
                            body = reader(body)
                            if type(body) is _SEVERAL:  # a frame of several records
                                messages.extend(body)
                                continue
                    messages.append(body)
                except Exception as exc:  # one bad frame must not take the others with it
                    # The record it carried, to end its work with the error; else dropped.
                    salvaged = salvage(frame, exc) if self._salvage else None
                    if salvaged is None:
                        log.exception("actorlib: dropped a message that could not be decoded")
                    else:
                        log.error("actorlib: a %s message could not be decoded: %s",
                                  name_of(salvaged.record), salvaged.error)
                        messages.append(salvaged)
                finally:
                    frame.release()
        finally:
            view.release()
        if source is buffer:
            if offset:
                del buffer[:offset]
        elif offset < size:
            buffer += data[offset:]
        return messages


class BlockingConnection:
    """The worker's end: a reader thread, and writes straight to the socket.

    A worker's sends come from the threads running user code; writing from that thread
    (under ``late_interrupts.GATE``) puts a result on the wire at once, with no hop to an
    I/O thread, and nothing is left in an outbox if the process dies right after.

    Messages are handled in arrival order from one inbox, also when a handler on the
    reader thread must wait for an answer and reads on itself (:meth:`pump`).
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
        # The sends of each thread inside together(), by its ident: a plain dict, empty
        # nearly always, is one cheap look per send. (A threading.local was read with
        # getattr(..., None): for a thread never inside together(), an AttributeError
        # made and dropped per send, ~4,800 instructions.)
        self._held: dict[int, list[bytes]] = {}
        self.closed = False
        self._decoder = Decoder(salvage=True)  # a worker fails work that did not decode
        self._inbox: collections.deque[Any] = collections.deque()  # decoded, not handled
        # One reused buffer: recv() of a fresh 1 MiB bytes costs an mmap, mremap and
        # munmap per message.
        self._buffer = bytearray(1 << 18)
        self._view = memoryview(self._buffer)
        # Who reads (see ``run_inline``): one thread at a time owns the socket's reading;
        # under ``_role`` it may pass to a spare thread while the owner runs user code.
        self._role = threading.Lock()
        self._owner: int | None = None  # the ident of the thread that reads now
        self._inline = 0  # the owner's ident while it runs work inline, else 0
        self._inline_runs = 0  # counts inline runs: the watchdog's sign of progress
        # Something urgent was sent while no inline work held the reading: the next
        # inline work hands reading over as it starts (see ``urgent``).
        self._urgent = False
        self._pumping = 0  # nested reads of a handler waiting for an answer (``pump``)
        self._spares: list[int] = []  # threads waiting to read, by ident
        self._wakes: dict[int, threading.Event] = {}  # how each such thread is woken
        self._lost_reported = False
        # The thread that reads whenever it is idle (``serve_affine``: a sync actor's, so
        # its calls are read and run on it with no hop), 0 if none; ``_affine_idle``
        # while it waits for reading or for work.
        self._affine = 0
        self._affine_idle = False
        self._reader = threading.Thread(target=self._read, name="actorlib-io", daemon=True)
        # (imported here: the queue encodes with this module's functions)
        from actorlib.backends.transport.soon_queue import SoonQueue

        self._soon = SoonQueue(self._write)

    def start(self) -> None:
        self._reader.start()
        self._soon.start()

    def send(self, message: Any, known_code: set[int] | None = None) -> None:
        """Encode and write; callable from any thread."""
        if self.closed:
            return
        data = encode(message, known_code)
        held = self._held
        if held:  # some thread sends together: this one?
            frames = held.get(get_ident())
            if frames is not None:
                frames.append(data)
                return
        self._write(data)

    def send_soon(self, message: Any) -> None:
        """Send ``message``, a submission or a ref's drop, with the next write or within a
        moment (:mod:`~actorlib.backends.transport.soon_queue`); callable from any
        thread. Inside :meth:`together` (a task's outcome and its refs' drops), or for a
        message that may not wait, as :meth:`send`."""
        if self.closed:
            return
        held = self._held
        if held and get_ident() in held:
            self.send(message)
        elif not self._soon.put(message):
            # Alone, ahead of the drops queued: the driver's turn that hands the work on
            # handles nothing else first (they follow with the next write).
            self._write(encode(message), False)

    def flush(self) -> None:
        """Write what :meth:`send_soon` queued, now."""
        soon = self._soon
        if (soon.flats or soon.drops) and not self.closed:
            self._write(b"")

    def flush_submissions(self) -> None:
        """Write the submissions :meth:`send_soon` queued, now (the drops wait on)."""
        if self._soon.flats and not self.closed:
            self._write(b"", False)

    def _write(self, data: bytes, drops: bool = True) -> None:
        me = get_ident()
        held = self._held
        frames = held.get(me)
        if frames is not None:
            # This thread is inside a write already (a ref's finalizer a collection ran
            # there, a log line) or inside ``together``: what it sends goes after what
            # that write holds, by that write, rather than wait for a lock it holds.
            if data:
                frames.append(data)
            return
        frames = []
        held[me] = frames
        try:
            # The gate: a cancel's interrupt never lands between taking other threads'
            # messages off the queue and writing them (``late_interrupts.GATE``). One
            # ``with``: a second one would make its ``__exit__`` (an allocation, where a
            # collection may start) with the gate held.
            with late_interrupts.GATE:
                late_interrupts.settle()  # one raised before the gate lands here, first
                soon = self._soon
                while True:
                    if soon.flats or (drops and soon.drops):  # submissions first, drops after
                        before, after = soon.take(drops)
                        data = before + data + after
                    if frames:  # sent on this thread meanwhile: after what it wrote
                        data += b"".join(frames)
                        frames.clear()
                    if data and not self.closed:
                        try:
                            self._sock.sendall(data)
                        except OSError:  # the driver is gone; the reader sees EOF, ends
                            self.closed = True
                            soon.close()
                    if not frames:
                        break
                    data = b""
        finally:
            del held[me]
        if frames and not self.closed:  # sent on this thread as the gate was let go
            self._write(b"".join(frames))

    @contextlib.contextmanager
    def together(self) -> Iterator[None]:
        """What this thread sends inside the block goes out in one write at its end.

        The driver reads one write in one go and queues every message in it on its core
        loop before it handles any: a task's outcome and the drops of the refs its result
        held then count as one step, so no ``get`` returns in between and sees the
        worker still holding them.
        """
        me = get_ident()
        if me in self._held:  # already together
            yield
            return
        frames: list[bytes] = []
        try:
            self._held[me] = frames  # inside: an interrupt here leaves no entry behind
            yield
        finally:
            self._held.pop(me, None)
            if frames and not self.closed:
                self._write(b"".join(frames))

    def reads_here(self) -> bool:
        """Whether this thread reads: nobody else would read an answer it awaits."""
        return self._owner == get_ident()

    def pump(self) -> bool:
        """On the reading thread, inside a handler: receive and handle the next messages,
        in order (an answer the handler waits for can only come in this way); False once
        the connection is lost."""
        assert self.reads_here()
        self._pumping += 1
        try:
            return self._receive()
        finally:
            self._pumping -= 1

    # -- work run by the reading thread itself ----------------------------------------------

    def may_run_inline(self) -> bool:
        """Whether a handler may run work here and now, on the thread that reads (at the
        top of its loop: not inside a ``pump``, not inside other inline work)."""
        return self._owner == get_ident() and not self._pumping and not self._inline

    def run_inline(self, work: Callable[[], None], lone: bool = False) -> bool:
        """Run ``work`` (user code) on the reading thread, as ``multiprocessing.Pool``'s
        worker runs a task on the thread that read it: no hop to another thread.

        Nothing is read meanwhile, so reading passes to a spare thread when the work must
        wait for an answer (``yield_reading``), when the driver says something urgent
        waits (``urgent``: a cancel, an exit) or when the work runs long enough for a
        watchdog to notice (``watch_inline``); after the work this thread reads on if it
        still owns the socket, else it becomes a spare.

        ``lone`` (a handler's, for every call a sync actor's thread reads): only if
        :meth:`may_run_inline` and the message is a lone one; after a burst (more decoded
        behind it) reading passes to a spare first, which reads and queues the rest
        beside the work, rather than one message after another's work. False, having run
        nothing, if not (checked here, without more frames); True once ``work`` ran.
        """
        me = get_ident()
        if lone and (self._owner != me or self._pumping or self._inline
                     or (self._inbox and self.pass_reading())):
            return False
        with self._role:  # with ``urgent``'s look: one of the two sees the other
            self._inline_runs += 1
            self._inline = me
            # Said before this work began: what it is about may be queued behind it.
            if self._urgent and self._owner == me:
                self._hand_over()
        try:
            work()
        finally:
            with self._role:
                self._inline = 0
        return True

    def yield_reading(self) -> None:
        """This thread is about to wait for an answer: if inline work holds the reading
        (this thread's, or the task's that started this thread), another thread reads from
        now on."""
        if not self._inline:
            return
        with self._role:
            if self._inline_reads():
                self._hand_over()

    def urgent(self) -> None:
        """The driver sent something that must not wait for inline work (a cancel, an
        exit; it signals the worker, see :mod:`actorlib.backends.process.urgent`): reading
        passes to a spare thread now if inline work holds it, else the next inline work
        passes it on as it starts (the message may still be queued behind that work's).
        Called from another thread than the reading one."""
        with self._role:
            if self._inline_reads():
                self._hand_over()
            else:
                self._urgent = True

    def watch_inline(self, seen: int) -> int:
        """Called now and then from another thread (the watchdog): if the same inline work
        still runs as at the last call (``seen``, this call's result), reading passes to
        a spare, so a cancel, an answer or an exit is read while that work runs on."""
        with self._role:
            runs = self._inline_runs
            if runs == seen and self._inline_reads():
                self._hand_over()
            return runs

    def _inline_reads(self) -> bool:
        """Whether inline work holds the reading now; ``_role`` held."""
        return bool(self._inline) and self._owner == self._inline

    def _hand_over(self) -> None:
        """Make a spare thread (a new one if none waits) the reader; ``_role`` held.

        Called on the thread of a task, which a cancel interrupts between any two
        bytecodes: each step leaves a state that works if the next never comes (this
        thread still reads; a spare woken too early waits again; one taken off the list
        and never woken waits, idle, until the connection is lost). The new reader reads
        everything pending, so an urgent message no longer waits.
        """
        self._urgent = False
        if self._spares:
            ident = self._spares.pop()
            self._wakes[ident].set()  # it checks, once we release ``_role``, that it reads
            self._owner = ident
            return
        # The new thread waits for ``_role``; then it reads, or waits as a spare if we
        # were interrupted before we gave reading up.
        threading.Thread(target=self._take_over, name="actorlib-io", daemon=True).start()
        self._owner = None

    def _take_over(self) -> None:
        with self._role:
            if self._owner is None and not self.closed:
                self._owner = get_ident()
        self._serve()

    def _stand_by(self) -> bool:
        """Wait until reading is handed to this thread; False once the connection is lost."""
        me = get_ident()
        with self._role:
            wake = self._wakes.setdefault(me, threading.Event())
        while True:
            with self._role:
                if self.closed:
                    self._wakes.pop(me, None)
                    return False
                if self._owner == me:
                    return True
                wake.clear()
                if me not in self._spares:
                    self._spares.append(me)
            wake.wait()

    # -- a thread that reads while idle (a sync actor's) ---------------------------------------

    def claim_affine(self) -> bool:
        """Make this thread the one that reads whenever it is idle (one per connection);
        False if another thread is already."""
        me = get_ident()
        with self._role:
            if self._affine not in (0, me) or self.closed:
                return False
            self._affine = me
            self._wakes.setdefault(me, threading.Event())
            return True

    def owns_reading(self) -> bool:
        return self._owner == get_ident()

    def serve_affine(self, no_work: Callable[[], bool]) -> bool:
        """On the thread of :meth:`claim_affine`, idle: read while it owns reading (the
        handlers may run work here inline), wait while another thread does, until
        ``no_work()`` is false (work queued for this thread by another thread's handler,
        which also hands reading back here: :meth:`hand_to_affine`). False once the
        connection is lost. (``no_work``: a queue's ``empty``, called with no frame.)"""
        me = get_ident()
        wake = self._wakes[me]
        while no_work():
            if self._owner == me:
                if self._inbox:
                    # Left decoded by the thread that handed reading here: handling it
                    # may queue work for this thread (a generator call, a stop), which
                    # must be looked at before this thread waits in ``recv``.
                    self._handle_inbox(me)
                    continue
                if not self._receive():
                    self._lost()
                    return False
                continue
            with self._role:
                if self.closed:
                    return False
                # Cleared before looking: work queued after the look sets it again.
                wake.clear()
                self._affine_idle = True
                if self._owner == me or not no_work():
                    self._affine_idle = False
                    continue
            wake.wait()
            with self._role:
                self._affine_idle = False
        return True

    def pass_reading(self) -> bool:
        """On the reading thread, at the top of its loop (:meth:`may_run_inline`), about
        to run work that waits for messages without saying so (a stream paused by
        backpressure until the driver reports items consumed): reading passes to a spare
        thread now. False, changing nothing, elsewhere."""
        with self._role:
            if not self.may_run_inline():
                return False
            self._hand_over()
            return True

    def hand_to_affine(self) -> None:
        """Work was queued for the thread of :meth:`claim_affine`: wake it if it waits,
        and if this thread reads at the top of its loop (not inside a ``pump`` or inline
        work), hand it the reading too, so it reads its next work itself. The messages
        this thread decoded and did not handle yet are then handled there, in order."""
        with self._role:
            affine = self._affine
            if not affine or not self._affine_idle:
                return
            if self.may_run_inline():  # this thread reads, at the top of its loop
                self._owner = affine
            self._affine_idle = False
            self._wakes[affine].set()

    def leave_affine(self) -> None:
        """The thread of :meth:`claim_affine` ends: reading passes to another thread if
        it held it."""
        me = get_ident()
        with self._role:
            if self._affine == me:
                self._affine = 0
                self._affine_idle = False
                self._wakes.pop(me, None)
            if self._owner == me and not self.closed:
                self._hand_over()

    # -- reading ------------------------------------------------------------------------------

    def _receive(self) -> bool:
        """Handle what is decoded, receive (waiting for it) and handle that too. True with
        nothing received if reading passed to another thread meanwhile."""
        me = get_ident()
        # What is decoded first (nothing, nearly always: no call then), then whether
        # this thread still reads (``_handle_inbox``'s answer).
        if (self._inbox and not self._handle_inbox(me)) or self._owner != me or self.closed:
            return not self.closed
        try:
            size = self._sock.recv_into(self._buffer)
        except OSError:
            size = 0
        if not size:
            self.closed = True
            return False
        self._inbox.extend(self._decoder.feed(self._view[:size]))
        self._handle_inbox(me)  # (False: reading was handed over; this end still lives)
        return True

    def _handle_inbox(self, me: int) -> bool:
        """Handle decoded messages in order while this thread reads; False if it no longer
        does (inline work handed reading over: the new reader handles the rest)."""
        inbox = self._inbox
        on_message = self._on_message  # read as a method, this attribute is a slow read
        while inbox:
            if self._owner != me:
                return False
            message = inbox.popleft()
            try:
                on_message(message)
            except Exception:
                log.exception("actorlib: error handling message %s", name_of(message))
        return self._owner == me

    def _read(self) -> None:
        with self._role:
            self._owner = get_ident()
        self._serve()

    def _serve(self) -> None:
        """Read while this thread owns reading; wait as a spare while it does not."""
        me = get_ident()
        while True:
            while self._owner == me:
                if not self._receive():
                    self._lost()
                    return
            if not self._stand_by():
                return

    def _lost(self) -> None:
        self._soon.close()
        with self._role:
            self.closed = True
            self._spares = []
            wakes = list(self._wakes.values())
            reported, self._lost_reported = self._lost_reported, True
        for wake in wakes:  # every spare, also one a hand-over left unwoken
            wake.set()
        if not reported:
            self._on_lost()
