"""Shared fixtures: the backend list, the runtime fixture, the leak check, hypothesis profiles.

Every behavioural test takes the ``rt`` fixture, so it runs once per name in ``BACKENDS``.
Adding a backend means adding its name here; a backend that fails to import shows up as a
skip carrying the import error, never as silently missing tests.

A module marked ``pytestmark = pytest.mark.shared_runtime`` shares one runtime among its
consecutive tests on the same backend with the same ``init_kwargs``, checked clean after
each test (see "shared runtime" below and docs/development.md).
"""

from __future__ import annotations

import compileall
import contextlib
import dataclasses
import gc
import importlib
import importlib.util
import os
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import sim_suite
from hypothesis import HealthCheck, settings

pytest_plugins = ["pytester", "backstop"]  # test_harness.py checks the leak check itself

# The ONE list of backends the behavioural suite runs on ("ray" where Ray is installed).
BACKENDS = ["thread", "process", "cluster", "sim"]
if importlib.util.find_spec("ray") is not None:
    BACKENDS.append("ray")

# Where Ray is installed, the shared suite runs on ray in these modules only: Ray takes
# seconds to start and the whole suite on it took 15.5 min on 2 cores, beyond CI's budget.
# ACTORLIB_TEST_RAY=all puts every module back (docs/development.md). The rest are
# deselected (counted as such by pytest), never silently missing.
RAY_MODULES = frozenset({
    "test_tasks.py", "test_actors.py", "test_objects.py", "test_executor.py",
    # Where the whole suite's first run on ray found bugs (cancels and their interrupts,
    # a get of several refs, a pool's end, sys.exit in a task), none of them holding
    # the shared cluster's CPUs after it.
    "test_cancel_kill.py", "test_wedges.py", "test_pool.py", "test_stdlib_parity.py",
    # Clean on ray once a test's leftovers could no longer hold the shared cluster's CPUs
    # (ray_local.reset_cluster); about 2.5 min together on 2 cores.
    "test_cancel_calls.py", "test_errors.py", "test_actor_thread.py", "test_wait.py",
    "test_generators.py", "test_async_api.py", "test_nested.py", "test_lifecycle.py",
    "test_named_actors.py", "test_concurrency_groups.py", "test_actor_pool.py",
    "test_placement_groups.py", "test_limited_tasks.py",
    # Ray's utilities (Queue, ActorPool, runtime_env classes): a Queue shut down on ray
    # left its waiting getters hanging for good while the module ran elsewhere only.
    "test_ray_api.py",
})
RAY_ALL = os.environ.get("ACTORLIB_TEST_RAY", "") == "all"

