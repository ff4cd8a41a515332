"""The cluster's security layer: tokens, a mutual challenge-response handshake, TLS.

Pickle runs code, so nothing a cluster peer sends may be unpickled before the peer has
proved it holds the cluster's secret token. Every connection (node, driver, ``status``,
object transfers) starts with the handshake below; only then does it carry
:mod:`actorlib.backends.transport.wire` frames. This module never imports pickle, and every read
it makes is a fixed, small number of bytes, so a stranger can neither run code nor make
a daemon buffer without bound.

The handshake (version 1), all fixed-size fields, no pickle::

    client -> server  HELLO      b"ACTORLIB" | version (1 byte) | role length (1 byte,
                                 1..32) | role (ascii) | client nonce (32 bytes)
    server -> client  CHALLENGE  b"ACTORLIB" | version | status (1 byte)
                                 [| server nonce (32 bytes), when status is OK]
    client -> server  PROOF      HMAC-SHA256(token, b"actorlib-auth client\\0" | T)
    server -> client  RESULT     status [| HMAC-SHA256(token, b"actorlib-auth server\\0" | T),
                                 when status is OK]

where ``T`` is the HELLO bytes followed by the server nonce. Both nonces are fresh random
bytes, so neither proof can be replayed; the two labels differ, so a proof cannot be
reflected; the role is inside ``T``, so the role the server returns is the one the
client proved. The server checks the client's proof (``hmac.compare_digest``) before it
proves itself, and the client checks the server's proof, so a client never talks to an
impostor head. A refused peer is logged (WARNING on ``actorlib.cluster``, naming its
address and the reason) and disconnected; a refused client raises :class:`AuthError`.

Without TLS the handshake authenticates both ends but the traffic after it is neither
encrypted nor bound to the handshake: keep the port off untrusted networks, or turn on
TLS (:class:`TLSConfig`), inside which the handshake then runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import re
import secrets
import socket
import ssl
import stat
import struct
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from actorlib.exceptions import ActorlibError

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAGIC",
    "TLS_CA_ENV",
    "TLS_CERT_ENV",
    "TLS_KEY_ENV",
    "TOKEN_ENV",
    "TOKEN_FILE_ENV",
    "VERSION",
    "AuthError",
    "TLSConfig",
    "accept_handshake",
    "client_handshake",
    "connect",
    "connect_handshake",
    "hand_over",
    "new_token",
    "open_connection",
    "read_token_file",
    "resolve_token",
    "server_handshake",
    "write_token_file",
]

log = logging.getLogger("actorlib.cluster")

TOKEN_ENV = "ACTORLIB_CLUSTER_TOKEN"
TOKEN_FILE_ENV = "ACTORLIB_CLUSTER_TOKEN_FILE"
TLS_CERT_ENV = "ACTORLIB_TLS_CERT"
TLS_KEY_ENV = "ACTORLIB_TLS_KEY"
TLS_CA_ENV = "ACTORLIB_TLS_CA"

#: Seconds a peer gets to complete the whole handshake; a silent stranger is then dropped.
DEFAULT_TIMEOUT = 10.0

MAGIC = b"ACTORLIB"
VERSION = 1
NONCE_SIZE = 32
PROOF_SIZE = hashlib.sha256().digest_size
MAX_ROLE = 32
MAX_TOKEN_FILE = 4096  # a token file is one line; never read more than this
_ROLE_RE = re.compile(rb"[A-Za-z0-9_.-]{1,%d}" % MAX_ROLE)
_PREFIX = struct.Struct("!8sB")  # magic, version
_CLIENT_LABEL = b"actorlib-auth client\0"
_SERVER_LABEL = b"actorlib-auth server\0"

# status bytes (CHALLENGE and RESULT)
_OK = 0
_BAD_VERSION = 1
_BAD_HELLO = 2
_WRONG_TOKEN = 3
_BAD_MAGIC = 4

_T = TypeVar("_T")


class AuthError(ActorlibError, ConnectionError):
    """A cluster connection was refused: wrong or missing token, impostor, not actorlib.

    A ``ConnectionError`` so code that already handles a lost connection handles this too.
    """


# == tokens ==================================================================================


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


def _key(token: bytes | str) -> bytes:
    key = token.encode("utf-8") if isinstance(token, str) else bytes(token)
    if not key:
        raise AuthError("empty cluster token")
    return key


# == TLS =====================================================================================


@dataclass(frozen=True)
class TLSConfig:
    """Certificate, key and CA of one cluster member (PEM files); every member uses TLS.

    ``verify``: check the peer's certificate. With ``cafile`` (a CA private to the
    cluster) the client checks the chain only, not the hostname, unless
    ``check_hostname=True``: members are reached by IP (127.0.0.1, node addresses they
    report themselves), and any certificate the cluster's CA signed is a member anyway;
    the server then also requires a client certificate signed by that CA (mutual TLS).
    Without ``cafile`` the system's CAs are used and the hostname is checked (a public CA
    signs anyone's certificate, so only the name makes it ours), and the server asks no
    client certificate. ``verify=False`` encrypts without authenticating the peer's
    certificate (the token handshake still authenticates it, but an active attacker in
    the middle could relay it): for experiments only.
    """

    certfile: str
    keyfile: str
    cafile: str | None = None
    verify: bool = True
    check_hostname: bool | None = None

    @classmethod
    def from_env(cls) -> TLSConfig | None:
        """From ``$ACTORLIB_TLS_CERT``, ``_KEY`` and ``_CA``; None when TLS is not configured."""
        cert = os.environ.get(TLS_CERT_ENV) or None
        key = os.environ.get(TLS_KEY_ENV) or None
        ca = os.environ.get(TLS_CA_ENV) or None
        if cert is None and key is None:
            if ca is not None:
                raise ValueError(
                    f"${TLS_CA_ENV} is set but ${TLS_CERT_ENV} and ${TLS_KEY_ENV} are not: "
                    "TLS needs this member's certificate and key too"
                )
            return None
        if cert is None or key is None:
            raise ValueError(f"TLS needs both ${TLS_CERT_ENV} and ${TLS_KEY_ENV}")
        return cls(cert, key, ca)

    def server_context(self) -> ssl.SSLContext:
        """The daemons' side (``asyncio.start_server(ssl=...)``): TLS 1.2 or newer."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        self._load(ctx)
        if self.verify and self.cafile is not None:
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """The connecting side: verifies the server's certificate (see the class doc)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif self.cafile is not None:
            ctx.check_hostname = bool(self.check_hostname)
        else:
            ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
            ctx.check_hostname = self.check_hostname is not False
        self._load(ctx)
        return ctx

    def _load(self, ctx: ssl.SSLContext) -> None:
        try:
            ctx.load_cert_chain(self.certfile, self.keyfile)
            if self.verify and self.cafile is not None:
                ctx.load_verify_locations(self.cafile)
        except OSError as exc:  # ssl.SSLError is one too
            raise ValueError(
                f"cannot load TLS files (cert {self.certfile}, key {self.keyfile}, "
                f"CA {self.cafile}): {exc}"
            ) from exc


def _client_ssl(tls: TLSConfig | ssl.SSLContext | None) -> ssl.SSLContext | None:
    return tls.client_context() if isinstance(tls, TLSConfig) else tls


# == the protocol, once, as steps; two drivers (asyncio, blocking) run it ===================


@dataclass(frozen=True)
class _Read:
    """Step: read exactly ``n`` bytes (``what`` names them in error messages)."""

    n: int
    what: str


_Steps = Generator["_Read | bytes", bytes, _T]  # yields reads or bytes to write


class _Refused(Exception):
    """The server refuses the peer: ``reason`` is logged, ``reply`` sent before closing."""

    def __init__(self, reason: str, reply: bytes = b"") -> None:
        super().__init__(reason)
        self.reason = reason
        self.reply = reply


class _Eof(Exception):
    """The peer closed the connection while we read ``what`` (``partial`` had arrived)."""

    def __init__(self, what: str, partial: bytes) -> None:
        super().__init__(what)
        self.what = what
        self.partial = partial


def _mac(key: bytes, label: bytes, transcript: bytes) -> bytes:
    return hmac.new(key, label + transcript, hashlib.sha256).digest()


def _server_steps(key: bytes) -> _Steps[str]:
    """The server's side; returns the client's (proved) role."""
    prefix = yield _Read(_PREFIX.size, "before sending a hello")
    magic, version = _PREFIX.unpack(prefix)
    if magic != MAGIC:
        raise _Refused(
            f"bad magic, not an actorlib client (it sent {prefix!r})",
            _PREFIX.pack(MAGIC, VERSION) + bytes([_BAD_MAGIC]),
        )
    if version != VERSION:
        raise _Refused(
            f"unsupported handshake version {version} (this daemon speaks {VERSION})",
            _PREFIX.pack(MAGIC, VERSION) + bytes([_BAD_VERSION]),
        )
    (role_len,) = yield _Read(1, "in its hello")
    if not 1 <= role_len <= MAX_ROLE:
        raise _Refused(f"bad hello (role length {role_len})",
                       _PREFIX.pack(MAGIC, VERSION) + bytes([_BAD_HELLO]))
    rest = yield _Read(role_len + NONCE_SIZE, "in its hello")
    role = rest[:role_len]
    if not _ROLE_RE.fullmatch(role):
        raise _Refused(f"bad hello (role {role!r})",
                       _PREFIX.pack(MAGIC, VERSION) + bytes([_BAD_HELLO]))
    server_nonce = secrets.token_bytes(NONCE_SIZE)
    yield _PREFIX.pack(MAGIC, VERSION) + bytes([_OK]) + server_nonce
    transcript = prefix + bytes([role_len]) + rest + server_nonce
    proof = yield _Read(PROOF_SIZE, "before proving the token")
    if not hmac.compare_digest(proof, _mac(key, _CLIENT_LABEL, transcript)):
        raise _Refused(f"wrong token (role {role.decode()!r})", bytes([_WRONG_TOKEN]))
    yield bytes([_OK]) + _mac(key, _SERVER_LABEL, transcript)
    return role.decode("ascii")


def _client_steps(key: bytes, role: bytes, peer: str) -> _Steps[None]:
    """The client's side; raises AuthError naming ``peer`` when refused or fooled."""
    hello = _PREFIX.pack(MAGIC, VERSION) + bytes([len(role)]) + role
    hello += secrets.token_bytes(NONCE_SIZE)
    yield hello
    head = yield _Read(_PREFIX.size + 1, "instead of answering our hello")
    magic, version = _PREFIX.unpack(head[:-1])
    status = head[-1]
    if magic != MAGIC:
        raise AuthError(f"{peer} is not an actorlib cluster (it answered {head!r})"
                        + _tls_hint(head))
    if status == _BAD_VERSION or (status == _OK and version != VERSION):
        raise AuthError(
            f"the cluster at {peer} speaks handshake version {version}, this actorlib "
            f"{VERSION}: run the same actorlib version on every member"
        )
    if status == _BAD_HELLO:
        raise AuthError(f"the cluster at {peer} refused our hello (role {role.decode()!r})")
    if status != _OK:
        raise AuthError(f"the cluster at {peer} refused the handshake (status {status})")
    server_nonce = yield _Read(NONCE_SIZE, "instead of sending its challenge")
    transcript = hello + server_nonce
    yield _mac(key, _CLIENT_LABEL, transcript)
    (status,) = yield _Read(1, "after our proof: it refused the token")
    if status == _WRONG_TOKEN:
        raise AuthError(
            f"the cluster at {peer} refused the token (it is not this cluster's token): "
            f"check {TOKEN_ENV} or --token-file"
        )
    if status != _OK:
        raise AuthError(f"the cluster at {peer} refused the handshake (status {status})")
    proof = yield _Read(PROOF_SIZE, "instead of proving the token")
    if not hmac.compare_digest(proof, _mac(key, _SERVER_LABEL, transcript)):
        raise AuthError(
            f"the server at {peer} does not know the cluster token (an impostor, or another "
            "cluster on that port): not talking to it"
        )


