"""What tasks and actors print and log reaches the driver, prefixed (issue 15, section 1)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from testkit import wait_for

import actorlib
from actorlib.job_config import JobConfig
from actorlib.runtime_env import RuntimeEnv

#: Backends whose tasks run on threads of the driver's own process.
IN_PROCESS = ("thread", "sim")
PREFIX = r"\((?P<name>\w+) pid=(?P<pid>\d+)(?:, node=(?P<node>\w+))?\) "


def _lines_with(text: str, marker: str) -> list[str]:
    return [line for line in text.splitlines() if marker in line]


def _check_prefix(line: str, name: str, backend: str) -> None:
    """The line is prefixed with ``name`` and the pid (and node) of what wrote it.

    On the thread backend a task writes to whatever ``sys.stdout`` is *now*: prefixed by
    the stream actorlib put there at ``init``, unless something replaced that stream
    since (pytest's capsys re-installs its own at each test phase, as ``redirect_stdout``
    does); then the line arrives bare (see test_thread_backend_prefixes_...).
    """
    match = re.match(PREFIX, line)
    if backend in IN_PROCESS and match is None:
        assert not line.startswith("("), line
        return
    assert match is not None, f"no prefix on {line!r}"
    assert match["name"] == name, line
    if backend in IN_PROCESS:
        assert int(match["pid"]) == os.getpid(), line  # tasks are threads of the driver
    else:
        assert int(match["pid"]) != os.getpid(), line
    assert (match["node"] is not None) == (backend == "cluster"), line


@actorlib.remote
def square(x: int) -> int:
    print(f"square says {x}")
    return x * x


@actorlib.remote
def complain(x: int) -> int:
    print(f"complaint {x}", file=sys.stderr)
    return x


@actorlib.remote
class Counter:
    def __init__(self) -> None:
        self.n = 0

    def incr(self) -> int:
        self.n += 1
        print(f"counter at {self.n}")
        return self.n


def test_a_print_in_a_task_reaches_the_driver_stdout_with_its_prefix(
    capsys: pytest.CaptureFixture[str], rt: Any, backend_name: str
) -> None:
    assert actorlib.get([square.remote(i) for i in range(3)]) == [0, 1, 4]
    print("the driver's own line")
    out = capsys.readouterr().out
    lines = _lines_with(out, "square says")
    assert sorted(line.rpartition(" ")[2] for line in lines) == ["0", "1", "2"], out
    for line in lines:
        _check_prefix(line, "square", backend_name)
    assert "the driver's own line\n" in out.splitlines(keepends=True), out


def test_an_actor_prints_with_its_class_name(
    capsys: pytest.CaptureFixture[str], rt: Any, backend_name: str
) -> None:
    counter = Counter.remote()
    assert actorlib.get([counter.incr.remote() for _ in range(2)]) == [1, 2]
    lines = _lines_with(capsys.readouterr().out, "counter at")
    assert [line.rpartition(" ")[2] for line in lines] == ["1", "2"]
    for line in lines:
        _check_prefix(line, "Counter", backend_name)


def test_stderr_reaches_the_driver_stderr(
    capsys: pytest.CaptureFixture[str], rt: Any, backend_name: str
) -> None:
    assert actorlib.get(complain.remote(7)) == 7
    captured = capsys.readouterr()
    assert "complaint 7" not in captured.out
    (line,) = _lines_with(captured.err, "complaint 7")
    _check_prefix(line, "complain", backend_name)


def test_redirect_stdout_in_the_driver_captures_task_output(rt: Any, backend_name: str) -> None:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert actorlib.get(square.remote(5)) == 25
    (line,) = _lines_with(buffer.getvalue(), "square says 5")
    _check_prefix(line, "square", backend_name)


@contextlib.contextmanager
def running(backend: str, **kwargs: Any) -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """A runtime started and stopped while the driver's streams are StringIOs.

    Unlike capsys (which re-installs its streams at each test phase), the driver's
    streams stay the same from ``init`` to ``shutdown``, as in a script or a notebook.
    """
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        actorlib.init(backend=backend, num_cpus=4, **kwargs)
        try:
            yield out, err
        finally:
            actorlib.shutdown()


def test_log_to_driver_false_keeps_task_output_out_of_the_driver_streams(
    backend_name: str,
) -> None:
    with running(backend_name, log_to_driver=False) as (out, err):
        assert actorlib.get([square.remote(11), complain.remote(12)]) == [121, 12]
        counter = Counter.remote()
        assert actorlib.get(counter.incr.remote()) == 1
        print("the driver still prints")
    assert out.getvalue() == "the driver still prints\n"
    for marker in ("square says 11", "complaint 12", "counter at 1"):
        assert marker not in err.getvalue()


@actorlib.remote
def chatter(i: int, lines: int) -> int:
    for j in range(lines):
        # A line in pieces: another task's line must never land inside it.
        sys.stdout.write(f"chatter {i} ")
        sys.stdout.write(f"line {j} ")
        print("x" * 40, "end")
    return i


def test_many_lines_from_many_tasks_arrive_whole(backend_name: str) -> None:
    tasks, lines = 8, 150
    with running(backend_name) as (stdout, _):
        assert actorlib.get([chatter.remote(i, lines) for i in range(tasks)]) == list(range(tasks))
    out = stdout.getvalue()
    seen = set()
    pattern = re.compile(PREFIX + r"chatter (\d+) line (\d+) x{40} end$")
    for line in _lines_with(out, "chatter"):
        match = pattern.match(line)
        assert match is not None, f"a broken line: {line!r}"
        assert match["name"] == "chatter"
        seen.add((int(match[4]), int(match[5])))
    assert seen == {(i, j) for i in range(tasks) for j in range(lines)}


@actorlib.remote
def logs(x: int) -> int:
    log = logging.getLogger("tasklog")
    log.debug("not shown %d", x)
    log.info("info record %d", x)
    log.warning("warning record %d", x)
    return x


def test_logging_in_a_task_appears_in_the_driver_with_its_level(backend_name: str) -> None:
    root = logging.getLogger()
    old_level = root.level
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        handler = logging.StreamHandler()  # the driver's basicConfig: on its sys.stderr
        handler.setFormatter(logging.Formatter("LOG %(levelname)s %(name)s| %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            actorlib.init(backend=backend_name, num_cpus=2)
            try:
                assert actorlib.get(logs.remote(3)) == 3
            finally:
                actorlib.shutdown()
        finally:
            root.removeHandler(handler)
            root.setLevel(old_level)
    text = err.getvalue()
    assert "not shown" not in text
    info, warning = _lines_with(text, "record 3")
    if backend_name in IN_PROCESS:  # the driver's own handler, writing where it was told to
        assert info == "LOG INFO tasklog| info record 3"
        assert warning == "LOG WARNING tasklog| warning record 3"
    else:
        _check_prefix(info, "logs", backend_name)
        _check_prefix(warning, "logs", backend_name)
        assert info.endswith(") LOG INFO tasklog| info record 3")
        assert warning.endswith(") LOG WARNING tasklog| warning record 3")


@actorlib.remote
def env_var(name: str) -> str | None:
    return os.environ.get(name)


@actorlib.remote
def hook_state() -> tuple[int, str | None]:
    return os.getpid(), os.environ.get("ACTORLIB_TEST_HOOK_RAN")


def _hook_given(given: str, hook: Any) -> dict[str, Any]:
    """``init()``'s arguments that give ``hook``: as actorlib's argument, or as Ray gives
    it, in the job's runtime_env (a dict, a ``RuntimeEnv``, a ``JobConfig``'s)."""
    if given == "argument":
        return {"worker_process_setup_hook": hook}
    if given == "runtime_env":
        return {"runtime_env": {"worker_process_setup_hook": hook, "env_vars": {"K": "v"}}}
    if given == "RuntimeEnv":
        return {"runtime_env": RuntimeEnv(worker_process_setup_hook=hook, env_vars={"K": "v"})}
    assert given == "JobConfig"
    return {"job_config": JobConfig(runtime_env={"worker_process_setup_hook": hook,
                                                 "env_vars": {"K": "v"}})}


@pytest.mark.parametrize("given", ["argument", "runtime_env", "RuntimeEnv", "JobConfig"])
@pytest.mark.parametrize("backend", ["thread", "process", "cluster"])
def test_the_setup_hook_runs_once_per_worker_before_its_first_task(
    backend: str, given: str, tmp_path: Any
) -> None:
    record = tmp_path / "hook.txt"

    def hook() -> None:
        with open(record, "a") as f:
            f.write(f"{os.getpid()}\n")
        os.environ["ACTORLIB_TEST_HOOK_RAN"] = "yes"

    actorlib.init(backend=backend, num_cpus=2, **_hook_given(given, hook))
    if given != "argument":  # the rest of that runtime_env is the job's, as before
        try:
            assert actorlib.get(env_var.remote("K")) == "v"
        except BaseException:
            actorlib.shutdown()
            raise
    try:
        results = actorlib.get([hook_state.remote() for _ in range(20)])
        counter = Counter.remote()
        actor_pid = actorlib.get(counter.incr.remote())
        assert actor_pid == 1
    finally:
        actorlib.shutdown()
        os.environ.pop("ACTORLIB_TEST_HOOK_RAN", None)
    assert all(ran == "yes" for _, ran in results), results
    pids = [int(line) for line in record.read_text().split()]
    assert len(pids) == len(set(pids)), f"the hook ran twice in one process: {pids}"
    assert {pid for pid, _ in results} <= set(pids)
    if backend == "thread":
        assert pids == [os.getpid()]
    else:
        assert os.getpid() not in pids


def _failing_hook() -> None:
    raise RuntimeError("the hook broke")


@actorlib.remote(max_retries=0)
def never_runs() -> int:
    return 1


@pytest.mark.parametrize("backend", ["process", "cluster"])
def test_a_failing_setup_hook_ends_its_worker_and_says_why(backend: str) -> None:
    """The worker exits before running anything (its task fails as crashed), and the
    driver's stderr shows the hook's traceback."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        actorlib.init(backend=backend, num_cpus=1, worker_process_setup_hook=_failing_hook)
        try:
            with pytest.raises(actorlib.exceptions.WorkerCrashedError):
                actorlib.get(never_runs.remote(), timeout=60)
        finally:
            actorlib.shutdown()
    text = err.getvalue()
    assert "worker_process_setup_hook failed; the worker exits" in text
    assert "RuntimeError: the hook broke" in text


