"""The test harness itself: the leak check catches leaks; a missing backend is a skip."""

from __future__ import annotations

import re
from pathlib import Path

# The real conftest, pinned to the thread backend so these checks stay quick.
CONFTEST = re.sub(
    r"^BACKENDS = \[.*\]$",
    'BACKENDS = ["thread"]',
    (Path(__file__).parent / "conftest.py").read_text(),
    flags=re.MULTILINE,
)

LEAKY_TESTS = """
import atexit
import os
import subprocess
import sys
import threading

import actorlib

SHM = os.path.join(os.environ["ACTORLIB_TEST_SHM_DIR"], "actorlib-leakcheck")
atexit.register(lambda: os.path.exists(SHM) and os.unlink(SHM))
STOP = threading.Event()


def test_leaks_thread():
    threading.Thread(target=STOP.wait, args=(30,), name="leaky", daemon=True).start()


def test_leaks_process():
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])


def test_leaks_shm():
    open(SHM, "wb").close()


def test_leaves_runtime_initialized(backend_name):
    actorlib.init(backend=backend_name, num_cpus=1)


def test_clean(rt):
    assert actorlib.get(actorlib.put(1)) == 1
"""


def test_leak_check_catches_leaks(pytester, monkeypatch, tmp_path):
    shm_dir = tmp_path / "shm"
    shm_dir.mkdir()
    # a private stand-in for /dev/shm, so concurrent test runs never see the fake segment
    monkeypatch.setenv("ACTORLIB_TEST_SHM_DIR", str(shm_dir))
    monkeypatch.setenv("ACTORLIB_TEST_LEAK_GRACE", "0.3")  # these leaks are permanent
    _setup(pytester, CONFTEST)
    pytester.makepyfile(test_leaky=LEAKY_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=5, errors=4)
    text = result.stdout.str()
    assert "leaky" in text
    assert "child processes outlived the test" in text
    assert "actorlib-leakcheck" in text
    assert "left the actorlib runtime initialized" in text


ONE_TEST = """
import actorlib


def test_put(rt):
    assert actorlib.get(actorlib.put(2)) == 2
"""


def _setup(pytester, conftest):
    pytester.makeconftest(conftest)
    pytester.makepyfile(sim_suite=(Path(__file__).parent / "sim_suite.py").read_text())
    pytester.makeini(
        "[pytest]\nasyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\n"
    )


def test_unavailable_backend_is_a_skip_with_reason(pytester):
    assert 'BACKENDS = ["thread"]' in CONFTEST
    _setup(pytester, CONFTEST.replace('BACKENDS = ["thread"]', 'BACKENDS = ["thread", "nosuch"]'))
    pytester.makepyfile(test_one=ONE_TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*backend 'nosuch' unavailable*"])
