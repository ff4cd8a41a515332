"""Who starts a task queued behind another on a worker: the worker, or the core taking it back.

A task queued behind a running one (``TaskRun.follows``) must start at most once: on that
worker when the task ahead ends, or elsewhere after the core took it back. Asking the
worker to hand it back needs the worker to answer, which a worker frozen by SIGSTOP, or
stuck in a C call that holds the GIL, never does. So each worker shares a small table with
the driver: the driver writes the task's id into a free slot when it sends the task, and
whoever clears that slot first owns the task. Clearing happens under a POSIX record lock,
which the kernel arbitrates between the two processes; the worker never holds it for more
than a few system calls, and a frozen worker holds nothing at all in practice (the lock is
tried without blocking; a busy lock falls back to asking the worker).

The table is an anonymous memory file (``memfd_create``; elsewhere an unlinked temporary
file), inherited by the worker as a file descriptor: nothing is left on disk or in
``/dev/shm``, whatever way either side exits. The driver offers a slot for nearly every
pipelined task, so both sides map the table: an offer is two memory accesses, no system
call, and a claim costs the two calls of the record lock alone.

In a worker a task thread claims with its own lock held, so this module's locks come
last: nothing may take a task thread's lock while holding them (the lock order is
documented in :mod:`actorlib.backends.runner.task_thread`).
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import threading

SLOTS = 64
_SIZE = SLOTS * 8  # a slot holds a task id, as a native 8-byte integer


class ClaimTable:
    """One worker's slots. The driver ``offer``s; either side ``take``s, exactly once.

    Both sides read and write the slots through a shared mapping, as machine words (a
    ``memoryview`` of native ``q``: one 8-byte load or store a slot), never as bytes: the
    driver reads the table to offer a slot while the worker may be clearing one, and
    ``struct``'s writes (the slot zeroed, then its bytes written) could complete the
    clearing of a slot after the driver, seeing it zero, had written a new id there.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        # POSIX locks exclude processes, not threads: threads of one process take turns.
        # Taken inside a worker's ``TaskThread.lock`` (see the module's docstring).
        self._threads = threading.Lock()
        self._map: mmap.mmap | None = mmap.mmap(fd, _SIZE)
        self._slots: memoryview | None = memoryview(self._map).cast("q")
        self._next = 0  # the driver's: the slot after the last one it filled

    @classmethod
    def create(cls) -> ClaimTable:
        if hasattr(os, "memfd_create"):  # no file to name, and no tempfile import at init
            fd = os.memfd_create("actorlib-claims", os.MFD_CLOEXEC)
        else:
            import tempfile  # the driver's side only: a worker inherits the table's fd

            fd, path = tempfile.mkstemp(prefix="actorlib-claims-")
            os.unlink(path)
        os.ftruncate(fd, _SIZE)
        return cls(fd)

    def offer(self, task_id: int) -> bool:
        """Driver: publish ``task_id`` as startable. False if every slot is taken.

        Only the driver fills slots, so no lock is needed to pick a free one: a slot that
        reads zero stays zero until the driver writes it.
        """
        slots = self._slots
        if slots is None:
            raise _closed()
        # Slots are filled in turn, so the next one was filled SLOTS offers ago and is
        # nearly always free again: one read, where a scan makes a list of every slot.
        index = self._next
        if slots[index]:
            try:
                index = slots.tolist().index(0)
            except ValueError:
                return False
        slots[index] = task_id
        self._next = (index + 1) % SLOTS
        return True

    def take(self, task_id: int, wait: bool = True) -> bool | None:
        """Clear ``task_id``'s slot: True if this caller owns the task now, False if the
        other side took it first (or it was never offered). None if ``wait`` is False and
        the other side holds the lock at this moment."""
        with self._threads:
            try:
                fcntl.lockf(self.fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except (BlockingIOError, PermissionError):
                return None
            try:
                slots = self._slots
                if slots is None:
                    raise _closed()
                try:
                    index = slots.tolist().index(task_id)
                except ValueError:
                    return False
                slots[index] = 0
                return True
            finally:
                fcntl.lockf(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Idempotent: a second close must not hit a descriptor number reused since."""
        fd, self.fd = self.fd, -1
        table, self._map = self._map, None
        slots, self._slots = self._slots, None
        if slots is not None:
            slots.release()  # (a mapping with a view exported cannot close)
        if table is not None:
            table.close()
        if fd >= 0:
            os.close(fd)


def _closed() -> OSError:
    """What using a closed table raises (as a read of its closed descriptor did)."""
    return OSError(errno.EBADF, "the claim table is closed")
