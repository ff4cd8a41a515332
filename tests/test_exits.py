"""Every exit path cleans up: a driver stopped by a signal in the middle of a blocking ``get``.

Each test runs a real driver script in its own process group (as a terminal's foreground
job is) and signals the whole group, as Ctrl-C or a hang-up does: the driver must exit
within seconds, print one traceback at most (its own KeyboardInterrupt), leave no
process and no ``/dev/shm`` file behind, and exit with the conventional status.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest
from testkit import assert_no_leftovers

import actorlib
from actorlib import session

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="process groups, pidfds and /dev/shm"
)]

SHM = "/dev/shm"
EXIT_WITHIN_S = 5.0

DRIVER = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    import actorlib

    backend, marks, catch = sys.argv[1], sys.argv[2], sys.argv[3] == "catch"
    actorlib.init(backend=backend, num_cpus=2)

    @actorlib.remote
    def hold(i):
        open(os.path.join(marks, f"task-{i}"), "w").close()
        time.sleep(60)

    @actorlib.remote(num_cpus=0)
    class Holder:
        def hold(self):
            open(os.path.join(marks, "actor"), "w").close()
            time.sleep(60)

    @actorlib.remote
    def square(x):
        return x * x

    @actorlib.remote
    def make():
        return np.ones(1 << 20)

    # 8 MiB each: shared-memory files where there are some (a cluster's are its node's)
    big = [actorlib.put(np.ones(1 << 20)), make.remote()]
    actorlib.wait(big, num_returns=2)
    holder = Holder.remote()
    refs = [hold.remote(i) for i in range(2)] + [holder.hold.remote()]
    while len(os.listdir(marks)) < 3:
        time.sleep(0.01)
    try:  # entered before "ready": the signal may come as soon as that line is out
        print("ready", os.getpid(), flush=True)
        actorlib.get(refs)
    except KeyboardInterrupt:
        if not catch:
            raise
        for ref in refs[:2]:
            actorlib.cancel(ref, force=True)
        print("still working:", actorlib.get(square.remote(3), timeout=30), flush=True)
""")


def _tree(pid: int) -> set[int]:
    try:
        proc = psutil.Process(pid)
        return {pid} | {p.pid for p in proc.children(recursive=True)}
    except psutil.NoSuchProcess:
        return {pid}


def _shm_files(pids: set[int]) -> list[str]:
    """Store files owned by these processes (``actorlib-{owner pid}-...``)."""
    return sorted(
        name for name in os.listdir(SHM)
        if name.startswith("actorlib-") and name.split("-")[1].isdigit()
        and int(name.split("-")[1]) in pids
    )


def _driver_env(token: str) -> dict[str, str]:
    """A driver of its own: marked with the run's token, joining no cluster of ours."""
    env = dict(os.environ, ACTORLIB_TEST_RUN_TOKEN=token)
    env.pop("ACTORLIB_ADDRESS", None)
    env.pop("PYTEST_CURRENT_TEST", None)
    return env


