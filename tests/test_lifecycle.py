"""init/shutdown: reinit errors, context manager, auto-init, backend selection, clean exit."""

from __future__ import annotations

import logging
import os
import sys
import threading
import types

import pytest
from testkit import Sync, T, run_script

import actorlib
from actorlib import exceptions as exc
from actorlib.logging_config import LoggingConfig


@actorlib.remote
def double(x):
    return 2 * x


@actorlib.remote
def fail():
    raise ValueError("failing before shutdown")


@actorlib.remote
def wait_forever(sync):
    return actorlib.get(sync.wait.remote())


@actorlib.remote(num_cpus=0)
class Named:
    def ping(self) -> str:
        return "pong"


def _actorlib_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("actorlib")]


def test_init_twice_raises(rt, backend_name):
    assert actorlib.is_initialized()
    with pytest.raises(RuntimeError):
        actorlib.init(backend=backend_name, num_cpus=1)
    actorlib.init(backend=backend_name, num_cpus=1, ignore_reinit_error=True)
    assert actorlib.is_initialized()
    assert actorlib.cluster_resources()["CPU"] == 4  # the first runtime is kept


def test_init_as_context_manager(backend_name):
    assert not actorlib.is_initialized()
    with actorlib.init(backend=backend_name, num_cpus=2) as info:
        assert isinstance(info, actorlib.RuntimeInfo)
        assert actorlib.is_initialized()
        assert actorlib.get(double.remote(4), timeout=T) == 8
    assert not actorlib.is_initialized()


def test_context_manager_shuts_down_on_error(backend_name):
    with pytest.raises(KeyError), actorlib.init(backend=backend_name, num_cpus=2):
        raise KeyError("inside")
    assert not actorlib.is_initialized()


