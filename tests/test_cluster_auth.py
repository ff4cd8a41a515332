"""The cluster's security layer: tokens, the challenge-response handshake, TLS, hand-over.

Every server here binds to 127.0.0.1 and every timeout is short, so the file runs in
about a second. Async tests run on asyncio's loop and on uvloop (the daemons' loop).
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import logging
import os
import pickle
import re
import socket
import ssl
import stat
import struct
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import pytest
import trustme

from actorlib.backends.transport import auth as ca
from actorlib.backends.transport import handshake, release, tokens
from actorlib.backends.transport import tls as tls_config
from actorlib.backends.transport.auth import TLSConfig
from actorlib.backends.transport.tokens import AuthError
from actorlib.exceptions import ActorlibError

uvloop = pytest.importorskip("uvloop")

TOKEN = b"0123456789abcdef" * 4
OTHER = b"fedcba9876543210" * 4
HOST = "127.0.0.1"
T = TypeVar("T")

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


def _run_on(factory: Callable[[], asyncio.AbstractEventLoop], coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run with a chosen loop (asyncio.Runner's loop_factory is 3.11+)."""
    loop = factory()
    try:
        return loop.run_until_complete(coro)
    finally:
        tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for t in tasks:
            t.cancel()
        if tasks:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


Runner = Callable[[Coroutine[Any, Any, Any]], Any]


@pytest.fixture(params=list(LOOPS))
def run(request: pytest.FixtureRequest) -> Runner:
    factory = LOOPS[request.param]
    return lambda coro: _run_on(factory, coro)


@pytest.fixture
def warnings_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="actorlib.cluster")
    return caplog


def _refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records
        if r.name == "actorlib.cluster" and r.levelno == logging.WARNING
    ]


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSConfig:
    """One certificate for every member, signed by a CA private to the cluster."""
    d = tmp_path_factory.mktemp("tls")
    authority = trustme.CA()
    cert = authority.issue_cert("127.0.0.1", "localhost")
    authority.cert_pem.write_to_path(str(d / "ca.pem"))
    cert.private_key_pem.write_to_path(str(d / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(d / "cert.pem"))
    return TLSConfig(str(d / "cert.pem"), str(d / "key.pem"), str(d / "ca.pem"))


# == servers used by the tests ===============================================================


@dataclass
class AsyncServer:
    port: int
    outcomes: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)

    async def outcome(self) -> Any:
        return await asyncio.wait_for(self.outcomes.get(), 3)


AfterHook = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def serve(
    token: bytes,
    *,
    timeout: float = 2.0,
    ssl_ctx: ssl.SSLContext | None = None,
    after: AfterHook | None = None,
    wrap_reader: Callable[[asyncio.StreamReader], Any] | None = None,
) -> AsyncIterator[AsyncServer]:
    """A server running server_handshake; each connection's role or AuthError is queued."""
    srv: AsyncServer | None = None

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert srv is not None
        try:
            wrapped = wrap_reader(reader) if wrap_reader else reader
            role = await ca.server_handshake(wrapped, writer, token, timeout=timeout)
        except AuthError as exc:
            await srv.outcomes.put((exc, writer.is_closing()))
            return
        try:
            if after is not None:
                await after(reader, writer)
        finally:
            writer.close()  # a no-op once handed over (the writer let go of the transport)
        await srv.outcomes.put(role)

    server = await asyncio.start_server(handle, HOST, 0, ssl=ssl_ctx)
    srv = AsyncServer(server.sockets[0].getsockname()[1])
    try:
        yield srv
    finally:
        server.close()
        await server.wait_closed()


