"""The actorlib workloads, mirroring Ray's microbenchmark (``ray/_private/ray_perf.py``).

Each workload is a function ``(env, harness) -> None`` that records one or more metrics
through the harness (``harness.timed`` for rates and latencies measured over repeated
steps, ``harness.sample`` for one-shot measurements). The same code runs on Ray
(``env.api`` is then the ``ray`` module) wherever the API matches; workloads that use an
actorlib-only API are listed in ``ACTORLIB_ONLY``.

The workload names are stable ids (``--workloads``); a metric id is the workload name,
or ``workload.variant`` when one workload records several metrics.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from actorlib.bench.runner import Harness

DEFAULT_LARGE_MB = 256  # put_large, task_arg_large
DEFAULT_GET_LARGE_MB = 1024  # get_large (Ray's "get of a 1 GiB array")
BATCH = 1000  # calls per step of the "async" workloads (Ray's harness uses 1000 too)
MAP_ITEMS = 10_000


@dataclass
class Env:
    """What a workload needs: the API module and the run's settings."""

    api: Any  # the actorlib module, or ray
    target: str  # "actorlib", "ray", or an alternative's name
    backend: str | None
    num_cpus: int
    large_mb: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. an alternative's pool

    @property
    def api_name(self) -> str:
        return str(self.api.__name__)

    def large_bytes(self, default_mb: int) -> int:
        return (self.large_mb if self.large_mb is not None else default_mb) * 1024 * 1024


# --------------------------------------------------------------------------- remote code
# Module-level, so that every worker (and ProcessPoolExecutor / multiprocessing.Pool)
# imports them by reference.


def small_value() -> bytes:
    return b"ok"


def trivial(x: Any) -> Any:
    return x


def first_element(a: Any) -> float:
    return float(a[0])


def call_own_actor(api_name: str, actor: Any, n: int) -> int:
    """A caller task of ``actor_n_n``: ``n`` async calls to its own actor."""
    api = importlib.import_module(api_name)
    api.get([actor.small_value.remote() for _ in range(n)])
    return n


def make_refs(api_name: str, n: int) -> list[Any]:
    """The task of ``refs_10000``: a result holding ``n`` refs."""
    api = importlib.import_module(api_name)
    return [api.put(1) for _ in range(n)]


class Actor:
    def small_value(self) -> bytes:
        return b"ok"


class AsyncActor:
    async def small_value(self) -> bytes:
        return b"ok"


def _numpy() -> Any:
    try:
        return importlib.import_module("numpy")
    except ImportError as exc:
        raise SkipWorkload("numpy is not installed") from exc


def _psutil() -> Any:
    try:
        return importlib.import_module("psutil")
    except ImportError as exc:
        raise SkipWorkload("psutil is not installed") from exc


class SkipWorkload(Exception):
    """Raised by a workload that cannot run here; the message is the reason."""


def _kill(env: Env, *handles: Any) -> None:
    for h in handles:
        try:
            env.api.kill(h)
        except Exception:
            pass


# --------------------------------------------------------------------------- tasks


def tasks_sync(env: Env, h: Harness) -> None:
    api = env.api
    f = api.remote(small_value)
    h.timed("tasks_sync", lambda: api.get(f.remote()), unit="tasks/s")


def tasks_async(env: Env, h: Harness) -> None:
    api = env.api
    f = api.remote(small_value)
    h.timed(
        "tasks_async", lambda: api.get([f.remote() for _ in range(BATCH)]),
        ops=BATCH, unit="tasks/s",
    )


# --------------------------------------------------------------------------- actors


def actor_sync(env: Env, h: Harness) -> None:
    api = env.api
    a = api.remote(Actor).remote()
    h.timed("actor_sync", lambda: api.get(a.small_value.remote()), unit="calls/s")
    _kill(env, a)


def actor_async(env: Env, h: Harness) -> None:
    api = env.api
    a = api.remote(Actor).remote()
    h.timed(
        "actor_async", lambda: api.get([a.small_value.remote() for _ in range(BATCH)]),
        ops=BATCH, unit="calls/s",
    )
    _kill(env, a)


