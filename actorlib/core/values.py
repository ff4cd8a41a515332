"""What tasks and actor calls do alike with the object table: arguments in, results out.

Holding and releasing the ids a spec or a value keeps alive, waiting for a spec's
argument refs and reading their values, and resolving returns with a value or an error
(each entry frees its own value when it dies, so an error shared by several returns is
copied where sharing is not free). :class:`~actorlib.core.tasks.Tasks` and
:class:`~actorlib.core.actors.Actors` both use one instance.

Runs on the core loop only; no locks.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import TYPE_CHECKING

from actorlib.core.ids import id_hex
from actorlib.core.objects import ObjectTable
from actorlib.core.records import Outcome
from actorlib.core.serialization import Serialized, serialize
from actorlib.core.specs import Args
from actorlib.core.streams import END
from actorlib.exceptions import ObjectLostError, TaskCancelledError

if TYPE_CHECKING:
    from actorlib.core.streams import Streams


def error_value(exc: BaseException) -> Serialized:
    """``exc`` pickled as a failed result.

    The C pickler first (the errors the core makes); cloudpickle when that fails: a user's
    error the core passes on (an actor's constructor error, as the cause of its death) may
    be of a class from the driver's ``__main__``, which a core in another process (a
    cluster's head) holds by value and cannot pickle by name."""
    try:
        return Serialized(pickle.dumps(exc, protocol=5), (), (), True)
    except Exception:
        return serialize(exc, is_error=True)


def cancelled_value(name: str) -> Serialized:
    """The error of a task or call (``name``: its function or method) cancelled for good."""
    return error_value(TaskCancelledError(f"Task {name} was cancelled."))


class Values:
    """The object-table side of running work; see the module docstring."""

    __slots__ = ("_free", "hold_ids", "objects", "release_ids", "streams")

    def __init__(
        self,
        objects: ObjectTable,
        free: Callable[[Serialized], None],
        hold_ids: Callable[[tuple[int, ...]], None],
        release_ids: Callable[[tuple[int, ...]], None],
    ) -> None:
        """``free``: the store's, gives a value's buffers back. ``hold_ids`` and
        ``release_ids``: the runtime's reference counting over every kind of id
        (objects, and actor handles)."""
        self.objects = objects
        self._free = free
        self.hold_ids = hold_ids
        self.release_ids = release_ids
        #: Open streams, by head id: a stream's head is resolved at its last pending slot.
        self.streams: Streams | None = None

    def open_stream(self, producer: int, head: int, threshold: int) -> None:
        assert self.streams is not None  # made with the runtime
        self.streams.open(producer, head, threshold)

    def release_args(self, args: Args) -> None:
        """Arguments are no longer needed: free their buffers and the ids they held."""
        payload = args.payload
        if payload is None:
            if args.deps:
                self.release_ids(args.deps)
            return
        if payload.buffers:
            self._free(payload)
        if args.deps or payload.contained:
            self.release_ids(args.held)

    def free_unused(self, args: Args) -> None:
        """Free the buffers of arguments that were never taken in (no ids were held)."""
        if args.payload is not None and args.payload.buffers:
            self._free(args.payload)

    def resolve_deps(self, deps: tuple[int, ...], on_ready: Callable[[], None]) -> int:
        """Count deps not ready yet; call ``on_ready`` when the last one is."""
        if not deps:
            return 0
        objects = self.objects
        pending = [d for d in set(deps) if not objects.ready(d)]
        if not pending:
            return 0
        left = [len(pending)]

        def one_ready(_id: int, _value: Serialized) -> None:
            left[0] -= 1
            if left[0] == 0:
                on_ready()

        for dep in pending:
            if not objects.watch(dep, one_ready):
                objects.create(dep, 0)
                objects.set_value(dep, error_value(ObjectLostError(f"{id_hex(dep)}")))
        return len(pending)

    def dep_values(self, deps: tuple[int, ...]) -> list[Serialized]:
        values: list[Serialized] = []
        if not deps:
            return values
        for dep in deps:
            entry = self.objects.get(dep)
            assert entry is not None and entry.value is not None
            values.append(entry.value)
        return values

    def first_dep_error(self, deps: tuple[int, ...]) -> Serialized | None:
        """The first argument that is an error, as a value of the caller's own (the
        argument's entry keeps and frees the original)."""
        if not deps:
            return None
        for value in self.dep_values(deps):
            if value.is_error:
                value.read = True  # passed on: the copy is reported if nobody reads it
                copy = self._own_copy(value)
                if copy is value:
                    copy = Serialized(value.data, value.buffers, value.contained, True)
                return copy
        return None

    def set_results(self, ids: tuple[int, ...], values: list[Serialized]) -> bool:
        """Results arrived: each holds the ids it contains, then resolves its return.
        True if any of them lives in a store (not inline). (``Tasks.finished`` and
        ``Actors.call_finished`` do this inline for one value: a change here goes there
        too.)"""
        objects = self.objects
        hold_ids = self.hold_ids
        stored = False
        streams = self.streams
        # ``zip`` without a keyword: ``strict=`` has it parse its arguments from a dict,
        # ~1,500 instructions more, and every task's and call's results come here.
        for id_, value in zip(ids, values):  # noqa: B905
            if streams is not None and id_ in streams.by_head:
                # A generator's end: its value (None) is not kept; the stream's last
                # slot says "no more items".
                self.drop_value(value)
                id_, value = streams.close(id_), Serialized(END)
            if value.contained:
                hold_ids(value.contained)
            objects.set_value(id_, value)
            if value.locations:
                stored = True
        return stored

    def resolve(self, ids: tuple[int, ...], value: Serialized) -> None:
        """Give every id in ``ids`` the value (an error, usually), which the caller hands
        over. Each entry frees its value and releases the ids it holds when it dies, so
        the second and later ids get copies unless sharing is free."""
        values = [value] + [self._own_copy(value) for _ in ids[1:]]
        ids = self._ends(ids)
        if not ids:
            self.drop_value(value)
        for id_, own in zip(ids, values, strict=False):
            self.objects.set_value(id_, own)

    def _ends(self, ids: tuple[int, ...]) -> tuple[int, ...]:
        """``ids`` with each open stream's head replaced by its pending slot (and closed):
        an error ends a stream at the item where it happened."""
        streams = self.streams
        if streams is None or not streams.by_head:
            return ids
        return tuple(streams.close(i) if i in streams.by_head else i for i in ids)

    def drop_value(self, value: Serialized) -> None:
        """A value nobody will keep: free its bytes, release the ids it holds."""
        self._free(value)
        self.release_ids(value.contained)

    def discard_outcome(self, outcome: Outcome) -> None:
        """An outcome that arrived too late (its work ended, or another attempt runs)."""
        for value in outcome.values or ():
            self._free(value)
        if outcome.error is not None:
            self._free(outcome.error)

    def _own_copy(self, value: Serialized) -> Serialized:
        if not value.contained and not value.locations:
            return value  # nothing to free or release: safe to share
        if any(b is None for b in value.buffers):
            return value  # bytes not here (another node's): rare for errors; share
        copy = Serialized(value.data, [bytes(b) for b in value.buffers], value.contained,
                          value.is_error)
        self.hold_ids(copy.contained)
        return copy

    def fail_pending(self, ids: tuple[int, ...], error: BaseException) -> None:
        """Resolve those of ``ids`` still pending with ``error`` (made if not yet known)."""
        value = error_value(error)
        for id_ in self._ends(ids):
            entry = self.objects.get(id_)
            if entry is None:
                self.objects.create(id_, 1)  # the submitter's ref, not yet counted
            elif entry.value is not None:
                continue
            self.objects.set_value(id_, value)
