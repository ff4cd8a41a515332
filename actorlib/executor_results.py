"""How an :class:`~actorlib.executor.Executor`'s calls come back: the record of one
submitted call, reading its result, settling its future, ``map``'s in-order iterator and
its progress bar. Apart from the executor, which decides what runs and when."""

from __future__ import annotations

import concurrent.futures
import functools
import itertools
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ALL_COMPLETED, Future
from concurrent.futures import _base as futures_base
from typing import Any

from actorlib.core import interruptible
from actorlib.core.serialization import Serialized
from actorlib.core.waiting import drive_futures, value_of
from actorlib.exceptions import ExecutorTimeoutError
from actorlib.executor_tasks import ExecutorFuture, partial_results


class Item:
    """One submitted call (a chunk of calls for ``map`` with ``chunksize > 1``)."""

    __slots__ = ("chunked", "direct", "done", "future", "marked", "ref")

    def __init__(self, future: ExecutorFuture, chunked: bool, direct: bool) -> None:
        self.future = future
        self.chunked = chunked
        self.ref: Any = None
        self.done = False  # settled, withdrawn or failed: this executor is done with it
        self.marked = False  # its future shows RUNNING
        # Its future is seen by map's own iterator only (no callbacks on it): a result may
        # settle it as it arrives, unread (``Unread``), with no hop to the futures thread.
        self.direct = direct


class Unread:
    """A result settled as it arrived, not deserialized yet: ``map``'s iterator reads it
    on the consumer's thread (user objects never unpickle on actorlib's own threads)."""

    __slots__ = ("value",)

    def __init__(self, value: Serialized) -> None:
        self.value = value


def read_unread(result: Any) -> Any:
    """A direct future's result as its reader sees it (``Unread`` read here)."""
    if type(result) is Unread:
        return value_of(result.value)  # a result, never an error (see Item.direct)
    return result


def read_result(value: Serialized) -> tuple[Any, BaseException | None]:
    """A call's result, or its error (marked read). Apart, so that the error's traceback
    holds this frame, not the drain loop's (whose locals would make a cycle with it)."""
    try:
        return value_of(value), None
    except BaseException as error:
        # Without its traceback here (read_result, value_of: the remote one is in the
        # message), whose frames would hold the settling loop's, its items and their
        # futures, the future and its error in a cycle only the collector frees.
        return None, error.with_traceback(None)


def settle_future(future: Future[Any], result: Any, exc: BaseException | None) -> None:
    try:
        if exc is None:
            future.set_result(result)
        else:
            future.set_exception(exc)
    except concurrent.futures.InvalidStateError:
        pass  # already failed (broken executor, terminate)


#: The parts of the stdlib's ``wait`` that :func:`wait_futures` reuses (CPython 3.10 to
#: 3.14); a Python without them waits with the stdlib's own, uninterruptible on Ctrl-C.
_STDLIB_WAIT_PARTS = all(
    hasattr(futures_base, name) for name in ("_AcquireFutures", "_create_and_install_waiters")
)


def wait_futures(
    fs: Iterable[Future[Any]], return_when: str = ALL_COMPLETED,
) -> concurrent.futures._base.DoneAndNotDoneFutures[Any]:
    """``concurrent.futures.wait(fs, return_when=return_when)`` that lets Ctrl-C in on
    the main thread.

    The stdlib's sleeps on one event with no time limit, which a Ctrl-C handed to another
    thread does not wake. This is its code with that one wait made interruptible: one
    waiter installed on the futures for the whole wait (not one per slice, whose cost
    would grow with the number of futures), and taken off them however the wait ends.
    """
    fs = set(fs)
    # (sim) the calls run only while a thread waits through the backend's hook: there first.
    drive_futures(fs, return_when, None)
    if not interruptible.on_main_thread() or not _STDLIB_WAIT_PARTS:
        return concurrent.futures.wait(fs, return_when=return_when)
    with futures_base._AcquireFutures(fs):
        done = {f for f in fs if f.done()}
        not_done = fs - done
        if return_when == concurrent.futures.FIRST_COMPLETED and done:
            return futures_base.DoneAndNotDoneFutures(done, not_done)
        if return_when == concurrent.futures.FIRST_EXCEPTION and any(
            not f.cancelled() and f.exception() is not None for f in done
        ):
            return futures_base.DoneAndNotDoneFutures(done, not_done)
        if len(done) == len(fs):
            return futures_base.DoneAndNotDoneFutures(done, not_done)
        waiter = futures_base._create_and_install_waiters(  # type: ignore[attr-defined]
            fs, return_when
        )
    try:
        interruptible.wait(waiter.event)
    finally:
        for f in fs:
            with f._condition:
                f._waiters.remove(waiter)
    done.update(waiter.finished_futures)
    return futures_base.DoneAndNotDoneFutures(done, fs - done)


def batched(iterable: Iterable[Any], n: int) -> Iterator[Any]:
    """``iterable`` in chunks of ``n``: lists, but a ``range`` in ranges (a slice of a
    range is one, and travels as three numbers, not ``n`` pickled items)."""
    if type(iterable) is range:
        yield from (iterable[i:i + n] for i in range(0, len(iterable), n))
        return
    it = iter(iterable)
    while True:
        chunk = list(itertools.islice(it, n))
        if not chunk:
            return
        yield chunk


def ordered_results(
    items: list[Item], end: float | None, chunked: bool, bar: Any,
    cancel_rest: Callable[[list[Item]], int],
) -> Iterator[Any]:
    """Yield results in order; cancel what is left if the consumer stops early."""
    try:
        items.reverse()
        while items:
            future = items[-1].future
            try:
                value = future.result(None if end is None else end - time.monotonic())
            except concurrent.futures.TimeoutError as exc:
                if future.done():  # the call itself raised a TimeoutError
                    raise
                raise ExecutorTimeoutError(
                    "map() timed out waiting for the next result"
                ) from exc
            except Exception:
                items.pop()
                partial = partial_results(future) if chunked else None
                if partial:
                    yield from partial
                raise
            items.pop()
            del future
            value = read_unread(value)
            if chunked:
                yield from value
            else:
                yield value
    finally:
        if items:
            cancel_rest(items)
        if bar is not None:
            bar.close()


def progress_bar(futures: Sequence[Future[Any]], sizes: list[int] | None) -> Any:
    from actorlib.progress import make_bar

    total = len(futures) if sizes is None else sum(sizes)
    bar = make_bar(total=total, desc=None)
    lock = threading.Lock()

    def advance(n: int, _future: Future[Any]) -> None:
        with lock:
            bar.update(n)

    for i, future in enumerate(futures):
        future.add_done_callback(functools.partial(advance, 1 if sizes is None else sizes[i]))
    return bar

