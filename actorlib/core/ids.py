"""Ids for objects, tasks and actors: plain ints, unique across every process of a runtime.

An id is ``prefix << 40 | counter``. The core hands each process that may mint ids (the
driver, every worker) its own prefix, so ``.remote()`` can name its result at once,
without a round trip, and ints keep the core's dict lookups cheap.
"""

from __future__ import annotations

import builtins
import itertools
from collections.abc import Callable
from typing import Any, TypeVar

COUNTER_BITS = 40
DRIVER_PREFIX = 1
#: Bytes of an int id's ``binary()`` form.
BINARY_SIZE = 16


class IdAllocator:
    """Mints ids for one process: ``next()``, atomic under the GIL.

    ``next`` is the counter's own ``__next__`` (a C call, no Python frame: every task
    and call mints two ids).
    """

    __slots__ = ("next", "prefix")

    def __init__(self, prefix: int) -> None:
        self.prefix = prefix
        self.next: Callable[[], int] = itertools.count((prefix << COUNTER_BITS) + 1).__next__


#: Set in an id a backend made from its own task ids rather than minted (the ray
#: backend's plain tasks and calls): above every minted id (63 + 40 bits).
FROM_BACKEND = 1 << 127


def prefix_of(id_: int) -> int:
    """The prefix of the process that made task id ``id_`` (its job, for a task the
    driver submitted): the bits above the counter, or, in an id a backend made
    (:data:`FROM_BACKEND`), the 63 bits above its low 64."""
    if id_ & FROM_BACKEND:
        return (id_ >> 64) & ((1 << 63) - 1)
    return id_ >> COUNTER_BITS


def id_hex(id_: int) -> str:
    return f"{id_:016x}"


def id_from_hex(text: str) -> int:
    return int(text, 16)


_I = TypeVar("_I", bound="BaseID")
_HEX_DIGITS = "0123456789abcdefABCDEF"


class BaseID:
    """An id as Ray shows it to users: ``.hex()``, ``.binary()``, equal only to its own kind.

    The core keeps plain ints (cheap dict keys); these wrappers are made only when user
    code asks for an id, never on the ``.remote()`` path.
    """

    __slots__ = ("_value",)

    def __init__(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{type(self).__name__} wraps an int id, got {value!r}")
        self._value = value

    @classmethod
    def from_hex(cls: type[_I], text: str) -> _I:
        """The id whose :meth:`hex` is ``text`` (at most 32 hex digits: ``binary()``'s 16
        bytes); ``ValueError`` for anything else, such as a longer id of Ray's."""
        if not 0 < len(text) <= 2 * BINARY_SIZE or text.strip(_HEX_DIGITS):
            raise ValueError(f"{cls.__name__}.from_hex() needs 1 to {2 * BINARY_SIZE} hex "
                             f"digits, got {text!r}")
        return cls(id_from_hex(text))

    @classmethod
    def from_binary(cls: type[_I], data: bytes) -> _I:
        """The id whose :meth:`binary` is ``data`` (16 bytes; ``ValueError`` otherwise,
        as Ray's for a binary of the wrong length)."""
        if len(data) != BINARY_SIZE:
            raise ValueError(f"ID string needs to have length {BINARY_SIZE}, got {len(data)}")
        return cls(int.from_bytes(data, "big"))

    @classmethod
    def nil(cls: type[_I]) -> _I:
        """The id that names nothing (0; ``is_nil()`` is True), as Ray's ``nil()``."""
        return cls(0)

    @classmethod
    def from_random(cls: type[_I]) -> _I:
        """A fresh id naming nothing the runtime made (a prefix no process is given)."""
        import secrets  # here: it imports hashlib, which a lean worker does without

        return cls(secrets.randbits(63) | 1 << 62)

    def hex(self) -> str:
        return id_hex(self._value)

    def binary(self) -> bytes:
        return self._value.to_bytes(BINARY_SIZE, "big")

    def is_nil(self) -> bool:
        return self._value == 0

    def __int__(self) -> int:
        return self._value

    def __index__(self) -> int:
        return self._value

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._value == self._value

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._value))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.hex()})"

    def __str__(self) -> str:
        return self.hex()

    def __reduce__(self) -> tuple[Any, tuple[int]]:
        return (type(self), (self._value,))


class TaskID(BaseID):
    """A task's or actor call's id (``get_runtime_context().task_id``, ``ref.task_id()``)."""

    __slots__ = ()


class ActorID(BaseID):
    """An actor's id (``handle.actor_id``, ``get_runtime_context().actor_id``)."""

    __slots__ = ()


class ObjectID(BaseID):
    """An object's id (``ref.object_id()``); Ray's ``ObjectID`` is the ref itself."""

    __slots__ = ()


class PlacementGroupID(BaseID):
    """A placement group's id."""

    __slots__ = ()


class JobID(BaseID):
    """A driver's job: the id prefix it mints with (``from_int``/``int``, as Ray's)."""

    __slots__ = ()

    @classmethod
    def from_int(cls, value: builtins.int) -> JobID:
        return cls(value)

    def int(self) -> builtins.int:
        return self._value


class WorkerID(BaseID):
    """A process that runs work (a worker, or the driver): its id prefix."""

    __slots__ = ()


class NodeID:
    """A node's id. Nodes are named by strings (``hex()`` is that string, as Ray's is)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"NodeID wraps a node id string, got {value!r}")
        self._value = value

    @classmethod
    def from_hex(cls, text: str) -> NodeID:
        return cls(text)

    @classmethod
    def from_binary(cls, data: bytes) -> NodeID:
        """The id whose :meth:`binary` is ``data`` (a node name's UTF-8 bytes)."""
        try:
            return cls(data.decode())
        except UnicodeDecodeError:
            raise ValueError(f"not the binary form of an actorlib NodeID: {data!r}") from None

    @classmethod
    def nil(cls) -> NodeID:
        return cls("")

    @classmethod
    def from_random(cls) -> NodeID:
        """A fresh id in the form the backends give their nodes (16 hex digits)."""
        import secrets

        return cls(secrets.token_hex(8))

    def hex(self) -> str:
        return self._value

    def binary(self) -> bytes:
        return self._value.encode()

    def is_nil(self) -> bool:
        return not self._value

    def __eq__(self, other: object) -> bool:
        return type(other) is NodeID and other._value == self._value

    def __hash__(self) -> int:
        return hash(("NodeID", self._value))

    def __repr__(self) -> str:
        return f"NodeID({self._value})"

    def __str__(self) -> str:
        return self._value

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (type(self), (self._value,))
