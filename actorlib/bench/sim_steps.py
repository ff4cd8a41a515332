"""``sim_steps``: how many steps per second the deterministic ``sim`` backend takes.

A step is one choice of the simulator (a call delivered, a task started, a coroutine
resumed, the driver's ``get`` returning); the rate is the simulator's own step count
over wall-clock time, for three simple kinds of work: trivial calls to one sync actor,
trivial tasks, and an async actor's coroutine resuming at ``await asyncio.sleep(0)``.
The extras give the process's CPU time per step, which a loaded machine does not
inflate as it does wall-clock time. Only meaningful on ``--backend sim``; skipped
elsewhere.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from actorlib.bench.workload_kit import BATCH, Actor, Env, SkipWorkload, small_value

if TYPE_CHECKING:
    from actorlib.bench.runner import Harness

#: ``await asyncio.sleep(0)`` per call of the coroutine kind: one step each.
YIELDS = 1000


class Yielder:
    async def spin(self, n: int) -> int:
        for _ in range(n):
            await asyncio.sleep(0)
        return n


def sim_steps(env: Env, h: Harness) -> None:
    if env.target != "actorlib" or env.backend != "sim":
        raise SkipWorkload("measures the sim backend: run with --backend sim")
    from actorlib import testing

    api = env.api
    actor = api.remote(Actor).remote()
    task = api.remote(small_value)
    yielder = api.remote(Yielder).remote()
    kinds: dict[str, Callable[[], Any]] = {
        "calls": lambda: api.get([actor.small_value.remote() for _ in range(BATCH)]),
        "tasks": lambda: api.get([task.remote() for _ in range(BATCH)]),
        "coroutine": lambda: api.get(yielder.spin.remote(YIELDS)),
    }
    duration = h.settings.duration

    def measure() -> tuple[dict[str, float], dict[str, Any]]:
        rates: dict[str, float] = {}
        cpu: dict[str, float] = {}
        for kind, step in kinds.items():
            run = testing.current()
            steps0, t0, cpu0 = run.steps, time.perf_counter(), time.process_time()
            while True:
                step()
                elapsed = time.perf_counter() - t0
                if elapsed >= duration:
                    break
            steps = run.steps - steps0
            rates[f"sim_steps.{kind}"] = steps / elapsed
            # CPU time of the whole process a step (all its threads): what the rate
            # would be on a CPU of its own, on a loaded machine.
            cpu[f"{kind}_cpu_us_per_step"] = round(
                (time.process_time() - cpu0) / steps * 1e6, 1
            )
        return rates, cpu

    units = dict.fromkeys(
        ("sim_steps.calls", "sim_steps.tasks", "sim_steps.coroutine"), "steps/s"
    )
    h.sample(measure, units=units, note=f"{BATCH} calls or tasks, or {YIELDS} awaits, a get")
    for handle in (actor, yielder):
        api.kill(handle)