# The ray backend's tests share one Ray cluster (Ray takes seconds to start), so the
# one thing a test cannot do there is shape that cluster: init() arguments that size
# it are skipped on ray, for this reason (docs/backends.md, "The ray backend"). That
# includes ``labels`` (a node's labels: init() refuses them once the process has called
# ray.init, as the shared cluster's connection has; test_labels.py's module-wide labels).
RAY_SHARED_CLUSTER_SKIP = frozenset({
    "num_cpus", "num_gpus", "resources", "object_store_memory", "labels",
})

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
    "caller's order is not kept across the restart)"
)
# actorlib's state API (and what reads it back: the dashboard, the metrics rows, `stack`,
# `timeline`) does not see Ray's work, which Ray's own tools observe (docs/ray-backend.md,
# "observability"): actorlib.util.state raises NotSupportedError there, naming them.
_RAY_STATE = "difference: Ray's work is observed by Ray's tools, not actorlib's state API: "
RAY_EXCEPTIONS: dict[str, str] = {
    "test_a_cancel_that_lands_in_a_finalizer_still_interrupts_the_task": (
        "not yet understood on ray: in about one cancel in six the task's actor logs "
        "'Timed out waiting for seq_no N ... Cancelling all queued tasks' (one of the "
        "thousands of calls the task queued in Ray's core worker never reached it), and "
        "the task's last get waits past the test's 30 s: not strict"),
    "test_actor_kept_alive_by_handle_in_another_actor": _RAY_OWNS_LIFETIMES,
    "test_detached_actor_outlives_its_handles": _RAY_OWNS_LIFETIMES,
    "test_nested_ref_keeps_inner_alive": _RAY_OWNS_LIFETIMES,
    "test_ref_inside_task_result_keeps_inner_alive": _RAY_OWNS_LIFETIMES,
    "test_ref_in_actor_state_keeps_object_alive": _RAY_OWNS_LIFETIMES,
    "test_pending_task_argument_keeps_object_alive": _RAY_OWNS_LIFETIMES,
    "test_objects.py::test_objects_freed_exactly_when_last_ref_dies": _RAY_OWNS_LIFETIMES,
    # The same check over drawn examples, which may not reach a nested ref.
    "test_properties.py::test_objects_freed_exactly_when_last_ref_dies": _RAY_OWNS_LIFETIMES + (
        " (a property test: the examples drawn may not nest a ref: not strict)"),
    "test_an_actor_killed_by_an_error_of_the_drivers_script_has_it_as_cause": (
        "difference: Ray's ActorDiedError keeps only the message of the constructor's error"
    ),
    "test_a_print_in_a_task_reaches_the_driver_stdout_with_its_prefix": _RAY_OUTPUT,
    "test_an_actor_prints_with_its_class_name": _RAY_OUTPUT,
    "test_stderr_reaches_the_driver_stderr": _RAY_OUTPUT,
    "test_redirect_stdout_in_the_driver_captures_task_output": _RAY_OUTPUT,
    "test_many_lines_from_many_tasks_arrive_whole": _RAY_OUTPUT,
    "test_logging_in_a_task_appears_in_the_driver_with_its_level": _RAY_OUTPUT,
    "test_every_process_actorlib_starts_says_what_it_is": _RAY_OUTPUT,
    # In the run's shared connection init(logging_config=) is refused (ray.init has run);
    # alone, it starts a Ray of its own and its workers' lines come through Ray's log
    # monitor, which had not delivered the task's or the actor's by shutdown() (4 runs).
    "test_a_logging_config_lays_out_every_process_s_lines_with_where_they_came_from": (
        _RAY_OUTPUT + ", delivered by Ray's log monitor after the work is done, not by "
        "shutdown(); and init(logging_config=) is refused once ray.init has run: not strict"),
    "test_reinit_after_shutdown": _RAY_SHARED,
    "test_log_to_driver_false_keeps_task_output_out_of_the_driver_streams": (
        _RAY_SHARED + " (log_to_driver is the shared connection's, whose ray.init had it "
        "on: init(log_to_driver=False) is refused there; run alone it starts a Ray of its "
        "own and passes: not strict)"),
    "test_executor.py::test_starts_and_stops_its_own_runtime": _RAY_SHARED + (
        " (run alone it starts a Ray of its own and passes: not strict)"),
    "test_init_strings_of_a_class_only_the_driver_can_import_do_not_stop_the_work": (
        _RAY_SHARED + " (its setup hook, logging config and labels go to ray.init, which the "
        "shared cluster's driver has called; run alone it starts a Ray of its own and "
        "passes: not strict)"),
    "test_objects_spill_into_the_directory_init_names": _RAY_SHARED + (
        " (object_spilling_directory goes to ray.init, which the shared cluster's driver "
        "has called: refused there; run alone it starts a Ray of its own, where Ray "
        "spills: not strict)"),
    "test_call_order_survives_actor_restart": _RAY_RESTARTS + (
        " (a run where no call is in flight at the kill keeps the order: one clean-clone "
        "CI in four: not strict)"),
    "test_restart_without_task_retries_fails_pending_calls": _RAY_RESTARTS,
    "test_a_constructor_error_whose_class_only_the_worker_can_load_keeps_its_message": (
        "difference: Ray cannot unpickle the constructor's error in the driver and raises "
        "UnserializableException (the original traceback as text), which the ray backend "
        "raises as a SystemFailureError"),
    "test_is_canceled_seen_by_an_async_task_that_catches_the_cancel": (
        "difference: Ray ends a cancelled task that runs an async def function by "
        "interrupting its worker, so the coroutine never sees asyncio.CancelledError"),
    # Measured on plain Ray 2.60 (ray.cancel of an actor task), which the ray backend
    # passes the cancel to.
    "test_cancel_calls.py::test_a_queued_call_is_cancelled_and_never_runs": (
        "difference: Ray 2.60 does not end a queued actor call when it is cancelled: the "
        "call still runs when the actor reaches it"),
    # init(dashboard=True) raises NotSupportedError there: the dashboard's rows are the
    # state API's, which the ray backend does not serve (Ray's own dashboard shows Ray's).
    "test_dashboard.py::test_the_snapshot_shows_a_workload_and_follows_it":
        _RAY_STATE + "the dashboard serves its rows",
    "test_dashboard.py::test_bad_requests_get_a_clear_error":
        _RAY_STATE + "the dashboard serves its rows",
    "test_dashboard.py::test_metrics_and_jobs_are_served_in_the_snapshot_and_as_prometheus_text":
        _RAY_STATE + "the dashboard serves its rows",
    "test_dashboard.py::test_the_timeline_endpoint_serves_the_chrome_trace":
        _RAY_STATE + "the dashboard serves its rows",
    **dict.fromkeys(
        (f"test_metrics.py::{name}" for name in (
            "test_counter_sums_increments_from_the_driver_tasks_and_nested_tasks",
            "test_gauge_and_histogram_recorded_in_an_actor",
            "test_tags_and_values_are_checked_as_ray_checks_them",
            "test_a_name_recorded_as_two_kinds_keeps_the_first",
            "test_names_and_tags_of_a_str_class_only_the_driver_can_import_are_recorded",
        )),
        _RAY_STATE + "these tests read its metrics rows back "
        "(metrics go to Ray's own metrics there)",
    ),
    **dict.fromkeys(
        (f"test_observe.py::{name}" for name in (
            "test_list_workers_shows_what_each_runs",
            "test_stack_shows_a_task_blocked_in_time_sleep",
            "test_stack_names_what_it_cannot_find", "test_timeline_holds_one_span_per_task",
            "test_a_running_task_or_live_actor_names_its_process_at_first_sight",
        )),
        _RAY_STATE + "its workers and tasks (ray stack/timeline are Ray's)",
    ),
    "test_runtime_env_files.py::test_job_env_changed_between_inits_is_shipped_anew": (
        "difference: Ray keeps a node's extracted working_dir / py_modules in its own "
        "cache after shutdown() (deleted once unused packages outgrow that cache), where "
        "actorlib's nodes delete their copies at shutdown()"),
    # Found by the whole suite on ray (ACTORLIB_TEST_RAY=all); these modules are not in
    # RAY_MODULES, so CI does not run them there.
    **dict.fromkeys(
        (f"test_runtime_env_errors.py::{name}" for name in (
            "test_a_package_folder_the_node_cannot_make_fails_the_work_then_heals",
            "test_an_idle_worker_whose_folder_was_removed_is_not_reused",
        )),
        "difference: a node's extracted working_dir is Ray's (its runtime_env agent's "
        "cache): the test damages that copy, and the next work then waited on Ray past "
        "the test's timeout, where actorlib's nodes make the copy again",
    ),
    "test_user_process_state.py::test_shutdown_is_prompt_when_tasks_left_children_running": (
        "difference: Ray ends the processes a task or an actor left running when its "
        "worker exits, so they may be gone before the script ends them itself (as soon "
        "as Ray's worker exits: one run in two here: not strict)"),
    "test_user_process_state.py::test_processes_user_code_starts_can_be_terminated": (
        "difference: Ray's workers run tasks with SIGINT blocked (plain Ray 2.60: SigBlk "
        "0x2 in a task and in the processes it starts); SIGTERM and SIGHUP are not "
        "blocked, so terminate() still ends them"),
    "test_runtime_context_names_the_worker_actor_and_accelerators":
        _RAY_STATE + "the test finds get_worker_id() in its list_workers()",
    **dict.fromkeys(
        (f"test_state_api.py::{name}" for name in (
            "test_list_jobs_shows_this_driver", "test_workload_states",
            "test_objects_and_nodes", "test_placement_groups", "test_bad_arguments",
            "test_rows_read_as_attributes_too_as_rays_state_objects_do",
            "test_get_by_id_of_every_kind_as_ray_does",
            "test_calls_queued_in_the_actor_wait_for_a_place_to_run",
        )),
        _RAY_STATE + "it serves nodes only there (actorlib.util.state raises "
        "NotSupportedError for the other kinds; Ray's own ray.util.state lists Ray's work)",
    ),
}