def _default_sigint() -> None:
    """A terminal's foreground job gets Ctrl-C. The test run itself may have been started
    with SIGINT ignored (a background job of a non-interactive shell), which its children
    would inherit, and Python then never turns SIGINT into KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _run_and_signal(
    tmp_path: Path, backend: str, sig: signal.Signals, catch: bool = False
) -> tuple[subprocess.CompletedProcess[str], float, set[int], str]:
    """Start the driver, wait until its work runs, signal its group; returns how it ended,
    how long that took, every pid of its tree, and its run token."""
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    marks = tmp_path / "marks"
    marks.mkdir()
    token = uuid.uuid4().hex
    env = _driver_env(token)
    proc = subprocess.Popen(
        [sys.executable, str(script), backend, str(marks), "catch" if catch else "raise"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        cwd=str(tmp_path), process_group=0, preexec_fn=_default_sigint,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("ready"), line + (proc.stderr.read() if proc.stderr else "")
        pids = _tree(proc.pid)
        if backend != "thread":
            assert _shm_files(pids), "the test needs a shared-memory file to exist"
        start = time.monotonic()
        os.killpg(proc.pid, sig)
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    done = subprocess.CompletedProcess(proc.args, proc.returncode, line + out, err)
    return done, took, pids, token


def _assert_nothing_left(pids: set[int], token: str) -> None:
    assert_no_leftovers(token, grace=3)
    assert not _shm_files(pids), f"shared memory left behind: {_shm_files(pids)}"


EXPECTED_STATUS = {
    signal.SIGINT: -signal.SIGINT,  # Python re-raises an unhandled KeyboardInterrupt's signal
    signal.SIGTERM: 128 + signal.SIGTERM,
    signal.SIGHUP: 128 + signal.SIGHUP,
}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP],
                         ids=lambda s: s.name)
@pytest.mark.parametrize("backend", ["thread", "process", "cluster"])
def test_a_signal_ends_a_blocked_driver_cleanly(
    tmp_path: Path, backend: str, sig: signal.Signals
) -> None:
    done, took, pids, token = _run_and_signal(tmp_path, backend, sig)
    detail = f"exit {done.returncode} after {took:.2f} s\nstderr:\n{done.stderr[-4000:]}"
    assert took < EXIT_WITHIN_S, detail
    assert done.returncode == EXPECTED_STATUS[sig], detail
    if sig == signal.SIGINT:
        assert done.stderr.count("Traceback") == 1, detail
        assert done.stderr.rstrip().endswith("KeyboardInterrupt"), detail
    else:
        assert "Traceback" not in done.stderr, detail
    _assert_nothing_left(pids, token)


@pytest.mark.parametrize("backend", ["process", "cluster"])
def test_a_driver_that_catches_ctrl_c_keeps_its_workers(tmp_path: Path, backend: str) -> None:
    """Ctrl-C reaches the workers' (and a private cluster's) process group too; they
    leave it to the driver, which may carry on."""
    done, _, pids, token = _run_and_signal(tmp_path, backend, signal.SIGINT, catch=True)
    detail = f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr[-4000:]}"
    assert done.returncode == 0, detail
    assert "still working: 9" in done.stdout, detail
    assert "Traceback" not in done.stderr, detail
    _assert_nothing_left(pids, token)


def test_signal_handlers_are_installed_by_init_and_restored_by_shutdown() -> None:
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    actorlib.init(backend="thread")
    try:
        assert signal.getsignal(signal.SIGTERM) is session._on_terminating_signal
        assert signal.getsignal(signal.SIGHUP) is session._on_terminating_signal
    finally:
        actorlib.shutdown()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL


def test_a_users_own_signal_handler_is_left_alone() -> None:
    def mine(signum: int, frame: object) -> None:
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        actorlib.init(backend="thread")
        try:
            assert signal.getsignal(signal.SIGTERM) is mine
            assert signal.getsignal(signal.SIGHUP) is session._on_terminating_signal
        finally:
            actorlib.shutdown()
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)


CLOSED_STREAMS_DRIVER = textwrap.dedent("""
    import sys
    import actorlib

    @actorlib.remote
    def square(x):
        print("a line nobody reads", x)
        return x * x

    @actorlib.remote
    class Counter:
        def __init__(self):
            self.n = 0

        def incr(self):
            self.n += 1
            return self.n

    actorlib.init(backend=sys.argv[1], num_cpus=2)
    assert actorlib.get([square.remote(i) for i in range(20)]) == [i * i for i in range(20)]
    counter = Counter.remote()
    assert actorlib.get([counter.incr.remote() for _ in range(5)]) == [1, 2, 3, 4, 5]
    actorlib.shutdown()
    with open(sys.argv[2], "w") as f:
        f.write("done")
""")


@pytest.mark.parametrize("closed", [(0,), (1,), (2,), (0, 1, 2)], ids=lambda c: f"fds{c}")
@pytest.mark.parametrize("backend", ["thread", "process", "cluster"])
def test_a_driver_started_with_standard_streams_closed_works(
    tmp_path: Path, backend: str, closed: tuple[int, ...]
) -> None:
    """``python script.py <&- >&- 2>&-`` (cron, some daemon managers): the next socket
    would take a closed stream's number, and libuv aborts when it closes such an fd."""
    script = tmp_path / "driver.py"
    script.write_text(CLOSED_STREAMS_DRIVER)
    done_file = tmp_path / "done"
    token = uuid.uuid4().hex
    env = _driver_env(token)

    def close_streams() -> None:
        for fd in closed:
            os.close(fd)

    proc = subprocess.Popen(
        [sys.executable, str(script), backend, str(done_file)], env=env, cwd=str(tmp_path),
        preexec_fn=close_streams, process_group=0,
    )
    try:
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert code == 0 and done_file.read_text() == "done", f"exit {code}"
    assert_no_leftovers(token, grace=3)


