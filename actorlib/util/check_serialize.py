"""``inspect_serializability``: which part of an object keeps it from crossing to a worker.

Ray's ``ray.util.inspect_serializability``, same signature and result: it tries to pickle
the object as actorlib would (cloudpickle), and when that fails walks into what the
pickle holds (a function's closure and the globals it uses, an object's attributes, the
items of a container) to name the innermost parts that fail, printing a tree as it goes.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any, NamedTuple, TextIO

import cloudpickle

__all__ = ["FailureTuple", "inspect_serializability"]

_RULE = "=" * 61


class FailureTuple(NamedTuple):
    """An object that cannot be pickled, its name where it was found, and its holder;
    ``path``: the names from the inspected object down to it (Ray 2.60's field; ``name``,
    its last, is older Ray's)."""

    obj: Any
    name: str
    parent: Any
    path: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return (f"FailTuple({self.name} [path={' -> '.join(self.path)}, "
                f"obj={_short(self.obj)}, parent={_short(self.parent)}])")


def _short(value: Any, limit: int = 120) -> str:
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not hide the report
        text = f"<{type(value).__qualname__} object>"
    return text if len(text) <= limit else text[:limit] + "..."


def _error(value: Any) -> BaseException | None:
    try:
        cloudpickle.dumps(value, protocol=5)
    except Exception as exc:
        return exc
    return None


def _members(value: Any) -> tuple[str, list[tuple[str, Any]]]:
    """What pickling ``value`` pickles with it, and what kind of parts those are."""
    if inspect.isfunction(value):
        code = value.__code__
        parts: list[tuple[str, Any]] = []
        if value.__closure__:
            for name, cell in zip(code.co_freevars, value.__closure__, strict=False):
                try:
                    parts.append((name, cell.cell_contents))
                except ValueError:  # an empty cell
                    pass
        used = set(code.co_names)
        for const in code.co_consts:  # nested functions and comprehensions
            if inspect.iscode(const):
                used.update(const.co_names)
        globals_ = value.__globals__
        parts += [(n, globals_[n]) for n in sorted(used) if n in globals_
                  and not inspect.ismodule(globals_[n])]
        return "captured variables", parts
    if isinstance(value, dict):
        return "items", [(repr(k), v) for k, v in value.items()]
    if isinstance(value, (list, tuple, set, frozenset)):
        return "items", [(f"[{i}]", v) for i, v in enumerate(value)]
    if inspect.isclass(value):
        return "class members", [
            (n, v) for n, v in vars(value).items() if not (n.startswith("__") and n.endswith("__"))
        ]
    state = getattr(value, "__dict__", None)
    if isinstance(state, dict):
        return "attributes", list(state.items())
    return "parts", []


def _inspect(
    value: Any, path: tuple[str, ...], parent: Any, depth: int, failures: set[FailureTuple],
    out: TextIO, indent: str,
) -> bool:
    error = _error(value)
    if error is None:
        return True
    print(f"{indent}!!! FAIL serialization: {error}", file=out)
    if depth > 0:
        kind, members = _members(value)
        if members:
            print(f"{indent}Detected {len(members)} {kind}. Checking serializability...",
                  file=out)
        found = False
        for member_name, member in members:
            if _error(member) is None:
                continue
            print(f"{indent}    Serializing {member_name!r} {_short(member)}...", file=out)
            _inspect(member, (*path, member_name), value, depth - 1, failures, out,
                     indent + "    ")
            found = True
        if found:
            return False
        if members:
            print(f"{indent}WARNING: Did not find non-serializable object in "
                  f"{_short(value)}. This may be an oversight.", file=out)
    failures.add(_Failure(value, path[-1], parent, path))
    return False


class _Failure(FailureTuple):
    """Hashable by identity: the objects themselves may not be hashable."""

    def __hash__(self) -> int:
        return hash((id(self.obj), self.name, id(self.parent)))

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, FailureTuple) and other.obj is self.obj
                and other.name == self.name and other.parent is self.parent)


def inspect_serializability(
    base_obj: Any, name: str | None = None, depth: int = 3, print_file: TextIO | None = None,
) -> tuple[bool, set[FailureTuple]]:
    """Whether ``base_obj`` can be sent to a task or actor, and if not, what in it cannot.

    Prints the search (to ``print_file``, default stdout) and returns ``(ok, failures)``,
    each failure naming the innermost object found unpicklable (down to ``depth`` levels).
    """
    out = print_file if print_file is not None else sys.stdout
    label = name if name is not None else _short(base_obj)
    print(_RULE, file=out)
    print(f"Checking Serializability of {label}", file=out)
    print(_RULE, file=out)
    failures: set[FailureTuple] = set()
    ok = _inspect(base_obj, (label,), None, depth, failures, out, "")
    if ok:
        print("Serialization succeeded: this object can be sent to tasks and actors.", file=out)
    else:
        print(_RULE, file=out)
        print("Variables found to be non-serializable:\n", file=out)
        for failure in sorted(failures, key=lambda f: f.name):
            print(f"\t{failure!r}", file=out)
        print("\nCreate these inside the task or actor instead of passing or capturing "
              "them, or make them picklable (__reduce__, or copyreg).", file=out)
    print(_RULE, file=out)
    return ok, failures