# Longer in a pytest-xdist worker: two workers keep both of 2 cores busy, and a pool's
# terminated tasks once took longer than 2 s to end there.
LEAK_GRACE_S = float(
    os.environ.get(
        "ACTORLIB_TEST_LEAK_GRACE", "5.0" if os.environ.get("PYTEST_XDIST_WORKER") else "2.0"
    )
)
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


def _backend_of(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("backend_name") if callspec is not None else None


#: Tests that use Ray beyond the ``ray`` backend's parameter: their modules start Rays of
#: their own, or they join the run's shared one.
_RAY_SCOPE_MODULES = ("test_ray_backend.py", "test_ray_compat.py", "test_ray_multinode.py")
_RAY_SCOPE_TESTS = ("test_on_ray_example_runs", "test_the_ray_reset_ends_what_a_test_left")


def ray_apart_scope(nodeid: str) -> str:
    """The work unit of a test under ``pytest -n N``: every test that uses Ray is one
    unit, run by one worker after every other unit has been handed out (so the run has
    one Ray at a time, mostly alone, as in one process); any other test goes with its
    module (whose module-scoped clusters start once)."""
    module, _, name = nodeid.partition("::")
    if ("[ray]" in name or "[ray-" in name or module.endswith(_RAY_SCOPE_MODULES)
            or name.startswith(_RAY_SCOPE_TESTS)):
        return "ray"
    return module


@pytest.hookimpl(optionalhook=True, tryfirst=True)  # before pytest-xdist's own choice
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``pytest -n N`` (``--dist load``, the default) hands out :func:`ray_apart_scope`
    units; any other ``--dist`` is pytest-xdist's own."""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class RayApart(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return ray_apart_scope(nodeid)

        def _assign_work_unit(self, node: Any) -> None:
            # Ray's unit last, so that its tests run mostly alone, as in one process:
            # beside another worker's tests, a stream's end on ray failed one run in two.
            queue = self.workqueue
            if len(queue) > 1 and next(iter(queue)) == "ray":
                queue.move_to_end("ray")
            super()._assign_work_unit(node)

        def remove_node(self, node: Any) -> str | None:
            # A worker that crashed (the backstop ends a wedged test's worker) gives its
            # unit's unfinished tests back, and pytest-xdist would run the one that
            # crashed again on the next worker, and again: it counts as done here.
            workload = self.assigned_work.get(node, {})
            crashed = next((nodeid for unit in workload.values()
                            for nodeid, done in unit.items() if not done), None)
            for unit in workload.values():
                if crashed in unit:
                    unit[crashed] = True
            # pytest-xdist gives back every unit the worker had, finished ones first: a
            # replacement handed one has nothing to run, so never asks for more, and
            # the run waits for ever. Only unfinished units go back.
            for scope in [s for s, unit in workload.items() if all(unit.values())]:
                del workload[scope]
            found = super().remove_node(node)
            return crashed if crashed is not None else found

        def schedule(self) -> None:
            replacing = self.collection is not None  # a lost worker's replacement is in
            super().schedule()
            if replacing:
                for node in self.nodes:
                    self._top_up(node)

        def _top_up(self, node: Any) -> None:
            # A worker runs a test only once it holds the next one or is told to stop,
            # and asks for more only as tests end: pytest-xdist hands a replacement one
            # unit, and one with a single test left (a lost worker's) never ran. So it
            # gets a second test, or is told to stop when there is nothing more.
            while (not node.shutting_down and self.workqueue
                   and self._pending_of(self.assigned_work[node]) < 2):
                self._assign_work_unit(node)
            if not self.workqueue and not node.shutting_down:
                node.shutdown()

    return RayApart(config, log)


_RUN_BEGAN = time.time()


@pytest.hookimpl(optionalhook=True)
def pytest_handlecrashitem(crashitem: str, report: pytest.TestReport, sched: Any) -> None:
    """A worker lost under ``pytest -n N`` reports nothing of why; if Ray aborted it (a
    failed check, logged only in Ray's log files), the report says so."""
    from ray_local import ray_fatal_lines

    fatal = ray_fatal_lines(_RUN_BEGAN)
    if fatal:
        report.longrepr = (f"{report.longrepr}\n\nRay's fatal log lines since the run "
                           "began (the last ones):\n" + "\n".join(fatal))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark what the fast development subset leaves out (see docs/development.md):
    ``cluster`` (a head, a node and workers per test) and ``chaos`` (fault injection);
    and each test on the ``thread`` or ``process`` backend with its backend's name. On
    ``ray``, keep the ``RAY_MODULES`` subset unless ``ACTORLIB_TEST_RAY=all``."""
    if not RAY_ALL:
        off = [i for i in items if _backend_of(i) == "ray" and i.path.name not in RAY_MODULES]
        if off:
            config.hook.pytest_deselected(items=off)
            dropped = set(map(id, off))
            items[:] = [i for i in items if id(i) not in dropped]
    for item in items:
        backend = _backend_of(item)
        if backend == "cluster" or "cluster" in item.path.name:
            item.add_marker(pytest.mark.cluster)
        elif backend in ("thread", "process"):
            item.add_marker(getattr(pytest.mark, backend))
        sim_suite.mark(item, backend)
        name = getattr(item, "originalname", "")
        reason = (
            RAY_EXCEPTIONS.get(name, RAY_EXCEPTIONS.get(f"{item.path.name}::{name}"))
            if backend == "ray" else None
        )
        if reason is not None:
            item.add_marker(pytest.mark.xfail(reason=reason, strict="not strict" not in reason))


def _freeze_heap() -> None:
    """Move every object alive now out of the collector's sight (``gc.freeze``).

    A full collection over a collected suite walks ~125,000 objects (0.1-0.7 s), and the
    leak check and the tests call ``gc.collect()`` thousands of times. Frozen objects are
    those alive after a collection, so no garbage is kept; an object frozen and dropped
    later is never collected (memory only: no runtime is alive at a freeze).
    """
    gc.collect()
    gc.freeze()


def pytest_collection_finish(session: pytest.Session) -> None:
    _freeze_heap()


_FROZEN_UP_TO: list[str] = [""]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Freeze again as each module starts: what earlier modules left (hypothesis's
    records, reports) would otherwise be walked by every later collection."""
    module = str(item.path)
    if module != _FROZEN_UP_TO[0] and _shared is None:
        actorlib = _maybe_actorlib()
        if actorlib is None or not actorlib.is_initialized():
            _FROZEN_UP_TO[0] = module
            _freeze_heap()


def _compile_package() -> None:
    """Write actorlib's bytecode caches once, before any worker starts.

    Every worker, node and head this suite starts is a fresh interpreter importing
    actorlib. Under ``PYTHONDONTWRITEBYTECODE`` (set in some CI images) and in a fresh
    clone, no ``.pyc`` exists and each of those thousands of interpreters compiles every
    module from source again: about 80 ms of CPU per worker boot on this machine. An
    installed package has its caches; so do the tests' interpreters after this.
    """
    spec = importlib.util.find_spec("actorlib")
    if spec is None or spec.origin is None:
        return
    package = Path(spec.origin).parent
    for folder in {package, (package / "backends").resolve()}:
        if folder.is_dir() and os.access(folder, os.W_OK):
            compileall.compile_dir(folder, quiet=2)


def pytest_configure(config: pytest.Config) -> None:
    _compile_package()
    config.addinivalue_line(
        "markers", "cluster: needs a cluster (a head and nodes as processes): slow to start"
    )
    config.addinivalue_line(
        "markers", "chaos: fault injection under load (ACTORLIB_CHAOS_SECONDS sets the length)"
    )
    config.addinivalue_line("markers", "thread: a test on the thread backend")
    config.addinivalue_line("markers", "process: a test on the process backend")
    config.addinivalue_line(
        "markers",
        "init_kwargs(**kw): extra keyword arguments for actorlib.init() in the rt fixture",
    )
    config.addinivalue_line(
        "markers",
        "shared_runtime: the rt fixture shares one runtime among consecutive tests of the "
        "module on the same backend with the same init_kwargs (checked clean after each)",
    )
    config.addinivalue_line(
        "markers", "fresh_runtime: this test gets a runtime of its own in a shared_runtime module"
    )
    config.addinivalue_line(
        "markers",
        "slow: starts interpreters or tools of its own (scripts, mypy, pytest), injects "
        "crashes and freezes, or is a property test: left out of the quick loop",
    )


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Remember each phase's report on the item so fixtures can tell if the test failed."""
    rep = yield
    setattr(item, f"_rep_{rep.when}", rep)
    return rep


_NEXT_ITEM = pytest.StashKey["pytest.Item | None"]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Let fixtures see the next test: the shared runtime stops after its last user."""
    item.stash[_NEXT_ITEM] = nextitem


def _passed(item: pytest.Item) -> bool:
    return all(
        getattr(item, f"_rep_{when}", None) is not None and getattr(item, f"_rep_{when}").passed
        for when in ("setup", "call")
    )


# --------------------------------------------------------------------------- leak check


def _shm_snapshot() -> set[str]:
    """Every actorlib shared-memory file there now, whoever made it: what a test found.

    Not filtered by owner as :func:`_shm_entries` is: a file a test finds is never its
    leak, even one whose pid becomes ours later. A node killed by an earlier test leaves
    its files until a sweep; once it is gone, its pid is judged by the process of this
    run that had the pid before (pids wrap), and its files would become a later test's.
    """
    try:
        return {n for n in os.listdir(SHM_DIR) if n.startswith(SHM_PREFIX)}
    except FileNotFoundError:
        return set()


def _shm_entries() -> set[str]:
    """actorlib's shared-memory files that belong to this test run.

    A file names the pid of the driver or node that made it (``actorlib-<pid>-...``). It
    is the run's if that process is, or was, this one or one of its descendants
    (``_RUN_PIDS``): files of another actorlib program on the machine, running or killed,
    are not ours to judge, even one whose pid was once ours (pids wrap at 32768 here):
    a live process under a recorded pid counts only if it started when ours did. A name
    without a pid counts (it cannot be placed).
    """
    try:
        names = [n for n in os.listdir(SHM_DIR) if n.startswith(SHM_PREFIX)]
    except FileNotFoundError:
        return set()
    _live_children()  # records the descendants living now in _RUN_PIDS
    found = set()
    for name in names:
        pid_text = name[len(SHM_PREFIX) :].lstrip("-").split("-", 1)[0]
        if not pid_text.isdigit() or _ours(int(pid_text)):
            found.add(name)
    return found


def _started(pid: int) -> float | None:
    """When process ``pid`` started; None if there is none."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _ours(pid: int) -> bool:
    """Whether ``pid`` is, or was, a process of this run (not a reuse of its pid)."""
    if pid not in _RUN_PIDS:
        return False
    started = _started(pid)
    return started is None or _RUN_PIDS[pid] in (None, started)


# The processes of this test run: pytest itself and every descendant seen so far, by a
# check (``_live_children``) or as ``subprocess`` started it (a short-lived child may
# make files and die between two checks). Only their /dev/shm files count as leaks.
_RUN_PIDS: dict[int, float | None] = {os.getpid(): _started(os.getpid())}  # pid: start
_popen_init = subprocess.Popen.__init__


def _recording_popen_init(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
    _popen_init(self, *args, **kwargs)
    _RUN_PIDS[self.pid] = _started(self.pid)  # None if it already ended: still ours


subprocess.Popen.__init__ = _recording_popen_init  # type: ignore[method-assign]


def _live_children() -> list[psutil.Process]:
    """All descendants, zombies included (an unreaped child is a leak too)."""
    children = psutil.Process().children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.Error):
            _RUN_PIDS[child.pid] = child.create_time()
    return children


#: Threads of a connection shared by many tests (the ray backend's): not a test's leak.
SHARED_THREADS: set[threading.Thread] = set()


def _new_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    # While a shared connection is up, a thread of its own (Ray's, in C++) shows up as a
    # dummy thread the first time it calls into Python (a completion callback): not a leak.
    shared = bool(SHARED_THREADS)
    return [
        t for t in threading.enumerate()
        if t not in before and t not in SHARED_THREADS and t.is_alive()
        and not (shared and isinstance(t, threading._DummyThread))
    ]


def _leaks(threads_before: set[threading.Thread], shm_before: set[str]) -> list[str]:
    """With no runtime left: threads, child processes and /dev/shm files still there
    after the grace period (the processes are killed, so the next test starts clean)."""
    gc.collect()
    deadline = time.monotonic() + LEAK_GRACE_S
    while True:
        threads = _new_threads(threads_before)
        children = _live_children()
        shm = _shm_entries() - shm_before
        if not (threads or children or shm) or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    problems: list[str] = []
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
    return problems


@pytest.fixture(autouse=True)
def _leak_check(request: pytest.FixtureRequest) -> Iterator[None]:
    """No thread, child process or /dev/shm segment may outlive a test.

    Autouse fixtures are set up first, so this is torn down after ``rt`` (which also
    depends on it explicitly): the check sees the state after ``shutdown()``. A test on
    a shared runtime is checked against the state it found instead, and the runtime is
    shut down and checked like this after the last test sharing it.
    """
    item = request.node
    key = _share_key(item)
    problems: list[str] = []
    if _shared is not None and _shared.key != key:  # normally stopped by the test before
        problems = _stop_shared()
        if problems:
            pytest.fail(
                f"resource leak of the runtime shared up to {_shared_last}: " + "; ".join(problems),
                pytrace=False,
            )
    if key is not None and _shared is None:
        request.getfixturevalue("backend_name")  # an unavailable backend skips here
        _start_shared(key)
    threads_before = set(threading.enumerate())
    shm_before = _shm_snapshot()
    children_before = {c.pid for c in _live_children()}
    yield
    actorlib = _maybe_actorlib()
    if key is not None and _shared is not None:
        problems = _after_shared_test(item, threads_before, shm_before, children_before)
    else:
        if actorlib is not None and actorlib.is_initialized():
            actorlib.shutdown()
            rep = getattr(request.node, "_rep_call", None)
            if rep is not None and rep.passed:
                problems.append("the test left the actorlib runtime initialized")
        problems += _leaks(threads_before, shm_before)
    if problems:
        pytest.fail("resource leak: " + "; ".join(problems), pytrace=False)


def _maybe_actorlib() -> Any:
    try:
        return importlib.import_module("actorlib")
    except ImportError:
        return None


# --------------------------------------------------------------------------- shared runtime
#
# Starting a runtime per test is most of the cost of a short test (a process backend boots
# a worker interpreter first). A module marked ``shared_runtime`` lets consecutive tests
# on the same backend, with the same init_kwargs, use one runtime; ``backend_name`` is
# module-scoped so pytest runs a module's tests backend by backend. The runtime is shut
# down after the last test that shares it (the next test needs another one, or none),
# and checked then like a fresh one (no thread, process or /dev/shm file left).
#
# Sharing must never let one test's leftovers reach the next, so after each test the
# runtime must be back as the test found it, within LEAK_GRACE_S: no task, actor, actor
# call or queued work, no actor name taken, the same live objects (no leaked ref), every
# resource available, the core's bookkeeping intact, and no thread, child process or
# /dev/shm file the runtime does not keep between tests (its task threads, its idle
# worker processes). Otherwise the test fails, naming what it left, and the runtime is
# shut down, so the next test starts on a fresh one. A test that fails stops it too.
# Tests that change the runtime as a whole (shut it down, kill workers, set process-wide
# state in workers) are marked ``fresh_runtime`` in a shared module.

# Backends whose runtime tests may share. On the cluster, a node keeps idle workers
# between tests as the process backend does; they are told from leftovers by their title
# (``_cluster_pool``).
SHARED_BACKENDS = ("thread", "process", "cluster")

# Threads a runtime starts when work first needs them and keeps until shutdown.
_RUNTIME_THREADS = re.compile(r"actorlib-(core|task-\d+|futures|output|io|wait-\d+|arena)")
# /dev/shm files a runtime makes when first needed and keeps until shutdown: the object
# arena's segments and index, and each process's pins of arena extents.
_RUNTIME_SHM = re.compile(r"actorlib-\d+-[0-9a-f]+-(arena-(\d+|index)|pins-\d+)")


@dataclasses.dataclass
class _Shared:
    key: tuple[Any, ...]
    info: Any  # what init() returned
    runtime: Any  # actorlib.session.runtime() then: a test that replaced it is caught
    threads_before: set[threading.Thread]  # before init, for the check after shutdown
    shm_before: set[str]
    objects: set[str]  # live right after init


_shared: _Shared | None = None
_shared_last = ""  # the last test that used it, for messages
_shared_counts = {"runtimes": 0, "tests": 0}


def _init_kwargs(node: pytest.Item) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"num_cpus": 4}
    for marker in reversed(list(node.iter_markers("init_kwargs"))):
        kwargs.update(marker.kwargs)
    return kwargs


