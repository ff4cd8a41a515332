"""Reading a dashboard's JSON endpoints the way a script would (urllib, a bearer token)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

T = 60


def split(url: str) -> tuple[str, str]:
    """``(base, token)`` of a dashboard URL as init() returns it."""
    parts = urllib.parse.urlsplit(url)
    token = urllib.parse.parse_qs(parts.query)["token"][0]
    return f"{parts.scheme}://{parts.netloc}/", token


def get(url: str, path: str, token: str | None = "", headers: dict[str, str] | None = None,
        ) -> tuple[int, Any, dict[str, str]]:
    """``(status, decoded JSON or text, headers)`` of GET ``path``; ``token=""``: the
    URL's own, ``None``: none."""
    base, own = split(url)
    sent = dict(headers or {})
    token = own if token == "" else token
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(base + path, headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=T) as response:
            status, body, got = response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        status, body, got = exc.code, exc.read(), dict(exc.headers)
        exc.close()
    kind = got.get("Content-Type", "")
    return status, json.loads(body) if "json" in kind else body.decode(), got


def snapshot(url: str, **query: Any) -> dict[str, Any]:
    path = "api/snapshot" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    status, body, _ = get(url, path)
    assert status == 200, body
    return dict(body)
