"""What generator tasks and calls give their caller.

:class:`ObjectRefGenerator` (``num_returns="streaming"``, the default for a generator
function): iterate it with ``for`` or ``async for``; each step returns the ref of the next
item as soon as the producer has yielded it. It reads the stream's chain of slots (see
:mod:`actorlib.core.streams`): each slot holds ``(item id, next slot id)``, ``None`` at
the end, or the producer's error (returned as the last item: its ``get`` raises).

:class:`DynamicObjectRefGenerator` (``num_returns="dynamic"``): the value of the task's
one ref, the refs of all its items, made when the task finishes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from actorlib.core.refs import ObjectRef
from actorlib.core.serialization import Serialized, deserialize
from actorlib.core.waiting import fetch, fetch_async

T = TypeVar("T")


class ObjectRefGenerator(Generic[T]):
    """The refs of a streaming generator task's items, in the order yielded."""

    def __init__(self, head: ObjectRef[Any], end: ObjectRef[None]) -> None:
        self._slot: ObjectRef[Any] | None = head
        self._end = end

    def __iter__(self) -> ObjectRefGenerator[T]:
        return self

    def __aiter__(self) -> ObjectRefGenerator[T]:
        return self

    def __next__(self) -> ObjectRef[T]:
        slot = self._slot
        if slot is None:
            raise StopIteration
        return self._step(slot, fetch([slot], 1, None)[slot._id])

    async def __anext__(self) -> ObjectRef[T]:
        slot = self._slot
        if slot is None:
            raise StopAsyncIteration
        got = await fetch_async([slot], 1, None)
        try:
            return self._step(slot, got[slot._id])
        except StopIteration:
            raise StopAsyncIteration from None

    def _step(self, slot: ObjectRef[Any], value: Serialized) -> ObjectRef[T]:
        if value.is_error:  # the producer failed here: this slot is the failing item
            self._slot = None
            return slot
        link = deserialize(value)
        if link is None:
            self._slot = None
            raise StopIteration
        item_id, next_slot = link
        client = slot._client
        assert client is not None
        # Count our refs before the slot (which holds both) is dropped: the core hears
        # of them in this order. Dropping the slot tells it the item was consumed.
        client.add_ref(item_id)
        client.add_ref(next_slot)
        item: ObjectRef[T] = ObjectRef(item_id, client, slot._name, slot._task)
        self._slot = ObjectRef(next_slot, client, slot._name, slot._task)
        return item

    def completed(self) -> ObjectRef[None]:
        """A ref that is ready when the task has finished (its error, if it failed)."""
        return self._end

    def is_finished(self) -> bool:
        """Whether every item has been taken (``next`` would raise StopIteration)."""
        return self._slot is None

    def next_ready(self) -> bool:
        """Whether ``next`` would return at once."""
        slot = self._slot
        return slot is None or bool(fetch([slot], 1, 0, reads=False))

    def _next_ref(self) -> ObjectRef[Any]:
        """The ref that is ready when ``next`` would return at once (``wait`` uses it)."""
        return self._slot if self._slot is not None else self._end

    def task_id(self) -> Any:
        """The id of the task or call producing the items."""
        return self._end.task_id()

    def __reduce__(self) -> Any:
        raise TypeError(
            "an ObjectRefGenerator cannot be passed to a task or stored (as in Ray); "
            "pass the item refs it returns instead"
        )

    def __repr__(self) -> str:
        return f"ObjectRefGenerator({self._end.task_id().hex()})"


class DynamicObjectRefGenerator(Generic[T]):
    """The refs of every item of a ``num_returns="dynamic"`` task, in order."""

    def __init__(self, refs: list[ObjectRef[T]]) -> None:
        self._refs = list(refs)

    def __iter__(self) -> Iterator[ObjectRef[T]]:
        return iter(self._refs)

    def __len__(self) -> int:
        return len(self._refs)

    def __repr__(self) -> str:
        return f"DynamicObjectRefGenerator({len(self._refs)} refs)"
