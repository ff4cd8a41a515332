"""Shared fixtures: the backend list, the runtime fixture, the leak check, hypothesis profiles.

Every behavioural test takes the ``rt`` fixture, so it runs once per name in ``BACKENDS``.
Adding a backend means adding its name here; a backend that fails to import shows up as a
skip carrying the import error, never as silently missing tests.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import importlib.util
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
from hypothesis import HealthCheck, settings

pytest_plugins = ["pytester"]  # test_harness.py checks the leak check itself

# The ONE list of backends the behavioural suite runs on ("ray" where Ray is installed).
BACKENDS = ["thread", "process", "cluster"]
if importlib.util.find_spec("ray") is not None:
    BACKENDS.append("ray")

# The ray backend's tests share one Ray cluster (Ray takes seconds to start), so the
# one thing a test cannot do there is shape that cluster: init() arguments that size
# it are skipped on ray, for this reason (docs/backends.md, "The ray backend").
RAY_SHARED_CLUSTER_SKIP = frozenset({"num_cpus", "num_gpus", "resources", "object_store_memory"})

# The ONE list of shared tests (by name, or "file::name") that do not hold on the ray
# backend, each with its reason
# (docs/backends.md, "The ray backend"). They run as strict xfails: a test that starts to
# pass there fails the run until it leaves this list.
_RAY_OWNS_LIFETIMES = (
    "difference: Ray keeps objects and actors alive (its own reference counting); "
    "actorlib's table on ray lists only the ids this process maps"
)
_RAY_OUTPUT = "difference: worker output is Ray's log_to_driver (its prefixes, its titles)"
_RAY_SHARED = "difference: the test sizes the runtime, and the ray tests share one 4-CPU cluster"
_RAY_RESTARTS = (
    "difference: Ray's actor restarts (calls in flight fail with ActorUnavailableError, a "
    "caller's order is not kept across the restart, kill takes effect asynchronously)"
)
_RAY_NOT_YET = "not yet on ray: "
RAY_EXCEPTIONS: dict[str, str] = {
    "test_actor_kept_alive_by_handle_in_another_actor": _RAY_OWNS_LIFETIMES,
    "test_detached_actor_outlives_its_handles": _RAY_OWNS_LIFETIMES,
    "test_nested_ref_keeps_inner_alive": _RAY_OWNS_LIFETIMES,
    "test_ref_inside_task_result_keeps_inner_alive": _RAY_OWNS_LIFETIMES,
    "test_ref_in_actor_state_keeps_object_alive": _RAY_OWNS_LIFETIMES,
    "test_pending_task_argument_keeps_object_alive": _RAY_OWNS_LIFETIMES,
    "test_objects_freed_exactly_when_last_ref_dies": _RAY_OWNS_LIFETIMES,
    "test_a_print_in_a_task_reaches_the_driver_stdout_with_its_prefix": _RAY_OUTPUT,
    "test_an_actor_prints_with_its_class_name": _RAY_OUTPUT,
    "test_stderr_reaches_the_driver_stderr": _RAY_OUTPUT,
    "test_redirect_stdout_in_the_driver_captures_task_output": _RAY_OUTPUT,
    "test_many_lines_from_many_tasks_arrive_whole": _RAY_OUTPUT,
    "test_logging_in_a_task_appears_in_the_driver_with_its_level": _RAY_OUTPUT,
    "test_every_process_actorlib_starts_says_what_it_is": _RAY_OUTPUT,
    "test_reinit_after_shutdown": _RAY_SHARED,
    "test_executor.py::test_starts_and_stops_its_own_runtime": _RAY_SHARED + (
        " (run alone it starts a Ray of its own and passes: not strict)"),
    "test_kill_with_restart": _RAY_RESTARTS,
    "test_call_order_survives_actor_restart": _RAY_RESTARTS,
    "test_restart_without_task_retries_fails_pending_calls": _RAY_RESTARTS,
    "test_was_current_actor_reconstructed": _RAY_NOT_YET + "the incarnation after a restart",
    "test_is_canceled_seen_by_an_async_task_that_catches_the_cancel":
        _RAY_NOT_YET + "is_canceled() after a caught cancel",
    "test_is_canceled_seen_by_a_sync_task_that_catches_the_cancel":
        _RAY_NOT_YET + "is_canceled() after a caught cancel",
}

LEAK_GRACE_S = float(os.environ.get("ACTORLIB_TEST_LEAK_GRACE", "2.0"))
SHM_DIR = os.environ.get("ACTORLIB_TEST_SHM_DIR", "/dev/shm")  # overridable for test_harness
SHM_PREFIX = "actorlib"

settings.register_profile(
    "fast",
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("ACTORLIB_HYPOTHESIS_PROFILE", "fast"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark what the fast development subset leaves out (see docs/development.md):
    ``cluster`` (a head, a node and workers per test) and ``chaos`` (fault injection)."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("backend_name") if callspec is not None else None
        if backend == "cluster" or "cluster" in item.path.name:
            item.add_marker(pytest.mark.cluster)
        name = getattr(item, "originalname", "")
        reason = (
            RAY_EXCEPTIONS.get(name, RAY_EXCEPTIONS.get(f"{item.path.name}::{name}"))
            if backend == "ray" else None
        )
        if reason is not None:
            item.add_marker(pytest.mark.xfail(reason=reason, strict="not strict" not in reason))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "cluster: needs a cluster (a head and nodes as processes): slow to start"
    )
    config.addinivalue_line(
        "markers", "chaos: fault injection under load (ACTORLIB_CHAOS_SECONDS sets the length)"
    )
    config.addinivalue_line(
        "markers",
        "init_kwargs(**kw): extra keyword arguments for actorlib.init() in the rt fixture",
    )


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Remember each phase's report on the item so fixtures can tell if the test failed."""
    rep = yield
    setattr(item, f"_rep_{rep.when}", rep)
    return rep


