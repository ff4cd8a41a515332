"""Waiting for objects from any thread and any event loop.

The core reports readiness by calling a watcher on its own loop thread. Here those calls
become something the waiter understands: a released lock (blocking ``get``), an anyio
event on the waiter's loop (asyncio, uvloop or trio), or a ``concurrent.futures.Future``.
Values are unpickled in the waiter's thread, never on the core loop.
"""

from __future__ import annotations

import _thread
import asyncio
import concurrent.futures
import functools
import logging
import math
import operator
import os
import queue
import threading
import time
import warnings
from collections.abc import AsyncIterator, Callable, Container, Iterable, Sequence
from itertools import filterfalse
from pickle import loads as _loads
from typing import Any

import sniffio

from actorlib.core import context
from actorlib.core.execution_context import ExecutionContext, current_execution
from actorlib.core.interruptible import (
    DONE_STATES,
    InterruptibleFuture,
    idle_get,
    unshield_signals,
)
from actorlib.core.interruptible import acquire as _acquire
from actorlib.core.refs import ObjectRef
from actorlib.core.serialization import Serialized, deserialize
from actorlib.exceptions import (
    BlockingGetWarning,
    GetTimeoutError,
    RuntimeClosedError,
    SerializationError,
    TaskCancelledError,
    TaskError,
    WorkerCrashedError,
)


def client_of(refs: Sequence[ObjectRef[Any]]) -> context.Client:
    for ref in refs:
        client = ref._client
        if client is None or client.closed:
            raise RuntimeClosedError(
                f"{ref!r} belongs to an actorlib runtime that was shut down."
            )
        return client
    client = context.current()
    if client is None:
        raise RuntimeClosedError("actorlib is not initialized")
    return client


def value_of(obj: Serialized) -> Any:
    """The value an object holds; raise it if it holds an error."""
    if obj.is_error:
        obj.read = True  # delivered to a caller: not an unhandled error
        raise deserialize(obj)
    if not obj.buffers:
        # ``deserialize``'s usual case, without its frame (every value ``get`` returns)
        try:
            return _loads(obj.data)
        except Exception as exc:
            raise SerializationError(f"Could not unpickle a value: {exc!r}") from exc
    return deserialize(obj)


#: Set (to anything but "" or "0") to silence reports of errors nobody retrieved.
IGNORE_UNHANDLED_ENV = "ACTORLIB_IGNORE_UNHANDLED_ERRORS"
log = logging.getLogger("actorlib")


def report_unhandled(value: Serialized) -> None:
    """Log an error value nobody retrieved, as its last ref dies (Ray does the same).

    Called on the core loop: the bytes are copied here (they are freed next) and
    unpickled on the completer thread, never on the loop. What is reported is what Ray
    reports (its ``IsUnhandledError``: a task's failure or a worker's death): an exception
    the task or call raised (``TaskError``), a ``WorkerCrashedError`` (work whose worker
    died, retries spent; not its finer out-of-memory or node-death kinds, as Ray), and an
    error that cannot even be unpickled here. Not a call to an actor that was killed or
    ended itself (``exit_actor()``, whose own call's result is an ``ActorDiedError``
    nobody reads), a lost object, a cancellation or a shutdown.
    """
    if os.environ.get(IGNORE_UNHANDLED_ENV, "") not in ("", "0"):
        return
    try:
        copy = Serialized(bytes(value.data), [bytes(b) for b in value.buffers], (), True)
    except Exception:  # its buffers are not here (another node's)
        copy = None
    completer.submit(functools.partial(_log_unhandled, copy))


def _log_unhandled(value: Serialized | None) -> None:
    error: Any = "an error whose value is on another node"
    if value is not None:
        try:
            error = deserialize(value)
        except Exception as exc:
            error = f"an error that could not be unpickled here: {exc}"
    if isinstance(error, BaseException) and not _reported(error):
        return
    log.error("Unhandled error (suppress with '%s=1'): %s", IGNORE_UNHANDLED_ENV, error)


def _reported(error: BaseException) -> bool:
    """Ray's rule (see :func:`report_unhandled`): a task's own failure, a worker's death."""
    if isinstance(error, TaskCancelledError):
        return False
    return isinstance(error, TaskError) or type(error) is WorkerCrashedError


