"""Process titles, so ``ps``, ``top`` and ``htop`` say what each actorlib process is.

``actorlib::worker`` (a process backend or node worker), ``actorlib::Counter`` (one hosting
an actor of that class), ``actorlib::head``, ``actorlib::node``. With ``setproctitle``
(installed with actorlib outside Windows) the whole command line changes; without it, on
Linux, only the short name (``/proc/PID/comm``, 15 characters) does.

A task worker also names the task it runs, ``actorlib::worker square``, and goes back to
``actorlib::worker`` when idle (:class:`TaskTitles`). Only ``setproctitle`` does that: it
rewrites the process's argument memory, about 2 µs a call and no system call, where
writing ``/proc/self/comm`` costs about 100 µs; without it, task names are not shown.
"""

from __future__ import annotations

import contextlib
import sys
import threading
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

    Called by a worker's task threads as each task starts and as each goes idle. With
    tasks running on several threads at once (one blocked in ``get``), the title names
    the latest started until all are done. The title is rewritten only when it changes.
    """

    def __init__(self, base: str = "worker") -> None:
        self._set = _task_setter()
        self._base = PREFIX + base
        self._running: dict[int, str] = {}  # thread id -> its task's name
        self._shown = self._base
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self._set is not None

    def started(self, name: str) -> None:
        with self._lock:
            self._running[threading.get_ident()] = name
            self._show(f"{self._base} {name}")

    def idle(self) -> None:
        with self._lock:
            self._running.pop(threading.get_ident(), None)
            running = self._running
            self._show(f"{self._base} {next(reversed(running.values()))}" if running
                       else self._base)

    def _show(self, title: str) -> None:
        if title != self._shown and self._set is not None:
            self._shown = title
            self._set(title)
