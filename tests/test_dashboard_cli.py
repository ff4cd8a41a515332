"""The dashboard from the command line: a cluster's head (``start --head --dashboard-port``,
guarded by a token derived from the cluster's) and ``actorlib dashboard`` next to a
running driver.

As in test_cli.py, each test keeps its sessions under a ``TMPDIR`` of its own.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from dashboard_client import get, snapshot, split
from test_cli import cli
from testkit import wait_for

from actorlib.backends.dashboard import guard
from actorlib.backends.transport import tokens

pytestmark = pytest.mark.slow

T = 60
URL = re.compile(r"http://\S+\?token=\S+")


def test_the_head_serves_the_dashboard_behind_the_cluster_token(tmp_env: dict[str, str]):
    out = cli(tmp_env, "start", "--head", "--port", "0", "--num-cpus", "1",
              "--dashboard-port", "0")
    try:
        assert out.returncode == 0, out.stderr
        found = URL.findall(out.stdout)
        assert len(found) == 1, out.stdout
        url = found[0]
        session = re.search(r"session (\S+)\)", out.stdout).group(1)  # type: ignore[union-attr]
        token = tokens.read_token_file(os.path.join(session, "token"))
        base, dashboard_token = split(url)
        assert base.startswith("http://127.0.0.1:")
        assert dashboard_token == guard.derived_token(token)
        assert token.decode() not in url  # the URL cannot be used to join the cluster
        for path in ("", "api/snapshot", "api/state/nodes", "static/dashboard.js"):
            status, _, _ = get(url, path, token=None)
            assert status == 401, path
            status, _, _ = get(url, path, token=token.decode())
            assert status == 401, path
        body = wait_for(lambda: (lambda b: b if b["rows"]["nodes"] else None)(snapshot(url)),
                        "the node to join")
        assert body["summary"]["nodes"]["resources_total"]["CPU"] == 1
        assert body["source"].startswith("cluster head 127.0.0.1:")
        status, page, _ = get(url, "")
        assert status == 200 and "<canvas" in page

        # A worker's log, read by the head from its node.
        script = ("import os, actorlib\nactorlib.init(address='auto')\n"
                  "f = actorlib.remote(lambda: (print('seen by the head'), os.getpid())[1])\n"
                  "print('pid', actorlib.get(f.remote()))\nactorlib.shutdown()\n")
        ran = subprocess.run([sys.executable, "-c", script], env=tmp_env, capture_output=True,
                             text=True, timeout=T)
        assert ran.returncode == 0, ran.stderr
        pid = int(ran.stdout.split("pid ")[-1])
        status, files, _ = get(url, "api/logs")
        assert status == 200 and pid in {row["pid"] for row in files["rows"]}, files
        status, tail, _ = get(url, f"api/logs/{pid}")
        assert status == 200 and "seen by the head" in tail["text"], tail
        status, _, _ = get(url, f"api/logs/{pid}", token=None)
        assert status == 401
    finally:
        stopped = cli(tmp_env, "stop")
        assert stopped.returncode == 0, stopped.stderr


def test_dashboard_port_is_for_a_head(tmp_env: dict[str, str]):
    out = cli(tmp_env, "start", "--address", "127.0.0.1:1", "--dashboard-port", "8265")
    assert out.returncode == 2 and "--dashboard-port is for a head" in out.stderr
    out = cli(tmp_env, "start", "--head", "--dashboard-port", "70000")
    assert out.returncode == 2 and "--dashboard-port must be 0..65535" in out.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = cli(tmp_env, "start", "--head", "--port", "0", "--num-cpus", "0",
                  "--dashboard-port", str(port))
    assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
    assert f"port {port} is in use" in out.stderr and "--dashboard-port" in out.stderr


DRIVER = textwrap.dedent("""
    import sys, time
    import actorlib

    @actorlib.remote
    class Inventory:
        def count(self):
            return 3

    actorlib.init(backend="thread", num_cpus=1)
    inventory = Inventory.remote()
    assert actorlib.get(inventory.count.remote()) == 3
    print("ready", flush=True)
    sys.stdin.read()  # until the test closes it
    actorlib.shutdown()
""")


def test_actorlib_dashboard_attaches_to_a_running_driver(tmp_env: dict[str, str],
                                                        tmp_path: Path):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    driver = subprocess.Popen([sys.executable, str(script)], env=tmp_env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    dashboard = None
    try:
        assert driver.stdout is not None and driver.stdout.readline() == "ready\n"
        dashboard = subprocess.Popen(
            [sys.executable, "-m", "actorlib", "dashboard", "--port", "0"], env=tmp_env,
            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        assert dashboard.stdout is not None
        first = dashboard.stdout.readline()
        assert f"local driver pid {driver.pid}" in first, first
        url = URL.findall(first)[0]
        status, _, _ = get(url, "api/snapshot", token=None)
        assert status == 401
        status, actors, _ = get(url, "api/state/actors")
        assert status == 200
        assert [(a["class_name"], a["state"]) for a in actors["rows"]] == [("Inventory", "ALIVE")]

        # The driver ends: the dashboard says so, and stays up.
        driver.communicate("", timeout=T)
        status, body, _ = wait_for(
            lambda: (lambda r: r if r[0] == 503 else None)(get(url, "api/snapshot")),
            "the dashboard to notice the driver is gone")
        assert "error" in body
        dashboard.send_signal(signal.SIGINT)
        _, err = dashboard.communicate(timeout=T)
        assert dashboard.returncode == 0, err
    finally:
        for proc in (driver, dashboard):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.communicate()


def test_actorlib_dashboard_with_nothing_running_is_one_line(tmp_env: dict[str, str]):
    out = cli(tmp_env, "dashboard", "--port", "0")
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and "no local actorlib driver is running" in out.stderr