def test_init_strings_of_a_class_only_the_driver_can_import_do_not_stop_the_work(
    backend_name: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """init()'s namespace, resource names, node labels, setup hook and logging config
    given as a ``str`` subclass workers and a cluster's head cannot import (a script's
    ``__main__``; here a module only the driver has): work still runs, rather than a
    worker's first message (or each task's, which carries the namespace, or a cluster
    driver's hello) failing to decode there and get() waiting forever."""
    module = types.ModuleType("_actorlib_driver_only_init_strings")
    text = type("DriverOnlyName", (str,), {"__module__": module.__name__})
    module.DriverOnlyName = text  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    with actorlib.init(backend=backend_name, num_cpus=2, namespace=text("t_init_ns"),
                       resources={text("t_slot"): 1}, labels={text("t-zone"): text("a")},
                       worker_process_setup_hook=text("os.getpid"),
                       logging_config=LoggingConfig(encoding=text("TEXT"),
                                                    additional_log_standard_attrs=[text("name")])):
        task = double.options(resources={"t_slot": 1}, label_selector={"t-zone": "a"})
        assert actorlib.get(task.remote(2), timeout=T) == 4
        named = Named.options(name="t_named").remote()
        found = actorlib.get_actor("t_named", namespace="t_init_ns")
        assert actorlib.get(found.ping.remote(), timeout=T) == "pong"
        del named, found


def test_shutdown_is_idempotent(backend_name):
    actorlib.init(backend=backend_name, num_cpus=1)
    actorlib.shutdown()
    actorlib.shutdown()
    assert not actorlib.is_initialized()
    actorlib.shutdown()


def test_reinit_after_shutdown(backend_name):
    for n in (1, 2):
        with actorlib.init(backend=backend_name, num_cpus=n):
            assert actorlib.cluster_resources()["CPU"] == n
            assert actorlib.get(double.remote(n), timeout=T) == 2 * n


def test_auto_init_uses_env_backend(backend_name, monkeypatch):
    monkeypatch.setenv("ACTORLIB_BACKEND", backend_name)
    assert not actorlib.is_initialized()
    try:
        assert actorlib.get(double.remote(21), timeout=T) == 42
        assert actorlib.is_initialized()
    finally:
        actorlib.shutdown()


def test_auto_init_on_put(backend_name, monkeypatch):
    monkeypatch.setenv("ACTORLIB_BACKEND", backend_name)
    try:
        assert actorlib.get(actorlib.put("auto"), timeout=T) == "auto"
    finally:
        actorlib.shutdown()


def test_unknown_backend_names_known_ones():
    with pytest.raises(ValueError) as info:
        actorlib.init(backend="no-such-backend")
    assert "thread" in str(info.value)
    assert not actorlib.is_initialized()


def test_shutdown_after_failing_task_leaves_nothing(backend_name):
    actorlib.init(backend=backend_name, num_cpus=2)
    ref = fail.remote()
    with pytest.raises(ValueError):
        actorlib.get(ref, timeout=T)
    actorlib.shutdown()
    assert not actorlib.is_initialized()
    assert _actorlib_threads() == []  # all gone synchronously, not only eventually


def test_shutdown_with_blocked_work_does_not_hang(backend_name):
    """Pending tasks and actors blocked on each other are torn down, not waited for."""
    actorlib.init(backend=backend_name, num_cpus=2)
    sync = Sync.remote()
    refs = [wait_forever.remote(sync) for _ in range(3)]  # one is still queued
    ready, _ = actorlib.wait(refs, timeout=0.1)
    assert ready == []
    actorlib.shutdown()
    assert not actorlib.is_initialized()


def test_get_on_pending_ref_after_shutdown(backend_name):
    actorlib.init(backend=backend_name, num_cpus=1)
    sync = Sync.remote()
    ref = sync.wait.remote()
    actorlib.shutdown()
    with pytest.raises(exc.RuntimeClosedError):
        actorlib.get(ref, timeout=T)


def test_remote_after_shutdown_auto_starts_again(backend_name, monkeypatch):
    """After shutdown, a new call auto-starts a runtime (Ray semantics)."""
    monkeypatch.setenv("ACTORLIB_BACKEND", backend_name)
    actorlib.init(backend=backend_name, num_cpus=1)
    actorlib.shutdown()
    try:
        assert actorlib.get(double.remote(5), timeout=T) == 10
    finally:
        actorlib.shutdown()


def test_is_initialized_false_without_runtime():
    assert actorlib.is_initialized() is False


SCRIPT_WITHOUT_SHUTDOWN = """
import actorlib

@actorlib.remote
def square(x):
    return x * x

@actorlib.remote
class Holder:
    def __init__(self):
        self.ref = actorlib.put(list(range(10)))

    def total(self):
        return sum(actorlib.get(self.ref))

h = Holder.remote()
print(actorlib.get([square.remote(3), h.total.remote()]))
# no shutdown(): the runtime must stop cleanly at interpreter exit
"""


def test_script_that_never_calls_shutdown_exits_cleanly(backend_name, tmp_path):
    script = tmp_path / "no_shutdown.py"
    script.write_text(SCRIPT_WITHOUT_SHUTDOWN)
    proc = run_script(str(script), backend_name)
    assert proc.stdout.strip() == "[9, 45]"


@actorlib.remote
def nap_until_released(fd: int) -> None:
    import os

    os.read(fd, 1)  # one C call: no bytecode for a cancel to interrupt between


class _ReleaseOnceSaid(logging.Handler):
    """Ends the nap once shutdown() has said it waits: the task is still running when it
    looks, however slow the machine (a nap of fixed length could end first)."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd

    def emit(self, record: logging.LogRecord) -> None:
        if "shutdown() waits" in record.getMessage():
            os.write(self.fd, b"x")


def test_a_thread_backend_shutdown_says_what_it_waits_for(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A task in a C call cannot be stopped; shutdown() waits for it (up to 10 s), and
    after a second says so, naming the task, rather than seeming to hang."""
    import time

    from actorlib.util import state

    read_fd, write_fd = os.pipe()
    release = _ReleaseOnceSaid(write_fd)
    actorlib.init(backend="thread", num_cpus=1)
    try:
        nap_until_released.remote(read_fd)
        deadline = time.monotonic() + T
        while not state.list_tasks(filters=[("name", "=", "nap_until_released"),
                                             ("state", "=", "RUNNING")]):
            assert time.monotonic() < deadline, "the task never ran"
            time.sleep(0.02)
    finally:
        logging.getLogger("actorlib").addHandler(release)
        try:
            with caplog.at_level(logging.WARNING, logger="actorlib"):
                actorlib.shutdown()
        finally:
            logging.getLogger("actorlib").removeHandler(release)
            os.write(write_fd, b"x")  # the nap's end, had nothing been said
            os.close(write_fd)
            os.close(read_fd)
    said = [r.getMessage() for r in caplog.records if "shutdown() waits" in r.getMessage()]
    assert len(said) == 1 and "(nap_until_released)" in said[0], caplog.text


@pytest.mark.parametrize("size", [-5, "big", 1.5, True])
def test_init_refuses_a_bad_object_store_memory(size: object) -> None:
    """At init, in one line: not a store of capacity -5 B whose every put fails later."""
    with pytest.raises(ValueError, match="object_store_memory must be a non-negative int"):
        actorlib.init(backend="process", object_store_memory=size)  # type: ignore[arg-type]
    assert not actorlib.is_initialized()