class BlockingServer:
    """A thread accepting one connection and running accept_handshake on it."""

    def __init__(
        self,
        token: bytes,
        *,
        timeout: float = 2.0,
        ssl_ctx: ssl.SSLContext | None = None,
        wrap: Callable[[socket.socket], Any] | None = None,
    ) -> None:
        self.token, self.timeout, self.ssl_ctx, self.wrap = token, timeout, ssl_ctx, wrap
        self.listener = socket.create_server((HOST, 0))
        self.listener.settimeout(5)
        self.port: int = self.listener.getsockname()[1]
        self.outcome: Any = None
        self.conn: socket.socket | None = None
        self.closed_after_refusal = False
        self.thread = threading.Thread(target=self._serve, name="test-auth-server")
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
            if self.ssl_ctx is not None:
                conn = self.ssl_ctx.wrap_socket(conn, server_side=True)
            self.conn = conn
            sock = self.wrap(conn) if self.wrap else conn
            self.outcome = ca.accept_handshake(sock, self.token, timeout=self.timeout)
        except Exception as exc:
            self.outcome = exc
            self.closed_after_refusal = self.conn is not None and self.conn.fileno() == -1

    def join(self) -> Any:
        self.thread.join(5)
        assert not self.thread.is_alive()
        return self.outcome

    def close(self) -> None:
        self.join()
        self.listener.close()
        if self.conn is not None:
            self.conn.close()


@contextlib.contextmanager
def blocking_server(token: bytes, **kwargs: Any) -> Iterator[BlockingServer]:
    srv = BlockingServer(token, **kwargs)
    try:
        yield srv
    finally:
        srv.close()


