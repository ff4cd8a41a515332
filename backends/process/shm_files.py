"""The object store's files, one at a time: their names, where they go, writing one, sweeping.

What :class:`~actorlib.backends.process.shm_store.SharedMemoryStore` does to a single file
or directory, without any of its accounting: the ``actorlib-{session}-{pid}-{n}`` naming,
the private disk directory used without ``/dev/shm``, a flat byte view of a buffer, space
reserved before a write (a full tmpfs then fails with ``ENOSPC`` rather than SIGBUS), and
removing the files of runtimes whose driver died. Separate because these are the
filesystem mechanics, while the store itself is the accounting over them (capacity,
spilling, freeing); tests and the process backend's leak checks use the naming and the
fallback directory on their own.
"""

from __future__ import annotations

import errno
import os
import threading
from typing import Any

from actorlib.exceptions import ObjectStoreFullError

# shutil and tempfile are imported where used: a worker imports this module at boot (through
# the arena's reader) and needs neither.

__all__ = [
    "PREFIX",
    "SHM_DIR",
    "WRITE_STEP",
    "byte_view",
    "fallback_dir",
    "made_by_earlier_process",
    "next_number",
    "pid_alive",
    "remove_stale",
    "reserve",
    "started_at",
    "unlink",
]

#: Preferred place for buffer files: memory-backed, shared by all processes of the host.
SHM_DIR = "/dev/shm"
PREFIX = "actorlib-"

_counter_lock = threading.Lock()
_counter = 0


def next_number() -> int:
    """A number unique within this process (and, with the pid, within the session)."""
    global _counter
    with _counter_lock:
        _counter += 1
        return _counter


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (another user's counts as alive), and is not a
    zombie: a daemon killed with SIGKILL stays one until it is reaped, and its files are
    free to sweep meanwhile."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    except OverflowError:  # not a real pid
        return False
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is not None and fields[0] == b"Z"


def _stat_fields(pid: int) -> list[bytes] | None:
    """The fields of ``/proc/<pid>/stat`` after the process's name (its state first);
    None without ``/proc`` (macOS) or the process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(b")") + 2:].split()  # (a name may hold spaces and parens)


def _boot_time() -> float | None:
    """When the machine booted (``btime`` of ``/proc/stat``), read at each call: the
    kernel gives it as the wall clock now less the time since boot, so it moves when the
    clock is stepped, and a value kept from before a step backwards would put every
    process's start after the files it made (and sweep a live driver's as stale)."""
    try:
        with open("/proc/stat", "rb") as f:
            return float(next(int(line.split()[1]) for line in f if line.startswith(b"btime ")))
    except (OSError, StopIteration, ValueError):
        return None


#: How far a process's start time read from ``/proc`` may be off: the boot time it is
#: counted from is whole seconds.
START_SLACK_S = 2.0


def started_at(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), where ``/proc`` says;
    None if it does not exist or the system has no ``/proc``."""
    fields, boot = _stat_fields(pid), _boot_time()
    if fields is None or boot is None:
        return None
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: start, in ticks


def made_by_earlier_process(path: str, pid: int) -> bool:
    """Whether ``path`` predates the process now running as ``pid``: then that pid was
    reused, and the process that made the file is gone."""
    started = started_at(pid)
    if started is None:
        return False
    try:
        changed = os.stat(path).st_ctime
    except OSError:
        return False
    return changed < started - START_SLACK_S


def remove_stale(directory: str) -> list[str]:
    """Remove ``actorlib-{pid}-*`` entries of runtimes whose driver ``pid`` is dead.

    A driver killed with SIGKILL cannot clean up; its files would hold memory forever.
    Entries of live (or other users') processes are left alone, unless older than the
    process now under their pid (pids are reused: 32,768 of them by default on Linux, so
    a busy machine wraps in minutes). Returns what was removed.
    """
    import shutil

    removed: list[str] = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if not name.startswith(PREFIX):
            continue
        pid_text = name[len(PREFIX):].split("-", 1)[0]
        if not pid_text.isdigit():
            continue
        path = os.path.join(directory, name)
        pid = int(pid_text)
        if pid_alive(pid) and not made_by_earlier_process(path, pid):
            continue
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        except OSError:  # vanished meanwhile, or not ours to remove
            continue
        removed.append(path)
    return removed


def fallback_dir() -> str:
    """Where object files go without ``/dev/shm`` (macOS, a small Docker ``/dev/shm``).

    A private directory under ``$TMPDIR``, not POSIX shared memory (``shm_open``), because
    reads stay zero-copy either way (every reader maps the same page-cache pages with
    ``mmap``) while only files keep the rest of the store working: stale files of a
    SIGKILLed driver are found by listing the directory (macOS cannot list its
    ``shm_open`` segments, so they would hold memory until reboot), spilling is a
    rename, and writes use ``pwrite`` (macOS shared memory refuses ``write`` and a second
    ``ftruncate``, and caps names at 31 bytes). The price: the kernel may write the pages
    to disk in the background.
    """
    import tempfile

    return os.path.join(tempfile.gettempdir(), f"actorlib-objects-{os.getuid()}")


def byte_view(buf: Any) -> memoryview:
    """A flat byte view of a contiguous buffer, without copying when C-contiguous.

    Not ``pickle.PickleBuffer(buf).raw()``: over a memoryview that makes the garbage
    collector fail (or crash) when the views end up in a reference cycle.
    """
    mv = memoryview(buf)
    if mv.ndim == 1 and mv.format == "B" and mv.c_contiguous:
        return mv
    if mv.c_contiguous:
        return mv.cast("B")
    return memoryview(mv.tobytes(order="A"))  # Fortran order: keep the memory order


WRITE_STEP = 64 * 2**20  # bytes per pwrite call


def reserve(fd: int, size: int) -> None:
    """Allocate the file's blocks now: a full store fails here, cleanly, before any copy."""
    if hasattr(os, "posix_fallocate"):
        os.posix_fallocate(fd, 0, size)
    else:  # macOS: no reservation possible; at least size the file
        os.ftruncate(fd, size)


def full_store_error(what: str, directory: str, exc: OSError) -> ObjectStoreFullError | None:
    """The error a reservation that found no room becomes (None: another failure)."""
    if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
        return None
    return ObjectStoreFullError(
        f"No room for {what} in {directory}: {exc.strerror}. Free objects, lower "
        "object_store_memory, or give the machine more shared memory."
    )


def unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
