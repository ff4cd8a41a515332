"""Review21 findings on conf19 (Ray names): each test fails on c703ea3."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest

import actorlib

T = 60


def run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    environ["PYTHONPATH"] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    environ.update(env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=T, env=environ)


def test_session_name_first_call_starts_the_runtime_as_rays() -> None:
    """Ray's ``get_runtime_context()`` starts Ray on first use (as actorlib's other
    context methods do): ``get_session_name()`` as the first call returns a name."""
    out = run("""
        import actorlib as ray
        name = ray.get_runtime_context().get_session_name()
        print(name.startswith("session_"), ray.get_runtime_context().get_temp_dir() != "",
              ray.is_initialized())
        ray.shutdown()
        """, ACTORLIB_BACKEND="thread")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True", "True"]


@actorlib.remote
def session_name_in(tz: str) -> str:
    os.environ["TZ"] = tz
    time.tzset()
    try:
        return actorlib.get_runtime_context().get_session_name()
    finally:
        os.environ.pop("TZ")
        time.tzset()


def test_session_name_does_not_depend_on_the_callers_time_zone(rt: Any) -> None:
    """A node (or driver) in another time zone names the same session: on a cluster the
    driver's ``TZ`` differs from the node daemon's (other machines, other zones)."""
    here = actorlib.get_runtime_context().get_session_name()
    assert actorlib.get(session_name_in.remote("Asia/Tokyo"), timeout=T) == here
    assert actorlib.get(session_name_in.remote("America/Los_Angeles"), timeout=T) == here


@pytest.mark.parametrize("kind", ["TaskID", "ActorID", "JobID", "PlacementGroupID",
                                  "WorkerID"])
def test_id_from_binary_and_from_hex_refuse_what_no_id_is(kind: str) -> None:
    """Ray raises ValueError for a binary of the wrong length; here every ``binary()`` is
    16 bytes, so nothing else round-trips (b"\\x01" gave an id whose binary() is not it,
    17 bytes one whose binary() raised OverflowError)."""
    cls = getattr(actorlib, kind)
    ok = cls.from_random()
    assert cls.from_binary(ok.binary()) == ok and cls.from_hex(ok.hex()) == ok
    for data in (b"\x01", b"\x01" * 17, b"\xfe" * 28):
        with pytest.raises(ValueError, match="length"):
            cls.from_binary(data)
    for text in ("-1", "ab" * 28, "xyz", ""):
        with pytest.raises(ValueError):
            cls.from_hex(text)


def test_node_id_from_binary_of_a_ray_node_id_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        actorlib.NodeID.from_binary(b"\xfe" * 28)


@actorlib.remote(max_retries=0)
def waits_in_the_debugger(marker: str) -> int:
    open(marker, "w").close()
    actorlib.util.pdb.set_trace()
    return 1


def test_cancel_stops_a_task_waiting_for_a_debugger_client(rt: Any, backend_name: str,
                                                           tmp_path: Any) -> None:
    """Nobody connects: ``cancel()`` (not forced) ends the task, as Ray's does, instead of
    waiting in ``accept()`` (where an asynchronous exception is never delivered)."""
    if backend_name in ("thread", "sim"):
        pytest.skip("the driver's process debugs on the terminal: no socket to wait on")
    marker = str(tmp_path / "started")
    ref = waits_in_the_debugger.remote(marker)
    deadline = time.monotonic() + T
    while not os.path.exists(marker):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(1)  # in accept() by now
    actorlib.cancel(ref)
    with pytest.raises(actorlib.exceptions.TaskCancelledError):
        actorlib.get(ref, timeout=10)
