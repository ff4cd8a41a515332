"""The common case's short cuts, on every backend: a task or actor call without ref
arguments, options or ``env_vars`` takes fewer steps through ``.remote()``, the core and
the runner than the general path. Each test mixes it with the general path, or with a
feature the short cut skips, and checks the semantics are the same.
"""

from __future__ import annotations

import os
import threading

import pytest
from test_queued_tasks import hold_until
from testkit import T

import actorlib
from actorlib import exceptions as exc

pytestmark = pytest.mark.shared_runtime


@actorlib.remote
def plain() -> int:
    return 1


@actorlib.remote
def add(a: int, b: int) -> int:
    return a + b


@actorlib.remote(max_retries=2, retry_exceptions=True)
def fails_first(path: str, failures: int) -> int:
    """Fail ``failures`` times (counted in the file ``path``), then return the count."""
    with open(path, "a") as f:
        f.write("x")
    with open(path) as f:
        tries = len(f.read())
    if tries <= failures:
        raise ValueError(f"try {tries}")
    return tries


@actorlib.remote(max_retries=1, retry_exceptions=True)
def always_fails() -> None:
    raise ValueError("no")


@actorlib.remote
def unpicklable_result() -> object:
    return threading.Lock()


@actorlib.remote
def echo(*args: object) -> tuple[object, ...]:
    return args


class Tagged(str):
    """A str subclass: not a plain scalar, so its arguments take the general path."""


@actorlib.remote
def env_value() -> str | None:
    return os.environ.get("ACTORLIB_PLAIN_PATH_TEST")


@actorlib.remote
class Counter:
    def __init__(self) -> None:
        self.n = 0

    def incr(self) -> int:
        self.n += 1
        return self.n

    def add(self, by: int) -> int:
        self.n += by
        return self.n

    def env(self) -> str | None:
        return os.environ.get("ACTORLIB_PLAIN_PATH_TEST")


def test_plain_tasks_then_tasks_with_ref_arguments(rt):
    firsts = [plain.remote() for _ in range(20)]
    sums = [add.remote(ref, i) for i, ref in enumerate(firsts)]  # refs from plain tasks
    assert actorlib.get(sums, timeout=T) == [1 + i for i in range(20)]
    again = [plain.remote() for _ in range(20)]  # plain again, after the general path
    assert actorlib.get(again, timeout=T) == [1] * 20
    assert actorlib.get(add.remote(sums[-1], sums[0]), timeout=T) == 21


def test_plain_scalar_arguments_arrive_as_sent_beside_the_general_path(rt):
    """Scalar arguments pickle without the general walk; anything else (a container, a
    subclass, a ref, keywords) still takes it, and each arrives as sent."""
    scalars = (1, -2.5, "x", b"y", True, None, 3j, 2**80)
    ref = add.remote(1, 2)
    calls = [
        ((*scalars,), scalars),
        ((Tagged("t"), 1), ("t", 1)),
        (([1, 2], {"a": (3,)}), ([1, 2], {"a": (3,)})),
        ((ref, "z"), (3, "z")),
        # a range (a chunk of ``Pool.map``) takes the C pickler, alone or inside
        *[(args, args) for args in [(range(0, 10, 3), [range(2**70, 2**70 + 5, -1)])]],
    ]
    refs = [echo.remote(*args) for args, _ in calls]
    assert actorlib.get(refs, timeout=T) == [expected for _, expected in calls]
    assert type(actorlib.get(echo.remote(Tagged("t")), timeout=T)[0]) is Tagged
    assert actorlib.get(add.remote(1, b=2), timeout=T) == 3
    with pytest.raises(TypeError):
        echo.remote(threading.Lock(), 1)  # unpicklable: still named at .remote()


def test_retries_of_a_task_are_still_counted(rt, tmp_path):
    path = str(tmp_path / "tries")
    assert actorlib.get(fails_first.remote(path, 2), timeout=T) == 3
    with pytest.raises(ValueError, match="no"):
        actorlib.get(always_fails.remote(), timeout=T)


@pytest.mark.init_kwargs(num_cpus=2)
def test_cancel_a_plain_task_while_it_waits_for_a_cpu(rt, tmp_path):
    release = str(tmp_path / "release")
    running = [hold_until.remote(release) for _ in range(2)]
    waiting = [plain.remote() for _ in range(4)]
    actorlib.wait(running + waiting, timeout=0.2)
    for ref in waiting[:2]:
        actorlib.cancel(ref)
    for ref in waiting[:2]:
        with pytest.raises(exc.TaskCancelledError):
            actorlib.get(ref, timeout=T)
    open(release, "w").close()
    assert actorlib.get(running, timeout=T) == ["held", "held"]
    assert actorlib.get(waiting[2:], timeout=T) == [1, 1]


def test_a_wrong_call_after_right_ones_still_raises_at_once(rt):
    assert actorlib.get([plain.remote() for _ in range(3)], timeout=T) == [1, 1, 1]
    with pytest.raises(TypeError, match="plain"):
        plain.remote(1)  # type: ignore[call-arg]
    assert actorlib.get(add.remote(1, 2), timeout=T) == 3
    with pytest.raises(TypeError, match="add"):
        add.remote(1, c=2)  # type: ignore[call-arg]
    counter = Counter.remote()
    assert actorlib.get(counter.incr.remote(), timeout=T) == 1
    with pytest.raises(TypeError):
        counter.incr.remote(5)  # type: ignore[call-arg]
    actorlib.kill(counter)


def test_an_unpicklable_result_is_named_in_its_error(rt):
    with pytest.raises(exc.SerializationError, match=r"the result of .*unpicklable_result"):
        actorlib.get(unpicklable_result.remote(), timeout=T)


@pytest.mark.fresh_runtime  # sets a job env_vars of its own
def test_env_vars_still_apply_to_plain_tasks_and_calls(rt):
    env = {"env_vars": {"ACTORLIB_PLAIN_PATH_TEST": "set"}}
    assert actorlib.get(env_value.remote(), timeout=T) is None
    assert actorlib.get(env_value.options(runtime_env=env).remote(), timeout=T) == "set"
    counter = Counter.options(runtime_env=env).remote()
    assert actorlib.get(counter.env.remote(), timeout=T) == "set"
    actorlib.kill(counter)


def test_plain_calls_and_calls_with_ref_arguments_keep_their_order(rt):
    counter = Counter.remote()
    refs = []
    for i in range(30):
        if i % 3 == 0:
            refs.append(counter.add.remote(plain.remote()))  # waits for its argument
        else:
            refs.append(counter.incr.remote())
    assert actorlib.get(refs, timeout=T) == list(range(1, 31))
    actorlib.kill(counter)
