"""On/off settings read from the environment, one rule for all: unset or ``0`` is off,
``1`` is on, anything else is refused at ``init`` naming the variable."""

from __future__ import annotations

import os

__all__ = ["env_switch"]


def env_switch(name: str) -> bool:
    value = os.environ.get(name, "").strip()
    if value in ("", "0"):
        return False
    if value == "1":
        return True
    raise ValueError(f"{name} must be 0 or 1, got {value!r}")