def _release(lock: Any) -> None:
    try:
        lock.release()
    except RuntimeError:  # released already: the wait had ended
        pass


#: A ref's id, read in C by ``map``: no Python call per ref.
id_of = operator.attrgetter("_id")


def unique_ids(refs: Sequence[ObjectRef[Any]]) -> list[int]:
    """The refs' ids, each once, in order."""
    return list(dict.fromkeys(map(id_of, refs)))


class _Collect:
    """Gathers values until ``need`` distinct ids are ready, then calls ``done`` once.

    With ``fail_fast`` (``get``), the first error ends the wait: its caller raises it at
    once rather than after every other object is ready, as Ray does.
    """

    __slots__ = ("done", "fail_fast", "got", "need")
    #: ``fetch``/``fetch_async`` call ``blocking_wait`` (when set) right after watching
    #: with one of these, in the same thread: a backend may leave the waiting to its hook.
    hook_follows = True

    def __init__(self, need: int, done: Callable[[], None], fail_fast: bool = False) -> None:
        self.got: dict[int, Serialized] = {}
        self.need = need
        self.done = done
        self.fail_fast = fail_fast

    def __call__(self, id_: int, value: Serialized) -> None:
        got = self.got
        if id_ in got or len(got) >= self.need:
            return
        got[id_] = value
        if len(got) == self.need:
            done = self.done  # (a slot holding a function: 3.11 calls it slowly as a method)
            done()
        elif value.is_error and self.fail_fast:
            self.need = len(got)
            self.done()

    def stop_early(self, client: context.Client, ids: list[int]) -> None:
        """After a wait that ended early (``fail_fast``): stop watching the rest."""
        if len(self.got) < len(ids):
            client.unwatch(list(filterfalse(self.got.__contains__, ids)), self)


_new_collect = object.__new__  # (see ``fetch``)

#: How a thread blocked in ``fetch`` waits: None to block on the lock the core releases
#: when the wait is over. A backend that runs user code under a scheduler of its own (the
#: deterministic ``sim`` backend) sets ``hook(lock, timeout, ids, asynchronous, need) ->
#: released`` so that each wait becomes a step it schedules, in virtual time. The hook
#: must fall back to ``lock.acquire`` for threads it does not control. ``fetch_async``
#: calls it too (``asynchronous``): it may run the others until the wait is over (then
#: the await completes at once), or return True at once to let the await wait. ``need``
#: is how many of ``ids`` the waiter needs in all, so a backend whose store can wait for
#: many objects in one call (Ray's ``ray.get`` of a list) does so; the hook is called
#: right after the watch whose callback has ``hook_follows`` (see ``_Collect``).
blocking_wait: Callable[[Any, float | None, list[int], bool, int], bool] | None = None
#: True while the work runs only when a thread waits in ``blocking_wait`` (the ``sim``
#: backend sets it): a wait on anything else (a future, a pool's result) must then go
#: through ``fetch`` first, or it waits for ever (see :class:`DrivenFuture`). False on
#: every other backend, Ray's (whose hook only waits) included: their waits are as ever.
hook_runs_work = False
#: A backend whose store can wait for objects itself may set ``hook(ids, need,
#: fail_fast, reads) -> values or None``: ``fetch`` calls it for a ``get`` or a ``wait``
#: with no timeout in a thread that runs no task, before any watch (a ``wait``: before
#: asking ``ready_values`` too; None: the usual watch and wait). The Ray backend's
#: waits in ``ray.get``/``ray.wait`` as plain Ray's do, without the watch, its waiter
#: and its delivery (about 15 us of the driver's CPU per ``get``; a ``wait`` loop over
#: 1,000 refs paid its watch of all of them per call).
blocking_fetch: Callable[[list[int], int, bool, bool], dict[int, Serialized] | None] | None = (
    None
)


def _quick_fetch(
    quick: Callable[[list[int], int, bool, bool], dict[int, Serialized] | None],
    ids: list[int], need: int, fail_fast: bool, reads: bool,
) -> dict[int, Serialized] | None:
    if not _blocking_warned:
        _warn_if_in_event_loop()
    return quick(ids, need, fail_fast, reads)


