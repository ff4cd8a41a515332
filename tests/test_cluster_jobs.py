"""Two drivers on one cluster: each one's logging and setup hook reach its own work.

A node's workers serve every driver of the cluster, one after another. Each driver's root
logging level and format, and its ``worker_process_setup_hook``, are applied in a worker
before that driver's work runs there, and a worker going from one driver's work to
another's switches to the other's logging.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
from testkit import wait_for

from actorlib.backends.cluster import daemons
from actorlib.backends.transport import tokens
from actorlib.cluster_cli import query_status

pytestmark = [
    pytest.mark.slow,  # starts a head, a node and driver interpreters
    pytest.mark.skipif(not sys.platform.startswith("linux"),
                       reason="the cluster's nodes run the process backend"),
]

DRIVER = """
import logging, os, sys, actorlib

logging.basicConfig(level=logging.{level}, format="{tag} %(levelname)s| %(message)s")

def hook():
    os.environ["HOOKED_BY"] = "{tag}"

@actorlib.remote
def work():
    log = logging.getLogger("work")
    log.info("{tag} info")
    log.warning("{tag} warning")
    return os.getpid(), os.environ.get("HOOKED_BY")

actorlib.init(address={address!r}{hook})
pid, hooked = actorlib.get(work.remote())
print("result", pid, hooked, flush=True)
actorlib.shutdown()
"""


@pytest.fixture
def one_cpu_cluster(tmp_path: os.PathLike[str]) -> Iterator[tuple[str, str]]:
    """A head and one node with one CPU: every task runs in the same worker process."""
    root = str(tmp_path)
    token_file = os.path.join(root, "token")
    tokens.write_token_file(token_file, tokens.new_token())
    head, address = daemons.start_head(root, token_file)
    node = None
    try:
        node = daemons.start_node(root, token_file, address, name="only", num_cpus=1)
        wait_for(lambda: len(query_status(address, token_file)["nodes"]) == 1,
                 "the node to join", 30)
        yield address, token_file
    finally:
        daemons.stop_processes([p for p in (node, head) if p is not None])


def _drive(address: str, token_file: str, tag: str, level: str, hook: bool) -> tuple[str, str]:
    script = DRIVER.format(level=level, tag=tag, address=address,
                           hook=", worker_process_setup_hook=hook" if hook else "")
    env = {**os.environ, "ACTORLIB_CLUSTER_TOKEN_FILE": token_file}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True,
                          text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout, done.stderr


def test_each_driver_gets_its_own_logging_and_hook(one_cpu_cluster: tuple[str, str]) -> None:
    address, token_file = one_cpu_cluster
    out1, err1 = _drive(address, token_file, "D1", "INFO", hook=True)
    out2, err2 = _drive(address, token_file, "D2", "WARNING", hook=False)
    (result1,) = [line for line in out1.splitlines() if line.startswith("result")]
    (result2,) = [line for line in out2.splitlines() if line.startswith("result")]
    _, pid1, hooked1 = result1.split()
    _, pid2, _ = result2.split()
    assert hooked1 == "D1"  # the hook ran before the first task
    assert pid1 == pid2  # one worker served both drivers
    # D1 logs at INFO in its format, prefixed with the task and its worker; D2 at WARNING.
    lines1 = [line for line in err1.splitlines() if "| D1" in line]
    assert [line.split(") ", 1)[1] for line in lines1] == ["D1 INFO| D1 info",
                                                          "D1 WARNING| D1 warning"]
    assert all(line.startswith(f"(work pid={pid1}, node=") for line in lines1), lines1
    lines2 = [line for line in err2.splitlines() if "D2" in line]
    assert [line.split(") ", 1)[1] for line in lines2] == ["D2 WARNING| D2 warning"], err2
    assert "D1" not in err2
