"""Remote errors: dual-typed TaskError, tracebacks, pickling, hierarchy, timeouts, retries."""

from __future__ import annotations

import asyncio
import os
import pickle
import re
import sys
import threading
import types
from typing import Any

import pytest
from testkit import Recorder, Sync, T, live_actors, wait_until

import actorlib
from actorlib import api, options
from actorlib import exceptions as exc
from actorlib.core import context
from actorlib.util.placement_group import (
    get_placement_group,
    placement_group,
    remove_placement_group,
)
from actorlib.util.scheduling_strategies import (
    In,
    NodeAffinitySchedulingStrategy,
    NodeLabelSchedulingStrategy,
    NotIn,
)

pytestmark = pytest.mark.shared_runtime


class CustomError(Exception):
    """An application error with a non-trivial constructor."""

    def __init__(self, code, detail):
        super().__init__(code, detail)
        self.code = code
        self.detail = detail


@actorlib.remote
def fail_value(msg):
    raise ValueError(msg)


@actorlib.remote
async def async_fail(msg):
    raise KeyError(msg)


@actorlib.remote
def fail_custom():
    raise CustomError(7, "bad thing")


@actorlib.remote
def add_one(x):
    return x + 1


@actorlib.remote
def flaky(counter, key, fail_times, exc_name):
    """Fail with ``exc_name`` on the first ``fail_times`` attempts; count attempts in an actor."""
    attempt = actorlib.get(counter.incr.remote(key), timeout=T)
    if attempt <= fail_times:
        raise {"ValueError": ValueError, "KeyError": KeyError}[exc_name](f"attempt {attempt}")
    return attempt


@actorlib.remote
def blocked(sync):
    actorlib.get(sync.wait.remote(), timeout=T)
    return "done"


@actorlib.remote(num_cpus=0)
class BrokenInit:
    def __init__(self):
        raise RuntimeError("constructor exploded")

    def ping(self):
        return "pong"


@actorlib.remote(num_cpus=0)
class Sometimes:
    def __init__(self):
        self.calls = 0

    def maybe_fail(self, fail):
        self.calls += 1
        if fail:
            raise ValueError("method failed")
        return self.calls


def test_task_error_is_instance_of_original_type(rt):
    with pytest.raises(ValueError) as info:
        actorlib.get(fail_value.remote("boom 123"), timeout=T)
    err = info.value
    assert isinstance(err, exc.TaskError)
    assert isinstance(err, exc.RayTaskError)
    assert isinstance(err, exc.ActorlibError)
    assert isinstance(err.cause, ValueError)
    assert "boom 123" in str(err.cause)


def test_task_error_message_carries_remote_traceback(rt):
    with pytest.raises(exc.TaskError) as info:
        actorlib.get(fail_value.remote("distinctive message"), timeout=T)
    text = str(info.value)
    assert "fail_value" in text
    assert "distinctive message" in text
    assert "ValueError" in text
    assert "raise ValueError(msg)" in text  # a source line from the remote traceback


def test_async_task_error(rt):
    with pytest.raises(KeyError) as info:
        actorlib.get(async_fail.remote("k"), timeout=T)
    assert isinstance(info.value, exc.TaskError)
    assert "async_fail" in str(info.value)


def test_custom_exception_with_custom_init(rt):
    with pytest.raises(CustomError) as info:
        actorlib.get(fail_custom.remote(), timeout=T)
    assert isinstance(info.value, exc.TaskError)
    assert info.value.cause.code == 7
    assert "bad thing" in str(info.value)


def test_error_propagates_through_dependencies(rt):
    """A task whose argument failed fails with the upstream error, still a ValueError."""
    with pytest.raises(ValueError) as info:
        actorlib.get(add_one.remote(fail_value.remote("upstream")), timeout=T)
    assert "upstream" in str(info.value)


def test_task_error_pickle_round_trip(rt):
    with pytest.raises(exc.TaskError) as info:
        actorlib.get(fail_value.remote("pickled"), timeout=T)
    back = pickle.loads(pickle.dumps(info.value))
    assert isinstance(back, ValueError)
    assert isinstance(back, exc.TaskError)
    assert str(back) == str(info.value)
    assert isinstance(back.cause, ValueError)


