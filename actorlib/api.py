"""Module-level functions: ``remote``, ``get``, ``put``, ``wait`` and the rest, with Ray's names."""

from __future__ import annotations

import inspect
import operator
import queue
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterator,
    Sequence,
)
from itertools import compress
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from actorlib import session
from actorlib.actor import ActorClass, ActorHandle, handle_from_spec
from actorlib.core import waiting
from actorlib.core.execution_context import current_execution
from actorlib.core.generators import ObjectRefGenerator
from actorlib.core.refs import ObjectRef
from actorlib.core.serialization import Serialized, serialize
from actorlib.core.strings import plain_str
from actorlib.core.waiting import (
    check_timeout,
    client_of,
    completions_async,
    fetch,
    fetch_async,
    id_of,
    timeout_error,
    unique_ids,
    value_of,
)
from actorlib.exceptions import GetTimeoutError
from actorlib.remote_function import P, R, RemoteFunction
from actorlib.runtime_context import RuntimeContext as RuntimeContext  # re-exported
from actorlib.runtime_context import get_runtime_context as get_runtime_context

T = TypeVar("T")
T1 = TypeVar("T1")
T2 = TypeVar("T2")
T3 = TypeVar("T3")
T4 = TypeVar("T4")
T5 = TypeVar("T5")
T6 = TypeVar("T6")

if TYPE_CHECKING:
    from typing import Protocol

    class _RemoteDecorator(Protocol):
        """What ``@remote(**options)`` returns: ``@remote`` itself, options applied."""

        @overload
        def __call__(self, target: type[T], /) -> ActorClass[T]: ...  # type: ignore[overload-overlap]
        @overload
        def __call__(self, target: Callable[P, Awaitable[R]], /) -> RemoteFunction[P, R]: ...
        @overload
        def __call__(self, target: Callable[P, R], /) -> RemoteFunction[P, R]: ...


# -- remote ------------------------------------------------------------------------------


@overload
def remote(target: type[T], /) -> ActorClass[T]: ...  # type: ignore[overload-overlap]
@overload
def remote(target: Callable[P, Awaitable[R]], /) -> RemoteFunction[P, R]: ...
@overload
def remote(target: Callable[P, R], /) -> RemoteFunction[P, R]: ...
@overload
def remote(**options: Any) -> _RemoteDecorator: ...


def remote(target: Any = None, /, **options: Any) -> Any:
    """Make a function a remote function, or a class an actor class.

    ``@remote`` and ``@remote(num_cpus=2, ...)`` both work, as in Ray.
    """
    if target is None:
        return lambda t: _make_remote(t, options)
    if options:
        raise TypeError("Use @remote or @remote(**options), not remote(f, **options).")
    return _make_remote(target, {})


def _make_remote(target: Any, options: dict[str, Any]) -> Any:
    if inspect.isclass(target):
        return ActorClass(target, options)
    if callable(target):
        return RemoteFunction(target, options)
    raise TypeError(f"@remote needs a function or a class, got {target!r}")


# -- objects -----------------------------------------------------------------------------


_REF_TYPES = {ObjectRef}


def _plain_refs(refs: Any) -> bool:
    """``refs`` is a list or tuple of ``ObjectRef``s and nothing else (no subclass, no
    generator): checked in one pass in C. Anything else takes the checks one by one."""
    return type(refs) in (list, tuple) and set(map(type, refs)) == _REF_TYPES


def _as_ref_list(refs: Any, what: str) -> tuple[list[ObjectRef[Any]], bool]:
    if isinstance(refs, ObjectRef):
        return [refs], True
    if _plain_refs(refs):
        return list(refs), False
    if isinstance(refs, (list, tuple)):
        for r in refs:
            if not isinstance(r, ObjectRef):
                raise TypeError(f"{what} takes ObjectRefs, got {type(r).__name__}: {r!r}")
        return list(refs), False
    raise TypeError(f"{what} takes an ObjectRef or a list of them, got {type(refs).__name__}")


def _values(refs: list[ObjectRef[Any]], got: dict[int, Serialized]) -> list[Any]:
    return [value_of(got[r._id]) for r in refs]


