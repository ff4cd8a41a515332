"""The actorlib workloads, mirroring Ray's microbenchmark (``ray/_private/ray_perf.py``).

Each workload is a function ``(env, harness) -> None`` that records one or more metrics
through the harness (``harness.timed`` for rates and latencies measured over repeated
steps, ``harness.sample`` for one-shot measurements). The same code runs on Ray
(``env.api`` is then the ``ray`` module) wherever the API matches; workloads that use an
actorlib-only API are listed in ``ACTORLIB_ONLY``.

The workload names are stable ids (``--workloads``); a metric id is the workload name,
or ``workload.variant`` when one workload records several metrics. This module holds the
workloads that time API calls in the started runtime (tasks, actors, objects, executor and
pool) and the registry of all of them; ``startup`` and ``idle_memory``, which measure a
fresh interpreter, are in :mod:`actorlib.bench.fresh_process`, and what every workload is
written with (:class:`~actorlib.bench.workload_kit.Env`, the sizes, the remote code) in
:mod:`actorlib.bench.workload_kit`.
"""

from __future__ import annotations

import concurrent.futures
import gc
import os
import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from actorlib.bench.cluster_data import cluster_driver_get, cluster_transfer
from actorlib.bench.fresh_process import idle_memory, startup
from actorlib.bench.sim_steps import sim_steps
from actorlib.bench.workload_kit import (
    BATCH,
    DEFAULT_GET_LARGE_MB,
    DEFAULT_LARGE_MB,
    MAP_ITEMS,
    Actor,
    AsyncActor,
    Env,
    SkipWorkload,
    call_own_actor,
    first_element,
    large_array,
    make_refs,
    need_numpy,
    need_psutil,
    small_value,
    trivial,
)

