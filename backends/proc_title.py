"""Process titles, so ``ps``, ``top`` and ``htop`` say what each actorlib process is.

``actorlib::worker`` (a process backend or node worker), ``actorlib::Counter`` (one hosting
an actor of that class), ``actorlib::head``, ``actorlib::node``. With ``setproctitle``
(installed with actorlib outside Windows) the whole command line changes; without it, on
Linux, only the short name (``/proc/PID/comm``, 15 characters) does. A task's name is not
shown: setting the title per task would cost every task a system call.
"""

from __future__ import annotations

import contextlib
import sys

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
