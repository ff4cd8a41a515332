"""Packing call arguments at ``.remote()`` time, in the caller's thread.

Top-level ObjectRefs become dependencies (resolved to values before the call runs);
everything else is pickled now, so the caller may change its objects right after, and an
unpicklable argument fails here with its name, not later in a worker.
"""

from __future__ import annotations

import inspect
import pickle
from collections.abc import Callable
from typing import Any

from actorlib.core.context import Client
from actorlib.core.execution_context import current_execution
from actorlib.core.generators import ObjectRefGenerator
from actorlib.core.refs import ObjectRef
from actorlib.core.serialization import (
    PLAIN_SCALARS,
    Serialized,
    describe_unpicklable,
    serialize,
)
from actorlib.core.specs import DRIVER_CALLER, NO_ARGS, Args, Dep
from actorlib.exceptions import SerializationError

#: Shapes remembered per signature; beyond this (``**kwargs`` with ever new names) calls
#: are still checked, just not remembered.
_MAX_SHAPES = 256

_Param = tuple[str, int, bool]  # name, inspect.Parameter kind, has a default


class ArgCheck:
    """Raises ``TypeError`` at ``.remote()`` for arguments the callee cannot take, as Ray
    does, rather than later at ``get``.

    ``inspect.Signature.bind`` costs about 1.5 µs, too much for ``.remote()``. Whether a
    call binds depends only on its shape (how many positional arguments, which keyword
    names), so each shape is bound once and remembered: later calls cost one set lookup.
    Pickles as the parameters' names and kinds only (defaults need not pickle).
    """

    __slots__ = ("_params", "_signature", "shapes", "what")

    def __init__(self, params: list[_Param], what: str) -> None:
        self._params = params
        self._signature = inspect.Signature([
            inspect.Parameter(name, inspect._ParameterKind(kind),
                              default=None if has_default else inspect.Parameter.empty)
            for name, kind, has_default in params
        ])
        self.shapes: set[Any] = set()
        self.what = what

    @classmethod
    def of(cls, fn: Callable[..., Any], what: str, drop_first: bool = False) -> ArgCheck | None:
        """The check for ``fn``; None when its signature cannot be known (some builtins)."""
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError):
            return None
        params = list(signature.parameters.values())
        if drop_first and params and params[0].kind in (
            inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD
        ):
            params = params[1:]  # ``self`` of a method
        return cls([(p.name, int(p.kind), p.default is not p.empty) for p in params], what)

    def __call__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        shape = (len(args), *kwargs) if kwargs else len(args)
        # (``.remote()`` tests ``len(args) in shapes`` itself first: no call then)
        if shape in self.shapes:
            return
        try:
            self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.what}: {exc}") from None
        if len(self.shapes) < _MAX_SHAPES:
            self.shapes.add(shape)

    def __reduce__(self) -> Any:
        return (ArgCheck, (self._params, self.what))


def pack_args(client: Client, args: tuple[Any, ...], kwargs: dict[str, Any], what: str) -> Args:
    if not args and not kwargs:
        return NO_ARGS
    if not kwargs:
        # The common call, a few plain scalars (an item of ``Executor.map``): the bytes
        # ``serialize`` would make, without its walk, the slots or a store to seal in.
        for arg in args:
            if type(arg) not in PLAIN_SCALARS:
                break
        else:
            return Args(Serialized(pickle.dumps((args, {}), protocol=5), (), (), False))
    deps: list[int] = []

    def slot(value: Any) -> Any:
        if type(value) is ObjectRef:
            deps.append(value._id)
            return Dep(len(deps) - 1)
        return value

    positional = tuple(slot(a) for a in args)
    keywords = {k: slot(v) for k, v in kwargs.items()}
    try:
        payload = serialize((positional, keywords))
    except SerializationError as exc:
        raise SerializationError(_which_argument(args, kwargs, what, exc)) from exc.__cause__
    return Args(client.store.seal(payload), tuple(deps))


def _which_argument(
    args: tuple[Any, ...], kwargs: dict[str, Any], what: str, exc: Exception
) -> str:
    named = [(f"argument {i} of {what}", a) for i, a in enumerate(args)]
    named += [(f"argument {k!r} of {what}", v) for k, v in kwargs.items()]
    for label, value in named:
        if _fails(value):
            return describe_unpicklable(value, exc.__cause__ or exc, label)
    return str(exc)


def _fails(value: Any) -> bool:
    try:
        serialize(value)
    except SerializationError:
        return True
    return False


def mint_returns(
    client: Client, num_returns: int, name: str, task: int = 0
) -> tuple[tuple[int, ...], list[ObjectRef[Any]]]:
    """Ids for a call's results, and the refs handed to the caller (counted by the core).

    ``task``: the id of the task or call making them (``ObjectRef.task_id()``).
    """
    return_ids = tuple(client.ids.next() for _ in range(num_returns))
    return return_ids, [ObjectRef(i, client, name, task) for i in return_ids]


def mint_results(
    client: Client, num_returns: int | str, name: str, task: int
) -> tuple[tuple[int, ...], int, str, Any]:
    """A call's return ids, their count, its generator kind ("" for a plain one), and
    what ``.remote()`` returns: a ref, refs, None, or an ``ObjectRefGenerator``."""
    if num_returns == 1:  # the common case, without the general path's lists
        rid = client.ids.next()
        return (rid,), 1, "", ObjectRef(rid, client, name, task)
    if num_returns == "streaming":
        ids, refs = mint_returns(client, 2, name, task)  # the stream's head, its end
        return ids, 2, "streaming", ObjectRefGenerator(refs[0], refs[1])
    if num_returns == "dynamic":
        ids, refs = mint_returns(client, 1, name, task)
        return ids, 1, "dynamic", refs[0]
    assert isinstance(num_returns, int)
    ids, refs = mint_returns(client, num_returns, name, task)
    return ids, num_returns, "", returned(refs)


def num_returns_of(fn: Any, options: dict[str, Any]) -> int | str:
    """``num_returns`` as given, else "streaming" for a generator function (Ray's
    default), else 1."""
    if "num_returns" in options:
        return options["num_returns"]
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        return "streaming"
    return 1


def returned(refs: list[ObjectRef[Any]]) -> Any:
    """What ``.remote()`` returns: a ref, a list of refs (num_returns > 1), or None (0)."""
    if len(refs) == 1:
        return refs[0]
    return refs or None


def caller_id() -> int:
    """Who is calling, for per-caller actor ordering: this task or actor, or the driver."""
    execution = current_execution.get()
    return execution.caller_id if execution is not None else DRIVER_CALLER