@pytest.mark.parametrize("given", ["argument", "runtime_env"])
def test_a_setup_hook_that_cannot_be_pickled_fails_at_init(given: str) -> None:
    with pytest.raises(TypeError, match="worker_process_setup_hook"):
        actorlib.init(backend="process", **_hook_given(given, 42))
    assert not actorlib.is_initialized()


def test_a_setup_hook_is_the_jobs_not_a_tasks() -> None:
    """Ray takes the hook in the job's runtime_env only: a task's or an actor's is
    refused at once, saying where it goes; two different hooks at init are refused."""
    with pytest.raises(ValueError, match=r"applies to a whole job.*init\(runtime_env="):
        hook_state.options(runtime_env={"worker_process_setup_hook": _failing_hook})
    with pytest.raises(ValueError, match="applies to a whole job"):
        Counter.options(runtime_env=RuntimeEnv(worker_process_setup_hook=_failing_hook))
    with pytest.raises(ValueError, match=r"module\.function"):
        RuntimeEnv(worker_process_setup_hook="nodot")
    with pytest.raises(ValueError, match="two different worker_process_setup_hooks"):
        actorlib.init(backend="thread", worker_process_setup_hook=_failing_hook,
                      runtime_env={"worker_process_setup_hook": "os.getcwd"})
    assert not actorlib.is_initialized()


