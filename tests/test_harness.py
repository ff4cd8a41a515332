"""The test harness itself: the leak check catches leaks; a missing backend is a skip."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each test runs pytest in a subprocess

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
import time
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


def test_leaks_shm_of_a_child_that_died():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    path = os.path.join(os.environ["ACTORLIB_TEST_SHM_DIR"], f"actorlib-{child.pid}-0-1")
    atexit.register(lambda: os.path.exists(path) and os.unlink(path))
    open(path, "wb").close()


def test_other_programs_shm_is_not_ours():
    # files of actorlib programs outside this run, one running and one killed meanwhile
    for pid in (os.environ["FOREIGN_LIVE_PID"], os.environ["FOREIGN_DEAD_PID"]):
        path = os.path.join(os.environ["ACTORLIB_TEST_SHM_DIR"], f"actorlib-{pid}-0-1")
        atexit.register(lambda p=path: os.path.exists(p) and os.unlink(p))
        open(path, "wb").close()


def test_a_reused_pid_is_not_ours():
    # pids wrap: a process of this run once had the pid a foreign program has now
    import conftest

    pid = int(os.environ["FOREIGN_LIVE_PID"])
    conftest._RUN_PIDS[pid] = 1.0  # that earlier process's start time
    path = os.path.join(os.environ["ACTORLIB_TEST_SHM_DIR"], f"actorlib-{pid}-0-2")
    atexit.register(lambda: os.path.exists(path) and os.unlink(path))
    open(path, "wb").close()


def test_a_foreign_file_found_at_the_start():
    # made by a process outside the run (a daemon another test killed), there when the
    # next test starts
    pid = int(os.environ["FOREIGN_DEAD_PID"])
    path = os.path.join(os.environ["ACTORLIB_TEST_SHM_DIR"], f"actorlib-{pid}-0-3-host")
    atexit.register(lambda: os.path.exists(path) and os.unlink(path))
    open(path, "wb").close()


def test_is_not_a_leak_when_its_pid_was_once_ours():
    # pids wrap: a process of this run had that pid before the daemon did
    import conftest

    conftest._RUN_PIDS[int(os.environ["FOREIGN_DEAD_PID"])] = 1.0


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
    # Processes outside the inner run (children of this one): stand-ins for other actorlib
    # programs on the machine, one still running and one gone.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    monkeypatch.setenv("FOREIGN_DEAD_PID", str(dead.pid))
    monkeypatch.setenv("FOREIGN_LIVE_PID", str(live.pid))
    _setup(pytester, CONFTEST)
    pytester.makepyfile(test_leaky=LEAKY_TESTS)
    try:
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    finally:
        live.kill()
        live.wait()
    result.assert_outcomes(passed=10, errors=5)
    text = result.stdout.str()
    assert "leaky" in text
    assert "child processes outlived the test" in text
    assert "actorlib-leakcheck" in text
    assert "left the actorlib runtime initialized" in text
    assert "ERROR test_leaky.py::test_leaks_shm_of_a_child_that_died" in text
    assert f"actorlib-{dead.pid}-" not in text and f"actorlib-{live.pid}-" not in text


ONE_TEST = """
import actorlib


def test_put(rt):
    assert actorlib.get(actorlib.put(2)) == 2
"""


@pytest.fixture(autouse=True)
def _inner_runs_keep_the_ray_subset(monkeypatch):
    """The inner runs' conftest is a copy of ours: under ``ACTORLIB_TEST_RAY=all`` it put
    their tests on ray too, where they cannot import tests/ray_local.py."""
    monkeypatch.delenv("ACTORLIB_TEST_RAY", raising=False)


def _setup(pytester, conftest):
    pytester.makeconftest(conftest)
    here = Path(__file__).parent
    pytester.makepyfile(
        sim_suite=(here / "sim_suite.py").read_text(), backstop=(here / "backstop.py").read_text(),
        ray_local=(here / "ray_local.py").read_text(),
    )
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


SHARED_TESTS = """
import asyncio

import pytest

import actorlib
from actorlib import session

