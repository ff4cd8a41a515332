"""``actorlib.util.pdb.set_trace()``: stop in a task or actor and debug it (Ray's).

Where the code runs decides how the debugger is reached:

- In the driver's process (the driver itself, and every task and actor of the thread and
  sim backends, which run there): the standard ``pdb`` on the terminal, as
  ``breakpoint()`` would be.
- In a worker process (the process, cluster and ray backends): that process's stdin is
  not the terminal, so the debugger listens on a socket instead and says where on stderr
  (which reaches the driver, prefixed with the worker)::

      actorlib pdb: breakpoint at job.py:12 (pid 4242); connect with
      `nc -U /run/user/1000/actorlib/pdb-4242-1.sock`

  Connect with ``nc -U`` (or ``socat - UNIX-CONNECT:path``) and debug as usual; the task
  waits until someone does (a ``cancel()`` still ends it). ``continue`` or ``quit`` hangs
  up (breakpoints set in that session end with it); a client that hangs up first (its
  input ends, its connection drops) lets the task go on, as ``continue`` would (Ray's
  debugger ends the task with ``BdbQuit`` then). By default the socket is a Unix
  socket in actorlib's directory on the node, which only this user can enter (mode 0700),
  and a client of another user is refused: whoever connects runs code as the worker.
  With ``ACTORLIB_PDB_HOST`` or ``ACTORLIB_PDB_PORT`` set it is a TCP socket instead (on
  ``127.0.0.1`` unless the host says otherwise, on a free port unless the port names one),
  as Ray's ``ray.util.pdb`` listens: TCP has no owner, so any local user (any host, beyond
  localhost) can connect first; use it only on a machine and network you trust. A port
  named there is the first one tried: a breakpoint that finds it taken (another one is
  open at the same time, in any process) takes the next free one, up to
  ``PORT_TRIES`` ports on, and announces it as above. (Ray's fixed ``REMOTE_PDB_PORT``
  fails the second task with ``OSError: [Errno 98] Address already in use``.)

Ray's ``ray debug`` command, which lists Ray's own breakpoints, does not know these.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import pdb
import socket
import struct
import sys
from types import FrameType
from typing import Any

from actorlib import session
from actorlib.core import context

__all__ = ["set_trace"]

HOST_ENV = "ACTORLIB_PDB_HOST"
PORT_ENV = "ACTORLIB_PDB_PORT"
#: How long ``accept()`` blocks at a time: a cancel (an exception raised asynchronously in
#: the task's thread) is delivered only between two waits, never inside one.
ACCEPT_POLL_S = 0.2
#: How many ports from ``ACTORLIB_PDB_PORT`` on a breakpoint tries: one per breakpoint
#: open at the same time on the host.
PORT_TRIES = 100


class SocketPdb(pdb.Pdb):
    """A ``Pdb`` talking to one client on an accepted connection; hangs up on continue or
    quit (and on the client's end of input)."""

    def __init__(self, connection: socket.socket) -> None:
        self._connection = connection
        # Two files: one text file that both reads and writes drops what it read ahead
        # (the next commands) at its first write.
        self._files = (connection.makefile("r", encoding="utf-8", newline="\n"),
                       connection.makefile("w", buffering=1, encoding="utf-8", newline="\n"))
        super().__init__(stdin=self._files[0], stdout=self._files[1])

    def _hang_up(self) -> None:
        # Breakpoints would stop the code again with nobody to talk to.
        self.clear_all_breaks()
        # Nor is anything read here again: let go of the stopped frame's locals, which
        # ``Pdb.forget()`` leaves behind (``pdb`` keeps them for its next stop).
        if "curframe_locals" in vars(self):
            self.curframe_locals = {}
        try:
            for file in self._files:
                file.close()
        finally:
            self._connection.close()

    def do_continue(self, arg: str) -> Any:
        result = super().do_continue(arg)
        self._hang_up()
        return result

    do_c = do_cont = do_continue

    def do_quit(self, arg: str) -> Any:
        result = super().do_quit(arg)
        self._hang_up()
        return result

    do_q = do_exit = do_quit

    def do_EOF(self, arg: str) -> Any:
        """The client's input ended: go on as ``continue`` does (``pdb`` would quit,
        which ends the task with ``BdbQuit``; nobody asked for that)."""
        return self.do_continue(arg)

    def interaction(self, frame: FrameType | None, tb: Any) -> None:
        # A connection that drops mid-session raises here (a reset on read, a broken
        # pipe on write), inside the traced task: go on as after ``continue`` instead.
        # ``Pdb.interaction`` then skipped its ``forget()``, which lets go of the stack
        # (the task's frames, so their locals) it set up for this stop.
        try:
            super().interaction(frame, tb)
        except OSError:
            self.forget()
            with contextlib.suppress(OSError):
                self._hang_up()
            self.set_continue()


def _in_worker_process() -> bool:
    """Whether this process is a worker: it has a runtime to talk to but started none."""
    return session.runtime() is None and context.current() is not None


_breakpoints = itertools.count(1)


def listen() -> tuple[socket.socket, str, str]:
    """The debugger's listening socket, how to connect to it (an ``nc`` command) and the
    Unix socket's path to remove after ("" for TCP)."""
    if os.environ.get(HOST_ENV) or os.environ.get(PORT_ENV):
        host = os.environ.get(HOST_ENV) or "127.0.0.1"
        server = tcp_listener(host, int(os.environ.get(PORT_ENV) or 0))
        bound, port = server.getsockname()[:2]
        return server, f"nc {bound} {port}", ""
    # A stale socket of a reused pid (after a crash) is replaced.
    server, path = session.private_listener(f"pdb-{os.getpid()}-{next(_breakpoints)}.sock")
    return server, f"nc -U {path}", path


def tcp_listener(host: str, first: int) -> socket.socket:
    """A TCP listener on ``host``: on a free port for 0, else on ``first`` or the next
    port free of ``PORT_TRIES``, so that breakpoints open at once do not collide."""
    if not first:
        return socket.create_server((host, 0), backlog=1)
    last = min(first + PORT_TRIES, 65536)
    for port in range(first, last):
        try:
            return socket.create_server((host, port), backlog=1)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
    raise OSError(errno.EADDRINUSE,
                  f"actorlib pdb: {PORT_ENV}={first}: ports {first} to {last - 1} on "
                  f"{host} are all in use (a breakpoint open at once takes one each); "
                  f"set another port, or unset it for a free one")


def _same_user(connection: socket.socket) -> bool:
    """Whether a Unix socket's peer runs as this user (the directory already keeps others
    out; this holds where it cannot, as for root)."""
    creds = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1] == os.getuid()


def socket_debugger(frame: FrameType) -> SocketPdb:
    """Announce a breakpoint at ``frame`` on stderr and wait for a client to connect."""
    server, command, path = listen()
    try:
        where = f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"
        print(f"actorlib pdb: breakpoint at {where} (pid {os.getpid()}); connect with "
              f"`{command}`", file=sys.stderr, flush=True)
        server.settimeout(ACCEPT_POLL_S)
        while True:
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            if not path or _same_user(connection):
                break
            connection.close()
    finally:
        server.close()
        if path:
            with contextlib.suppress(OSError):
                os.unlink(path)
    connection.settimeout(None)
    return SocketPdb(connection)


def set_trace(breakpoint_uuid: Any = None) -> None:
    """Stop here and debug: on the terminal in the driver's process, on a socket in a
    worker process (see the module's doc). ``breakpoint_uuid`` is Ray's, unused here."""
    frame = sys._getframe(1)
    debugger = socket_debugger(frame) if _in_worker_process() else pdb.Pdb()
    debugger.set_trace(frame)
