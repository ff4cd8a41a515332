"""The dashboard's web server: the static page and its JSON endpoints, over aiohttp.

It runs on an event loop of its own in a thread of its own (``actorlib-dashboard``), so
it neither slows nor waits on the core: rows are fetched on a one-thread pool, because a
fetch blocks (it asks the core's loop, a local driver's socket or a cluster's head).
Every request must carry the dashboard's token (:mod:`.guard`); nothing a request sends
is unpickled, only a ``limit`` number and a kind's name are read from it.

aiohttp is the ``dashboard`` extra: it is imported when a dashboard is made, and its
absence is a clear ``ImportError`` naming the extra.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import functools
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

from actorlib.backends.dashboard import guard
from actorlib.backends.dashboard.snapshot import (
    Fetch,
    check_bytes,
    check_limit,
    kind_rows,
    log_files,
    log_tail,
    snapshot,
    timeline,
)
from actorlib.core.interruptible import shield_signals
from actorlib.core.metrics import prometheus

log = logging.getLogger("actorlib.dashboard")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8265  # Ray's
#: Prometheus' text exposition format, as its scrapers ask for it.
PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STATIC = Path(__file__).resolve().parent / "static"
#: The files the page is made of: name -> content type.
FILES = {
    "index.html": "text/html",
    "logs.html": "text/html",
    "timeline.html": "text/html",
    "dashboard.js": "text/javascript",
    "logs.js": "text/javascript",
    "timeline.js": "text/javascript",
    "common.js": "text/javascript",
    "dashboard.css": "text/css",
}
#: The pages: path -> file.
PAGES = {"/": "index.html", "/logs": "logs.html", "/timeline": "timeline.html"}
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_DENIED = (
    "missing or wrong dashboard token: open the URL actorlib printed (it ends in "
    "?token=...), or send 'Authorization: Bearer <token>'"
)


def load_aiohttp() -> Any:
    """aiohttp's ``web`` module, or an ImportError that says how to install it."""
    try:
        from aiohttp import web
    except ImportError as exc:
        raise ImportError(
            "the actorlib dashboard needs aiohttp, which is not installed: "
            "pip install 'actorlib[dashboard]'"
        ) from exc
    return web


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)