def _share_key(item: pytest.Item | None) -> tuple[Any, ...] | None:
    """What a test's ``rt`` may be shared by: (module, backend, init kwargs); None if the
    test gets a runtime of its own (or none)."""
    if item is None or "rt" not in getattr(item, "fixturenames", ()):
        return None
    if item.get_closest_marker("shared_runtime") is None:
        return None
    if item.get_closest_marker("fresh_runtime") is not None:
        return None
    callspec = getattr(item, "callspec", None)
    backend = callspec.params.get("backend_name") if callspec is not None else None
    if backend not in SHARED_BACKENDS:
        return None
    return (str(item.path), backend, _init_kwargs(item))


def _start_shared(key: tuple[Any, ...]) -> None:
    global _shared
    import actorlib
    from actorlib import _testing, session

    threads_before = set(threading.enumerate())
    shm_before = _shm_snapshot()
    info = actorlib.init(backend=key[1], **key[2])
    _shared_counts["runtimes"] += 1
    _shared = _Shared(
        key,
        info,
        session.runtime(),
        threads_before,
        shm_before,
        _testing.holdings()["objects"],
    )


def _stop_shared() -> list[str]:
    """Shut the shared runtime down; what it left behind."""
    global _shared
    import actorlib

    shared, _shared = _shared, None
    assert shared is not None
    actorlib.shutdown()
    return _leaks(shared.threads_before, shared.shm_before)


