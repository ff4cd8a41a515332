"""A headless Chromium driven over the Chrome DevTools protocol (its websocket, via aiohttp).

Enough to test a page as a person sees it: open a URL, evaluate expressions in the page,
take a screenshot, and collect every console error, uncaught exception and failed load
(``Page.errors``). The browser is Debian's ``chromium``; :func:`find_chromium` says how to
get it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil

T = 60
NAMES = ("chromium", "chromium-browser")


def find_chromium() -> str | None:
    for name in NAMES:
        path = shutil.which(name)
        if path is not None:
            return path
    return None


class Page:
    """One page's DevTools session: commands by id, events collected."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws
        self._next = 0
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.errors: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self._ws:
            data = json.loads(message.data)
            if "id" in data:
                future = self._waiting.pop(data["id"], None)
                if future is not None and not future.done():
                    future.set_result(data)
                continue
            method, params = data.get("method"), data.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                self.errors.append(details.get("exception", {}).get("description")
                                   or details.get("text", "exception"))
            elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                self.errors.append(" ".join(str(a.get("value", a.get("description")))
                                            for a in params["args"]))
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                entry = params["entry"]
                self.errors.append(f"{entry['text']} ({entry.get('url', '')})")

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        self._next += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[self._next] = future
        await self._ws.send_str(json.dumps({"id": self._next, "method": method,
                                            "params": params}))
        answer = await asyncio.wait_for(future, T)
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        result: dict[str, Any] = answer["result"]
        return result

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression,
                                 returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, what: str, timeout: float = T) -> Any:
        """The first truthy value of ``expression``, polled."""
        deadline = time.monotonic() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what} ({expression})")
            await asyncio.sleep(0.1)

    async def screenshot(self, path: str | os.PathLike[str]) -> None:
        shot = await self.send("Page.captureScreenshot", format="png",
                               captureBeyondViewport=True)
        Path(path).write_bytes(base64.b64decode(shot["data"]))

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """End the browser and every process it started (the leak check counts them)."""
    try:
        family = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        family = []
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    _, alive = psutil.wait_procs(family, timeout=10)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()
    psutil.wait_procs(alive, timeout=5)


@contextlib.asynccontextmanager
async def open_page(executable: str, profile: Path, url: str,
                    size: tuple[int, int] = (1280, 1000)) -> AsyncIterator[Page]:
    """Chromium, headless, showing ``url``; its page's DevTools session."""
    import aiohttp

    profile.mkdir(parents=True, exist_ok=True)
    log = open(profile / "chromium.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [executable, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--no-default-browser-check", "--disable-extensions", "--disable-sync",
         "--disable-background-networking", "--disable-component-update",
         "--remote-debugging-port=0", f"--user-data-dir={profile}",
         f"--window-size={size[0]},{size[1]}", "about:blank"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        active = profile / "DevToolsActivePort"
        deadline = time.monotonic() + T
        while not active.exists() or len(active.read_text().splitlines()) < 2:
            if proc.poll() is not None or time.monotonic() > deadline:
                output = (profile / "chromium.log").read_text()
                raise RuntimeError(f"chromium did not start: {output}")
            await asyncio.sleep(0.05)
        port = int(active.read_text().splitlines()[0])
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as response:
                targets = await response.json()
            target = next(t for t in targets if t["type"] == "page")
            async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                page = Page(ws)
                try:
                    for domain in ("Runtime", "Log", "Page"):
                        await page.send(f"{domain}.enable")
                    await page.send("Page.navigate", url=url)
                    yield page
                finally:
                    await page.close()
    finally:
        _stop(proc)
        log.close()