class Recorder(asyncio.Protocol):
    """A plain protocol like wire.Connection that records what it is given."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.events: list[str] = []
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.events.append("made")
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.events.append("data")
        self.data += data

    def eof_received(self) -> bool | None:
        self.events.append("eof")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append("lost")
        if not self.lost.done():
            self.lost.set_result(exc)


def _evil_pickle(marker: Path) -> bytes:
    """A pickle whose unpickling creates ``marker`` (it calls open(marker, "w"))."""

    class Evil:
        def __reduce__(self) -> tuple[Any, ...]:
            return (open, (str(marker), "w"))

    return pickle.dumps(Evil(), protocol=5)


async def _read_to_eof(reader: asyncio.StreamReader) -> bytes:
    """What the server sent before closing (a reset counts as closed too)."""
    try:
        return await asyncio.wait_for(reader.read(), 3)
    except ConnectionError:
        return b""


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        await writer.wait_closed()


# == tokens ==================================================================================


def test_new_token_is_256_random_bits_in_hex() -> None:
    a, b = tokens.new_token(), tokens.new_token()
    assert len(a) == 64 and int(a, 16) >= 0 and a != b


def test_write_token_file_is_0600_from_creation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "token"
    path.write_text("old\n")
    path.chmod(0o644)  # an existing, looser file is replaced, not reused
    created: list[tuple[str, int, int]] = []
    real_open = os.open

    def recording_open(p: Any, flags: int, mode: int = 0o777, **kw: Any) -> int:
        created.append((os.fspath(p), flags, mode))
        return real_open(p, flags, mode, **kw)

    monkeypatch.setattr(os, "open", recording_open)
    old_umask = os.umask(0)
    try:
        tokens.write_token_file(str(path), "abc123")
    finally:
        os.umask(old_umask)
    (_, flags, mode), = created
    assert mode == 0o600 and flags & os.O_EXCL and flags & os.O_CREAT
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == "abc123\n"
    assert os.listdir(tmp_path) == ["token"]  # no temporary file left behind
    assert tokens.resolve_token(token_file=str(path)) == b"abc123"


def test_resolve_token_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file_a, file_b = tmp_path / "a", tmp_path / "b"
    tokens.write_token_file(file_a, "from-file")
    tokens.write_token_file(file_b, "from-env-file")
    monkeypatch.setenv(tokens.TOKEN_ENV, "from-env")
    monkeypatch.setenv(tokens.TOKEN_FILE_ENV, str(file_b))
    assert tokens.resolve_token("explicit", str(file_a)) == b"explicit"
    assert tokens.resolve_token(None, str(file_a)) == b"from-file"
    assert tokens.resolve_token() == b"from-env"
    monkeypatch.setenv(tokens.TOKEN_ENV, "")  # empty counts as unset
    assert tokens.resolve_token() == b"from-env-file"
    monkeypatch.delenv(tokens.TOKEN_FILE_ENV)
    with pytest.raises(AuthError, match=f"{tokens.TOKEN_ENV}.*{tokens.TOKEN_FILE_ENV}"):
        tokens.resolve_token()
    with pytest.raises(AuthError, match="empty"):
        tokens.resolve_token("  ")


def test_token_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "token"
    tokens.write_token_file(path, tokens.new_token())
    for mode in (0o640, 0o604, 0o660, 0o644, 0o620):
        path.chmod(mode)
        with pytest.raises(AuthError, match=f"mode {mode:04o}.*chmod 600"):
            tokens.resolve_token(token_file=str(path))


def test_token_file_missing_or_empty(tmp_path: Path) -> None:
    with pytest.raises(AuthError, match="cannot read the cluster token file"):
        tokens.resolve_token(token_file=str(tmp_path / "nope"))
    tokens.write_token_file(tmp_path / "empty", "")
    with pytest.raises(AuthError, match="empty"):
        tokens.resolve_token(token_file=str(tmp_path / "empty"))


def test_auth_error_is_a_connection_error_and_pickles() -> None:
    err = AuthError("the cluster at h:1 refused the token")
    assert isinstance(err, ConnectionError) and isinstance(err, ActorlibError)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is AuthError and str(back) == str(err)


@pytest.mark.parametrize("module", [ca, handshake, tls_config, tokens], ids=lambda m: m.__name__)
def test_the_module_never_unpickles(module: ModuleType) -> None:
    tree = ast.parse(Path(str(module.__file__)).read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not imported & {"pickle", "cloudpickle", "marshal", "shelve", "_pickle"}


# == the handshake: right token ==============================================================


def test_right_token_async(run: Runner) -> None:
    async def main() -> None:
        async with serve(TOKEN) as srv:
            _, writer = await ca.open_connection(HOST, srv.port, TOKEN, "node")
            assert await srv.outcome() == "node"
            await _close(writer)
            # str tokens work too (the same bytes)
            _, writer = await ca.open_connection(HOST, srv.port, TOKEN.decode(), "worker")
            assert await srv.outcome() == "worker"
            await _close(writer)
            # the blocking client speaks the same protocol
            sock = await asyncio.to_thread(ca.connect, HOST, srv.port, TOKEN, "cli")
            sock.close()
            assert await srv.outcome() == "cli"

    run(main())


def test_right_token_blocking() -> None:
    with blocking_server(TOKEN) as srv:
        sock = ca.connect(HOST, srv.port, TOKEN, "driver")
        try:
            assert srv.join() == "driver"
            assert sock.gettimeout() is None  # handed back in blocking mode
            assert srv.conn is not None
            srv.conn.sendall(b"after")
            assert sock.recv(16) == b"after"
        finally:
            sock.close()


def test_bad_role_is_refused_client_side() -> None:
    for role in ("", "x" * 33, "no spaces", "ünïcode"):
        with pytest.raises(ValueError, match="role"):
            ca.connect(HOST, 1, TOKEN, role)


# == wrong token, impostors, strangers =======================================================


def test_wrong_token_async(run: Runner, warnings_log: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with serve(TOKEN) as srv:
            reader, writer = await asyncio.open_connection(HOST, srv.port)
            me = "{}:{}".format(*writer.get_extra_info("sockname")[:2])
            with pytest.raises(AuthError, match=f"{HOST}:{srv.port} refused the token"):
                await ca.client_handshake(reader, writer, OTHER, "node",
                                          peer=f"{HOST}:{srv.port}")
            assert await _read_to_eof(reader) == b""  # the server closed the connection
            await _close(writer)
            exc, closed = await srv.outcome()
            assert isinstance(exc, AuthError) and closed
            (msg,) = _refusals(warnings_log)
            assert me in msg and "wrong token" in msg and "'node'" in msg
            with pytest.raises(AuthError, match="ACTORLIB_CLUSTER_TOKEN or --token-file"):
                await ca.open_connection(HOST, srv.port, OTHER, "node")
            await srv.outcome()

    run(main())


def test_wrong_token_blocking(warnings_log: pytest.LogCaptureFixture) -> None:
    with blocking_server(TOKEN) as srv:
        sock = socket.create_connection((HOST, srv.port))
        try:
            me = "{}:{}".format(*sock.getsockname()[:2])
            with pytest.raises(AuthError, match="refused the token"):
                ca.connect_handshake(sock, OTHER, "node")
            assert isinstance(srv.join(), AuthError) and srv.closed_after_refusal
            assert sock.recv(16) == b""  # closed
        finally:
            sock.close()
    (msg,) = _refusals(warnings_log)
    assert me in msg and "wrong token" in msg


def test_malicious_pickle_is_never_unpickled(
    run: Runner, tmp_path: Path, warnings_log: pytest.LogCaptureFixture
) -> None:
    marker = tmp_path / "pwned"
    raw = _evil_pickle(marker)
    payloads = [raw, struct.pack("!I", len(raw)) + raw]  # bare, and framed as wire.py does

    async def main() -> None:
        async with serve(TOKEN) as srv:
            for payload in payloads:
                reader, writer = await asyncio.open_connection(HOST, srv.port)
                writer.write(payload)
                reply = await _read_to_eof(reader)
                await _close(writer)
                exc, closed = await srv.outcome()
                assert isinstance(exc, AuthError) and closed
                assert reply in (b"", ca.MAGIC + bytes([ca.VERSION, 4]))  # a clean refusal

    run(main())
    for payload in payloads:
        with blocking_server(TOKEN) as bsrv, socket.create_connection((HOST, bsrv.port)) as s:
            s.sendall(payload)
            assert isinstance(bsrv.join(), AuthError) and bsrv.closed_after_refusal
    assert not marker.exists()
    msgs = _refusals(warnings_log)
    assert len(msgs) == 4 and all("bad magic" in m for m in msgs)
    # the payload is live: unpickling it really would have created the marker
    control = tmp_path / "control"
    pickle.loads(_evil_pickle(control)).close()
    assert control.exists()


def test_silent_stranger_is_dropped_async(
    run: Runner, warnings_log: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        async with serve(TOKEN, timeout=0.1) as srv:
            reader, writer = await asyncio.open_connection(HOST, srv.port)
            start = time.monotonic()
            exc, closed = await srv.outcome()
            assert 0.05 < time.monotonic() - start < 1.5
            assert isinstance(exc, AuthError) and closed
            assert await _read_to_eof(reader) == b""
            await _close(writer)

    run(main())
    (msg,) = _refusals(warnings_log)
    assert "timeout" in msg and HOST in msg


def test_silent_and_slow_strangers_are_dropped_blocking(
    warnings_log: pytest.LogCaptureFixture,
) -> None:
    with blocking_server(TOKEN, timeout=0.1) as srv, socket.create_connection((HOST, srv.port)):
        start = time.monotonic()
        assert isinstance(srv.join(), AuthError)
        assert time.monotonic() - start < 1.5
    # one byte at a time keeps arriving, but the deadline covers the whole handshake
    with blocking_server(TOKEN, timeout=0.15) as srv, socket.create_connection(
        (HOST, srv.port)
    ) as s:
        start = time.monotonic()
        for byte in ca.MAGIC:
            if srv.outcome is not None:
                break
            with contextlib.suppress(OSError):
                s.send(bytes([byte]))
            time.sleep(0.03)
        assert isinstance(srv.join(), AuthError)
        assert time.monotonic() - start < 1.0
    msgs = _refusals(warnings_log)
    assert len(msgs) == 2 and all("timeout" in m for m in msgs)


GARBAGE = {
    "huge-frame-length": struct.pack("!I", 2**32 - 1) + b"\xff" * (1 << 20),
    "huge-role-length": ca.MAGIC + bytes([ca.VERSION, 255]) + b"r" * (1 << 20),
    "zero-role-length": ca.MAGIC + bytes([ca.VERSION, 0]) + b"\0" * 4096,
}


class CountingReader:
    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader, self.asked = reader, list[int]()

    async def readexactly(self, n: int) -> bytes:
        self.asked.append(n)
        return await self._reader.readexactly(n)

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the handshake used reader.{name}: reads must be bounded")


class CountingSocket:
    def __init__(self, sock: socket.socket) -> None:
        self._sock, self.asked = sock, list[int]()

    def recv(self, n: int) -> bytes:
        self.asked.append(n)
        return self._sock.recv(n)

    def __getattr__(self, name: str) -> Any:
        assert name not in ("recv_into", "makefile", "recvfrom"), name
        return getattr(self._sock, name)


def test_garbage_never_makes_the_server_read_much(
    run: Runner, warnings_log: pytest.LogCaptureFixture
) -> None:
    for payload in GARBAGE.values():
        _garbage_case(run, payload)
    msgs = _refusals(warnings_log)
    assert len(msgs) == 2 * len(GARBAGE) and all("bad" in m for m in msgs)


def _garbage_case(run: Runner, payload: bytes) -> None:
    readers: list[CountingReader] = []

    def counting(reader: asyncio.StreamReader) -> CountingReader:
        readers.append(CountingReader(reader))
        return readers[-1]

    async def main() -> None:
        async with serve(TOKEN, wrap_reader=counting) as srv:
            reader, writer = await asyncio.open_connection(HOST, srv.port)
            writer.write(payload)
            exc, _ = await srv.outcome()
            assert isinstance(exc, AuthError)
            await _read_to_eof(reader)
            await _close(writer)

    start = time.monotonic()
    run(main())
    socks: list[CountingSocket] = []

    def counting_sock(sock: socket.socket) -> CountingSocket:
        socks.append(CountingSocket(sock))
        return socks[-1]

    with (
        blocking_server(TOKEN, wrap=counting_sock) as b,
        socket.create_connection((HOST, b.port)) as s,
    ):
        s.setblocking(False)
        with contextlib.suppress(OSError):
            s.send(payload)  # as much as fits
        assert isinstance(b.join(), AuthError)
    assert time.monotonic() - start < 2
    for asked in (readers[0].asked, socks[0].asked):
        assert sum(asked) <= len(ca.MAGIC) + 2, asked  # magic, version, role length at most


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _closing(handler: Handler) -> Handler:
    """The handler, closing its connection however it ends (even cancelled)."""

    async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    return run


@_closing
async def _impostor(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Speaks the protocol but does not know the token: accepts anyone, proves garbage."""
    await reader.readexactly(len(ca.MAGIC) + 1)
    (role_len,) = await reader.readexactly(1)
    await reader.readexactly(role_len + 32)
    writer.write(ca.MAGIC + bytes([ca.VERSION, 0]) + os.urandom(32))
    await reader.readexactly(32)
    writer.write(b"\0" + os.urandom(32))
    await _read_to_eof(reader)