# A tuple of refs gives a list of values at run time (as a list of refs does), so a tuple
# of refs to different types is typed as a list of their union, not as a tuple.
@overload
def get(refs: ObjectRef[T], *, timeout: float | None = None) -> T: ...
@overload
def get(refs: tuple[ObjectRef[T1]], *, timeout: float | None = None) -> list[T1]: ...
@overload
def get(
    refs: tuple[ObjectRef[T1], ObjectRef[T2]], *, timeout: float | None = None
) -> list[T1 | T2]: ...
@overload
def get(
    refs: tuple[ObjectRef[T1], ObjectRef[T2], ObjectRef[T3]], *, timeout: float | None = None
) -> list[T1 | T2 | T3]: ...
@overload
def get(
    refs: tuple[ObjectRef[T1], ObjectRef[T2], ObjectRef[T3], ObjectRef[T4]], *,
    timeout: float | None = None,
) -> list[T1 | T2 | T3 | T4]: ...
@overload
def get(
    refs: tuple[ObjectRef[T1], ObjectRef[T2], ObjectRef[T3], ObjectRef[T4], ObjectRef[T5]], *,
    timeout: float | None = None,
) -> list[T1 | T2 | T3 | T4 | T5]: ...
@overload
def get(
    refs: tuple[
        ObjectRef[T1], ObjectRef[T2], ObjectRef[T3], ObjectRef[T4], ObjectRef[T5], ObjectRef[T6]
    ], *,
    timeout: float | None = None,
) -> list[T1 | T2 | T3 | T4 | T5 | T6]: ...
@overload
def get(refs: Sequence[ObjectRef[T]], *, timeout: float | None = None) -> list[T]: ...


def get(refs: Any, *, timeout: float | None = None) -> Any:
    """Block until the values are ready; return them (raise the first error among them)."""
    # One plain ref (``get(f.remote())``) and no timeout are checked here without the
    # checks' frames, and its value is read without ``_values``' list.
    if type(refs) is ObjectRef:
        ref_list, single = [refs], True
    else:
        ref_list, single = _as_ref_list(refs, "get()")
    if timeout is not None:
        check_timeout(timeout, "get()")
    ids = [refs._id] if single else unique_ids(ref_list)
    need = len(ids)
    got = fetch(ref_list, need, timeout, fail_fast=True, ids=ids)
    if len(got) < need:
        _raise_first_error(ref_list, got)
        raise timeout_error("get()", timeout, ref_list, got)
    if single:
        return value_of(got[refs._id])
    return _values(ref_list, got)


@overload
async def get_async(refs: ObjectRef[T], *, timeout: float | None = None) -> T: ...
@overload
async def get_async(refs: tuple[ObjectRef[T1]], *, timeout: float | None = None) -> list[T1]: ...
@overload
async def get_async(
    refs: tuple[ObjectRef[T1], ObjectRef[T2]], *, timeout: float | None = None
) -> list[T1 | T2]: ...
@overload
async def get_async(
    refs: tuple[ObjectRef[T1], ObjectRef[T2], ObjectRef[T3]], *, timeout: float | None = None
) -> list[T1 | T2 | T3]: ...
@overload
async def get_async(
    refs: tuple[ObjectRef[T1], ObjectRef[T2], ObjectRef[T3], ObjectRef[T4]], *,
    timeout: float | None = None,
) -> list[T1 | T2 | T3 | T4]: ...
@overload
async def get_async(
    refs: tuple[ObjectRef[T1], ObjectRef[T2], ObjectRef[T3], ObjectRef[T4], ObjectRef[T5]], *,
    timeout: float | None = None,
) -> list[T1 | T2 | T3 | T4 | T5]: ...
@overload
async def get_async(
    refs: tuple[
        ObjectRef[T1], ObjectRef[T2], ObjectRef[T3], ObjectRef[T4], ObjectRef[T5], ObjectRef[T6]
    ], *,
    timeout: float | None = None,
) -> list[T1 | T2 | T3 | T4 | T5 | T6]: ...
@overload
async def get_async(
    refs: Sequence[ObjectRef[T]], *, timeout: float | None = None
) -> list[T]: ...


