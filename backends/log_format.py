"""Log lines as Ray's ``LoggingConfig`` lays them out: TEXT or JSON, each with where it
was logged from.

``init(logging_config=LoggingConfig(...))`` installs :func:`handler` on the root logger of
the driver and of every worker process of the job (``apply_logging``). Each record gets
the job, worker and node it came from and, inside a task or actor call, the task's id,
name and function and the actor's id and name, as Ray's core context filter adds them,
so a line found in any log says whose work wrote it.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from actorlib.core import context
from actorlib.core.execution_context import current_execution
from actorlib.core.ids import id_hex, prefix_of
from actorlib.core.log_fields import STANDARD_ATTRS
from actorlib.core.specs import ActorSpec

_RAY_TIMESTAMP = "_ray_timestamp_ns"  # what Ray's record factory adds, if Ray is imported
TEXT_FORMAT = "%(asctime)s\t%(levelname)s %(filename)s:%(lineno)s -- %(message)s"


def handler(config: dict[str, Any]) -> logging.Handler:
    """A handler on ``sys.stderr`` writing ``config``'s encoding at its level, with the
    context filter. ``config``: ``LoggingConfig.to_dict()``."""
    formatter = _JSON() if config["encoding"] == "JSON" else _Text()
    formatter.additional = list(config.get("additional_log_standard_attrs") or ())
    out = logging.StreamHandler(sys.stderr)
    out.setLevel(config["log_level"])
    out.setFormatter(formatter)
    out.addFilter(ContextFilter())
    return out


class ContextFilter(logging.Filter):
    """Adds where a record was logged from (Ray's ``job_id``, ``worker_id``, ...)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in log_context().items():
            setattr(record, key, value)
        return True


def log_context() -> dict[str, str]:
    """Ray's logging context for the calling code: ids as hex, names; only those it has."""
    client = context.current()
    ctx = current_execution.get()
    if client is None:
        return {}
    if ctx is None:  # the driver, or a worker between tasks
        return {"job_id": id_hex(client.ids.prefix), "worker_id": id_hex(client.ids.prefix)}
    own = ctx.actor_id or ctx.task_id or 0
    out = {
        "job_id": id_hex(prefix_of(own)), "worker_id": id_hex(client.ids.prefix),
        "node_id": ctx.node_id,
    }
    if ctx.actor_id:
        out["actor_id"] = id_hex(ctx.actor_id)
        spec = ctx.spec
        if isinstance(spec, ActorSpec) and spec.name:
            out["actor_name"] = spec.name
    if ctx.task_id:
        out["task_id"] = id_hex(ctx.task_id)
    for key, value in (("task_name", ctx.task_name()),
                       ("task_func_name", ctx.task_function_name())):
        if value:
            out[key] = value
    return out


class _Formatter(logging.Formatter):
    additional: list[str] = []

    def attrs(self, record: logging.LogRecord, standard: bool) -> dict[str, Any]:
        """The line's fields: (``standard``) Ray's default ones, then the configured
        standard attributes, then every attribute a record has beyond the standard ones
        (the context, ``extra=``)."""
        out: dict[str, Any] = {}
        if standard:
            out.update(
                asctime=self.formatTime(record), levelname=record.levelname,
                message=record.getMessage(), filename=record.filename, lineno=record.lineno,
                process=record.process,
            )
            if record.exc_info:
                if not record.exc_text:
                    record.exc_text = self.formatException(record.exc_info)
                out["exc_text"] = record.exc_text
        for key in self.additional:
            out[key] = getattr(record, key, None)
        for key, value in record.__dict__.items():
            if key not in STANDARD_ATTRS and key != _RAY_TIMESTAMP:
                out[key] = value
        # As Ray's lines end (Ray, where imported, stamps each record with its own clock)
        out["timestamp_ns"] = getattr(record, _RAY_TIMESTAMP, None) or int(record.created * 1e9)
        return out


class _Text(_Formatter):
    """Python's usual line, then ``key=value`` for each field beyond it."""

    def __init__(self) -> None:
        super().__init__()
        self._line = logging.Formatter(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = self._line.format(record)
        fields = " ".join(f"{key}={value}" for key, value in self.attrs(record, False).items())
        return f"{line} {fields}" if fields else line


class _JSON(_Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(self.attrs(record, True), default=str)
