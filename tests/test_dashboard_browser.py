"""The dashboard page in a real headless Chromium: it loads without console errors, shows
a workload's running actors and tasks, and follows it as it changes; its worker log page
shows a worker's log tail, and its timeline page draws the tasks' spans.

Chromium is Debian's ``chromium`` package (.ci/run installs it). Under CI (``CI`` set) a
missing browser fails the test; elsewhere it skips, saying how to install it.
``ACTORLIB_DASHBOARD_SCREENSHOT=path.png`` saves what the browser shows (docs/ has them),
and the log and timeline pages beside it (``path-logs.png``, ``path-timeline.png``).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import numpy as np
import pytest
from cdp import find_chromium, open_page
from testkit import Gate

import actorlib

pytestmark = pytest.mark.slow

T = 60
CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture
def chromium() -> str:
    path = find_chromium()
    if path is None:
        message = "chromium is not installed: apt-get install -y chromium (.ci/run does)"
        if CI:
            pytest.fail(f"{message}; the dashboard's browser test must run in CI",
                        pytrace=False)
        pytest.skip(message)
    return path


@actorlib.remote
def training_step(gate):
    return actorlib.get(gate.wait.remote())


@actorlib.remote
def square(x):
    time.sleep(0.05)
    return x * x


@actorlib.remote
def chatty():
    print("chatty says hello")
    return os.getpid()


@actorlib.remote(max_retries=0)
def broken():
    raise ValueError("broken on purpose")


@actorlib.remote(max_restarts=1)
class ParameterServer:
    def __init__(self) -> None:
        self.weights = [0.0] * 4

    def push(self, delta: float) -> float:
        from actorlib.util.metrics import Counter

        self.weights = [w + delta for w in self.weights]
        Counter("parameter_pushes", "updates applied").inc()
        return self.weights[0]


ROWS = "Array.from(document.querySelectorAll('#kind-{kind} tbody tr'))"


def _cell_texts(kind: str) -> str:
    return f"{ROWS.format(kind=kind)}.map(r => r.textContent)"


def _card(name: str) -> str:
    return f"Number(document.getElementById('card-{name}')?.dataset.value ?? -1)"


async def _drive(chromium: str, profile: Path, url: str, gate, screenshot: str | None,
                 chatty_pid: int) -> None:
    async with open_page(chromium, profile, url) as page:
        await page.wait_for("Number(document.body?.dataset.polls) >= 1", "the first poll")
        assert await page.evaluate("document.title") == "actorlib dashboard"
        # The running actors and tasks of the workload.
        alive = (f"{ROWS.format(kind='actors')}.filter(r => r.dataset.state === 'ALIVE')"
                 ".map(r => r.textContent)")
        actors = await page.wait_for(f"{alive}.length === 2 && {alive}", "two live actors")
        assert any("Gate" in row for row in actors), actors
        assert any("ParameterServer" in row for row in actors), actors
        await page.wait_for(
            f"{ROWS.format(kind='tasks')}.filter(r => r.dataset.state === 'RUNNING' && "
            "r.textContent.includes('training_step')).length === 2", "the running tasks")
        assert await page.evaluate(_card("running")) >= 2
        assert await page.evaluate(_card("actors")) == 2
        assert await page.evaluate(_card("failed")) == 1
        assert await page.evaluate(_card("workers")) >= 3  # two steps and two actors, at least
        workers = await page.evaluate(_cell_texts("workers"))
        assert any("ParameterServer" in row for row in workers), workers
        nodes = await page.evaluate(_cell_texts("nodes"))
        assert len(nodes) == 1 and "4.0 MiB" in nodes[0], nodes  # the array in the store
        finished = await page.evaluate(_card("finished"))
        assert finished >= 9
        assert await page.evaluate("document.getElementById('status').textContent") == "live"
        # The metrics the actor recorded, and this driver's job.
        metrics = await page.wait_for(
            f"{_cell_texts('metrics')}.filter(t => t.includes('parameter_pushes'))",
            "the actor's counter in the metrics table")
        assert "COUNTER" in metrics[0], metrics
        jobs = await page.evaluate(_cell_texts("jobs"))
        assert len(jobs) == 1 and "RUNNING" in jobs[0], jobs
        # The rate chart drew the finished tasks' bars (in their green).
        green = await page.evaluate(
            "(() => { const c = document.getElementById('rate');"
            " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
            " let n = 0; for (let i = 0; i < d.length; i += 4)"
            " if (d[i] === 26 && d[i+1] === 127 && d[i+2] === 55) n++; return n; })()")
        assert green > 50, green
        # The address bar lost the token (it is a cookie now).
        assert "token" not in await page.evaluate("window.location.href")
        if screenshot:
            await page.screenshot(screenshot)

        # It follows the workload: the gate opens, the steps finish, more tasks run.
        polls = await page.evaluate("Number(document.body.dataset.polls)")
        await gate.open.remote()
        await asyncio.gather(*[square.remote(i) for i in range(5)])
        await page.wait_for(
            f"{_card('running')} === 0 && {_card('finished')} >= {finished + 2 + 5}",
            "the finished count to grow")
        states = await page.evaluate(
            f"{ROWS.format(kind='tasks')}.filter(r => r.textContent.includes('training_step'))"
            ".map(r => r.dataset.state)")
        assert states == ["FINISHED", "FINISHED"], states
        # ... and keeps polling without trouble.
        now = await page.evaluate("Number(document.body.dataset.polls)")
        assert now > polls
        await page.wait_for(f"Number(document.body.dataset.polls) >= {now + 2}",
                            "two more polls")
        assert await page.evaluate("document.getElementById('status').textContent") == "live"
        assert page.errors == [], page.errors

        # The worker log page, by its link (the cookie carries the token): the files, and
        # the tail of the one picked.
        await page.evaluate("document.querySelector('nav a[href=\"logs\"]').click()")
        await page.wait_for("location.pathname === '/logs' && "
                            "Number(document.body?.dataset.polls) >= 1", "the log page")
        row = f"document.querySelector('#file-list tr[data-pid=\"{chatty_pid}\"] a')"
        await page.wait_for(f"{row} !== null", "the chatty worker's log file")
        await page.evaluate(f"{row}.click()")
        tail = await page.wait_for(
            f"(t => t.dataset.pid === '{chatty_pid}' && t.textContent)("
            "document.getElementById('tail-text'))", "the chatty worker's log tail")
        assert f"(chatty pid={chatty_pid}) chatty says hello" in tail, tail
        assert await page.evaluate("location.search") == f"?pid={chatty_pid}"
        assert await page.evaluate("document.getElementById('status').textContent") == "live"
        if screenshot:
            await page.screenshot(_beside(screenshot, "logs"))

        # The timeline page: a span per task attempt that ran, on its worker's row.
        await page.evaluate("document.querySelector('nav a[href=\"timeline\"]').click()")
        await page.wait_for("location.pathname === '/timeline' && "
                            "Number(document.body?.dataset.loads) >= 1", "the timeline page")
        squares = await page.evaluate(
            "Array.from(document.querySelectorAll('#spans rect'))"
            ".filter(r => r.querySelector('title').textContent.startsWith('square ')).length")
        assert squares == 6 + 5, squares
        labels = await page.evaluate(
            "Array.from(document.querySelectorAll('#spans text[data-row]'))"
            ".map(t => t.textContent)")
        assert any(f"pid={chatty_pid}" in label for label in labels), labels
        assert await page.evaluate(
            "document.getElementById('download').getAttribute('href')"
        ) == "api/timeline?download=1"
        if screenshot:
            await page.screenshot(_beside(screenshot, "timeline"))
        assert page.errors == [], page.errors


def _beside(screenshot: str, page: str) -> str:
    """``docs/dashboard.png`` -> ``docs/dashboard-logs.png``: the other pages' shots."""
    path = Path(screenshot)
    return str(path.with_name(f"{path.stem}-{page}{path.suffix}"))


