"""Ray's ``ray.runtime_env.RuntimeEnv``: a ``runtime_env`` written as a class.

It is a ``dict``, so it is accepted wherever a ``runtime_env`` dict is (``init``,
``@remote``, ``.options()``, ``JobConfig``), and it is checked when made: a field actorlib
does not support raises ``ValueError`` at once rather than being ignored.
"""

from __future__ import annotations

import json
from typing import Any

from actorlib.options import validate_runtime_env

__all__ = ["RuntimeEnv"]


class RuntimeEnv(dict[str, Any]):
    """``RuntimeEnv(env_vars={"K": "v"}, working_dir="./proj", py_modules=[...])``; the
    same fields as the dict form (paths are checked and made absolute when made)."""

    def __init__(self, **fields: Any) -> None:
        given = {k: v for k, v in fields.items() if v is not None}
        super().__init__(validate_runtime_env(given) if given else {})

    def env_vars(self) -> dict[str, str]:
        return dict(self.get("env_vars") or {})

    def working_dir(self) -> str | None:
        return self.get("working_dir")

    def py_modules(self) -> list[str]:
        return list(self.get("py_modules") or ())

    def to_dict(self) -> dict[str, Any]:
        return dict(self)

    def serialize(self) -> str:
        return json.dumps(self, sort_keys=True)

    @classmethod
    def deserialize(cls, serialized: str) -> RuntimeEnv:
        return cls(**json.loads(serialized))

    def __repr__(self) -> str:
        return f"RuntimeEnv({dict.__repr__(self)})"
