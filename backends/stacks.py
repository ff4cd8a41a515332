"""Stack dumps of the processes that run tasks, on request: ``actorlib stack``.

Every process that runs tasks (a process backend's or a cluster node's worker, and on the
thread and sim backends the driver itself), and every driver serving the state socket (a
stuck driver is what a second terminal most often looks into), registers
:mod:`faulthandler` on ``SIGUSR1``,
writing every thread's Python stack to ``<sessions root>/stacks/<pid>.txt``. The handler
writes from C, in the signal handler: it answers while the process is stuck in a C call
(``time.sleep``, a lock, a socket) or even while a thread holds the GIL, which is what a
hang usually is. The file is opened for appending, so the reader (:func:`dump`) may
truncate it after reading.

A driver registers only when ``SIGUSR1`` still has its default action (which would kill
the process), so a program with its own ``SIGUSR1`` handler keeps it.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import signal
import time
from typing import TextIO

SUBDIR = "stacks"
SIGNAL = getattr(signal, "SIGUSR1", None)  # absent on Windows: no dumps there
#: How long :func:`dump` waits for a process to write its stacks.
DUMP_TIMEOUT_S = 5.0
#: How long it waits for a live process's file to appear: a worker given a task while it
#: still boots (an interpreter takes a second or more under load) registers only then.
BOOT_WAIT_S = 5.0

_file: TextIO | None = None
_in_driver = False


def directory(create: bool = False) -> str | None:
    """``<sessions root>/stacks``, private to this user; None if absent or unusable."""
    from actorlib.backends.cluster.sessions import checked_root
    from actorlib.backends.private_dir import private_dir

    try:
        root = checked_root(create=create)
        if root is None:
            return None
        return private_dir(os.path.join(root, SUBDIR), "stack directory", create=create)
    except OSError:
        return None


def path_of(pid: int, where: str) -> str:
    return os.path.join(where, f"{pid}.txt")


def enable(where: str | None) -> None:
    """Dump this process's stacks to ``where/<pid>.txt`` on ``SIGUSR1``; never fails."""
    global _file
    if where is None or SIGNAL is None or _file is not None:
        return
    try:
        _file = open(path_of(os.getpid(), where), "a")  # noqa: SIM115 (kept open: the handler's)
        faulthandler.register(SIGNAL, file=_file, all_threads=True, chain=False)
    except (OSError, RuntimeError, ValueError):
        disable()


def disable() -> None:
    """Stop answering ``SIGUSR1`` and remove this process's file."""
    global _file
    if _file is None:
        return
    if SIGNAL is not None:
        faulthandler.unregister(SIGNAL)
    with contextlib.suppress(OSError):
        os.unlink(_file.name)
    _file.close()
    _file = None


def enable_in_driver() -> None:
    """The thread and sim backends: this process runs the tasks, so it answers too,
    unless the program handles ``SIGUSR1`` itself."""
    global _in_driver
    if SIGNAL is None or _file is not None or signal.getsignal(SIGNAL) != signal.SIG_DFL:
        return
    enable(directory(create=True))
    _in_driver = _file is not None


def disable_in_driver() -> None:
    global _in_driver
    if _in_driver:
        disable()
        _in_driver = False


def sweep(where: str | None) -> None:
    """Remove the files of processes that are gone (killed with their driver, say)."""
    if where is None:
        return
    with contextlib.suppress(OSError):
        for name in os.listdir(where):
            pid = name.removesuffix(".txt")
            if not pid.isdigit():
                continue
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                forget(int(pid), where)
            except OSError:
                pass  # alive (another user's process now has that pid): not ours to judge


def forget(pid: int, where: str | None) -> None:
    """Remove the file of a process that died without removing it (killed)."""
    if where is not None:
        with contextlib.suppress(OSError):
            os.unlink(path_of(pid, where))


def dump(pid: int, timeout: float = DUMP_TIMEOUT_S) -> str:
    """Every thread's stack in process ``pid`` of this machine, as faulthandler prints it.

    Raises ``LookupError`` when ``pid`` is not an actorlib process of this user on this
    machine (no stack file), ``TimeoutError`` when it wrote nothing within ``timeout``.
    """
    where = directory()
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        forget(pid, where)
        raise LookupError(f"pid {pid} is not running") from None
    path = path_of(pid, where) if where is not None else None
    booting = time.monotonic() + BOOT_WAIT_S
    while path is None or not os.path.exists(path) or SIGNAL is None:
        if path is None or SIGNAL is None or time.monotonic() > booting:
            raise LookupError(
                f"pid {pid} is not an actorlib worker of this user on this machine"
            )
        time.sleep(0.05)
    start = os.path.getsize(path)
    os.kill(pid, SIGNAL)
    deadline = time.monotonic() + timeout
    size, stable_since = start, time.monotonic()
    while True:
        time.sleep(0.02)
        now_size = os.path.getsize(path)
        now = time.monotonic()
        if now_size != size:
            size, stable_since = now_size, now
        elif size > start and now - stable_since >= 0.1:
            break  # written, and nothing more for 100 ms: the handler has returned
        if now > deadline:
            if size > start:
                break
            raise TimeoutError(f"pid {pid} wrote no stacks within {timeout:g} s")
    with open(path, "rb") as f:
        f.seek(start)
        text = f.read(size - start).decode("utf-8", "replace")
    with contextlib.suppress(OSError), open(path, "r+") as f:
        f.truncate(0)  # the writer appends (O_APPEND): its next dump starts at 0
    return text
