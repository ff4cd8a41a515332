"""User code that does process-level things inside tasks and actors.

A task or actor that forks, calls ``init()``/``shutdown()`` itself, or leaves children
running when the driver shuts down must get a clear answer, never corrupt the results of
its worker, wedge the driver or slow its ``shutdown()``.
"""

from __future__ import annotations

import os
import sys
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
from testkit import T, run_script

import actorlib

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork")


def _fork(child_ends: str) -> tuple[str, int | None]:
    """Fork; the child leaves the function as ``child_ends`` says, the parent waits for
    it (10 s at most) and gives its exit status (None: still running)."""
    with warnings.catch_warnings():  # 3.12+: fork in a process with threads
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        if child_ends == "exit":
            sys.exit(3)
        if child_ends == "raise":
            raise ValueError("raised in the forked child")
        return "child", os.getpid()  # ``return``: out of the task, into the worker's code
    return "parent", _exit_code_within(pid, 10)


def _exit_code_within(pid: int, seconds: float) -> int | None:
    """The forked child's exit code, or None if it had not exited within ``seconds``
    (then it is killed)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return None


@actorlib.remote(max_retries=0)
def fork_in_task(child_ends: str) -> tuple[str, int | None]:
    return _fork(child_ends)


@actorlib.remote
def square(x: int) -> int:
    return x * x


@actorlib.remote(num_cpus=0)
class Forker:
    def fork(self, child_ends: str) -> tuple[str, int | None]:
        return _fork(child_ends)

    async def fork_async(self, child_ends: str) -> tuple[str, int | None]:
        return _fork(child_ends)

    def ping(self) -> str:
        return "pong"


@pytest.mark.parametrize("child_ends,status", [("return", 0), ("exit", 3), ("raise", 1)])
def test_a_child_forked_in_a_task_that_leaves_it_ends_there(
    rt: Any, child_ends: str, status: int
) -> None:
    """The child (``os.fork()`` with no exec) coming back out of the task or method exits
    at once, with ``sys.exit``'s status (1 after an exception), as ``multiprocessing``'s
    forked children do: it never reports an outcome of its own (the caller gets the
    parent's) nor serves its worker's messages beside it."""
    assert actorlib.get(fork_in_task.remote(child_ends), timeout=T) == ("parent", status)
    forker = Forker.remote()
    assert actorlib.get(forker.fork.remote(child_ends), timeout=T) == ("parent", status)
    assert actorlib.get(forker.fork_async.remote(child_ends), timeout=T) == ("parent", status)
    assert actorlib.get([forker.ping.remote() for _ in range(5)], timeout=T) == ["pong"] * 5
    assert actorlib.get([square.remote(i) for i in range(20)], timeout=T) == [
        i * i for i in range(20)
    ]


@actorlib.remote(max_retries=0)
def fork_and_use_actorlib() -> tuple[str, int | None]:
    """The child calls actorlib: 7 if that raised RuntimeError at once, 8 otherwise."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        try:
            actorlib.get(square.remote(2), timeout=5)
        except RuntimeError:
            os._exit(7)
        except BaseException:
            os._exit(8)
        os._exit(9)
    return "parent", _exit_code_within(pid, 15)


def test_actorlib_in_a_process_forked_by_a_task_raises_at_once(rt: Any) -> None:
    """A forked child has neither the core's threads nor the worker's connection: its
    actorlib calls raise ``RuntimeError`` saying so (they waited forever)."""
    assert actorlib.get(fork_and_use_actorlib.remote(), timeout=T) == ("parent", 7)
    assert actorlib.get(square.remote(5), timeout=T) == 25


@actorlib.remote
def nested_init(ignore: bool) -> str:
    info = actorlib.init(ignore_reinit_error=ignore)
    handle = actorlib.get_actor("driver-named")  # the driver's runtime, not a new one
    return f"{info.namespace} {actorlib.get(handle.ping.remote(), timeout=T)}"


@actorlib.remote
def nested_shutdown() -> None:
    actorlib.shutdown()


@actorlib.remote(num_cpus=0)
class Nested:
    def init(self) -> None:
        actorlib.init()

    def shutdown(self) -> None:
        actorlib.shutdown()

    def ping(self) -> str:
        return "pong"


def test_init_inside_a_task_is_already_initialized(rt: Any) -> None:
    """A task or actor already runs in a runtime: ``init()`` there raises (as in the
    driver after ``init()``), ``init(ignore_reinit_error=True)`` goes on with that runtime.
    Never a runtime of the worker's own, where its nested work would go instead."""
    named = Nested.options(name="driver-named").remote()
    with pytest.raises(RuntimeError, match="already initialized"):
        actorlib.get(nested_init.remote(False), timeout=T)
    with pytest.raises(RuntimeError, match="already initialized"):
        actorlib.get(named.init.remote(), timeout=T)
    assert actorlib.get(nested_init.remote(True), timeout=T) == "default pong"
    actorlib.kill(named)


def test_shutdown_inside_a_task_or_actor_is_refused(rt: Any) -> None:
    """The runtime is the driver's: ``shutdown()`` in a task or actor raises at once (it
    neither stops the driver's runtime nor waits for its own thread), and the runtime
    goes on serving."""
    actor = Nested.remote()
    with pytest.raises(RuntimeError, match="inside a task or an actor"):
        actorlib.get(nested_shutdown.remote(), timeout=T)
    with pytest.raises(RuntimeError, match="inside a task or an actor"):
        actorlib.get(actor.shutdown.remote(), timeout=T)
    assert actorlib.get(actor.ping.remote(), timeout=T) == "pong"
    assert actorlib.get(square.remote(3), timeout=T) == 9


CHILDREN_LEFT = textwrap.dedent("""
    import os, signal, subprocess, sys, time
    import actorlib

    @actorlib.remote
    def leave_children():
        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        return [sleeper.pid, pid]

    @actorlib.remote(num_cpus=0)
    class Leaver:
        def leave(self):
            return leave_children._function()

    actorlib.init(num_cpus=2)
    pids = actorlib.get(leave_children.remote())
    pids += actorlib.get(Leaver.remote().leave.remote())
    start = time.monotonic()
    actorlib.shutdown()
    took = time.monotonic() - start
    for pid in pids:  # the user's children: theirs to end
        os.kill(pid, signal.SIGKILL)
    print(f"shutdown took {took:.2f}")
""")


def test_shutdown_is_prompt_when_tasks_left_children_running(
    tmp_path: Path, backend_name: str
) -> None:
    """Children a task or an actor started and left running (a subprocess, a forked
    process) inherit its standard streams and, forked, its connection: the worker's
    exit must not wait for them to close those (it took 2-5 s per worker)."""
    script = tmp_path / "children_left.py"
    script.write_text(CHILDREN_LEFT)
    out = run_script(str(script), backend_name, timeout=T * 2).stdout
    took = float(out.split("shutdown took ")[1].split()[0])
    assert took < 1.5, out


UNHANDLED_AT_SHUTDOWN = textwrap.dedent("""
    import time
    import actorlib

    @actorlib.remote(max_retries=0)
    def spin():
        start = time.monotonic()
        while time.monotonic() - start < 30:
            time.sleep(0.02)

    actorlib.init(num_cpus=2)
    spin.remote()  # its ref dropped at once
    time.sleep(1.0)
    actorlib.shutdown()
    print("done")
""")


def test_shutdown_reports_no_unhandled_error_for_the_work_it_ends(
    tmp_path: Path, backend_name: str
) -> None:
    """A task still running at ``shutdown()`` whose ref was dropped is ended by the
    shutdown: no "Unhandled error ... worker died" report for it on stderr."""
    script = tmp_path / "unhandled.py"
    script.write_text(UNHANDLED_AT_SHUTDOWN)
    proc = run_script(str(script), backend_name, timeout=T * 2)
    assert "done" in proc.stdout
    assert "Unhandled error" not in proc.stderr, proc.stderr


@actorlib.remote(max_retries=0)
def exits(code: int) -> None:
    sys.exit(code)


@actorlib.remote
def opens_nothing() -> None:
    open("/nonexistent-dir-of-actorlib-tests/file")  # noqa: SIM115 - it raises


@actorlib.remote(num_cpus=0)
class Exits:
    def exit(self, code: int) -> None:
        sys.exit(code)


def test_sys_exit_in_a_task_fails_it_with_its_code(rt: Any) -> None:
    """``sys.exit(3)`` in a task or method fails that work, the worker goes on; ``get``
    raises an error that is also a ``SystemExit`` with ``code`` 3, as
    ``ProcessPoolExecutor``'s ``result()`` does: one nobody catches ends the driver with
    status 3 (with ``code`` None, as before, it ended a driver with status 0). The fields
    of the other builtin errors come along too (``errno``, ``filename``)."""
    actor = Exits.remote()
    for ref in (exits.remote(3), actor.exit.remote(3)):
        with pytest.raises(SystemExit) as got:
            actorlib.get(ref, timeout=T)
        assert got.value.code == 3
        assert isinstance(got.value, actorlib.exceptions.TaskError)
    with pytest.raises(FileNotFoundError) as missing:
        actorlib.get(opens_nothing.remote(), timeout=T)
    assert missing.value.errno == 2
    assert missing.value.filename == "/nonexistent-dir-of-actorlib-tests/file"
    assert actorlib.get(square.remote(4), timeout=T) == 16


EXECS = textwrap.dedent("""
    import os, sys, time
    import actorlib

    @actorlib.remote(max_retries=0)
    def execs():
        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(60)"])

    actorlib.init(num_cpus=2)
    start = time.monotonic()
    try:
        actorlib.get(execs.remote(), timeout=30)
    except actorlib.exceptions.WorkerCrashedError as exc:
        print(f"failed after {time.monotonic() - start:.1f} s:", exc)
    actorlib.shutdown()
""")


@pytest.mark.parametrize("backend", ["process", "cluster"])  # elsewhere: exec'ing the driver
def test_a_task_that_execs_another_program_fails_its_worker_at_once(
    tmp_path: Path, backend: str
) -> None:
    """``os.execv`` in a task replaces its worker with another program: the worker's
    socket is not left to it (so the driver sees it go), and a worker that hung up but
    lives on is killed, so the task fails in seconds rather than when that program ends
    (its ``get`` waited for it, for good with a server)."""
    script = tmp_path / "execs.py"
    script.write_text(EXECS)
    out = run_script(str(script), backend, timeout=T * 2).stdout
    assert "failed after" in out and "closed its connection without exiting" in out, out
    assert float(out.split("failed after ")[1].split()[0]) < 10, out


@actorlib.remote(max_retries=0)
def forked_title() -> str:
    """The command line ``ps`` shows for a child this task forks."""
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        with open("/proc/self/cmdline", "rb") as f:
            os.write(write_end, f.read().replace(b"\0", b" "))
        os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as f:
        return f.read().decode()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/cmdline")
def test_a_process_forked_by_a_task_is_not_titled_as_actorlib(rt: Any) -> None:
    """It is the user's: titled ``actorlib::worker`` it looked like a worker left behind
    to ``ps`` and to checks for ``actorlib::`` processes."""
    assert not actorlib.get(forked_title.remote(), timeout=T).startswith("actorlib::")


@actorlib.remote
def child_signal_mask() -> int:
    """The blocked-signal mask of a process a task starts (grep reading its own; not a
    shell, which would unblock everything first)."""
    import subprocess

    out = subprocess.run(["grep", "SigBlk", "/proc/self/status"], capture_output=True,
                         text=True, check=True).stdout
    return int(out.split()[1], 16)


@actorlib.remote
class MaskActor:
    def mask(self) -> int:
        return actorlib.get(child_signal_mask.remote())

    def own(self) -> int:
        import subprocess

        out = subprocess.run(["grep", "SigBlk", "/proc/self/status"],
                             capture_output=True, text=True, check=True).stdout
        return int(out.split()[1], 16)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/status")
def test_processes_user_code_starts_can_be_terminated(rt: Any) -> None:
    """actorlib's threads block SIGINT/SIGTERM/SIGHUP while idle (so a signal sent to a
    stopped driver reaches its main thread); user code never runs with them blocked, or
    a process it starts would inherit the block and ignore ``terminate()``."""
    import signal

    terminating = sum(1 << (s - 1) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP))
    actor = MaskActor.remote()
    for _ in range(2):  # the second time on threads that have waited idle, shielded
        assert actorlib.get(child_signal_mask.remote(), timeout=T) & terminating == 0
        assert actorlib.get(actor.own.remote(), timeout=T) & terminating == 0
        assert actorlib.get(actor.mask.remote(), timeout=T) & terminating == 0
        time.sleep(0.3)
