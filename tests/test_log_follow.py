"""``get_log(..., follow=True)``: a worker's log followed as it grows.

The following itself (``actorlib.util.log_follow``) is checked against a real log file
read the way every runtime reads one (``worker_files.tail``), so growth, a line written in
two parts, a burst larger than one look asks for, rotation and the worker's exit are each
exercised exactly; then ``get_log`` follows a live actor's output end to end.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_cli import cli
from testkit import wait_for

import actorlib
from actorlib.backends import worker_files
from actorlib.core.state import MAX_LOG_TAIL
from actorlib.util import log_follow, state

T = 60
PID = 4242


class LogFile:
    """A worker's log file in ``tmp_path``, and the runtime's answer about it."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = str(tmp_path)
        self.path = tmp_path / f"worker-{PID}.log"
        self.path.write_bytes(b"")
        self.alive = True
        self.questions: list[str] = []

    def append(self, text: str) -> None:
        with open(self.path, "ab") as f:
            f.write(text.encode())

    def fetch(self, kind: str) -> list[dict[str, Any]]:
        self.questions.append(kind)
        _, pid, size = kind.split(":")
        return [worker_files.tail(int(pid), int(size), None, self.dir)]

    def follow(self, tail: int) -> Any:
        return log_follow.follow(self.fetch, PID, tail, MAX_LOG_TAIL, lambda: self.alive,
                                 poll_s=0)


def test_follow_yields_the_tail_then_each_new_line(tmp_path: Path) -> None:
    log = LogFile(tmp_path)
    log.append("".join(f"line {i}\n" for i in range(5)))
    lines = log.follow(tail=2)
    assert [next(lines), next(lines)] == ["line 3", "line 4"]
    log.append("six\nsev")  # the second line is not whole yet: held back
    assert next(lines) == "six"
    log.append("en\n")
    assert next(lines) == "seven"


def test_follow_keeps_up_with_a_burst_larger_than_one_look(tmp_path: Path) -> None:
    log = LogFile(tmp_path)
    log.append("start\n")
    lines = log.follow(tail=10)
    assert next(lines) == "start"
    burst = [f"burst line {i:06d} " + "x" * 80 for i in range(2000)]  # ~200 KB > SLACK
    assert len("\n".join(burst)) > log_follow.SLACK
    log.append("".join(line + "\n" for line in burst))
    assert list(itertools.islice(lines, len(burst))) == burst


def test_follow_starts_a_rotated_file_from_its_beginning(tmp_path: Path) -> None:
    log = LogFile(tmp_path)
    log.append("old one\nold two\n")
    lines = log.follow(tail=-1)
    assert [next(lines), next(lines)] == ["old one", "old two"]
    log.path.write_bytes(b"new\n")  # rotated: a fresh, shorter file
    assert next(lines) == "new"


def test_follow_ends_after_the_worker_exits_with_its_last_words(tmp_path: Path) -> None:
    log = LogFile(tmp_path)
    log.append("hello\n")
    lines = log.follow(tail=5)
    assert next(lines) == "hello"
    log.append("bye")  # no newline: it exited mid-line
    log.alive = False
    assert list(lines) == ["bye"]


@actorlib.remote
class Talker:
    def say(self, text: str) -> str:
        print(text, flush=True)
        return actorlib.get_runtime_context().get_actor_id()


def _logged(actor_id: str) -> list[str] | None:
    """The actor's last log line once its process and log are known (events may lag)."""
    try:
        return list(state.get_log(actor_id=actor_id, tail=1)) or None
    except LookupError:
        return None


def _following(talker: Any, first: str) -> Any:
    """``get_log(follow=True)`` of ``talker``'s worker, once it has said ``first``."""
    actor_id = actorlib.get(talker.say.remote(first), timeout=T)
    wait_for(lambda: _logged(actor_id), "the actor's log")
    lines = state.get_log(actor_id=actor_id, follow=True, tail=1)
    assert next(lines).endswith(first)
    return lines


@pytest.mark.parametrize("backend", ["thread", "process", "cluster"])
def test_get_log_follows_an_actor(backend: str, tmp_path: Path) -> None:
    options: dict[str, Any] = {} if backend == "cluster" else {"log_dir": str(tmp_path)}
    actorlib.init(backend=backend, num_cpus=2, log_to_driver=False, **options)
    try:
        talker = Talker.remote()
        lines = _following(talker, "first")
        actorlib.get([talker.say.remote("second"), talker.say.remote("third")], timeout=T)
        assert [next(lines)[-6:], next(lines)[-5:]] == ["second", "third"]
        lines.close()
        with pytest.raises(LookupError):
            state.get_log(pid=99999999, follow=True)
    finally:
        actorlib.shutdown()