def fetch(
    refs: Sequence[ObjectRef[Any]], need: int, timeout: float | None, fail_fast: bool = False,
    reads: bool = True, ids: list[int] | None = None,
) -> dict[int, Serialized]:
    """Block until ``need`` of ``refs`` are ready (or ``timeout``, or with ``fail_fast``
    one of them holds an error); return those ready. ``reads`` False: the caller only
    waits: an error it gets is not handled by it, and a value may be
    :data:`~actorlib.core.serialization.UNREAD` (only which are ready counts). ``ids``:
    the refs' ids without duplicates, when the caller has them (a ``wait`` loop)."""
    if need <= 0:
        return {}
    # ``client_of(refs)``, without its frame when the first ref's client is open (as
    # nearly always: that function raises the errors otherwise)
    client = refs[0]._client if refs else None
    if client is None or client.closed:
        client = client_of(refs)
    if ids is None:
        ids = unique_ids(refs)
    quick = blocking_fetch
    if quick is not None and (timeout is not None or current_execution.get() is not None):
        quick = None
    if quick is not None and not reads:
        # A wait: the store's own wait finds those complete already as well, with no
        # pass over all the ids here first (a wait loop would pay it at every call).
        found = _quick_fetch(quick, ids, need, fail_fast, reads)
        if found is not None:
            return found
        quick = None
    # Values this process can read at once (the core is here, or the backend can ask
    # its store about all of them in one call).
    got = client.ready_values(ids, need, fail_fast, reads)
    # (``got and``: no generator made for nothing ready, a lone ``get``'s usual case)
    if len(got) == need or (fail_fast and got and any(v.is_error for v in got.values())):
        return got
    if quick is not None and not got:
        found = _quick_fetch(quick, ids, need, fail_fast, reads)
        if found is not None:
            return found
    lock = _thread.allocate_lock()
    lock.acquire()
    # Released by the values or by a cancel (``execution.wakeup``), whichever comes first.
    # ``_Collect(need, partial(_release, lock), fail_fast)``, its slots set here: a class
    # called with an ``__init__`` costs ~600 instructions more (CPython 3.11).
    collect = _new_collect(_Collect)
    collect.got = {}
    collect.need = need
    collect.done = functools.partial(_release, lock)
    collect.fail_fast = fail_fast
    client.watch(ids, collect, reads)
    execution: ExecutionContext | None = None
    task_id: int | None = None
    ok = False
    # Whatever interrupts this wait (Ctrl-C in the driver, a cancel's interrupt in a
    # task, at any bytecode) ends its watch: an object that never becomes ready must not
    # keep one watcher per interrupted wait.
    try:
        hook = blocking_wait
        # (positional: a keyword into a C function is parsed by name)
        if hook is None and lock.acquire(True, 0.0005):
            return collect.got
        execution = current_execution.get()
        if execution is None and timeout != 0 and not _blocking_warned:
            _warn_if_in_event_loop()
        if execution is not None and execution.lost_interrupt:
            execution.lost_interrupt = False  # (see ``ObjectRef.__del__``)
            raise KeyboardInterrupt("The task was cancelled before it waited in get().")
        blocked = (
            execution.task_id if execution is not None and execution.actor_id is None else None
        )
        if blocked is not None:
            assert execution is not None
            task_id = blocked  # first: the ``finally`` undoes what follows
            execution.wakeup = functools.partial(_release, lock)
            client.task_blocked(blocked, True)
        if hook is None:
            ok = _acquire(lock, None if timeout is None else max(timeout, 0.0))
        else:
            ok = hook(lock, None if timeout is None else max(timeout, 0.0), ids, False, need)
        if ok and execution is not None and execution.cancelled and (
            len(collect.got) < collect.need
        ):
            # Woken by a cancel, not by the values (its interrupt usually fires first).
            # Only this wait ends: a task that caught the cancel may still ``get`` after.
            # As the cancel's own interrupt would (and Ray does): not an Exception, so an
            # ``except Exception`` around ``get`` does not swallow the cancel.
            raise KeyboardInterrupt("The task was cancelled while it waited in get().")
    except BaseException:
        client.unwatch(ids, collect)
        raise
    finally:
        if task_id is not None:
            assert execution is not None
            execution.wakeup = None
            client.task_blocked(task_id, False)
    if not ok:
        if timeout is not None:
            # A wait that gives up must still see the objects that were ready by then
            # (a zero timeout, or a backend whose completions lag, as Ray's callback
            # thread can): let the core answer the watch before giving up on it.
            client.flush()
        client.unwatch(ids, collect)
    else:
        collect.stop_early(client, ids)
    return dict(collect.got)