pytestmark = pytest.mark.shared_runtime
SEEN = []  # the runtime each test ran on
KEEP = []  # what a test leaves behind on purpose


@actorlib.remote(num_cpus=0)
class A:
    def ping(self):
        return 1


@actorlib.remote
async def nap():
    await asyncio.sleep(30)


def test_01_starts_one(rt):
    SEEN.append(session.runtime())


def test_02_shares_it(rt):
    assert session.runtime() is SEEN[-1]
    assert actorlib.get(A.remote().ping.remote()) == 1  # the actor goes with its handle


@pytest.mark.fresh_runtime
def test_03_fresh(rt):
    assert session.runtime() not in SEEN
    SEEN.append(session.runtime())


def test_04_after_a_fresh_one_a_new_shared_one(rt):
    assert session.runtime() not in SEEN
    SEEN.append(session.runtime())


@pytest.mark.init_kwargs(num_cpus=2)
def test_05_other_init_kwargs(rt):
    assert session.runtime() not in SEEN
    SEEN.append(session.runtime())


@pytest.mark.init_kwargs(num_cpus=2)
def test_06_same_init_kwargs(rt):
    assert session.runtime() is SEEN[-1]


def test_07_leaves_an_actor(rt):
    SEEN.append(session.runtime())
    KEEP.append(A.remote())


def test_08_leaves_a_ref(rt):
    assert session.runtime() not in SEEN  # the unclean one was dropped
    SEEN.append(session.runtime())
    KEEP.append(actorlib.put(1))


def test_09_leaves_a_task(rt):
    assert session.runtime() not in SEEN
    SEEN.append(session.runtime())
    nap.remote()


def test_10_leaves_a_detached_actor(rt):
    assert session.runtime() not in SEEN
    SEEN.append(session.runtime())
    A.options(name="kept", lifetime="detached").remote()


def test_11_fails(rt):
    assert session.runtime() not in SEEN
    SEEN.append(session.runtime())
    KEEP.append(A.remote())
    raise AssertionError("on purpose")


def test_12_shuts_it_down(rt):
    assert session.runtime() not in SEEN  # the failed test's one was dropped
    SEEN.append(session.runtime())
    actorlib.shutdown()


def test_13_last(rt):
    assert session.runtime() not in SEEN
    assert actorlib.get(actorlib.put(3)) == 3
"""


def test_shared_runtime_is_shared_and_checked_clean_between_tests(pytester, monkeypatch):
    """Tests of a shared_runtime module share one runtime; one that leaves anything in it
    fails, and the next test gets a new runtime; fresh_runtime and other init_kwargs get
    their own."""
    monkeypatch.setenv("ACTORLIB_TEST_LEAK_GRACE", "0.3")
    _setup(pytester, CONFTEST)
    pytester.makepyfile(test_shared=SHARED_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=12, failed=1, errors=4)
    text = result.stdout.str()
    for test, left in [
        ("test_07", "live actors"),
        ("test_08", "live objects"),
        ("test_09", "1 tasks pending"),
        ("test_10", "actor names taken ['default/kept']"),
    ]:
        assert re.search(rf"ERROR at teardown of {test}.*\n(.*\n)*?.*{re.escape(left)}", text)
    assert "left the shared runtime unclean" in text
    assert "shared runtime: 12 tests ran on 10 shared runtimes" in text


def test_the_ray_reset_ends_what_a_test_left_and_names_a_leak(
    request: pytest.FixtureRequest,
) -> None:
    """Between ray tests every actor and placement group is ended quietly (detached ones
    outlive shutdown() on purpose), and work that still holds CPUs after that is a leak:
    the test is told what was held and what ran, and the cluster is restarted to end it
    (a task whose worker is killed is retried by its owner)."""
    ray = pytest.importorskip("ray", reason="needs Ray: pip install 'actorlib[ray]'")
    from ray_local import reset_cluster

    address = request.getfixturevalue("_ray_cluster")

    @ray.remote(num_cpus=1)
    class Kept:
        def ping(self) -> int:
            return 1

    @ray.remote(num_cpus=1, max_retries=2)
    def forever() -> None:
        time.sleep(600)

    named = Kept.options(name="kept", lifetime="detached").remote()
    plain = Kept.remote()
    assert ray.get([named.ping.remote(), plain.ping.remote()], timeout=60) == [1, 1]
    group = ray.util.placement_group([{"CPU": 1}])
    ray.get(group.ready(), timeout=60)
    assert reset_cluster() == []  # actors and groups go quietly
    assert ray.available_resources().get("CPU") == 4
    forever.remote()  # a task no actorlib shutdown knows of
    deadline = time.monotonic() + 60
    while ray.available_resources().get("CPU") != 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    problems = reset_cluster(grace=1.0)
    assert len(problems) == 1 and "(CPU 3 of 4 available)" in problems[0], problems
    assert "ray::forever" in problems[0] and "restarted" in problems[0], problems
    assert ray.get_runtime_context().gcs_address == address  # the same port
    time.sleep(2)  # nothing comes back
    assert ray.available_resources().get("CPU") == 4
    assert ray.get(ray.remote(lambda: 5).remote(), timeout=60) == 5


HANGS_AFTER_ITS_TIMEOUT = """
import time

