"""A local driver's state API on a unix socket, for ``actorlib list`` in a second terminal.

A driver running its own core (thread and process backends) listens on
``<sessions root>/driver-<pid>/state.sock``, in a directory only this user may enter (mode
0700, checked like the cluster's session directories), and answers only peers of this
user (``SO_PEERCRED`` where the platform has it). One request per connection, JSON both
ways, so nothing is unpickled: ``{"kind": "tasks"}`` in, ``{"rows": [...]}`` or
``{"error": "..."}`` out, each one line.

``ACTORLIB_STATE_SOCKET=0`` turns it off; a backend may default to off (``sim``: a
simulated run, often one of thousands in a test, serves it only when that variable is 1).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import shutil
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from actorlib.backends import stacks
from actorlib.backends.cluster.sessions import checked_root, sessions_root
from actorlib.backends.private_dir import private_dir, unix_listener
from actorlib.core.interruptible import shield_signals

log = logging.getLogger("actorlib.state")

ENV = "ACTORLIB_STATE_SOCKET"
DIR_PREFIX = "driver-"
SOCKET_NAME = "state.sock"
MAX_REQUEST = 1 << 12
TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 1.0

Rows = Callable[[str], list[dict[str, Any]]]


def enabled(default: bool = True) -> bool:
    """Whether to serve: ``$ACTORLIB_STATE_SOCKET`` if set, else ``default``."""
    value = os.environ.get(ENV, "").strip().lower()
    if not value:
        return default
    return value not in ("0", "false", "no", "off")


def _peer_uid(conn: socket.socket) -> int | None:
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    raw = conn.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    _, uid, _ = struct.unpack("3i", raw)
    return int(uid)


class StateServer:
    """Answers state queries from a thread of its own until :meth:`stop`."""

    def __init__(self, rows: Rows) -> None:
        self._rows = rows
        self.directory: str | None = None
        self._sock: socket.socket | None = None
        self._wake_r, self._wake_w = os.pipe()
        self._thread: threading.Thread | None = None
        # The connection being answered, so that stop() can cut a peer that sends or
        # reads nothing (a stopped `actorlib list`) rather than wait out its timeout.
        self._lock = threading.Lock()
        self._conn: socket.socket | None = None
        self._stopping = False

    def start(self) -> str | None:
        """Listen; the socket's path, or None when it cannot (logged, never fatal)."""
        try:
            root = checked_root(create=True)
            assert root is not None
            directory = os.path.join(root, f"{DIR_PREFIX}{os.getpid()}")
            shutil.rmtree(directory, ignore_errors=True)  # a dead driver's with our pid
            live_drivers(root)  # and those of drivers killed before their shutdown
            private_dir(directory, "driver state directory")
            path = os.path.join(directory, SOCKET_NAME)
            try:
                sock = unix_listener(path, 8)
            except OSError:
                shutil.rmtree(directory, ignore_errors=True)
                raise
        except OSError as exc:
            log.warning("actorlib: the state socket is off (%s); set %s=0 to silence this",
                        exc, ENV)
            self._close_pipe()
            return None
        self.directory, self._sock = directory, sock
        # A driver a second terminal looks at may be the stuck one (in a C call, holding
        # the GIL): `actorlib stack --pid` shows where, whatever the backend.
        stacks.enable_in_driver()
        self._thread = threading.Thread(
            target=self._serve, name="actorlib-state-socket", daemon=True
        )
        self._thread.start()
        return path

    def stop(self) -> None:
        """Stop answering; remove the socket and its directory. Safe to call twice."""
        thread, self._thread = self._thread, None
        if thread is not None:
            os.write(self._wake_w, b"x")
            with self._lock:
                self._stopping = True
                if self._conn is not None:
                    with contextlib.suppress(OSError):
                        self._conn.shutdown(socket.SHUT_RDWR)
            thread.join()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
            stacks.disable_in_driver()
        self._close_pipe()

    def _close_pipe(self) -> None:
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def _serve(self) -> None:
        shield_signals()
        sock = self._sock
        assert sock is not None
        while True:
            ready, _, _ = select.select([sock.fileno(), self._wake_r], [], [])
            if self._wake_r in ready:
                return
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            with conn:
                with self._lock:
                    if self._stopping:
                        return
                    self._conn = conn
                try:
                    self._answer(conn)
                except (TimeoutError, ConnectionError):  # a peer gone or stopped
                    log.debug("actorlib: a state query's peer went away", exc_info=True)
                except Exception:  # one bad query never stops the server
                    log.warning("actorlib: a state query failed", exc_info=True)
                finally:
                    with self._lock:
                        self._conn = None

    def _answer(self, conn: socket.socket) -> None:
        uid = _peer_uid(conn)
        if uid is not None and uid != os.getuid():
            return
        # A peer sends its one line at once: one that does not (stopped after connecting)
        # holds the others up no longer than this.
        conn.settimeout(REQUEST_TIMEOUT_S)
        request = read_line(conn)
        conn.settimeout(TIMEOUT_S)
        try:
            kind = json.loads(request)["kind"]
            if not isinstance(kind, str):
                raise ValueError(f"kind must be a string, got {kind!r}")
            answer: dict[str, Any] = {"rows": self._rows(kind)}
        except (ValueError, KeyError, TypeError) as exc:
            answer = {"error": str(exc) or type(exc).__name__}
        except Exception as exc:  # a worker that did not answer, a core shutting down
            # An answer all the same: a closed connection would tell the asker nothing.
            answer = {"error": f"the driver could not answer ({type(exc).__name__}"
                      + (f": {exc})" if str(exc) else ")")}
        conn.sendall(json.dumps(answer, default=str).encode() + b"\n")


