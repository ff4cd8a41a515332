"""The live web dashboard: a small static page polling JSON built from state API rows.

:mod:`.snapshot` turns rows into what the page shows, :mod:`.server` serves the page and
the JSON over aiohttp (the ``dashboard`` extra, imported only when a dashboard starts),
:mod:`.tokens` guards it. See "The dashboard" in docs/observability.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from actorlib.backends.dashboard.server import DashboardServer
    from actorlib.backends.dashboard.snapshot import Fetch


def serve_head(fetch: Fetch, cluster_token: bytes, host: str, port: int,
               source: str) -> DashboardServer:
    """A cluster head's dashboard: its token derived from the cluster's (see :mod:`.guard`)."""
    from actorlib.backends.dashboard import guard, server

    dashboard = server.DashboardServer(fetch, host=host, port=port,
                                       token=guard.derived_token(cluster_token), source=source)
    dashboard.start()
    return dashboard
