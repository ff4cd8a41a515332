"""The cluster handshake as a protocol: its messages, checks and errors, free of I/O.

Both sides are generators of steps (:class:`Read` ``n`` bytes, or bytes to write) that
:mod:`.auth` runs over asyncio streams or blocking sockets, so the protocol is written once
and both drivers speak exactly it. Separate from the drivers because this is what a review
of the security argument reads; it never imports pickle and reads only fixed, small sizes.

The handshake (version 2), length-prefixed fields of bounded size, no pickle::

    client -> server  HELLO      b"ACTORLIB" | version (1 byte) | role length (1 byte,
                                 1..32) | role (ascii) | client nonce (32 bytes)
                                 | identity length (1 byte, 1..255) | identity (ascii)
    server -> client  CHALLENGE  b"ACTORLIB" | version | status (1 byte)
                                 [| server nonce (32 bytes), when status is OK]
    client -> server  PROOF      HMAC-SHA256(token, b"actorlib-auth client\\0" | T)
    server -> client  RESULT     status [| HMAC-SHA256(token, b"actorlib-auth server\\0" | T),
                                 when status is OK or OTHER_RELEASE]
                                 [| identity length | identity, when OTHER_RELEASE]

where ``T`` is the HELLO bytes followed by the server nonce. Both nonces are fresh random
bytes, so neither proof can be replayed; the two labels differ, so a proof cannot be
reflected; the role is inside ``T``, so the role the server returns is the one the
client proved. The server checks the client's proof (``hmac.compare_digest``) before it
proves itself, and the client checks the server's proof, so a client never talks to an
impostor head.

The identity (``release.identity()``: the actorlib release, the Python minor version and
a digest of the wire format's code) must be the same on both sides: peers that differ
would exchange records neither can decode. The server compares it only once the client
has proved the token, so a stranger learns nothing of the release; it then refuses with
OTHER_RELEASE, proving itself and naming its own, and the client raises an
:class:`AuthError` naming both. Version 1 had no identity: a version-1 peer is refused
with BAD_VERSION, which names the handshake versions. A refused peer is logged (WARNING
on ``actorlib.cluster``, naming its address and the reason) and disconnected; a refused
client raises :class:`AuthError`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import struct
from collections.abc import Generator
from dataclasses import dataclass
from typing import TypeVar

from actorlib.backends.transport.tls import tls_hint
from actorlib.backends.transport.tokens import TOKEN_ENV, AuthError

__all__ = [
    "MAGIC",
    "MAX_ROLE",
    "NONCE_SIZE",
    "PROOF_SIZE",
    "VERSION",
    "Eof",
    "Read",
    "Refused",
    "Steps",
    "check_role",
    "client_steps",
    "server_steps",
]

MAGIC = b"ACTORLIB"
VERSION = 2
NONCE_SIZE = 32
PROOF_SIZE = hashlib.sha256().digest_size
MAX_ROLE = 32
MAX_IDENTITY = 255
_ROLE_RE = re.compile(rb"[A-Za-z0-9_.-]{1,%d}" % MAX_ROLE)
_IDENTITY_RE = re.compile(rb"[ -~]{1,%d}" % MAX_IDENTITY)  # printable ASCII
_PREFIX = struct.Struct("!8sB")  # magic, version
_CLIENT_LABEL = b"actorlib-auth client\0"
_SERVER_LABEL = b"actorlib-auth server\0"

# status bytes (CHALLENGE and RESULT)
_OK = 0
_BAD_VERSION = 1
_BAD_HELLO = 2
_WRONG_TOKEN = 3
_BAD_MAGIC = 4
_OTHER_RELEASE = 5

_T = TypeVar("_T")


@dataclass(frozen=True)
class Read:
    """Step: read exactly ``n`` bytes (``what`` names them in error messages)."""

    n: int
    what: str


Steps = Generator["Read | bytes", bytes, _T]  # yields reads or bytes to write


class Refused(Exception):
    """The server refuses the peer: ``reason`` is logged, ``reply`` sent before closing."""

    def __init__(self, reason: str, reply: bytes = b"") -> None:
        super().__init__(reason)
        self.reason = reason
        self.reply = reply


class Eof(Exception):
    """The peer closed the connection while we read ``what`` (``partial`` had arrived)."""

    def __init__(self, what: str, partial: bytes) -> None:
        super().__init__(what)
        self.what = what
        self.partial = partial


def _mac(key: bytes, label: bytes, transcript: bytes) -> bytes:
    return hmac.new(key, label + transcript, hashlib.sha256).digest()


def server_steps(key: bytes, ours: bytes) -> Steps[str]:
    """The server's side; returns the client's (proved) role. ``ours``: this process's
    identity, which the client's must equal."""
    prefix = yield Read(_PREFIX.size, "before sending a hello")
    magic, version = _PREFIX.unpack(prefix)
    if magic != MAGIC:
        raise Refused(
            f"bad magic, not an actorlib client (it sent {prefix!r})",
            _PREFIX.pack(MAGIC, VERSION) + bytes([_BAD_MAGIC]),
        )
    if version != VERSION:
        raise Refused(
            f"unsupported handshake version {version} (this daemon speaks {VERSION})",
            _PREFIX.pack(MAGIC, VERSION) + bytes([_BAD_VERSION]),
        )
    (role_len,) = yield Read(1, "in its hello")
    if not 1 <= role_len <= MAX_ROLE:
        raise Refused(f"bad hello (role length {role_len})",
                       _PREFIX.pack(MAGIC, VERSION) + bytes([_BAD_HELLO]))
    rest = yield Read(role_len + NONCE_SIZE + 1, "in its hello")
    role = rest[:role_len]
    if not _ROLE_RE.fullmatch(role):
        raise Refused(f"bad hello (role {role!r})",
                       _PREFIX.pack(MAGIC, VERSION) + bytes([_BAD_HELLO]))
    identity_len = rest[-1]
    if not identity_len:
        raise Refused("bad hello (no identity)", _PREFIX.pack(MAGIC, VERSION) + bytes([_BAD_HELLO]))
    theirs = yield Read(identity_len, "in its hello")
    if not _IDENTITY_RE.fullmatch(theirs):
        raise Refused(f"bad hello (identity {theirs!r})",
                       _PREFIX.pack(MAGIC, VERSION) + bytes([_BAD_HELLO]))
    rest += theirs
    server_nonce = secrets.token_bytes(NONCE_SIZE)
    yield _PREFIX.pack(MAGIC, VERSION) + bytes([_OK]) + server_nonce
    transcript = prefix + bytes([role_len]) + rest + server_nonce
    proof = yield Read(PROOF_SIZE, "before proving the token")
    if not hmac.compare_digest(proof, _mac(key, _CLIENT_LABEL, transcript)):
        raise Refused(f"wrong token (role {role.decode()!r})", bytes([_WRONG_TOKEN]))
    ours_proved = _mac(key, _SERVER_LABEL, transcript)
    if theirs != ours:
        raise Refused(
            f"another actorlib (role {role.decode()!r}): it runs {theirs.decode()}, this "
            f"daemon {ours.decode()}",
            bytes([_OTHER_RELEASE]) + ours_proved + bytes([len(ours)]) + ours,
        )
    yield bytes([_OK]) + ours_proved
    return role.decode("ascii")


