"""Share one large numpy array with many tasks, without copying it.

``actorlib.put`` writes the array once into shared memory; every task that receives the
ref maps those same pages read-only (zero-copy), so 32 tasks reading a 160 MB array cost
160 MB, not 5 GB. Each task computes statistics over its own slice; the driver combines
them.

Run it with:  python examples/shared_array.py
"""

from __future__ import annotations

import itertools
import os
import time

import numpy as np

import actorlib

N = 20_000_000  # float64: 160 MB
CHUNKS = 32


@actorlib.remote
def slice_stats(data: np.ndarray, start: int, stop: int) -> dict[str, float]:
    """Statistics of data[start:stop]. ``data`` is the shared array itself, read-only."""
    part = data[start:stop]  # a view: still no copy
    return {
        "pid": os.getpid(),
        "count": float(part.size),
        "sum": float(part.sum()),
        "sumsq": float(np.dot(part, part)),
        "min": float(part.min()),
        "max": float(part.max()),
        "read_only": not data.flags.writeable,
    }


def main() -> None:
    # The process backend runs tasks in worker processes that share the array through
    # /dev/shm. (An explicit backend here wins over $ACTORLIB_BACKEND.)
    actorlib.init(backend="process")

    rng = np.random.default_rng(0)
    data = rng.standard_normal(N)
    print(f"array: {data.nbytes / 1e6:.0f} MB, {CHUNKS} tasks, {os.cpu_count()} CPUs")

    t0 = time.perf_counter()
    ref = actorlib.put(data)  # written to shared memory once
    t_put = time.perf_counter() - t0

    # Pass the same ref to every task: each one receives the array, mapped, not copied.
    bounds = np.linspace(0, N, CHUNKS + 1, dtype=np.int64)
    t1 = time.perf_counter()
    refs = [slice_stats.remote(ref, lo, hi) for lo, hi in itertools.pairwise(bounds.tolist())]
    parts = actorlib.get(refs)
    t_tasks = time.perf_counter() - t1

    count = sum(p["count"] for p in parts)
    mean = sum(p["sum"] for p in parts) / count
    var = sum(p["sumsq"] for p in parts) / count - mean * mean
    lo, hi = min(p["min"] for p in parts), max(p["max"] for p in parts)
    workers = {p["pid"] for p in parts}

    print(f"put: {t_put:.3f}s   {CHUNKS} tasks: {t_tasks:.3f}s on {len(workers)} worker processes")
    print(f"mean={mean:+.5f}  std={var**0.5:.5f}  min={lo:+.3f}  max={hi:+.3f}")
    print("every task saw a read-only array:", all(p["read_only"] for p in parts))

    # The same numbers computed locally, to show nothing was lost on the way.
    assert abs(mean - float(data.mean())) < 1e-9
    assert abs(var**0.5 - float(data.std())) < 1e-9
    assert (lo, hi) == (float(data.min()), float(data.max()))

    # The driver reads the stored array zero-copy too: read-only, same values.
    shared = actorlib.get(ref)
    print(
        "driver view read-only:",
        not shared.flags.writeable,
        "| equal:",
        bool(shared[-1] == data[-1]),
    )

    del shared, ref  # the shared-memory copy is freed once its last ref is gone
    actorlib.shutdown()
    print(f"done in {time.perf_counter() - t0:.2f}s")


if __name__ == "__main__":
    main()
