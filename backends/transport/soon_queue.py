"""The messages a worker sends in bursts: submissions and refs' drops.

A task making a thousand actor calls sent a thousand frames, a write system call each,
and the driver read and unpickled a thousand frames, then as many again for the refs'
drops. Here a message of either kind made less than ``BURST_S`` after the one before it
(a loop of ``.remote()`` calls, the refs of a list of results dying together) waits for
the rest of its burst, and they go together in one frame (``codec.BATCH``, pickled once):
with the connection's next write of any other message, as soon as ``FLUSH_AT`` are
queued, or ``DEFER_S`` after the first at the latest (a flusher thread, woken once a
burst), should the caller go on computing. A lone message, or a burst's first, goes at
once, as before: the driver starts on a lone call while its caller goes on to ``get``.

Submissions queued go before the message written with them, so every message is read in
the order it was sent; drops go after it: a ref's end read late only keeps its object a
moment longer, and the driver starts on the message (a submission, a watch) first.

The queue takes no lock: a thread queues with one ``deque.append`` and the writer (one at
a time, under ``late_interrupts.GATE``) takes with ``popleft``, so a ref's finalizer
that runs while a thread is in here (a collection can start at any allocation) queues its
drop like any other thread and never waits for itself. The writer may write what other
threads queued, so the write is never cut short between taking and writing: see
``BlockingConnection._write``.

Only records whose wire form is plain builtins are queued (a submission's flat form, a
drop): encoding them later cannot fail, so an error in a message still reaches the
thread that sent it.
"""

from __future__ import annotations

import _thread
import collections
import functools
import logging
import os
import threading
import weakref
from collections.abc import Callable
from time import monotonic
from typing import Any

from actorlib.backends.transport.codec import FLATTEN
from actorlib.backends.transport.framing import encode_flats
from actorlib.backends.transport.messages import TAGS, DropRef
from actorlib.core.interruptible import shield_signals

#: The longest a queued message waits for others: well under a round trip to the driver
#: on a busy machine, and a burst of calls fills ``FLUSH_AT`` far sooner.
DEFER_S = 0.001

#: Messages queued that are written at once, by the thread that queues the last of them.
FLUSH_AT = 64

#: A message made less than this after the one before it of its kind is part of a burst
#: (a loop of ``.remote()`` calls makes one every 10-40 us): it may wait for the rest. A
#: lone call after its ``get`` returned comes a round trip later.
BURST_S = 0.0001

_DROP_REF = TAGS[DropRef]

log = logging.getLogger("actorlib.wire")


class SoonQueue:
    """The messages waiting to go; ``write`` is the connection's own write, which takes
    them (:meth:`take`) around what it writes, under ``late_interrupts.GATE``."""

    def __init__(self, write: Callable[[bytes], None]) -> None:
        self._write = write
        # (Both read without a lock: "anything queued?")
        self.flats: collections.deque[tuple[Any, ...]] = collections.deque()  # before
        self.drops: collections.deque[tuple[Any, ...]] = collections.deque()  # after
        self._kick = _thread.allocate_lock()  # released to wake the flusher
        self._kick.acquire()
        self._flusher: threading.Thread | None = None
        self._starting = threading.Lock()  # one flusher, however many threads wake it
        self._closing = threading.Event()  # ends the flusher's wait
        self._woken = False  # the flusher was woken for what is queued
        self._last_submit = 0.0  # when the last submission was made (``BURST_S``)
        self._last_drop = 0.0  # when the last drop was
        self.closed = False
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=functools.partial(_forget, weakref.ref(self)))

    def start(self) -> None:
        """Start the flusher now, on a thread of actorlib's own (started on a task's
        thread, a cancel's interrupt could land between making it and starting it)."""
        self._start_flusher()

    def put(self, message: Any) -> bool:
        """Queue ``message``; False if it is to go now (send it as usual: what is queued
        goes first)."""
        kind = type(message)
        now = monotonic()
        if kind is DropRef:
            last, self._last_drop = self._last_drop, now
            if now - last > BURST_S:
                return False  # a lone drop, or a burst's first
            self.drops.append((_DROP_REF, message[0]))
        else:
            last, self._last_submit = self._last_submit, now
            if now - last > BURST_S:
                return False  # a lone submission, or a burst's first
            flatten = FLATTEN.get(kind)
            flat = None if flatten is None else flatten(message, None)
            if flat is None:
                return False
            self.flats.append(flat)
        # Queued first, then the look (``take`` clears ``_woken`` first, then takes): one
        # of the two sees the other, so nothing queued is left with no flusher woken. (A
        # cancel landing between setting ``_woken`` and the wake delays the queue until
        # the next write, which the cancelled task's outcome is.)
        if len(self.flats) + len(self.drops) >= FLUSH_AT:
            self._write(b"")
        elif not self._woken:
            self._woken = True
            self._wake_flusher()
        return True

    def take(self, with_drops: bool = True) -> tuple[bytes, bytes]:
        """What is queued, as frames, taken off the queue: the submissions, to go before
        what the connection writes, and the drops (unless ``with_drops`` is False: they
        stay queued), to go after it. One taker at a time (the writer holds the gate)."""
        if with_drops or not self.drops:  # (drops left: the flusher woken for them stays)
            self._woken = False
        # The drops counted before the submissions: a thread queues a submission before
        # the drop of a ref it holds, so every drop taken goes with its submission (a
        # drop ahead of it could free the object the call needs).
        dropped = len(self.drops) if with_drops else 0
        flats = _drain(self.flats, len(self.flats))
        drops = _drain(self.drops, dropped)
        return (encode_flats(flats) if flats else b""), (encode_flats(drops) if drops else b"")

    def close(self) -> None:
        """Queue nothing more; the flusher ends (at once: it is not joined here, where a
        write may hold the gate it waits for)."""
        self.closed = True
        self._closing.set()
        self._wake_flusher()

    def _wake_flusher(self) -> None:
        if self._flusher is None:
            self._start_flusher()
        try:
            self._kick.release()
        except RuntimeError:  # woken already, not yet running
            pass

    def _start_flusher(self) -> None:
        with self._starting:
            if self._flusher is not None or self.closed:
                return
            flusher = threading.Thread(
                target=self._flush_later, name="actorlib-send-soon", daemon=True
            )
            flusher.start()
            self._flusher = flusher

    def _flush_later(self) -> None:
        shield_signals()  # one of actorlib's threads: see shield_signals
        kick = self._kick
        while True:
            kick.acquire()
            if self.closed or self._closing.wait(DEFER_S):
                return
            if self.flats or self.drops:
                try:
                    self._write(b"")
                except Exception:  # (a record that failed to encode: logged, not fatal)
                    log.exception("actorlib: queued messages were not sent")


def _drain(queue: collections.deque[tuple[Any, ...]], count: int) -> list[tuple[Any, ...]]:
    """The first ``count`` of ``queue``, taken off it (what other threads add stays)."""
    pop = queue.popleft
    return [pop() for _ in range(count)]


def _forget(queue: weakref.ref[SoonQueue]) -> None:
    """In a process forked by user code: the parent's queued messages are the parent's to
    send (sent by the copy too, they would reach the driver twice), and its flusher did
    not come along."""
    soon = queue()
    if soon is not None:
        soon.flats = collections.deque()
        soon.drops = collections.deque()
        soon._woken = False
        soon._flusher = None
        soon._starting = threading.Lock()
        soon._kick = _thread.allocate_lock()
        soon._kick.acquire()
