"""A core's task machinery (:class:`actorlib.core.tasks.Tasks` and the scheduler) driven
event by event, with a scripted backend: for races the real backends cannot be paused in.
"""

from __future__ import annotations

from typing import Any

from actorlib.core.actors import Actors
from actorlib.core.invariants import problems
from actorlib.core.objects import ObjectTable
from actorlib.core.placement_groups import PlacementGroups
from actorlib.core.records import ActorStart, CallRun, TaskRun
from actorlib.core.scheduler import Scheduler
from actorlib.core.specs import Args, CodeRef, TaskSpec
from actorlib.core.tasks import TaskRecord, Tasks
from actorlib.core.values import Values


def _unguarded(_task_id: int, fn: Any, *args: Any) -> None:
    fn(*args)


class ScriptedBackend:
    """Records what the core asks; answers only when the test says so."""

    pipeline_depth = 2
    has_locality = False
    takes_back = True

    def __init__(self, pipelines: bool = True) -> None:
        self.pipelines = pipelines
        self.runs: list[TaskRun] = []
        self.recalls: list[int] = []
        self.cancels: list[int] = []
        self.forced: list[bool] = []  # each cancel's force
        self.taken_back: list[int] = []
        self.can_take_back = True  # take_back's answer: not started yet
        self.starts: list[ActorStart] = []
        self.calls: list[CallRun] = []
        self.stops: list[tuple[int, bool]] = []

    def run_task(self, run: TaskRun) -> None:
        self.runs.append(run)

    def start_actor(self, start: ActorStart) -> None:
        self.starts.append(start)

    def run_call(self, run: CallRun) -> None:
        self.calls.append(run)

    def stop_actor(self, actor_id: int, *, force: bool) -> None:
        self.stops.append((actor_id, force))

    def recall(self, task_id: int) -> None:
        self.recalls.append(task_id)

    def cancel(self, id: int, *, force: bool) -> None:
        self.cancels.append(id)
        self.forced.append(force)

    def take_back(self, task_id: int) -> bool:
        if self.can_take_back:
            self.taken_back.append(task_id)
        return self.can_take_back


class Core:
    def __init__(self, cpus: float = 1.0, pipelines: bool = True) -> None:
        self.backend = ScriptedBackend(pipelines)
        self.objects = ObjectTable(lambda value: None, lambda ids: None)
        self.values = Values(self.objects, lambda value: None, lambda ids: None,
                             lambda ids: None)
        self.scheduler = Scheduler()
        self.scheduler.add_node("node", {"CPU": cpus})
        backend: Any = self.backend
        parts = (self.objects, self.values, self.scheduler, backend, lambda c, o: 0)
        self.tasks = Tasks(*parts)
        self.actors = Actors(*parts)
        self.groups = PlacementGroups(self.objects, self.scheduler, self.tasks, self.actors,
                                      lambda c, o: 0)

    def submit(
        self, task_id: int, limit: tuple[str, int] | None = None, max_calls: int = 0,
        cpus: float = 1.0,
    ) -> TaskSpec:
        spec = TaskSpec(task_id, CodeRef(1, "work", b""), Args(None), (), 0, {"CPU": cpus},
                        name=f"work-{task_id}", concurrency=limit, max_calls=max_calls)
        self.tasks.submit(spec)
        self.schedule()
        return spec

    def schedule(self) -> None:
        """What the runtime does after each batch of events (a pass due or not)."""
        self.tasks.dispatch_handed(_unguarded)
        self.scheduler.dirty = False
        if self.groups.waiting:
            self.groups.reserve()
        for work, placement in self.scheduler.place_ready():
            if isinstance(work, TaskRecord):
                self.tasks.dispatch(work, placement)
            else:
                self.actors.dispatch(work, placement)
        self.tasks.pipeline()

    def schedule_as_runtime(self) -> bool:
        """What ``Runtime._schedule`` does: a placement pass only when one is due, else
        only followers for new leaders. True if a pass ran."""
        self.tasks.dispatch_handed(_unguarded)
        if not self.scheduler.dirty:
            if self.tasks.new_leaders:
                self.tasks.lead()
            return False
        self.schedule()
        return True

    def problems(self) -> list[str]:
        return problems(self.scheduler, self.tasks, self.actors, groups=self.groups)

    @property
    def free_cpus(self) -> float:
        return self.scheduler.nodes["node"].available["CPU"]
