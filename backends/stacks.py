"""Stack dumps of the processes that run tasks, on request: ``actorlib stack``.

Every process that runs tasks (a process backend's or a cluster node's worker, and on the
thread and sim backends the driver itself), and every driver serving the state socket (a
stuck driver is what a second terminal most often looks into), answers ``SIGUSR1`` by
writing every thread's Python stack to ``<sessions root>/stacks/<pid>.txt``; the reader
(:func:`dump`) truncates the file after reading.

The answer is written by a Python-level handler, on the main thread, holding the GIL.
:mod:`faulthandler`'s own signal handler would write from C, in whichever thread the
signal lands on, without the GIL: it reads every thread's frames while those threads run
and push and pop them, and in CPython 3.11 that crashes a busy process with SIGSEGV
(within a fraction of a second, a few threads running Python, a dump every few ms). The
Python-level handler cannot answer while the main thread is stuck in a C call that holds
the GIL, or ignores signals; for that case the reader may ask for ``SIGUSR2``, which
:mod:`faulthandler` answers from C (``actorlib stack --pid N --without-gil``). Only on
request: a process that merely answers late (a loaded machine) may have threads running
Python, which that read can crash.

A driver answers only when both signals still have their default action (which would
kill the process), so a program with a handler of its own keeps it; and only when
``actorlib.init`` runs on the main thread, the only one that may set a handler.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import re
import signal
import threading
import time
from types import FrameType
from typing import TextIO

SUBDIR = "stacks"
SIGNAL = getattr(signal, "SIGUSR1", None)  # absent on Windows: no dumps there
#: Answered from C (faulthandler), on request: for a process whose main thread is stuck.
FALLBACK = getattr(signal, "SIGUSR2", None)
#: How long :func:`dump` waits for a process to write its stacks.
DUMP_TIMEOUT_S = 5.0
#: How long it waits for a live process's file to appear: a worker given a task while it
#: still boots (an interpreter takes a second or more under load) registers only then.
BOOT_WAIT_S = 5.0

_file: TextIO | None = None
_in_driver = False
#: The frame the Python-level handler adds on top of the main thread's stack: not shown.
_OWN_FRAME = re.compile(r'^  File ".*stacks\.py", line \d+ in _answer\n', re.MULTILINE)


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


def _answer(_signum: int, _frame: FrameType | None) -> None:
    """The Python-level answer to :data:`SIGNAL`: every thread's stack, written with the
    GIL held, so no other thread changes its frames meanwhile."""
    f = _file
    if f is not None:
        with contextlib.suppress(OSError, ValueError):  # closed meanwhile
            faulthandler.dump_traceback(f.fileno(), all_threads=True)


def _ours_or_default(signum: int | None) -> bool:
    return signum is not None and signal.getsignal(signum) in (signal.SIG_DFL, _answer)


def install() -> None:
    """Answer :data:`SIGNAL` at the Python level from now on, where it can be: on the
    main thread, off Windows (a worker calls it first thing)."""
    if (SIGNAL is not None and FALLBACK is not None
            and threading.current_thread() is threading.main_thread()):
        signal.signal(SIGNAL, _answer)


def prepare_driver() -> None:
    """``init``, on the caller's thread before the runtime starts (whose own threads may
    not set a handler): answer :data:`SIGNAL` unless the program handles it or
    :data:`FALLBACK` itself. With no file (:func:`enable_in_driver`) the answer is
    nothing."""
    if _ours_or_default(SIGNAL) and _ours_or_default(FALLBACK):
        install()


def unprepare_driver() -> None:
    """``shutdown``: :data:`SIGNAL` back to its default, where ours and allowed."""
    if (_file is None and SIGNAL is not None and signal.getsignal(SIGNAL) is _answer
            and threading.current_thread() is threading.main_thread()):
        signal.signal(SIGNAL, signal.SIG_DFL)


def enable(where: str | None) -> None:
    """Dump this process's stacks to ``where/<pid>.txt`` on request; never fails.

    The Python-level handler is :func:`install`'s (on the main thread); this opens the
    file it writes to and registers the fallback, from any thread.
    """
    global _file
    if where is None or SIGNAL is None or FALLBACK is None or _file is not None:
        return
    try:
        _file = open(path_of(os.getpid(), where), "a")  # noqa: SIM115 (kept open: the handler's)
        faulthandler.register(FALLBACK, file=_file, all_threads=True, chain=False)
    except (OSError, RuntimeError, ValueError):
        disable()


def disable() -> None:
    """Stop answering and remove this process's file. The Python-level handler stays
    (:func:`unprepare_driver` takes a driver's down): with no file it does nothing."""
    global _file
    if _file is None:
        return
    if FALLBACK is not None:
        faulthandler.unregister(FALLBACK)
    with contextlib.suppress(OSError):
        os.unlink(_file.name)
    _file.close()
    _file = None


def enable_in_driver() -> None:
    """The thread and sim backends: this process runs the tasks, so it answers too,
    where ``init`` could prepare it (:func:`prepare_driver`). From any thread."""
    global _in_driver
    if (_file is not None or SIGNAL is None or signal.getsignal(SIGNAL) is not _answer
            or not _ours_or_default(FALLBACK)):
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


def dump(pid: int, timeout: float = DUMP_TIMEOUT_S, without_gil: bool = False) -> str:
    """Every thread's stack in process ``pid`` of this machine, as faulthandler prints it.

    ``without_gil``: read by :data:`FALLBACK`'s handler, from C, for a process whose main
    thread does not answer (see the module's docstring). Raises ``LookupError`` when
    ``pid`` is not an actorlib process of this user on this machine (no stack file),
    ``TimeoutError`` when it wrote nothing within ``timeout``.
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
                f"pid {pid} does not answer stack requests: not an actorlib process of "
                "this user on this machine, or a driver that cannot answer (its "
                "actorlib.init ran off the main thread, or it handles SIGUSR1 or SIGUSR2 "
                "itself)"
            )
        time.sleep(0.05)
    start = os.path.getsize(path)
    os.kill(pid, FALLBACK if without_gil and FALLBACK is not None else SIGNAL)
    sent = time.monotonic()
    deadline = sent + timeout
    size, stable_since = start, sent
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
            if without_gil:
                raise TimeoutError(f"pid {pid} wrote no stacks within {timeout:g} s")
            raise TimeoutError(
                f"pid {pid} wrote no stacks within {timeout:g} s: its main thread did "
                f"not answer (stuck in a C call?); `actorlib stack --pid {pid} "
                "--without-gil` reads them from the signal handler, which can crash a "
                "process whose threads run Python meanwhile")
    with open(path, "rb") as f:
        f.seek(start)
        text = f.read(size - start).decode("utf-8", "replace")
    with contextlib.suppress(OSError), open(path, "r+") as f:
        f.truncate(0)  # the writer appends (O_APPEND): its next dump starts at 0
    return _OWN_FRAME.sub("", text)
