"""Process titles, so ``ps``, ``top`` and ``htop`` say what each actorlib process is.

``actorlib::worker`` (a process backend or node worker), ``actorlib::Counter`` (one hosting
an actor of that class), ``actorlib::head``, ``actorlib::node``. With ``setproctitle``
(installed with actorlib outside Windows) the whole command line changes; without it, on
Linux, only the short name (``/proc/PID/comm``, 15 characters) does.

A task worker also names the task it runs, ``actorlib::worker square``, and goes back to
``actorlib::worker`` when idle (:class:`TaskTitles`: within a second). Only
``setproctitle`` does that: it rewrites the process's argument memory, without a system
call, where writing ``/proc/self/comm`` costs about 100 µs; without it, task names are
not shown.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable

PREFIX = "actorlib::"


def set_title(what: str) -> None:
    """Call this process ``actorlib::<what>``; never fails (a title is a courtesy)."""
    title = PREFIX + what
    try:
        import setproctitle
    except ImportError:
        pass
    else:
        setproctitle.setproctitle(title)
    _set_comm(title)  # setproctitle leaves it once set (it sets it only the first time)


def set_title_raw(title: str) -> None:
    """Call this process ``title`` exactly (a process that is no longer actorlib's)."""
    try:
        import setproctitle
    except ImportError:
        pass
    else:
        setproctitle.setproctitle(title)
    _set_comm(title)


def _set_comm(title: str) -> None:
    """The process's short name, from any thread (``prctl(PR_SET_NAME)`` would name only
    the calling thread, and titles change on a worker's reader thread)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError), open("/proc/self/comm", "w") as f:
            f.write(title[:15])


def _task_setter() -> Callable[[str], None] | None:
    try:
        from setproctitle import setproctitle
    except ImportError:
        return None
    return setproctitle


class TaskTitles:
    """``actorlib::<base> <task>`` while a task runs, ``actorlib::<base>`` when none does.

    Set from a worker's main thread at each of its looks (every tenth of a second while
    tasks come, at least every second), not by the tasks: two title writes and their
    bookkeeping on every task cost a burst of short tasks a tenth of each worker's CPU,
    to name tasks that end before anyone could read the title. A task that runs for a
    second is named, and the title says idle within a second of the last task's end;
    it is rewritten only when it changes.
    """

    def __init__(self, base: str = "worker") -> None:
        self._set = _task_setter()
        self._base = PREFIX + base
        self._shown = self._base

    @property
    def enabled(self) -> bool:
        return self._set is not None

    def show(self, task: str | None) -> None:
        """Name ``task`` as running, or none (None)."""
        title = self._base if task is None else f"{self._base} {task}"
        if title != self._shown and self._set is not None:
            self._shown = title
            self._set(title)
