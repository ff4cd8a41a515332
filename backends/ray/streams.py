"""A streaming task's items on Ray, as actorlib's chain of slots.

actorlib's ``ObjectRefGenerator`` reads a chain of *slots* (see
:mod:`actorlib.core.streams`): slot k's value is ``(item k's id, slot k+1's id)``, ``None``
after the last item, or the producer's error. On Ray a streaming task gives an
``ObjectRefGenerator`` of its own, whose next position is a Ray ref that is ready when
the item is there (its value: the item), when the stream ended (Ray's
``ObjectRefStreamEndOfStreamError``) or when the task failed (the error). So slot k *is*
Ray's ref at position k, watched like any object; its link is made when it is first
read, and reading it takes the item from Ray's stream, which is what Ray's backpressure
counts (an item is consumed when its slot is read, as on every backend).

The Ray generator is dropped when the consumer drops the slot it would read next (Ray
then lets a producer paused by backpressure run on); ``completed()`` is Ray's own
completion ref, which stays valid after that.
"""

from __future__ import annotations

import pickle
import threading
from typing import Any

from actorlib.backends.ray.connector import ray_module
from actorlib.core.serialization import Serialized
from actorlib.exceptions import NotSupportedError

ray = ray_module()


def core_worker(what: str) -> Any:
    """Ray's core worker of this process, which streams and a group's readiness use; a
    driver on Ray Client (``ray://``) has none."""
    found = getattr(ray._private.worker.global_worker, "core_worker", None)
    if found is None:
        raise NotSupportedError(
            f"{what} on the ray backend needs a driver connected to the Ray cluster "
            "directly (address='auto' or the head's host:port), not through Ray Client "
            "(ray://)"
        )
    return found

#: The value of the slot after the last item.
END = Serialized(pickle.dumps(None, protocol=5))


class RayStream:
    """One Ray ``ObjectRefGenerator`` and what is known of its slots."""

    __slots__ = ("actor", "cancelled", "end", "generator", "links", "lock", "newest")

    def __init__(self, generator: Any, head: int, end: int,
                 actor: tuple[str, int] | None = None) -> None:
        self.generator: Any = generator  # None once released
        self.end = end  # the id of its ``completed()`` ref
        self.actor = actor  # an actor call's: its class name and id
        self.cancelled = False  # this process asked Ray to cancel it
        self.lock = threading.Lock()
        self.links: dict[int, Serialized] = {}  # slot id -> its value, once made
        self.newest = head  # the latest slot made (the one the consumer reads next)

    def head_ref(self) -> Any:
        """Ray's ref at the stream's next position (not taken from the stream)."""
        stream = core_worker("a generator's stream")
        return stream.peek_object_ref_stream(self.generator.completed())[0]

    def take(self) -> Any:
        """Take the next item from Ray's stream (Ray's backpressure counts it); its ref."""
        stream = core_worker("a generator's stream")
        try:
            return stream.try_read_next_object_ref_stream(self.generator.completed())
        except Exception:  # past the end (an error item is the last): nothing to take
            return None

    def release(self) -> None:
        """Nobody will read on: let Ray drop the stream (a paused producer goes on)."""
        self.generator = None
        self.links.clear()


def link(item_id: int, next_slot: int) -> Serialized:
    """A slot's value: its item and the slot after it (which the value holds)."""
    return Serialized(pickle.dumps((item_id, next_slot), protocol=5), (),
                      (item_id, next_slot))
