"""actorlib quick start: tasks, an actor, get, wait, and a remote error.

Run it with:  python examples/quickstart.py
"""

from __future__ import annotations

import time

import actorlib


@actorlib.remote
def square(x: int) -> int:
    return x * x


@actorlib.remote
def slow_identity(x: int, delay: float) -> int:
    time.sleep(delay)
    return x


@actorlib.remote
def divide(a: float, b: float) -> float:
    if b == 0:
        raise ValueError(f"cannot divide {a} by zero")
    return a / b


@actorlib.remote
class Counter:
    def __init__(self, start: int = 0) -> None:
        self.n = start

    def incr(self, by: int = 1) -> int:
        self.n += by
        return self.n

    def value(self) -> int:
        return self.n


def main() -> None:
    actorlib.init()  # optional: the first .remote() would start the default backend

    # Tasks: .remote() returns an ObjectRef at once; get() blocks for the value.
    refs = [square.remote(i) for i in range(5)]
    print("squares:", actorlib.get(refs))

    # A ref passed as an argument is resolved to its value before the task runs.
    print("square(square(3)):", actorlib.get(square.remote(square.remote(3))))

    # put() stores a value once; pass the ref to as many tasks as you like.
    big = actorlib.put(list(range(1000)))
    print("put/get round trip, length:", len(actorlib.get(big)))

    # Actors: one instance, its methods run one at a time, in the order you call them.
    counter = Counter.remote(10)
    for _ in range(4):
        counter.incr.remote()
    print("counter after 4 increments:", actorlib.get(counter.value.remote()))

    # wait(): split refs into ready and not-ready ones.
    fast = slow_identity.remote(1, 0.0)
    slow = slow_identity.remote(2, 0.5)
    ready, not_ready = actorlib.wait([fast, slow], num_returns=1, timeout=2.0)
    print(f"wait: {len(ready)} ready, {len(not_ready)} not ready")
    print("ready value:", actorlib.get(ready[0]), "| the other:", actorlib.get(not_ready[0]))

    # Errors: the remote exception re-raises at get() as its own type too.
    try:
        actorlib.get(divide.remote(1, 0))
    except ValueError as err:
        first_line = str(err).splitlines()[0] if str(err) else repr(err)
        print("caught remote ValueError:", type(err).__name__, "-", first_line)
        print("  is an actorlib TaskError too:", isinstance(err, actorlib.exceptions.TaskError))

    actorlib.shutdown()
    print("done")


if __name__ == "__main__":
    main()
