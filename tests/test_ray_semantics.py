"""Semantics that follow Ray Core's (issue 12, section 3): where errors are raised, what
they look like, how cancel and workers behave.

Tests taking ``rt`` run on every backend.
"""

from __future__ import annotations

import linecache
import logging
import os
import pickle
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import pytest
from testkit import Recorder, Sync, T, wait_until

import actorlib
from actorlib.core.specs import NodeAffinitySchedulingStrategy
from actorlib.exceptions import SerializationError, TaskCancelledError, TaskError

pytestmark = pytest.mark.shared_runtime


@actorlib.remote
def echo(x: int) -> int:
    return x


# -- option errors: TypeError for the wrong type, ValueError for a bad value ---------------


@pytest.mark.parametrize(("options", "name", "shown"), [
    ({"max_retries": 0.87}, "max_retries", "float 0.87"),
    ({"max_retries": "3"}, "max_retries", "str '3'"),
    ({"num_cpus": "1"}, "num_cpus", "str '1'"),
    ({"num_cpus": True}, "num_cpus", "bool True"),
    ({"num_returns": 1.0}, "num_returns", "float 1.0"),
    ({"resources": [("A", 1)]}, "resources", "list [('A', 1)]"),
    ({"resources": {"A": "1"}}, "resources['A']", "str '1'"),
    ({"retry_exceptions": "yes"}, "retry_exceptions", "str 'yes'"),
    ({"scheduling_strategy": 3}, "scheduling_strategy", "int 3"),
    ({"runtime_env": "env"}, "runtime_env", "str 'env'"),
    ({"runtime_env": {"env_vars": {"A": 1}}}, "runtime_env['env_vars']", "dict {'A': 1}"),
    ({"name": 7}, "name", "int 7"),
])
def test_task_option_of_the_wrong_type_raises_type_error(options, name, shown):
    with pytest.raises(TypeError, match=r"^" + name.replace("[", r"\[") + " must be") as info:
        echo.options(**options)
    assert str(info.value).endswith(f", got {shown}")


@pytest.mark.parametrize(("options", "name", "accepted"), [
    ({"max_retries": -2}, "max_retries", "int >= -1"),
    ({"num_cpus": -1}, "num_cpus", ">= 0"),
    ({"num_cpus": float("nan")}, "num_cpus", ">= 0"),
    ({"num_returns": -1}, "num_returns", "int >= 0"),
    ({"resources": {"A": -1}}, "resources['A']", ">= 0"),
    ({"scheduling_strategy": "PACK"}, "scheduling_strategy", "SPREAD"),
])
def test_task_option_out_of_range_raises_value_error(options, name, accepted):
    with pytest.raises(ValueError, match=r"^" + name.replace("[", r"\[") + " must be") as info:
        echo.options(**options)
    assert accepted in str(info.value)


def test_actor_option_errors_split_type_and_value():
    @actorlib.remote
    class A:
        def f(self) -> int:
            return 1

    with pytest.raises(TypeError, match="max_concurrency must be an int >= 1, got float"):
        A.options(max_concurrency=2.5)
    with pytest.raises(ValueError, match="max_concurrency must be an int >= 1, got 0"):
        A.options(max_concurrency=0)
    with pytest.raises(TypeError, match="lifetime must be"):
        A.options(lifetime=1)
    with pytest.raises(ValueError, match='lifetime must be None, "detached"'):
        A.options(lifetime="forever")
    with pytest.raises(TypeError, match="get_if_exists must be a bool"):
        A.options(get_if_exists="yes")
    with pytest.raises(TypeError, match="max_restarts must be an int >= -1"):
        A.options(max_restarts=None)
    with pytest.raises(TypeError, match="max_task_retries must be"):
        actorlib.method(max_task_retries=1.5)
    # Right types pass, and are kept.
    assert A.options(max_concurrency=2, lifetime=None)._options["max_concurrency"] == 2
    strategy = NodeAffinitySchedulingStrategy("n", soft=True)
    assert echo.options(scheduling_strategy=strategy)._strategy is strategy


# -- a call with the wrong signature fails at .remote() ------------------------------------