async def get_async(refs: Any, *, timeout: float | None = None) -> Any:
    """``get`` for coroutines (asyncio, uvloop, trio): waits without blocking the loop."""
    ref_list, single = _as_ref_list(refs, "get_async()")
    check_timeout(timeout, "get_async()")
    ids = [refs._id] if single else unique_ids(ref_list)
    need = len(ids)
    got = await fetch_async(ref_list, need, timeout, fail_fast=True, ids=ids)
    if len(got) < need:
        _raise_first_error(ref_list, got)
        raise timeout_error("get_async()", timeout, ref_list, got)
    values = _values(ref_list, got)
    return values[0] if single else values


def _raise_first_error(refs: list[ObjectRef[Any]], got: dict[int, Serialized]) -> None:
    """``get`` fails as soon as one object holds an error: raise the first one there is."""
    for ref in refs:
        value = got.get(ref._id)
        if value is not None and value.is_error:
            value_of(value)


def put(value: T, *, _owner: ActorHandle[Any] | None = None) -> ObjectRef[T]:
    """Store ``value`` (copied now; later changes to it are not seen) and return its ref.

    ``_owner`` (Ray's): an actor to own the object, so that it outlives the worker that
    put it. Accepted, and nothing to do: actorlib's core owns every object, which lives
    while a ref to it does, whoever put it."""
    if _owner is not None and not isinstance(_owner, ActorHandle):
        raise TypeError(f"put(_owner=) takes an actor handle, got {type(_owner).__name__}")
    if isinstance(value, ObjectRef):
        raise TypeError("put() of an ObjectRef is not allowed; pass the ref itself instead.")
    client = session.client()
    packed = client.store.seal(serialize(value, label="the value passed to put()"))
    id_ = client.ids.next()
    client.put(id_, packed)
    return ObjectRef(id_, client)


def _wait_args(
    refs: Any, num_returns: int, timeout: float | None, what: str
) -> tuple[list[ObjectRef[Any]], list[int], dict[int, Any]]:
    """``wait``'s arguments checked: the refs as a list, their ids, and the generators
    among them by the id of the ref standing in for each. A list of plain refs (the usual
    case, and each step of a ``wait`` loop) is checked with passes in C, as Ray's own
    ``wait`` does; anything else ref by ref."""
    if _plain_refs(refs):
        return (*_check_wait(refs, num_returns, timeout, what, True), {})
    refs, stand_ins = _generators_as_refs(refs)
    return (*_check_wait(refs, num_returns, timeout, what), stand_ins)


def _check_wait(
    refs: Any, num_returns: int, timeout: float | None, what: str, plain: bool = False,
) -> tuple[list[ObjectRef[Any]], list[int]]:
    """The refs as a list and their ids, in order; ``plain``: ``refs`` passed
    :func:`_plain_refs` already."""
    if plain:
        ref_list, single = list(refs), False
    else:
        ref_list, single = _as_ref_list(refs, what)
    check_timeout(timeout, what)
    if single:
        raise TypeError(f"{what} takes a list of ObjectRefs, not a single one.")
    ids = list(map(id_of, ref_list))  # (in C: a wait loop passes every ref each step)
    if len(set(ids)) != len(ids):
        raise ValueError(f"{what} requires a list of unique ObjectRefs.")
    if isinstance(num_returns, bool) or not isinstance(num_returns, int) or num_returns < 1:
        raise ValueError(f"num_returns must be a positive int, got {num_returns!r}")
    if num_returns > len(ref_list):
        raise ValueError(
            f"num_returns={num_returns} is more than the {len(ref_list)} refs given."
        )
    return ref_list, ids


#: Up to this many ready refs are found by position (``list.index``, in C) and the rest
#: cut around them in slices; more are split with one ``compress`` pass each.
_FEW_READY = 8