class DashboardServer:
    """Serves the dashboard of the rows ``fetch`` returns, from :meth:`start` to :meth:`stop`.

    ``token``: the one requests must carry (default: a new random one); ``source``: what
    the page's header says it shows (a driver, a cluster's head).
    """

    def __init__(self, fetch: Fetch, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 token: str | None = None, source: str = "") -> None:
        self._web = load_aiohttp()
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < 65536:
            raise ValueError(f"dashboard_port: expected an int from 0 to 65535, got {port!r}")
        if not isinstance(host, str) or not host:
            raise ValueError(f"dashboard_host: expected an interface to bind, got {host!r}")
        self._fetch = fetch
        self.host = host
        self.port = port
        self.token = token or guard.new_token()
        self.source = source
        self._files = {name: (STATIC / name).read_bytes() for name in FILES}
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """The page's address with its token: what to open in a browser."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/?{guard.QUERY}={self.token}"

    # -- running ----------------------------------------------------------------------------

    def start(self) -> str:
        """Listen; returns :attr:`url`. OSError when the port cannot be had."""
        if self._thread is not None:
            raise RuntimeError("this dashboard is already started")
        self._pool = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="actorlib-dashboard-fetch"
        )
        self._thread = threading.Thread(target=self._run, name="actorlib-dashboard",
                                        daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            self._thread = None
            self._pool.shutdown()
            self._pool = None
            raise self._error
        return self.url

    def stop(self) -> None:
        """Stop serving and end the server's threads. Safe to call twice."""
        thread, self._thread = self._thread, None
        if thread is not None:
            loop, stopping = self._loop, self._stopping
            if loop is not None and stopping is not None:
                loop.call_soon_threadsafe(stopping.set)
            thread.join()
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def _run(self) -> None:
        shield_signals()
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start(), never lost in a thread
            if not self._ready.is_set():
                self._error = exc
                self._ready.set()
            else:
                log.exception("actorlib: the dashboard stopped")
        finally:
            loop.close()

    async def _serve(self) -> None:
        web = self._web
        self._stopping = asyncio.Event()
        # A request still waiting on its fetch at stop() gets a short grace, not a minute.
        runner = web.AppRunner(self._app(), access_log=None, handle_signals=False,
                               shutdown_timeout=2.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
            self.port = int(runner.addresses[0][1])
            self._ready.set()
            await self._stopping.wait()
        finally:
            await runner.cleanup()

    # -- the application --------------------------------------------------------------------

    def _app(self) -> Any:
        web = self._web

        @web.middleware
        async def guarded(request: Any, handler: Any) -> Any:
            return await self._guard(request, handler)

        app = web.Application(middlewares=[guarded])
        for path, name in PAGES.items():
            app.router.add_get(path, functools.partial(self._page, name))
        app.router.add_get("/static/{name}", self._static)
        app.router.add_get("/api/snapshot", self._snapshot)
        app.router.add_get("/api/state/{kind}", self._kind)
        app.router.add_get("/api/logs", self._logs)
        app.router.add_get("/api/logs/{pid}", self._log_tail)
        app.router.add_get("/api/timeline", self._timeline)
        app.router.add_get("/metrics", self._metrics)
        return app

    @property
    def _cookie(self) -> str:
        return guard.cookie_name(self.port)

    async def _guard(self, request: Any, handler: Any) -> Any:
        token, in_url = guard.supplied(request.query, request.headers, request.cookies,
                                       self.port)
        if not guard.valid(self.token, token):
            response = self._json({"error": _DENIED}, status=401)
        else:
            response = await handler(request)
            if in_url:
                response.set_cookie(self._cookie, self.token, httponly=True,
                                    samesite="Strict", path="/")
        response.headers.update(_HEADERS)
        return response

    def _json(self, value: Any, status: int = 200) -> Any:
        return self._web.json_response(value, status=status, dumps=_dumps)

    async def _page(self, name: str, request: Any) -> Any:
        return self._web.Response(body=self._files[name], content_type="text/html",
                                  charset="utf-8")

    async def _static(self, request: Any) -> Any:
        name = request.match_info["name"]
        if name not in FILES or name in PAGES.values():
            return self._json({"error": f"no such file: {name}"}, status=404)
        return self._web.Response(body=self._files[name], content_type=FILES[name],
                                  charset="utf-8")

    async def _call(self, fn: Any, *args: Any) -> Any:
        """Run a blocking fetch on the pool: the answer, or an error response."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, functools.partial(fn, *args))
        except (ValueError, LookupError) as exc:  # no such kind, worker or log file
            return self._json({"error": str(exc).strip("'\"")}, status=404)
        except Exception as exc:  # the source is gone or cannot answer: say so, stay up
            log.debug("actorlib: a dashboard query failed", exc_info=True)
            return self._json({"error": f"{type(exc).__name__}: {exc}"}, status=503)

    async def _snapshot(self, request: Any) -> Any:
        try:
            limit = check_limit(request.query.get("limit"))
        except ValueError as exc:
            return self._json({"error": str(exc)}, status=400)
        started = time.perf_counter()
        answer = await self._call(snapshot, self._fetch, limit)
        if isinstance(answer, dict):
            answer["source"] = self.source
            # The page polls no more often than ten times this, so a large core (its
            # 20,000 remembered tasks are rows to build) is not kept busy by it.
            answer["build_ms"] = round((time.perf_counter() - started) * 1000, 1)
            return self._json(answer)
        return answer

    async def _kind(self, request: Any) -> Any:
        try:
            limit = check_limit(request.query.get("limit"))
        except ValueError as exc:
            return self._json({"error": str(exc)}, status=400)
        answer = await self._call(kind_rows, self._fetch, request.match_info["kind"], limit)
        return self._json(answer) if isinstance(answer, dict) else answer


    async def _logs(self, request: Any) -> Any:
        answer = await self._call(log_files, self._fetch)
        return self._json(answer) if isinstance(answer, dict) else answer

    async def _log_tail(self, request: Any) -> Any:
        pid = request.match_info["pid"]
        try:
            if not pid.isdigit() or int(pid) <= 0:
                raise ValueError(f"pid: expected a worker's process id, got {pid!r}")
            size = check_bytes(request.query.get("bytes"))
        except ValueError as exc:
            return self._json({"error": str(exc)}, status=400)
        answer = await self._call(log_tail, self._fetch, int(pid), size)
        return self._json(answer) if isinstance(answer, dict) else answer

    async def _metrics(self, request: Any) -> Any:
        """``actorlib.util.metrics`` in Prometheus' text format, for a scraper (which
        sends the token as ``Authorization: Bearer``, or ``?token=``)."""
        rows = await self._call(self._fetch, "metrics")
        if not isinstance(rows, list):
            return rows
        return self._web.Response(body=prometheus(rows).encode(),
                                  headers={"Content-Type": PROMETHEUS_TYPE})

    async def _timeline(self, request: Any) -> Any:
        answer = await self._call(timeline, self._fetch)
        if not isinstance(answer, list):
            return answer
        response = self._json(answer)
        if request.query.get("download"):
            response.headers["Content-Disposition"] = 'attachment; filename="timeline.json"'
        return response


def start(fetch: Fetch, *, host: str = DEFAULT_HOST, port: int | None = None,
          token: str | None = None, source: str = "") -> DashboardServer:
    """A started dashboard. ``port=None``: Ray's 8265, else any free port if that is taken."""
    server = DashboardServer(fetch, host=host, port=DEFAULT_PORT if port is None else port,
                             token=token, source=source)
    try:
        server.start()
    except OSError as exc:
        if port is not None or exc.errno != errno.EADDRINUSE:
            raise OSError(exc.errno, f"the dashboard cannot listen on {host}:{server.port}: "
                          f"{exc.strerror or exc}") from None
        server = DashboardServer(fetch, host=host, port=0, token=server.token, source=source)
        server.start()
    return server
