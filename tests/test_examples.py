"""Every examples/*.py runs to completion in a fresh interpreter and leaves nothing behind.

Examples with a full size and a small one read ``ACTORLIB_EXAMPLE_SIZE=small`` (the same
as their ``--small`` flag): the tests run the small size.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from testkit import assert_no_leftovers, run_script

pytestmark = pytest.mark.slow

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
# on_ray.py runs on Ray whatever ACTORLIB_BACKEND says: tested once, below.
EXAMPLES = sorted(p for p in EXAMPLES_DIR.glob("*.py") if p.name != "on_ray.py")


def test_required_examples_exist():
    names = {p.name for p in EXAMPLES}
    assert {"quickstart.py", "async_app.py"} <= names, names


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(example, backend_name, monkeypatch):
    monkeypatch.setenv("ACTORLIB_EXAMPLE_SIZE", "small")
    run_script(str(example), backend_name)


@pytest.mark.timeout(400)  # it may start the run's Ray (the first ray test does)
def test_on_ray_example_runs(request: pytest.FixtureRequest) -> None:
    """examples/on_ray.py joins the test run's Ray cluster by address (the way a user
    joins one that ``ray start`` made), runs, and leaves the cluster up."""
    if importlib.util.find_spec("ray") is None:
        pytest.skip("examples/on_ray.py needs Ray: pip install 'actorlib[ray]'")
    address = request.getfixturevalue("_ray_cluster")
    proc = run_script(str(EXAMPLES_DIR / "on_ray.py"), "ray", timeout=170, args=[address])
    assert "squares: [0, 1, 4, 9, 16, 25, 36, 49]" in proc.stdout, proc.stdout
    assert "tally after async adds: 30" in proc.stdout, proc.stdout
    import ray

    assert ray.is_initialized() and ray.cluster_resources().get("CPU") == 4


def _load_example(name: str) -> Any:
    """Import an example as a module (its helpers, without running its main)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES_DIR / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_web_service_serves_concurrent_requests(backend_name):
    """``web_service.py --serve`` is a real HTTP server: concurrent requests from this
    process over sockets get the model's answers, repeats come from the cache, a key over
    its quota gets 429 with Retry-After, /stats agrees, and Ctrl-C stops it cleanly."""
    import aiohttp

    ws = _load_example("web_service")
    weights = ws.make_weights(0)
    token = uuid.uuid4().hex
    env = dict(os.environ, ACTORLIB_BACKEND=backend_name, ACTORLIB_TEST_RUN_TOKEN=token)
    env.pop("PYTEST_CURRENT_TEST", None)
    server = subprocess.Popen(
        [sys.executable, "web_service.py", "--serve", "--port", "0"],
        cwd=EXAMPLES_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = server.stdout.readline()  # "serving http://127.0.0.1:PORT (...)"
        match = re.match(r"serving (http://127\.0\.0\.1:\d+) ", line)
        assert match, f"{line!r}\n{server.stderr.read() if server.poll() is not None else ''}"
        url = match.group(1)

        async def post(session, key, **kw):
            headers = {"X-API-Key": key} if key else {}
            async with session.post(f"{url}/predict", headers=headers, **kw) as resp:
                return resp.status, await resp.json(), resp.headers.get("Retry-After")

        async def client():
            async with aiohttp.ClientSession() as session:
                # 8 users x 4 texts each (within the quota), all at once, then again.
                asks = [(f"user-{u}", f"text {u} {i}") for u in range(8) for i in range(4)]
                first = await asyncio.gather(*(post(session, k, json={"text": t}) for k, t in asks))
                again = await asyncio.gather(*(post(session, k, json={"text": t}) for k, t in asks))
                for (_, text), (s1, b1, _), (s2, b2, _) in zip(asks, first, again, strict=True):
                    want = ws.classify(weights, text)
                    assert s1 == s2 == 200, (b1, b2)
                    assert b1["label"] == b2["label"] == want["label"], (b1, b2, want)
                    assert abs(b1["score"] - want["score"]) < 1e-5, (b1, want)
                    assert not b1["cached"] and b2["cached"], (b1, b2)

                # One key far over its quota: 40 different texts at once.
                t0 = time.monotonic()
                greedy = await asyncio.gather(
                    *(post(session, "greedy", json={"text": f"g{i}"}) for i in range(40))
                )
                span = time.monotonic() - t0
                ok = [b for s, b, _ in greedy if s == 200]
                refused = [(b, h) for s, b, h in greedy if s == 429]
                assert len(ok) + len(refused) == 40, greedy
                assert ws.BURST <= len(ok) <= ws.BURST + ws.RATE * span + 1, (len(ok), span)
                assert refused, "no request over the quota was refused"
                for body, retry_after in refused:
                    assert body["error"] == "rate limit exceeded" and body["retry_after"] > 0
                    assert int(retry_after) >= 1, retry_after

                assert (await post(session, None, json={"text": "x"}))[0] == 401
                assert (await post(session, "user-0", data=b"not json"))[0] == 400

                async with session.get(f"{url}/stats") as resp:
                    stats = await resp.json()
                assert stats["model"]["served"] == len(asks) + len(ok), stats
                assert stats["model"]["limited_by_key"] == {"greedy": len(refused)}, stats
                assert stats["cache"]["hits"] == len(asks), stats

        asyncio.run(client())
        server.send_signal(signal.SIGINT)  # Ctrl-C
        out, err = server.communicate(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    assert server.returncode == 0, (server.returncode, out, err)
    assert out.split() == ["stopped", "done"], out
    assert "Traceback" not in err, err
    assert_no_leftovers(token, grace=5)