def _split(
    refs: list[ObjectRef[Any]], ids: list[int], ready_ids: Collection[int],
    num_returns: int,
) -> tuple[list[ObjectRef[Any]], list[ObjectRef[Any]]]:
    """(ready, not ready), each in the order of ``refs`` (unique; ``ids`` their ids):
    the first ``num_returns`` of those in ``ready_ids`` are ready."""
    count = len(ready_ids)
    if not count:
        return [], list(refs)
    if count <= min(num_returns, _FEW_READY):
        at = sorted(map(ids.index, ready_ids))  # each id is in ``ids`` (fetch's contract)
        rest: list[ObjectRef[Any]] = []
        start = 0
        for i in at:
            rest += refs[start:i]
            start = i + 1
        rest += refs[start:]
        return [refs[i] for i in at], rest
    flags = list(map(ready_ids.__contains__, ids))
    if count <= num_returns:
        return list(compress(refs, flags)), list(compress(refs, map(operator.not_, flags)))
    ready: list[ObjectRef[Any]] = []
    rest = []
    for r, flag in zip(refs, flags, strict=True):  # more ready than asked for: first ones
        (ready if flag and len(ready) < num_returns else rest).append(r)
    return ready, rest


def _generators_as_refs(refs: Any) -> tuple[Any, dict[int, Any]]:
    """As in Ray, ``wait`` takes ``ObjectRefGenerator``s too: each counts as ready when
    its ``next()`` would return at once. Each is replaced by the ref that says so."""
    if not isinstance(refs, (list, tuple)) or not any(
        type(r) is ObjectRefGenerator for r in refs
    ):
        return refs, {}
    stand_ins: dict[int, Any] = {}
    out: list[Any] = []
    for r in refs:
        if type(r) is ObjectRefGenerator:
            ref = r._next_ref()
            stand_ins[ref._id] = r
            r = ref
        out.append(r)
    return out, stand_ins


def _restore(refs: list[Any], stand_ins: dict[int, Any]) -> list[Any]:
    return [stand_ins.get(r._id, r) for r in refs] if stand_ins else refs


def wait(
    refs: Sequence[ObjectRef[T]], *, num_returns: int = 1, timeout: float | None = None,
    fetch_local: bool = True,
) -> tuple[list[ObjectRef[T]], list[ObjectRef[T]]]:
    """Wait until ``num_returns`` refs are ready or ``timeout`` passes: (ready, not_ready).

    ``ObjectRefGenerator``s may be among them: ready when their next item is."""
    if isinstance(refs, (list, tuple)) and not refs:
        check_timeout(timeout, "wait()")
        return [], []
    ref_list, ids, stand_ins = _wait_args(refs, num_returns, timeout, "wait()")
    got = fetch(ref_list, num_returns, timeout, reads=False, ids=ids)
    ready, rest = _split(ref_list, ids, got.keys(), num_returns)
    return _restore(ready, stand_ins), _restore(rest, stand_ins)


async def wait_async(
    refs: Sequence[ObjectRef[T]], *, num_returns: int = 1, timeout: float | None = None,
    fetch_local: bool = True,
) -> tuple[list[ObjectRef[T]], list[ObjectRef[T]]]:
    """``wait`` for coroutines."""
    if isinstance(refs, (list, tuple)) and not refs:
        check_timeout(timeout, "wait_async()")
        return [], []
    ref_list, ids, stand_ins = _wait_args(refs, num_returns, timeout, "wait_async()")
    got = await fetch_async(ref_list, num_returns, timeout, reads=False, ids=ids)
    ready, rest = _split(ref_list, ids, got.keys(), num_returns)
    return _restore(ready, stand_ins), _restore(rest, stand_ins)