_blocking_warned = False


def _warn_if_in_event_loop() -> None:
    """Warn (once per process) that this blocking wait stalls a running event loop.

    Only outside actorlib's own tasks and actors (``fetch`` checks ``current_execution``):
    a blocking ``get`` in an ``async def`` actor method stalls that actor's loop alone,
    which Ray allows and some actors want (their calls then run one at a time, like a
    sync actor's); the core also knows it may wait and is not deadlocked by it. In an
    application's own loop it stalls everything else the application does, silently.
    Only called when the wait is about to block, so ``get`` of ready objects pays nothing.
    """
    global _blocking_warned
    if asyncio._get_running_loop() is None:
        return
    _blocking_warned = True
    warnings.warn(
        "actorlib.get()/wait() blocks this thread, whose asyncio event loop is running: "
        "every other coroutine waits too. Use `await ref`, `await actorlib.get_async(...)` "
        "or `await actorlib.wait_async(...)` instead. (Warned once per process.)",
        BlockingGetWarning, stacklevel=4,
    )


def _hand_off() -> Callable[..., None]:
    """How the core's thread runs a callback on the waiter's event loop, without waiting.

    The one step anyio cannot take for us: its ``from_thread.run_sync`` waits for the call
    to finish, which would stall the core's loop behind the waiter's.
    """
    if sniffio.current_async_library() != "asyncio":
        import trio  # anyio runs on asyncio or trio

        token = trio.lowlevel.current_trio_token()

        def call_trio(fn: Callable[..., object], *args: Any) -> None:
            try:
                token.run_sync_soon(fn, *args)
            except trio.RunFinishedError:  # the waiter's run has ended
                pass

        return call_trio
    loop = asyncio.get_running_loop()

    def call_asyncio(fn: Callable[..., object], *args: Any) -> None:
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the waiter's loop has closed
            pass

    return call_asyncio


class _AnyioSignal:
    """Set from any thread, awaited on the waiter's loop: an anyio event (trio)."""

    __slots__ = ("_event", "_hand_off")

    def __init__(self) -> None:
        import anyio  # only under trio: a plain driver never pays for importing it

        self._event = anyio.Event()
        self._hand_off = _hand_off()

    def set_threadsafe(self) -> None:
        self._hand_off(self._event.set)

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self, timeout: float | None) -> bool:
        """False if ``timeout`` passed first."""
        import anyio

        with anyio.move_on_after(timeout):
            await self._event.wait()
            return True
        return False


class _AsyncioSignal:
    """The same on asyncio and uvloop, as a bare future: there anyio's event and cancel
    scope cost more than the whole wait (3 us against 7 us per ``await ref`` on uvloop,
    measured), and ``await ref`` is the hot path of async code."""

    __slots__ = ("_future", "_loop")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._future: asyncio.Future[None] = self._loop.create_future()

    def set_threadsafe(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self._set)
        except RuntimeError:  # the waiter's loop has closed
            pass

    def _set(self) -> None:
        if not self._future.done():
            self._future.set_result(None)

    def is_set(self) -> bool:
        return self._future.done() and not self._future.cancelled()

    async def wait(self, timeout: float | None) -> bool:
        if timeout is None:
            await self._future
            return True
        try:
            await asyncio.wait_for(self._future, timeout)
        except asyncio.TimeoutError:
            return False
        return True


def _signal() -> _AnyioSignal | _AsyncioSignal:
    if sniffio.current_async_library() == "asyncio":
        return _AsyncioSignal()
    return _AnyioSignal()