def test_natural_errors_pickle_round_trip(rt):
    """Each kind of error actorlib raises survives pickling with its type and message."""
    errors: list[BaseException] = []
    sync = Sync.remote()
    with pytest.raises(exc.GetTimeoutError) as i1:
        actorlib.get(sync.wait.remote(), timeout=0.05)
    errors.append(i1.value)
    with pytest.raises(exc.SerializationError) as i2:
        add_one.remote(threading.Lock())
    errors.append(i2.value)
    with pytest.raises(exc.InfeasibleResourceError) as i3:
        add_one.options(resources={"unobtainium": 1}).remote(1)
    errors.append(i3.value)
    dead = BrokenInit.remote()
    with pytest.raises(exc.ActorDiedError) as i4:
        actorlib.get(dead.ping.remote(), timeout=T)
    errors.append(i4.value)
    with pytest.raises(exc.TaskError) as i5:
        actorlib.get(fail_custom.remote(), timeout=T)
    errors.append(i5.value)
    for err in errors:
        back = pickle.loads(pickle.dumps(err))
        # every named class the original is an instance of (actorlib's and builtins)
        for klass in type(err).__mro__:
            if klass.__name__.startswith("TaskError("):
                continue  # the generated dual class itself may be rebuilt, not identical
            assert isinstance(back, klass), (err, klass)
        assert str(back) == str(err)
    actorlib.get(sync.set.remote(), timeout=T)


@pytest.mark.parametrize(
    ("cls", "bases"),
    [
        ("TaskError", ()),
        ("ActorError", ()),
        ("ActorDiedError", ("ActorError",)),
        ("ActorUnavailableError", ()),
        ("GetTimeoutError", (TimeoutError,)),
        ("TaskCancelledError", ()),
        ("WorkerCrashedError", ()),
        ("ObjectLostError", ()),
        ("ObjectStoreFullError", ()),
        ("SerializationError", (TypeError,)),
        ("InfeasibleResourceError", (ValueError,)),
        ("RuntimeClosedError", (RuntimeError,)),
        # Ray's finer names, each under actorlib's broader error for that situation.
        ("NodeDiedError", ("WorkerCrashedError",)),
        ("OutOfMemoryError", ("WorkerCrashedError",)),
        ("OwnerDiedError", ("ObjectLostError",)),
        ("ObjectFreedError", ("ObjectLostError",)),
        ("ObjectFetchTimedOutError", ("ObjectLostError",)),
        ("ObjectReconstructionFailedError", ("ObjectLostError",)),
        ("TaskUnschedulableError", ("InfeasibleResourceError", ValueError)),
        ("ActorUnschedulableError", ("InfeasibleResourceError", ValueError)),
        ("RuntimeEnvSetupError", ()),
        # Ray's other names (raised where Ray raises them, or never), under Ray's bases.
        ("ActorHandleNotFoundError", (ValueError,)),
        ("ReferenceCountingAssertionError", ("ObjectLostError", AssertionError)),
        ("OutOfDiskError", ()),
        ("LocalRayletDiedError", ()),
        # An actor whose runtime_env failed: dead (actorlib), and Ray's error for it.
        ("ActorRuntimeEnvSetupError", ("ActorDiedError", "RuntimeEnvSetupError")),
    ],
)
def test_exception_hierarchy(cls, bases):
    klass = getattr(exc, cls)
    assert issubclass(klass, exc.ActorlibError)
    for base in bases:
        base_cls = getattr(exc, base) if isinstance(base, str) else base
        assert issubclass(klass, base_cls)


def test_ray_aliases_and_separation():
    assert exc.RayError is exc.ActorlibError
    assert exc.RayTaskError is exc.TaskError
    assert exc.RayActorError is exc.ActorError
    assert actorlib.exceptions is exc
    # "you closed it" is kept apart from "it broke"
    assert not issubclass(exc.RuntimeClosedError, exc.TaskError)
    assert not issubclass(exc.RuntimeClosedError, exc.ActorError)
    assert not issubclass(exc.TaskError, RuntimeError)


def test_ray_finer_names_pickle_and_load_from_ray_paths() -> None:
    import actorlib as ray

    for name in ("NodeDiedError", "OutOfMemoryError", "OwnerDiedError", "ObjectFreedError",
                 "ObjectFetchTimedOutError", "ObjectReconstructionFailedError",
                 "TaskUnschedulableError", "ActorUnschedulableError", "RuntimeEnvSetupError"):
        klass = getattr(ray.exceptions, name)
        assert name in exc.__all__
        copy = pickle.loads(pickle.dumps(klass("why")))
        assert type(copy) is klass and str(copy) == "why"


#: Ray's exception classes that user code never meets: Ray's compiled graphs, channels and
#: direct tensor transport (no counterpart here), and its own internal signals.
RAY_INTERNAL_ERRORS = frozenset({
    "PlasmaObjectNotAvailable", "RpcError", "AuthenticationError",
    "StreamingGeneratorReplayInconsistentError", "RayDirectTransportError",
    "OufOfBandObjectRefSerializationException",
})