class as_completed(Generic[T]):
    """Iterate refs in the order they finish, with ``for`` or ``async for``.

    ``timeout`` bounds the whole iteration; when it passes, ``GetTimeoutError`` is raised.
    """

    def __init__(self, refs: Sequence[ObjectRef[T]], *, timeout: float | None = None) -> None:
        check_timeout(timeout, "as_completed()")
        self._refs = _check_wait(refs, 1, timeout, "as_completed()")[0] if refs else []
        self._timeout = timeout

    def __iter__(self) -> Iterator[ObjectRef[T]]:
        if not self._refs:
            return
        by_id = {r._id: r for r in self._refs}
        done: queue.SimpleQueue[int] = queue.SimpleQueue()
        client = client_of(self._refs)
        ids = list(by_id)

        def ready(id_: int, _value: Serialized) -> None:
            done.put(id_)

        client.watch(ids, ready, False)
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        try:
            for _ in range(len(ids)):
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                # A backend that runs the work only while a thread waits in ``fetch``
                # (sim): wait there; the watch above hears of what ends it.
                if (
                    waiting.hook_runs_work and done.empty()
                    and not fetch(list(by_id.values()), 1, left, reads=False)
                ):
                    raise GetTimeoutError(f"as_completed() timed out after {self._timeout} s")
                try:
                    id_ = done.get(timeout=left)
                except queue.Empty:
                    raise GetTimeoutError(
                        f"as_completed() timed out after {self._timeout} s"
                    ) from None
                yield by_id.pop(id_)
        finally:
            if by_id:
                client.unwatch(list(by_id), ready)

    async def __aiter__(self) -> AsyncIterator[ObjectRef[T]]:
        if not self._refs:
            return
        by_id = {r._id: r for r in self._refs}
        async for id_ in completions_async(self._refs, self._timeout):
            yield by_id[id_]


# -- tasks and actors --------------------------------------------------------------------


def cancel(
    ref: ObjectRef[Any] | ObjectRefGenerator[Any], *, force: bool = False,
    recursive: bool = True,
) -> None:
    """Cancel the task making ``ref`` (or a generator's items): dequeue it, or interrupt
    it if running. ``force=True`` on an actor call not yet ended raises ``ValueError``, as
    in Ray (end the actor with :func:`kill` instead)."""
    if isinstance(ref, ObjectRefGenerator):
        ref = ref.completed()  # pending until the task ends, so it names the task
    if not isinstance(ref, ObjectRef):
        raise TypeError(f"cancel() takes an ObjectRef, got {type(ref).__name__}")
    client_of([ref]).cancel(ref._id, force, recursive)


def kill(actor: ActorHandle[Any], *, no_restart: bool = True) -> None:
    """End an actor at once. Its pending calls fail with ``ActorDiedError``."""
    if not isinstance(actor, ActorHandle):
        raise TypeError(f"kill() takes an ActorHandle, got {type(actor).__name__}")
    client = actor._client or session.client()
    client.kill_actor(actor._id, no_restart)


def get_actor(name: str, namespace: str | None = None) -> ActorHandle[Any]:
    """The live actor called ``name`` in ``namespace`` (default: this job's)."""
    if not name:
        raise ValueError("Please supply a non-empty value to get_actor")
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__} {name!r}")
    if namespace is not None and not isinstance(namespace, str):
        raise TypeError(f"namespace must be None or a str, got {type(namespace).__name__} "
                        f"{namespace!r}")
    client = session.client()
    # Exact str: the lookup may travel to a core in another process (see plain_str).
    ns = plain_str(namespace) if namespace is not None else client.namespace
    spec = client.lookup_actor(plain_str(name), ns)
    if spec is None:
        raise ValueError(f"Failed to look up actor {name!r} in namespace {ns!r}.")
    return handle_from_spec(spec, client)


# -- introspection -----------------------------------------------------------------------


def get_gpu_ids() -> list[int]:
    """The GPU ids held by the calling task or actor ([] in the driver)."""
    ctx = current_execution.get()
    return list(ctx.gpu_ids) if ctx is not None else []


def nodes() -> list[dict[str, Any]]:
    return [
        {
            "NodeID": n.node_id, "Alive": n.alive, "alive": n.alive,
            "Resources": dict(n.resources), "NodeManagerAddress": n.address,
            "Labels": dict(n.labels),
        }
        for n in session.client().nodes()
    ]


def cluster_resources() -> dict[str, float]:
    return session.client().cluster_resources()


def available_resources() -> dict[str, float]:
    return session.client().available_resources()
