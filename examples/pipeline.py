"""A dynamic task graph: tasks pass ObjectRefs to each other, no driver round trips.

    load(i) --> clean --> stats --\\
                                   +--> merge (tree) --> report
    load(j) --> clean --> stats --/

Each stage is submitted at once; a task starts as soon as the refs it was given
resolve. Refs passed as top-level arguments arrive as values; a ref nested in a
container (here, a list) arrives as a ref, and the task can get() it itself.

Run it with:  python examples/pipeline.py
"""

from __future__ import annotations

import random

import actorlib


@actorlib.remote
def load(shard: int) -> list[float]:
    rng = random.Random(shard)
    return [rng.uniform(-10, 100) for _ in range(1_000)]


@actorlib.remote
def clean(values: list[float]) -> list[float]:
    # `values` is this task's own copy: mutating it cannot affect the caller.
    return [v for v in values if v >= 0]


@actorlib.remote(num_returns=2)
def split_stats(values: list[float]) -> tuple[int, float]:
    # num_returns=2: the caller gets two refs, one per returned element.
    return len(values), sum(values)


@actorlib.remote
def merge(a: tuple[int, float], b: tuple[int, float]) -> tuple[int, float]:
    return a[0] + b[0], a[1] + b[1]


@actorlib.remote
def pair(count: int, total: float) -> tuple[int, float]:
    return count, total


@actorlib.remote
def tree_reduce(parts: list[actorlib.ObjectRef]) -> tuple[int, float]:
    # A nested ref arrives as a ref; this task submits more tasks itself.
    while len(parts) > 1:
        nxt = [merge.remote(parts[i], parts[i + 1]) for i in range(0, len(parts) - 1, 2)]
        if len(parts) % 2:
            nxt.append(parts[-1])
        parts = nxt
    return actorlib.get(parts[0])


def main() -> None:
    shards = 8
    partials = []
    for i in range(shards):
        cleaned = clean.remote(load.remote(i))
        count_ref, total_ref = split_stats.remote(cleaned)
        partials.append(pair.remote(count_ref, total_ref))

    # Pass the list of refs (nested, so not resolved) to a task that reduces them.
    count, total = actorlib.get(tree_reduce.remote(partials), timeout=30)
    print(f"{shards} shards -> {count} clean values, mean {total / count:.3f}")

    # The same result computed locally, to check the graph.
    expected: list[float] = []
    for i in range(shards):
        rng = random.Random(i)
        expected.extend(v for v in (rng.uniform(-10, 100) for _ in range(1_000)) if v >= 0)
    assert count == len(expected), (count, len(expected))
    assert abs(total - sum(expected)) < 1e-6 * max(1.0, abs(total))
    print("matches the local computation")

    # Iterate results in completion order.
    refs = [clean.remote(load.remote(i)) for i in range(4)]
    sizes = [len(actorlib.get(ref)) for ref in actorlib.as_completed(refs)]
    print("sizes in completion order:", sizes)

    actorlib.shutdown()
    print("done")


if __name__ == "__main__":
    main()