def _after_shared_test(
    item: pytest.Item,
    threads_before: set[threading.Thread],
    shm_before: set[str],
    children_before: set[int],
) -> list[str]:
    """Check a test left the shared runtime as it found it; stop the runtime after its
    last test, or at once if it is not clean (or the test failed)."""
    global _shared_last
    from actorlib import session

    assert _shared is not None
    _shared_last = item.nodeid
    _shared_counts["tests"] += 1
    problems: list[str] = []
    current = session.runtime()
    if current is not _shared.runtime:
        if current is not None:  # init() again after a shutdown(): not the shared one
            problems.append("the test replaced the shared runtime: mark it fresh_runtime")
        return problems + _stop_shared()
    if not _passed(item):  # its failure is reported; its leftovers go with the runtime
        return _stop_shared()
    problems = _leftovers(threads_before, shm_before, children_before)
    if problems:
        problems = [
            "the test left the shared runtime unclean (clean up in the test, or mark it "
            "@pytest.mark.fresh_runtime): " + "; ".join(problems)
        ]
    if problems or _share_key(item.stash.get(_NEXT_ITEM, None)) != _shared.key:
        problems += _stop_shared()
    return problems


def _leftovers(
    threads_before: set[threading.Thread], shm_before: set[str], children_before: set[int]
) -> list[str]:
    """What the last test left in the shared runtime, after waiting LEAK_GRACE_S for it
    to go (work finishing, actors stopping, refs dropped); [] if it is back as it was."""
    import actorlib
    from actorlib import _testing

    assert _shared is not None
    deadline = time.monotonic() + LEAK_GRACE_S
    while True:
        held = _testing.holdings()
        found = [f"core: {p}" for p in held["problems"]]
        for what in ("tasks", "calls", "queued"):
            if held[what]:
                found.append(f"{held[what]} {what} pending")
        if held["actors"]:
            found.append(f"live actors {sorted(held['actors'])}")
        if held["names"]:
            found.append(f"actor names taken {held['names']}")
        if held["objects"] != _shared.objects:
            found.append(f"live objects {sorted(held['objects'] - _shared.objects)}")
            if _shared.objects - held["objects"]:
                found.append(f"objects gone {sorted(_shared.objects - held['objects'])}")
        total, available = actorlib.cluster_resources(), actorlib.available_resources()
        if any(abs(total[r] - available.get(r, 0.0)) > 1e-9 for r in total):
            found.append(f"resources held: {available} of {total} available")
        threads = [
            t.name for t in _new_threads(threads_before) if not _RUNTIME_THREADS.fullmatch(t.name)
        ]
        if threads:
            found.append(f"threads {threads}")
        pool = _testing.idle_worker_pids()
        if _shared.key[1] == "cluster":
            pool |= _cluster_pool()
        children = [c.pid for c in _live_children() if c.pid not in children_before | pool]
        if children:
            found.append(f"child processes {children} (not idle workers)")
        shm = [n for n in _shm_entries() - shm_before if not _RUNTIME_SHM.fullmatch(n)]
        if shm:
            found.append(f"/dev/shm entries {sorted(shm)}")
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(0.05)


