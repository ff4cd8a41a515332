"""The backend's way into the core: :class:`RuntimeEvents`, the core's ``CoreEvents``.

A backend reports from its own threads and callbacks (a task finished, a worker died, a
node joined); each report is posted to the core's loop, to run there in order after
everything posted before it, under the guard that names the work it concerns
(:mod:`actorlib.core.guards`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from actorlib.core.records import Outcome, StreamItem
from actorlib.core.serialization import Serialized

if TYPE_CHECKING:
    from actorlib.core.runtime import Runtime


class RuntimeEvents:
    """The core's side of :class:`actorlib.backends.base.CoreEvents`: hand events to the loop.

    Each event runs under a guard naming the work it concerns: a bug in a handler fails
    that work alone (see :mod:`actorlib.core.guards`), never the whole core.
    """

    __slots__ = ("_guard", "_guard_call", "_guard_task", "_post_inline", "_rt", "client", "post")

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        #: ``CoreEvents.post``: the loop's own, with no frame of ours around it (every
        #: message of a process worker comes this way).
        self.post: Callable[..., None] = rt._loop.post
        # A task's or call's end may run the core on the reporting thread (inline mode).
        self._post_inline = rt._loop.post_inline_args
        self._guard = rt.guard  # made once with the runtime, never replaced
        # Bound once: every task's and call's end reads them (each read of a bound method
        # is a slow lookup on CPython 3.11).
        self._guard_task = rt.guard.task_arg
        self._guard_call = rt.guard.call
        self.client = rt

    def task_finished(self, outcome: Outcome) -> None:
        post = self._post_inline  # (called through a local: a slot's method is a slow read)
        post(self._guard_task, (outcome.id, self._rt.tasks.finished, outcome))

    def task_crashed(self, task_id: int, attempt: int, error: BaseException) -> None:
        rt = self._rt
        self.post(self._guard.task, task_id, rt.tasks.crashed, task_id, attempt, error)

    def task_recalled(self, task_id: int, attempt: int) -> None:
        rt = self._rt
        self.post(self._guard.task, task_id, rt.tasks.recalled, task_id, attempt)

    def actor_started(self, actor_id: int, incarnation: int) -> None:
        rt = self._rt
        self.post(self._guard.actor, actor_id, rt.actors.started, actor_id, incarnation)

    def actor_init_failed(self, actor_id: int, incarnation: int, error: Serialized) -> None:
        rt = self._rt
        self.post(
            self._guard.actor, actor_id, rt.actors.init_failed, actor_id, incarnation, error
        )

    def item_produced(self, item: StreamItem) -> None:
        self.post(self._guard.stream_item, item)

    def call_finished(self, outcome: Outcome) -> None:
        post = self._post_inline  # (as in ``task_finished``)
        post(self._guard_call, (outcome.id, self._rt.actors.call_finished, outcome))

    def actor_died(self, actor_id: int, incarnation: int, error: BaseException) -> None:
        rt = self._rt
        self.post(self._guard.actor, actor_id, rt.actors.died, actor_id, incarnation, error)

    def node_added(
        self, node_id: str, resources: dict[str, float], labels: dict[str, str] | None = None
    ) -> None:
        self.post(self._rt.scheduler.add_node, node_id, dict(resources), labels)

    def node_removed(self, node_id: str) -> None:
        """After the backend reported the node's tasks crashed and its actors dead."""
        self.post(self._rt.scheduler.remove_node, node_id)
        self.post(self._rt.groups.node_removed, node_id)

    def objects_lost(self, lost: Callable[[Serialized], bool], why: str) -> None:
        self.post(self._rt.lineage.objects_lost, lost, why)

    def job_started(self, job: int, pid: int, entrypoint: str, host: str) -> None:
        self.post(self._rt._start_job, job, pid, entrypoint, host)

    def job_ended(self, job: int) -> None:
        self.post(self._rt._end_job, job)

    @property
    def view(self) -> RuntimeEvents:
        return self  # also the core's ``CoreView``: the reads and the lending below

    def job_of_work(self, id_: int) -> int | None:
        return self._rt.job_of_work(id_)

    def node_available(self, node_id: str) -> dict[str, float] | None:
        node = self._rt.scheduler.nodes.get(node_id)
        return dict(node.available) if node is not None else None

    def debug_state(self) -> dict[str, Any]:
        return self._rt.debug_state()

    def idle(self) -> bool:
        return self._rt._loop.idle()

    def lend(self, borrower: Callable[[], bool]) -> bool:
        return self._rt._loop.lend(borrower)

    def drain(self) -> None:
        self._rt._loop.drain_lent()

    def queued(self) -> bool:
        # Reference counts changing (refs dropped after a drive) run no user code.
        rt = self._rt
        bookkeeping = (rt._add_ref, rt._drop_ref)
        return any(fn not in bookkeeping for fn in rt._loop.queued())

    def reclaim(self) -> None:
        self._rt._loop.reclaim()