def test_following_a_process_actors_log_ends_when_the_actor_is_killed(tmp_path: Path) -> None:
    actorlib.init(backend="process", num_cpus=2, log_to_driver=False, log_dir=str(tmp_path))
    try:
        talker = Talker.remote()
        lines = _following(talker, "only line")
        actorlib.kill(talker)
        assert list(lines) == []  # the iteration ends once the process is gone
    finally:
        actorlib.shutdown()


@actorlib.remote
def hello(text: str) -> tuple[int, str]:
    print(text, flush=True)
    ctx = actorlib.get_runtime_context()
    return os.getpid(), ctx.get_task_id()


@pytest.mark.parametrize("backend", ["thread", "process", "cluster"])
def test_actorlib_logs_from_a_second_terminal(
    backend: str, tmp_path: Path, tmp_env: dict[str, str]
) -> None:
    """``actorlib logs`` in another process: the files, one worker's lines by pid, task
    or actor, ``--tail``, and ``--follow`` printing lines as the actor writes them and
    ending when its worker exits."""
    options: dict[str, Any] = {} if backend == "cluster" else {"log_dir": str(tmp_path)}
    actorlib.init(backend=backend, num_cpus=2, log_to_driver=False, **options)
    try:
        driver = ("--driver", str(os.getpid()))
        pid, task_id = actorlib.get(hello.remote("hello from a task"), timeout=T)
        talker = Talker.remote()
        actor_id = actorlib.get([talker.say.remote(f"said {i}") for i in range(3)],
                                timeout=T)[0]
        wait_for(lambda: (_logged(actor_id) or [""])[-1].endswith("said 2"), "the actor's log")

        listed = cli(tmp_env, "logs", *driver)
        assert listed.returncode == 0, listed.stderr
        assert f"worker-{pid}.log" in listed.stdout.split()
        for target in (("--pid", str(pid)), ("--task", task_id),
                       (f"worker-{pid}.log",)):
            out = cli(tmp_env, "logs", *target, *driver)
            assert out.returncode == 0, (target, out.stderr)
            assert any(line.endswith("hello from a task")
                       for line in out.stdout.splitlines()), out.stdout
        out = cli(tmp_env, "logs", "--actor", actor_id, "--tail", "2", *driver)
        assert out.returncode == 0, out.stderr
        assert [line[-6:] for line in out.stdout.splitlines()] == ["said 1", "said 2"]

        follow = subprocess.Popen(
            [sys.executable, "-m", "actorlib", "logs", "--actor", actor_id, "-f", "-n", "1",
             *driver], env=tmp_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        try:
            assert follow.stdout is not None
            assert follow.stdout.readline().rstrip().endswith("said 2")
            actorlib.get(talker.say.remote("said later"), timeout=T)
            assert follow.stdout.readline().rstrip().endswith("said later")
            if backend != "thread":  # there the actor's "worker" is the driver itself
                actor = state.get_actor(actor_id)
                assert actor is not None
                actorlib.kill(talker)
                assert follow.wait(timeout=T) == 0, follow.stderr.read() if follow.stderr \
                    else ""
                # The log of a worker that has exited is still listed, and still read.
                out = cli(tmp_env, "logs", f"worker-{actor['pid']}.log", *driver)
                assert out.returncode == 0, out.stderr
                assert out.stdout.splitlines()[-1].endswith("said later"), out.stdout
        finally:
            if follow.poll() is None:
                follow.kill()
            follow.communicate()

        out = cli(tmp_env, "logs", "--pid", "99999999", *driver)
        assert out.returncode == 2 and "99999999" in out.stderr, out.stderr
        out = cli(tmp_env, "logs", "--pid", str(pid), "--tail", "0", *driver)
        assert out.returncode == 2 and "--tail" in out.stderr, out.stderr
    finally:
        actorlib.shutdown()


def test_actorlib_logs_without_log_files_says_how_to_keep_them(
    tmp_env: dict[str, str]
) -> None:
    actorlib.init(backend="process", num_cpus=1)
    try:
        out = cli(tmp_env, "logs", "--driver", str(os.getpid()))
        assert out.returncode == 1 and "init(log_dir=...)" in out.stderr, out.stderr
    finally:
        actorlib.shutdown()
