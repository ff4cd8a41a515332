"""Packing call arguments at ``.remote()`` time, in the caller's thread.

Top-level ObjectRefs become dependencies (resolved to values before the call runs);
everything else is pickled now, so the caller may change its objects right after, and an
unpicklable argument fails here with its name, not later in a worker.
"""

from __future__ import annotations

from typing import Any

from actorlib.core.context import Client
from actorlib.core.refs import ObjectRef
from actorlib.core.serialization import describe_unpicklable, serialize
from actorlib.core.specs import NO_ARGS, Args, Dep
from actorlib.exceptions import SerializationError


def pack_args(client: Client, args: tuple[Any, ...], kwargs: dict[str, Any], what: str) -> Args:
    if not args and not kwargs:
        return NO_ARGS
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