@actorlib.remote
def two(a: int, b: int = 2, *, c: int = 3) -> int:
    return a + b + c


@actorlib.remote
class Box:
    def __init__(self, value: int) -> None:
        self.value = value

    def add(self, n: int) -> int:
        return self.value + n

    @staticmethod
    def static(n: int) -> int:
        return n

    @classmethod
    def klass(cls, n: int) -> int:
        return n


@actorlib.remote
def call_box(box: actorlib.ActorHandle[Box]) -> str:
    """A handle passed to a task keeps its checks."""
    try:
        box.add.remote(1, 2)
    except TypeError as exc:
        return str(exc)
    return "no error"


def test_wrong_task_arguments_raise_type_error_at_remote(rt):
    with pytest.raises(TypeError, match=r"two.remote\(\): missing a required argument: 'a'"):
        two.remote()
    with pytest.raises(TypeError, match="too many positional arguments"):
        two.remote(1, 2, 3)
    with pytest.raises(TypeError, match="unexpected keyword argument 'd'"):
        two.remote(1, d=4)
    with pytest.raises(TypeError, match="multiple values for argument 'a'"):
        two.remote(1, a=1)
    with pytest.raises(TypeError, match="missing a required argument"):
        two.options(name="renamed").remote(b=1)
    # A shape that bound once is remembered; a failing one keeps failing.
    assert actorlib.get([two.remote(1), two.remote(1, c=0), two.remote(a=1, b=1)]) == [6, 3, 5]
    with pytest.raises(TypeError):
        two.remote()


def test_wrong_actor_arguments_raise_type_error_at_remote(rt):
    with pytest.raises(TypeError, match=r"Box.remote\(\): missing a required argument: 'value'"):
        Box.remote()
    with pytest.raises(TypeError, match="unexpected keyword"):
        Box.options(name=None).remote(1, other=2)
    box = Box.remote(10)
    with pytest.raises(TypeError, match=r"Box.add.remote\(\): too many positional arguments"):
        box.add.remote(1, 2)
    with pytest.raises(TypeError, match="missing a required argument: 'n'"):
        box.add.options(name="x").remote()
    with pytest.raises(TypeError, match="too many positional"):
        box.static.remote(1, 2)
    with pytest.raises(TypeError, match="too many positional"):
        box.klass.remote(1, 2)
    assert actorlib.get([box.add.remote(1), box.static.remote(2), box.klass.remote(n=3)]) == [
        11, 2, 3,
    ]
    assert "too many positional arguments" in actorlib.get(call_box.remote(box))


@actorlib.remote
def named_box_error(name: str) -> str:
    try:
        actorlib.get_actor(name).add.remote(1, 2)
    except TypeError as exc:
        return str(exc)
    return "no error"


def test_a_handle_from_get_actor_checks_arguments_too(rt):
    box = Box.options(name="checked-box").remote(10)
    found = actorlib.get_actor("checked-box")
    with pytest.raises(TypeError, match=r"Box.add.remote\(\): too many positional arguments"):
        found.add.remote(1, 2)
    with pytest.raises(TypeError, match="missing a required argument: 'n'"):
        found.add.remote()
    assert actorlib.get(found.add.remote(5)) == 15
    # ... and from inside a task, where the class arrives from the core
    assert "too many positional arguments" in actorlib.get(named_box_error.remote("checked-box"))
    del box, found


# -- Executor: keyword arguments named fn/self; no references kept -------------------------


def keywords(**kwargs: Any) -> dict[str, Any]:
    return kwargs


class Payload:
    """Weakly referable, picklable."""

    def __init__(self, n: int) -> None:
        self.n = n


def test_executor_submit_passes_fn_and_self_keywords(rt):
    with actorlib.Executor(2) as ex:
        assert ex.submit(keywords, fn=1, self=2).result(timeout=T) == {"fn": 1, "self": 2}
        assert list(ex.map(keywords)) == []