def test_every_ray_exception_name_a_user_can_catch_exists() -> None:
    """``except ray.exceptions.X:`` with ``import actorlib as ray`` must not fail with an
    AttributeError when an error reaches it, for every exception class Ray exports."""
    rx = pytest.importorskip("ray.exceptions", reason="needs Ray: pip install 'actorlib[ray]'")
    theirs = {
        name for name, value in vars(rx).items()
        if isinstance(value, type) and issubclass(value, BaseException)
        and value.__module__.startswith("ray.") and not name.startswith("_")
        and not name.startswith(("RayCgraph", "RayChannel")) and name not in RAY_INTERNAL_ERRORS
    }
    missing = sorted(name for name in theirs if not hasattr(exc, name))
    assert not missing, missing
    for name in theirs - {"RayError", "RayTaskError", "RayActorError", "RaySystemError"}:
        klass = getattr(exc, name)
        assert issubclass(klass, exc.ActorlibError), name


def test_affinity_to_a_dead_node_is_unschedulable(rt):
    """Ray's Task/ActorUnschedulableError where a hard node affinity names a node that is
    not alive; still an InfeasibleResourceError, raised at once."""
    gone = actorlib.NodeAffinitySchedulingStrategy("ff" * 28, soft=False)

    @actorlib.remote
    def nowhere() -> None:
        pass

    @actorlib.remote
    class Nowhere:
        pass

    with pytest.raises(exc.TaskUnschedulableError, match="is not alive"):
        nowhere.options(scheduling_strategy=gone).remote()
    with pytest.raises(exc.ActorUnschedulableError, match="is not alive") as info:
        Nowhere.options(scheduling_strategy=gone).remote()
    assert isinstance(info.value, exc.InfeasibleResourceError)
    with pytest.raises(exc.InfeasibleResourceError) as other:  # no node is big enough
        nowhere.options(num_cpus=10_000).remote()
    assert not isinstance(other.value, exc.TaskUnschedulableError)


def test_get_timeout(rt):
    sync = Sync.remote()
    ref = sync.wait.remote()
    with pytest.raises(exc.GetTimeoutError) as info:
        actorlib.get(ref, timeout=0.1)
    assert isinstance(info.value, TimeoutError)
    with pytest.raises(TimeoutError):
        actorlib.get([actorlib.put(1), ref], timeout=0)
    actorlib.get(sync.set.remote(), timeout=T)
    assert actorlib.get(ref, timeout=T) is None


def test_a_negative_timeout_is_refused(rt: object) -> None:
    """A negative timeout used to mean "do not wait", silently; Ray refuses it too."""
    sync = Sync.remote()
    ref = sync.wait.remote()
    with pytest.raises(ValueError, match="timeout"):
        actorlib.get(ref, timeout=-1)
    with pytest.raises(ValueError, match="timeout"):
        actorlib.wait([ref], timeout=-1)
    with pytest.raises(ValueError, match="timeout"):
        asyncio.run(actorlib.get_async(ref, timeout=-0.5))
    with pytest.raises(ValueError, match="timeout"):
        asyncio.run(actorlib.wait_async([ref], timeout=-1))
    actorlib.get(sync.set.remote(), timeout=T)


def test_a_timed_out_get_names_the_refs_not_ready(rt: object) -> None:
    sync = Sync.remote()
    ready = actorlib.put(1)
    method_ref = sync.wait.remote()
    task_ref = blocked.remote(sync)
    with pytest.raises(exc.GetTimeoutError) as info:
        actorlib.get([ready, method_ref, task_ref], timeout=0.1)
    message = str(info.value)
    assert "2 object(s) not ready" in message
    assert f"{method_ref.hex()} (Sync.wait)" in message
    assert f"{task_ref.hex()} (blocked)" in message
    assert ready.hex() not in message
    actorlib.get(sync.set.remote(), timeout=T)
    assert actorlib.get(task_ref, timeout=T) == "done"


def test_a_too_deeply_nested_value_is_a_serialization_error(rt: object) -> None:
    """Not a bare RecursionError (from repr() of the value while describing it)."""
    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(exc.SerializationError, match=r"put\(\).*nested too deeply"):
        actorlib.put(deep)
    with pytest.raises(exc.SerializationError, match=r"argument 0 of add_one .*nested"):
        add_one.remote(deep)


def test_exception_in_actor_init_kills_actor(rt):
    actor = BrokenInit.remote()
    for _ in range(2):
        with pytest.raises(exc.ActorDiedError):
            actorlib.get(actor.ping.remote(), timeout=T)


SCRIPT = """
class ScriptError(Exception):
    def __init__(self, a, b):
        super().__init__(f"{a}-{b}")
        self.a = a


def fail_in_script():
    raise ScriptError(1, 2)


class ScriptActor:
    def __init__(self, fail):
        if fail:
            raise ScriptError(3, 4)

    def fail(self):
        raise ScriptError(5, 6)


class MuteError(Exception):
    def __str__(self):
        raise RuntimeError("no message")


def fail_mute():
    raise MuteError("secret")


class MuteActor:
    def __init__(self, fail):
        if fail:
            raise MuteError()

    def fail(self):
        raise MuteError()

    async def fail_async(self):
        raise MuteError()
"""


def _script() -> dict[str, Any]:
    """``SCRIPT`` run as a driver's ``__main__``: classes pickled by value, not by name."""
    script: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(SCRIPT, "<driver script>", "exec"), script)
    return script


def test_an_error_class_of_the_drivers_script_comes_back_from_everywhere(rt):
    """An exception class defined in the driver's ``__main__`` (a script, a notebook),
    whose ``__init__`` wants arguments its ``args`` do not hold: ``except`` catches it
    from a task and a method, and a constructor raising it kills the actor, saying so. A
    core that cannot import the class (a cluster's head) still passes the error on,
    rather than leaving the actor's calls waiting forever."""
    script = _script()
    error_cls = script["ScriptError"]
    task = actorlib.remote(script["fail_in_script"])
    actor_cls = actorlib.remote(num_cpus=0)(script["ScriptActor"])
    good = actor_cls.remote(False)
    for ref, text in ((task.remote(), "1-2"), (good.fail.remote(), "5-6")):
        with pytest.raises(error_cls) as info:
            actorlib.get(ref, timeout=T)
        assert isinstance(info.value, exc.TaskError) and text in str(info.value)
        assert vars(info.value)["a"] == int(text[0])  # the original's attributes
    broken = actor_cls.remote(True)
    for _ in range(2):
        with pytest.raises(exc.ActorDiedError) as died:
            actorlib.get(broken.fail.remote(), timeout=T)
        assert "ScriptError raised in ScriptActor.__init__: 3-4" in str(died.value)
    del good, broken


def test_an_actor_killed_by_an_error_of_the_drivers_script_has_it_as_cause(rt):
    """The constructor's error, of a class only the driver's ``__main__`` has, is the
    ``ActorDiedError``'s ``cause``, raised as itself."""
    script = _script()
    broken = actorlib.remote(num_cpus=0)(script["ScriptActor"]).remote(True)
    with pytest.raises(exc.ActorDiedError) as died:
        actorlib.get(broken.fail.remote(), timeout=T)
    cause = died.value.cause
    assert isinstance(cause, script["ScriptError"]) and isinstance(cause, exc.TaskError)
    assert vars(cause)["a"] == 3
    assert cause.cause is not None and cause.cause.args == ("3-4",)
    del broken


def test_an_error_whose_str_raises_still_comes_back(rt):
    """An exception whose ``__str__`` raises, from a task, a method and a constructor:
    its class is raised (or named in the actor's death) with a stand-in for its message,
    rather than the runner failing to make the error and the result never coming."""
    script = _script()
    error_cls = script["MuteError"]
    actor_cls = actorlib.remote(num_cpus=0)(script["MuteActor"])
    good = actor_cls.remote(False)
    refs = (actorlib.remote(script["fail_mute"]).remote(), good.fail.remote(),
            good.fail_async.remote())
    for ref in refs:
        with pytest.raises(error_cls) as info:
            actorlib.get(ref, timeout=T)
        assert "MuteError raised in" in str(info.value)
        assert "<MuteError: str() failed>" in str(info.value)
    broken = actor_cls.remote(True)
    with pytest.raises(exc.ActorDiedError, match=r"MuteError: str\(\) failed"):
        actorlib.get(broken.fail.remote(), timeout=T)
    del good, broken


def test_actor_survives_method_exception(rt):
    a = Sometimes.remote()
    assert actorlib.get(a.maybe_fail.remote(False), timeout=T) == 1
    with pytest.raises(ValueError) as info:
        actorlib.get(a.maybe_fail.remote(True), timeout=T)
    assert isinstance(info.value, exc.TaskError)
    assert "maybe_fail" in str(info.value)
    assert actorlib.get(a.maybe_fail.remote(False), timeout=T) == 3


def test_retry_exceptions_true_retries_until_success(rt):
    counter = Recorder.remote()
    ref = flaky.options(max_retries=3, retry_exceptions=True).remote(counter, "a", 2, "ValueError")
    assert actorlib.get(ref, timeout=T) == 3
    assert actorlib.get(counter.value.remote("a"), timeout=T) == 3


def test_retry_exceptions_gives_up_after_max_retries(rt):
    counter = Recorder.remote()
    ref = flaky.options(max_retries=1, retry_exceptions=True).remote(counter, "b", 5, "ValueError")
    with pytest.raises(ValueError, match="attempt 2"):
        actorlib.get(ref, timeout=T)
    assert actorlib.get(counter.value.remote("b"), timeout=T) == 2


