"""Streams: the items of a generator task or call (``num_returns="streaming"``), in order.

A streaming task's first return id is the *head* of a chain of slots. Each item the
producer yields becomes an object of its own the moment it arrives (``item_produced``),
and fills the pending slot with the pair ``(item id, next slot id)``; the next slot is
made pending. The task's end fills the last pending slot: with ``None`` (no more items)
or with the task's error (the item where it failed). A consumer
(:class:`~actorlib.core.generators.ObjectRefGenerator`) reads slot after slot with the
ordinary watch machinery, on any client, and holds each item by its own ref.

A slot's value holds its item and the next slot (``contained``), so the chain lives
exactly as long as the consumer holds the slot it will read next. The consumer drops a
slot once it has read it: that is how the core learns what has been consumed, which
drives backpressure (``Backend.items_consumed``).

Retries re-run the producer from its first item: items below the count already delivered
are dropped on arrival, so none is delivered twice (Ray does the same).

Runs on the core loop only; no locks.
"""

from __future__ import annotations

import pickle
from typing import TYPE_CHECKING

from actorlib.core.ids import IdAllocator
from actorlib.core.objects import ObjectTable
from actorlib.core.records import StreamItem
from actorlib.core.serialization import Serialized

if TYPE_CHECKING:  # the interface the core drives; the core never imports a backend
    from actorlib.backends.base import Backend
    from actorlib.core.values import Values

#: The value of the slot after the last item.
END = pickle.dumps(None, protocol=5)


class Stream:
    __slots__ = ("attempt", "consumed", "head", "next_index", "pending", "produced",
                 "producer", "sent_consumed", "threshold")

    def __init__(self, producer: int, head: int, threshold: int) -> None:
        self.producer = producer  # the task or call yielding the items
        self.head = head
        self.pending = head  # the slot the next item (or the end) fills
        self.next_index = 0  # items delivered so far
        self.attempt = 0  # the producer's attempt that items come from now
        self.produced = 0  # items the current attempt has sent (skipped ones included)
        self.threshold = threshold  # unconsumed items at which the producer pauses (<=0: never)
        self.consumed = 0  # slots the consumer has read (and dropped)
        self.sent_consumed = 0  # what the producer was last told of ``consumed``


class Streams:
    """Every open stream, by its head id and by its producer's id."""

    def __init__(self, objects: ObjectTable, values: Values, ids: IdAllocator,
                 backend: Backend) -> None:
        self.objects = objects
        self.values = values
        self.ids = ids
        self.backend = backend
        self.by_head: dict[int, Stream] = {}
        self.by_producer: dict[int, Stream] = {}

    def open(self, producer: int, head: int, threshold: int) -> None:
        """A streaming task or call was submitted (its head id is already pending)."""
        stream = Stream(producer, head, threshold)
        self.by_head[head] = stream
        self.by_producer[producer] = stream

    def item(self, item: StreamItem) -> None:
        """An item arrived: store it, fill the pending slot, make the next one pending."""
        stream = self.by_producer.get(item.id)
        value = item.value
        if stream is None or item.attempt < stream.attempt:
            self.values.drop_value(value)  # ended already, or an older attempt's
            return
        if item.attempt > stream.attempt:  # a retry: it starts over, knowing nothing
            stream.attempt = item.attempt
            stream.sent_consumed = 0
        stream.produced = item.index + 1
        if item.index != stream.next_index:
            self.values.drop_value(value)  # delivered by an earlier attempt
            self._tell_producer(stream)
            return
        objects = self.objects
        ids = self.ids
        item_id, next_slot = ids.next(), ids.next()
        objects.create(item_id, 0, item.id)
        objects.create(next_slot, 0, item.id)
        slot = stream.pending
        link = Serialized(pickle.dumps((item_id, next_slot), protocol=5), (),
                          (item_id, next_slot))
        self.values.hold_ids(link.contained)
        self.values.set_results((item_id,), [value])
        index = stream.next_index
        stream.next_index = index + 1
        stream.pending = next_slot
        if stream.threshold > 0:
            objects.on_drop(slot, lambda: self._consumed(stream, index + 1))
        objects.set_value(slot, link)
        self._tell_producer(stream)

    def close(self, head: int) -> int:
        """The producer ended: the slot its end (``END`` or its error) goes to."""
        stream = self.by_head.pop(head)
        del self.by_producer[stream.producer]
        return stream.pending

    def _consumed(self, stream: Stream, count: int) -> None:
        if count > stream.consumed:
            stream.consumed = count
            self._tell_producer(stream)

    def _tell_producer(self, stream: Stream) -> None:
        """Let a producer that may be paused go on (only then: a message per pause)."""
        if (
            stream.threshold > 0 and stream.consumed > stream.sent_consumed
            and stream.produced - stream.sent_consumed >= stream.threshold
            and stream.producer in self.by_producer
        ):
            stream.sent_consumed = stream.consumed
            self.backend.items_consumed(stream.producer, stream.consumed)
