"""``ObjectRef``: a future for a value in the object store, and a reference that keeps it alive.

Each live ``ObjectRef`` instance counts one reference in the core: creating one (by
``.remote()``, ``put`` or unpickling) adds one, and its ``__del__`` drops it. Refs are
awaitable from asyncio, uvloop and trio, blockable with ``get``, and convertible to a
``concurrent.futures.Future``.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from actorlib.core import context
from actorlib.core.execution_context import current_execution
from actorlib.core.ids import ObjectID, TaskID, id_hex
from actorlib.core.late_interrupts import finalizer, raise_again_later
from actorlib.core.serialization import note_contained

if TYPE_CHECKING:
    import asyncio

    from actorlib.core.context import Client

# Covariant: a ref is read-only, so an ObjectRef[bool] is an ObjectRef[int], and a list
# literal of refs to different types joins to a common ObjectRef type.
T = TypeVar("T", covariant=True)


class ObjectRef(Generic[T]):
    __slots__ = ("__weakref__", "_client", "_id", "_name", "_task")

    def __init__(
        self, id_: int, client: Client | None, name: str | None = None, task: int = 0
    ) -> None:
        """Wrap an id whose reference the core has already counted for this instance.

        ``name`` is the task or method that produces the value, when the caller knows it
        (an existing string, so ``.remote()`` pays nothing for it): a timed-out ``get``
        names what it waited for.
        """
        self._id = id_
        self._client = client
        self._name = name
        self._task = task  # the task or call making the value; 0 for put()

    @property
    def id(self) -> int:
        return self._id

    def hex(self) -> str:
        return id_hex(self._id)

    def object_id(self) -> ObjectID:
        return ObjectID(self._id)

    def task_id(self) -> TaskID:
        """The id of the task or actor call that makes this value (nil for ``put``)."""
        return TaskID(self._task)

    def is_nil(self) -> bool:
        return self._id == 0

    # Ray's constructors (on ``ObjectID``, the ref's old name, which is this class). A ref
    # made from an id is what unpickling one gives: it counts a reference while the
    # runtime holds the object, so ``get`` reads a live object; an id the runtime does
    # not hold (nil, random, freed) raises ``ObjectLostError`` at ``get``, where Ray
    # raises a ``ValueError`` (the object's owner is unknown).
    @classmethod
    def nil(cls) -> ObjectRef[Any]:
        """The ref that names no object (id 0; ``is_nil()`` is True)."""
        return _rebuild_ref(0)

    @classmethod
    def from_hex(cls, text: str) -> ObjectRef[Any]:
        """The ref whose :meth:`hex` is ``text`` (``ValueError`` for anything but 1 to 32
        hex digits). Ray 2.x raises ``NotImplementedError`` here."""
        return _rebuild_ref(int(ObjectID.from_hex(text)))

    @classmethod
    def from_binary(cls, data: bytes) -> ObjectRef[Any]:
        """The ref whose :meth:`binary` is ``data`` (16 bytes, else ``ValueError``)."""
        return _rebuild_ref(int(ObjectID.from_binary(data)))

    @classmethod
    def from_random(cls) -> ObjectRef[Any]:
        """A ref to an id no process mints: it names no object."""
        return _rebuild_ref(int(ObjectID.from_random()))

    def binary(self) -> bytes:
        return self._id.to_bytes(16, "big")

    def __repr__(self) -> str:
        return f"ObjectRef({self.hex()})"

    def __hash__(self) -> int:
        return hash(self._id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectRef) and other._id == self._id

    @finalizer
    def __del__(self) -> None:
        try:
            try:
                client = self._client
            except AttributeError:  # ``__init__`` refused its arguments: nothing counted
                return
            if client is not None:
                try:
                    client.drop_ref(self._id)
                except Exception:  # interpreter teardown
                    pass
        except KeyboardInterrupt:
            # A cancel's interrupt that lands in a finalizer is printed and dropped by
            # Python ("Exception ignored in"): the task it was for would run on. It is
            # raised again there (actorlib.core.late_interrupts).
            execution = current_execution.get()
            if execution is None or not execution.cancelled:
                raise  # a Ctrl-C: reported by Python, as ever
            # First, with no call before it: a call is where a second interrupt can land
            # (Ray sends its cancel again and again), and it would leave this one unsaid.
            execution.lost_interrupt = True
            raise_again_later(execution)

    def __reduce__(self) -> Any:
        note_contained(self._id)
        if self._task:
            return (_rebuild_ref, (self._id, self._task))
        return (_rebuild_ref, (self._id,))

    def __copy__(self) -> ObjectRef[T]:
        return _rebuild_ref(self._id, self._task)

    def __deepcopy__(self, memo: Any) -> ObjectRef[T]:
        return _rebuild_ref(self._id, self._task)

    def __await__(self) -> Generator[Any, None, T]:
        from actorlib.core.waiting import get_one_async

        return get_one_async(self).__await__()

    def future(self) -> concurrent.futures.Future[T]:
        """A ``concurrent.futures.Future`` resolved with this ref's value (or error)."""
        from actorlib.core.waiting import future_of

        return future_of(self)

    def as_future(self) -> asyncio.Future[T]:
        """An ``asyncio.Future`` on the running loop resolved with this ref's value, as in
        Ray. Cancelling the future does not cancel the task."""
        import asyncio  # here: a worker process unpickles refs without running a loop

        from actorlib.core import waiting

        if waiting.hook_runs_work:  # (sim) await through the hook, which runs the work
            return asyncio.ensure_future(waiting.get_one_async(self))
        return asyncio.wrap_future(self.future())


def _rebuild_ref(id_: int, task: int = 0) -> ObjectRef[Any]:
    client = context.current()
    if client is not None and not client.closed:
        client.add_ref(id_)
        return ObjectRef(id_, client, None, task)
    return ObjectRef(id_, None, None, task)