async def fetch_async(
    refs: Sequence[ObjectRef[Any]], need: int, timeout: float | None, fail_fast: bool = False,
    reads: bool = True, ids: list[int] | None = None,
) -> dict[int, Serialized]:
    """``fetch`` for coroutines: asyncio (and uvloop) or trio."""
    if need <= 0:
        return {}
    # ``client_of(refs)``, without its frame when the first ref's client is open (as
    # nearly always: that function raises the errors otherwise)
    client = refs[0]._client if refs else None
    if client is None or client.closed:
        client = client_of(refs)
    if ids is None:
        ids = unique_ids(refs)
    signal = _signal()
    hook = blocking_wait
    if hook is None:
        collect = _Collect(need, signal.set_threadsafe, fail_fast)
    else:
        lock = _thread.allocate_lock()
        lock.acquire()

        def done() -> None:
            _release(lock)
            signal.set_threadsafe()

        collect = _Collect(need, done, fail_fast)
    client.watch(ids, collect, reads)
    timed_out = False
    try:
        # A scheduler of its own may run everything else until this wait is over first.
        if hook is not None and not hook(lock, timeout, ids, True, need):
            timed_out = True
        else:
            timed_out = not await signal.wait(timeout)
    finally:
        if signal.is_set():
            collect.stop_early(client, ids)
        else:  # timed out or cancelled
            if timed_out and timeout is not None:  # as in ``fetch``
                client.flush()
            client.unwatch(ids, collect)
    return dict(collect.got)


async def completions_async(
    refs: Sequence[ObjectRef[Any]], timeout: float | None
) -> AsyncIterator[int]:
    """Yield ids as their objects become ready, from one watch (asyncio, uvloop, trio)."""
    import anyio

    ids, client = unique_ids(refs), client_of(refs)
    deadline = None if timeout is None else time.monotonic() + timeout
    send, receive = anyio.create_memory_object_stream[int](math.inf)
    hand_off = _hand_off()

    def ready(id_: int, _value: Serialized) -> None:
        hand_off(send.send_nowait, id_)

    pending = set(ids)
    by_id = {r._id: r for r in refs}
    client.watch(ids, ready, False)
    try:
        while pending:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            id_: int | None = None
            # A backend that runs the work only while a wait goes through its hook (sim):
            # wait there; the watch above hears of what ends it.
            if (
                hook_runs_work and not receive.statistics().current_buffer_used
                and not await fetch_async([by_id[i] for i in pending], 1, left, reads=False)
            ):
                raise GetTimeoutError(f"as_completed() timed out after {timeout} s")
            with anyio.move_on_after(left):  # never around the yield: the caller's code
                id_ = await receive.receive()  # must not run inside this scope
            if id_ is None:
                raise GetTimeoutError(f"as_completed() timed out after {timeout} s")
            pending.discard(id_)
            yield id_
    finally:
        if pending:
            client.unwatch(list(pending), ready)
        send.close()
        receive.close()


def timeout_error(
    what: str, timeout: float | None, refs: Sequence[ObjectRef[Any]], ready: Container[int],
) -> GetTimeoutError:
    """Name the refs that were not ready, and what produces each where the caller knows."""
    pending = list({r._id: r for r in refs if r._id not in ready}.values())
    shown = [r.hex() + (f" ({r._name})" if r._name else "") for r in pending[:5]]
    more = f" and {len(pending) - 5} more" if len(pending) > 5 else ""
    return GetTimeoutError(
        f"{what} timed out after {timeout} s: {len(pending)} object(s) not ready: "
        f"{', '.join(shown)}{more}."
    )


def check_timeout(timeout: float | None, what: str) -> None:
    """``timeout`` is None (wait for ever) or seconds >= 0; anything else is a mistake.

    A negative timeout used to mean "do not wait", silently: Ray refuses it, and so do we.
    """
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0:
        raise ValueError(f"{what} timeout must be None or a number of seconds >= 0, "
                         f"got {timeout!r}")


async def get_one_async(ref: ObjectRef[Any]) -> Any:
    got = await fetch_async([ref], 1, None)
    return value_of(got[ref._id])


# -- concurrent.futures bridge ------------------------------------------------------------


