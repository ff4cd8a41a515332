"""Generator tasks and calls: their items sent one by one, as they are produced.

``num_returns="streaming"``: each yielded item is stored and reported at once
(``CoreEvents.item_produced``); with backpressure the producer pauses while that many
items are unconsumed, until the core reports consumption (``Backend.items_consumed``,
handed to :meth:`Gates.consumed`). ``num_returns="dynamic"``: every item is stored as an
object of its own as it is produced, and the task returns one
:class:`~actorlib.core.generators.DynamicObjectRefGenerator` of their refs. A generator
with an int ``num_returns`` must yield exactly that many values (as in Ray).
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from types import AsyncGeneratorType, GeneratorType
from typing import TYPE_CHECKING, Any

from actorlib.backends.base import CoreEvents, ObjectStore
from actorlib.backends.runner.user_code import Packed, serialize_result
from actorlib.core import context
from actorlib.core.records import StreamItem
from actorlib.core.refs import ObjectRef

if TYPE_CHECKING:
    import asyncio  # imported by async producers only (see user_code)

#: How often a paused producer looks again (a cancel interrupts it between looks).
PAUSE_POLL_S = 0.05


def is_generator(result: Any) -> bool:
    return isinstance(result, _GENERATORS)  # inspect.isgenerator or inspect.isasyncgen


_GENERATORS = (GeneratorType, AsyncGeneratorType)


class Gate:
    """How many items of one stream its consumer has taken, as the core last said."""

    def __init__(self) -> None:
        self.consumed = 0
        self.cond = threading.Condition()
        self.waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def advance(self, consumed: int) -> None:
        with self.cond:
            self.consumed = max(self.consumed, consumed)
            self.cond.notify_all()
            waiters, self.waiters = self.waiters, []
        for loop, fut in waiters:
            loop.call_soon_threadsafe(_wake, fut)

    def wait(self, produced: int, threshold: int) -> None:
        with self.cond:
            while produced - self.consumed >= threshold:
                self.cond.wait(PAUSE_POLL_S)

    async def wait_async(self, produced: int, threshold: int) -> None:
        import asyncio

        loop = asyncio.get_running_loop()
        while True:
            with self.cond:
                if produced - self.consumed < threshold:
                    return
                fut: asyncio.Future[None] = loop.create_future()
                self.waiters.append((loop, fut))
            await fut


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class Gates:
    """The gates of the streams produced in this process, by producer id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gates: dict[int, Gate] = {}

    def open(self, id_: int) -> Gate:
        with self._lock:
            gate = self._gates[id_] = Gate()
            return gate

    def close(self, id_: int, gate: Gate) -> None:
        """Forget ``gate``, the one this producer opened: not a later attempt's gate of
        the same id (a retry may open it before an abandoned attempt unwinds)."""
        with self._lock:
            if self._gates.get(id_) is gate:
                del self._gates[id_]

    def consumed(self, id_: int, consumed: int) -> None:
        with self._lock:
            gate = self._gates.get(id_)
        if gate is not None:
            gate.advance(consumed)


class Producer:
    """Drives one generator of a task or call and sends its items on."""

    def __init__(
        self, spec: Any, work_id: int, name: str, events: CoreEvents, store: ObjectStore,
        gates: Gates,
    ) -> None:
        self.spec = spec
        self.work_id = work_id
        self.name = name
        self.events = events
        self.store = store
        self.gates = gates
        self.refs: list[ObjectRef[Any]] = []

    def check(self, result: Any) -> None:
        if self.spec.generator and not is_generator(result):
            raise TypeError(
                f"{self.name} has num_returns={self.spec.generator!r} but returned "
                f"{type(result).__name__}, not a generator: use yield, or an int num_returns"
            )

    def _emit(self, index: int, item: Any) -> None:
        value = self.store.seal(serialize_result(item, f"item {index} of {self.name}"))
        if self.spec.generator == "streaming":
            self.events.item_produced(StreamItem(self.work_id, self.spec.attempt, index, value))
            return
        client = context.current()
        assert client is not None  # user code runs with a client installed
        id_ = client.ids.next()
        client.put(id_, value)
        self.refs.append(ObjectRef(id_, client, self.name, self.work_id))

    def _result(self) -> Any:
        if self.spec.generator == "dynamic":
            # Here, not at import: it brings the waiting machinery (anyio, asyncio),
            # which a worker running plain functions does without.
            from actorlib.core.generators import DynamicObjectRefGenerator

            return DynamicObjectRefGenerator(self.refs)
        return (None, None)  # the stream's head and end: the core fills the head's chain

    def _threshold(self) -> int:
        return self.spec.backpressure if self.spec.generator == "streaming" else 0

    def drain(self, gen: Any) -> Any:
        """Iterate a sync generator here; the task's result (see ``_result``)."""
        threshold = self._threshold()
        gate = self.gates.open(self.work_id)
        try:
            for index, item in enumerate(gen):
                self._emit(index, item)
                if threshold > 0:
                    gate.wait(index + 1, threshold)
        finally:
            self.gates.close(self.work_id, gate)
        return self._result()

    async def drain_async(self, gen: Any) -> Any:
        """Iterate an async (or sync) generator on the running loop."""
        self.check(gen)
        if not inspect.isasyncgen(gen):
            return self.drain(gen)
        threshold = self._threshold()
        gate = self.gates.open(self.work_id)
        try:
            index = 0
            async for item in gen:
                self._emit(index, item)
                index += 1
                if threshold > 0:
                    await gate.wait_async(index, threshold)
        finally:
            self.gates.close(self.work_id, gate)
        return self._result()


def exactly(result: Any, num_returns: int, name: str, store: ObjectStore) -> Packed:
    """A generator with an int ``num_returns``: its values, which must be that many, each
    stored as it is yielded (so the task never holds them all at once, as in Ray)."""
    if inspect.isasyncgen(result):
        raise TypeError(f"{name} is an async generator: use num_returns='streaming'")
    values = []
    for index, item in enumerate(result):
        if index == num_returns:
            raise ValueError(f"{name} has num_returns={num_returns} but yielded more values")
        values.append(store.seal(serialize_result(item, f"result {index} of {name}")))
    if len(values) != num_returns:
        raise ValueError(
            f"{name} has num_returns={num_returns} but yielded {len(values)} values"
        )
    return Packed(values)


def produce_sync(producer: Producer, result: Any, run_coro: Callable[[Any], Any]) -> Any:
    """A task's or sync actor's generator result, driven to its end on this thread
    (``run_coro`` runs a coroutine on the thread's own loop, cancellably)."""
    producer.check(result)
    if inspect.isasyncgen(result):
        return run_coro(producer.drain_async(result))
    return producer.drain(result)
