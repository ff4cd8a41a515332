"""``LoggingConfig`` (Ray's ``ray.LoggingConfig``): how the job's processes log.

``init(logging_config=LoggingConfig(encoding="JSON"))`` puts a handler on the root logger
of the driver and of every worker process of the job, writing each record as a TEXT or
JSON line with where it came from (job, worker, node, task, actor), as Ray does.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from actorlib.core.log_fields import ENCODINGS, STANDARD_ATTRS
from actorlib.core.strings import plain_str

__all__ = ["LoggingConfig"]

_PYTHON_LEVELS = frozenset({"CRITICAL", "FATAL", "ERROR", "WARN", "WARNING", "INFO", "DEBUG",
                            "NOTSET"})


@dataclass
class LoggingConfig:
    """The logging of a job: ``encoding`` ``"TEXT"`` or ``"JSON"``, the root logger's
    ``log_level`` (a level name or number), and ``additional_log_standard_attrs``: which
    of a record's standard attributes (``name``, ``funcName``, ...) each line also carries
    beyond ``asctime``, ``levelname``, ``message``, ``filename``, ``lineno``."""

    encoding: str = "TEXT"
    log_level: str | int = "INFO"
    additional_log_standard_attrs: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.encoding not in ENCODINGS:
            raise ValueError(
                f"Invalid encoding type: {self.encoding}. Valid encoding types are: "
                f"{list(ENCODINGS)}"
            )
        if isinstance(self.log_level, bool) or not isinstance(self.log_level, (str, int)):
            raise TypeError(f"log_level: a level name or number, got {self.log_level!r}")
        if isinstance(self.log_level, str) and not isinstance(
            logging.getLevelName(self.log_level.upper()), int
        ):
            raise ValueError(f"Unknown log level: {self.log_level!r}")
        for attr in self.additional_log_standard_attrs:
            if attr not in STANDARD_ATTRS:
                raise ValueError(
                    f"Unknown python logging standard attribute: {attr}. The valid "
                    f"attributes are: {sorted(STANDARD_ATTRS)}"
                )

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (what travels to the job's worker processes). A level name this
        process registered (``logging.addLevelName``) travels as its number: a worker
        knows only Python's own names. Strings are exact ``str``: a subclass of the
        driver's own would not unpickle there (``plain_str``)."""
        out = asdict(self)
        out["encoding"] = plain_str(self.encoding)
        out["additional_log_standard_attrs"] = [
            plain_str(attr) for attr in self.additional_log_standard_attrs]
        if isinstance(self.log_level, str):
            name = self.log_level.upper()
            out["log_level"] = name if name in _PYTHON_LEVELS else logging.getLevelName(name)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoggingConfig:
        """From :meth:`to_dict`'s form; unknown keys are ignored, as Ray's."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
