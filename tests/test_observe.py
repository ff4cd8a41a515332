"""Seeing what runs: ``list_workers``, ``actorlib stack``, ``actorlib.timeline``."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time

import pytest
from testkit import wait_for

import actorlib
from actorlib import debug_cli
from actorlib.util import state

pytestmark = pytest.mark.shared_runtime

T = 60


@actorlib.remote
def sleeps_until(path):
    """Blocked in time.sleep until ``path`` exists; returns the pid that ran it."""
    while not os.path.exists(path):
        time.sleep(0.05)
    return os.getpid()


@actorlib.remote
def quick(x):
    return x * 2


@actorlib.remote
class Host:
    def pid(self) -> int:
        return os.getpid()

    def twice(self, x):
        return x * 2


def _worker_running(name: str) -> dict | None:
    for worker in state.list_workers(detail=True):
        if name in worker["current_task_names"]:
            return worker
    return None


def test_list_workers_shows_what_each_runs(rt, tmp_path):
    host = Host.remote()
    actor_pid = actorlib.get(host.pid.remote(), timeout=T)
    release = tmp_path / "release"
    blocked = sleeps_until.remote(str(release))
    try:
        worker = wait_for(lambda: _worker_running("sleeps_until"), "a worker running the task")
        assert worker["is_alive"] and worker["pid"] > 0
        assert worker["worker_type"] in ("WORKER", "DRIVER")
        assert worker["node_id"] in {n["node_id"] for n in state.list_nodes()}
        task_id = state.list_tasks(filters=[("name", "=", "sleeps_until")])[0]["task_id"]
        assert task_id in worker["current_task_ids"]
        running = state.get_task(task_id)
        assert running["state"] == "RUNNING" and running["worker_pid"] == worker["pid"]

        # The actor's process is a worker too, and its row says which pid hosts it.
        alive = [w for w in state.list_workers() if w["is_alive"]]
        assert actor_pid in {w["pid"] for w in alive}
        actor_id = state.list_actors(filters=[("class_name", "=", "Host")])[0]["actor_id"]
        wait_for(lambda: state.get_actor(actor_id)["pid"] == actor_pid, "the actor's pid")
        assert state.list_workers(filters=[("pid", "=", actor_pid)])
    finally:  # a failure must not leave the task running (a shared Ray cluster keeps it)
        release.write_text("go")
    assert actorlib.get(blocked, timeout=T) == worker["pid"]  # the pid listed ran it
    wait_for(lambda: state.get_task(task_id)["state"] == "FINISHED", "the task to finish")
    assert state.get_task(task_id)["worker_pid"] == worker["pid"]
    wait_for(lambda: _worker_running("sleeps_until") is None, "the worker to be idle")
    del host


def test_a_running_task_or_live_actor_names_its_process_at_first_sight(rt, tmp_path):
    """The first look that shows a task RUNNING or an actor ALIVE names its worker
    process too: a cluster's head knew its nodes' workers as of their last heartbeat (a
    second old), so under load `actorlib list tasks` showed running tasks with no pid."""
    for i in range(5):
        release = tmp_path / f"release-{i}"
        ref = sleeps_until.remote(str(release))
        try:
            rows = wait_for(lambda: state.list_tasks(filters=[
                ("name", "=", "sleeps_until"), ("state", "=", "RUNNING")], detail=True),
                "the task to run")
        finally:
            release.write_text("go")
        assert actorlib.get(ref, timeout=T) == rows[0]["worker_pid"], rows
        host = Host.remote()
        row = wait_for(lambda: [a for a in state.list_actors(filters=[
            ("class_name", "=", "Host"), ("state", "=", "ALIVE")], detail=True)],
            "the actor to be alive")[0]
        assert row["pid"] == actorlib.get(host.pid.remote(), timeout=T), row
        actorlib.kill(host)
        wait_for(lambda: not state.list_actors(filters=[
            ("class_name", "=", "Host"), ("state", "=", "ALIVE")]), "the actor's end")


def test_stack_shows_a_task_blocked_in_time_sleep(rt, tmp_path):
    release = tmp_path / "release"
    blocked = sleeps_until.remote(str(release))
    try:
        worker = wait_for(lambda: _worker_running("sleeps_until"), "the task to run")
        task_id = worker["current_task_ids"][worker["current_task_names"].index("sleeps_until")]
        chosen = debug_cli.targets(state.list_workers(detail=True), task=task_id)
        assert [w["pid"] for w in chosen] == [worker["pid"]]
        # The core lists the task as running once it is handed to its worker, a moment
        # before the worker's thread enters the function: dump until the frame is there.
        def dump() -> tuple[str, int] | None:
            text, failed = debug_cli.stacks_of(chosen)
            return (text, failed) if failed or "in sleeps_until" in text else None

        text, failed = wait_for(dump, "the task's frame in the dump", timeout=T)
        assert failed == 0, text
        assert f"== pid {worker['pid']}" in text and "running sleeps_until" in text
        # faulthandler's frame line for the task: its file, line and function.
        assert "test_observe.py\", line" in text and "in sleeps_until" in text
        # The same, asked of the runtime, which asks where the worker runs.
        text, failed = debug_cli.stacks_of(chosen, state._local_rows)
        assert failed == 0, text
        assert "in sleeps_until" in text

        # The command line, asking the process by pid.
        out = subprocess.run(
            [sys.executable, "-m", "actorlib", "stack", "--pid", str(worker["pid"])],
            capture_output=True, text=True, timeout=T,
        )
        assert out.returncode == 0, out.stderr
        assert "in sleeps_until" in out.stdout
    finally:
        release.write_text("go")
    actorlib.get(blocked, timeout=T)


def test_stack_names_what_it_cannot_find(rt):
    with pytest.raises(LookupError, match="no live worker with a running task"):
        debug_cli.targets(state.list_workers(detail=True), task="00000000deadbeef")
    with pytest.raises(LookupError, match="no live worker with pid"):
        debug_cli.targets(state.list_workers(detail=True), pid=1)


def test_timeline_holds_one_span_per_task(rt, tmp_path):
    assert actorlib.get([quick.remote(i) for i in range(5)], timeout=T) == [0, 2, 4, 6, 8]
    host = Host.remote()
    assert actorlib.get([host.twice.remote(i) for i in range(3)], timeout=T) == [0, 2, 4]
    path = tmp_path / "trace.json"
    assert actorlib.timeline(str(path)) is None
    events = json.loads(path.read_text())
    tasks = [e for e in events if e.get("cat") == "task" and e["name"] == "quick"]
    calls = [e for e in events if e.get("cat") == "actor_task" and e["name"] == "Host.twice"]
    assert len(tasks) == 5 and len(calls) == 3
    for span in tasks + calls:
        assert span["ph"] == "X" and span["dur"] >= 0 and span["pid"] > 0
        assert span["args"]["scheduling_delay_ms"] >= 0
    # Each worker's spans are laid out on lanes that never overlap.
    lanes: dict[tuple[int, int], list[tuple[float, float]]] = {}
    for e in events:
        if e.get("ph") == "X":
            lanes.setdefault((e["pid"], e["tid"]), []).append((e["ts"], e["ts"] + e["dur"]))
    for spans in lanes.values():
        spans.sort()
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))
    names = {e["pid"]: e["args"]["name"] for e in events if e.get("name") == "process_name"}
    assert all(names[span["pid"]].startswith("worker pid=") for span in tasks)
    assert actorlib.timeline() is not None  # without a file: the events
    del host


def test_pending_demand_counts_queued_work_and_says_what_is_infeasible():
    """``actorlib status``'s pending demand: queued work per request shape; work no node
    can ever take (its nodes left) is marked infeasible, with the reason."""
    from actorlib.cluster_cli import demand_lines
    from actorlib.core.scheduler import Scheduler
    from actorlib.core.state import demand_rows

    scheduler = Scheduler()
    scheduler.add_node("a", {"CPU": 2.0})
    scheduler.add_node("b", {"CPU": 8.0, "GPU": 1.0})
    for _ in range(3):
        scheduler.enqueue(object(), {"CPU": 1.0}, "DEFAULT")
    scheduler.enqueue(object(), {"GPU": 1.0}, "DEFAULT")
    scheduler.remove_node("b")
    rows = {tuple(r["resources"]): r for r in demand_rows(scheduler)}
    assert rows[("CPU",)]["count"] == 3 and rows[("CPU",)]["infeasible"] is None
    assert "No node can ever satisfy" in rows[("GPU",)]["infeasible"]
    lines = demand_lines(demand_rows(scheduler))
    assert "3x {CPU: 1}" in lines[1] and "INFEASIBLE" not in lines[1]
    assert "1x {GPU: 1} INFEASIBLE: No node" in lines[2]
    assert demand_lines([]) == ["pending demand: none"]


@pytest.mark.fresh_runtime
@pytest.mark.init_kwargs(num_cpus=1)
def test_queued_tasks_are_pending_demand(rt, tmp_path):
    from actorlib import session

    release = tmp_path / "release"
    first = sleeps_until.remote(str(release))
    # More than a worker holds behind its running task (Backend.pipeline_depth), so
    # some wait in the scheduler whatever the backend.
    rest = [sleeps_until.remote(str(release)) for _ in range(16)]
    try:
        wait_for(lambda: _worker_running("sleeps_until"), "the first task to run")
        demand = wait_for(lambda: session.client().state_rows("demand"), "queued demand")
        assert [(d["resources"], d["infeasible"]) for d in demand] == [({"CPU": 1.0}, None)]
        # A task queued on the busy worker behind the running one (pipelining) waits
        # there, not in the scheduler: each queued task is one or the other.
        behind = state.list_tasks(filters=[("name", "=", "sleeps_until"),
                                           ("state", "=", "SUBMITTED_TO_WORKER")])
        assert demand[0]["count"] + len(behind) == len(rest)
        # Each names the node and worker it waits on, however deep in the chain it is.
        running = state.list_tasks(filters=[("name", "=", "sleeps_until"),
                                            ("state", "=", "RUNNING")])
        assert len(running) == 1
        assert {(t["node_id"], t["worker_pid"]) for t in behind} <= {
            (running[0]["node_id"], running[0]["worker_pid"])}
    finally:
        release.write_text("go")
    actorlib.get([first, *rest], timeout=T)
    assert session.client().state_rows("demand") == []


@actorlib.remote
def chatty(n, tag):
    for i in range(n):
        print(f"{tag} line {i} " + "x" * 40)
    return os.getpid()


def test_a_worker_log_rotates(tmp_path, monkeypatch):
    from actorlib.backends.log_files import worker_log

    monkeypatch.setenv("ACTORLIB_LOG_ROTATE_BYTES", "100")
    monkeypatch.setenv("ACTORLIB_LOG_ROTATE_BACKUP_COUNT", "2")
    log = worker_log(str(tmp_path / "logs"), 42)
    assert log is not None
    for i in range(10):
        log.write(f"line {i} " + "y" * 30 + "\n")
    log.close()
    names = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert names == ["worker-42.log", "worker-42.log.1", "worker-42.log.2"]
    assert all(p.stat().st_size <= 100 for p in (tmp_path / "logs").iterdir())
    assert (tmp_path / "logs" / "worker-42.log").read_text().endswith("line 9 " + "y" * 30 + "\n")
    monkeypatch.setenv("ACTORLIB_LOG_ROTATE_BYTES", "lots")
    with pytest.raises(ValueError, match="ACTORLIB_LOG_ROTATE_BYTES must be an integer"):
        worker_log(str(tmp_path / "logs"), 43)


@pytest.mark.parametrize("backend", ["thread", "process", "sim"])
@pytest.mark.parametrize("to_driver", [True, False])
def test_init_log_dir_keeps_a_rotated_log_per_worker(backend, to_driver, tmp_path,
                                                     monkeypatch, capsys):
    """``init(log_dir=)``: each worker's printed lines, prefixed, in ``worker-<pid>.log``,
    whether or not they also reach the driver; rotated at the configured size."""
    monkeypatch.setenv("ACTORLIB_LOG_ROTATE_BYTES", "2000")
    logs = tmp_path / "logs"
    actorlib.init(backend=backend, num_cpus=2, log_dir=logs, log_to_driver=to_driver)
    try:
        pid = actorlib.get(chatty.remote(60, "hello"), timeout=T)
    finally:
        actorlib.shutdown()
    files = sorted(p.name for p in logs.iterdir())
    assert f"worker-{pid}.log" in files and f"worker-{pid}.log.1" in files, files
    text = "".join(p.read_text() for p in sorted(logs.glob(f"worker-{pid}.log*")))
    assert f"(chatty pid={pid}) hello line 59 " in text
    assert all(p.stat().st_size <= 2000 for p in logs.iterdir())
    captured = capsys.readouterr().out
    assert ("hello line 59" in captured) == to_driver


def test_log_dir_is_refused_for_a_cluster():
    with pytest.raises(ValueError, match="log_dir: the cluster backend's workers keep"):
        actorlib.init(backend="cluster", log_dir="/tmp/nowhere")
    assert not actorlib.is_initialized()


def test_stack_files_of_dead_processes_are_swept(tmp_path):
    from actorlib.backends import stacks

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f"{dead.pid}.txt").write_text("")
    (tmp_path / f"{os.getpid()}.txt").write_text("")
    stacks.sweep(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{os.getpid()}.txt"]


# A process answering `actorlib stack` as a worker does, with three threads and its main
# thread running Python that pushes and pops frames all the time.
_BUSY = """
import sys, threading
from actorlib.backends import stacks
stacks.install()
stacks.enable(stacks.directory(create=True))
def deep(n):
    return 0 if n == 0 else deep(n - 1) + 1