def test_the_page_shows_a_workload_and_follows_it(chromium: str, tmp_path: Path) -> None:
    info = actorlib.init(backend="process", num_cpus=4, dashboard=True, dashboard_port=0,
                         log_dir=str(tmp_path / "logs"))
    try:
        assert info.dashboard_url is not None
        gate = Gate.remote()
        steps = [training_step.remote(gate) for _ in range(2)]
        server = ParameterServer.remote()
        assert actorlib.get([server.push.remote(0.1) for _ in range(3)], timeout=T)[-1] > 0.2
        assert actorlib.get([square.remote(i) for i in range(6)], timeout=T)[3] == 9
        with pytest.raises(actorlib.exceptions.TaskError):
            actorlib.get(broken.remote(), timeout=T)
        weights = actorlib.put(np.zeros(1 << 19))  # 4 MiB, in the node's store
        chatty_pid = actorlib.get(chatty.remote(), timeout=T)
        shot = os.environ.get("ACTORLIB_DASHBOARD_SCREENSHOT")
        asyncio.run(_drive(chromium, tmp_path / "profile", info.dashboard_url, gate, shot,
                           chatty_pid))
        assert actorlib.get(steps, timeout=T) == ["opened", "opened"]
        del weights
    finally:
        actorlib.shutdown()
