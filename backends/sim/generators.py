"""Generators under the simulator: a producer whose items are steps, and the loop of an
async generator a sync actor's method returned.

A sync generator's producer pauses after each item, to be resumed when the scheduler
picks it, so a stream's items interleave with everything else; backpressure is a wait
the scheduler sees (``Backend.items_consumed`` advances the gate). An async generator
runs as any coroutine does: a step at each ``await``. Separate because it adapts the
runners' streaming (``backends.runner.streaming``) to the simulator's steps.
"""

from __future__ import annotations

import _thread
import functools
from typing import TYPE_CHECKING, Any

from actorlib.backends.runner.streaming import Producer
from actorlib.backends.sim.loop import SimLoop
from actorlib.backends.sim.threads import SimWorker, Wait
from actorlib.core.execution_context import current_execution
from actorlib.exceptions import TaskCancelledError

if TYPE_CHECKING:
    from actorlib.backends.sim.running import Running

__all__ = ["CallLoop", "SimProducer"]


class SimProducer(Producer):
    """A generator's items under the simulator: each item of a sync generator a step of
    its own (the producer pauses after each, to be resumed when the scheduler picks it),
    and backpressure a wait the scheduler sees, instead of a thread blocked on a
    condition. An async generator runs as any coroutine: a step at each ``await``."""

    def __init__(self, sim: Running, spec: Any, work_id: int, name: str) -> None:
        super().__init__(spec, work_id, name, sim.events, sim.store, sim.gates)
        self.sim = sim

    def drain(self, gen: Any) -> Any:
        sim = self.sim
        worker = sim._by_ident[_thread.get_ident()]
        threshold = self._threshold()
        gate = self.gates.open(self.work_id)
        try:
            index = 0
            while True:
                try:
                    item = sim._user(next, gen)
                except StopIteration:
                    break
                self._emit(index, item)
                index += 1
                sim._park(worker, Wait(
                    functools.partial(_may_produce, gate, index, threshold), None, [],
                ))
                ctx = current_execution.get()
                if ctx is not None and ctx.cancelled:  # cancelled between two items
                    gen.close()
                    raise TaskCancelledError(f"{self.name} was cancelled.")
        finally:
            self.gates.close(self.work_id, gate)
        return self._result()


def _may_produce(gate: Any, produced: int, threshold: int) -> bool:
    """Whether a producer that has produced ``produced`` items may go on (backpressure)."""
    return threshold <= 0 or produced - gate.consumed < threshold


class CallLoop:
    """The loop of an async generator a sync actor's method returned, while it runs."""

    __slots__ = ("loop", "worker")

    def __init__(self, worker: SimWorker | None) -> None:
        self.loop: SimLoop | None = None
        self.worker = worker