@_closing
async def _not_actorlib(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")


@_closing
async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_to_eof(reader)


BAD_SERVERS: list[tuple[Handler, str]] = [
    (_impostor, "does not know the cluster token"),
    (_not_actorlib, "not an actorlib cluster"),
    (_silent, r"no handshake answer .* within 0\.1 s"),
]


def test_client_detects_a_bad_server(run: Runner) -> None:
    """An impostor (no token), a web server, a silent one: each is a clear AuthError."""

    async def main() -> None:
        for handler, error in BAD_SERVERS:
            server = await asyncio.start_server(handler, HOST, 0)
            port = server.sockets[0].getsockname()[1]
            try:
                with pytest.raises(AuthError, match=error):
                    await ca.open_connection(HOST, port, TOKEN, "driver", timeout=0.1)
                with pytest.raises(AuthError, match=error):
                    await asyncio.to_thread(ca.connect, HOST, port, TOKEN, "driver", timeout=0.1)
            finally:
                server.close()
                await server.wait_closed()

    run(main())


# == peers of another release ================================================================

OTHER_RELEASE = b"actorlib 0.0.9, Python 3.11, wire 000000000000"


def _connect_as(port: int, token: bytes, ours: bytes) -> None:
    """A client whose identity is ``ours`` (another release), blocking."""
    with socket.create_connection((HOST, port), timeout=3) as sock:
        steps = handshake.client_steps(token, b"node", f"{HOST}:{port}", ours)
        ca._drive_blocking(steps, sock, time.monotonic() + 3)


def test_a_peer_of_another_release_is_refused_and_both_are_named(
    warnings_log: pytest.LogCaptureFixture,
) -> None:
    """Two releases would exchange records neither can decode (a node that joined would
    lose every task sent to it): the head refuses the peer once it proved the token,
    proving itself, and each side names both releases."""
    ours = release.identity()
    assert re.fullmatch(rb"actorlib [0-9.]+, Python 3\.[0-9]+, wire [0-9a-f]{12}", ours)
    with blocking_server(TOKEN) as srv:
        with pytest.raises(AuthError) as refused:
            _connect_as(srv.port, TOKEN, OTHER_RELEASE)
        assert isinstance(srv.join(), AuthError) and srv.closed_after_refusal
    message = str(refused.value)
    assert f"runs {ours.decode()}, this process {OTHER_RELEASE.decode()}" in message
    assert "same actorlib release on the same Python minor version" in message
    (logged,) = _refusals(warnings_log)
    assert "another actorlib (role 'node')" in logged
    assert OTHER_RELEASE.decode() in logged and ours.decode() in logged


def test_a_stranger_of_another_release_is_refused_for_its_token_alone(
    warnings_log: pytest.LogCaptureFixture,
) -> None:
    """The release is compared only after the token is proved: a stranger learns none."""
    with blocking_server(TOKEN) as srv:
        with pytest.raises(AuthError, match="refused the token") as refused:
            _connect_as(srv.port, OTHER, OTHER_RELEASE)
        srv.join()
    assert b"actorlib 0." not in str(refused.value).encode()
    (logged,) = _refusals(warnings_log)
    assert "wrong token" in logged


def test_an_impostor_cannot_make_a_client_believe_it_runs_another_release(
    run: Runner,
) -> None:
    """A server without the token answering "another release" proves nothing: the client
    calls it an impostor and never reads (or repeats) the release it claims."""

    @_closing
    async def claims_another_release(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await reader.readexactly(len(ca.MAGIC) + 1)
        (role_len,) = await reader.readexactly(1)
        await reader.readexactly(role_len + 32)
        (identity_len,) = await reader.readexactly(1)
        await reader.readexactly(identity_len)
        writer.write(ca.MAGIC + bytes([ca.VERSION, 0]) + os.urandom(32))
        await reader.readexactly(32)
        writer.write(bytes([5]) + os.urandom(32) + bytes([11]) + b"actorlib 66")
        await _read_to_eof(reader)

    async def main() -> None:
        server = await asyncio.start_server(claims_another_release, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        try:
            with pytest.raises(AuthError, match="does not know the cluster token") as fooled:
                await ca.open_connection(HOST, port, TOKEN, "driver", timeout=1)
            assert "actorlib 66" not in str(fooled.value)
        finally:
            server.close()
            await server.wait_closed()

    run(main())


def test_a_version_1_hello_is_refused_naming_the_versions(
    warnings_log: pytest.LogCaptureFixture,
) -> None:
    """An actorlib from before the identity speaks handshake version 1: refused at its
    first bytes, with the version this daemon speaks."""
    with blocking_server(TOKEN) as srv, socket.create_connection((HOST, srv.port)) as sock:
        sock.sendall(ca.MAGIC + bytes([1, 4]) + b"node" + os.urandom(32))
        reply = sock.recv(64)
        assert isinstance(srv.join(), AuthError)
    assert reply == ca.MAGIC + bytes([ca.VERSION, 1])  # BAD_VERSION
    (logged,) = _refusals(warnings_log)
    assert "unsupported handshake version 1 (this daemon speaks 2)" in logged


# == hand-over to a plain protocol ===========================================================


@pytest.mark.parametrize("use_tls", [False, True], ids=["tcp", "tls"])
def test_hand_over_server_side(run: Runner, tls: TLSConfig, use_tls: bool) -> None:
    """Bytes sent right after the handshake wait in the StreamReader; none may be lost.

    Then either more bytes follow, or the client has already hung up before the hand-over
    (the new protocol must still hear of it: eof or connection_lost, exactly once).
    """
    for then in ("keep-sending", "close-at-once"):
        run(_hand_over_server_side(tls if use_tls else None, then))


async def _hand_over_server_side(tls: TLSConfig | None, then: str) -> None:
    # more than the StreamReader buffers (2 x 64 KiB) before it pauses the transport
    first = b"first-frame|" * 20_000
    later = os.urandom(300_000)
    protocol = Recorder()
    handed = asyncio.Event()
    buffered: list[int] = []

    async def after(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # wait (peeking at private state) until the client's first bytes, or as many as
        # the StreamReader takes before pausing the transport, and in the second case its
        # EOF, sit in the StreamReader: hand_over must pass them on and resume reading
        for _ in range(400):
            buffered[:] = [len(reader._buffer)]  # type: ignore[attr-defined]
            paused = not writer.transport.is_reading()  # type: ignore[attr-defined]
            if paused or (buffered[0] >= len(first)
                          and (then == "keep-sending" or reader._eof)):  # type: ignore[attr-defined]
                break
            await asyncio.sleep(0.005)
        transport = ca.hand_over(reader, writer, protocol)
        assert transport is protocol.transport
        handed.set()

    async with serve(TOKEN, after=after,
                     ssl_ctx=tls.server_context() if tls else None) as srv:
        _, writer = await ca.open_connection(HOST, srv.port, TOKEN, "driver", tls=tls)
        writer.write(first)
        if then == "close-at-once":
            await _close(writer)
            await asyncio.wait_for(handed.wait(), 3)
            expected = first
        else:
            await asyncio.wait_for(handed.wait(), 3)
            writer.write(later)
            await _close(writer)
            expected = first + later
        await asyncio.wait_for(protocol.lost, 3)
        assert await srv.outcome() == "driver"
    assert buffered[0] >= 65536
    assert bytes(protocol.data) == expected
    assert protocol.events[0] == "made" and protocol.events[-1] == "lost"
    assert protocol.events.count("lost") == 1


@pytest.mark.parametrize("use_tls", [False, True], ids=["tcp", "tls"])
def test_hand_over_client_side(run: Runner, tls: TLSConfig, use_tls: bool) -> None:
    welcome = b"welcome|" * 50_000

    async def main() -> None:
        async def after(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(welcome)  # right behind the handshake's last message
            await writer.drain()
            await _read_to_eof(reader)  # until the client's protocol closes
            writer.close()

        async with serve(TOKEN, after=after,
                         ssl_ctx=tls.server_context() if use_tls else None) as srv:
            reader, writer = await ca.open_connection(
                HOST, srv.port, TOKEN, "node", tls=tls.client_context() if use_tls else None
            )
            protocol = Recorder()
            transport = ca.hand_over(reader, writer, protocol)
            for _ in range(400):
                if len(protocol.data) >= len(welcome):
                    break
                await asyncio.sleep(0.005)
            transport.write(b"bye")
            transport.close()
            await asyncio.wait_for(protocol.lost, 3)
            assert await srv.outcome() == "node"
        assert bytes(protocol.data) == welcome

    run(main())


# == TLS =====================================================================================


def test_tls_handshake(run: Runner, tls: TLSConfig) -> None:
    async def main() -> None:
        async with serve(TOKEN, ssl_ctx=tls.server_context()) as srv:
            _, writer = await ca.open_connection(HOST, srv.port, TOKEN, "node", tls=tls)
            assert isinstance(writer.get_extra_info("ssl_object"), ssl.SSLObject)
            assert await srv.outcome() == "node"
            await _close(writer)
            sock = await asyncio.to_thread(ca.connect, HOST, srv.port, TOKEN, "cli", tls=tls)
            assert isinstance(sock, ssl.SSLSocket)
            sock.close()
            assert await srv.outcome() == "cli"

        async with serve(OTHER, ssl_ctx=tls.server_context()) as srv:  # TLS is no token
            with pytest.raises(AuthError, match="refused the token"):
                await ca.open_connection(HOST, srv.port, TOKEN, "node", tls=tls)
            await srv.outcome()

    run(main())
    with (
        blocking_server(TOKEN, ssl_ctx=tls.server_context()) as srv,
        ca.connect(HOST, srv.port, TOKEN, "node", tls=tls.client_context()),
    ):
        assert srv.join() == "node"


def test_tls_failures_are_clean(
    run: Runner, tls: TLSConfig, tmp_path: Path, warnings_log: pytest.LogCaptureFixture
) -> None:
    """TLS on one side only, or a server certificate from another CA: refused, no hang."""
    stranger_ca = trustme.CA()
    stranger_ca.cert_pem.write_to_path(str(tmp_path / "other-ca.pem"))
    distrustful = TLSConfig(tls.certfile, tls.keyfile, str(tmp_path / "other-ca.pem"))

    async def main() -> None:
        start = time.monotonic()
        async with serve(TOKEN, ssl_ctx=tls.server_context()) as srv:  # plain client
            with pytest.raises(AuthError, match="TLS"):
                await ca.open_connection(HOST, srv.port, TOKEN, "node", timeout=3)
            with pytest.raises(AuthError, match="TLS"):
                await asyncio.to_thread(ca.connect, HOST, srv.port, TOKEN, "node", timeout=3)
        async with serve(TOKEN) as srv:  # TLS client, plain server
            with pytest.raises(AuthError, match=r"TLS handshake .* failed"):
                await ca.open_connection(HOST, srv.port, TOKEN, "node", tls=tls, timeout=3)
            exc, _ = await srv.outcome()
            assert isinstance(exc, AuthError)
            with pytest.raises(AuthError, match=r"TLS handshake .* failed"):
                await asyncio.to_thread(ca.connect, HOST, srv.port, TOKEN, "node",
                                        tls=tls, timeout=3)
            await srv.outcome()
        async with serve(TOKEN, ssl_ctx=tls.server_context()) as srv:
            with pytest.raises(AuthError, match="certificate"):
                await ca.open_connection(HOST, srv.port, TOKEN, "node", tls=distrustful)
        assert time.monotonic() - start < 2  # refused, never left hanging

    run(main())
    assert all("bad magic" in m for m in _refusals(warnings_log))


def test_tls_config_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (ca.TLS_CERT_ENV, ca.TLS_KEY_ENV, ca.TLS_CA_ENV):
        monkeypatch.delenv(name, raising=False)
    assert TLSConfig.from_env() is None
    monkeypatch.setenv(ca.TLS_CERT_ENV, "c.pem")
    with pytest.raises(ValueError, match=ca.TLS_KEY_ENV):
        TLSConfig.from_env()
    monkeypatch.setenv(ca.TLS_KEY_ENV, "k.pem")
    assert TLSConfig.from_env() == TLSConfig("c.pem", "k.pem", None)
    monkeypatch.setenv(ca.TLS_CA_ENV, "ca.pem")
    assert TLSConfig.from_env() == TLSConfig("c.pem", "k.pem", "ca.pem")


def test_tls_contexts(tls: TLSConfig) -> None:
    client, server = tls.client_context(), tls.server_context()
    assert client.minimum_version == server.minimum_version == ssl.TLSVersion.TLSv1_2
    assert client.verify_mode == ssl.CERT_REQUIRED and not client.check_hostname
    assert server.verify_mode == ssl.CERT_REQUIRED  # members prove their certificate too
    strict = TLSConfig(tls.certfile, tls.keyfile, tls.cafile, check_hostname=True)
    assert strict.client_context().check_hostname
    with pytest.raises(ValueError, match="cannot load TLS files"):
        TLSConfig("/nonexistent.pem", "/nonexistent.key").server_context()
