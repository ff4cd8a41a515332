"""What ``LoggingConfig`` may ask of a log line, shared by the API that checks a config
and the backends that write the lines (``backends/log_format.py``)."""

from __future__ import annotations

#: The encodings of a line: Python's usual text with ``key=value`` fields, or JSON.
ENCODINGS = ("TEXT", "JSON")

#: A ``LogRecord``'s own attributes (Python's, as Ray lists them): one of these is in a
#: line only if the config names it; any other attribute (``extra=``) always is.
STANDARD_ATTRS = frozenset({
    "args", "asctime", "created", "exc_info", "exc_text", "filename", "funcName",
    "levelname", "levelno", "lineno", "message", "module", "msecs", "msg", "name",
    "pathname", "process", "processName", "relativeCreated", "stack_info", "thread",
    "threadName", "taskName",
})