def test_executor_keeps_no_reference_to_callable_arguments_or_result(rt):
    def make_fn() -> Callable[[Payload], Payload]:
        held = Payload(0)

        def fn(p: Payload) -> Payload:
            return Payload(p.n + held.n + 1)

        return fn

    with actorlib.Executor(2) as ex:
        fn, arg = make_fn(), Payload(41)
        future = ex.submit(fn, arg)
        result = future.result(timeout=T)
        assert result.n == 42
        refs = [weakref.ref(o) for o in (fn, arg, result, fn.__closure__[0].cell_contents)]
        # map, chunked and not, caches its callable the same way
        mapped = make_fn()
        assert [p.n for p in ex.map(mapped, [Payload(1), Payload(2)], chunksize=2)] == [2, 3]
        refs.append(weakref.ref(mapped))
        del fn, arg, result, future, mapped
        wait_until(lambda: all(r() is None for r in refs), what="the executor to let go")
        # A callable used again while alive is pickled once (cached), not per call.
        fn2 = make_fn()
        assert ex.submit(fn2, Payload(1)).result(timeout=T).n == 2
        first = ex._tasks_for(fn2)
        assert ex._tasks_for(fn2) is first and first.call._code.blob is not None


# -- user exceptions whose __init__ takes other arguments ----------------------------------


class TwoArgsError(Exception):
    """Pickles, but cannot unpickle: ``args`` is the message, ``__init__`` wants two."""

    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"a={a} b={b}")
        self.a, self.b = a, b


