"""How the process backend starts: the warm first worker, the lean worker, the lazy package.

``init()`` starts the first worker before it imports the runtime
(``actorlib.backends.prestart``), so the worker's interpreter boots while the driver goes
on; a worker imports only what a plain task needs (no asyncio, ssl, tempfile, hashlib or
actorlib's API until async code or an actor asks for them); ``import actorlib`` binds its
names on first use. What is imported when can only be seen in a fresh interpreter, so
most tests here run a driver script (``run_script`` also checks that no process of it is
left).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from testkit import copy_of_actorlib, run_script

import actorlib

# What a lean worker does without, and what `import actorlib` alone must not load
# (tempfile brings shutil, random, bz2 and lzma; hashlib OpenSSL's libcrypto).
HEAVY = ("asyncio", "ssl", "anyio", "actorlib.api", "actorlib.session", "actorlib.core.runtime",
         "tempfile", "hashlib")
# What the driver has not imported yet when init() starts the warm worker.
LATER = ("asyncio", "ssl", "actorlib.core.runtime", "actorlib.backends.process.backend")

FIRST_TASK_SCRIPT = """
import json, subprocess, sys

launched = []
_popen_init = subprocess.Popen.__init__

def _record(self, args, *rest, **kwargs):
    _popen_init(self, args, *rest, **kwargs)
    if any("actorlib.backends.process.worker" in str(arg) for arg in args):
        loaded = sorted(m for m in {later!r} if m in sys.modules)
        launched.append({{"pid": self.pid, "loaded": loaded}})

subprocess.Popen.__init__ = _record

import actorlib

actorlib.init(backend="process", num_cpus=1)

@actorlib.remote
def where():
    import os, sys
    return os.getpid(), sorted(m for m in {heavy!r} if m in sys.modules)

@actorlib.remote
async def where_async():
    import os, sys
    return os.getpid(), "asyncio" in sys.modules

pid, worker_loaded = actorlib.get(where.remote())
async_pid, async_has_asyncio = actorlib.get(where_async.remote())
actorlib.shutdown()
print(json.dumps({{
    "launched": launched, "pid": pid, "worker_loaded": worker_loaded,
    "async_pid": async_pid, "async_has_asyncio": async_has_asyncio,
}}))
"""


def _run(tmp_path: Path, source: str) -> dict[str, Any]:
    script = tmp_path / "driver.py"
    script.write_text(source)
    proc = run_script(str(script), "process")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_the_first_task_runs_in_the_worker_started_before_the_runtime(tmp_path):
    out = _run(tmp_path, FIRST_TASK_SCRIPT.format(heavy=HEAVY, later=LATER))
    launched = out["launched"]
    assert len(launched) == 1, launched  # one CPU: the warm worker is the only one
    # Started before the driver imported the core, asyncio or the API's runtime parts...
    assert launched[0]["loaded"] == [], launched
    # ... and it is the worker that ran the first task.
    assert out["pid"] == launched[0]["pid"]
    # A plain task's worker never imported asyncio, ssl or actorlib's API.
    assert out["worker_loaded"] == []
    # An async task then runs there too, with asyncio imported on demand.
    assert out["async_pid"] == out["pid"]
    assert out["async_has_asyncio"] is True


def test_import_actorlib_loads_no_runtime_and_binds_every_public_name(tmp_path):
    source = f"""
