"""The ``actorlib`` command line at its edges, and the safety of the sessions directory.

Each test points ``TMPDIR`` at a directory of its own (and unsets ``XDG_RUNTIME_DIR``), so
the sessions it starts and stops are its own, never another run's. The daemons that
``actorlib start`` detaches are stopped with ``actorlib stop`` in the same directory.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from testkit import copy_of_actorlib

import actorlib
from actorlib.backends.cluster import daemons
from actorlib.backends.cluster import sessions as cluster_sessions

pytestmark = pytest.mark.slow

UID = os.getuid()
OTHER_UID = 65534  # "nobody"


def cli(env: dict[str, str], *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "actorlib", *args], env=env,
                          capture_output=True, text=True, timeout=60, **kwargs)  # type: ignore[call-overload]


@pytest.fixture
def head(tmp_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """A head started by ``actorlib start --head`` (no node), stopped after the test."""
    out = cli(tmp_env, "start", "--head", "--port", "0", "--num-cpus", "0")
    try:
        assert out.returncode == 0, out.stderr
        yield tmp_env
    finally:
        stopped = cli(tmp_env, "stop")
        assert stopped.returncode == 0, stopped.stderr


def sessions(root: Path) -> list[str]:
    """The session directories under ``root`` (none if it does not exist)."""
    if not root.exists():
        return []
    return sorted(n for n in os.listdir(root) if n.startswith("session_2"))


# --------------------------------------------------------------------------- sessions root


def test_sessions_live_in_xdg_runtime_dir_when_it_is_usable(
    tmp_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert cluster_sessions.checked_root(create=True) == str(runtime / "actorlib")
    assert stat.S_IMODE(os.stat(runtime / "actorlib").st_mode) == 0o700
    runtime.chmod(0o777)  # not private: fall back to $TMPDIR/actorlib-$UID
    assert cluster_sessions.sessions_root() == str(tmp_path / f"actorlib-{UID}")


@pytest.mark.parametrize("flaw", ["writable by others", "owned by another user", "a symlink"])
def test_an_unsafe_sessions_root_is_refused(
    tmp_env: dict[str, str], tmp_path: Path, flaw: str
) -> None:
    root = tmp_path / f"actorlib-{UID}"
    if flaw == "a symlink":
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        root.symlink_to(tmp_path / "elsewhere")
    else:
        root.mkdir(mode=0o700)
        if flaw == "writable by others":
            root.chmod(0o777)
        else:
            os.chown(root, OTHER_UID, OTHER_UID)
    with pytest.raises(PermissionError, match=f"sessions directory {root} "):
        actorlib.init(address="auto")
    out = cli(tmp_env, "start", "--head", "--port", "0", "--num-cpus", "0")
    assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
    assert str(root) in out.stderr and "Traceback" not in out.stderr
    expected = {"writable by others": "mode 0777", "owned by another user": f"uid {OTHER_UID}",
                "a symlink": "symlink"}[flaw]
    assert expected in out.stderr
    assert sessions(root) == []


def test_a_planted_symlink_in_the_sessions_root_is_not_followed(
    tmp_env: dict[str, str], tmp_path: Path
) -> None:
    root = tmp_path / f"actorlib-{UID}"
    root.mkdir(mode=0o700)
    bait = tmp_path / "bait"
    bait.mkdir()
    (bait / "cluster.json").write_text(json.dumps({"address": "10.6.6.6:1", "token_file": "x"}))
    (root / "session_latest").symlink_to(bait)  # outside the root
    with pytest.raises(ConnectionError, match="No running actorlib cluster"):
        cluster_sessions.resolve_address("auto")
    session = root / "session_20000101-000000_1"
    session.mkdir(mode=0o700)
    (session / "cluster.json").symlink_to(bait / "cluster.json")
    (root / "session_latest").unlink()
    (root / "session_latest").symlink_to(session.name)
    with pytest.raises(OSError):  # O_NOFOLLOW: ELOOP
        cluster_sessions.resolve_address("auto")


def test_start_creates_private_session_files(head: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / f"actorlib-{UID}"
    (session,) = sessions(root)
    assert os.readlink(root / "session_latest") == session
    for path, mode in [(root, 0o700), (root / session, 0o700),
                       (root / session / "cluster.json", 0o600),
                       (root / session / "token", 0o600)]:
        st = os.lstat(path)
        assert (stat.S_IMODE(st.st_mode), st.st_uid) == (mode, UID), path


# --------------------------------------------------------------------------- CLI edges


@pytest.mark.parametrize("args", [
    ["start", "--address", "nohost"],
    ["start", "--address", "nohost:6390"],
    ["start", "--head", "--resources", "{bad"],
    ["start", "--head", "--num-cpus", "-1"],
    ["start", "--head", "--labels", "zone"],
    ["start", "--head", "--labels", "zone=a b"],
    ["status", "--address", "nohost"],
], ids=lambda a: " ".join(a))
def test_a_bad_argument_is_one_line_and_exit_code_2(
    tmp_env: dict[str, str], tmp_path: Path, args: list[str]
) -> None:
    out = cli(tmp_env, *args)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and out.stderr.startswith(f"actorlib {args[0]}: error:")
    assert sessions(tmp_path / f"actorlib-{UID}") == []


def test_start_labels_the_node(tmp_env: dict[str, str]) -> None:
    out = cli(tmp_env, "start", "--head", "--port", "0", "--num-cpus", "1",
              "--labels", "zone=a,disk=ssd")
    try:
        assert out.returncode == 0, out.stderr
        script = ("import json, actorlib; actorlib.init(address='auto'); "
                  "print(json.dumps(actorlib.nodes()[0]['Labels']))")
        shown = subprocess.run([sys.executable, "-c", script], env=tmp_env,
                               capture_output=True, text=True, timeout=60)
        assert shown.returncode == 0, shown.stderr
        labels = json.loads(shown.stdout)
        assert (labels["zone"], labels["disk"]) == ("a", "ssd")
    finally:
        assert cli(tmp_env, "stop").returncode == 0


def test_a_port_in_use_is_named_and_nothing_is_left_behind(
    tmp_env: dict[str, str], tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = cli(tmp_env, "start", "--head", "--port", str(port))
    assert out.returncode == 1
    assert out.stderr.startswith(f"actorlib start: port {port} is in use"), out.stderr
    assert sessions(tmp_path / f"actorlib-{UID}") == []


def test_a_second_head_does_not_take_over_auto(head: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / f"actorlib-{UID}"
    before = os.readlink(root / "session_latest")
    address = cluster_sessions.resolve_address("auto")[0]
    out = cli(head, "start", "--head", "--port", "0", "--num-cpus", "0")
    assert out.returncode == 1 and "already running" in out.stderr and address in out.stderr
    assert os.readlink(root / "session_latest") == before and sessions(root) == [before]


def test_status_into_a_closed_pipe_is_quiet(head: dict[str, str]) -> None:
    read, write = os.pipe()
    os.close(read)  # the reader (say `head -1`) has gone: every write fails with EPIPE
    try:
        out = subprocess.run([sys.executable, "-m", "actorlib", "status"], env=head,
                             stdout=write, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write)
    assert out.returncode == 1 and out.stderr == ""


def test_status_of_a_closed_port_says_connection_refused(tmp_env: dict[str, str]) -> None:
    out = cli(tmp_env, "status", "--address", f"127.0.0.1:{daemons.free_port()}")
    assert out.returncode == 1 and "connection refused" in out.stderr, out.stderr
    assert "--token" not in out.stderr


def test_version_flag(tmp_env: dict[str, str]) -> None:
    out = cli(tmp_env, "--version")
    assert (out.returncode, out.stdout) == (0, f"actorlib {actorlib.__version__}\n")


def test_a_nodes_store_spills_where_start_says(tmp_env: dict[str, str], tmp_path: Path) -> None:
    """``actorlib start --object-spilling-directory``: the node's store spills its objects
    there once full (a directory of its own), read back intact; gone after ``stop``."""
    spill = tmp_path / "spill"
    out = cli(tmp_env, "start", "--head", "--port", "0", "--num-cpus", "1",
              "--object-store-memory", str(40 * 1024 * 1024),
              "--object-spilling-directory", str(spill))
    assert out.returncode == 0, out.stderr
    try:
        code = (
            "import sys, numpy as np, actorlib, os; actorlib.init(address='auto')\n"
            "big = actorlib.remote(lambda i: np.full(1 << 20, float(i)))\n"
            "refs = [big.remote(i) for i in range(8)]\n"  # 64 MiB through 40 MiB
            "assert [float(actorlib.get(r)[-1]) for r in refs] == [float(i) for i in range(8)]\n"
            "print(*[f'{d} {len(os.listdir(os.path.join(sys.argv[1], d)))}'\n"
            "        for d in os.listdir(sys.argv[1])])\n"
            "actorlib.shutdown()\n"
        )
        driver = subprocess.run([sys.executable, "-c", code, str(spill)], env=tmp_env,
                                capture_output=True, text=True, timeout=120)
        assert driver.returncode == 0, driver.stderr
        name, files = driver.stdout.split()
        assert name.startswith("actorlib-") and name.endswith("-spill") and int(files) > 0
    finally:
        stopped = cli(tmp_env, "stop")
        assert stopped.returncode == 0, stopped.stderr
    assert spill.is_dir() and list(spill.iterdir()) == []


def test_a_node_or_driver_of_another_release_is_refused_with_both_named(
    head: dict[str, str], tmp_path: Path
) -> None:
    """A node and a driver running another actorlib (a copy whose release differs, as an
    older install on another host) cannot join: each fails at once naming both releases,
    and the head logs why. Joined, they would exchange records neither can decode."""
    from actorlib.backends.transport import release

    other = tmp_path / "other"
    marker = copy_of_actorlib(other) / "core" / "release.py"
    marker.write_text(marker.read_text().replace(f'"{actorlib.__version__}"', '"0.0.9"'))
    env = dict(head, PYTHONPATH=str(other))
    (session,) = sessions(tmp_path / f"actorlib-{UID}")
    info = json.loads((tmp_path / f"actorlib-{UID}" / session / "cluster.json").read_text())
    theirs = release.identity().decode().replace(actorlib.__version__, "0.0.9", 1)
    both = f"runs {release.identity().decode()}, this process {theirs}"

    node = cli(env, "start", "--address", info["address"], "--token-file",
               info["token_file"], "--num-cpus", "1", cwd=other)
    assert node.returncode == 1 and "the node failed to start" in node.stderr, node.stderr
    assert both in node.stderr, node.stderr
    driver = subprocess.run(
        [sys.executable, "-c", "import actorlib; actorlib.init(address='auto')"],
        env=env, cwd=other, capture_output=True, text=True, timeout=60)
    assert driver.returncode == 1 and both in driver.stderr, driver.stderr
    log = (tmp_path / f"actorlib-{UID}" / session / "logs" / "head.log").read_text()
    assert log.count(f"another actorlib (role 'node'): it runs {theirs}") == 1, log
    assert log.count(f"another actorlib (role 'driver'): it runs {theirs}") == 1, log