WAITER = textwrap.dedent("""
    import signal, sys, threading
    from actorlib.backends.cluster.daemons import wait_for_stop

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    elsewhere = threading.Thread(target=threading.Event().wait, daemon=True)
    elsewhere.start()
    threading.Timer(0.2, signal.pthread_kill, (elsewhere.ident, signal.SIGTERM)).start()
    wait_for_stop(stop) if sys.argv[1] == "daemon" else stop.wait()
    print("stopped", flush=True)
""")


@pytest.mark.parametrize("waits", ["daemon", "plain"])
def test_a_daemon_stops_on_a_signal_another_thread_receives(tmp_path: Path, waits: str) -> None:
    """The kernel may hand a SIGTERM to any thread; a daemon's main thread must still
    wake to run its handler. A plain ``Event.wait()`` shows the trap: it sleeps on."""
    script = tmp_path / "waiter.py"
    script.write_text(WAITER)
    proc = subprocess.Popen([sys.executable, str(script), waits], stdout=subprocess.PIPE,
                            text=True)
    try:
        out, _ = proc.communicate(timeout=4)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    if waits == "daemon":
        assert proc.returncode == 0 and out == "stopped\n", (proc.returncode, out)
    else:
        assert proc.returncode == -signal.SIGKILL, (proc.returncode, out)


SLEEPER = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    import actorlib

    actorlib.init(backend=sys.argv[1], num_cpus=2)

    @actorlib.remote
    def square(x):
        return x * x

    @actorlib.remote(num_cpus=0)
    class Counter:
        def __init__(self):
            self.n = 0
        def incr(self):
            self.n += 1
            return self.n

    big = actorlib.put(np.ones(1 << 20))  # a shared-memory file where there are some
    counter = Counter.remote()
    assert actorlib.get([square.remote(i) for i in range(8)]) == [i * i for i in range(8)]
    assert actorlib.get(counter.incr.remote()) == 1
    print("ready", flush=True)
    time.sleep(60)  # the user's own blocking call, not one of actorlib's waits
