"""The shared suite on the ``sim`` backend: how it runs there, and what it skips and why.

The one place that says which shared tests do not apply to ``sim``, each with its reason
(conftest marks them). Everything else runs unchanged. The suite's runtimes also run with
the idle driver on (a test body that waits on a future, a lock or ``time.sleep`` still
sees its work progress; see ``idle_drive`` in docs/testing.md), preemption on (a task that
spins in real time until the driver or a cancel releases it runs on beside the
simulation; ``preempt``) and a step budget, so a test that would hang fails fast with the
simulator's report instead.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("ACTORLIB_SIM_IDLE_DRIVE", "0.01")
os.environ.setdefault("ACTORLIB_SIM_MAX_STEPS", "200000")
os.environ.setdefault("ACTORLIB_SIM_PREEMPT", "0.05")

REAL_TIME = "needs real time: the test measures wall-clock concurrency"
#: test name (all its parameters, or one: ``name[param]`` without the backend's id) ->
#: why it does not apply to ``sim``.
CTRL_C = (
    "needs real time: a real SIGINT is to land while the driver blocks in get, but under "
    "sim that get's timeout passes first, in virtual time"
)
#: The futures and pool results actorlib makes wait as a ``get`` does on sim (through
#: the simulator's hook, in virtual time), so the same holds for them.
CTRL_C_FUTURE = (
    "needs real time: a real SIGINT is to land while the driver blocks on a future or a "
    "pool's result, which waits as a get does there: the timeout of the get in the call it "
    "waits for passes first, in virtual time"
)
SKIPS: dict[str, str] = {
    "test_bundle_resources_limit_the_work_in_it": REAL_TIME,
    "test_ctrl_c_reaches_a_blocked_get_whichever_thread_receives_it": CTRL_C,
    "test_an_interrupted_get_stops_watching": CTRL_C,
    "test_ctrl_c_reaches_a_blocked_ref_future_whichever_thread_receives_it": CTRL_C_FUTURE,
    "test_ctrl_c_reaches_a_blocked_apply": CTRL_C_FUTURE,
    "test_ctrl_c_reaches_a_blocked_map_or_imap": CTRL_C_FUTURE,
    "test_ctrl_c_reaches_a_main_thread_waiting_for_a_call": CTRL_C_FUTURE,
    "test_map_read_on_another_thread_waits_through_later_results": (
        "needs real time: a reader on another thread is to wait, in real time, while the "
        "driver lets the later calls end; under sim the earlier call's get of its gate "
        "times out first, in virtual time"
    ),
    "test_a_cancel_that_lands_in_a_finalizer_still_interrupts_the_task": (
        "the task is to spin making calls, with no yield point, until the cancel lands: "
        "sim runs such a task beside the simulation, which then runs its calls far slower "
        "than it makes them (600,000 made in 8 s, 16,500 run), so the driver sees it "
        "running only after its deadline, and its last call waits behind the rest past "
        "the test's timeout. Sim routes a cancel's interrupt that lands in a finalizer "
        "back to the task as thread does (late_interrupts.keep_cancels)"
    ),
    "test_example_runs[hyperparameter_search.py]": (
        "needs real time: a trial trains without a yield point (no get), so whether early "
        "stopping lands depends on when real time preempts it (preempt), and a cancel that "
        "arrives while it is between two preemptions is late; the example asserts both"
    ),
}


#: Whole modules whose subject the sim backend does not simulate yet, with the reason.
SKIPPED_MODULES: dict[str, str] = {}


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
