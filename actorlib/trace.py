"""``actorlib.timeline()``: tasks and actor calls as a Chrome trace (Ray's ``ray.timeline``).

Built from the state API's task rows (:func:`actorlib.util.state.list_tasks`), so it needs
nothing recorded beyond what the core keeps anyway: each task's submission, start (handed
to a worker) and end times, and the process that ran it. The file is Chrome's trace event
format (JSON), which Perfetto (https://ui.perfetto.dev) and ``chrome://tracing`` open.

- One track group per worker process (``pid``), with as many lanes (``tid``) as it ran
  tasks at once; one complete event (``"ph": "X"``) per task or call attempt that started,
  from its start to its end (to now while it runs), category ``task`` or ``actor_task``.
- Scheduling delay, from submission to start, as an event of its own (category
  ``scheduling``) on the track ``scheduler``, and as ``args.scheduling_delay_ms``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from actorlib.core.trace_events import trace_events

__all__ = ["timeline", "timeline_of", "trace_events"]

#: How many task rows the timeline reads at most (the core keeps 10,000 of each kind).
MAX_ROWS = 1_000_000

Rows = Callable[[str], list[dict[str, Any]]]


def timeline(filename: str | os.PathLike[str] | None = None) -> list[dict[str, Any]] | None:
    """The tasks and actor calls the core knows as Chrome trace events (Ray's
    ``ray.timeline``): written to ``filename`` as JSON when given (returns None), else
    returned. Open the file in https://ui.perfetto.dev or ``chrome://tracing``."""
    return timeline_of(None, filename)


def timeline_of(
    rows: Rows | None, filename: str | os.PathLike[str] | None = None,
) -> list[dict[str, Any]] | None:
    """:func:`timeline` of the runtime ``rows`` reads (None: as the state API chooses)."""
    from actorlib.util import state

    task_rows: list[dict[str, Any]] = list(state.list_tasks(limit=MAX_ROWS, detail=True,
                                                            _fetch=rows))
    events = trace_events(task_rows)
    if filename is None:
        return events
    with open(filename, "w") as f:
        json.dump(events, f)
    return None
