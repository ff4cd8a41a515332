"""The shared suite on the ``sim`` backend: how it runs there, and what it skips and why.

The one place that says which shared tests do not apply to ``sim``, each with its reason
(conftest marks them). Everything else runs unchanged. The suite's runtimes also run with
the idle driver on (a test body that waits on a future, a lock or ``time.sleep`` still
sees its work progress; see ``idle_drive`` in docs/testing.md) and a step budget, so a
test that would hang fails fast with the simulator's report instead.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("ACTORLIB_SIM_IDLE_DRIVE", "0.01")
os.environ.setdefault("ACTORLIB_SIM_MAX_STEPS", "200000")

REAL_TIME = "needs real time: the test measures wall-clock concurrency"
PREEMPTION = (
    "needs preemption: a sync task spins in real time (time.sleep in a loop) until a "
    "cancel interrupts it; sim runs one step at a time and takes a cancel between steps"
)
HOLDS = (
    "needs preemption: a task polls the file system in real time until the driver "
    "releases it; under sim it holds the one running slot, so the driver never runs to "
    "release it"
)

#: test name (all its parameters, or one: ``name[param]`` without the backend's id) ->
#: why it does not apply to ``sim``.
SKIPS: dict[str, str] = {
    "test_cancel_running_sync_task": PREEMPTION,
    "test_bundle_resources_limit_the_work_in_it": REAL_TIME,
    "test_remove_kills_actors_and_ends_tasks": PREEMPTION,
    "test_is_canceled_seen_by_a_sync_task_that_catches_the_cancel": PREEMPTION,
    "test_soft_cancel_raises_keyboard_interrupt_in_the_task[False]": PREEMPTION,
    "test_force_cancel_of_a_running_task_fails_it_at_once": PREEMPTION,
    "test_short_tasks_do_not_wait_behind_a_long_one": HOLDS,
    "test_cancel_a_task_waiting_for_a_cpu_leaves_the_running_ones": HOLDS,
    "test_list_workers_shows_what_each_runs": HOLDS,
    "test_stack_shows_a_task_blocked_in_time_sleep": HOLDS,
    "test_queued_tasks_are_pending_demand": HOLDS,
    "test_example_runs[hyperparameter_search.py]": (
        "needs preemption: a trial trains without a yield point (no get), so one sim step "
        "runs it to the end and early stopping never lands; the example asserts it does"
    ),
}


#: Whole modules whose subject the sim backend does not simulate yet, with the reason.
SKIPPED_MODULES: dict[str, str] = {
    "test_generators.py": "generators are not simulated yet (their work fails with "
    "NotImplementedError on sim)",
}


def mark(item: pytest.Item, backend: str | None) -> None:
    """Skip ``item`` on ``sim`` if SKIPS (or SKIPPED_MODULES) names it."""
    if backend != "sim":
        return
    module_reason = SKIPPED_MODULES.get(item.path.name)
    if module_reason is not None:
        item.add_marker(pytest.mark.skip(reason=f"sim: {module_reason}"))
        return
    name = item.name.replace("[sim-", "[").replace("-sim]", "]").replace("[sim]", "")
    reason = SKIPS.get(name) or SKIPS.get(getattr(item, "originalname", item.name))
    if reason is not None:
        item.add_marker(pytest.mark.skip(reason=f"sim: {reason}"))
