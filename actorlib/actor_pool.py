"""``actorlib.ActorPool``: Ray's ``ray.util.ActorPool`` on actorlib actors.

Spreads work over a fixed set of actors, one call per actor at a time::

    pool = ActorPool([Worker.remote() for _ in range(4)])
    for result in pool.map(lambda a, v: a.double.remote(v), range(10)):
        ...

Same methods and semantics as Ray's (``map``, ``map_unordered``, ``submit``, ``get_next``,
``get_next_unordered``, ``has_next``, ``has_free``, ``push``, ``pop_idle``). Timeouts raise
``GetTimeoutError``, which is a ``TimeoutError`` like Ray's.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

from actorlib.actor import ActorHandle
from actorlib.api import get, wait
from actorlib.core.refs import ObjectRef
from actorlib.exceptions import GetTimeoutError

__all__ = ["ActorPool"]

V = TypeVar("V")
A = TypeVar("A")

_TIMEOUT_MSG = "Timed out waiting for result"


def _key(future: Any) -> Any:
    # A call with num_returns > 1 gives a list of refs: keyed by the tuple, waited on by the first.
    return tuple(future) if isinstance(future, list) else future


def _wait_ref(future: Any) -> ObjectRef[Any]:
    return future[0] if isinstance(future, list) else future


class ActorPool(Generic[A]):
    """Schedule calls over a pool of actors (Ray's ``ray.util.ActorPool``).

    ``fn`` in ``submit``/``map`` takes ``(actor, value)`` and returns the ref(s) of the call
    it made, e.g. ``lambda a, v: a.work.remote(v)``. Calls wait in the pool, not in the
    actors' mailboxes, until an actor is free.
    """

    def __init__(self, actors: Iterable[ActorHandle[A]]) -> None:
        self._idle_actors: list[ActorHandle[A]] = list(actors)
        self._future_to_actor: dict[Any, tuple[int, ActorHandle[A]]] = {}
        self._index_to_future: dict[int, Any] = {}
        self._next_task_index = 0
        self._next_return_index = 0
        self._pending_submits: deque[tuple[Callable[..., Any], Any]] = deque()

    # -- bulk --------------------------------------------------------------------------

    def _drain(self) -> None:
        """Forget results not fetched yet (Ray's map does this before starting)."""
        while self.has_next():
            try:
                self.get_next_unordered(timeout=0, ignore_if_timedout=True)
            except TimeoutError:
                pass
            except Exception:  # a failed call nobody asked for
                pass

    def map(
        self, fn: Callable[[ActorHandle[A], V], Any], values: Iterable[V]
    ) -> Iterator[Any]:
        """Apply ``fn`` to each value; yield the results in order."""
        self._drain()
        for v in values:
            self.submit(fn, v)

        def results() -> Iterator[Any]:
            while self.has_next():
                yield self.get_next()

        return results()

    def map_unordered(
        self, fn: Callable[[ActorHandle[A], V], Any], values: Iterable[V]
    ) -> Iterator[Any]:
        """Apply ``fn`` to each value; yield the results as they finish."""
        self._drain()
        for v in values:
            self.submit(fn, v)

        def results() -> Iterator[Any]:
            while self.has_next():
                yield self.get_next_unordered()

        return results()

    # -- one at a time -----------------------------------------------------------------

    def submit(self, fn: Callable[[ActorHandle[A], V], Any], value: V) -> None:
        """Run ``fn(actor, value)`` on an idle actor now, or as soon as one is free."""
        if self._idle_actors:
            actor = self._idle_actors.pop()
            future = fn(actor, value)
            self._future_to_actor[_key(future)] = (self._next_task_index, actor)
            self._index_to_future[self._next_task_index] = future
            self._next_task_index += 1
        else:
            self._pending_submits.append((fn, value))

    def has_next(self) -> bool:
        """Whether any submitted call has a result not fetched yet."""
        return bool(self._future_to_actor)

    def get_next(self, timeout: float | None = None, ignore_if_timedout: bool = False) -> Any:
        """The next result in submission order.

        On timeout: ``GetTimeoutError``; with ``ignore_if_timedout=True`` that call's
        result is skipped (its actor is handed back), and the error is still raised.
        """
        if not self.has_next():
            raise StopIteration("No more results to get")
        if self._next_return_index >= self._next_task_index:
            raise ValueError(
                "It is not allowed to call get_next() after get_next_unordered()."
            )
        future = self._index_to_future[self._next_return_index]
        timed_out = False
        if timeout is not None:
            ready, _ = wait([_wait_ref(future)], timeout=timeout)
            if not ready:
                if not ignore_if_timedout:
                    raise GetTimeoutError(_TIMEOUT_MSG)
                timed_out = True
        del self._index_to_future[self._next_return_index]
        self._next_return_index += 1
        _, actor = self._future_to_actor.pop(_key(future))
        self._return_actor(actor)
        if timed_out:
            raise GetTimeoutError(f"{_TIMEOUT_MSG}. The task {future} has been ignored.")
        return get(future)

    def get_next_unordered(
        self, timeout: float | None = None, ignore_if_timedout: bool = False
    ) -> Any:
        """Any next result, whichever call finishes first.

        Once used, ``get_next`` may not be used until all results are fetched (as Ray).
        """
        if not self.has_next():
            raise StopIteration("No more results to get")
        by_ref = {_wait_ref(f): k for k, f in (
            (k, self._index_to_future[i]) for k, (i, _) in self._future_to_actor.items()
        )}
        ready, _ = wait(list(by_ref), num_returns=1, timeout=timeout)
        if ready:
            key = by_ref[ready[0]]
        elif not ignore_if_timedout:
            raise GetTimeoutError(_TIMEOUT_MSG)
        else:
            # Skip the oldest call: its actor is handed back, its result dropped.
            key = _key(self._index_to_future[min(self._index_to_future)])
        index, actor = self._future_to_actor.pop(key)
        future = self._index_to_future.pop(index)
        self._return_actor(actor)
        self._next_return_index = max(self._next_return_index, index + 1)
        if not ready:
            raise GetTimeoutError(f"{_TIMEOUT_MSG}. The task {future} has been ignored.")
        return get(future)

    # -- membership --------------------------------------------------------------------

    def _return_actor(self, actor: ActorHandle[A]) -> None:
        self._idle_actors.append(actor)
        if self._pending_submits:
            self.submit(*self._pending_submits.popleft())

    def has_free(self) -> bool:
        """Whether an actor is idle (and no submitted call waits for one)."""
        return bool(self._idle_actors) and not self._pending_submits

    def pop_idle(self) -> ActorHandle[A] | None:
        """Remove and return an idle actor, or None if none is free."""
        if self.has_free():
            return self._idle_actors.pop()
        return None

    def push(self, actor: ActorHandle[A]) -> None:
        """Add an actor to the pool (it takes a waiting call at once, if any)."""
        busy = [a for _, a in self._future_to_actor.values()]
        if actor in self._idle_actors or actor in busy:
            raise ValueError("Actor already belongs to current ActorPool")
        self._return_actor(actor)
