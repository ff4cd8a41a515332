"""Arena segments: shared-memory files made once, reserved and pre-faulted.

Making the pages of a segment is what a per-object file paid on every large write (the
kernel allocates and zeroes each tmpfs page); a segment pays it once, when it is made.
"""

from __future__ import annotations

import errno
import mmap
import os
import sys

from actorlib.backends.process.shm_files import reserve, unlink
from actorlib.exceptions import ObjectStoreFullError

__all__ = ["create_segment", "map_pages", "populate"]

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


def create_segment(path: str, size: int) -> mmap.mmap:
    """A new file of ``size`` bytes, its pages allocated now and mapped read-write.

    The space is reserved first (a full store fails here with ``ENOSPC``, not later with
    SIGBUS), then every page is mapped with ``MADV_POPULATE_WRITE`` (measured: reserve
    plus populate takes about as long as writing the bytes into a fresh file, once,
    instead of on every write); without it, one byte per page is touched.
    """
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        reserve(fd, size)
        os.ftruncate(fd, size)  # where reserve could not size it (macOS)
        mapped = mmap.mmap(fd, size)
        try:
            populate(mapped, size)
        except BaseException:
            mapped.close()
            raise
    except OSError as exc:
        os.close(fd)
        unlink(path)
        raise ObjectStoreFullError(
            f"No room for an object arena segment of {size} bytes in "
            f"{os.path.dirname(path)}: {exc.strerror}"
        ) from exc
    except BaseException:
        os.close(fd)
        unlink(path)
        raise
    os.close(fd)
    return mapped


def populate(mapped: mmap.mmap, size: int, start: int = 0) -> None:
    """Map every page of ``mapped[start:start + size]`` now, in steps (each ``madvise``
    holds the GIL). ``start`` is page-aligned."""
    end = start + size
    if MADV_POPULATE_WRITE is not None:
        try:
            for offset in range(start, end, POPULATE_STEP):
                mapped.madvise(MADV_POPULATE_WRITE, offset, min(POPULATE_STEP, end - offset))
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


def map_pages(mapped: mmap.mmap) -> None:
    """Map the pages of another process's segment into this one, changing no byte.

    For a writer: a fresh mapping would take a page fault per 4 KiB page of its first
    copy. A read populate suffices for a shared memory file (its pages are mapped
    writable) and, unlike a write populate or a touch, cannot race with another process
    writing its own extent. Without it (older kernels) the faults just happen.
    """
    if MADV_POPULATE_READ is None:
        return
    size = len(mapped)
    try:
        for offset in range(0, size, POPULATE_STEP):
            mapped.madvise(MADV_POPULATE_READ, offset, min(POPULATE_STEP, size - offset))
    except OSError:
        pass
