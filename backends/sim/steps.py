"""The menu of runnable steps, and virtual time.

At each turn the controller lists every step that could run now (:meth:`Steps._runnable`):
the driver continuing, a paused worker resuming or timing out, a task starting, an actor's
constructor, a call or a coroutine step, virtual time advancing to the next timer, and,
while the fault plan allows, the faults that could land. Each step has a key that keeps
its age across turns, so the list is ordered the same way in every replay. Separate
because this is what makes the choice points explicit: adding a kind of step means adding
it here, and nowhere else decides what may run.
"""

from __future__ import annotations

import asyncio
import functools
import operator
from typing import Any

from actorlib.backends.sim.choosing import Item
from actorlib.backends.sim.generators import CallLoop
from actorlib.backends.sim.loop import task_of
from actorlib.backends.sim.running import Running, SimHost, SimTask
from actorlib.backends.sim.threads import Wait

__all__ = ["DRIVER_STEP", "Steps"]


class Steps(Running):
    """What may run now, as (key, name, action) items for the choice source."""

    def __init__(self) -> None:
        super().__init__()
        self._driver_wait: Wait | None = None
        #: Tasks queued since the last turn, their ages not yet given (``_age_tasks``).
        self._unaged: list[SimTask] = []

    def _runnable(self) -> tuple[list[Item], list[Item]]:
        items: list[Item] = []
        faults: list[Item] = []
        now = self.clock.now
        driver = self._driver_wait
        if driver is not None:
            ready = driver.ready  # (called through a local: a slot's function is a slow read)
            if ready() or (driver.deadline is not None and driver.deadline <= now):
                items.append((("driver",), "driver continues", DRIVER_STEP))
        for worker in self._workers if self._parked else ():
            wait = worker.wait
            if wait is None:
                continue
            if wait.ready():
                items.append(((
                    "resume", wait.serial), f"{worker.label} resumes",
                    functools.partial(self._resume, worker, False),
                ))
            elif wait.deadline is not None and wait.deadline <= now:
                items.append(((
                    "timeout", wait.serial), f"{worker.label} times out",
                    functools.partial(self._resume, worker, True),
                ))
        head = len(items)  # listed before the tasks waiting to start (``_pending``)
        # (An idle host lists nothing: not even a call to ``_host_items`` for it; a sync
        # one is not even looked at again until its next call: see ``_listing``.)
        if not self._listing_sorted:
            self._sort_listing()
        idle = None
        for host in self._listing:
            if host.loop is None:
                if not host.queues and host.state in _SETTLED:
                    idle = [host] if idle is None else [*idle, host]
                    continue
            elif host.state == "ready" and not host.queues and not host.loop.has_ready():
                continue
            self._host_items(host, items)
        if idle is not None:
            for host in idle:
                del self._listing[host]
        for key, (name, deliver) in self._delayed.items() if self._delayed else ():
            items.append((key, name, functools.partial(self._deliver_late, key, deliver)))
        wake = (self._next_wake() if (not (items or self._pending) or self.settings.explore_time)
                else None)
        if wake is not None and wake > now and not (self._preempt > 0 and self._detached()):
            # (With a preempted step running on, time moves at real time's pace instead:
            # ``_pass_real_time``.)
            items.append((("clock", wake), f"time advances to {wake:g}s",
                          functools.partial(self._advance, wake)))
        if self._faulty and self.faults_used < self.faults.max_faults:
            if self.faults.kill_worker:
                for task in self._started.values():
                    if task.worker is not None and task.worker.wait is not None:
                        faults.append((
                            ("kill", task.run.spec.task_id), f"worker running {task.label} killed",
                            functools.partial(self._kill_task, task),
                        ))
            if self.faults.restart_actor:
                for host in self._hosts.values():
                    if host.state == "ready":
                        faults.append((
                            ("die", host.spec.actor_id, host.incarnation),
                            f"actor {host.label} killed (its worker died)",
                            functools.partial(self._kill_actor, host),
                        ))
            if self.faults.lose_node:
                for node in self.nodes[1:]:  # never the driver's
                    faults.append((
                        ("node", node), f"node {node} lost (its workers died)",
                        functools.partial(self._lose_node, node),
                    ))
            if self.faults.lose_object:
                for first, paths, name in self.sim_store.stored():
                    faults.append((
                        ("object", first), f"{name} lost",
                        functools.partial(self._lose_object, paths),
                    ))
        # Each step's age: kept from the turns it was listed at, the next ones for the new
        # in the order listed (the steps before the tasks, the tasks, the rest). A task
        # waiting to start is listed at every turn, so it keeps its age on itself: the
        # tasks are then in age order as queued, and a turn of only tasks (a burst) needs
        # no lookup at all. Other steps' ages are looked up by key and compared in C.
        pending = self._pending
        born = self._born
        if not items:
            if born:
                self._born = {}
            if self._unaged:
                self._births = self._age_tasks(self._births)
            return (list(self._pending_items.values()) if pending else items), faults
        if len(items) == 1 and not pending:  # one step, no order to keep, one age
            key = items[0][0]
            if len(born) != 1 or key not in born:
                age = born.get(key)
                if age is None:
                    age = self._births
                    self._births = age + 1
                born.clear()
                born[key] = age
            return items, faults
        keys = list(map(_KEY_OF, items))
        ages: list[Any] = list(map(born.get, keys))  # (None: new; filled in below)
        births = self._births
        new = ages.count(None)
        at = 0
        for _ in range(new):  # (no ``index`` past the last: its ValueError costs)
            at = ages.index(None, at)
            if at >= head and self._unaged:
                births = self._age_tasks(births)
            ages[at] = births
            births += 1
        if self._unaged:
            births = self._age_tasks(births)
        self._births = births
        self._born = dict(zip(keys, ages, strict=True))
        if pending:
            items.extend(self._pending_items.values())
            ages.extend(map(_AGE_OF, pending.values()))
        if ages != sorted(ages):  # (ages are unique: only they are compared)
            items = [item for _, item in sorted(zip(ages, items, strict=True), key=_FIRST)]
        return items, faults

    def _age_tasks(self, births: int) -> int:
        """The ages of the tasks queued since the last turn, in the order queued; the
        next age to give."""
        pending = self._pending
        for task in self._unaged:
            if task.age is None and pending.get(task.run.spec.task_id) is task:
                task.age = births
                births += 1
        self._unaged.clear()
        return births

    def _pend(self, task: SimTask) -> None:
        """``task`` waits to start: its step, made once, listed at every turn until then.

        The step names the task by id, not by the task itself: a task holding a step that
        holds it would be a reference cycle, and every task's record, run and outcome
        would wait for the garbage collector (14% of a step) instead of going when the
        task ends."""
        spec = task.run.spec
        task.item = (
            ("task", spec.task_id, spec.attempt),
            f"task {task.label} starts"
            + (f" (attempt {spec.attempt + 1})" if spec.attempt else ""),
            functools.partial(self._start_task, spec.task_id),
        )
        self._pending.pop(spec.task_id, None)  # (queued last, as its age will say)
        self._pending[spec.task_id] = task
        self._pending_items.pop(spec.task_id, None)
        self._pending_items[spec.task_id] = task.item
        self._unaged.append(task)

    def _sort_listing(self) -> None:
        """Put ``_listing`` back in the order of ``_hosts`` (a sync host came back)."""
        self._listing = dict.fromkeys(sorted(self._listing, key=_seq))
        self._listing_sorted = True

    def _host_items(self, host: SimHost, items: list[Item]) -> None:
        if host.state == "new":
            items.append((
                ("ctor", host.spec.actor_id, host.incarnation),
                f"{host.label}.__init__" + (" (restart)" if host.incarnation > 1 else ""),
                functools.partial(self._construct, host),
            ))
            return
        if host.state != "ready" or host.worker is not None:
            return
        grouped = host.spec.concurrency_groups
        made = host.items
        for caller, queue in host.queues.items():
            run = queue[0]
            spec = run.spec
            if grouped:
                group = host.group_of(spec)
                if group in host.limits and host.busy[group] >= host.limits[group]:
                    continue
            elif host.busy[""] >= host.limits[""]:
                continue
            item = made.get(spec.call_id)
            if item is None:
                item = made[spec.call_id] = (
                    ("call", spec.call_id, spec.attempt),
                    f"{host.label}.{spec.method} from {self._caller(caller)}",
                    functools.partial(self._start_call, host, caller),
                )
            items.append(item)
        loop = host.loop
        if loop is not None and loop.has_ready():
            seen: set[asyncio.Task[Any]] = set()
            steps = host.step_items
            for handle in loop.ready_handles():
                task = task_of(handle)
                if task is None or task in seen:
                    continue
                seen.add(task)
                item = steps.get(task)
                if item is None:  # made once a coroutine, listed at every turn it is ready
                    serial = host.serial.get(task)
                    if serial is None:
                        serial = host.serial[task] = len(host.serial) + 1
                    name = host.tasks.get(task) or f"{host.label} coroutine {serial}"
                    item = steps[task] = (
                        ("step", host.spec.actor_id, host.incarnation, serial),
                        f"{name} resumes", functools.partial(self._async_step, host, task),
                    )
                items.append(item)

    def _deliver_late(self, key: tuple[str, int], deliver: Any) -> None:
        del self._delayed[key]
        deliver()

    def _next_wake(self) -> float | None:
        times: list[float] = []
        for host in self._async_hosts:
            if host.loop is not None and host.state != "dead":
                when = host.loop.next_timer()
                if when is not None:
                    times.append(when)
        holders: list[SimTask | CallLoop] = [*self._started.values(), *self._call_loops]
        for task in holders:
            if task.loop is not None:
                when = task.loop.next_timer()
                if when is not None:
                    times.append(when)
        for worker in self._workers:
            if worker.wait is not None and worker.wait.deadline is not None:
                times.append(worker.wait.deadline)
        driver = self._driver_wait
        if driver is not None and driver.deadline is not None:
            times.append(driver.deadline)
        return min(times) if times else None

    def _pass_real_time(self, seconds: float) -> None:
        """While preempted work runs on, virtual time moves as real time does (up to the
        next timer): a timeout it outlasts still fires, no sooner than in real time."""
        wake = self._next_wake()
        if wake is not None and wake > self.clock.now:
            self.clock.now = min(wake, self.clock.now + seconds)

    def _advance(self, when: float) -> None:
        self.clock.now = max(self.clock.now, when)


_SETTLED = frozenset({"ready", "dead"})  # a sync host in these lists a step only for a call


_AGE_OF = operator.attrgetter("age")
_FIRST = _KEY_OF = operator.itemgetter(0)


def _seq(host: SimHost) -> int:
    return host.seq


def DRIVER_STEP() -> None:
    """Never called: the step that ends the driver's wait."""
