"""Who may read the dashboard: whoever holds its token.

A dashboard's token is random for a local driver (``init(dashboard=True)``, ``actorlib
dashboard``) and, on a cluster, derived from the cluster token (HMAC), so the URL that
``actorlib start --head`` prints opens the dashboard but cannot be used to join the
cluster or run code on it. The token arrives as ``?token=`` (the printed URL), then as a
cookie the server sets (so the page's scripts and polls carry it), or as
``Authorization: Bearer <token>`` for scripts.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping

QUERY = "token"
_DERIVE = b"actorlib dashboard v1"


def new_token() -> str:
    return secrets.token_urlsafe(24)


def derived_token(cluster_token: bytes | str) -> str:
    """The cluster's dashboard token: the same on every run of the same cluster token."""
    key = cluster_token.encode() if isinstance(cluster_token, str) else cluster_token
    return hmac.new(key, _DERIVE, hashlib.sha256).hexdigest()[:40]


def cookie_name(port: int) -> str:
    """One cookie per port: browsers share cookies between ports of one host."""
    return f"actorlib-dashboard-{port}"


def supplied(query: Mapping[str, str], headers: Mapping[str, str],
             cookies: Mapping[str, str], port: int) -> tuple[str | None, bool]:
    """The token a request carries, and whether it came in the URL (then set the cookie)."""
    from_query = query.get(QUERY)
    if from_query:
        return from_query, True
    auth = headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        return auth[len("Bearer "):].strip(), False
    return cookies.get(cookie_name(port)), False


def valid(token: str, candidate: str | None) -> bool:
    return candidate is not None and hmac.compare_digest(candidate.encode(), token.encode())
