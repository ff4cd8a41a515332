"""Ray's ``ray.util.queue.Queue``: a FIFO queue shared by the driver, tasks and actors.

The items live in an async actor, so every copy of a ``Queue`` (passed to a task, held by
an actor) talks to the same queue on every backend. Blocking ``get``/``put`` wait inside
the actor without holding a thread; ``Empty``/``Full`` subclass the stdlib's, so
``except queue.Empty`` works too::

    q = Queue(maxsize=10)
    producer.remote(q)
    item = q.get(timeout=5)
"""

from __future__ import annotations

import asyncio
import queue as _stdlib_queue
from collections.abc import Iterable
from typing import Any

from actorlib.actor import ActorClass, ActorHandle, exit_actor
from actorlib.api import get, kill, remote, wait

__all__ = ["Empty", "Full", "Queue"]


class Empty(_stdlib_queue.Empty):
    """``get`` found no item (non-blocking, or the timeout passed)."""


class Full(_stdlib_queue.Full):
    """``put`` found no room (non-blocking, or the timeout passed)."""


# Replies of the queue actor: (OK, value) or (EMPTY/FULL, None). The caller raises, so
# the exception comes from this process's Empty/Full, not a wrapped remote error.
_OK, _EMPTY, _FULL = 0, 1, 2


class _QueueActor:
    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize)

    def qsize(self) -> int:
        return self.queue.qsize()

    async def put(self, item: Any, timeout: float | None) -> tuple[int, None]:
        try:
            await asyncio.wait_for(self.queue.put(item), timeout)
        except asyncio.TimeoutError:
            return _FULL, None
        return _OK, None

    async def put_nowait(self, item: Any) -> tuple[int, None]:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            return _FULL, None
        return _OK, None

    async def put_nowait_batch(self, items: list[Any]) -> tuple[int, None]:
        if self.maxsize > 0 and len(items) + self.queue.qsize() > self.maxsize:
            return _FULL, None
        for item in items:
            self.queue.put_nowait(item)
        return _OK, None

    async def get(self, timeout: float | None) -> tuple[int, Any]:
        try:
            return _OK, await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            return _EMPTY, None

    async def get_nowait(self) -> tuple[int, Any]:
        try:
            return _OK, self.queue.get_nowait()
        except asyncio.QueueEmpty:
            return _EMPTY, None

    async def get_nowait_batch(self, num_items: int) -> tuple[int, Any]:
        if num_items > self.queue.qsize():
            return _EMPTY, None
        return _OK, [self.queue.get_nowait() for _ in range(num_items)]

    async def terminate(self) -> None:
        exit_actor()


_QueueActorClass: ActorClass[_QueueActor] = remote(_QueueActor)


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0
    ):
        raise ValueError(f"'timeout' must be None or a non-negative number, got {timeout!r}")


class Queue:
    """A first-in first-out queue held by an actor; picklable, so pass it to tasks.

    ``maxsize`` <= 0 means unbounded. ``actor_options`` are the queue actor's options
    (``num_cpus``, ``name``, ...); by default it holds no CPU.
    """

    def __init__(self, maxsize: int = 0, actor_options: dict[str, Any] | None = None) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int):
            raise TypeError(f"maxsize must be an int (<= 0: unbounded), got {maxsize!r}")
        if actor_options is not None and not isinstance(actor_options, dict):
            raise TypeError(f"actor_options must be a dict of actor options, got {actor_options!r}")
        self.maxsize = maxsize
        options = {"num_cpus": 0, **(actor_options or {})}
        self.actor: ActorHandle[_QueueActor] | None = (
            _QueueActorClass.options(**options).remote(maxsize)
        )

    def _handle(self) -> Any:
        if self.actor is None:
            raise RuntimeError("This Queue was shut down.")
        return self.actor

    def __len__(self) -> int:
        return self.size()

    def size(self) -> int:
        return int(get(self._handle().qsize.remote()))

    def qsize(self) -> int:
        return self.size()

    def empty(self) -> bool:
        return self.size() == 0

    def full(self) -> bool:
        return self.maxsize > 0 and self.size() >= self.maxsize

    # -- put ------------------------------------------------------------------------------

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Add ``item``; if full, wait (up to ``timeout`` s) unless ``block`` is False.

        Raises ``Full`` if there is still no room.
        """
        _check_timeout(timeout)
        if not block:
            return self.put_nowait(item)
        status, _ = get(self._handle().put.remote(item, timeout))
        if status != _OK:
            raise Full

    async def put_async(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        _check_timeout(timeout)
        if block:
            status, _ = await self._handle().put.remote(item, timeout)
        else:
            status, _ = await self._handle().put_nowait.remote(item)
        if status != _OK:
            raise Full

    def put_nowait(self, item: Any) -> None:
        status, _ = get(self._handle().put_nowait.remote(item))
        if status != _OK:
            raise Full

    def put_nowait_batch(self, items: Iterable[Any]) -> None:
        """Add all of ``items`` at once, or none of them (``Full`` if they do not fit)."""
        if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
            raise TypeError(f"put_nowait_batch() takes an iterable of items, got {items!r}")
        batch = list(items)
        status, _ = get(self._handle().put_nowait_batch.remote(batch))
        if status != _OK:
            raise Full(f"Cannot add {len(batch)} items to the queue: not enough room.")

    # -- get ------------------------------------------------------------------------------

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Remove and return the oldest item; if empty, wait (up to ``timeout`` s) unless
        ``block`` is False. Raises ``Empty`` if there is still none."""
        _check_timeout(timeout)
        if not block:
            return self.get_nowait()
        status, value = get(self._handle().get.remote(timeout))
        if status != _OK:
            raise Empty
        return value

    async def get_async(self, block: bool = True, timeout: float | None = None) -> Any:
        _check_timeout(timeout)
        if block:
            status, value = await self._handle().get.remote(timeout)
        else:
            status, value = await self._handle().get_nowait.remote()
        if status != _OK:
            raise Empty
        return value

    def get_nowait(self) -> Any:
        status, value = get(self._handle().get_nowait.remote())
        if status != _OK:
            raise Empty
        return value

    def get_nowait_batch(self, num_items: int) -> list[Any]:
        """Remove and return ``num_items`` items at once, or none (``Empty`` if fewer)."""
        if isinstance(num_items, bool) or not isinstance(num_items, int) or num_items < 0:
            raise ValueError(f"num_items must be a non-negative int, got {num_items!r}")
        status, value = get(self._handle().get_nowait_batch.remote(num_items))
        if status != _OK:
            raise Empty(f"Cannot get {num_items} items from the queue: fewer are there.")
        return list(value)

    # -- end ------------------------------------------------------------------------------

    def shutdown(self, force: bool = False, grace_period_s: float = 5) -> None:
        """End the queue's actor; its items are lost, waiting ``get``/``put`` calls fail
        with ``ActorDiedError``. ``force``: at once; else it ends itself, killed if that
        takes longer than ``grace_period_s``. Other copies of the queue stop working too.
        """
        actor, self.actor = self.actor, None
        if actor is None:
            return
        if force:
            kill(actor, no_restart=True)
            return
        wait([actor.terminate.remote()], timeout=grace_period_s)
        # Killed after it ended itself too (a no-op where it is gone): on ray, an async
        # actor ending itself with a call still waiting in it (a ``get`` on an empty
        # queue) is left neither alive nor dead by Ray 2.60, and that call, and every
        # later one, would never end.
        kill(actor, no_restart=True)
