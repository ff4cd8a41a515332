"""Lineage: making lost objects again by re-running the tasks that made them.

When a task's results live in a node's store (not inline), each result's entry keeps the
task's spec if re-running it could make them again (:func:`remember`). When a node dies
its bytes are gone: :meth:`Lineage.objects_lost` queues those tasks again, their results
pending meanwhile, and fails the objects nothing can rebuild with ``ObjectLostError``.

Runs on the core loop only; no locks.
"""

from __future__ import annotations

from collections.abc import Callable, Container

from actorlib.core.ids import id_hex
from actorlib.core.objects import ObjectTable
from actorlib.core.serialization import Serialized
from actorlib.core.specs import TaskSpec
from actorlib.core.values import error_value
from actorlib.exceptions import ObjectLostError, ObjectReconstructionFailedError


def rebuildable(spec: TaskSpec) -> bool:
    """Whether re-running ``spec`` could make its values again after they are lost.

    Only tasks whose arguments are all inline: arguments held in a store (refs, large
    buffers) are released when the task ends, so they cannot be replayed.
    """
    args = spec.args
    return spec.max_retries != 0 and not args.deps and not args.held and not (
        args.payload is not None and args.payload.locations
    )


def remember(objects: ObjectTable, spec: TaskSpec) -> None:
    """``spec`` made values that live in a store (now set on its returns): if the task
    can be re-run, its returns keep the spec to be made again."""
    if rebuildable(spec):
        for rid in spec.return_ids:
            entry = objects.get(rid)
            if entry is not None:
                entry.lineage = spec


class Lineage:
    """Rebuilds lost objects by re-running their tasks."""

    def __init__(
        self, objects: ObjectTable, live: Container[int], rerun: Callable[[TaskSpec], None]
    ) -> None:
        """``live``: the ids of tasks running now; ``rerun``: queue a task again, its
        arguments in hand (``Tasks.records`` and ``Tasks.rerun``)."""
        self.objects = objects
        self._live = live
        self._rerun = rerun

    def objects_lost(self, lost: Callable[[Serialized], bool], why: str) -> None:
        """Values whose bytes are gone (their node died): rebuild them, or fail them."""
        objects = self.objects
        rebuild: dict[int, TaskSpec] = {}
        for id_, entry in list(objects.entries.items()):
            value = entry.value
            if value is None or not value.locations or not lost(value):
                continue
            spec = entry.lineage
            if spec is not None:
                if spec.task_id in self._live:  # already being made again
                    objects.reset(id_)
                else:
                    rebuild[spec.task_id] = spec
                continue
            entry.value = None
            if entry.producer is None:  # a put: nothing can make it again (Ray's error too)
                error: ObjectLostError = ObjectLostError(
                    f"Object {id_hex(id_)} was lost: {why}. It was put, so nothing can "
                    "make it again.")
            else:
                error = ObjectReconstructionFailedError(
                    f"Object {id_hex(id_)} was lost: {why}. The task or actor call that "
                    "made it cannot be re-run (an actor call, or a task with "
                    "max_retries=0 or arguments held in the object store).")
            objects.set_value(id_, error_value(error))
        for spec in rebuild.values():
            for rid in spec.return_ids:
                objects.reset(rid)
            spec.attempt = 0
            self._rerun(spec)