import pytest


@pytest.mark.timeout(1)
def test_hangs_after_its_timeout():
    try:
        time.sleep(60)
    finally:
        time.sleep(60)  # a clean-up waiting for work nothing will run


def test_after():
    pass
"""


def test_a_test_hanging_after_its_timeout_ends_the_run_with_its_stacks(pytester, monkeypatch):
    """pytest-timeout fires once; the backstop (tests/backstop.py) ends the run soon after,
    instead of letting CI wait for its own limit."""
    monkeypatch.setenv("ACTORLIB_TEST_BACKSTOP_GRACE", "2")
    pytester.makepyfile(
        backstop=(Path(__file__).parent / "backstop.py").read_text(),
        test_hang=HANGS_AFTER_ITS_TIMEOUT,
    )
    t0 = time.monotonic()
    result = pytester.runpytest_subprocess("-p", "backstop", "-p", "no:cacheprovider", timeout=50)
    took = time.monotonic() - t0
    assert result.ret == 3, result.stdout.str() + result.stderr.str()
    err = result.stderr.str()
    assert "test_hang.py::test_hangs_after_its_timeout was still running 4 s" in err
    assert "in test_hangs_after_its_timeout" in err  # the stack says where it hung
    assert took < 40


def test_under_pytest_n_2_a_hanging_test_ends_its_worker_once_and_the_run_goes_on(
    pytester, monkeypatch
):
    """Under ``pytest -n 2`` the backstop ends the hanging test's worker (not the run):
    the test fails once, with the stacks, and the other test of its module still runs.
    (pytest-xdist gave a crashed worker's module back with the crashed test in it, which
    then hung every worker that took it: the conftest's scheduler counts it as done.)"""
    monkeypatch.setenv("ACTORLIB_TEST_BACKSTOP_GRACE", "2")
    _setup(pytester, CONFTEST)
    pytester.makepyfile(test_hang=HANGS_AFTER_ITS_TIMEOUT)
    t0 = time.monotonic()
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider", timeout=80)
    took = time.monotonic() - t0
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == 1, out
    # One "node down" per ended worker (the summary's lines are cut to the terminal's
    # width, so they are no count to rely on).
    assert len(re.findall(r"\[gw\d+\] node down", out)) == 1, out
    assert "test_hang.py::test_hangs_after_its_timeout was still running 4 s" in out
    assert "in test_hangs_after_its_timeout" in out  # the stack says where it hung
    result.assert_outcomes(passed=1, failed=1)  # test_after still ran
    assert took < 40


def test_under_pytest_n_2_a_worker_lost_after_finishing_a_module_is_replaced_and_the_run_ends(
    pytester, monkeypatch
):
    """A worker that dies in its second module, after finishing its first: pytest-xdist
    gave both modules back, the finished one first, and its replacement was handed that
    one, nothing to run, so it never asked for more and the run waited for ever (a CI run
    did until its limit). The conftest's scheduler gives back only unfinished modules.
    The lost test's report carries the fatal lines Ray logged (here a stand-in log: Ray
    aborts a driver on a failed check and says so only in its log files)."""
    logs = Path(tempfile.mkdtemp(prefix="rtk-", dir="/tmp"))
    monkeypatch.setenv("FAKE_RAY_LOGS", str(logs / "session_1" / "logs"))
    _setup(pytester, CONFTEST)
    pytester.makepyfile(
        # Largest first: one worker takes test_a, the other test_b, and whichever first
        # has two tests left takes test_crash after the module it is running.
        test_a="".join(f"def test_a{n}():\n    pass\n\n" for n in range(4)),
        test_b="".join(f"def test_b{n}():\n    pass\n\n" for n in range(3)),
        test_crash=(
            "import os\n\n\ndef test_crashes():\n"
            "    logs = os.environ['FAKE_RAY_LOGS']\n"
            "    os.makedirs(logs)\n"
            "    with open(os.path.join(logs, 'python-core-driver-01_7.log'), 'w') as f:\n"
            "        f.write('[2026-12-06 20:54:02,162 I 7 7] task_manager.cc:1651: fine\\n'\n"
            "                '[2026-12-06 20:54:02,213 C 7 9] task_manager.cc:1329: '\n"
            "                'Check failed: a stand-in\\n')\n"
            "    os._exit(3)\n\n\n"
            "def test_after():\n    pass\n"
        ),
    )
    try:
        result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider",
                                               timeout=60)
    finally:
        shutil.rmtree(logs, ignore_errors=True)
    out = result.stdout.str() + result.stderr.str()
    assert len(re.findall(r"\[gw\d+\] node down", out)) == 1, out
    result.assert_outcomes(passed=8, failed=1)  # test_after ran on the replacement
    assert "python-core-driver-01_7.log: [2026-12-06 20:54:02,213 C 7 9] " in out, out
    assert "Check failed: a stand-in" in out and "cc:1651: fine" not in out