def test_application_errors_not_retried_by_default(rt):
    counter = Recorder.remote()
    with pytest.raises(ValueError, match="attempt 1"):
        actorlib.get(flaky.remote(counter, "c", 5, "ValueError"), timeout=T)
    assert actorlib.get(counter.value.remote("c"), timeout=T) == 1


def test_retry_exceptions_list_filters_types(rt):
    counter = Recorder.remote()
    retried = flaky.options(max_retries=2, retry_exceptions=[ValueError])
    assert actorlib.get(retried.remote(counter, "v", 2, "ValueError"), timeout=T) == 3
    with pytest.raises(KeyError):
        actorlib.get(retried.remote(counter, "k", 2, "KeyError"), timeout=T)
    assert actorlib.get(counter.value.remote("k"), timeout=T) == 1


class InterruptingError(Exception):
    """Its pickling raises a ``BaseException`` that is not an ``Exception``."""

    def __reduce__(self) -> Any:
        raise KeyboardInterrupt("no pickling this error")


@actorlib.remote
def fail_interrupting():
    raise InterruptingError("the task's own message")


def test_an_error_whose_pickling_raises_keyboardinterrupt_still_comes_back(rt):
    """The error crosses as its type's name and message (it cannot cross as itself), and
    the runtime serves the next task; before, the interrupt escaped the runner packing
    the error and the result never came."""
    with pytest.raises(exc.TaskError, match="InterruptingError raised in fail_interrupting: "
                       "the task's own message"):
        actorlib.get(fail_interrupting.remote(), timeout=T)
    assert actorlib.get(add_one.remote(1), timeout=T) == 2


class InterruptingValue:
    """A value whose pickling raises a ``BaseException`` that is not an ``Exception``."""

    def __init__(self, exc_type: type[BaseException]) -> None:
        self.exc_type = exc_type

    def __reduce__(self) -> Any:
        raise self.exc_type("no pickling this value")


@actorlib.remote
def return_interrupting(exc_type: type[BaseException]) -> InterruptingValue:
    return InterruptingValue(exc_type)


@actorlib.remote(num_returns=2)
def return_two_interrupting() -> tuple[int, InterruptingValue]:
    return 1, InterruptingValue(SystemExit)


@actorlib.remote(num_returns="streaming")
def yield_interrupting():
    yield 1
    yield InterruptingValue(KeyboardInterrupt)


@actorlib.remote(num_cpus=0)
class InterruptingReturner:
    def give(self, exc_type: type[BaseException]) -> InterruptingValue:
        return InterruptingValue(exc_type)

    def ping(self) -> str:
        return "pong"


def _error_of(ref: Any) -> BaseException:
    """What ``get(ref)`` raises, whatever its kind (an interrupt must not end the test)."""
    try:
        actorlib.get(ref, timeout=T)
    except BaseException as error:
        return error
    raise AssertionError(f"{ref} did not fail")


def test_a_result_whose_pickling_raises_keyboardinterrupt_is_a_serialization_error(rt):
    """A returned value (or item) whose ``__reduce__`` raises ``KeyboardInterrupt`` or
    ``SystemExit`` fails its task with a ``SerializationError`` naming the result, and the
    runtime serves the next task; before, the interrupt escaped the runner packing the
    result (the sim's worker died and get() waited forever; elsewhere the task failed as
    if it had raised the interrupt itself)."""
    actor = InterruptingReturner.remote()
    refs = [return_interrupting.remote(KeyboardInterrupt),
            return_interrupting.remote(SystemExit),
            return_two_interrupting.remote()[1],
            actor.give.remote(KeyboardInterrupt)]
    stream = yield_interrupting.remote()
    assert actorlib.get(next(stream), timeout=T) == 1
    refs.append(next(stream))
    for ref in refs:
        error = _error_of(ref)
        assert isinstance(error, exc.SerializationError), repr(error)
        assert re.search(r"(result|item) .*pickling it raised (KeyboardInterrupt|SystemExit)"
                         r"\('no pickling this value'\)", str(error)), str(error)
    assert actorlib.get([add_one.remote(i) for i in range(4)], timeout=T) == [1, 2, 3, 4]
    assert actorlib.get(actor.ping.remote(), timeout=T) == "pong"
    del actor


