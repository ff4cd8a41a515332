"""actorlib.Executor as a drop-in for ProcessPoolExecutor: count primes, CPU-bound.

The only change from the stdlib version is the import line:

    from concurrent.futures import ProcessPoolExecutor      # before
    from actorlib import Executor as ProcessPoolExecutor    # after

With no runtime initialized, the executor starts one (num_cpus=max_workers) and stops it
on exit. On the thread backend the work shares one GIL; the process backend runs it in
parallel.
"""

import math
import time
from concurrent.futures import as_completed

from actorlib import Executor as ProcessPoolExecutor


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    return all(n % d for d in range(3, math.isqrt(n) + 1, 2))


def count_primes(lo: int, hi: int) -> int:
    return sum(1 for n in range(lo, hi) if is_prime(n))


def main() -> None:
    limit, step = 200_000, 10_000
    starts = range(0, limit, step)
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=2) as pool:
        # map: results in order; chunksize batches several calls into one task.
        total = sum(pool.map(count_primes, starts, [s + step for s in starts], chunksize=4))
        # submit + as_completed: the stdlib idiom works unchanged.
        futures = {pool.submit(count_primes, s, s + step): s for s in starts}
        again = sum(f.result() for f in as_completed(futures))
        # Errors arrive as the original type.
        try:
            pool.submit(math.isqrt, -1).result()
        except ValueError as exc:
            print("ValueError from a worker:", str(exc).splitlines()[0])
    assert total == again == 17_984, (total, again)
    print(f"{total} primes below {limit} in {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