if TYPE_CHECKING:
    from actorlib.bench.runner import Harness


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
    np = need_numpy()
    api = env.api
    size = env.large_bytes(DEFAULT_LARGE_MB)
    arr = np.full(size // 8, 1.0)  # written, so every page is really there

    def step() -> None:
        api.put(arr)  # the ref is dropped at once: the object is freed

    h.timed("put_large", step, ops=size / 1e9, unit="GB/s", note=f"{size >> 20} MiB")


def memcpy_large(env: Env, h: Harness) -> None:
    """The floor under the large-object rows: one copy of the same bytes, in memory that
    is already mapped (what a put into a pre-faulted store costs at best)."""
    np = need_numpy()
    size = env.large_bytes(DEFAULT_LARGE_MB)
    arr = np.full(size // 8, 1.0)
    dst = np.zeros_like(arr)
    dst[:] = 0.5  # every page really there

    def step() -> None:
        np.copyto(dst, arr)

    h.timed("memcpy_large", step, ops=size / 1e9, unit="GB/s", note=f"{size >> 20} MiB")


def _sample_large_get(
    h: Harness, metric: str, size: int, get: Callable[[], Any], per_round: int = 1,
) -> None:
    """Time ``get()`` of a large array, each from a collected heap; a round's value is
    the median of ``per_round`` of them (a get that takes well under a millisecond, timed
    once a round, swung past 30% between runs). The extras say whether the driver copied
    the array (its RSS grew by more than half of it) and whether it is read-only."""
    psutil = need_psutil()
    proc = psutil.Process()

    def once() -> tuple[float, float, bool]:
        gc.collect()
        rss0 = proc.memory_info().rss
        t0 = time.perf_counter()
        value = get()
        elapsed = time.perf_counter() - t0
        rss1 = proc.memory_info().rss
        assert value.nbytes == size
        read_only = not value.flags.writeable
        del value
        return elapsed, (rss1 - rss0) / 2**20, read_only

    def measure() -> tuple[dict[str, float], dict[str, Any]]:
        times, growths, read_only = [], [], True
        for _ in range(per_round):
            elapsed, grew, ro = once()
            times.append(elapsed)
            growths.append(grew)
            read_only = read_only and ro
        grew = max(growths)
        return {metric: statistics.median(times) * 1000}, {
            "size_mib": size >> 20,
            "rss_growth_mib": round(grew, 1),
            "read_only": read_only,
            "copied": grew > (size >> 20) / 2,
        }

    note = f"{size >> 20} MiB" + (f", median of {per_round} a round" if per_round > 1 else "")
    h.sample(measure, units={metric: "ms"}, note=note)


#: Gets of the one array a round of ``get_large`` takes the median of.
GETS_A_ROUND = 15


def get_large(env: Env, h: Harness) -> None:
    np = need_numpy()
    api = env.api
    size = env.large_bytes(DEFAULT_GET_LARGE_MB)
    arr = np.full(size // 8, 1.0)
    ref = api.put(arr)
    del arr
    gc.collect()
    _sample_large_get(h, "get_large", size, lambda: api.get(ref), per_round=GETS_A_ROUND)


def task_arg_large(env: Env, h: Harness) -> None:
    np = need_numpy()
    api = env.api
    size = env.large_bytes(DEFAULT_LARGE_MB)
    arr = np.full(size // 8, 1.0)
    f = api.remote(first_element)
    note = f"{size >> 20} MiB"
    h.timed("task_arg_large.direct", lambda: api.get(f.remote(arr)), unit="ms", note=note)
    ref = api.put(arr)
    h.timed("task_arg_large.put", lambda: api.get(f.remote(ref)), unit="ms", note=note)


def task_result_large(env: Env, h: Harness) -> None:
    """A task returns the large array (made once in its worker), the driver gets it:
    the worker's copy into the store, then the driver's read (zero-copy or not)."""
    need_numpy()
    api = env.api
    size = env.large_bytes(DEFAULT_LARGE_MB)
    f = api.remote(large_array)
    _sample_large_get(h, "task_result_large", size, lambda: api.get(f.remote(size)))


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


def _futures_run_on(env: Env) -> None:
    """Skip on a ``sim`` runtime without its idle driver: an Executor's or Pool's caller
    waits on ``concurrent.futures`` futures, not in ``get``/``wait``, so no step would
    run (docs/testing.md, "the idle driver"); with it, the rows time real-time polling."""
    if (
        env.target == "actorlib" and env.backend == "sim"
        and not os.environ.get("ACTORLIB_SIM_IDLE_DRIVE")
    ):
        raise SkipWorkload(
            "the sim backend runs steps only while a thread waits in get/wait, and an "
            "Executor's caller waits on futures (set ACTORLIB_SIM_IDLE_DRIVE to run it)"
        )


def _executor_map(env: Env, h: Harness, chunksize: int) -> None:
    _futures_run_on(env)
    ex = env.api.Executor(max_workers=env.num_cpus)
    try:
        h.timed(
            f"executor_map_c{chunksize}",
            lambda: list(ex.map(trivial, range(MAP_ITEMS), chunksize=chunksize)),
            ops=MAP_ITEMS, unit="items/s",
        )
    finally:
        ex.shutdown()


def submit_as_completed(executor: Any) -> None:
    """One ``executor_submit`` step on any ``concurrent.futures`` executor: the other
    common ``ProcessPoolExecutor`` pattern, a future per call read as each completes."""
    futures = [executor.submit(trivial, i) for i in range(MAP_ITEMS)]
    for future in concurrent.futures.as_completed(futures):
        future.result()


def executor_submit(env: Env, h: Harness) -> None:
    _futures_run_on(env)
    ex = env.api.Executor(max_workers=env.num_cpus)
    try:
        h.timed(
            "executor_submit", lambda: submit_as_completed(ex), ops=MAP_ITEMS, unit="items/s",
        )
    finally:
        ex.shutdown()


def executor_map_c1(env: Env, h: Harness) -> None:
    _executor_map(env, h, 1)


def executor_map_c100(env: Env, h: Harness) -> None:
    _executor_map(env, h, 100)


def pool_map(env: Env, h: Harness) -> None:
    _futures_run_on(env)
    pool = env.api.Pool(env.num_cpus)
    try:
        h.timed(
            "pool_map", lambda: pool.map(trivial, range(MAP_ITEMS)),
            ops=MAP_ITEMS, unit="items/s", note="default chunksize",
        )
    finally:
        pool.close()
        pool.join()


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
    "task_result_large": task_result_large,
    "memcpy_large": memcpy_large,
    "wait_1000": wait_1000,
    "refs_10000": refs_10000,
    "startup": startup,
    "idle_memory": idle_memory,
    "executor_map_c1": executor_map_c1,
    "executor_map_c100": executor_map_c100,
    "executor_submit": executor_submit,
    "pool_map": pool_map,
    "sim_steps": sim_steps,
    "cluster_transfer": cluster_transfer,
    "cluster_driver_get": cluster_driver_get,
}

ACTORLIB_ONLY = frozenset({
    "executor_map_c1", "executor_map_c100", "executor_submit", "pool_map", "sim_steps",
    "cluster_transfer", "cluster_driver_get", "memcpy_large",
})

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
    "task_result_large": "a task returns a large array, get in the driver: ms; copied? "
                         "read-only?",
    "memcpy_large": "reference: one numpy copy of the large array into mapped memory, GB/s",
    "wait_1000": "submit 1000 tasks, then wait() until each one is ready",
    "refs_10000": "get the result of a task that returns a list of 10,000 refs",
    "startup": "fresh interpreter: import, init, first result, shutdown",
    "idle_memory": "RSS and PSS of the whole process tree after start",
    "executor_map_c1": "Executor.map of a trivial function over 10,000 items, chunksize 1",
    "executor_map_c100": "Executor.map over 10,000 items, chunksize 100",
    "executor_submit": "Executor.submit of a trivial function for 10,000 items, then "
                       "as_completed",
    "pool_map": "Pool.map over 10,000 items (default chunksize)",
    "sim_steps": "sim backend only: simulator steps/s (trivial calls, tasks, coroutine awaits)",
    "cluster_transfer": "a local head and two nodes: a 1 GiB array made on one node, read on "
                        "the other, against a plain socket copy (any --backend)",
    "cluster_driver_get": "a local head and two nodes: a driver's put and get of a 200 MB "
                          "array, and get of one a node made (any --backend)",
}