class ReducingError(Exception):
    """Takes extra arguments too, and says how to rebuild itself: crosses as itself."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"code {code}: {detail}")
        self.code, self.detail = code, detail

    def __reduce__(self) -> Any:
        return (ReducingError, (self.code, self.detail))


class LockedError(Exception):
    """Does not pickle at all."""

    def __init__(self) -> None:
        super().__init__("holding a lock")
        self.lock = threading.Lock()


@actorlib.remote
def raise_kind(kind: str) -> None:
    if kind == "two":
        raise TwoArgsError(1, 2)
    if kind == "reducing":
        raise ReducingError(7, "seven")
    raise LockedError()


@actorlib.remote
def reraise_kind(kind: str) -> None:
    """Gets the error of a task of its own, so raises it again as a TaskError."""
    actorlib.get(raise_kind.remote(kind), timeout=T)


@actorlib.remote(num_cpus=0)
class TwoArgsRaiser:
    def raise_it(self) -> None:
        raise TwoArgsError(1, 2)


def test_exception_with_extra_init_arguments_comes_back(rt):
    """One with a ``__reduce__`` of its own crosses as itself; one without, which pickle
    would rebuild as ``cls(*args)`` (one argument short), crosses as its class and state,
    as pickle carries any other object (Ray 2.60 raises an ``UnserializableException``
    instead, and the stdlib's ``ProcessPoolExecutor`` breaks). One that does not pickle
    at all still says its type, message and traceback."""
    with pytest.raises(ReducingError) as info:
        actorlib.get(raise_kind.remote("reducing"), timeout=T)
    assert isinstance(info.value, TaskError)
    assert (info.value.code, info.value.detail) == (7, "seven")
    assert "code 7: seven" in str(info.value) and "raise_kind" in str(info.value)

    actor = TwoArgsRaiser.remote()
    for ref in (raise_kind.remote("two"), reraise_kind.remote("two"),
                actor.raise_it.remote()):
        with pytest.raises(TwoArgsError) as two:
            actorlib.get(ref, timeout=T)
        err = two.value
        assert isinstance(err, TaskError) and type(err.cause) is TwoArgsError
        assert (err.a, err.b, err.cause.a, err.cause.b) == (1, 2, 1, 2)
        assert err.cause.args == ("a=1 b=2",) and str(err.cause) == "a=1 b=2"
        assert str(err).startswith("TwoArgsError raised in ")
        copy = pickle.loads(pickle.dumps(err))  # and it crosses processes again
        assert isinstance(copy, TwoArgsError) and (copy.a, copy.cause.b) == (1, 2)
        assert str(copy) == str(err)
    del actor

    with pytest.raises(TaskError) as caught:
        actorlib.get(raise_kind.remote("locked"), timeout=T)
    err = caught.value
    assert not isinstance(err, (SerializationError, LockedError))
    assert err.cause_type_name == "LockedError" and err.cause is None
    text = str(err)
    assert text.startswith("LockedError raised in raise_kind: holding a lock")
    assert "Remote traceback:" in text and "in raise_kind" in text
    copy = pickle.loads(pickle.dumps(err))  # and it still crosses processes
    assert str(copy) == text


# -- tracebacks name the driver's file and line, for code defined in __main__ / notebooks --

CELL = '''\
def cell_helper(x):
    return 1 / x  # the failing line of the cell


def cell_task(x):
    return cell_helper(x)
'''


def test_traceback_names_the_file_and_line_of_notebook_code(rt, tmp_path):
    # As a notebook does: the cell's code has a file name no worker can read, and its
    # source sits in the driver's linecache.
    filename = str(tmp_path / "no-such-dir" / "cell-7.py")
    lines = CELL.splitlines(keepends=True)
    linecache.cache[filename] = (len(CELL), None, lines, filename)
    try:
        namespace: dict[str, Any] = {"__name__": "__main__"}
        exec(compile(CELL, filename, "exec"), namespace)
        task = actorlib.remote(namespace["cell_task"])
        with pytest.raises(ZeroDivisionError) as info:
            actorlib.get(task.remote(0), timeout=T)
    finally:
        linecache.cache.pop(filename, None)
    text = info.value.traceback_str
    assert "<dynamic-code>" not in text
    assert f'File "{filename}", line 6, in cell_task' in text
    assert f'File "{filename}", line 2, in cell_helper' in text
    assert "return 1 / x  # the failing line of the cell" in text


# -- soft cancel interrupts a running sync task with KeyboardInterrupt ---------------------


@actorlib.remote
def interruptible(rec: Any, sync: Any, blocked_in_get: bool) -> str:
    try:
        try:
            actorlib.get(rec.append.remote("started"))
            if blocked_in_get:
                actorlib.get(sync.wait.remote("never"))
            else:
                while True:
                    time.sleep(0.005)
        except Exception:  # a cancel is not an Exception: this must not catch it
            actorlib.get(rec.append.remote("caught as Exception"))
            return "swallowed"
        except KeyboardInterrupt:
            canceled = actorlib.get_runtime_context().is_canceled()
            actorlib.get(rec.append.remote(("KeyboardInterrupt", canceled)))
            raise
    finally:
        actorlib.get(rec.append.remote("finally"))


@pytest.mark.fresh_runtime  # leaves a Sync.wait call pending
@pytest.mark.parametrize("blocked_in_get", [False, True])
def test_soft_cancel_raises_keyboard_interrupt_in_the_task(rt, blocked_in_get):
    rec, sync = Recorder.remote(), Sync.remote()
    ref = interruptible.remote(rec, sync, blocked_in_get)
    wait_until(lambda: actorlib.get(rec.items.remote(), timeout=T) == ["started"],
               timeout=T, what="the task to start")
    time.sleep(0.05)  # into the sleep loop, or the get
    actorlib.cancel(ref)
    with pytest.raises(TaskCancelledError):
        actorlib.get(ref, timeout=T)
    wait_until(lambda: len(actorlib.get(rec.items.remote(), timeout=T)) == 3,
               timeout=T, what="the task's handlers")
    assert actorlib.get(rec.items.remote(), timeout=T) == [
        "started", ("KeyboardInterrupt", True), "finally",
    ]
    assert actorlib.get_runtime_context().is_canceled() is False  # the driver: no task


# -- cancel(force=True) of a running task fails its ref at once ---------------------------


@actorlib.remote
def sleeper(rec: Any, seconds: float) -> str:
    actorlib.get(rec.append.remote("sleeping"))
    time.sleep(seconds)  # one C call: no bytecode boundary to interrupt it at
    return "woke"


@pytest.mark.fresh_runtime  # kills a worker (process), abandons a thread (thread)
@pytest.mark.init_kwargs(num_cpus=1)
def test_force_cancel_of_a_running_task_fails_it_at_once(rt):
    rec = Recorder.remote()
    ref = sleeper.remote(rec, 4.0)
    behind = echo.remote(7)  # queued behind it (the only CPU is taken)
    wait_until(lambda: actorlib.get(rec.items.remote(), timeout=T) == ["sleeping"],
               timeout=T, what="the task to start")
    start = time.monotonic()
    actorlib.cancel(ref, force=True)
    with pytest.raises(TaskCancelledError):
        actorlib.get(ref, timeout=T)
    # The task queued behind it, and a new one, run now: its CPU is free.
    assert actorlib.get([behind, echo.remote(8)], timeout=T) == [7, 8]
    assert time.monotonic() - start < 2.0, "the cancelled task's sleep was waited for"
    wait_until(lambda: actorlib.available_resources().get("CPU") == 1.0, timeout=T,
               what="the CPU to come back")


# -- an error nobody retrieved is logged once, when its last ref dies ----------------------


@actorlib.remote
def fail_with(tag: str) -> None:
    raise ValueError(f"tag={tag}")


def _unhandled(caplog: pytest.LogCaptureFixture, tag: str) -> int:
    return sum(
        1 for r in caplog.records
        if r.name == "actorlib" and r.getMessage().startswith("Unhandled error (suppress with "
                                                              "'ACTORLIB_IGNORE_UNHANDLED_ERRORS=1')")
        and f"tag={tag}" in r.getMessage()
    )


@actorlib.remote
class Ends:
    def end(self) -> None:
        actorlib.actor.exit_actor()

    def tag(self, tag: str) -> str:
        return tag


def _drop_when_done(ref: Any) -> None:
    actorlib.wait([ref], timeout=T)


# The core runs in the driver on thread and process; on the cluster it runs in the head,
# which sends the report to the driver whose work it was.
@pytest.mark.parametrize("backend_name", ["thread", "process", "cluster"], indirect=True)
def test_unhandled_error_is_logged_once_when_its_last_ref_dies(rt, caplog, monkeypatch):
    monkeypatch.delenv("ACTORLIB_IGNORE_UNHANDLED_ERRORS", raising=False)
    caplog.set_level(logging.ERROR, logger="actorlib")
    fail_with.remote("fire-and-forget")  # dropped before it even ran
    lost = fail_with.remote("lost")
    _drop_when_done(lost)
    del lost
    read = fail_with.remote("read")
    with pytest.raises(ValueError):
        actorlib.get(read, timeout=T)
    del read
    awaited = fail_with.remote("future")
    assert isinstance(awaited.future().exception(timeout=T), ValueError)
    del awaited
    first = fail_with.remote("chained")
    second = echo.remote(first)  # fails with the same error: reported once, as its own
    _drop_when_done(second)
    del first, second
    pair = fail_with.options(num_returns=2).remote("pair")  # one error, two refs
    _drop_when_done(pair[0])
    del pair
    # Not the program's code failing: a call to an actor that ended itself (and the
    # ending call's own result), a call to a killed actor. Ray reports none of these.
    ending = Ends.remote()
    ending.end.remote()
    _drop_when_done(ending.tag.remote("after-exit"))
    killed = Ends.remote()
    actorlib.kill(killed)
    _drop_when_done(killed.tag.remote("after-kill"))
    del ending, killed
    fail_with.remote("sentinel")
    # Every report, whatever order the tasks ended in (a cold worker may end one last).
    reported = ("fire-and-forget", "lost", "chained", "pair", "sentinel")
    wait_until(lambda: all(_unhandled(caplog, t) for t in reported), timeout=T,
               what="the reports")
    counts = {t: _unhandled(caplog, t)
              for t in ("fire-and-forget", "lost", "read", "future", "chained", "pair")}
    assert counts == {"fire-and-forget": 1, "lost": 1, "read": 0, "future": 0, "chained": 1,
                      "pair": 1}
    assert not [r.getMessage() for r in caplog.records if "killed" in r.getMessage()
                or "tag=after" in r.getMessage()]
    message = next(r.getMessage() for r in caplog.records if "tag=lost" in r.getMessage())
    assert "ValueError" in message and "Remote traceback" in message

    monkeypatch.setenv("ACTORLIB_IGNORE_UNHANDLED_ERRORS", "1")
    quiet = fail_with.remote("quiet")
    _drop_when_done(quiet)
    del quiet
    assert actorlib.get(echo.remote(1), timeout=T) == 1  # the drop went before this
    monkeypatch.delenv("ACTORLIB_IGNORE_UNHANDLED_ERRORS")
    fail_with.remote("sentinel-2")
    wait_until(lambda: _unhandled(caplog, "sentinel-2") == 1, timeout=T, what="the report")
    assert _unhandled(caplog, "quiet") == 0


@actorlib.remote(max_retries=1)
def crashes_its_worker() -> None:
    os._exit(3)


@pytest.mark.parametrize("backend_name", ["process", "cluster"], indirect=True)
def test_a_fire_and_forget_task_whose_worker_died_is_reported(rt, caplog, monkeypatch):
    """Ray reports a worker's death (WORKER_DIED) as it reports a task's failure: a task
    nobody reads whose worker died, retries spent, is logged once."""
    monkeypatch.delenv("ACTORLIB_IGNORE_UNHANDLED_ERRORS", raising=False)
    caplog.set_level(logging.ERROR, logger="actorlib")
    lost = crashes_its_worker.remote()
    _drop_when_done(lost)
    del lost
    wait_until(lambda: sum(
        1 for r in caplog.records if r.getMessage().startswith("Unhandled error")
        and "crashes_its_worker died" in r.getMessage()) == 1, timeout=T, what="the report")


def test_an_error_that_cannot_be_unpickled_here_is_still_reported(caplog, monkeypatch):
    """A task failed, but its exception's class exists only where it ran (a module of its
    working_dir, say): the report says so rather than dropping the failure."""
    import sys
    import types

    from actorlib.core import waiting
    from actorlib.core.serialization import serialize

    monkeypatch.delenv("ACTORLIB_IGNORE_UNHANDLED_ERRORS", raising=False)
    caplog.set_level(logging.ERROR, logger="actorlib")
    module = types.ModuleType("only_on_the_worker")
    exec("class WorkerOnlyError(Exception):\n    pass\n", module.__dict__)
    module.WorkerOnlyError.__module__ = "only_on_the_worker"
    monkeypatch.setitem(sys.modules, "only_on_the_worker", module)
    value = serialize(module.WorkerOnlyError("tag=gone"), is_error=True)
    monkeypatch.delitem(sys.modules, "only_on_the_worker")
    waiting._log_unhandled(value)
    (record,) = [r for r in caplog.records if r.getMessage().startswith("Unhandled error")]
    assert "could not be unpickled" in record.getMessage()
    assert "only_on_the_worker" in record.getMessage()


@actorlib.remote
def submit_failing(tag: str) -> int:
    fail_with.remote(tag)  # dropped at once, inside a task: its id is the worker's
    return 1


@pytest.mark.parametrize("backend_name", ["thread", "process", "cluster"], indirect=True)
def test_unhandled_error_of_work_submitted_in_a_task_reaches_the_driver(rt, caplog,
                                                                         monkeypatch):
    monkeypatch.delenv("ACTORLIB_IGNORE_UNHANDLED_ERRORS", raising=False)
    caplog.set_level(logging.ERROR, logger="actorlib")
    assert actorlib.get(submit_failing.remote("nested"), timeout=T) == 1
    wait_until(lambda: _unhandled(caplog, "nested") == 1, timeout=T, what="the report")


# -- worker reuse: 2 CPUs, at most 2 worker processes --------------------------------------


@actorlib.remote
def worker_pid(delay: float) -> int:
    time.sleep(delay)
    return os.getpid()


@pytest.mark.fresh_runtime  # counts the worker processes
@pytest.mark.init_kwargs(num_cpus=2)
def test_sequential_and_batched_tasks_reuse_workers(rt):
    sequential = {actorlib.get(worker_pid.remote(0.0), timeout=T) for _ in range(10)}
    assert len(sequential) <= 2, f"10 sequential tasks used {len(sequential)} workers"
    for delay in (0.0, 0.01):
        batch = set(actorlib.get([worker_pid.remote(delay) for _ in range(10)], timeout=T))
        assert len(batch | sequential) <= 2, f"used {len(batch | sequential)} workers"