def actor_concurrent(env: Env, h: Harness) -> None:
    api = env.api
    a = api.remote(Actor).options(max_concurrency=16).remote()
    h.timed(
        "actor_concurrent", lambda: api.get([a.small_value.remote() for _ in range(BATCH)]),
        ops=BATCH, unit="calls/s",
    )
    _kill(env, a)


def async_actor_sync(env: Env, h: Harness) -> None:
    api = env.api
    a = api.remote(AsyncActor).remote()
    h.timed("async_actor_sync", lambda: api.get(a.small_value.remote()), unit="calls/s")
    _kill(env, a)


def async_actor_async(env: Env, h: Harness) -> None:
    api = env.api
    a = api.remote(AsyncActor).remote()
    h.timed(
        "async_actor_async",
        lambda: api.get([a.small_value.remote() for _ in range(BATCH)]),
        ops=BATCH, unit="calls/s",
    )
    _kill(env, a)


def _n_actors(env: Env) -> int:
    return max(2, env.num_cpus)


def actor_1_n(env: Env, h: Harness) -> None:
    api = env.api
    n = _n_actors(env)
    actors = [api.remote(Actor).remote() for _ in range(n)]
    per = BATCH // n

    def step() -> None:
        api.get([a.small_value.remote() for _ in range(per) for a in actors])

    h.timed("actor_1_n", step, ops=per * n, unit="calls/s", note=f"n={n} actors")
    _kill(env, *actors)


def actor_n_n(env: Env, h: Harness) -> None:
    api = env.api
    n = _n_actors(env)
    actors = [api.remote(Actor).remote() for _ in range(n)]
    caller = api.remote(call_own_actor)
    name = env.api_name

    def step() -> None:
        api.get([caller.remote(name, a, BATCH) for a in actors])

    h.timed("actor_n_n", step, ops=BATCH * n, unit="calls/s", note=f"n={n} callers/actors")
    _kill(env, *actors)


# --------------------------------------------------------------------------- objects


def put_small(env: Env, h: Harness) -> None:
    api = env.api
    h.timed("put_small", lambda: api.put(0), unit="puts/s")


def get_small(env: Env, h: Harness) -> None:
    api = env.api
    h.timed("get_small", lambda: api.get(api.put(0)), unit="put+get/s")


