"""The wire protocol between the driver and worker processes (and, later, cluster nodes).

Frames are a 4-byte big-endian length followed by a pickled message: one of the records in
:mod:`~.messages`, as :mod:`~.codec` lays it out (a tuple of a small int tag and the
record's fields, flattened further for the per-task kinds). Small values travel inline;
large buffers travel as shared-memory locations (see ``Serialized.__reduce__``), so a
frame stays small whatever the data. Messages hold only actorlib's own records and
already-pickled user data (user classes inside specs pickle themselves by value, see
``ExceptionTypes``), so the C pickler encodes them. Code travels once per peer
(``shipping_to``).

Writes are batched: ``send`` may be called from any thread; it queues the message and the
connection's loop writes everything queued in one go, once per loop turn (a send from the
loop's own thread schedules that write with ``call_soon``: no wake-up fd write; one that
finds ``FLUSH_AT`` records queued writes them at once, so the peer starts on them). The
per-task records the loop's thread sends in one turn (tasks and calls handed to a worker,
results a peer waits for) go as one frame (``codec.BATCH``), pickled once.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from _thread import get_ident
from collections.abc import Callable
from typing import Any

from actorlib.backends.transport.codec import FLATTEN

# The frames and the worker's blocking end, here under their old names too.
from actorlib.backends.transport.framing import (
    HEADER,
    MAX_FRAME,
    BlockingConnection,
    Decoder,
    Sender,
    encode,
    encode_flats,
    encode_record,
)
from actorlib.backends.transport.messages import name_of

__all__ = [
    "HEADER", "MAX_FRAME", "BlockingConnection", "Connection", "Decoder", "Sender", "encode",
]

log = logging.getLogger("actorlib.wire")

#: Records queued on the loop's own thread that are written at once rather than at the
#: end of the turn: a turn that hands a worker a thousand calls would otherwise keep it
#: idle until the last is encoded, where it can run the first ones meanwhile. Also the
#: most records in one frame (``codec.BATCH``): a bound on the frame (each may hold an
#: inline value) and on how long its first record waits for the rest to be read.
FLUSH_AT = 64


class Connection(asyncio.Protocol):
    """One end of a framed, duplex stream (a Unix socket) on an asyncio loop."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        on_message: Callable[[Any], None],
        on_lost: Callable[[], None] | None = None,
        salvage: bool = False,
        on_messages: Callable[[list[Any]], None] | None = None,
    ) -> None:
        """``salvage``: hand on a frame that does not decode as a ``framing.Undecodable``
        (for a receiver that ends the work it carried), rather than dropping it.
        ``on_messages``: given, it takes what each read brought, in order, instead of
        ``on_message`` one message at a time (a receiver that hands them on in one go)."""
        self._loop = loop
        self._on_message = on_message
        self._on_messages = on_messages
        self._on_lost = on_lost
        self._decoder = Decoder(salvage)
        # Frames, and the open list of flat records at the end (see ``send``).
        self._outbox: collections.deque[bytes | list[tuple[Any, ...]]] = collections.deque()
        self._queued = 0  # records the loop's thread queued since the last write
        self._flush_pending = False
        self._transport: asyncio.Transport | None = None
        self._loop_ident: int | None = None  # the loop's thread, once connected
        self.closed = False
        self._gone = asyncio.Event()

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        self._loop_ident = get_ident()
        if self._outbox:
            self._flush()

    def data_received(self, data: bytes) -> None:
        messages = self._decoder.feed(data)
        if self._on_messages is not None:
            if messages:
                try:
                    self._on_messages(messages)
                except Exception:
                    log.exception("actorlib: error handling %d messages", len(messages))
            return
        for message in messages:
            try:
                self._on_message(message)
            except Exception:
                log.exception("actorlib: error handling message %s", name_of(message))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._transport = None
        self._gone.set()
        if self._on_lost is not None:
            self._on_lost()

    # -- sending --------------------------------------------------------------------------

    def send(self, message: Any, known_code: set[int] | None = None) -> None:
        """Queue a message; callable from any thread. Encoding happens here, in the caller.

        ``known_code``: code ids the peer already holds (updated as code is sent).
        """
        if self.closed:
            return
        outbox = self._outbox
        on_loop = get_ident() == self._loop_ident
        if on_loop:
            # Per-task records sent on the loop's thread in one turn wait for ``_flush``
            # in one open list of flat forms at the outbox's end (only this thread adds to
            # it or takes it), to go as one frame: one pickle for the lot, and a peer
            # reads and unpickles one frame, not one a record (``codec.batch_body``).
            flatten = FLATTEN.get(type(message))
            flat = None if flatten is None else flatten(message, known_code)
            if flat is None:  # (no flat form: ``encode`` would look for one again)
                outbox.append(encode_record(message, known_code))
            else:
                last = outbox[-1] if outbox else None
                if type(last) is list:
                    last.append(flat)
                else:
                    outbox.append([flat])
            self._queued += 1
            if self._queued >= FLUSH_AT:
                transport = self._transport
                if transport is not None:  # what follows still goes at the turn's end
                    self._write_queued(transport)
                    return
        else:
            outbox.append(encode(message, known_code))
        if not self._flush_pending:
            self._flush_pending = True
            try:
                if on_loop:
                    self._loop.call_soon(self._flush)
                else:
                    self._loop.call_soon_threadsafe(self._flush)
            except RuntimeError:  # loop closed: the peer is going away anyway
                self._flush_pending = False

    def _flush(self) -> None:
        self._flush_pending = False
        if self._transport is not None:
            self._write_queued(self._transport)

    def _write_queued(self, transport: asyncio.Transport) -> None:
        """Everything queued, in one write (on the loop's thread)."""
        self._queued = 0
        outbox = self._outbox
        if not outbox:
            return
        chunks: list[bytes] = []
        while outbox:
            chunk = outbox.popleft()
            if isinstance(chunk, list):  # flat records (see ``send``)
                chunks.append(encode_flats(chunk))
            else:
                chunks.append(chunk)
        transport.write(b"".join(chunks))

    def close(self) -> None:
        """Close from the loop's thread (queued messages still go out)."""
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    async def aclose(self, timeout: float = 5.0) -> None:
        """Close and wait until the transport is gone: a TLS close needs the loop running
        for its shutdown exchange, and closing a loop with it pending fails."""
        transport = self._transport
        if transport is None:
            self.closed = True
            return
        self._flush()
        self.close()
        try:
            await asyncio.wait_for(self._gone.wait(), timeout)
        except asyncio.TimeoutError:
            transport.abort()
