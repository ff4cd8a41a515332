"""The cluster's security layer: tokens, a mutual challenge-response handshake, TLS.

Pickle runs code, so nothing a cluster peer sends may be unpickled before the peer has
proved it holds the cluster's secret token. Every connection (node, driver, ``status``,
object transfers) starts with the handshake (:mod:`.handshake`); only then does it carry
:mod:`actorlib.backends.transport.wire` frames. No module of this layer imports pickle,
and every read the handshake makes is a fixed, small number of bytes, so a stranger can
neither run code nor make a daemon buffer without bound.

The parts: :mod:`.tokens` finds and stores the token (and defines :class:`AuthError`),
:mod:`.tls` configures TLS, :mod:`.handshake` is the protocol itself as I/O-free steps; this
module runs those steps over asyncio streams and blocking sockets (accepting, connecting,
handing an authenticated stream over to a protocol). It also re-exports the TLS and
protocol names its callers pass in (``TLSConfig``, the ``TLS_*_ENV`` names, ``MAGIC``,
``VERSION``); the token helpers and :class:`AuthError` are imported from :mod:`.tokens`.

Without TLS the handshake authenticates both ends but the traffic after it is neither
encrypted nor bound to the handshake: keep the port off untrusted networks, or turn on
TLS (:class:`TLSConfig`), inside which the handshake then runs.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from typing import Any, TypeVar, cast

from actorlib.backends.transport.handshake import (
    MAGIC,
    VERSION,
    Eof,
    Read,
    Refused,
    Steps,
    check_role,
    client_steps,
    server_steps,
)
from actorlib.backends.transport.release import identity
from actorlib.backends.transport.tls import (
    TLS_CA_ENV,
    TLS_CERT_ENV,
    TLS_KEY_ENV,
    TLSConfig,
    client_ssl,
    tls_failure,
    tls_hint,
)
from actorlib.backends.transport.tokens import AuthError

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAGIC",
    "TLS_CA_ENV",
    "TLS_CERT_ENV",
    "TLS_KEY_ENV",
    "VERSION",
    "TLSConfig",
    "accept_handshake",
    "client_handshake",
    "connect",
    "connect_handshake",
    "hand_over",
    "open_connection",
    "server_handshake",
]

log = logging.getLogger("actorlib.cluster")

#: Seconds a peer gets to complete the whole handshake; a silent stranger is then dropped.
DEFAULT_TIMEOUT = 10.0

_T = TypeVar("_T")


def _key(token: bytes | str) -> bytes:
    key = token.encode("utf-8") if isinstance(token, str) else bytes(token)
    if not key:
        raise AuthError("empty cluster token")
    return key


def _format_peer(peername: Any) -> str:
    if isinstance(peername, tuple) and len(peername) >= 2:
        host, port = peername[0], peername[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(peername) if peername else "?"


def _client_failure(peer: str, exc: Eof) -> AuthError:
    if exc.partial:
        return AuthError(f"{peer} closed the connection {exc.what} (after {exc.partial!r})"
                         + tls_hint(exc.partial))
    return AuthError(
        f"{peer} closed the connection {exc.what} (not an actorlib cluster, or TLS on one "
        f"side only: check {TLS_CERT_ENV}/{TLS_KEY_ENV}/{TLS_CA_ENV})"
    )


# -- asyncio driver --------------------------------------------------------------------------


async def _drive_async(
    steps: Steps[_T], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> _T:
    try:
        step = next(steps)
        while True:
            if isinstance(step, Read):
                try:
                    data = await reader.readexactly(step.n)
                except asyncio.IncompleteReadError as exc:
                    raise Eof(step.what, exc.partial) from None
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
        return await asyncio.wait_for(
            _drive_async(server_steps(key, identity()), reader, writer), timeout
        )
    except Refused as exc:
        reason = exc.reason
        if exc.reply:
            try:
                writer.write(exc.reply)  # flushed by close(); best effort
            except (OSError, RuntimeError):
                pass
    except Eof as exc:
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
    await _client_async(reader, writer, _key(token), check_role(role), peer, timeout, timeout)


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
            _drive_async(client_steps(key, role, peer, identity()), reader, writer), timeout
        )
    except Eof as exc:
        raise _client_failure(peer, exc) from None
    except asyncio.TimeoutError:
        raise AuthError(_no_answer(peer, stated_timeout)) from None
    except AuthError:
        raise
    except OSError as exc:
        raise AuthError(f"the connection to {peer} failed during the handshake: {exc}") from exc


def _no_answer(peer: str, timeout: float) -> str:
    return (f"no handshake answer from {peer} within {timeout:g} s (is it an actorlib "
            "cluster, and running: not stopped or too busy to answer? TLS on one side "
            "only?)")


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
    ctx = client_ssl(tls)
    key, raw_role = _key(token), check_role(role)
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
        raise AuthError(tls_failure(peer, exc)) from exc
    try:
        remaining = max(deadline - loop.time(), 0.001)
        await _client_async(reader, writer, key, raw_role, peer, remaining, timeout)
    except BaseException:
        writer.close()
        raise
    return reader, writer


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


def _drive_blocking(steps: Steps[_T], sock: socket.socket, deadline: float) -> _T:
    try:
        step = next(steps)
        while True:
            if isinstance(step, Read):
                chunks: list[bytes] = []
                got = 0
                while got < step.n:
                    _set_deadline(sock, deadline)
                    chunk = sock.recv(step.n - got)
                    if not chunk:
                        raise Eof(step.what, b"".join(chunks))
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
        role = _drive_blocking(server_steps(key, identity()), sock, time.monotonic() + timeout)
    except Refused as exc:
        reason = exc.reason
        if exc.reply:
            try:
                sock.settimeout(0.5)
                sock.sendall(exc.reply)
            except OSError:
                pass
    except Eof as exc:
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
    _client_blocking(sock, _key(token), check_role(role), peer, timeout, timeout)


def _client_blocking(
    sock: socket.socket, key: bytes, role: bytes, peer: str, timeout: float, stated: float
) -> None:
    previous = sock.gettimeout()
    try:
        _drive_blocking(client_steps(key, role, peer, identity()), sock, time.monotonic() + timeout)
    except Eof as exc:
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
    ctx = client_ssl(tls)
    key, raw_role = _key(token), check_role(role)
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
                raise AuthError(tls_failure(peer, exc)) from exc
        remaining = max(deadline - time.monotonic(), 0.001)
        _client_blocking(sock, key, raw_role, peer, remaining, timeout)
        sock.settimeout(None)
        return sock
    except BaseException:
        sock.close()
        raise
