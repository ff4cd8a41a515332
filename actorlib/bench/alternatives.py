"""The same workloads on the alternatives: ProcessPoolExecutor, multiprocessing.Pool,
loky, and Ray (when ``import ray`` works); for ``--backend thread``, ThreadPoolExecutor and
pykka (threaded actors), what that backend replaces.

An alternative implements the workloads that have a counterpart in its API, under the
same metric ids as actorlib's; the rest are listed as not applicable. Ray runs actorlib's
own workload code (``env.api`` is the ``ray`` module) except the actorlib-only ones.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from actorlib.bench import workloads as w
from actorlib.bench.fresh_process import idle_memory, startup
from actorlib.bench.workload_kit import BATCH, MAP_ITEMS, Env, small_value, trivial

if TYPE_CHECKING:
    from actorlib.bench.runner import Harness

ALTERNATIVES = ("ray", "processpool", "mp-pool", "loky", "threadpool", "pykka")

_PIP = {
    "ray": "pip install 'actorlib[ray]'", "loky": "pip install loky", "pykka": "pip install pykka",
}


def unavailable_reason(name: str) -> str | None:
    """Why ``name`` cannot run here, or None if it can."""
    if name not in ALTERNATIVES:
        return f"unknown alternative (choose from {', '.join(ALTERNATIVES)})"
    module = {"ray": "ray", "loky": "loky", "pykka": "pykka"}.get(name)
    if module is None:
        return None
    if importlib.util.find_spec(module) is None:
        return f"{module} is not installed ({_PIP[module]})"
    return None


# --------------------------------------------------------------------------- executors

# Startup / idle snippets: start the pool, get a first result, (idle: wait), shut down.
_EXECUTOR_SNIPPET = """
import json, sys, time
t0 = time.perf_counter()
{imports}
t1 = time.perf_counter()
pool = {create}
t2 = time.perf_counter()
{first}
t3 = time.perf_counter()
if {{idle}}:
    print(json.dumps({{{{"ready": True}}}}), flush=True)
    sys.stdin.readline()
t3b = time.perf_counter()
{close}
t4 = time.perf_counter()
print(json.dumps({{{{"import_s": t1 - t0, "init_s": t2 - t1, "first_result_s": t3 - t2,
                  "shutdown_s": t4 - t3b}}}}), flush=True)
"""


def _snippet(imports: str, create: str, first: str, close: str) -> str:
    return _EXECUTOR_SNIPPET.format(imports=imports, create=create, first=first, close=close)


SNIPPETS = {
    "processpool": _snippet(
        "from concurrent.futures import ProcessPoolExecutor",
        "ProcessPoolExecutor({num_cpus})",
        "pool.submit(abs, -1).result()",
        "pool.shutdown()",
    ),
    "mp-pool": _snippet(
        "import multiprocessing",
        "multiprocessing.Pool({num_cpus})",
        "pool.apply(abs, (-1,))",
        "pool.close(); pool.join()",
    ),
    "threadpool": _snippet(
        "from concurrent.futures import ThreadPoolExecutor",
        "ThreadPoolExecutor({num_cpus})",
        "pool.submit(abs, -1).result()",
        "pool.shutdown()",
    ),
    "pykka": _snippet(
        "import pykka\nclass A(pykka.ThreadingActor):\n    def m(self):\n        return 1",
        "A.start()",
        "pool.proxy().m().get()",
        "pykka.ActorRegistry.stop_all()",
    ),
    "loky": _snippet(
        "import loky",
        "loky.get_reusable_executor(max_workers={num_cpus})",
        "pool.submit(abs, -1).result()",
        "pool.shutdown()",
    ),
}


def _executor_tasks_sync(env: Env, h: Harness) -> None:
    pool = env.extra["pool"]
    h.timed("tasks_sync", lambda: pool.submit(small_value).result(), unit="tasks/s")


def _executor_tasks_async(env: Env, h: Harness) -> None:
    pool = env.extra["pool"]

    def step() -> None:
        futures = [pool.submit(small_value) for _ in range(BATCH)]
        for f in futures:
            f.result()

    h.timed("tasks_async", step, ops=BATCH, unit="tasks/s")


def _executor_map(chunksize: int) -> Callable[[Env, Harness], None]:
    def run(env: Env, h: Harness) -> None:
        pool = env.extra["pool"]
        h.timed(
            f"executor_map_c{chunksize}",
            lambda: list(pool.map(trivial, range(MAP_ITEMS), chunksize=chunksize)),
            ops=MAP_ITEMS, unit="items/s",
        )

    return run


def _executor_submit(env: Env, h: Harness) -> None:
    pool = env.extra["pool"]
    h.timed(
        "executor_submit", lambda: w.submit_as_completed(pool), ops=MAP_ITEMS, unit="items/s",
    )


def _mp_tasks_sync(env: Env, h: Harness) -> None:
    pool = env.extra["pool"]
    h.timed("tasks_sync", lambda: pool.apply_async(small_value).get(), unit="tasks/s")


def _mp_tasks_async(env: Env, h: Harness) -> None:
    pool = env.extra["pool"]

    def step() -> None:
        results = [pool.apply_async(small_value) for _ in range(BATCH)]
        for r in results:
            r.get()

    h.timed("tasks_async", step, ops=BATCH, unit="tasks/s")


def _mp_pool_map(env: Env, h: Harness) -> None:
    pool = env.extra["pool"]
    h.timed(
        "pool_map", lambda: pool.map(trivial, range(MAP_ITEMS)),
        ops=MAP_ITEMS, unit="items/s", note="default chunksize",
    )


def _pykka_actor_sync(env: Env, h: Harness) -> None:
    actor = env.extra["actor"]
    h.timed("actor_sync", lambda: actor.ask("small_value"), unit="calls/s")


def _pykka_actor_async(env: Env, h: Harness) -> None:
    actor = env.extra["actor"]

    def step() -> None:
        futures = [actor.ask("small_value", block=False) for _ in range(BATCH)]
        for f in futures:
            f.get()

    h.timed("actor_async", step, ops=BATCH, unit="calls/s")


def _pykka_actor_class() -> Any:
    """A pykka actor with the bench actors' method, defined when pykka is there."""
    pykka = importlib.import_module("pykka")

    class SmallValue(pykka.ThreadingActor):  # type: ignore[name-defined]
        def on_receive(self, message: Any) -> Any:
            return small_value()

    return SmallValue


