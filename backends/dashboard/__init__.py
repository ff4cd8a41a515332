"""The live web dashboard: a small static page polling JSON built from state API rows.

:mod:`.snapshot` turns rows into what the page shows, :mod:`.server` serves the page and
the JSON over aiohttp (the ``dashboard`` extra, imported only when a dashboard starts),
:mod:`.tokens` guards it. See "The dashboard" in docs/observability.md.
"""