@actorlib.remote
def write_to_fds() -> int:
    import subprocess

    os.write(1, b"raw fd line\n")
    subprocess.run([sys.executable, "-c", "print('from a child process')"], check=True)
    return 1


@pytest.mark.parametrize("backend", ["process", "cluster"])
def test_output_written_to_file_descriptors_reaches_the_driver(
    backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    actorlib.init(backend=backend, num_cpus=1)
    try:
        assert actorlib.get(write_to_fds.remote()) == 1
        out = ""
        deadline = time.monotonic() + 10  # read by a thread: not ordered with the result
        while time.monotonic() < deadline:
            out += capsys.readouterr().out
            if "raw fd line" in out and "from a child process" in out:
                break
            time.sleep(0.02)
    finally:
        actorlib.shutdown()
    for marker in ("raw fd line", "from a child process"):
        (line,) = _lines_with(out, marker)
        _check_prefix(line, "write_to_fds", backend)


def test_the_thread_backend_puts_the_driver_streams_back_at_shutdown() -> None:
    from actorlib.backends.output import PrefixingStream

    before = sys.stdout, sys.stderr
    actorlib.init(backend="thread", num_cpus=1)
    try:
        assert isinstance(sys.stdout, PrefixingStream)
        assert isinstance(sys.stderr, PrefixingStream)
    finally:
        actorlib.shutdown()
    assert (sys.stdout, sys.stderr) == before


def test_thread_backend_prefixes_task_lines_on_the_stream_it_wraps() -> None:
    """While ``sys.stdout`` stays what it was at ``init`` (a terminal, a notebook's
    stream), the thread backend prefixes the lines of tasks and actors, not the driver's."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        actorlib.init(backend="thread", num_cpus=2)
        try:
            assert actorlib.get([square.remote(2), complain.remote(3)]) == [4, 3]
            counter = Counter.remote()
            assert actorlib.get(counter.incr.remote()) == 1
            print("driver line")
        finally:
            actorlib.shutdown()
    (line,) = _lines_with(out.getvalue(), "square says 2")
    assert line == f"(square pid={os.getpid()}) square says 2"
    (line,) = _lines_with(out.getvalue(), "counter at 1")
    assert line == f"(Counter pid={os.getpid()}) counter at 1"
    (line,) = _lines_with(err.getvalue(), "complaint 3")
    assert line == f"(complain pid={os.getpid()}) complaint 3"
    assert "driver line" in out.getvalue().splitlines()


# -- process titles ------------------------------------------------------------------------


def _title(pid: int | None = None) -> str:
    import psutil

    cmdline = psutil.Process(pid).cmdline()
    return cmdline[0] if cmdline else ""


@actorlib.remote
def titled_until(started: str, release: str) -> int:
    with open(started + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(started + ".tmp", started)
    while not os.path.exists(release):
        time.sleep(0.01)
    return os.getpid()


@actorlib.remote
def quick_pid() -> int:
    return os.getpid()


@actorlib.remote
class Titled:
    def own_title(self) -> tuple[int, str]:
        return os.getpid(), _title()


def _title_becomes(pid: int, title: str) -> None:
    """``ps`` shows ``title`` for ``pid`` within a few seconds (a worker's title follows
    its tasks at its main thread's looks, at least every second)."""
    deadline = time.monotonic() + 10
    while _title(pid) != title:
        assert time.monotonic() < deadline, (pid, _title(pid), title)
        time.sleep(0.01)


def test_every_process_actorlib_starts_says_what_it_is(
    rt: Any, backend_name: str, tmp_path: Any,
) -> None:
    """``ps`` shows actorlib::worker, actorlib::<ActorClass>, actorlib::head/node; a task
    worker names the task it runs, and is plain ``actorlib::worker`` again once idle,
    after a burst of short tasks too."""
    import psutil

    started, release = tmp_path / "started", tmp_path / "release"
    ref = titled_until.remote(str(started), str(release))
    wait_for(started.exists, "the task to start")
    task_pid = int(started.read_text())
    if backend_name not in IN_PROCESS:
        _title_becomes(task_pid, "actorlib::worker titled_until")
    release.touch()
    assert actorlib.get(ref, timeout=60) == task_pid
    burst = set(actorlib.get([quick_pid.remote() for _ in range(300)], timeout=60))
    if backend_name not in IN_PROCESS:  # before an actor takes one of these workers
        for pid in {task_pid} | burst:
            _title_becomes(pid, "actorlib::worker")
    actor = Titled.remote()
    actor_pid, actor_title = actorlib.get(actor.own_title.remote())
    children = psutil.Process().children(recursive=True)
    if backend_name in IN_PROCESS:  # threads of this process: no process of ours to name
        assert task_pid == actor_pid == os.getpid() and burst == {task_pid}
        assert not children
        return
    assert actor_title == "actorlib::Titled"
    titles = {_title(c.pid) for c in children}
    assert all(t.startswith("actorlib::") for t in titles), titles
    if backend_name == "cluster":  # a private cluster: its head and node are ours
        assert {"actorlib::head", "actorlib::node"} <= titles
    assert "actorlib::Titled" in titles
    del actor


# -- init(logging_config=): Ray's LoggingConfig ------------------------------------------


@actorlib.remote
def logs_for_config() -> int:
    logging.getLogger("cfgtask").debug("debug line, below the level")
    logging.getLogger("cfgtask").info("task line")
    return 1


@actorlib.remote
class LogsForConfig:
    def log(self) -> int:
        logging.getLogger("cfgactor").warning("actor line", extra={"user_key": 7})
        return 2


def _json_records(text: str) -> dict[str, dict[str, Any]]:
    """The JSON records in ``text`` by message (a worker's lines carry the prefix)."""
    import json

    out = {}
    for line in text.splitlines():
        start = line.find("{")
        if start >= 0:
            record = json.loads(line[start:])
            out[record["message"]] = record
    return out


def test_a_logging_config_lays_out_every_process_s_lines_with_where_they_came_from(
    backend_name: str,
) -> None:
    """``init(logging_config=LoggingConfig(encoding="JSON"))``: the driver's, a task's and
    an actor's records are JSON lines at the config's level, each saying which job,
    worker, node, task and actor wrote it, as Ray's; the driver's logging is as before
    once ``shutdown()`` has run."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    err = io.StringIO()
    config = actorlib.LoggingConfig(
        encoding="JSON", log_level="info", additional_log_standard_attrs=["name"]
    )
    with contextlib.redirect_stderr(err):
        actorlib.init(backend=backend_name, num_cpus=2, logging_config=config)
        try:
            logging.getLogger("cfgdriver").info("driver line")
            actor = LogsForConfig.options(name="logger").remote()
            assert actorlib.get([logs_for_config.remote(), actor.log.remote()]) == [1, 2]
        finally:
            actorlib.shutdown()
    assert root.handlers == handlers and root.level == level
    records = _json_records(err.getvalue())
    assert "debug line, below the level" not in err.getvalue()
    driver, task, call = records["driver line"], records["task line"], records["actor line"]
    assert driver["name"] == "cfgdriver" and driver["levelname"] == "INFO"
    assert "task_id" not in driver and driver["job_id"] == task["job_id"]
    assert task["name"] == "cfgtask" and task["task_name"] == "logs_for_config"
    assert task["task_func_name"].endswith("test_output.logs_for_config")
    assert task["filename"] == "test_output.py" and task["node_id"]
    assert call["task_name"] == "LogsForConfig.log" and call["actor_name"] == "logger"
    assert call["user_key"] == 7 and call["levelname"] == "WARNING"
    assert call["actor_id"] and call["task_id"] != task["task_id"]
    if backend_name not in IN_PROCESS:  # a worker process of its own
        assert task["process"] != os.getpid() and task["worker_id"] != driver["worker_id"]


def test_a_text_logging_config_adds_the_fields_after_the_usual_line() -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        actorlib.init(backend="thread", logging_config=actorlib.LoggingConfig())
        try:
            assert actorlib.get(logs_for_config.remote()) == 1
        finally:
            actorlib.shutdown()
    (line,) = _lines_with(err.getvalue(), "task line")
    assert re.search(r"\tINFO test_output\.py:\d+ -- task line job_id=\w+ ", line), line
    assert "task_name=logs_for_config" in line and "name=" not in line.split("task_name")[0]


def test_a_bad_logging_config_is_refused_before_anything_starts() -> None:
    with pytest.raises(ValueError, match="Invalid encoding type: XML"):
        actorlib.LoggingConfig(encoding="XML")
    with pytest.raises(ValueError, match="Unknown python logging standard attribute: nme"):
        actorlib.LoggingConfig(additional_log_standard_attrs=["nme"])
    with pytest.raises(ValueError, match="Unknown log level"):
        actorlib.LoggingConfig(log_level="LOUD")
    with pytest.raises(TypeError, match="expected a LoggingConfig"):
        actorlib.init(backend="thread", logging_config={"encoding": "JSON"})
    assert not actorlib.is_initialized()
    config = actorlib.LoggingConfig(encoding="JSON", additional_log_standard_attrs=["name"])
    assert actorlib.LoggingConfig.from_dict({**config.to_dict(), "later": 1}) == config


def test_an_init_that_fails_after_starting_leaves_the_driver_s_logging_as_it_was() -> None:
    """The dashboard's port is taken: ``init`` fails after the runtime (and the logging
    config) started, and takes both back."""
    import socket

    pytest.importorskip("aiohttp", reason="the dashboard needs the dashboard extra")
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError, match="cannot listen"):
            actorlib.init(backend="thread", dashboard=True,
                          dashboard_port=taken.getsockname()[1],
                          logging_config=actorlib.LoggingConfig(log_level="DEBUG"))
    assert not actorlib.is_initialized()
    assert root.handlers == handlers and root.level == level


def test_a_level_name_the_program_registered_reaches_workers_as_its_number() -> None:
    """Workers know only Python's own level names: a name the driver registered travels
    as its number, so their logging (and their setup hook after it) still applies."""
    logging.addLevelName(25, "NOTICE")
    config = actorlib.LoggingConfig(log_level="notice")
    assert config.to_dict()["log_level"] == 25
    assert actorlib.LoggingConfig(log_level="warning").to_dict()["log_level"] == "WARNING"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        actorlib.init(backend="process", num_cpus=1, logging_config=config)
        try:
            assert actorlib.get(logs.remote(4)) == 4
        finally:
            actorlib.shutdown()
    text = err.getvalue()
    assert "could not be applied" not in text and "Unknown level" not in text, text
    (line,) = _lines_with(text, "warning record 4")
    assert "info record 4" not in text and "task_name=logs" in line