""")


@pytest.mark.parametrize("backend", ["thread", "process", "cluster"])
def test_a_terminated_stopped_driver_ends_as_a_running_one_would(
    tmp_path: Path, backend: str
) -> None:
    """Ctrl-Z, then ``kill %1``: the shell sends SIGTERM to the stopped job, then
    SIGCONT. The pending SIGTERM is taken by whichever thread runs first; unless it is
    the main thread, asleep in ``time.sleep``, Python would not run the handler until
    the sleep ended. The driver must end at once, as it does when signalled running."""
    script = tmp_path / "sleeper.py"
    script.write_text(SLEEPER)
    for _ in range(4):  # the race went the wrong way about five times in six
        token = uuid.uuid4().hex
        proc = subprocess.Popen(
            [sys.executable, str(script), backend], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=_driver_env(token), cwd=str(tmp_path),
            process_group=0,
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line == "ready\n", line + (proc.stderr.read() if proc.stderr else "")
            pids = _tree(proc.pid)
            os.killpg(proc.pid, signal.SIGSTOP)  # Ctrl-Z (SIGTSTP) stops the job likewise
            time.sleep(1.0)  # a moment at the prompt before `kill %1`
            os.killpg(proc.pid, signal.SIGTERM)
            os.killpg(proc.pid, signal.SIGCONT)
            start = time.monotonic()
            try:
                _, err = proc.communicate(timeout=EXIT_WITHIN_S)
            except subprocess.TimeoutExpired:
                pytest.fail(f"the driver ({backend}) still runs {EXIT_WITHIN_S} s after "
                            "SIGTERM and SIGCONT")
            took = time.monotonic() - start
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        detail = f"exit {proc.returncode} after {took:.2f} s\nstderr:\n{err[-4000:]}"
        assert proc.returncode == 128 + signal.SIGTERM, detail
        assert "Traceback" not in err, detail
        _assert_nothing_left(pids, token)


def test_actorlib_threads_leave_terminating_signals_to_the_main_thread() -> None:
    """What makes the test above pass: every thread of a driver that is actorlib's own
    blocks SIGINT, SIGTERM and SIGHUP while it has nothing of the user's to run, and a
    worker process (started from such a thread) does not inherit the block."""
    def blocked(tid: int, pid: int | None = None) -> int:
        path = f"/proc/{pid or os.getpid()}/task/{tid}/status"
        with open(path) as f:
            mask = next(line for line in f if line.startswith("SigBlk:"))
        return int(mask.split()[1], 16)

    terminating = sum(1 << (s - 1) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP))
    # The threads actorlib starts: not those this process ran before (in a whole test
    # run, the shared Ray connection's, such as Ray's PythonGCThread).
    before = set(threading.enumerate())
    actorlib.init(backend="process", num_cpus=2)
    try:
        @actorlib.remote
        def worker_pid() -> int:
            time.sleep(0.5)  # two at once: the second worker is started by the core's thread
            return os.getpid()

        pids = set(actorlib.get([worker_pid.remote() for _ in range(2)]))
        assert len(pids) == 2
        main_tid = threading.main_thread().native_id
        threads = [t for t in threading.enumerate()
                   if t.native_id != main_tid and t not in before]
        assert threads
        for t in threads:
            assert t.native_id is not None
            assert blocked(t.native_id) & terminating == terminating, t.name
        assert blocked(main_tid) & terminating == 0
        for pid in pids:
            assert blocked(pid, pid) & terminating == 0  # the worker's main thread
    finally:
        actorlib.shutdown()


OTHER_THREAD = textwrap.dedent("""
    import signal, sys, threading, time
    import actorlib

    actorlib.init(backend=sys.argv[1], num_cpus=1)

    @actorlib.remote
    def one():
        return 1

    assert actorlib.get(one.remote()) == 1
    # A thread of a library's (OpenBLAS starts some as numpy is imported), and the main
    # thread made unable to take SIGTERM itself: the library's thread must take it.
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    print("ready", flush=True)
    time.sleep(60)
""")


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_a_signal_a_librarys_thread_takes_after_a_stop_still_ends_the_driver(
    tmp_path: Path, backend: str
) -> None:
    """Ctrl-Z, then ``kill %1``, with the SIGTERM taken by a thread actorlib does not
    own: the main thread, asleep in ``time.sleep``, is woken once the process is
    continued, runs the handler, and the driver ends with SIGTERM's status."""
    script = tmp_path / "other.py"
    script.write_text(OTHER_THREAD)
    token = uuid.uuid4().hex
    proc = subprocess.Popen(
        [sys.executable, str(script), backend], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=_driver_env(token), cwd=str(tmp_path),
        process_group=0,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        os.killpg(proc.pid, signal.SIGSTOP)
        time.sleep(1.0)
        os.killpg(proc.pid, signal.SIGTERM)
        os.killpg(proc.pid, signal.SIGCONT)
        try:
            _, err = proc.communicate(timeout=EXIT_WITHIN_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the driver still runs {EXIT_WITHIN_S} s after SIGTERM and SIGCONT")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 128 + signal.SIGTERM, (proc.returncode, err[-4000:])
    assert_no_leftovers(token, grace=3)


def test_the_relay_leaves_the_wakeup_fd_alone() -> None:
    """trio (and any event loop) needs Python's wakeup fd to itself; SIGURG is given
    back by shutdown()."""
    actorlib.init(backend="thread", num_cpus=1)
    try:
        assert signal.set_wakeup_fd(-1) == -1
        assert signal.getsignal(signal.SIGURG) is not signal.SIG_DFL
    finally:
        actorlib.shutdown()
    assert signal.getsignal(signal.SIGURG) is signal.SIG_DFL
