"""The object table: every object's state, value, reference count and watchers.

An object is *pending* until its value (or error) arrives, then *ready*. It lives while
its count is above zero. Each live ``ObjectRef`` anywhere counts one; so does each pending
task that takes it as an argument, and each stored value or argument list that contains
it. When the count drops to zero the value is released to the store, and the ids it
contained are released in turn.

Runs on the core loop only; no locks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from actorlib.core.serialization import Serialized

Watcher = Callable[[int, Serialized], None]


def first_ready(
    ids: list[int], read: Callable[[int], Serialized | None], need: int, fail_fast: bool
) -> dict[int, Serialized]:
    """A client's ``ready_values`` from its ``ready_value``: ``ids`` in order, stopping
    at ``need`` values or (``fail_fast``) at the first error."""
    got: dict[int, Serialized] = {}
    for id_ in ids:
        value = read(id_)
        if value is not None:
            got[id_] = value
            if len(got) == need or (fail_fast and value.is_error):
                break
    return got


class ObjectEntry:
    __slots__ = ("lineage", "producer", "refs", "value", "watchers")

    def __init__(self, refs: int, producer: int | None) -> None:
        # ``Actors.submit_call`` and ``Tasks.submit`` set these without calling the class:
        # a slot added here goes there too.
        self.refs = refs
        self.value: Serialized | None = None
        self.watchers: list[Watcher] | None = None
        # The id of the task or call that makes it, if any; kept once it resolves, so a
        # ref rebuilt from the id alone (``ObjectRef.from_hex``) still finds its task.
        self.producer = producer
        self.lineage: Any = None  # the TaskSpec that can make the value again, if any


class ObjectTable:
    def __init__(
        self,
        free_value: Callable[[Serialized], None],
        release_ids: Callable[[tuple[int, ...]], None],
        unread_error: Callable[[int, Serialized, int | None], None] | None = None,
        job_of: Callable[[int], int | None] | None = None,
    ) -> None:
        """``unread_error`` is called with the id, the error value nobody read and its
        job, as it is dropped (before its bytes are freed), once: Ray reports such errors,
        so they are not lost. ``job_of(producer)``: the job of the task or call that made
        an error, asked as the error arrives (the producer may be gone when it dies)."""
        self.entries: dict[int, ObjectEntry] = {}
        self._free_value = free_value
        self._release_ids = release_ids
        self._unread_error = unread_error
        self._job_of = job_of
        self.error_jobs: dict[int, int] = {}  # error objects alive -> their job, if known
        #: Called once when the object with that id dies (a stream's consumed slots).
        self.drop_hooks: dict[int, Callable[[], None]] = {}

    def __contains__(self, id_: int) -> bool:
        return id_ in self.entries

    def create(self, id_: int, refs: int = 1, producer: int | None = None) -> None:
        self.entries[id_] = ObjectEntry(refs, producer)

    def get(self, id_: int) -> ObjectEntry | None:
        return self.entries.get(id_)

    def ready(self, id_: int) -> bool:
        entry = self.entries.get(id_)
        return entry is not None and entry.value is not None

    def set_value(self, id_: int, value: Serialized) -> None:
        """Resolve a pending object; a value for an unknown or resolved id is released."""
        entry = self.entries.get(id_)
        if entry is None or entry.value is not None:
            self._free_value(value)
            self._release_ids(value.contained)
            return
        entry.value = value
        if value.is_error and entry.producer is not None and self._job_of is not None:
            job = self._job_of(entry.producer)
            if job is not None:
                self.error_jobs[id_] = job
        watchers = entry.watchers
        entry.watchers = None
        if watchers:
            for watcher in watchers:
                watcher(id_, value)
        # A watcher may have dropped the last ref already (a task that failed on this
        # value releases its arguments at once), which dropped the entry.
        if entry.refs <= 0:
            self._drop(id_, entry)

    def watch(self, id_: int, watcher: Watcher) -> bool:
        """Call ``watcher`` when ``id_`` is ready (now, if it is). False if unknown.
        (``Runtime._watch`` repeats this inline: a change here goes there too.)"""
        entry = self.entries.get(id_)
        if entry is None:
            return False
        if entry.value is not None:
            watcher(id_, entry.value)
        elif entry.watchers is None:
            entry.watchers = [watcher]
        else:
            entry.watchers.append(watcher)
        return True

    def unwatch(self, id_: int, watcher: Watcher) -> None:
        entry = self.entries.get(id_)
        if entry is not None and entry.watchers:
            try:
                entry.watchers.remove(watcher)
            except ValueError:
                pass

    def add_ref(self, id_: int, n: int = 1) -> bool:
        entry = self.entries.get(id_)
        if entry is None:
            return False
        entry.refs += n
        return True

    def drop_ref(self, id_: int) -> bool:
        entry = self.entries.get(id_)
        if entry is None:
            return False
        entry.refs -= 1
        if entry.refs <= 0:
            value = entry.value
            if value is None:
                return True  # pending: dropped as it resolves (``set_value``)
            if (
                value.is_error or value.locations or value.contained or self.drop_hooks
                or self.error_jobs
            ):
                self._drop(id_, entry)
            else:  # ``_drop``'s work for a plain inline value (nearly every one)
                del self.entries[id_]
        return True

    def _drop(self, id_: int, entry: ObjectEntry) -> None:
        if self.entries.get(id_) is not entry:
            return  # dropped already, from a watcher further up the stack
        del self.entries[id_]
        if self.drop_hooks:
            hook = self.drop_hooks.pop(id_, None)
            if hook is not None:
                hook()
        value = entry.value
        job = self.error_jobs.pop(id_, None) if self.error_jobs else None
        if value is not None:
            if value.is_error and not value.read and self._unread_error is not None:
                value.read = True  # shared by several ids (num_returns): reported once
                self._unread_error(id_, value, job)
            if value.locations:  # a value without any holds nothing a store must free
                self._free_value(value)
            if value.contained:
                self._release_ids(value.contained)

    def on_drop(self, id_: int, hook: Callable[[], None]) -> None:
        """Call ``hook`` when ``id_`` dies (it must exist)."""
        self.drop_hooks[id_] = hook

    def orphaned_pending(self, id_: int) -> bool:
        """A pending object nobody refers to (its producer may skip storing it)."""
        entry = self.entries.get(id_)
        return entry is not None and entry.refs <= 0 and entry.value is None

    def discard(self, id_: int) -> None:
        """Forget a pending object whose last ref is gone and whose producer gave up."""
        entry = self.entries.get(id_)
        if entry is not None and entry.refs <= 0 and entry.value is None:
            del self.entries[id_]

    def reset(self, id_: int) -> None:
        """Make a ready object pending again (its bytes were lost; it is being rebuilt)."""
        entry = self.entries.get(id_)
        if entry is not None and entry.value is not None:
            entry.value = None

    def live_ids(self) -> set[int]:
        return set(self.entries)

    def stats(self) -> dict[str, Any]:
        ready = sum(1 for e in self.entries.values() if e.value is not None)
        return {"objects": len(self.entries), "ready": ready}