class Completer:
    """Resolves ``concurrent.futures.Future`` objects on a thread of its own.

    A future runs its done-callbacks in the thread that resolves it; that must be neither
    the core loop (a slow callback would stall everything) nor a worker.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._os_thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, fn: Callable[[], None]) -> None:
        if self._os_thread is None:
            with self._lock:
                if self._os_thread is None:
                    self._os_thread = threading.Thread(
                        target=self._run, name="actorlib-futures", daemon=True
                    )
                    self._os_thread.start()
        self._queue.put(fn)

    def _run(self) -> None:
        unshield_signals()  # the callbacks are the user's; idle, shielded (idle_get)
        while True:
            fn = idle_get(self._queue)
            if fn is None:
                return
            try:
                fn()
            except Exception:  # a user's done-callback raising: futures log it already
                pass
            # Drop it before waiting for the next: it may hold a ref (future_of's keeps
            # its ref alive until settled), which would live on until the next job.
            del fn

    def stop(self) -> None:
        thread = self._os_thread
        if thread is not None:
            self._queue.put(None)
            thread.join()
            self._os_thread = None


completer = Completer()


class DrivenFuture(InterruptibleFuture):
    """A future settled (on the completer thread) once a ref is ready: ``ref.future()``'s,
    the Executor's and Pool's.

    Where the work runs only while a thread waits in the backend's hook
    (:data:`hook_runs_work`: the ``sim`` backend), ``result``/``exception`` first wait
    for that ref through :func:`fetch`, as ``get`` would, its timeout in the backend's
    (virtual) time; the settle that follows takes no step of the run. Else, as ever.
    """

    def settling_ref(self) -> ObjectRef[Any] | None:
        """The ref whose value settles this future (None: none, or settled already)."""
        return None

    def _waited(self, timeout: float | None) -> float | None:
        if hook_runs_work and self._state not in DONE_STATES:
            ref = self.settling_ref()
            if ref is not None and not fetch([ref], 1, timeout, reads=False):
                return 0  # the wait's time passed: the stdlib's code says so
        return super()._waited(timeout)


def drive_futures(
    futures: Iterable[concurrent.futures.Future[Any]], return_when: str, timeout: float | None,
) -> float | None:
    """Before a wait on several :class:`DrivenFuture` s at once (a pool's result, the
    Executor's shutdown), where :data:`hook_runs_work`: wait through :func:`fetch` until
    the refs of those not settled are ready as ``return_when`` (``concurrent.futures``'
    ``ALL_COMPLETED``, ``FIRST_COMPLETED``, ``FIRST_EXCEPTION``) asks; the futures then
    settle without a step of the run. Returns the timeout left for the wait on the
    futures themselves (0: it passed)."""
    if not hook_runs_work:
        return timeout
    refs = [
        ref for f in futures
        if isinstance(f, DrivenFuture) and not f.done() and (ref := f.settling_ref()) is not None
    ]
    if not refs:
        return timeout
    need = 1 if return_when == concurrent.futures.FIRST_COMPLETED else len(unique_ids(refs))
    fail_fast = return_when == concurrent.futures.FIRST_EXCEPTION
    got = fetch(refs, need, timeout, fail_fast=fail_fast, reads=False)
    if len(got) >= need or (fail_fast and any(v.is_error for v in got.values())):
        return timeout
    return 0


class _RefFuture(DrivenFuture):
    """``ref.future()``'s: it knows its ref until settled (then lets it go)."""

    def __init__(self, ref: ObjectRef[Any]) -> None:
        super().__init__()
        self.ref: ObjectRef[Any] | None = ref

    def settling_ref(self) -> ObjectRef[Any] | None:
        return self.ref


def future_of(ref: ObjectRef[Any]) -> concurrent.futures.Future[Any]:
    """A future settled with ``ref``'s value on the completer thread; its ``result()``
    on the main thread lets Ctrl-C in (:class:`InterruptibleFuture`)."""
    fut = _RefFuture(ref)
    fut.set_running_or_notify_cancel()
    client = client_of([ref])

    def settle(value: Serialized, keep_alive: ObjectRef[Any] = ref) -> None:
        fut.ref = None
        try:
            result = value_of(value)
        except BaseException as exc:
            fut.set_exception(exc)
        else:
            fut.set_result(result)

    def ready(_id: int, value: Serialized) -> None:
        completer.submit(lambda: settle(value))

    client.watch([ref._id], ready)
    return fut