_EXECUTOR_WORKLOADS: dict[str, Callable[[Env, Harness], None]] = {
    "tasks_sync": _executor_tasks_sync,
    "tasks_async": _executor_tasks_async,
    "executor_map_c1": _executor_map(1),
    "executor_map_c100": _executor_map(100),
    "executor_submit": _executor_submit,
    "startup": startup,
    "idle_memory": idle_memory,
}

WORKLOADS: dict[str, dict[str, Callable[[Env, Harness], None]]] = {
    "processpool": _EXECUTOR_WORKLOADS,
    "threadpool": _EXECUTOR_WORKLOADS,
    "pykka": {
        "actor_sync": _pykka_actor_sync,
        "actor_async": _pykka_actor_async,
        "startup": startup,
        "idle_memory": idle_memory,
    },
    "loky": _EXECUTOR_WORKLOADS,
    "mp-pool": {
        "tasks_sync": _mp_tasks_sync,
        "tasks_async": _mp_tasks_async,
        "pool_map": _mp_pool_map,
        "startup": startup,
        "idle_memory": idle_memory,
    },
    "ray": {k: v for k, v in w.WORKLOADS.items() if k not in w.ACTORLIB_ONLY},
}


def not_applicable_reason(target: str, workload: str) -> str:
    if target == "ray":
        return "actorlib-only API"
    return f"no counterpart in {target}'s API"


# --------------------------------------------------------------------------- setup


@contextlib.contextmanager
def started(target: str, num_cpus: int) -> Iterator[Env]:
    """Start ``target`` in this process and yield the Env its workloads run with."""
    if target in ("processpool", "threadpool"):
        from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

        kind = ProcessPoolExecutor if target == "processpool" else ThreadPoolExecutor
        pool: Any = kind(num_cpus)
        try:
            yield Env(None, target, None, num_cpus,
                      extra={"pool": pool, "startup_snippet": SNIPPETS[target]})
        finally:
            pool.shutdown()
    elif target == "pykka":
        pykka = importlib.import_module("pykka")
        actor = _pykka_actor_class().start()
        try:
            yield Env(None, target, None, num_cpus,
                      extra={"actor": actor, "startup_snippet": SNIPPETS[target]})
        finally:
            pykka.ActorRegistry.stop_all()
    elif target == "loky":
        loky = importlib.import_module("loky")
        pool = loky.get_reusable_executor(max_workers=num_cpus)
        try:
            yield Env(None, target, None, num_cpus,
                      extra={"pool": pool, "startup_snippet": SNIPPETS[target]})
        finally:
            pool.shutdown()
    elif target == "mp-pool":
        import multiprocessing

        pool = multiprocessing.Pool(num_cpus)
        try:
            yield Env(None, target, None, num_cpus,
                      extra={"pool": pool, "startup_snippet": SNIPPETS[target]})
        finally:
            pool.close()
            pool.join()
    elif target == "ray":
        ray = importlib.import_module("ray")
        ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level="ERROR")
        try:
            yield Env(ray, target, None, num_cpus)
        finally:
            ray.shutdown()
    else:
        raise ValueError(f"unknown alternative {target!r}")