# --------------------------------------------------------------------------- leak check


def _shm_entries() -> set[str]:
    """actorlib's shared-memory files that may be this test run's.

    A file names the pid of the driver or node that made it (``actorlib-<pid>-...``).
    Files of a live process outside this run (another actorlib program on the machine)
    are not ours to judge; files of a dead process might be, so they count.
    """
    try:
        names = [n for n in os.listdir(SHM_DIR) if n.startswith(SHM_PREFIX)]
    except FileNotFoundError:
        return set()
    ours = {os.getpid()} | {p.pid for p in _live_children()}
    found = set()
    for name in names:
        pid_text = name[len(SHM_PREFIX):].lstrip("-").split("-", 1)[0]
        pid = int(pid_text) if pid_text.isdigit() else None
        if pid is None or pid in ours or not psutil.pid_exists(pid):
            found.add(name)
    return found


def _live_children() -> list[psutil.Process]:
    """All descendants, zombies included (an unreaped child is a leak too)."""
    return psutil.Process().children(recursive=True)


#: Threads of a connection shared by many tests (the ray backend's): not a test's leak.
SHARED_THREADS: set[threading.Thread] = set()


def _new_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    return [
        t for t in threading.enumerate()
        if t not in before and t not in SHARED_THREADS and t.is_alive()
    ]


@pytest.fixture(autouse=True)
def _leak_check(request: pytest.FixtureRequest) -> Iterator[None]:
    """No thread, child process or /dev/shm segment may outlive a test.

    Autouse fixtures are set up first, so this is torn down after ``rt`` (which also
    depends on it explicitly): the check sees the state after ``shutdown()``.
    """
    threads_before = set(threading.enumerate())
    shm_before = _shm_entries()
    yield
    problems: list[str] = []
    actorlib = _maybe_actorlib()
    if actorlib is not None and actorlib.is_initialized():
        actorlib.shutdown()
        rep = getattr(request.node, "_rep_call", None)
        if rep is not None and rep.passed:
            problems.append("the test left the actorlib runtime initialized")
    gc.collect()
    deadline = time.monotonic() + LEAK_GRACE_S
    while True:
        threads = _new_threads(threads_before)
        children = _live_children()
        shm = _shm_entries() - shm_before
        if not (threads or children or shm) or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    if threads:
        problems.append(f"threads outlived the test: {[t.name for t in threads]}")
    if children:
        desc = []
        for c in children:
            with contextlib.suppress(psutil.Error):
                desc.append(f"{c.pid}:{' '.join(c.cmdline())[:120]}")
            with contextlib.suppress(psutil.Error):
                desc.append(f"({c.status()})")
            with contextlib.suppress(psutil.Error):
                c.kill()
            with contextlib.suppress(psutil.Error, ChildProcessError):
                c.wait(timeout=2)  # reap it, so it does not show up in the next test
        problems.append(f"child processes outlived the test: {desc}")
    if shm:
        problems.append(f"/dev/shm entries outlived the test: {sorted(shm)}")
    if problems:
        pytest.fail("resource leak: " + "; ".join(problems), pytrace=False)


def _maybe_actorlib() -> Any:
    try:
        return importlib.import_module("actorlib")
    except ImportError:
        return None


# --------------------------------------------------------------------------- runtime


@pytest.fixture(params=BACKENDS)
def backend_name(request: pytest.FixtureRequest) -> str:
    """A backend name from BACKENDS; skipped (with the reason) if it cannot be imported."""
    name: str = request.param
    try:
        importlib.import_module("actorlib.backends").load(name)
    except Exception as exc:  # an absent optional dependency, a broken backend
        pytest.skip(f"backend {name!r} unavailable: {type(exc).__name__}: {exc}")
    return name


@pytest.fixture
def rt(backend_name: str, request: pytest.FixtureRequest, _leak_check: None) -> Iterator[Any]:
    """An initialized runtime (4 CPUs) on each backend; shut down after the test.

    ``@pytest.mark.init_kwargs(num_gpus=2, resources={...})`` adds init() arguments.
    """
    import actorlib

    kwargs: dict[str, Any] = {"num_cpus": 4}
    for marker in reversed(list(request.node.iter_markers("init_kwargs"))):
        kwargs.update(marker.kwargs)
    if backend_name == "ray":
        shaped = sorted(RAY_SHARED_CLUSTER_SKIP & {
            k for m in request.node.iter_markers("init_kwargs") for k in m.kwargs
        })
        if shaped:
            pytest.skip(f"the ray tests share one 4-CPU Ray cluster; init({', '.join(shaped)}=) "
                        "would need a cluster of its own")
        request.getfixturevalue("_ray_cluster")
        kwargs.pop("num_cpus")
    info = actorlib.init(backend=backend_name, **kwargs)
    problems: list[str] = []
    try:
        yield info
        if actorlib.is_initialized():
            from actorlib import _testing

            problems = _testing.core_problems()
    finally:
        actorlib.shutdown()
        if backend_name == "ray":
            from ray_local import reset_cluster

            reset_cluster()
    if problems:
        pytest.fail("the core's bookkeeping broke: " + "; ".join(problems), pytrace=False)


@pytest.fixture(scope="session")
def _ray_cluster(request: pytest.FixtureRequest) -> Iterator[str]:
    """The one Ray cluster of this test run (see tests/ray_local.py), this process
    connected to it; requested by ``rt`` for the ray backend."""
    from ray_local import shared_cluster

    yield from shared_cluster(SHARED_THREADS)