def client_steps(key: bytes, role: bytes, peer: str, ours: bytes) -> Steps[None]:
    """The client's side; raises AuthError naming ``peer`` when refused or fooled.
    ``ours``: this process's identity, which the server's must equal."""
    if not _IDENTITY_RE.fullmatch(ours):
        raise ValueError(f"an identity is 1-{MAX_IDENTITY} printable ASCII characters: {ours!r}")
    hello = _PREFIX.pack(MAGIC, VERSION) + bytes([len(role)]) + role
    hello += secrets.token_bytes(NONCE_SIZE) + bytes([len(ours)]) + ours
    yield hello
    head = yield Read(_PREFIX.size + 1, "instead of answering our hello")
    magic, version = _PREFIX.unpack(head[:-1])
    status = head[-1]
    if magic != MAGIC:
        raise AuthError(f"{peer} is not an actorlib cluster (it answered {head!r})"
                        + tls_hint(head))
    if status == _BAD_VERSION or (status == _OK and version != VERSION):
        raise AuthError(
            f"the cluster at {peer} speaks handshake version {version}, this actorlib "
            f"{VERSION}: run the same actorlib version on every member"
        )
    if status == _BAD_HELLO:
        raise AuthError(f"the cluster at {peer} refused our hello (role {role.decode()!r})")
    if status != _OK:
        raise AuthError(f"the cluster at {peer} refused the handshake (status {status})")
    server_nonce = yield Read(NONCE_SIZE, "instead of sending its challenge")
    transcript = hello + server_nonce
    yield _mac(key, _CLIENT_LABEL, transcript)
    (status,) = yield Read(1, "after our proof: it refused the token")
    if status == _WRONG_TOKEN:
        raise AuthError(
            f"the cluster at {peer} refused the token (it is not this cluster's token): "
            f"check {TOKEN_ENV} or --token-file"
        )
    if status not in (_OK, _OTHER_RELEASE):
        raise AuthError(f"the cluster at {peer} refused the handshake (status {status})")
    proof = yield Read(PROOF_SIZE, "instead of proving the token")
    if not hmac.compare_digest(proof, _mac(key, _SERVER_LABEL, transcript)):
        raise AuthError(
            f"the server at {peer} does not know the cluster token (an impostor, or another "
            "cluster on that port): not talking to it"
        )
    if status == _OTHER_RELEASE:
        (size,) = yield Read(1, "instead of naming its release")
        theirs = yield Read(size, "instead of naming its release")
        raise AuthError(
            f"the cluster at {peer} runs {theirs.decode('ascii', 'replace')}, this process "
            f"{ours.decode()}: a cluster's driver, head and nodes must run the same actorlib "
            "release on the same Python minor version (pip install the same actorlib "
            "everywhere)"
        )


def check_role(role: str) -> bytes:
    raw = role.encode("ascii", "replace")
    if not _ROLE_RE.fullmatch(raw):
        raise ValueError(f"role must be 1-{MAX_ROLE} characters of [A-Za-z0-9_.-], got {role!r}")
    return raw