def _cluster_pool() -> set[int]:
    """A private cluster's daemons and its nodes' task workers with no actor in them.

    A node names a task worker ``actorlib::worker`` and a worker hosting an actor after its
    class, so a live actor's process (the core lists its actor) or a dead one's (a leak)
    is never taken for the pool; a busy task worker shows as a pending task instead.
    """
    pool: set[int] = set()
    for proc in _live_children():
        with contextlib.suppress(psutil.Error):
            title = (proc.cmdline() or [""])[0]
            daemon = title in ("actorlib::head", "actorlib::node")
            if daemon or (title == "actorlib::worker"
                          and proc.parent().cmdline()[:1] == ["actorlib::node"]):
                pool.add(proc.pid)
    return pool


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _shared is not None:  # the run was cut short (-x, Ctrl-C)
        _stop_shared()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _shared_counts["tests"]:
        terminalreporter.write_line(
            f"shared runtime: {_shared_counts['tests']} tests ran on "
            f"{_shared_counts['runtimes']} shared runtimes"
        )


# --------------------------------------------------------------------------- runtime


@pytest.fixture(scope="module", params=BACKENDS)
def backend_name(request: pytest.FixtureRequest) -> str:
    """A backend name from BACKENDS; skipped (with the reason) if it cannot be imported.

    Module-scoped, so pytest runs a module's tests backend by backend (a shared runtime
    serves a whole run of them)."""
    name: str = request.param
    if name == "ray":
        # Every Ray this process starts (the shared cluster, an Executor's own) runs
        # without token authentication: after a Ray session with it, Ray 2.60 kills the
        # actors a later connection to a cluster without it creates.
        from ray_local import RAY_ENV

        os.environ.update(RAY_ENV)
    try:
        importlib.import_module("actorlib.backends").load(name)
    except Exception as exc:  # an absent optional dependency, a broken backend
        pytest.skip(f"backend {name!r} unavailable: {type(exc).__name__}: {exc}")
    return name


