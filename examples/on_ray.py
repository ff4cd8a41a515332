"""The same actorlib program on a Ray cluster: one argument changes, nothing else.

    pip install 'actorlib[ray]'
    python on_ray.py                       # starts a local Ray, as ray.init() does
    python on_ray.py 127.0.0.1:6379        # joins a cluster `ray start --head` made
    python on_ray.py ray://head-svc:10001  # Ray Client (a KubeRay cluster)

Ray schedules the tasks and actors, keeps the objects in its object store and moves
them between nodes; the program keeps actorlib's API: typed refs, ``await``, actors
whose calls run in order, the Executor. ``RAY_ADDRESS`` works as the argument does.
"""

from __future__ import annotations

import asyncio
import os
import sys
from concurrent.futures import as_completed

import actorlib


@actorlib.remote
def square(x: int) -> int:
    return x * x


@actorlib.remote
def checksum(block: bytes) -> int:
    # ``block`` arrives from Ray's object store: the driver put it once, and every task
    # reads it there (never shipped through the driver again).
    return sum(block[::1021])


@actorlib.remote(max_restarts=1)
class Tally:
    """Calls from one caller run in order, one at a time (as on every backend)."""

    def __init__(self) -> None:
        self.items: list[int] = []

    def add(self, x: int) -> int:
        self.items.append(x)
        return len(self.items)

    def total(self) -> int:
        return sum(self.items)


async def from_async_code(tally: actorlib.ActorHandle[Tally]) -> int:
    """In an async app, refs are awaited: the event loop never blocks on Ray."""
    squares = await actorlib.get_async([square.remote(i) for i in range(5)])
    for s in squares:
        await tally.add.remote(s)
    return await tally.total.remote()


def main() -> None:
    address = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("RAY_ADDRESS")
    info = actorlib.init(backend="ray", address=address)
    try:
        print("backend:", info["backend"], "| CPUs:", actorlib.cluster_resources().get("CPU"))

        print("squares:", actorlib.get([square.remote(i) for i in range(8)]))

        block = actorlib.put(bytes(range(256)) * 16_384)  # 4 MiB in Ray's object store
        print("checksums:", set(actorlib.get([checksum.remote(block) for _ in range(4)])))

        tally = Tally.remote()
        print("tally after async adds:", asyncio.run(from_async_code(tally)))

        with actorlib.Executor(max_workers=2) as pool:  # a concurrent.futures Executor
            done = sorted(f.result() for f in as_completed(pool.submit(pow, 2, n)
                                                           for n in range(5)))
        print("executor:", done)
    finally:
        actorlib.shutdown()  # a cluster joined by address stays up


if __name__ == "__main__":
    main()
