"""What a deadlock report says: who waits for what, and the cycle of waits.

When nothing can run and the driver still waits, every piece of work is blocked on
another: the driver or a task paused in ``get`` waits for the objects other work will
produce, an async actor's coroutine awaits them, a call queued on an actor waits for the
calls that keep the actor busy. Those waits form a graph (the *wait-for graph*); a
deadlock is a cycle in it (``outer`` waits for ``inner``, queued behind ``outer``), or a
chain that ends in an object nothing in the simulation will produce. This module builds
the graph from the simulator's state and writes it out, the cycle first. Separate from
the controller because it only reads the state, once, when the run has already failed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from actorlib.core.ids import id_hex

if TYPE_CHECKING:
    from actorlib.backends.sim.backend import SimBackend

__all__ = ["deadlock_report"]

#: A piece of work: ("driver",), ("task", id), ("call", id), ("ctor", actor id).
Key = tuple[Any, ...]


class WaitGraph:
    """Who waits for whom: ``edges[a]`` lists ``(b, why)``, ``b`` None for an object
    nothing in the simulation produces."""

    def __init__(self) -> None:
        self.labels: dict[Key, str] = {}
        self.edges: dict[Key, list[tuple[Key | None, str]]] = {}
        self.producers: dict[int, Key] = {}

    def node(self, key: Key, label: str) -> None:
        self.labels.setdefault(key, label)
        self.edges.setdefault(key, [])

    def waits_for_objects(self, key: Key, ids: Iterable[int]) -> None:
        for id_ in ids:
            producer = self.producers.get(id_)
            if producer is None:
                self.edges[key].append((None, f"object {id_hex(id_)}, which nothing running "
                                               "or queued here produces"))
            else:
                self.edges[key].append((producer, self.labels[producer]))

    def cycle(self, start: Key) -> list[Key] | None:
        """A cycle reachable from ``start`` (its nodes in wait order), if there is one."""
        path: list[Key] = []
        on_path: set[Key] = set()
        done: set[Key] = set()

        def visit(key: Key) -> list[Key] | None:
            path.append(key)
            on_path.add(key)
            for target, _ in self.edges.get(key, ()):
                if target is None or target in done:
                    continue
                if target in on_path:
                    return path[path.index(target):]
                found = visit(target)
                if found is not None:
                    return found
            path.pop()
            on_path.discard(key)
            done.add(key)
            return None

        return visit(start)

    def chain(self, start: Key) -> list[str]:
        """The first waits from ``start`` on, up to what nothing here produces."""
        out: list[str] = []
        key: Key | None = start
        seen: set[Key] = set()
        while key is not None and key not in seen and self.edges.get(key):
            seen.add(key)
            target, why = self.edges[key][0]
            out.append(f"{self.labels[key]} waits for {why}")
            key = target
        return out

    def why(self, a: Key, b: Key) -> str:
        for target, reason in self.edges[a]:
            if target == b:
                return reason
        return self.labels[b]


OUTSIDE = "an await on something other than an actorlib object, which nothing here ends"


def build_graph(sim: SimBackend) -> WaitGraph:
    graph = WaitGraph()
    # Every piece of work the simulator holds, and the objects each will produce.
    for task in [*sim._pending.values(), *sim._started.values()]:
        key = ("task", task.run.spec.task_id)
        graph.node(key, f"task {task.label}")
        for rid in task.run.spec.return_ids:
            graph.producers[rid] = key
    workers_of_calls: dict[int, Key] = {}
    for host in sim._hosts.values():
        if host.state == "constructing":
            graph.node(("ctor", host.spec.actor_id), f"{host.label}.__init__")
        for call_id, running in host.running.items():
            if isinstance(running, asyncio.Task):
                label = host.tasks.get(running, f"{host.label} coroutine")
            else:
                label = running.label
                workers_of_calls[id(running)] = ("call", call_id)
            graph.node(("call", call_id), label)
        for queue in host.queues.values():
            for run in queue:
                key = ("call", run.spec.call_id)
                graph.node(key, f"{host.label}.{run.spec.method} (queued on {host.label})")
                for rid in run.spec.return_ids:
                    graph.producers[rid] = key
        for call_id, run in host.runs.items():
            for rid in run.spec.return_ids:
                graph.producers[rid] = ("call", call_id)
    # The waits.
    driver = sim._driver_wait
    if driver is not None:
        graph.node(("driver",), "driver")
        graph.waits_for_objects(("driver",), driver.ids)
    for worker in sim._workers:
        wait = worker.wait
        if wait is None:
            continue
        paused = _key_of_worker(sim, worker, workers_of_calls)
        if paused is None:
            continue
        graph.node(paused, worker.label)
        ids = wait.ids or sim._awaited_on(getattr(worker.owner, "loop", None))
        graph.waits_for_objects(paused, ids)
    for host in sim._hosts.values():
        for call_id, running in host.running.items():
            if isinstance(running, asyncio.Task) and not running.done():
                ids = sim._awaited_by(running)
                graph.waits_for_objects(("call", call_id), ids)
                if not ids and not any(w.owner is host and w.wait for w in sim._workers):
                    graph.edges[("call", call_id)].append((None, OUTSIDE))
        busy = [("call", cid) for cid in host.running]
        if host.state == "constructing":
            busy = [("ctor", host.spec.actor_id)]
        for queue in host.queues.values():
            for run in queue:
                key = ("call", run.spec.call_id)
                for other in busy:
                    graph.edges[key].append(
                        (other, f"{host.label}, busy with {graph.labels[other]}")
                    )
    return graph


def _key_of_worker(sim: SimBackend, worker: Any, calls: dict[int, Key]) -> Key | None:
    owner = worker.owner
    key = calls.get(id(worker))
    if key is not None:
        return key
    run = getattr(owner, "run", None)
    if run is not None:  # a SimTask
        return ("task", run.spec.task_id)
    if getattr(owner, "state", None) == "constructing":
        return ("ctor", owner.spec.actor_id)
    return None


def deadlock_report(sim: SimBackend) -> str:
    graph = build_graph(sim)
    lines = ["deadlock: nothing can run."]
    start = ("driver",) if ("driver",) in graph.edges else next(iter(graph.edges), None)
    cycle = graph.cycle(start) if start is not None else None
    if cycle is not None:
        lines.append("  cycle of waits:")
        for a, b in zip(cycle, [*cycle[1:], cycle[0]], strict=True):
            lines.append(f"    {graph.labels[a]} waits for {graph.why(a, b)}")
    elif start is not None:
        lines.append("  chain of waits (no cycle: it ends outside the simulated work):")
        lines.extend(f"    {line}" for line in graph.chain(start))
    waits = sorted(
        ((key, edges) for key, edges in graph.edges.items() if edges),
        key=lambda item: item[0] != ("driver",),
    )
    if waits:
        lines.append("  every wait:")
        for key, edges in waits:
            lines.append(
                f"    {graph.labels[key]} waits for " + ", ".join(why for _, why in edges)
            )
    return "\n".join(lines)
