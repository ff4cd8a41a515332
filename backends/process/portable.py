"""Portable stand-ins for the process backend's Linux-only mechanisms.

On Linux the process backend sees a worker die through its pidfd, has the kernel kill a
worker when its driver dies (``PR_SET_PDEATHSIG``), and keeps object bytes in
``/dev/shm``. Elsewhere (macOS, other BSDs), and on Linux kernels or sandboxes without
pidfds, it uses:

- a waiter thread per worker blocked in ``Popen.wait()``, handing the exit to the loop
  with ``call_soon_threadsafe``: death is still seen at once, not by polling;
- a *lifeline* pipe: every child holds the read end, only the driver holds the write end,
  so the read returns EOF the moment the driver is gone, however it went;
- object files in a private directory under ``$TMPDIR`` (see ``shm_store``).

``ACTORLIB_PORTABLE=1`` forces the stand-ins on Linux too. It is a testing aid (it is how
the stand-ins are tested here), read once at import; tests flip :data:`FORCED` directly and
set the variable for the child processes they start.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

# For annotations only: a worker imports this module, and it watches no process and may
# never run an event loop.
if TYPE_CHECKING:
    import asyncio
    import subprocess

FORCED: bool = os.environ.get("ACTORLIB_PORTABLE", "") not in ("", "0")


def use_pdeathsig() -> bool:
    """Can the kernel kill this process when its parent dies (Linux ``prctl``)?"""
    return not FORCED and sys.platform.startswith("linux")


def use_dev_shm() -> bool:
    """Is ``/dev/shm`` the place to try for object bytes?"""
    return not FORCED


def pidfd_open(pid: int) -> int | None:
    """A pidfd for ``pid``, or None where there is none (not Linux, Linux < 5.3, seccomp).

    Raises ``ProcessLookupError`` if ``pid`` has already gone.
    """
    if FORCED or not hasattr(os, "pidfd_open"):
        return None
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        raise
    except OSError:  # ENOSYS, EPERM: a kernel or sandbox without pidfds
        return None


class ExitWatcher:
    """Calls ``on_exit(returncode)`` on ``loop`` as soon as ``proc`` has exited.

    A pidfd readable in the loop where there is one; otherwise a daemon thread blocked in
    ``proc.wait()`` (no SIGCHLD handler, which would take the signal from the user's own
    code, and no polling). The thread ends as the process does, so none outlives it.
    """

    def __init__(
        self, proc: subprocess.Popen[bytes], loop: asyncio.AbstractEventLoop,
        on_exit: Callable[[int], None],
    ) -> None:
        self._proc = proc
        self._loop = loop
        self._on_exit = on_exit
        self._thread: threading.Thread | None = None
        try:
            self._pidfd = pidfd_open(proc.pid)
        except ProcessLookupError:  # already exited and reaped by a poll()
            self._pidfd = None
        if self._pidfd is not None:
            loop.add_reader(self._pidfd, self._pidfd_readable)
        else:
            self._thread = threading.Thread(
                target=self._wait, name=f"actorlib-wait-{proc.pid}", daemon=True
            )
            self._thread.start()

    @property
    def uses_pidfd(self) -> bool:
        return self._pidfd is not None

    def _pidfd_readable(self) -> None:
        assert self._pidfd is not None
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._on_exit(self._proc.wait())

    def _wait(self) -> None:
        code = self._proc.wait()
        try:
            self._loop.call_soon_threadsafe(self._exited, code)
        except RuntimeError:  # the loop is closed: nobody is left to tell
            pass

    def _exited(self, code: int) -> None:
        if self._thread is not None:
            self._thread.join()  # it has nothing left to do but return
        self._on_exit(code)


# The driver's lifeline: (read end, write end), made on first use, one per process.
_lifeline: tuple[int, int] | None = None
_lifeline_lock = threading.Lock()


def lifeline_fd() -> int:
    """The read end of this process's lifeline, for a child to inherit (``pass_fds``).

    Both ends are close-on-exec, so only children given the read end get it, and only this
    process holds the write end: a read in the child sees EOF once this process has died.
    A child forked by user code (``multiprocessing`` with "fork") drops its copy of both
    ends, so it cannot keep a dead driver's workers alive.
    """
    global _lifeline
    with _lifeline_lock:
        if _lifeline is None:
            _lifeline = os.pipe()
        return _lifeline[0]


def _forget_lifeline() -> None:
    global _lifeline
    if _lifeline is not None:
        for fd in _lifeline:
            try:
                os.close(fd)
            except OSError:
                pass
        _lifeline = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_lifeline)


def on_lifeline_cut(fd: int, then: Callable[[], None], name: str) -> threading.Thread:
    """Run ``then()`` in a daemon thread once the lifeline ``fd`` reads EOF (parent gone).

    The read blocks without holding the GIL; if a C call holds the GIL when the parent
    dies, ``then`` runs when the GIL is next released (``PR_SET_PDEATHSIG`` does not wait).
    """
    os.set_inheritable(fd, False)  # the child's own children must not hold it

    def watch() -> None:
        try:
            while os.read(fd, 1):  # nobody writes; EOF (b"") when the parent is gone
                pass
        except OSError:
            pass
        then()

    thread = threading.Thread(target=watch, name=name, daemon=True)
    thread.start()
    return thread
