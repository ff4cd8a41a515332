"""The cluster token: making one, storing it in a file, finding it; and :class:`AuthError`.

The token is the cluster's one shared secret: whoever holds it may run code on every
member, so its file is written 0600 atomically and a file that group or others may read is
refused, not warned about. Separate from the handshake (:mod:`.handshake`, :mod:`.auth`)
because the CLI and the daemons find and store tokens without ever connecting, and the
handshake only needs the token's bytes. Like the rest of the security layer this module
never imports pickle.
"""

from __future__ import annotations

import os
import secrets
import stat

from actorlib.exceptions import ActorlibError

__all__ = [
    "MAX_TOKEN_FILE",
    "TOKEN_ENV",
    "TOKEN_FILE_ENV",
    "AuthError",
    "new_token",
    "read_token_file",
    "resolve_token",
    "write_token_file",
]

TOKEN_ENV = "ACTORLIB_CLUSTER_TOKEN"
TOKEN_FILE_ENV = "ACTORLIB_CLUSTER_TOKEN_FILE"
MAX_TOKEN_FILE = 4096  # a token file is one line; never read more than this


class AuthError(ActorlibError, ConnectionError):
    """A cluster connection was refused: wrong or missing token, impostor, not actorlib.

    A ``ConnectionError`` so code that already handles a lost connection handles this too.
    """




def new_token() -> str:
    """A fresh cluster token: 256 random bits, hex (safe in files, flags and env vars)."""
    return secrets.token_hex(32)


def write_token_file(path: str | os.PathLike[str], token: str | bytes) -> None:
    """Write ``token`` to ``path``, mode 0600, atomically.

    The file is created 0600 under a temporary name (``O_EXCL``, so never an existing
    file with looser permissions) and renamed over ``path``: readers see the old file or
    the whole new one, and nobody else can ever read it, not even for an instant.
    """
    text = token.decode("ascii") if isinstance(token, bytes) else token
    path = os.fspath(path)
    tmp = f"{path}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        try:
            if hasattr(os, "fchmod"):
                os.fchmod(fd, 0o600)  # exactly 0600, whatever the umask
            os.write(fd, (text.strip() + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_token_file(path: str | os.PathLike[str]) -> bytes:
    """The token in ``path``; refuses a file that group or others may access.

    Refusing (rather than warning) because a readable token means anyone on the machine
    can run code on every node; the message says how to fix it.
    """
    path = os.fspath(path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise AuthError(
            f"cannot read the cluster token file {path}: {exc.strerror or exc}"
        ) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise AuthError(f"the cluster token file {path} is not a regular file")
        if os.name == "posix" and st.st_mode & 0o077:
            raise AuthError(
                f"the cluster token file {path} is accessible by group or others "
                f"(mode {stat.S_IMODE(st.st_mode):04o}); run: chmod 600 {path}"
            )
        data = os.read(fd, MAX_TOKEN_FILE + 1)
    except OSError as exc:
        raise AuthError(
            f"cannot read the cluster token file {path}: {exc.strerror or exc}"
        ) from None
    finally:
        os.close(fd)
    if len(data) > MAX_TOKEN_FILE:
        raise AuthError(f"the cluster token file {path} is too large to be a token")
    return _clean_token(data, f"the cluster token file {path}")


def resolve_token(token: str | None = None, token_file: str | None = None) -> bytes:
    """The cluster token, from the first source given.

    Precedence: ``token`` (a flag) > ``token_file`` > ``$ACTORLIB_CLUSTER_TOKEN`` >
    ``$ACTORLIB_CLUSTER_TOKEN_FILE``. An empty environment variable counts as unset; an
    explicit empty token is an error (likely an unset variable expanded on a command line).
    """
    if token is not None:
        return _clean_token(token.encode("utf-8"), "the token given")
    if token_file is not None:
        return read_token_file(token_file)
    env = os.environ.get(TOKEN_ENV, "").strip()
    if env:
        return _clean_token(env.encode("utf-8"), f"${TOKEN_ENV}")
    env_file = os.environ.get(TOKEN_FILE_ENV, "").strip()
    if env_file:
        return read_token_file(env_file)
    raise AuthError(
        f"no cluster token: set {TOKEN_ENV} (the token) or {TOKEN_FILE_ENV} (a file holding "
        "it), or pass --token-file to the actorlib command; `actorlib start --head` writes "
        "the token file into its session directory"
    )


def _clean_token(raw: bytes, source: str) -> bytes:
    token = raw.strip()
    if not token:
        raise AuthError(f"{source} is empty: no cluster token")
    if any(b < 0x21 or b > 0x7E for b in token):
        raise AuthError(f"{source} is not a token (printable ascii on one line expected)")
    return token