def put_large(env: Env, h: Harness) -> None:
    np = _numpy()
    api = env.api
    size = env.large_bytes(DEFAULT_LARGE_MB)
    arr = np.full(size // 8, 1.0)  # written, so every page is really there

    def step() -> None:
        api.put(arr)  # the ref is dropped at once: the object is freed

    h.timed("put_large", step, ops=size / 1e9, unit="GB/s", note=f"{size >> 20} MiB")


def get_large(env: Env, h: Harness) -> None:
    np = _numpy()
    psutil = _psutil()
    api = env.api
    size = env.large_bytes(DEFAULT_GET_LARGE_MB)
    arr = np.full(size // 8, 1.0)
    ref = api.put(arr)
    del arr
    gc.collect()
    proc = psutil.Process()

    def measure() -> tuple[dict[str, float], dict[str, Any]]:
        gc.collect()
        rss0 = proc.memory_info().rss
        t0 = time.perf_counter()
        value = api.get(ref)
        elapsed = time.perf_counter() - t0
        rss1 = proc.memory_info().rss
        read_only = not value.flags.writeable
        del value
        grew = (rss1 - rss0) / 2**20
        return {"get_large": elapsed * 1000}, {
            "size_mib": size >> 20,
            "rss_growth_mib": round(grew, 1),
            "read_only": read_only,
            "copied": grew > (size >> 20) / 2,
        }

    h.sample(measure, units={"get_large": "ms"}, note=f"{size >> 20} MiB")


def task_arg_large(env: Env, h: Harness) -> None:
    np = _numpy()
    api = env.api
    size = env.large_bytes(DEFAULT_LARGE_MB)
    arr = np.full(size // 8, 1.0)
    f = api.remote(first_element)
    note = f"{size >> 20} MiB"
    h.timed("task_arg_large.direct", lambda: api.get(f.remote(arr)), unit="ms", note=note)
    ref = api.put(arr)
    h.timed("task_arg_large.put", lambda: api.get(f.remote(ref)), unit="ms", note=note)


def wait_1000(env: Env, h: Harness) -> None:
    api = env.api
    f = api.remote(small_value)

    def step() -> None:
        not_ready = [f.remote() for _ in range(1000)]
        while not_ready:
            _ready, not_ready = api.wait(not_ready)

    h.timed("wait_1000", step, unit="ms", note="1000 tasks, wait() until each is ready")


def refs_10000(env: Env, h: Harness) -> None:
    api = env.api
    f = api.remote(make_refs)
    name = env.api_name
    h.timed("refs_10000", lambda: api.get(f.remote(name, 10_000)), unit="ms")


# --------------------------------------------------------------------------- executor / pool


def _executor_map(env: Env, h: Harness, chunksize: int) -> None:
    ex = env.api.Executor(max_workers=env.num_cpus)
    try:
        h.timed(
            f"executor_map_c{chunksize}",
            lambda: list(ex.map(trivial, range(MAP_ITEMS), chunksize=chunksize)),
            ops=MAP_ITEMS, unit="items/s",
        )
    finally:
        ex.shutdown()


def executor_map_c1(env: Env, h: Harness) -> None:
    _executor_map(env, h, 1)


def executor_map_c100(env: Env, h: Harness) -> None:
    _executor_map(env, h, 100)


def pool_map(env: Env, h: Harness) -> None:
    pool = env.api.Pool(env.num_cpus)
    try:
        h.timed(
            "pool_map", lambda: pool.map(trivial, range(MAP_ITEMS)),
            ops=MAP_ITEMS, unit="items/s", note="default chunksize",
        )
    finally:
        pool.close()
        pool.join()


# --------------------------------------------------------------------------- fresh processes

# Snippets run by ``python -c`` for startup and idle_memory. Each starts the target,
# gets a first result, prints a JSON line of phase times, then (for idle_memory) waits
# for a line on stdin before shutting down. ``{num_cpus}``, ``{backend}`` and ``{idle}``
# are filled in.
_STARTUP_TEMPLATE = """
import json, sys, time
t0 = time.perf_counter()
import {module} as rt
t1 = time.perf_counter()
rt.init({init_args})
t2 = time.perf_counter()
@rt.remote
def f():
    return 1
rt.get(f.remote())
t3 = time.perf_counter()
if {{idle}}:
    print(json.dumps({{{{"ready": True}}}}), flush=True)
    sys.stdin.readline()
t3b = time.perf_counter()
rt.shutdown()
t4 = time.perf_counter()
print(json.dumps({{{{"import_s": t1 - t0, "init_s": t2 - t1, "first_result_s": t3 - t2,
                  "shutdown_s": t4 - t3b}}}}), flush=True)
"""

# Formatted twice: once here per target, then with backend/num_cpus/idle per run.
STARTUP_SNIPPETS: dict[str, str] = {
    "actorlib": _STARTUP_TEMPLATE.format(
        module="actorlib", init_args="backend={backend!r}, num_cpus={num_cpus}"
    ),
    "ray": _STARTUP_TEMPLATE.format(
        module="ray",
        init_args='num_cpus={num_cpus}, include_dashboard=False, logging_level="ERROR"',
    ),
}


def _snippet(env: Env, idle: bool) -> str:
    template = env.extra.get("startup_snippet") or STARTUP_SNIPPETS[env.target]
    return str(template).format(
        backend=env.backend, num_cpus=env.num_cpus, idle=idle,
    )


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    return env


def startup(env: Env, h: Harness) -> None:
    code = _snippet(env, idle=False)

    def measure() -> tuple[dict[str, float], dict[str, Any]]:
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
            env=_child_env(),
        )
        elapsed = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"startup snippet failed:\n{proc.stderr[-2000:]}")
        phases = json.loads(proc.stdout.strip().splitlines()[-1])
        return {"startup": elapsed}, {k: round(v, 4) for k, v in phases.items()}

    h.sample(measure, units={"startup": "s"}, note="fresh interpreter to exit")


def idle_memory(env: Env, h: Harness) -> None:
    psutil = _psutil()
    code = _snippet(env, idle=True)

    def measure() -> tuple[dict[str, float], dict[str, Any]]:
        child = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=_child_env(),
        )
        assert child.stdin is not None and child.stdout is not None
        try:
            line = child.stdout.readline()
            if not line:
                raise RuntimeError(f"idle_memory snippet failed:\n{child.communicate()[1]}")
            time.sleep(0.5)  # let the tree settle (lazy workers, daemons)
            root = psutil.Process(child.pid)
            procs = [root, *root.children(recursive=True)]
            rss = pss = 0
            for p in procs:
                try:
                    info = p.memory_full_info()
                except psutil.Error:
                    continue
                rss += info.rss
                pss += getattr(info, "pss", info.rss)
            child.stdin.write("\n")
            child.stdin.flush()
            _out, err = child.communicate(timeout=120)
            if child.returncode != 0:
                raise RuntimeError(f"idle_memory snippet failed:\n{err[-2000:]}")
        finally:
            if child.poll() is None:
                child.kill()
                child.communicate()
        return (
            {"idle_memory.rss": rss / 2**20, "idle_memory.pss": pss / 2**20},
            {"processes": len(procs)},
        )

    h.sample(
        measure, units={"idle_memory.rss": "MB", "idle_memory.pss": "MB"},
        note="whole process tree after start and a first result",
    )


# --------------------------------------------------------------------------- the registry

Workload = Callable[[Env, "Harness"], None]

WORKLOADS: dict[str, Workload] = {
    "tasks_sync": tasks_sync,
    "tasks_async": tasks_async,
    "actor_sync": actor_sync,
    "actor_async": actor_async,
    "actor_concurrent": actor_concurrent,
    "async_actor_sync": async_actor_sync,
    "async_actor_async": async_actor_async,
    "actor_1_n": actor_1_n,
    "actor_n_n": actor_n_n,
    "put_small": put_small,
    "get_small": get_small,
    "put_large": put_large,
    "get_large": get_large,
    "task_arg_large": task_arg_large,
    "wait_1000": wait_1000,
    "refs_10000": refs_10000,
    "startup": startup,
    "idle_memory": idle_memory,
    "executor_map_c1": executor_map_c1,
    "executor_map_c100": executor_map_c100,
    "pool_map": pool_map,
}

ACTORLIB_ONLY = frozenset({"executor_map_c1", "executor_map_c100", "pool_map"})

DESCRIPTIONS: dict[str, str] = {
    "tasks_sync": "get(f.remote()) in a loop: one task round trip at a time",
    "tasks_async": "submit 1000 tasks, then get them all",
    "actor_sync": "get(a.m.remote()) in a loop on one sync actor",
    "actor_async": "1000 calls to one sync actor, then get all",
    "actor_concurrent": "1000 calls to a threaded actor (max_concurrency=16), then get all",
    "async_actor_sync": "get(a.m.remote()) in a loop on an async actor",
    "async_actor_async": "1000 calls to an async actor, then get all",
    "actor_1_n": "the driver calls n actors (n = max(2, num_cpus)), 1000 calls in all",
    "actor_n_n": "n caller tasks, each makes 1000 calls to its own actor",
    "put_small": "put(0) in a loop",
    "get_small": "get(put(0)) in a loop",
    "put_large": "put of a large numpy array (default 256 MiB), GB/s",
    "get_large": "get of a large numpy array (default 1 GiB): latency; copied? read-only?",
    "task_arg_large": "a large array as a task argument: direct, and as a ref from put",
    "wait_1000": "submit 1000 tasks, then wait() until each one is ready",
    "refs_10000": "get the result of a task that returns a list of 10,000 refs",
    "startup": "fresh interpreter: import, init, first result, shutdown",
    "idle_memory": "RSS and PSS of the whole process tree after start",
    "executor_map_c1": "Executor.map of a trivial function over 10,000 items, chunksize 1",
    "executor_map_c100": "Executor.map over 10,000 items, chunksize 100",
    "pool_map": "Pool.map over 10,000 items (default chunksize)",
}
