"""Arena segments: shared-memory files made once, reserved and pre-faulted.

Making the pages of a segment is what a per-object file paid on every large write (the
kernel allocates and zeroes each tmpfs page); a segment pays it once, when it is made.
"""

from __future__ import annotations

import errno
import mmap
import os
import sys
import threading
from typing import Any

from actorlib.backends.process.shm_files import unlink
from actorlib.core import interruptible
from actorlib.exceptions import ObjectStoreFullError

__all__ = ["SegmentMaker", "map_pages", "populate"]

#: Bytes populated per ``madvise`` call: it holds the GIL, so the segment is populated in
#: steps while the process's other threads go on.
POPULATE_STEP = 4 * 1024 * 1024
#: Not in :mod:`mmap` before Python 3.13; Linux 5.14+ (EINVAL before: touch instead).
MADV_POPULATE_WRITE = getattr(
    mmap, "MADV_POPULATE_WRITE", 23 if sys.platform.startswith("linux") else None
)
MADV_POPULATE_READ = getattr(
    mmap, "MADV_POPULATE_READ", 22 if sys.platform.startswith("linux") else None
)


class SegmentMaker:
    """A segment being made, in steps that any thread may take on.

    Each step reserves its space (a full store fails there with ``ENOSPC``, not later
    with SIGBUS) and maps its pages with ``MADV_POPULATE_WRITE`` (measured: reserve plus
    populate takes about as long as writing the bytes into a fresh file, once, instead
    of on every write). The arena makes its next segment ahead on a low-priority thread;
    an allocation that then needs the segment takes on the remaining steps at its own
    priority instead of waiting for a thread the machine's load may starve (a 256 MiB
    segment took 1.5 s at nice 10 and load 11, against ~0.25 s of CPU).
    """

    def __init__(self, path: str, size: int) -> None:
        self.path = path
        self.size = size
        self._lock = threading.Lock()
        self._next = 0
        self._busy = 0
        self._done = threading.Condition(self._lock)
        self._error: BaseException | None = None
        self._abandoned = False  # finish was interrupted: the last step taker closes it
        # Steps whose taker was interrupted (Ctrl-C on the main thread, helping): given
        # back for another taker, the segment itself did not fail
        self._redo: list[int] = []
        self._fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            os.ftruncate(self._fd, size)  # sparse until each step reserves its part
            self.mapped = mmap.mmap(self._fd, size)
        except OSError as exc:
            self._abandon()
            raise _full(path, size, exc) from exc
        except BaseException:
            self._abandon()
            raise

    def work(self) -> None:
        """Make steps until none is left (or one failed). An interrupt in a step (Ctrl-C
        on the main thread, which helps a segment made ahead) gives the step back to the
        other takers and goes on: the segment is still made, the interrupt not lost."""
        while True:
            with self._lock:
                if self._error is not None:
                    return
                if self._redo:
                    offset = self._redo.pop()
                elif self._next < self.size:
                    offset = self._next
                    self._next += POPULATE_STEP
                else:
                    return
                self._busy += 1
            length = min(POPULATE_STEP, self.size - offset)
            try:
                reserve_range(self._fd, offset, length)
                populate(self.mapped, length, offset)
            except Exception as exc:
                with self._lock:
                    self._error = self._error or exc
            except BaseException:
                with self._lock:
                    self._redo.append(offset)
                raise
            finally:
                with self._lock:
                    self._busy -= 1
                    self._done.notify_all()
                    last = self._abandoned and not self._busy
                if last:
                    self._close()

    def _made(self) -> bool:
        return not self._busy and (
            self._error is not None or (self._next >= self.size and not self._redo)
        )

    def _made_or_redo(self) -> bool:
        return self._made() or (bool(self._redo) and self._error is None)

    def finish(self) -> mmap.mmap:
        """The segment once every step is done; a failed one removes it and raises.

        The wait for steps other threads are taking lets Ctrl-C in on the main thread (a
        driver's ``put`` of a large object may get here, behind the low-priority thread
        that makes segments ahead). Interrupted, the segment is given up: its file is
        removed at once, and its map closed by the last thread still taking a step.
        """
        try:
            while True:
                self.work()  # the steps left, and any an interrupted taker gave back
                with self._lock:
                    interruptible.wait_for(self._done, self._made_or_redo)
                    if self._made():
                        error = self._error
                        break
        except BaseException as exc:
            self._give_up(exc)
            raise
        if error is not None:
            self.mapped.close()
            self._abandon()
            if isinstance(error, OSError):
                raise _full(self.path, self.size, error) from error
            raise error
        os.close(self._fd)
        self._fd = -1
        return self.mapped

    def _give_up(self, exc: BaseException) -> None:
        """``finish`` was interrupted: no more steps are taken, the file goes now, and
        the map and descriptor with the last step (here, if none is being taken)."""
        with self._lock:
            self._error = self._error or exc
            self._abandoned = True
            close_now = not self._busy
        unlink(self.path)
        if close_now:
            self._close()

    def _close(self) -> None:
        self.mapped.close()
        os.close(self._fd)
        self._fd = -1

    def _abandon(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        unlink(self.path)


def _full(path: str, size: int, exc: OSError) -> ObjectStoreFullError:
    return ObjectStoreFullError(
        f"No room for an object arena segment of {size} bytes in "
        f"{os.path.dirname(path)}: {exc.strerror}"
    )


def reserve_range(fd: int, offset: int, length: int) -> None:
    """Allocate ``[offset, offset + length)`` of the file now (where the system can)."""
    if hasattr(os, "posix_fallocate"):
        os.posix_fallocate(fd, offset, length)


def populate(mapped: mmap.mmap, size: int, start: int = 0) -> None:
    """Map every page of ``mapped[start:start + size]`` now, in steps. ``start`` is
    page-aligned."""
    end = start + size
    if MADV_POPULATE_WRITE is not None:
        try:
            for offset in range(start, end, POPULATE_STEP):
                madvise(mapped, offset, min(POPULATE_STEP, end - offset), MADV_POPULATE_WRITE)
            return
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # EINVAL: an older kernel; touch instead
                raise
    view = memoryview(mapped)
    try:
        for offset in range(start, end, mmap.PAGESIZE):
            view[offset] = view[offset]  # a write fault: the page is allocated, data kept
    finally:
        view.release()


_libc: Any = None


def madvise(mapped: mmap.mmap, offset: int, length: int, advice: int) -> None:
    """``madvise`` without the GIL where ctypes can call it.

    ``mmap.madvise`` holds the GIL for the whole system call (Python 3.11): a segment
    made ahead on a low-priority thread would stall every thread of the process whenever
    the kernel descheduled it mid-call, the allocation waiting for that segment included.
    A foreign call through ctypes lets go of it.
    """
    global _libc
    try:
        import ctypes

        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
            _libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        region = (ctypes.c_char * length).from_buffer(mapped, offset)
    except (ImportError, OSError, AttributeError):  # no ctypes, or no madvise in libc
        mapped.madvise(advice, offset, length)
        return
    try:
        if _libc.madvise(ctypes.addressof(region), length, advice) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
    finally:
        del region  # the mapping can be closed again


def map_pages(mapped: mmap.mmap, start: int, size: int) -> None:
    """Map the pages of ``mapped[start:start + size]`` (``start`` page-aligned), another
    process's segment, into this one, changing no byte.

    For a writer: a fresh mapping would take a page fault per 4 KiB page of its copy. A
    read populate suffices for a shared memory file (its pages are mapped writable) and,
    unlike a write populate or a touch, cannot race with another process writing its own
    extent. Only the writer's extent: elsewhere in the segment may be space trim gave
    back, which a populate would take again. Without it (older kernels) the faults just
    happen.
    """
    if MADV_POPULATE_READ is None:
        return
    end = min(start + size, len(mapped))
    try:
        for offset in range(start, end, POPULATE_STEP):
            madvise(mapped, offset, min(POPULATE_STEP, end - offset), MADV_POPULATE_READ)
    except OSError:
        pass
