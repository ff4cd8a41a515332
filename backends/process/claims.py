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
pipelined task, so it maps the table and offers with two memory accesses, no system call;
the worker maps it too, and a claim costs the two calls of the record lock alone.

In a worker a task thread claims with its own lock held, so this module's locks come
last: nothing may take a task thread's lock while holding them (the lock order is
documented in :mod:`actorlib.backends.runner.task_thread`).
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import threading

SLOTS = 64
_SLOT = struct.Struct("=q")  # native order, as the mapped slots read (``map``)
_TABLE = struct.Struct(f"={SLOTS}q")


class ClaimTable:
    """One worker's slots. The driver ``offer``s; either side ``take``s, exactly once."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        # POSIX locks exclude processes, not threads: threads of one process take turns.
        # Taken inside a worker's ``TaskThread.lock`` (see the module's docstring).
        self._threads = threading.Lock()
        self._map: mmap.mmap | None = None  # the mapping of the table (``map``)
        self._slots: memoryview | None = None  # its slots, as machine words

    @classmethod
    def create(cls) -> ClaimTable:
        if hasattr(os, "memfd_create"):  # no file to name, and no tempfile import at init
            fd = os.memfd_create("actorlib-claims", os.MFD_CLOEXEC)
        else:
            import tempfile  # the driver's side only: a worker inherits the table's fd

            fd, path = tempfile.mkstemp(prefix="actorlib-claims-")
            os.unlink(path)
        os.ftruncate(fd, _TABLE.size)
        table = cls(fd)
        table.map()
        return table

    def map(self) -> None:
        """Read and write the slots through a shared mapping (no system call each).

        As machine words (a ``memoryview`` of native ``q``: one 8-byte load or store a
        slot), never as bytes: the driver reads the table to offer a slot while the
        worker may be clearing one, and ``struct``'s byte-wise stores can complete
        the clearing of a slot after the driver, seeing it zero, wrote a new id there."""
        self._map = mmap.mmap(self.fd, _TABLE.size)
        self._slots = memoryview(self._map).cast("q")

    def offer(self, task_id: int) -> bool:
        """Driver: publish ``task_id`` as startable. False if every slot is taken.

        Only the driver fills slots, so no lock is needed to pick a free one: a slot that
        reads zero stays zero until the driver writes it.
        """
        table = self._slots
        slots = self._read() if table is None else table.tolist()
        try:
            index = slots.index(0)
        except ValueError:
            return False
        if table is None:
            os.pwrite(self.fd, _SLOT.pack(task_id), index * _SLOT.size)
        else:
            table[index] = task_id
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
                table = self._slots
                slots = self._read() if table is None else table.tolist()
                try:
                    index = slots.index(task_id)
                except ValueError:
                    return False
                if table is None:
                    os.pwrite(self.fd, _SLOT.pack(0), index * _SLOT.size)
                else:
                    table[index] = 0
                return True
            finally:
                fcntl.lockf(self.fd, fcntl.LOCK_UN)

    def _read(self) -> tuple[int, ...]:
        return _TABLE.unpack(os.pread(self.fd, _TABLE.size, 0))

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