def _tls_hint(data: bytes) -> str:
    if data[:1] in (b"\x15", b"\x16") and data[1:2] == b"\x03":  # a TLS alert/handshake
        return (f" - it speaks TLS: set {TLS_CERT_ENV}, {TLS_KEY_ENV} and {TLS_CA_ENV} "
                "here as on the cluster")
    return ""


def _check_role(role: str) -> bytes:
    raw = role.encode("ascii", "replace")
    if not _ROLE_RE.fullmatch(raw):
        raise ValueError(f"role must be 1-{MAX_ROLE} characters of [A-Za-z0-9_.-], got {role!r}")
    return raw


def _format_peer(peername: Any) -> str:
    if isinstance(peername, tuple) and len(peername) >= 2:
        host, port = peername[0], peername[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(peername) if peername else "?"


def _client_failure(peer: str, exc: _Eof) -> AuthError:
    if exc.partial:
        return AuthError(f"{peer} closed the connection {exc.what} (after {exc.partial!r})"
                         + _tls_hint(exc.partial))
    return AuthError(
        f"{peer} closed the connection {exc.what} (not an actorlib cluster, or TLS on one "
        f"side only: check {TLS_CERT_ENV}/{TLS_KEY_ENV}/{TLS_CA_ENV})"
    )


# -- asyncio driver --------------------------------------------------------------------------


async def _drive_async(
    steps: _Steps[_T], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> _T:
    try:
        step = next(steps)
        while True:
            if isinstance(step, _Read):
                try:
                    data = await reader.readexactly(step.n)
                except asyncio.IncompleteReadError as exc:
                    raise _Eof(step.what, exc.partial) from None
                step = steps.send(data)
            else:
                writer.write(step)
                await writer.drain()
                step = steps.send(b"")
    except StopIteration as stop:
        return cast(_T, stop.value)


async def server_handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    token: bytes | str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> str:
    """Authenticate a freshly accepted connection; returns the role the client proved.

    On any failure (wrong token, bad magic, timeout, the peer hanging up) logs a WARNING
    naming the peer and the reason, closes the connection and raises :class:`AuthError`.
    """
    key = _key(token)
    peer = _format_peer(writer.get_extra_info("peername"))
    try:
        return await asyncio.wait_for(_drive_async(_server_steps(key), reader, writer), timeout)
    except _Refused as exc:
        reason = exc.reason
        if exc.reply:
            try:
                writer.write(exc.reply)  # flushed by close(); best effort
            except (OSError, RuntimeError):
                pass
    except _Eof as exc:
        reason = f"closed the connection {exc.what}"
    except asyncio.TimeoutError:
        reason = f"timeout: no complete handshake within {timeout:g} s"
    except OSError as exc:
        reason = f"connection error during the handshake: {exc!r}"
    except BaseException:  # cancelled (the daemon is stopping): do not leave it open
        writer.close()
        raise
    log.warning("actorlib: refused connection from %s: %s", peer, reason)
    writer.close()
    raise AuthError(f"refused connection from {peer}: {reason}")


async def client_handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    token: bytes | str,
    role: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    peer: str | None = None,
) -> None:
    """Prove the token (and ``role``) to the server and check its proof in return.

    Raises :class:`AuthError` if refused, fooled or left waiting ``timeout`` seconds. The
    streams stay the caller's: close them on failure.
    """
    peer = peer or _format_peer(writer.get_extra_info("peername"))
    await _client_async(reader, writer, _key(token), _check_role(role), peer, timeout, timeout)


async def _client_async(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    key: bytes,
    role: bytes,
    peer: str,
    timeout: float,
    stated_timeout: float,
) -> None:
    try:
        await asyncio.wait_for(
            _drive_async(_client_steps(key, role, peer), reader, writer), timeout
        )
    except _Eof as exc:
        raise _client_failure(peer, exc) from None
    except asyncio.TimeoutError:
        raise AuthError(_no_answer(peer, stated_timeout)) from None
    except AuthError:
        raise
    except OSError as exc:
        raise AuthError(f"the connection to {peer} failed during the handshake: {exc}") from exc


def _no_answer(peer: str, timeout: float) -> str:
    return (f"no handshake answer from {peer} within {timeout:g} s (is it an actorlib "
            "cluster? TLS on one side only?)")


async def open_connection(
    host: str,
    port: int,
    token: bytes | str,
    role: str,
    *,
    tls: TLSConfig | ssl.SSLContext | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect (TCP, then TLS if ``tls``), authenticate; the streams, ready for frames.

    ``timeout`` bounds connecting and the handshake together. Refusals and TLS failures
    raise :class:`AuthError`; an unreachable host raises the usual ``OSError``.
    """
    ctx = _client_ssl(tls)
    key, raw_role = _key(token), _check_role(role)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    peer = _format_peer((host, port))
    kwargs: dict[str, Any] = {}
    if ctx is not None:
        kwargs = {"ssl": ctx, "ssl_handshake_timeout": timeout}
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, **kwargs), timeout
        )
    except asyncio.TimeoutError:
        raise TimeoutError(f"no connection to {peer} within {timeout:g} s") from None
    except ssl.SSLError as exc:
        raise AuthError(_tls_failure(peer, exc)) from exc
    try:
        remaining = max(deadline - loop.time(), 0.001)
        await _client_async(reader, writer, key, raw_role, peer, remaining, timeout)
    except BaseException:
        writer.close()
        raise
    return reader, writer


def _tls_failure(peer: str, exc: BaseException) -> str:
    return (
        f"TLS handshake with {peer} failed: {exc} (every cluster member must use TLS or "
        f"none; check {TLS_CERT_ENV}, {TLS_KEY_ENV} and {TLS_CA_ENV})"
    )


class _HandedOver:
    """Stands in for the transport inside a StreamWriter whose connection was handed over.

    ``StreamWriter.__del__`` (Python 3.11+) closes a transport that is not closing and
    warns; the transport now belongs to another protocol, so the writer lets go of it:
    ``writer.close()`` (say, in a handler's ``finally``) no longer touches it either.
    """

    def __init__(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def is_closing(self) -> bool:
        return True

    def close(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def __repr__(self) -> str:
        return f"<handed over {self._transport!r}>"


def hand_over(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, protocol: asyncio.Protocol
) -> asyncio.Transport:
    """Move an authenticated stream connection to ``protocol``; returns its transport.

    The handshake needs streams, the daemons' framed protocol (``wire.Connection``) is a
    plain, faster ``asyncio.Protocol``. Bytes the peer sent right after the handshake may
    already sit in ``reader``; they reach ``protocol.data_received`` first, in order, and
    an end of stream or a lost connection seen by the streams is passed on too. Works on
    asyncio's and uvloop's transports, plain and TLS. Do not use the streams afterwards.
    """
    transport = cast(asyncio.Transport, writer.transport)
    old = transport.get_protocol()
    # The StreamReader has no public synchronous way to take its buffer.
    buffer: bytearray = reader._buffer  # type: ignore[attr-defined]
    data = bytes(buffer)
    buffer.clear()
    eof = reader.at_eof()
    exc = reader.exception()
    # Did the streams already see connection_lost? (asyncio's TLS transport then forgets
    # its protocol; a StreamReaderProtocol records it.)
    lost = old is None or bool(getattr(old, "_connection_lost", False))
    transport.set_protocol(protocol)
    writer._transport = _HandedOver(transport)  # type: ignore[attr-defined]
    protocol.connection_made(transport)
    if data:
        protocol.data_received(data)
    if lost:
        protocol.connection_lost(exc)
    elif eof:
        if not protocol.eof_received():
            transport.close()
    elif not transport.is_closing() and not transport.is_reading():
        transport.resume_reading()  # the StreamReader paused it when its buffer filled up
    return transport


# -- blocking driver -------------------------------------------------------------------------


def _drive_blocking(steps: _Steps[_T], sock: socket.socket, deadline: float) -> _T:
    try:
        step = next(steps)
        while True:
            if isinstance(step, _Read):
                chunks: list[bytes] = []
                got = 0
                while got < step.n:
                    _set_deadline(sock, deadline)
                    chunk = sock.recv(step.n - got)
                    if not chunk:
                        raise _Eof(step.what, b"".join(chunks))
                    chunks.append(chunk)
                    got += len(chunk)
                step = steps.send(b"".join(chunks))
            else:
                _set_deadline(sock, deadline)
                sock.sendall(step)
                step = steps.send(b"")
    except StopIteration as stop:
        return cast(_T, stop.value)


def _set_deadline(sock: socket.socket, deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("handshake deadline passed")
    sock.settimeout(remaining)


def accept_handshake(
    sock: socket.socket, token: bytes | str, *, timeout: float = DEFAULT_TIMEOUT
) -> str:
    """Blocking :func:`server_handshake` on an accepted (plain or TLS) socket.

    Returns the client's role, the socket's own timeout restored. On failure logs a
    WARNING naming the peer and the reason, closes ``sock`` and raises :class:`AuthError`.
    """
    key = _key(token)
    try:
        peer = _format_peer(sock.getpeername())
    except OSError:
        peer = "?"
    previous = sock.gettimeout()
    try:
        role = _drive_blocking(_server_steps(key), sock, time.monotonic() + timeout)
    except _Refused as exc:
        reason = exc.reason
        if exc.reply:
            try:
                sock.settimeout(0.5)
                sock.sendall(exc.reply)
            except OSError:
                pass
    except _Eof as exc:
        reason = f"closed the connection {exc.what}"
    except TimeoutError:
        reason = f"timeout: no complete handshake within {timeout:g} s"
    except OSError as exc:
        reason = f"connection error during the handshake: {exc!r}"
    else:
        sock.settimeout(previous)
        return role
    log.warning("actorlib: refused connection from %s: %s", peer, reason)
    sock.close()
    raise AuthError(f"refused connection from {peer}: {reason}")


def connect_handshake(
    sock: socket.socket,
    token: bytes | str,
    role: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    peer: str | None = None,
) -> None:
    """Blocking :func:`client_handshake` on a connected (plain or TLS) socket.

    The socket's own timeout is restored on success; on failure it stays open (the
    caller's) and :class:`AuthError` is raised.
    """
    if peer is None:
        try:
            peer = _format_peer(sock.getpeername())
        except OSError:
            peer = "?"
    _client_blocking(sock, _key(token), _check_role(role), peer, timeout, timeout)


def _client_blocking(
    sock: socket.socket, key: bytes, role: bytes, peer: str, timeout: float, stated: float
) -> None:
    previous = sock.gettimeout()
    try:
        _drive_blocking(_client_steps(key, role, peer), sock, time.monotonic() + timeout)
    except _Eof as exc:
        raise _client_failure(peer, exc) from None
    except AuthError:
        raise
    except TimeoutError:
        raise AuthError(_no_answer(peer, stated)) from None
    except OSError as exc:
        raise AuthError(f"the connection to {peer} failed during the handshake: {exc}") from exc
    sock.settimeout(previous)


def connect(
    host: str,
    port: int,
    token: bytes | str,
    role: str,
    *,
    tls: TLSConfig | ssl.SSLContext | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> socket.socket:
    """Blocking :func:`open_connection`: an authenticated socket, in blocking mode.

    ``timeout`` bounds connecting, TLS and the handshake together. ``TCP_NODELAY`` is on:
    these sockets carry request/response traffic.
    """
    ctx = _client_ssl(tls)
    key, raw_role = _key(token), _check_role(role)
    deadline = time.monotonic() + timeout
    peer = _format_peer((host, port))
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ctx is not None:
            _set_deadline(sock, deadline)
            try:
                sock = ctx.wrap_socket(sock, server_hostname=host)
            except (ssl.SSLError, TimeoutError, ConnectionError) as exc:
                raise AuthError(_tls_failure(peer, exc)) from exc
        remaining = max(deadline - time.monotonic(), 0.001)
        _client_blocking(sock, key, raw_role, peer, remaining, timeout)
        sock.settimeout(None)
        return sock
    except BaseException:
        sock.close()
        raise
