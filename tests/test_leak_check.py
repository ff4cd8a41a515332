"""The autouse leak check really catches leaked threads, processes, shm entries, runtimes."""

from __future__ import annotations

from pathlib import Path

CONFTEST = (Path(__file__).parent / "conftest.py").read_text()

LEAKY_TESTS = '''
import atexit
import os
import subprocess
import sys
import threading

import actorlib

SHM = "/dev/shm/actorlib-leakcheck-%d" % os.getpid()
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
'''


def test_leak_check_catches_leaks(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makeini(
        "[pytest]\nasyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makepyfile(test_leaky=LEAKY_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=5, errors=4)
    text = result.stdout.str()
    assert "leaky" in text
    assert "child processes outlived the test" in text
    assert "actorlib-leakcheck" in text
    assert "left the actorlib runtime initialized" in text
