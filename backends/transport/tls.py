"""TLS for the cluster's connections: one member's certificate, key and CA (:class:`TLSConfig`).

The token handshake (:mod:`.auth`) authenticates both ends but neither encrypts nor binds
the traffic after it; TLS does, and the handshake then runs inside it. Separate because
choosing and loading certificates (and the environment variables that name them) is a
concern of its own that the daemons and the CLI configure before any connection exists;
the handshake only receives the finished ``ssl`` contexts. Also here: the messages that
point a user at these variables when one side speaks TLS and the other does not.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass

__all__ = [
    "TLS_CA_ENV",
    "TLS_CERT_ENV",
    "TLS_KEY_ENV",
    "TLSConfig",
    "client_ssl",
    "tls_failure",
    "tls_hint",
]

TLS_CERT_ENV = "ACTORLIB_TLS_CERT"
TLS_KEY_ENV = "ACTORLIB_TLS_KEY"
TLS_CA_ENV = "ACTORLIB_TLS_CA"


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


def client_ssl(tls: TLSConfig | ssl.SSLContext | None) -> ssl.SSLContext | None:
    return tls.client_context() if isinstance(tls, TLSConfig) else tls


def tls_hint(data: bytes) -> str:
    if data[:1] in (b"\x15", b"\x16") and data[1:2] == b"\x03":  # a TLS alert/handshake
        return (f" - it speaks TLS: set {TLS_CERT_ENV}, {TLS_KEY_ENV} and {TLS_CA_ENV} "
                "here as on the cluster")
    return ""



def tls_failure(peer: str, exc: BaseException) -> str:
    return (
        f"TLS handshake with {peer} failed: {exc} (every cluster member must use TLS or "
        f"none; check {TLS_CERT_ENV}, {TLS_KEY_ENV} and {TLS_CA_ENV})"
    )
