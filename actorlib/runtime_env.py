"""Ray's ``ray.runtime_env.RuntimeEnv``: a ``runtime_env`` written as a class.

It is a ``dict``, so it is accepted wherever a ``runtime_env`` dict is (``init``,
``@remote``, ``.options()``, ``JobConfig``), and it is checked when made: a field actorlib
does not support raises ``ValueError`` at once rather than being ignored.
"""

from __future__ import annotations

import json
from typing import Any

from actorlib.options import check_runtime_env_config, validate_runtime_env

__all__ = ["RuntimeEnv", "RuntimeEnvConfig"]


class RuntimeEnvConfig(dict[str, Any]):
    """Ray's ``RuntimeEnvConfig``, given as ``runtime_env={"config": ...}``: how Ray
    installs an environment. Checked as Ray checks it; actorlib's fields need no install
    step, so it has nothing to act on (Ray code that sets it runs unchanged)."""

    def __init__(self, setup_timeout_seconds: int = 600, eager_install: bool = True,
                 log_files: list[str] | None = None) -> None:
        super().__init__(check_runtime_env_config({
            "setup_timeout_seconds": setup_timeout_seconds, "eager_install": eager_install,
            "log_files": [] if log_files is None else log_files,
        }))


class RuntimeEnv(dict[str, Any]):
    """``RuntimeEnv(env_vars={"K": "v"}, working_dir="./proj", py_modules=[...])``; the
    same fields as the dict form (paths are checked and made absolute when made)."""

    def __init__(self, **fields: Any) -> None:
        given = {k: v for k, v in fields.items() if v is not None}
        # (A setup hook is kept: given to a task or an actor, it is refused there.)
        super().__init__(validate_runtime_env(given, job=True) if given else {})

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
