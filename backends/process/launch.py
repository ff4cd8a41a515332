"""Starting a worker process, and the warm worker ``init()`` starts before anything else.

A worker is a fresh interpreter (``python -c`` importing
:mod:`actorlib.backends.process.worker`), given its end of a socket pair, its claim table
(:mod:`~.claims`) and, where the kernel cannot kill it with its parent, the driver's
lifeline (:mod:`~.portable`). Everything else (the store, ``sys.path``, output) reaches
it later in its ``Init`` message, so a worker can be started before the driver has
built any of that.

This is what :func:`prestart` does: ``init(backend="process")`` starts the first worker
before it imports the runtime and the backend, so the worker's interpreter boots while
the driver goes on. This module is kept light (no asyncio) for that reason.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading

from actorlib.backends.process.claims import ClaimTable
from actorlib.backends.process.portable import lifeline_fd, use_pdeathsig

# Start the worker without the current directory on sys.path, and with the directory this
# process imported actorlib from first where it is not on that path already (an installed
# actorlib's site-packages keeps its place, after the standard library, which a package
# there could otherwise shadow): the worker runs the same actorlib as its driver.
# A driver that imports a checkout's actorlib (its directory on the path) beside an
# installed one would otherwise have workers of the installed one, whose messages may
# differ: the driver's task frames would be dropped as undecodable, and it would wait
# for them for good. The driver's own sys.path reaches the worker with its first message.
# SIGINT is ignored first thing: Ctrl-C in a terminal reaches the whole process group, and
# the driver alone decides what it means (one KeyboardInterrupt traceback, not one per
# worker; a driver that catches it keeps its workers). The terminating signals are
# unblocked next: a worker started from one of actorlib's threads inherits its mask,
# which blocks them (``interruptible.shield_signals``), and so would the processes its
# tasks start. The cyclic collector is off while
# the worker imports its modules: they are kept for good, so each of the dozens of
# collections that many allocations would set off scans them for nothing (a tenth of a
# boot's CPU); it is on again before the first message is read.
WORKER_BOOT = (
    "import gc; gc.disable(); "
    "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "hasattr(signal, 'pthread_sigmask') and signal.pthread_sigmask("
    "signal.SIG_UNBLOCK, (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)); "
    "import sys; sys.path[:] = [p for p in sys.path if p not in ('', '.')]; "
    "{home}"
    "from actorlib.backends.process.worker import main; gc.enable(); main()"
)


def _home() -> str:
    """Where this process imported actorlib from (the directory holding its package)."""
    where = getattr(sys.modules.get("actorlib"), "__file__", None)
    return os.path.dirname(os.path.dirname(os.path.abspath(where))) if where else ""


HOME = _home()
#: The boot code, with :data:`HOME` put on the path.
BOOT = WORKER_BOOT.format(
    home=f"{HOME!r} in sys.path or sys.path.insert(0, {HOME!r}); " if HOME else ""
)


class Launched:
    """A started worker process and the driver's ends of what connects it."""

    def __init__(self) -> None:
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock = parent_sock
        self.claims = ClaimTable.create()
        lifeline = [] if use_pdeathsig() else [lifeline_fd()]  # how it dies with us
        try:
            self.proc = subprocess.Popen(
                [
                    sys.executable, "-c", BOOT, str(child_sock.fileno()),
                    str(os.getpid()), str(self.claims.fd), *map(str, lifeline),
                ],
                pass_fds=[child_sock.fileno(), self.claims.fd, *lifeline],
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            parent_sock.close()
            self.claims.close()
            raise
        finally:
            child_sock.close()
        self.adopted = False

    def discard(self) -> None:
        """Kill and reap it, unless a backend took it over; idempotent."""
        if self.adopted:
            return
        self.adopted = True
        try:
            self.proc.send_signal(signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.sock.close()
        self.claims.close()


def prestart() -> Launched | None:
    """The first worker of a process backend about to start, or None where it must wait.

    Only from the main thread: a worker asks the kernel to kill it when the *thread* that
    started it ends (``PR_SET_PDEATHSIG`` follows the parent thread), and only the main
    thread lives as long as the driver. Elsewhere the backend starts the worker from its
    own loop thread, as it starts every later one.
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    return Launched()