@pytest.fixture
def rt(backend_name: str, request: pytest.FixtureRequest, _leak_check: None) -> Iterator[Any]:
    """An initialized runtime (4 CPUs) on each backend; shut down after the test.

    ``@pytest.mark.init_kwargs(num_gpus=2, resources={...})`` adds init() arguments. In
    a ``shared_runtime`` module the runtime may be one an earlier test started
    (``_leak_check`` starts, checks and stops it).
    """
    import actorlib

    if _shared is not None and _shared.key == _share_key(request.node):
        yield _shared.info
        return
    kwargs = _init_kwargs(request.node)
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

            broken = _testing.core_problems()
            if broken:
                problems.append("the core's bookkeeping broke: " + "; ".join(broken))
    finally:
        actorlib.shutdown()
        if backend_name == "ray":
            from ray_local import reset_cluster

            # Before the next test: nothing of this one holds the shared cluster's CPUs.
            problems += reset_cluster()
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


@pytest.fixture(scope="session")
def _ray_cluster(request: pytest.FixtureRequest) -> Iterator[str]:
    """The one Ray cluster of this test run (see tests/ray_local.py), this process
    connected to it; requested by ``rt`` for the ray backend."""
    from ray_local import shared_cluster

    yield from shared_cluster(SHARED_THREADS)


# --------------------------------------------------------------------------- command line


@pytest.fixture
def tmp_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This process and its children keep sessions under ``tmp_path``."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    for name in ("ACTORLIB_ADDRESS", "ACTORLIB_CLUSTER_TOKEN", "ACTORLIB_CLUSTER_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    env = dict(os.environ)
    env["TMPDIR"] = str(tmp_path)
    return env
