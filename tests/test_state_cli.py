"""``actorlib list``, ``summary`` and ``get`` against a real cluster head and its work."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cli import cli
from test_observe import chatty
from test_state_api import Counter, broken, ok
from testkit import Gate, held, wait_for

import actorlib
from actorlib import exceptions as exc
from actorlib import session
from actorlib.backends import state_socket
from actorlib.backends.cluster.sessions import checked_root
from actorlib.util import state

T = 60


@pytest.fixture
def cluster_with_work(tmp_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """A head with a local node, and this process a driver with a running task on it."""
    out = cli(tmp_env, "start", "--head", "--port", "0", "--num-cpus", "2")
    assert out.returncode == 0, out.stderr
    try:
        actorlib.init(address="auto")
        try:
            wait_for(lambda: actorlib.cluster_resources().get("CPU") == 2, "the node")
            gate = Gate.remote()
            running = held.remote(gate)
            assert actorlib.get(ok.remote(1), timeout=T) == 2
            with pytest.raises(exc.TaskError):
                actorlib.get(broken.remote(), timeout=T)
            counter = Counter.remote()
            assert actorlib.get(counter.incr.remote(), timeout=T) == 1
            wait_for(lambda: state.list_tasks(filters=[("name", "=", "Gate.wait")]),
                      "the held task's call")
            yield tmp_env
            actorlib.get(gate.open.remote(), timeout=T)
            actorlib.get(running, timeout=T)
        finally:
            actorlib.shutdown()
    finally:
        stopped = cli(tmp_env, "stop")
        assert stopped.returncode == 0, stopped.stderr


def _json(env: dict[str, str], *args: str):
    out = cli(env, *args, "--format", "json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_list_summary_get(cluster_with_work: dict[str, str]) -> None:
    env = cluster_with_work
    tasks = {t["name"]: t for t in _json(env, "list", "tasks", "--address", "auto")}
    assert tasks["held"]["state"] == "RUNNING"
    assert tasks["ok"]["state"] == "FINISHED"
    assert tasks["broken"]["state"] == "FAILED"
    running = _json(env, "list", "tasks", "--filter", "state=RUNNING")
    assert {t["name"] for t in running} >= {"held", "Gate.wait"}
    assert all(t["state"] == "RUNNING" for t in running)
    assert len(_json(env, "list", "tasks", "--limit", "1")) == 1
    not_done = _json(env, "list", "tasks", "--filter", "state!=FINISHED")
    assert "ok" not in {t["name"] for t in not_done}

    actors = {a["class_name"]: a for a in _json(env, "list", "actors")}
    assert actors["Counter"]["state"] == "ALIVE"
    got = _json(env, "get", "actor", actors["Counter"]["actor_id"])
    assert got["class_name"] == "Counter" and got["num_restarts"] == 0
    assert _json(env, "get", "task", tasks["ok"]["task_id"])["state"] == "FINISHED"

    summary = _json(env, "summary", "tasks")["cluster"]["summary"]
    assert summary["broken"]["state_counts"] == {"FAILED": 1}
    nodes = _json(env, "list", "nodes")
    assert len(nodes) == 1 and nodes[0]["resources_total"]["CPU"] == 2

    table = cli(env, "list", "actors")
    assert table.returncode == 0, table.stderr
    header, *lines = table.stdout.splitlines()
    assert header.split()[:3] == ["ACTOR_ID", "CLASS_NAME", "STATE"]
    assert any(line.split()[1:3] == ["Counter", "ALIVE"] for line in lines)
    summary_table = cli(env, "summary", "actors")
    assert summary_table.returncode == 0 and "Gate" in summary_table.stdout


def test_jobs_metrics_and_rays_spelling_of_placement_groups(
    cluster_with_work: dict[str, str],
) -> None:
    """Every driver of the cluster is a job (one that left: SUCCEEDED); metrics recorded
    by another driver's tasks are the cluster's; ``placement-groups`` as Ray spells it."""
    env = cluster_with_work
    script = ("import actorlib\n"
              "from actorlib.util.metrics import Counter\n"
              "@actorlib.remote\n"
              "def work():\n"
              "    Counter('cli_jobs_done', 'tasks done').inc()\n"
              "actorlib.init(address='auto')\n"
              "actorlib.get([work.remote() for _ in range(4)])\n"
              "actorlib.shutdown()\n")
    other = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                           text=True, timeout=T)
    assert other.returncode == 0, other.stderr
    mine = actorlib.get_runtime_context().get_job_id()

    def jobs() -> dict[str, str] | None:
        rows = _json(env, "list", "jobs", "--detail")
        found = {row["job_id"]: row["status"] for row in rows}
        return found if len(found) == 2 and "SUCCEEDED" in found.values() else None

    found = wait_for(jobs, "the other driver's job to end")
    assert found[mine] == "RUNNING"
    assert all(row["type"] == "DRIVER" for row in _json(env, "list", "jobs"))
    assert {r["job_id"] for r in state.list_jobs()} == set(found)
    metrics = wait_for(lambda: [m for m in _json(env, "list", "metrics")
                                if m["name"] == "cli_jobs_done" and m["value"] == 4],
                       "the other driver's counter")
    assert metrics[0]["type"] == "COUNTER"
    group = actorlib.util.placement_group([{"CPU": 1}], name="cli-group")
    try:
        rows = _json(env, "list", "placement-groups")
        assert [r["name"] for r in rows] == ["cli-group"]
    finally:
        actorlib.util.remove_placement_group(group)


def test_bad_input_and_missing_ids(cluster_with_work: dict[str, str]) -> None:
    env = cluster_with_work
    out = cli(env, "list", "tasks", "--filter", "colour=red")
    assert out.returncode == 2 and "unknown key 'colour'" in out.stderr
    out = cli(env, "list", "tasks", "--filter", "nonsense")
    assert out.returncode == 2 and "KEY=VALUE" in out.stderr
    out = cli(env, "get", "task", "00000000deadbeef")
    assert out.returncode == 1 and "no task with id" in out.stderr


def test_no_head_is_one_line(tmp_env: dict[str, str]) -> None:
    out = cli(tmp_env, "list", "nodes")
    assert out.returncode == 1
    assert "actorlib list:" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("backend", ["thread", "process", "cluster"])
def test_a_local_driver_answers_from_another_process(
    tmp_env: dict[str, str], backend: str,
) -> None:
    """A second terminal looks at a script running its own core (no cluster), or its
    own private cluster (``init(backend="cluster")``, which no session names)."""
    actorlib.init(backend=backend, num_cpus=2)
    try:
        gate = Gate.remote()
        running = held.remote(gate)
        assert actorlib.get(ok.remote(1), timeout=T) == 2
        wait_for(lambda: state.list_tasks(filters=[("name", "=", "Gate.wait")]), "the call")
        by_pid = _json(tmp_env, "list", "tasks", "--pid", str(os.getpid()))
        assert {t["name"]: t["state"] for t in by_pid}["held"] == "RUNNING"
        newest = _json(tmp_env, "list", "tasks", "--filter", "name=ok")  # no cluster: local
        assert [t["state"] for t in newest] == ["FINISHED"]
        assert _json(tmp_env, "summary", "actors")["cluster"]["summary"]["Gate"][
            "state_counts"] == {"ALIVE": 1}
        out = cli(tmp_env, "list", "tasks", "--filter", "colour=red")
        assert out.returncode == 2 and "unknown key 'colour'" in out.stderr
        out = cli(tmp_env, "list", "tasks", "--pid", "1")
        assert out.returncode == 1 and f"running: {os.getpid()}" in out.stderr
        # The Python API in a process with no runtime of its own asks the same driver.
        code = ("import json; from actorlib.util.state import list_tasks; "
                "print(json.dumps(list_tasks(filters=[('name', '=', 'held')])))")
        other = subprocess.run([sys.executable, "-c", code], env=tmp_env,
                               capture_output=True, text=True, timeout=T)
        assert other.returncode == 0, other.stderr
        assert [t["state"] for t in json.loads(other.stdout)] == ["RUNNING"]
        path = state_socket.driver_socket(os.getpid())
        assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
        with socket.socket(socket.AF_UNIX) as conn:  # not JSON: an answer, never a crash
            conn.connect(path)
            conn.sendall(b"\x80\x04not json\n")
            assert "error" in json.loads(state_socket.read_line(conn, limit=None))
        with pytest.raises(ValueError, match="unknown state kind"):
            state_socket.query(path, "colours")
        # `actorlib status` next to the script: the same summary a head gives.
        for args in (("status", "--pid", str(os.getpid())), ("status",)):
            out = cli(tmp_env, *args)
            assert out.returncode == 0, out.stderr
            lines = out.stdout.splitlines()
            assert lines[0].startswith(f"local driver pid {os.getpid()}: 1 node(s)")
            assert "RUNNING 2" in next(line for line in lines if "tasks by state" in line)
            assert "ALIVE 1" in next(line for line in lines if "actors by state" in line)
            assert "pending demand: none" in out.stdout
            # held waits in get(), lending its CPU: nothing holds one
            assert "resources CPU 0/2, memory " in out.stdout
            assert "running tasks 1, actors 1" in out.stdout
        status = json.loads(cli(tmp_env, "status", "--json").stdout)
        assert status["driver_pid"] == os.getpid() and status["spilled_bytes"] == 0
        actorlib.get(gate.open.remote(), timeout=T)
        assert actorlib.get(running, timeout=T) == "opened"
    finally:
        actorlib.shutdown()
    out = cli(tmp_env, "list", "tasks")
    assert out.returncode == 1 and "no local actorlib driver" in out.stderr
    out = cli(tmp_env, "status")
    assert out.returncode == 1 and "no actorlib cluster" in out.stderr
    assert not list(Path(tmp_env["TMPDIR"]).glob("**/state.sock"))


def test_status_counts_states_and_speaks_in_bytes(cluster_with_work: dict[str, str]) -> None:
    out = cli(cluster_with_work, "status")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    tasks = next(line for line in lines if "tasks by state:" in line)
    assert "FAILED 1" in tasks and "RUNNING 2" in tasks  # held and its call on the gate
    actors = next(line for line in lines if "actors by state:" in line)
    assert "ALIVE 2" in actors
    resources = next(line for line in lines if line.strip().startswith("resources"))
    assert "CPU " in resources and "e+" not in resources
    assert "memory " in resources and "GiB used" in resources
    assert any(line.strip().startswith("pending demand") for line in lines)
    assert any("objects spilled to disk: 0 B" in line for line in lines)
    auto = cli(cluster_with_work, "status", "--address", "auto")  # as `list` takes it
    assert auto.returncode == 0, auto.stderr
    assert auto.stdout.splitlines()[0] == lines[0]
    store = next(line for line in lines if "object store" in line)
    assert "/" in store.split("object store", 1)[1]  # used of capacity
    info = _json_status(cluster_with_work)
    assert info["tasks_by_state"]["FINISHED"] >= 1
    assert info["demand"] == [] and info["spilled_bytes"] == 0


def test_cluster_workers_keep_log_files(cluster_with_work: dict[str, str]) -> None:
    """Each node's worker keeps its printed lines in the session's logs/worker-<pid>.log."""
    from actorlib.backends.cluster import sessions as cluster

    pid = actorlib.get(chatty.remote(3, "logged"), timeout=T)
    session = cluster.latest_session()
    assert session is not None
    path = Path(session) / "logs" / f"worker-{pid}.log"
    wait_for(lambda: path.exists() and "logged line 2" in path.read_text(), "the log")
    assert f"(chatty pid={pid}, node=" in path.read_text()


    def listed() -> bool:  # as of the node's next heartbeat (each second)
        out = cli(cluster_with_work, "list", "workers", "--format", "json")
        assert out.returncode == 0, out.stderr
        return pid in {w["pid"] for w in json.loads(out.stdout)}

    wait_for(listed, "the worker in `actorlib list workers`")


def test_stack_and_timeline_from_the_command_line(
    cluster_with_work: dict[str, str], tmp_path: Path,
) -> None:
    env = cluster_with_work
    held_id = state.list_tasks(filters=[("name", "=", "held")])[0]["task_id"]
    # The held task waits in get() for its call on the gate: its worker's stack says where.
    wait_for(lambda: any(held_id in w["current_task_ids"]
                          for w in state.list_workers(detail=True)), "its worker's heartbeat")
    out = cli(env, "stack", "--task", held_id)
    assert out.returncode == 0, out.stderr
    assert "running held" in out.stdout and "in held" in out.stdout
    out = cli(env, "stack", "--task", "00000000deadbeef")
    assert out.returncode == 2 and "no live worker with a running task" in out.stderr

    trace = tmp_path / "trace.json"
    out = cli(env, "timeline", "-o", str(trace))
    assert out.returncode == 0, out.stderr
    assert "task spans" in out.stdout
    events = json.loads(trace.read_text())
    assert [e["args"]["state"] for e in events if e.get("name") == "ok"] == ["FINISHED"]
    assert [e["args"]["state"] for e in events if e.get("name") == "held"] == ["RUNNING"]


def _json_status(env: dict[str, str]) -> dict:
    out = cli(env, "status", "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_human_bytes() -> None:
    from actorlib.cluster_cli import human_bytes, resource_usage

    assert human_bytes(512) == "512 B"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(1.59977e10) == "14.9 GiB"
    assert human_bytes(3 * 2**50) == "3072.0 TiB"
    assert resource_usage({"CPU": 4.0, "memory": 2.0**33}, {"CPU": 3.0, "memory": 2.0**32}) == (
        "CPU 1/4, memory 4.0 GiB/8.0 GiB used"
    )


def test_a_killed_drivers_state_directory_is_removed_by_the_next_driver(
    tmp_env: dict[str, str],
) -> None:
    """A driver killed before its shutdown leaves ``driver-<pid>/``; the next ``init``
    clears it (and keeps a live driver's)."""
    code = ("import os, actorlib; actorlib.init(backend='thread'); "
            "print(os.getpid(), flush=True); os._exit(0)")
    done = subprocess.run([sys.executable, "-c", code], env=tmp_env, capture_output=True,
                          text=True, timeout=T)
    assert done.returncode == 0, done.stderr
    dead = int(done.stdout.split()[0])
    root = checked_root()
    assert root is not None
    left = os.path.join(root, f"{state_socket.DIR_PREFIX}{dead}")
    assert os.path.isdir(left), "the killed driver left nothing to clear: the test is void"
    actorlib.init(backend="thread")
    try:
        assert not os.path.exists(left)
        assert [pid for pid, _ in state_socket.local_drivers()] == [os.getpid()]
    finally:
        actorlib.shutdown()


_DRIVER = ("import time, actorlib; actorlib.init(backend='thread'); "
           "print('ready', flush=True); time.sleep(120)")


@contextlib.contextmanager
def _driver(env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """A script on the thread backend, idle in ``time.sleep``, killed afterwards."""
    proc = subprocess.Popen([sys.executable, "-c", _DRIVER], env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        yield proc
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_a_stopped_driver_is_named_within_the_timeout(tmp_env: dict[str, str]) -> None:
    """A driver frozen by Ctrl-Z or SIGSTOP still accepts connections (the kernel queues
    them) but never answers: each command gives up after ``--timeout`` saying which driver
    and why, and answers again once the driver is continued."""
    with _driver(tmp_env) as proc:
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            for args in (("list", "tasks"), ("summary", "tasks"), ("status",), ("stack",),
                         ("timeline", "-o", os.devnull)):
                start = time.monotonic()
                out = cli(tmp_env, *args, "--timeout", "1")
                assert time.monotonic() - start < 15, args
                assert out.returncode == 1, (args, out.stderr)
                assert (f"the local driver pid {proc.pid} did not answer within 1 s: it is "
                        "stopped") in out.stderr, (args, out.stderr)
                assert "Traceback" not in out.stderr
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        out = cli(tmp_env, "list", "jobs", "--format", "json")
        assert out.returncode == 0, out.stderr
        assert [job["status"] for job in json.loads(out.stdout)] == ["RUNNING"]
    out = cli(tmp_env, "list", "tasks", "--timeout", "0")
    assert out.returncode == 2 and "expected a positive number of seconds" in out.stderr


def test_a_stale_socket_whose_pid_was_reused_is_passed_over(tmp_env: dict[str, str]) -> None:
    """A driver killed before its shutdown leaves its socket; when another process gets
    its pid, the directory looks alive, but nothing listens there: the commands pass it
    over for the driver that does listen (even though the stale one is newer)."""
    with _driver(tmp_env) as proc:
        other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        try:
            root = checked_root()
            assert root is not None
            stale = os.path.join(root, f"{state_socket.DIR_PREFIX}{other.pid}")
            os.mkdir(stale, 0o700)
            with socket.socket(socket.AF_UNIX) as bound:  # bound, never listening
                bound.bind(os.path.join(stale, state_socket.SOCKET_NAME))
            assert next(pid for pid, _ in state_socket.local_drivers()) == other.pid
            out = cli(tmp_env, "list", "jobs", "--format", "json")
            assert out.returncode == 0, out.stderr
            assert json.loads(out.stdout)[0]["status"] == "RUNNING"
            out = cli(tmp_env, "status")
            assert out.returncode == 0, out.stderr
            assert out.stdout.startswith(f"local driver pid {proc.pid}:")
            out = cli(tmp_env, "list", "tasks", "--pid", str(other.pid))
            assert out.returncode == 1
            assert f"no local actorlib driver with pid {other.pid} (running: {proc.pid})" \
                in out.stderr
        finally:
            other.kill()
            other.wait()


def test_a_driver_gone_or_going_is_said_in_one_line(tmp_env: dict[str, str]) -> None:
    """Between finding a driver's socket and asking it, the driver may exit: the
    question ends with one line saying so, not a raw ``Connection refused``."""
    with _driver(tmp_env) as proc:
        path = state_socket.driver_socket(proc.pid)
        proc.send_signal(signal.SIGSTOP)
        with socket.socket(socket.AF_UNIX) as squatter:  # what a dead driver leaves
            os.unlink(path)
            squatter.bind(path)
            with pytest.raises(ConnectionError, match=f"the local driver pid {proc.pid} "
                               "has shut down or exited"):
                state_socket.query(path, "tasks", 1)
        os.unlink(path)
        with pytest.raises(ConnectionError, match="has shut down or exited"):
            state_socket.query(path, "tasks", 1)
        proc.send_signal(signal.SIGCONT)


def test_a_question_closed_unanswered_is_asked_once_more(tmp_path: Path) -> None:
    """A connection a driver closes without an answer is asked once more (a read, so
    safe to repeat): a live driver answers then; one that closes every time is said to
    be shutting down, in one line."""
    path = str(tmp_path / state_socket.SOCKET_NAME)
    seen: list[bytes] = []

    def serve(listener: socket.socket, answers: list[bytes | None]) -> None:
        for answer in answers:
            conn, _ = listener.accept()
            with conn:
                seen.append(state_socket.read_line(conn))
                if answer is not None:
                    conn.sendall(answer)

    for answers, expected in (([None, b'{"rows": [{"n": 1}]}\n'], [{"n": 1}]),
                              ([None, None], None)):
        seen.clear()
        with socket.socket(socket.AF_UNIX) as listener:
            listener.bind(path)
            listener.listen(2)
            server = threading.Thread(target=serve, args=(listener, answers))
            server.start()
            try:
                if expected is not None:
                    assert state_socket.query(path, "tasks", 5) == expected
                else:
                    with pytest.raises(ConnectionError, match="closed the connection "
                                       "without answering"):
                        state_socket.query(path, "tasks", 5)
            finally:
                server.join(10)
            os.unlink(path)
        assert seen == [b'{"kind": "tasks"}'] * 2


def test_stack_names_a_stopped_worker_and_shows_the_others(tmp_env: dict[str, str]) -> None:
    """A worker frozen by SIGSTOP cannot write its stacks: its section says so and the
    other workers' stacks still print (the driver answers the question with an error
    rather than dropping the connection)."""
    actorlib.init(backend="process", num_cpus=2)
    try:
        gate = Gate.remote()
        running = held.remote(gate)
        wait_for(lambda: state.list_tasks(filters=[("name", "=", "Gate.wait")]), "the call")
        worker = next(w for w in state.list_workers(detail=True)
                      if "held" in w["current_task_names"])
        os.kill(worker["pid"], signal.SIGSTOP)
        try:
            out = cli(tmp_env, "stack")
        finally:
            os.kill(worker["pid"], signal.SIGCONT)
        assert out.returncode == 0, out.stderr
        assert f"pid {worker['pid']} wrote no stacks within" in out.stdout
        assert "in wait" in out.stdout  # the Gate's worker, in Gate.wait
        actorlib.get(gate.open.remote(), timeout=T)
        assert actorlib.get(running, timeout=T) == "opened"
    finally:
        actorlib.shutdown()


def test_with_several_drivers_the_command_says_which_it_asks(tmp_env: dict[str, str]) -> None:
    """Two scripts at once: a command without ``--pid`` asks the newest and says so on
    stderr, naming the others and the flag that picks one; ``--pid`` asks that one."""
    with _driver(tmp_env) as first, _driver(tmp_env) as second:
        note = (f"actorlib: 2 local drivers are running; asking pid {second.pid}, the "
                f"newest (others: {first.pid}; pick one with")
        for args, flag in ((("list", "jobs"), "--pid"), (("status",), "--pid"),
                           (("summary", "tasks"), "--pid"), (("stack",), "--driver")):
            out = cli(tmp_env, *args)
            assert out.returncode == 0, out.stderr
            assert f"{note} {flag} PID)" in out.stderr, (args, out.stderr)
        out = cli(tmp_env, "status", "--pid", str(first.pid))
        assert out.returncode == 0 and out.stderr == "", out.stderr
        assert out.stdout.startswith(f"local driver pid {first.pid}:")
        out = cli(tmp_env, "stack", "--driver", str(first.pid))
        assert out.returncode == 0 and out.stderr == "", out.stderr
        assert out.stdout.startswith(f"== pid {first.pid}, driver")


def test_a_stopped_head_is_given_up_on_within_the_timeout(tmp_env: dict[str, str]) -> None:
    """A head frozen by SIGSTOP accepts the connection but never answers the handshake:
    the command gives up after ``--timeout`` (not a fixed 10 s) and says the head may be
    stopped or busy, not only that it may not be an actorlib cluster."""
    out = cli(tmp_env, "start", "--head", "--port", "0", "--num-cpus", "0")
    assert out.returncode == 0, out.stderr
    try:
        _stopped_head(tmp_env)
    finally:
        stopped = cli(tmp_env, "stop")
        assert stopped.returncode == 0, stopped.stderr


def _stopped_head(head: dict[str, str]) -> None:
    pid_file = next(Path(head["TMPDIR"]).glob("**/session_*/head.pid"))
    pid = int(pid_file.read_text())
    os.kill(pid, signal.SIGSTOP)
    try:
        for args in (("status",), ("list", "nodes"), ("stack",)):
            start = time.monotonic()
            out = cli(head, *args, "--timeout", "1")
            assert time.monotonic() - start < 8, args
            assert out.returncode == 1, (args, out.stderr)
            assert "within 1 s (is it an actorlib cluster, and running: not stopped or " \
                "too busy to answer?" in out.stderr, (args, out.stderr)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert cli(head, "list", "nodes").returncode == 0


def test_a_head_killed_with_sigkill_does_not_hide_a_local_driver(
    tmp_env: dict[str, str],
) -> None:
    """A head and node killed with SIGKILL leave their session (``session_latest``); the
    commands then ask the local driver that does run, rather than the dead head."""
    out = cli(tmp_env, "start", "--head", "--port", "0", "--num-cpus", "1")
    assert out.returncode == 0, out.stderr
    try:
        pid_files = list(Path(tmp_env["TMPDIR"]).glob("**/session_2*/*.pid"))
        assert {p.name for p in pid_files} == {"head.pid", "node.pid"}
        for pid_file in pid_files:
            daemon = int(pid_file.read_text())
            os.kill(daemon, signal.SIGKILL)
            wait_for(lambda daemon=daemon: not Path(f"/proc/{daemon}").exists()  # type: ignore[misc]
                     or "Z" in Path(f"/proc/{daemon}/stat").read_text().split()[2],
                     "the daemon's end")
        with _driver(tmp_env) as proc:
            # and a pid file naming a process that is no daemon (the pid was reused)
            next(p for p in pid_files if p.name == "node.pid").write_text(f"{proc.pid}\n")
            out = cli(tmp_env, "status")
            assert out.returncode == 0, out.stderr
            assert out.stdout.startswith(f"local driver pid {proc.pid}:")
            out = cli(tmp_env, "list", "jobs", "--format", "json")
            assert out.returncode == 0, out.stderr
            assert json.loads(out.stdout)[0]["status"] == "RUNNING"
        out = cli(tmp_env, "list", "tasks", "--address", "auto")  # the dead head, named
        assert out.returncode == 1
        assert "the cluster last started on this machine is gone" in out.stderr, out.stderr
        for args in (("status",), ("list", "tasks")):  # and where they looked
            out = cli(tmp_env, *args)
            assert out.returncode == 1, out.stderr
            assert ("no actorlib cluster" in out.stderr
                    or "no local actorlib driver is running" in out.stderr), out.stderr
            assert f"under {checked_root()}; a " in out.stderr
            assert "started with another TMPDIR or XDG_RUNTIME_DIR keeps its" in out.stderr
    finally:
        stopped = cli(tmp_env, "stop")
        assert stopped.returncode == 0, stopped.stderr


def test_status_reports_a_drivers_error_answer_in_one_line(
    tmp_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A driver that answers with an error (its runtime closing, say): one line, no
    traceback."""
    def closing(kind: str) -> list[dict[str, str]]:
        raise RuntimeError("closing")

    actorlib.init(backend="thread")
    try:
        path = state_socket.driver_socket(os.getpid())
        monkeypatch.setattr(session._state_server, "_rows", closing)
        out = cli(tmp_env, "status")
        assert out.returncode == 1, out.stdout
        assert out.stderr == ("actorlib status: error: the driver could not answer "
                              "(RuntimeError: closing)\n"), out.stderr
        with pytest.raises(ValueError, match="could not answer"):
            state_socket.query(path, "tasks")
    finally:
        actorlib.shutdown()


@pytest.mark.parametrize("backend", ["process", "cluster"])
def test_a_driver_holding_the_gil_is_named_and_shows_its_stacks(
    tmp_env: dict[str, str], backend: str,
) -> None:
    """A driver stuck in a long C call holding the GIL cannot answer; the command says
    so and points to ``actorlib stack --pid --without-gil``, which shows the driver's own
    stacks (the dump is written from C) whatever the backend, not only where the driver
    runs tasks; without it the dump times out naming that flag."""
    code = (f"import actorlib; actorlib.init(backend={backend!r}, num_cpus=1); "
            "print('ready', flush=True); sum(range(10**12))")
    proc = subprocess.Popen([sys.executable, "-c", code], env=tmp_env,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        out = cli(tmp_env, "list", "tasks", "--timeout", "1")
        assert out.returncode == 1
        assert "did not answer within 1 s" in out.stderr, out.stderr
        assert (f"`actorlib stack --pid {proc.pid}` shows where it is (add --without-gil "
                "if it holds the GIL)") in out.stderr
        out = cli(tmp_env, "stack", "--pid", str(proc.pid))
        assert out.returncode == 1, out.stdout
        assert f"`actorlib stack --pid {proc.pid} --without-gil`" in out.stdout, out.stdout
        out = cli(tmp_env, "stack", "--pid", str(proc.pid), "--without-gil")
        assert out.returncode == 0, out.stdout
        assert 'File "<string>", line 1 in <module>' in out.stdout, out.stdout
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_ctrl_c_while_waiting_for_a_stopped_driver_is_one_line(
    tmp_env: dict[str, str],
) -> None:
    """The user gives up on a frozen driver before the timeout: Ctrl-C ends the command
    with status 130 and one line, not a traceback."""
    with _driver(tmp_env) as proc:
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            waiting = subprocess.Popen(
                [sys.executable, "-m", "actorlib", "list", "tasks", "--timeout", "60"],
                env=tmp_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            def connected() -> bool:  # imported, connected, waiting for the answer
                links = []
                for fd in Path(f"/proc/{waiting.pid}/fd").iterdir():
                    with contextlib.suppress(OSError):  # closed meanwhile
                        links.append(os.readlink(fd))
                return any(link.startswith("socket:") for link in links)

            wait_for(connected, "the command's connection")
            time.sleep(0.2)
            waiting.send_signal(signal.SIGINT)
            _, err = waiting.communicate(timeout=T)
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        assert waiting.returncode == 130, err
        assert err == "actorlib: interrupted\n", err


def test_a_peer_that_sends_nothing_holds_up_neither_others_nor_shutdown(
    tmp_env: dict[str, str],
) -> None:
    """A command stopped right after connecting (Ctrl-Z) sends nothing: the driver drops
    it after a second, so other commands get their answer within their timeout. One
    stopped before reading a long answer leaves the driver blocked sending it: the
    driver's shutdown cuts it at once instead of waiting for it."""
    actorlib.init(backend="thread")
    try:
        actorlib.get([ok.remote(i) for i in range(4000)], timeout=T)
        path = state_socket.driver_socket(os.getpid())
        with socket.socket(socket.AF_UNIX) as idle:
            idle.connect(path)
            start = time.monotonic()
            out = cli(tmp_env, "list", "jobs", "--timeout", "5")
            assert out.returncode == 0, out.stderr
            assert time.monotonic() - start < 5
        with socket.socket(socket.AF_UNIX) as reads_nothing:
            reads_nothing.connect(path)
            reads_nothing.sendall(b'{"kind": "tasks"}\n')  # rows beyond the socket's buffer
            time.sleep(1.0)  # the driver is sending them
            start = time.monotonic()
            actorlib.shutdown()
            assert time.monotonic() - start < 5
    finally:
        actorlib.shutdown()