def busy():
    while True:
        for depth in (5, 50, 300, 900):
            deep(depth)
for _ in range(3):
    threading.Thread(target=busy, daemon=True).start()
print("ready", flush=True)
"""


def _answering(script: str, env: dict[str, str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, text=True,
                            stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    return proc


@pytest.mark.slow  # an interpreter of its own
def test_stack_requests_never_crash_a_busy_process(tmp_env):
    """Read from C in the signal handler, without the GIL, every thread's frames were
    read while they changed: Python 3.11 died of SIGSEGV within 0.2 s here (and took a
    CI run's pytest with it). The answer is now written holding the GIL."""
    import signal

    from actorlib.backends import stacks

    proc = _answering(_BUSY + "busy()\n", tmp_env)
    try:
        for _ in range(300):
            os.kill(proc.pid, signal.SIGUSR1)
            time.sleep(0.002)
        time.sleep(0.1)
        assert proc.poll() is None, f"the process died: {proc.returncode}"
        text = stacks.dump(proc.pid, timeout=T)
        # (faulthandler shows 100 frames a thread: a deep one shows ``deep`` alone.)
        assert "in deep" in text, text
        assert "in _answer" not in text, text
    finally:
        proc.kill()
        proc.communicate()


@pytest.mark.slow  # an interpreter of its own
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/PID/stat")
def test_a_process_stuck_in_c_holding_the_gil_shows_its_stacks_when_asked_without_it(tmp_env):
    """Its main thread cannot run the Python-level handler: the dump times out saying
    what to run, and ``--without-gil`` reads the stacks from C (never by itself: a
    process that merely answers late may have threads running Python)."""
    from actorlib.backends import stacks

    stuck = "def stuck_in_c():\n    sum(range(10**11))\nstuck_in_c()\n"
    proc = _answering(_BUSY.replace("range(3)", "range(0)") + stuck, tmp_env)
    try:
        # In the sum once it has run 0.3 s of CPU since "ready" (all it does after it).
        ticks = os.sysconf("SC_CLK_TCK")

        def cpu() -> float:
            with open(f"/proc/{proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / ticks

        ready = cpu()
        wait_for(lambda: cpu() - ready >= 0.3, "the process to be in its C call", timeout=T)
        with pytest.raises(TimeoutError, match=(
                f"main thread did not answer .*`actorlib stack --pid {proc.pid} "
                "--without-gil`")):
            stacks.dump(proc.pid, timeout=1.5)
        out = subprocess.run(
            [sys.executable, "-m", "actorlib", "stack", "--pid", str(proc.pid),
             "--without-gil"], capture_output=True, text=True, timeout=T, env=tmp_env)
        assert out.returncode == 0, out.stderr
        assert "in stuck_in_c" in out.stdout, out.stdout
        assert proc.poll() is None
        refused = subprocess.run(
            [sys.executable, "-m", "actorlib", "stack", "--task", "00000000deadbeef",
             "--without-gil"], capture_output=True, text=True, timeout=T, env=tmp_env)
        assert refused.returncode == 2
        assert "--without-gil needs --pid alone" in refused.stderr
    finally:
        proc.kill()
        proc.communicate()


def test_a_process_that_cannot_answer_stack_requests_is_told_apart(tmp_env, monkeypatch):
    from actorlib.backends import stacks

    monkeypatch.setattr(stacks, "BOOT_WAIT_S", 0.1)  # a worker's boot is not awaited here
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with pytest.raises(LookupError, match=(
                f"pid {proc.pid} does not answer stack requests: not an actorlib process .*"
                "actorlib.init ran off the main thread, or it handles SIGUSR1 or SIGUSR2")):
            stacks.dump(proc.pid)
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.slow  # an interpreter of its own
def test_a_driver_answers_stacks_only_while_initialized_and_never_over_a_handler_of_its_own():
    script = (
        "import signal, actorlib\n"
        "from actorlib.backends import stacks\n"
        "def mine(*_): pass\n"
        "for own in (None, signal.SIGUSR1, signal.SIGUSR2):\n"
        "    if own is not None:\n"
        "        signal.signal(own, mine)\n"
        "    actorlib.init(backend='thread', num_cpus=1)\n"
        "    during = signal.getsignal(signal.SIGUSR1) is stacks._answer\n"
        "    actorlib.shutdown()\n"
        "    after = signal.getsignal(signal.SIGUSR1)\n"
        "    print(during, after is mine or after == signal.SIG_DFL)\n"
        "    if own is not None:\n"
        "        signal.signal(own, signal.SIG_DFL)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=T)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == ["True True", "False True", "False True"]


@pytest.mark.slow  # an interpreter of its own
def test_recording_can_be_switched_off_to_measure_its_cost():
    """``_ACTORLIB_TASK_EVENTS=0`` (for ``actorlib bench`` pairs only): no times, no ended
    tasks remembered; the work itself is the same."""
    script = (
        "import actorlib\n"
        "from actorlib.util import state\n"
        "actorlib.init(backend='thread')\n"
        "f = actorlib.remote(lambda x: x + 1)\n"
        "assert actorlib.get([f.remote(i) for i in range(5)]) == [1, 2, 3, 4, 5]\n"
        "print(len(state.list_tasks(filters=[('state', '=', 'FINISHED')])))\n"
        "actorlib.shutdown()\n"
    )
    counts = {}
    for value in ("1", "0"):
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             timeout=T, env={**os.environ, "_ACTORLIB_TASK_EVENTS": value})
        assert out.returncode == 0, out.stderr
        counts[value] = int(out.stdout.split()[-1])
    assert counts == {"1": 5, "0": 0}


def test_questions_about_workers_are_parsed_or_refused_clearly():
    from actorlib.core.state import MAX_LOG_TAIL, worker_query

    assert worker_query("tasks") is None  # a plain kind
    assert worker_query("stack:42") == ("stack", 42, 0)
    assert worker_query("logs") == ("logs", 0, 0)
    assert worker_query(f"log:42:{MAX_LOG_TAIL}") == ("log", 42, MAX_LOG_TAIL)
    for bad in ("stack:", "stack:x", "stack:0", "logs:3", "log:42", "log:42:0",
                f"log:42:{MAX_LOG_TAIL + 1}", "log:-1:10", "stack:../../etc"):
        with pytest.raises(ValueError, match="stack:PID, logs or log:PID:BYTES"):
            worker_query(bad)