def test_the_backstop_gives_each_test_its_own_limit(pytester, monkeypatch):
    """Four tests of 1.5 s under a 5 s limit (timeout 2, grace 1): each is within its
    own, all together are not."""
    monkeypatch.setenv("ACTORLIB_TEST_BACKSTOP_GRACE", "1")
    quick = "".join(f"def test_{n}():\n    time.sleep(1.5)\n\n" for n in "abcd")
    pytester.makepyfile(
        backstop=(Path(__file__).parent / "backstop.py").read_text(),
        test_quick="import time\n\n" + quick,
    )
    pytester.makeini("[pytest]\ntimeout = 2\n")
    result = pytester.runpytest_subprocess("-p", "backstop", "-p", "no:cacheprovider", timeout=50)
    result.assert_outcomes(passed=4)


_CTRL_C_TESTS = '''
import time
from testkit import ctrl_c_elsewhere

def sleeper():
    time.sleep(0.5)

def test_a_block_that_raises_something_else():
    with ctrl_c_elsewhere("sleeper", "test_ctrl_c.py", lambda: None):
        raise ValueError("not a Ctrl-C")

def test_a_block_that_waits_for_it():
    with ctrl_c_elsewhere("sleeper", "test_ctrl_c.py", lambda: None):
        while True:
            sleeper()
'''


def test_ctrl_c_elsewhere_fails_a_block_that_ends_otherwise_without_ending_the_run(
    tmp_path: Path,
) -> None:
    """A block that ends with another error fails its test: the Ctrl-C sent as it ended
    never reaches pytest (there it ended the whole run; under ``-n``, its worker)."""
    (tmp_path / "test_ctrl_c.py").write_text(_CTRL_C_TESTS)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         str(tmp_path / "test_ctrl_c.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 failed, 1 passed" in done.stdout, done.stdout
    assert "ValueError: not a Ctrl-C" in done.stdout, done.stdout
