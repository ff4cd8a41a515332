"""Directories only this user may write: session files, object bytes, spilled objects.

They live under world-writable places (``$TMPDIR``) with predictable names, so another
local user could make one first and read or swap what actorlib keeps there. A directory
is used only if it is a real directory (not a symlink), owned by this user, and not
writable by group or others; otherwise a ``PermissionError`` says what is wrong and how to
fix it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat


def private_dir(path: str, what: str, *, create: bool = True, fix: str = "") -> str | None:
    """``path``, checked (and made with mode 0700 if ``create``); None if absent.

    ``fix``: what to do when the directory is not ours, besides removing it.
    """
    if create:
        os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    problem = _problem(st)
    if problem is None:
        return path
    mine = st.st_uid == os.getuid() and stat.S_ISDIR(st.st_mode)
    remedy = (f"run `chmod 700 {path}`" if mine else
              f"remove it (`rm -rf {path}`, as its owner or root){' or ' + fix if fix else ''}")
    raise PermissionError(
        f"refusing the actorlib {what} {path} (owner uid {st.st_uid}, mode "
        f"{stat.S_IMODE(st.st_mode):04o}): {problem}, so another user could read or change "
        f"what actorlib keeps there; {remedy}"
    )


def is_private(path: str) -> bool:
    """Whether ``path`` (followed if a symlink) is a directory only this user may write,
    and can use: for directories actorlib did not make, like ``$XDG_RUNTIME_DIR``."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return _problem(st) is None and os.access(path, os.W_OK | os.X_OK)


def _problem(st: os.stat_result) -> str | None:
    """What makes a directory unsafe to use, or None."""
    if stat.S_ISLNK(st.st_mode):
        return "it is a symlink"
    if not stat.S_ISDIR(st.st_mode):
        return "it is not a directory"
    if st.st_uid != os.getuid():
        return f"it is owned by uid {st.st_uid}, not by you (uid {os.getuid()})"
    if st.st_mode & 0o022:
        return "group or others may write to it"
    return None


def unix_listener(path: str, backlog: int) -> socket.socket:
    """A Unix stream socket listening at ``path`` (in a private directory: the directory
    is what keeps other users out), a stale socket file there removed first; closed again
    if it cannot bind."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock
