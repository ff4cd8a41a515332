"""Where ``actorlib start`` keeps its sessions, and how a driver finds the cluster to join.

A session (token, logs, ``cluster.json``) lives under one directory per user, and
``init(address="auto")`` trusts what it finds there. In a world-writable ``/tmp`` that
name is predictable: another local user could create it first and so choose where
drivers connect. So the root is used only when it is ours and nobody else may write to
it (:func:`checked_root`), and files in it are created exclusively, never through a
symlink. :func:`resolve_address` turns an address (or its absence) into ``host:port`` and
the token file to use.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from typing import Any

from actorlib.backends.private_dir import is_private, private_dir

ADDRESS_ENV = "ACTORLIB_ADDRESS"
LATEST_NAME = "session_latest"


def sessions_root() -> str:
    """``$XDG_RUNTIME_DIR/actorlib`` where that directory is usable, else ``$TMPDIR/actorlib-$UID``.

    ``$XDG_RUNTIME_DIR`` is private to the user by specification (and not world-writable),
    so it is preferred; it is read on each call so that tests and tools can redirect it.
    """
    xdg = os.environ.get("XDG_RUNTIME_DIR", "")
    if xdg and os.path.isabs(xdg) and is_private(xdg):
        return os.path.join(xdg, "actorlib")
    return os.path.join(tempfile.gettempdir(), f"actorlib-{os.getuid()}")


def checked_root(create: bool = False) -> str | None:
    """The sessions root, after checking nobody else controls it; ``None`` if it is absent.

    Raises ``PermissionError`` (naming the path, its owner and mode, and the fix) for a
    root that is a symlink, not a directory, not ours, or writable by group or others:
    another user could choose where ``init(address='auto')`` connects. ``create`` makes it
    (mode 0700) when missing.
    """
    return private_dir(sessions_root(), "sessions directory", create=create,
                       fix="set TMPDIR to a private directory")


def latest_session() -> str | None:
    """The newest session directory (``session_latest``), if it is a session of ours."""
    root = checked_root()
    if root is None:
        return None
    try:
        target = os.readlink(os.path.join(root, LATEST_NAME))
    except OSError:  # absent, or not a symlink: not something ``start`` made
        return None
    name = os.path.basename(target)
    path = os.path.join(root, name)
    if os.path.dirname(target) not in ("", root) or not name.startswith("session_"):
        return None
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        return None
    return path


def live_session() -> str | None:
    """:func:`latest_session` unless every daemon it recorded (``*.pid``) is gone: a head
    and node killed with SIGKILL leave their session behind, and the command line then
    looks for a local driver instead of reporting a refused connection."""
    session = latest_session()
    if session is None:
        return None
    pids = []
    for name in os.listdir(session):
        if name.endswith(".pid"):
            with contextlib.suppress(OSError, ValueError):
                pids.append(int(read_private(os.path.join(session, name)).strip()))
    if not pids:
        return session
    return session if any(_running(pid) for pid in pids) else None


#: What a head's or node's command line holds (titled by proc_title, else the module).
DAEMON_MARKS = (b"actorlib::head", b"actorlib::node", b"actorlib.backends.cluster.")


def is_daemon(pid: int) -> bool:
    """Whether ``pid`` (from a pid file) is still a head or node: not gone, not a zombie
    (killed, not yet reaped: its command line is empty), and not another program that got
    the pid since. False where ``/proc`` cannot say."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except OSError:
        return False
    return any(mark in cmdline for mark in DAEMON_MARKS)


def _running(pid: int) -> bool:
    """:func:`is_daemon`; without ``/proc``, whether ``pid`` is alive at all."""
    if os.path.isdir("/proc/self"):
        return is_daemon(pid)
    try:
        os.kill(pid, 0)
    except OSError:  # gone, or another user's: not a daemon of ours
        return False
    return True


def write_private(path: str, data: bytes) -> None:
    """Write ``path`` (mode 0600) whole or not at all: a fresh temporary file, renamed.

    ``O_EXCL | O_NOFOLLOW`` never opens a file or symlink someone else put there; the
    rename replaces the name itself, not what it might point to.
    """
    tmp = f"{path}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_private(path: str) -> bytes:
    """Read a session file, refusing a symlink or a file that is not ours."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
            raise PermissionError(f"refusing {path}: not a regular file of yours")
        return os.read(fd, 1 << 20)
    finally:
        os.close(fd)


def link_latest(session: str) -> None:
    """Point ``session_latest`` at ``session``, atomically (a new link renamed over it)."""
    root = os.path.dirname(session)
    tmp = os.path.join(root, f".{LATEST_NAME}.{os.getpid()}.{os.urandom(4).hex()}")
    os.symlink(os.path.basename(session), tmp)
    try:
        os.replace(tmp, os.path.join(root, LATEST_NAME))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def resolve_address(address: str | None) -> tuple[str, str | None]:
    """``host:port`` and the token file to use, from ``address``, env or the session.

    Raises ``PermissionError`` when the sessions root is not safe to trust (see
    ``checked_root``), rather than connecting where someone else's files point.
    """
    address = address or os.environ.get(ADDRESS_ENV)
    session = latest_session() if address in (None, "", "auto", "local") or (
        address is not None and ":" in address) else None
    info: dict[str, Any] = {}
    if session is not None:
        with contextlib.suppress(FileNotFoundError):
            info = json.loads(read_private(os.path.join(session, "cluster.json")))
    if address in (None, "", "auto", "local"):
        if not info:
            raise ConnectionError(
                "No running actorlib cluster found on this machine (no session in "
                f"{sessions_root()}). Start one with `actorlib start --head`, or pass "
                "address='host:port'."
            )
        return info["address"], info["token_file"]
    assert address is not None
    if ":" not in address:
        raise ValueError(f"a cluster address is 'host:port', got {address!r}")
    if info.get("address") == address:
        return address, info["token_file"]
    return address, None