import json, sys
import actorlib
before = sorted(m for m in {HEAVY!r} if m in sys.modules)
from actorlib.pool import Pool  # imports the progress module's helpers
names = {{name: getattr(actorlib, name) is not None for name in actorlib.__all__}}
star = {{}}
exec("from actorlib import *", star)
print(json.dumps({{
    "before": before, "names": names, "missing": sorted(set(actorlib.__all__) - set(star)),
    "progress_is_function": callable(actorlib.progress)
        and actorlib.progress.__module__ == "actorlib.progress",
    "dir_has_all": set(actorlib.__all__) <= set(dir(actorlib)),
}}))
"""
    out = _run(tmp_path, source)
    assert out["before"] == []
    assert all(out["names"].values()), out["names"]
    assert out["missing"] == []
    assert out["progress_is_function"]
    assert out["dir_has_all"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"runtime_env": {"pip": ["x"]}},  # rejected after the warm worker has started
        {"object_store_memory": 1 << 60},  # rejected by the backend's start
    ],
)
def test_init_that_fails_kills_the_warm_worker(kwargs, _leak_check):
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    with pytest.raises(ValueError):
        actorlib.init(backend="process", num_cpus=1, **kwargs)
    assert not actorlib.is_initialized()
    left = {p.pid for p in me.children(recursive=True)} - before
    assert not left, f"worker processes left by a failed init(): {left}"


def test_init_from_a_thread_that_ends_keeps_its_first_worker(_leak_check):
    """The kernel kills a worker when the *thread* that started it ends (PDEATHSIG), so
    only the main thread starts the warm worker; here the backend starts it itself."""

    @actorlib.remote
    def pid() -> int:
        return os.getpid()

    first: list[int] = []

    def start_and_use() -> None:  # the worker has booted (and set PDEATHSIG) when it ends
        actorlib.init(backend="process", num_cpus=1)
        first.append(actorlib.get(pid.remote()))

    started = threading.Thread(target=start_and_use)
    started.start()
    started.join()
    try:
        assert first, "init() or the first task failed in the thread"
        time.sleep(0.3)  # a worker killed with the thread would be gone by now
        assert actorlib.get(pid.remote()) == first[0]
        assert psutil.pid_exists(first[0])
    finally:
        actorlib.shutdown()


@pytest.mark.parametrize("enabled", [True, False])
@pytest.mark.parametrize("fails", [False, True])
def test_init_leaves_the_cyclic_collector_as_it_found_it(enabled, fails, _leak_check):
    """init() pauses the collector while it imports the runtime, and only that long."""
    import gc

    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        if fails:
            with pytest.raises(ValueError):
                actorlib.init(backend="process", num_cpus=1, object_store_memory=1 << 60)
            assert gc.isenabled() is enabled
        else:
            actorlib.init(backend="process", num_cpus=1)
            try:
                assert gc.isenabled() is enabled
            finally:
                actorlib.shutdown()
    finally:
        (gc.enable if was else gc.disable)()


def test_a_worker_runs_tasks_with_the_cyclic_collector_on(_leak_check):
    """A worker boots with the collector off (see launch.WORKER_BOOT), then turns it on."""

    @actorlib.remote
    def collecting() -> tuple[bool, int]:
        import gc

        return gc.isenabled(), os.getpid()

    actorlib.init(backend="process", num_cpus=1)
    try:
        enabled, pid = actorlib.get(collecting.remote())
        assert enabled
        assert pid != os.getpid()
    finally:
        actorlib.shutdown()


def test_a_claim_table_is_an_anonymous_memory_file_shared_through_its_descriptor():
    """Offered by the driver, taken once by either side, through the inherited fd; where
    the kernel has memfd_create no file is ever made (nor a tempfile import)."""
    from actorlib.backends.process.claims import ClaimTable

    table = ClaimTable.create()
    try:
        if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
            assert os.readlink(f"/proc/self/fd/{table.fd}").startswith("/memfd:actorlib-claims")
        other = ClaimTable(os.dup(table.fd))  # the worker's end, as inherited
        try:
            assert table.offer(7)
            assert other.take(7) is True
            assert table.take(7) is False  # taken once only
            assert other.take(8) is False  # never offered
        finally:
            os.close(other.fd)
    finally:
        table.close()


@pytest.mark.slow  # an interpreter of its own, and a copy of the package
def test_workers_run_the_actorlib_their_driver_imported(tmp_path):
    """A driver whose actorlib is a copy on its own path (a checkout beside an installed
    one): its workers import that copy too. With the installed one instead, their
    messages could differ, and the driver wait for good for tasks dropped undecoded."""
    home = tmp_path / "checkout"
    copy_of_actorlib(home)
    script = home / "driver.py"
    script.write_text(
        "import actorlib\n"
        "@actorlib.remote\n"
        "def where():\n"
        "    import actorlib\n"
        "    return actorlib.__file__\n"
        "actorlib.init(backend='process', num_cpus=1)\n"
        "print(actorlib.__file__)\n"
        "print(actorlib.get(where.remote(), timeout=60))\n"
        "actorlib.shutdown()\n"
    )
    out = run_script(str(script), "process").stdout.split()
    assert out == [str(home / "actorlib" / "__init__.py")] * 2, out
