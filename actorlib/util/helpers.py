"""``ray.util.as_completed`` and ``ray.util.map_unordered``: results as they finish.

The loop over ``wait`` that Ray's docs recommend instead of ``get`` inside a ``for``
(which waits for each result in turn), with a bound on the tasks in flight for a stream of
items. Unlike Ray's, a ``timeout=`` that passes with nothing ready raises
``GetTimeoutError`` instead of waiting again.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from actorlib.api import get, wait
from actorlib.core.refs import ObjectRef
from actorlib.exceptions import GetTimeoutError

__all__ = ["as_completed", "map_unordered"]

DEFAULT_CHUNK_SIZE = 10
DEFAULT_BACKPRESSURE_SIZE = 100


def _check(chunk_size: int, kwargs: dict[str, Any]) -> None:
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an int >= 1, got {chunk_size!r}")
    if "num_returns" in kwargs:
        raise ValueError("use chunk_size= instead of num_returns=")
    unknown = set(kwargs) - {"timeout", "fetch_local"}
    if unknown:
        raise TypeError(f"unexpected keyword arguments for wait(): {sorted(unknown)}")


def _next_batch(
    refs: list[ObjectRef[Any]], chunk_size: int, yield_obj_refs: bool, kwargs: dict[str, Any],
) -> tuple[list[Any], list[ObjectRef[Any]]]:
    """The first ready refs (up to ``chunk_size``), as values unless ``yield_obj_refs``."""
    ready, rest = wait(refs, num_returns=min(chunk_size, len(refs)), **kwargs)
    if not ready:
        raise GetTimeoutError(
            f"none of {len(refs)} pending results was ready within {kwargs.get('timeout')} s")
    return (ready if yield_obj_refs else get(ready)), rest


def as_completed(
    refs: Sequence[ObjectRef[Any]], *, chunk_size: int = DEFAULT_CHUNK_SIZE,
    yield_obj_refs: bool = False, **kwargs: Any,
) -> Iterator[Any]:
    """Yield the results of ``refs`` as they become ready, ``chunk_size`` at a time at most
    (the order within a batch is the order of ``refs``). A failed task raises its error
    when its batch is reached. ``timeout=`` and ``fetch_local=`` go to each ``wait``."""
    _check(chunk_size, kwargs)
    pending = list(refs)
    while pending:
        batch, pending = _next_batch(pending, chunk_size, yield_obj_refs, kwargs)
        yield from batch


def map_unordered(
    fn: Any, items: Iterable[Any], *, backpressure_size: int | None = DEFAULT_BACKPRESSURE_SIZE,
    chunk_size: int = DEFAULT_CHUNK_SIZE, yield_obj_refs: bool = False, **kwargs: Any,
) -> Iterator[Any]:
    """``fn.remote(item)`` for each item, yielding results as they finish; at most
    ``backpressure_size`` tasks in flight (None: no bound), so a long or endless iterable
    is consumed as results are taken."""
    if backpressure_size is not None and (
            not isinstance(backpressure_size, int) or backpressure_size < 1):
        raise ValueError(
            f"backpressure_size must be None or an int >= 1, got {backpressure_size!r}")
    if not hasattr(fn, "remote"):
        raise TypeError(f"map_unordered() takes a remote function, got {fn!r}")
    _check(chunk_size, kwargs)
    pending: list[ObjectRef[Any]] = []
    for item in items:
        pending.append(fn.remote(item))
        if backpressure_size is not None and len(pending) >= backpressure_size:
            batch, pending = _next_batch(pending, chunk_size, yield_obj_refs, kwargs)
            yield from batch
    yield from as_completed(pending, chunk_size=chunk_size, yield_obj_refs=yield_obj_refs,
                            **kwargs)