def test_an_argument_whose_pickling_raises_keyboardinterrupt_fails_at_remote(rt):
    """An argument whose ``__reduce__`` raises ``KeyboardInterrupt`` fails ``.remote()``
    itself (of a task, an actor, a method), and the runtime stays usable."""
    actor = InterruptingReturner.remote()
    for submit in (lambda: add_one.remote(InterruptingValue(KeyboardInterrupt)),
                   lambda: Holder.remote(InterruptingValue(SystemExit)),
                   lambda: actor.give.remote(InterruptingValue(KeyboardInterrupt))):
        with pytest.raises((KeyboardInterrupt, SystemExit)):
            submit()
    assert actorlib.get([add_one.remote(i) for i in range(4)], timeout=T) == [1, 2, 3, 4]
    assert actorlib.get(actor.ping.remote(), timeout=T) == "pong"


class _RefusingMeta(type):
    def __instancecheck__(cls, obj: object) -> bool:
        raise RuntimeError("no isinstance for this class")


class UncheckableError(Exception, metaclass=_RefusingMeta):
    """Listed in ``retry_exceptions``, but ``isinstance`` against it raises."""


@actorlib.remote(max_retries=1, retry_exceptions=[UncheckableError])
def fail_past_an_uncheckable_class():
    raise ValueError("the task's own error")


def test_a_retry_exceptions_class_that_cannot_be_checked_does_not_lose_the_error(rt):
    """``isinstance`` against a listed class raising (its metaclass) counts as no match:
    the task's error comes back, and the runtime serves the next task, rather than the
    runner failing while it packs the error and the result never coming."""
    for _ in range(3):  # more than the thread backend's task threads
        with pytest.raises(ValueError, match="the task's own error"):
            actorlib.get(fail_past_an_uncheckable_class.remote(), timeout=T)
    assert actorlib.get(add_one.remote(1), timeout=T) == 2


