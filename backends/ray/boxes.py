"""actorlib values in Ray's object store.

A :class:`Box` is an actorlib ``Serialized`` value plus the Ray objects and actor handles
behind the actorlib refs and handles pickled inside it. Ray serializes the box itself, so
it sees those nested Ray refs (and keeps them alive while the box lives, as it does for
refs nested in any value) and stores the large buffers out of band: a reader maps them
from the object store without a copy.

Most values are none of that: a pickle stream alone, no buffers, no refs, no error.
Those travel as their bytes (:data:`Packed`), which Ray stores and sends as they are;
a box would be pickled once more by Ray's own pickler, on every result and argument.
Every Ray object actorlib makes is therefore a box or bytes.
"""

from __future__ import annotations

import pickle
from typing import Any

from actorlib.core.serialization import Serialized


class Box:
    """A serialized value and ``refs``: actorlib id -> Ray ObjectRef or :class:`ActorRef`."""

    __slots__ = ("refs", "value")

    def __init__(self, value: Serialized, refs: dict[int, Any]) -> None:
        self.value = value
        self.refs = refs

    def __reduce_ex__(self, protocol: Any) -> Any:
        v = self.value
        buffers = [pickle.PickleBuffer(b) for b in v.buffers]
        return (_unbox, (v.data, buffers, v.contained, v.is_error, self.refs))


def _unbox(
    data: bytes, buffers: list[Any], contained: tuple[int, ...], is_error: bool,
    refs: dict[int, Any],
) -> Box:
    return Box(Serialized(data, list(buffers), contained, is_error), refs)


#: What actorlib puts into Ray's store for a value: a box, or a plain value's bytes.
Packed = Box | bytes


def packed(value: Serialized, refs: dict[int, Any]) -> Packed:
    """``value`` as it goes into Ray's store: its bytes alone when that is all it is."""
    if (type(value.data) is bytes and not value.buffers and not value.contained
            and not value.is_error):
        return value.data
    return Box(value, refs)


class ActorRef:
    """An actor handle inside a box: Ray's handle and its concurrency groups (each
    method's, the declared ones, the class name: Ray needs the group at submission)."""

    __slots__ = ("groups", "handle")

    def __init__(self, handle: Any, groups: Any) -> None:
        self.handle = handle
        self.groups = groups

    def __reduce__(self) -> Any:
        return (ActorRef, (self.handle, self.groups))


class Retryable(Exception):
    """An application error that ``retry_exceptions`` covers: raised so Ray retries the
    task; carries the packed actorlib error the caller gets once retries run out."""

    def __init__(self, packed: Serialized) -> None:
        super().__init__("actorlib: retryable application error")
        self.packed = packed

    def __reduce__(self) -> Any:
        return (Retryable, (self.packed,))


class Raised(Exception):
    """A generator's application error that is not retried: raised (not returned) so Ray
    ends the stream with it, as its last item and the ``completed()`` ref's error."""

    def __init__(self, packed: Serialized) -> None:
        super().__init__("actorlib: generator failed")
        self.packed = packed

    def __reduce__(self) -> Any:
        return (Raised, (self.packed,))
