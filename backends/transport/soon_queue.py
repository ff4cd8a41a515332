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

A thread that writes may write what other threads queued, so the write never stops half
way on their account: it is code a cancel's interrupt waits out
(``late_interrupts.uninterrupted``), as are the steps that queue and wake the flusher; and
it takes the queue with the collector off, so no finalizer runs on the writing thread while
it holds a lock (a ref's drop there would wait for that lock for good).

Only records whose wire form is plain builtins are queued (a submission's flat form, a
drop): encoding them later cannot fail, so an error in a message still reaches the
thread that sent it.
"""

from __future__ import annotations

import _thread
import functools
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
from actorlib.core.late_interrupts import uninterrupted

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


class SoonQueue:
    """The messages waiting to go; ``write`` is the connection's own write, which takes
    them (:meth:`take`) around what it writes, under its lock."""

    def __init__(self, write: Callable[[bytes], None]) -> None:
        self._write = write
        self._lock = threading.Lock()
        # (Both read without the lock: "anything queued?")
        self.flats: list[tuple[Any, ...]] = []  # submissions: before what is written
        self.drops: list[tuple[Any, ...]] = []  # refs' drops: after it
        self._kick = _thread.allocate_lock()  # released to wake the flusher
        self._kick.acquire()
        self._flusher: threading.Thread | None = None
        self._closing = threading.Event()  # ends the flusher's wait
        self._woken = False  # the flusher was woken for what is queued
        self._last_submit = 0.0  # when the last submission was made (``BURST_S``)
        self._last_drop = 0.0  # when the last drop was
        self.closed = False
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=functools.partial(_forget, weakref.ref(self)))

    @uninterrupted  # cut short after queuing, it could leave the flusher unwoken
    def put(self, message: Any) -> bool:
        """Queue ``message``; False if it is to go now (send it as usual: what is queued
        goes first)."""
        kind = type(message)
        now = monotonic()
        if kind is DropRef:
            last, self._last_drop = self._last_drop, now
            if now - last > BURST_S:
                return False  # a lone drop, or a burst's first
            flat: tuple[Any, ...] = (_DROP_REF, message[0])
        else:
            last, self._last_submit = self._last_submit, now
            if now - last > BURST_S:
                return False  # a lone submission, or a burst's first
            flatten = FLATTEN.get(kind)
            flat_form = None if flatten is None else flatten(message, None)
            if flat_form is None:
                return False
            flat = flat_form
        with self._lock:  # (the lists are swapped for new ones as they are taken)
            (self.drops if kind is DropRef else self.flats).append(flat)
            queued = len(self.flats) + len(self.drops)
            wake = not self._woken
            self._woken = True
        if queued >= FLUSH_AT:
            self._write(b"")
        elif wake:
            self._wake_flusher()
        return True

    def take(self, with_drops: bool = True) -> tuple[bytes, bytes]:
        """What is queued, as frames, taken off the queue: the submissions, to go before
        what the connection writes, and the drops (unless ``with_drops`` is False: they
        stay queued), to go after it."""
        # (The caller holds the connection's lock with the collector off: nothing here
        # may run a finalizer, whose drop would wait for a lock this thread holds.)
        fresh_flats: list[tuple[Any, ...]] = []
        fresh_drops: list[tuple[Any, ...]] = []
        drops: list[tuple[Any, ...]] = []
        with self._lock:
            flats = self.flats
            self.flats = fresh_flats
            if with_drops:
                drops = self.drops
                self.drops = fresh_drops
            if not self.drops:  # (drops left: the flusher woken for them writes them)
                self._woken = False
        return (encode_flats(flats) if flats else b""), (encode_flats(drops) if drops else b"")

    def close(self) -> None:
        """Queue nothing more; the flusher ends (at once: it is not joined here, where a
        write may hold the connection's lock it waits for)."""
        self.closed = True
        self._closing.set()
        self._wake_flusher()

    @uninterrupted  # cut short between making the flusher and starting it, none would run
    def _wake_flusher(self) -> None:
        if self._flusher is None:
            if self.closed:
                return
            self._flusher = threading.Thread(
                target=self._flush_later, name="actorlib-send-soon", daemon=True
            )
            self._flusher.start()
        try:
            self._kick.release()
        except RuntimeError:  # woken already, not yet running
            pass

    def _flush_later(self) -> None:
        shield_signals()  # one of actorlib's threads: see shield_signals
        kick = self._kick
        while True:
            kick.acquire()
            if self.closed or self._closing.wait(DEFER_S):
                return
            if self.flats or self.drops:
                self._write(b"")


def _forget(queue: weakref.ref[SoonQueue]) -> None:
    """In a process forked by user code: the parent's queued messages are the parent's to
    send (sent by the copy too, they would reach the driver twice), and its flusher and
    whichever thread held the queue's lock did not come along."""
    soon = queue()
    if soon is not None:
        soon._lock = threading.Lock()  # held by a thread of the parent's, maybe
        soon.flats = []
        soon.drops = []
        soon._woken = False
        soon._flusher = None
        soon._kick = _thread.allocate_lock()
        soon._kick.acquire()
