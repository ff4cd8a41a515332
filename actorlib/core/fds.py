"""The standard file descriptors of a process that may have been started without them.

Its own module, free of asyncio: a worker process fills the holes first thing, before it
knows whether it will ever run an event loop.
"""

from __future__ import annotations

import os


def fill_standard_fds() -> None:
    """Open ``/dev/null`` on whichever of fds 0, 1 and 2 is closed.

    A program started with a standard stream closed (``<&-`` in a shell, some daemon
    managers) would otherwise have its next socket or pipe take that number: libuv aborts
    the process when it closes such an fd, a worker's stdin redirection would replace its
    socket, and a stray ``print`` would write into a connection. Daemons fill the holes
    for the same reasons.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            opened = os.open(os.devnull, os.O_RDWR)  # the lowest free number: ``fd``
            if opened != fd:  # a lower hole was filled first, which cannot happen here
                os.close(opened)