def read_line(conn: socket.socket, limit: int | None = MAX_REQUEST) -> bytes:
    """Bytes up to the first newline (at most ``limit``, if given)."""
    data = bytearray()
    while b"\n" not in data:
        chunk = conn.recv(1 << 16)
        if not chunk:
            break
        data += chunk
        if limit is not None and len(data) > limit:
            raise ValueError("request too long")
    return bytes(data.split(b"\n", 1)[0])


# == the client side (the CLI) ================================================================


def local_drivers() -> list[tuple[int, str]]:
    """``(pid, socket path)`` of this user's local drivers still running, newest first."""
    root = checked_root()
    if root is None:
        return []
    return live_drivers(root)


def live_drivers(root: str) -> list[tuple[int, str]]:
    """``local_drivers`` under ``root``; the directories of dead drivers are removed."""
    found = []
    for name in os.listdir(root):
        if not name.startswith(DIR_PREFIX) or not name[len(DIR_PREFIX):].isdigit():
            continue
        pid = int(name[len(DIR_PREFIX):])
        path = os.path.join(root, name, SOCKET_NAME)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:  # killed without its shutdown: clear what it left
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
            continue
        except PermissionError:
            continue
        if os.path.exists(path):
            found.append((os.stat(path).st_mtime, pid, path))
    return [(pid, path) for _, pid, path in sorted(found, reverse=True)]


class NoDriverError(ConnectionError):
    """No local driver (or none with the pid asked for) is listening."""


def _listening(path: str) -> bool:
    """Whether something may answer at ``path``: a socket left by a driver killed before
    its shutdown, whose pid another process now has, refuses connections."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(1.0)
        try:
            conn.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            return False
        except OSError:  # a full queue (a stopped driver): alive, let the query say so
            return True
    return True


def driver_socket(pid: int | None) -> str:
    """The socket of the local driver ``pid`` (None: the newest one that listens);
    :class:`NoDriverError` if none."""
    drivers = local_drivers()
    if pid is None:
        for _, path in drivers:
            if _listening(path):
                return path
        raise NoDriverError(
            "no local actorlib driver is running (a script that called init() without "
            f"a cluster address, with {ENV} not set to 0) under {sessions_root()}; a "
            "driver started with another TMPDIR or XDG_RUNTIME_DIR keeps its socket "
            "elsewhere"
        )
    for candidate, path in drivers:
        if candidate == pid and _listening(path):
            return path
    running = ", ".join(str(p) for p, path in drivers if _listening(path)) or "none"
    raise NoDriverError(f"no local actorlib driver with pid {pid} (running: {running})")


def pid_of(path: str) -> int | None:
    """The pid of the driver whose socket is ``path`` (its directory is named for it)."""
    pid = os.path.basename(os.path.dirname(path))[len(DIR_PREFIX):]
    return int(pid) if pid.isdigit() else None


def _driver_name(path: str) -> str:
    pid = pid_of(path)
    return f"the local driver pid {pid}" if pid is not None else f"the driver at {path}"


def _connect(conn: socket.socket, path: str, timeout: float) -> None:
    """Connect, waiting up to ``timeout`` while the driver's queue of connections is
    full (a unix socket refuses with ``EAGAIN`` then, rather than waiting)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.connect(path)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise TimeoutError from None
            time.sleep(0.05)


def _stack_hint(path: str) -> str:
    pid = pid_of(path)
    if pid is None:
        return ""
    return (f"; `actorlib stack --pid {pid}` shows where it is (add --without-gil if it "
            "holds the GIL)")


def query(path: str, kind: str, timeout: float = TIMEOUT_S) -> list[dict[str, Any]]:
    """The rows of ``kind`` from the driver listening at ``path``.

    ``TimeoutError`` when it does not answer within ``timeout`` seconds (a stopped
    driver, or one whose Python is held by a long call), ``ConnectionError`` when it is
    gone; both say which driver and why, in one line. A connection closed without an
    answer is asked once more (every question is a read): a driver that is shutting down
    no longer listens then, and a live one answers.
    """
    try:
        return _query(path, kind, timeout)
    except _Unanswered:
        try:
            return _query(path, kind, timeout)
        except _Unanswered as exc:
            raise ConnectionError(str(exc)) from None


class _Unanswered(ConnectionError):
    pass


def _query(path: str, kind: str, timeout: float) -> list[dict[str, Any]]:
    who = _driver_name(path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        try:
            _connect(conn, path, timeout)
            conn.sendall(json.dumps({"kind": kind}).encode() + b"\n")
            line = read_line(conn, limit=None)
        except (ConnectionRefusedError, FileNotFoundError):
            raise ConnectionError(f"{who} has shut down or exited (nothing listens at "
                                  f"{path})") from None
        except (ConnectionResetError, BrokenPipeError):
            line = b""
        except TimeoutError:
            raise TimeoutError(
                f"{who} did not answer within {timeout:g} s: it is stopped (Ctrl-Z, "
                "SIGSTOP) or too busy to answer (a long call holding the GIL, heavy "
                "load); try again, or give it longer (--timeout; timeout= in the state "
                f"API){_stack_hint(path)}"
            ) from None
    if not line:
        raise _Unanswered(f"{who} closed the connection without answering (it is "
                          "shutting down)")
    answer = json.loads(line)
    if "error" in answer:
        raise ValueError(answer["error"])
    rows: list[dict[str, Any]] = answer["rows"]
    return rows