def test_a_retry_exceptions_class_only_the_driver_can_import_does_not_lose_the_task(
    rt, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A class listed in ``retry_exceptions`` from a module only the driver has (pickled
    by reference; workers and a cluster's head cannot import it): the task still runs and
    its error comes back, rather than its message failing to decode where the class is
    missing and the result never coming."""
    module = types.ModuleType("_actorlib_driver_only_errors")
    error_cls = type("DriverOnlyError", (Exception,), {"__module__": module.__name__})
    module.DriverOnlyError = error_cls  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    task = fail_value.options(max_retries=1, retry_exceptions=[error_cls, ValueError])
    with pytest.raises(ValueError, match="past a missing class"):
        actorlib.get(task.remote("past a missing class"), timeout=T)
    assert actorlib.get(add_one.remote(1), timeout=T) == 2


def _driver_only_str_class(monkeypatch: pytest.MonkeyPatch) -> type[str]:
    """A ``str`` subclass of a module only the driver has (as a script's ``__main__``):
    pickled by reference, it does not unpickle in workers or a cluster's head."""
    module = types.ModuleType("_actorlib_driver_only_strings")
    name_cls = type("DriverOnlyName", (str,), {"__module__": module.__name__})
    module.DriverOnlyName = name_cls  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return name_cls


def test_option_strings_of_a_class_only_the_driver_can_import_do_not_lose_the_work(
    rt, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A task's name, its env_vars, resource names, an actor's concurrency group and a
    placement group's name and bundle given
    as a ``str`` subclass workers cannot import (the driver's ``__main__``, here a module
    only the driver has): the work still runs, rather than its message failing to decode
    in the worker and the result never coming."""
    name_cls = _driver_only_str_class(monkeypatch)
    text = name_cls("custom")
    refs = [
        add_one.options(name=text).remote(1),
        add_one.options(runtime_env={"env_vars": {name_cls("A"): text}}).remote(2),
        add_one.options(resources={text: 0.0}).remote(3),
    ]
    assert actorlib.get(refs, timeout=T) == [2, 3, 4]
    counter = Recorder.options(concurrency_groups={text: 1}).remote()
    assert actorlib.get(counter.value.options(concurrency_group=text).remote("x"),
                        timeout=T) == 0
    group = placement_group([{name_cls("CPU"): 0.01}], name=text)
    assert actorlib.get(group.ready(), timeout=T) == group
    remove_placement_group(group)


def test_lookups_and_selectors_in_a_str_class_only_the_driver_can_import(
    rt, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Strings of a ``str`` subclass workers and a cluster's head cannot import, in a
    named actor's and a placement group's lookup, label selectors and other scheduling
    strategies, and a placement group's strategy: each still does its work, rather than
    its message being dropped where it did not decode (lookups waiting forever, the work
    failing with a misleading error)."""
    name_cls = _driver_only_str_class(monkeypatch)
    named = Recorder.options(name="t_lookup_actor", namespace="t_lookup_ns").remote()
    found = actorlib.get_actor(name_cls("t_lookup_actor"), namespace=name_cls("t_lookup_ns"))
    assert actorlib.get(found.value.remote("x"), timeout=T) == 0
    with pytest.raises(ValueError, match="t_no_such_actor"):
        actorlib.get_actor(name_cls("t_no_such_actor"))
    group = placement_group([{"CPU": 0.01}], strategy=name_cls("PACK"), name="t_lookup_pg",
                            bundle_label_selector=[{name_cls("t-label"): name_cls("!v")}])
    assert actorlib.get(group.ready(), timeout=T) == group
    assert get_placement_group(name_cls("t_lookup_pg")) == group
    remove_placement_group(group)
    node = actorlib.nodes()[0]["NodeID"]
    strategies = [
        name_cls("SPREAD"),
        NodeAffinitySchedulingStrategy(name_cls(node), soft=False),
        NodeLabelSchedulingStrategy(hard={name_cls("t-label"): NotIn(name_cls("v"))},
                                    soft={name_cls("t-other"): In(name_cls("v"))}),
    ]
    refs = [add_one.options(scheduling_strategy=s).remote(i) for i, s in enumerate(strategies)]
    refs.append(add_one.options(label_selector={name_cls("t-label"): name_cls("!v")}).remote(3))
    assert actorlib.get(refs, timeout=T) == [1, 2, 3, 4]
    selected = Recorder.options(label_selector={name_cls("t-label"): name_cls("!v")}).remote()
    assert actorlib.get(selected.value.remote("x"), timeout=T) == 0
    del named, found, selected


_UNDECODABLE = (r"could not be decoded in (the driver|the cluster node|the cluster's head|"
                r"the worker process)")


@actorlib.remote
def send_a_name_only_this_worker_has(what: str) -> Any:
    """Sends the core a string of a class only this worker process has, unconverted (as
    a path that missed ``plain_str`` would): a named actor's lookup (``"lookup"``) or a
    task's name (``"submit"``). Returns the answer, or the error saying why there is none.
    """
    module = types.ModuleType(f"_actorlib_worker_only_strings_{os.getpid()}")
    name_cls = type("WorkerOnlyName", (str,), {"__module__": module.__name__})
    module.WorkerOnlyName = name_cls  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    plain_str = options.plain_str
    try:
        if what == "lookup":
            client = context.current()
            assert client is not None
            return client.lookup_actor(name_cls("t_no_such_actor"), "default")
        options.plain_str = lambda value: value  # type: ignore[assignment]
        try:
            ref = add_one.options(name=name_cls("t_task")).remote(1)
        finally:
            options.plain_str = plain_str
        return actorlib.get(ref, timeout=T)
    except exc.SerializationError as error:
        return str(error)
    finally:
        del sys.modules[module.__name__]


def test_a_request_or_task_whose_message_does_not_decode_where_it_goes_fails_saying_so(
    rt, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A request (a named actor's lookup), a task or an actor whose message the driver, a
    cluster's node or its head cannot decode (a string of a class only the sender has,
    let through unconverted): the sender gets an answer or a ``SerializationError``
    saying why (the actor's ``ActorDiedError``), rather than the message being dropped
    with a log line and the sender waiting forever (or, for a cluster driver's task or
    actor, failing as an object "not known to this runtime", an actor "gone").
    The backends that run in one process decode nothing, so the work just runs there."""
    name_cls = _driver_only_str_class(monkeypatch)
    monkeypatch.setattr(api, "plain_str", lambda value: value)
    monkeypatch.setattr(options, "plain_str", lambda value: value)
    with pytest.raises((ValueError, exc.SerializationError),
                       match=f"t_no_such_actor|{_UNDECODABLE}"):
        actorlib.get_actor(name_cls("t_no_such_actor"))
    try:
        assert actorlib.get(add_one.options(name=name_cls("t_task")).remote(1), timeout=T) == 2
    except exc.SerializationError as error:
        assert re.search(_UNDECODABLE, str(error)), error
    actor = Recorder.options(concurrency_groups={name_cls("t_group"): 1}).remote()
    try:
        assert actorlib.get(actor.value.remote("x"), timeout=T) == 0
    except exc.ActorDiedError as error:  # (Ray says its own way why: "No module named")
        assert re.search(f"{_UNDECODABLE}|No module named '{name_cls.__module__}'",
                         str(error)), error
    del actor
    monkeypatch.undo()
    looked_up = actorlib.get(send_a_name_only_this_worker_has.remote("lookup"), timeout=T)
    assert looked_up is None or re.search(_UNDECODABLE, looked_up), looked_up
    submitted = actorlib.get(send_a_name_only_this_worker_has.remote("submit"), timeout=T)
    assert submitted == 2 or re.search(_UNDECODABLE, submitted), submitted
    assert actorlib.get(add_one.remote(2), timeout=T) == 3


_WORKER_ONLY_ERRORS = "_actorlib_worker_only_errors"


def _raise_an_error_only_this_process_can_load(message: str) -> None:
    """Raise an exception of a class from a module only this process has (one a task
    imports from a directory only its worker has, say)."""
    module = sys.modules.get(_WORKER_ONLY_ERRORS)
    if module is None:  # kept: the error is pickled (and checked) after the raise
        module = types.ModuleType(_WORKER_ONLY_ERRORS)
        module.WorkerOnlyError = type(  # type: ignore[attr-defined]
            "WorkerOnlyError", (Exception,), {"__module__": _WORKER_ONLY_ERRORS})
        sys.modules[_WORKER_ONLY_ERRORS] = module
    raise module.WorkerOnlyError(message)


@actorlib.remote
def raise_an_error_only_its_worker_can_load() -> None:
    _raise_an_error_only_this_process_can_load("raised where its class is")


@actorlib.remote
class FailsWithAnErrorOnlyItsWorkerCanLoad:
    def __init__(self) -> None:
        _raise_an_error_only_this_process_can_load("raised in the constructor")

    def ping(self) -> str:
        return "pong"


def test_an_error_whose_class_only_the_worker_can_load_keeps_its_message_and_trace(rt):
    """A task's exception of a class the driver (or a cluster's head) cannot load: get()
    raises a ``TaskError`` naming the class, with its message and the remote traceback
    (the original class stays unknown), as where the exception did not pickle; before, a
    bare "Could not unpickle a value" lost all of them."""
    try:
        with pytest.raises(exc.TaskError, match=r"(?s)WorkerOnlyError raised in "
                           r"raise_an_error_only_its_worker_can_load: raised where its "
                           r"class is.*Remote traceback.*_raise_an_error_only_this_process"):
            actorlib.get(raise_an_error_only_its_worker_can_load.remote(), timeout=T)
    finally:
        sys.modules.pop(_WORKER_ONLY_ERRORS, None)  # the backends that run in this process


def test_a_constructor_error_whose_class_only_the_worker_can_load_keeps_its_message(rt):
    """The same for an actor's constructor: its ``ActorDiedError`` carries the class's
    name and the message; before, only the ``ModuleNotFoundError`` of the class."""
    try:
        actor = FailsWithAnErrorOnlyItsWorkerCanLoad.remote()
        with pytest.raises(exc.ActorDiedError, match=r"constructor raised: WorkerOnlyError "
                           r"raised in .*__init__: raised in the constructor"):
            actorlib.get(actor.ping.remote(), timeout=T)
    finally:
        sys.modules.pop(_WORKER_ONLY_ERRORS, None)  # the backends that run in this process


def test_a_failed_task_releases_its_arguments(rt):
    """Its arguments (here an actor handle) go once it failed: a worker process that stays
    idle (no garbage collection) must not keep them in the failure's traceback."""
    before = live_actors()
    counter = Recorder.remote()
    with pytest.raises(ValueError):
        actorlib.get(flaky.remote(counter, "r", 5, "ValueError"), timeout=T)
    [actor] = live_actors() - before
    del counter
    wait_until(lambda: actor not in live_actors(), what="the failed task's argument to go")


def test_unpicklable_argument_raises_at_submission(rt):
    lock = threading.Lock()
    with pytest.raises(exc.SerializationError) as info:
        add_one.remote(lock)
    assert isinstance(info.value, TypeError)
    assert "lock" in str(info.value).lower()
    with pytest.raises(exc.SerializationError, match=r"(?i)lock"):
        add_one.remote(x={"nested": [lock]})


@actorlib.remote
class Holder:
    def __init__(self, value: object) -> None:
        self.value = value


def test_unpicklable_actor_arguments(rt):
    counter = Recorder.remote()
    with pytest.raises(exc.SerializationError, match=r"(?i)lock"):
        counter.append.remote(threading.Lock())
    with pytest.raises(exc.SerializationError, match=r"(?i)lock"):
        Holder.options(name=None).remote(threading.Lock())
    assert actorlib.get(counter.append.remote("fine"), timeout=T) == 1


def test_failing_task_does_not_block_others(rt):
    bad = [fail_value.remote(str(i)) for i in range(10)]
    good = [add_one.remote(i) for i in range(10)]
    assert actorlib.get(good, timeout=T) == list(range(1, 11))
    for ref in bad:
        with pytest.raises(ValueError):
            actorlib.get(ref, timeout=T)


def test_blocked_task_completes_after_signal(rt):
    """Sanity check of the Sync helper the other tests rely on."""
    sync = Sync.remote()
    ref = blocked.remote(sync)
    ready, not_ready = actorlib.wait([ref], timeout=0.2)
    assert ready == [] and not_ready == [ref]
    actorlib.get(sync.set.remote(), timeout=T)
    assert actorlib.get(ref, timeout=T) == "done"
