"""The same program on the stdlib's pools and on actorlib's drop-ins, compared.

Each test runs one piece of code written for ``concurrent.futures.ProcessPoolExecutor`` or
``multiprocessing.Pool`` on the stdlib and on ``actorlib.Executor``/``actorlib.Pool``, and
compares what a program sees: results, the exception's type, ``args``, ``str()``, fields
and ``__cause__`` (the remote traceback), and the order of results. Where the stdlib's
error shape only exists with processes (``_RemoteTraceback``), a stdlib process pool in the
test (forked: a few ms) is the reference; elsewhere its thread pools are.
Deliberate differences are tested as such, named ``..._deliberately``.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import functools
import multiprocessing
import multiprocessing.pool
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures.process import _RemoteTraceback
from typing import Any

import pytest
from testkit import T, assert_no_leftovers, run_script

from actorlib import Executor, Pool
from actorlib.exceptions import TaskError

pytestmark = pytest.mark.shared_runtime

# -- module-level functions (picklable by reference, for the stdlib's processes too) -------


def square(x: int) -> int:
    return x * x


def raise_value_error(x: int = 3) -> None:
    raise ValueError(f"bad item {x}", x)


def raise_key_error() -> None:
    raise KeyError("missing")


def raise_file_not_found() -> None:
    open("/nonexistent-dir-of-actorlib-tests/file")  # noqa: SIM115 - it raises


def raise_unicode_error() -> None:
    b"\xff".decode("utf-8")


def raise_system_exit() -> None:
    raise SystemExit(3)


def raise_chained() -> None:
    try:
        {}["key"]
    except KeyError as exc:
        raise ValueError("wrapped") from exc


class TwoArgsError(Exception):
    """``args`` is the message, ``__init__`` wants two: pickle's ``cls(*args)`` fails."""

    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"{a}-{b}")
        self.a, self.b = a, b


def raise_two_args_error() -> None:
    raise TwoArgsError(1, 2)


def make_generator() -> Iterator[int]:
    yield 1


def fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError(f"bad item {x}")
    return x


def breaks_after(n: int) -> Iterator[int]:
    """An input whose iteration raises after ``n`` items."""
    yield from range(1, n + 1)
    raise RuntimeError("the input broke")


NOT_CALLABLE: Any = 42

RAISERS: list[Callable[[], None]] = [
    raise_value_error, raise_key_error, raise_file_not_found, raise_unicode_error,
    raise_system_exit, raise_chained,
]


@contextlib.contextmanager
def stdlib_executor() -> Iterator[cf.ProcessPoolExecutor]:
    """The stdlib's, forked (a few ms); gone, threads and processes, when it ends."""
    with cf.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as ex:
        yield ex


@contextlib.contextmanager
def stdlib_pool() -> Iterator[multiprocessing.pool.Pool]:
    pool = multiprocessing.get_context("fork").Pool(1)
    try:
        yield pool
    finally:
        pool.close()
        pool.join()


def _shape(exc: BaseException) -> dict[str, Any]:
    """What code written for the stdlib reads off an exception it caught."""
    fields = ("errno", "strerror", "filename", "code", "encoding", "start", "end", "reason")
    return {
        "name": type(exc).__name__, "args": exc.args, "str": str(exc), "repr": repr(exc),
        "printed": traceback.format_exception_only(exc)[-1],
        **{f: getattr(exc, f) for f in fields if hasattr(exc, f)},
    }


def _check_remote_traceback(exc: BaseException, cause_type: type, fn: Callable[..., Any]) -> None:
    """``__cause__`` holds the remote traceback as the stdlib formats it."""
    cause = exc.__cause__
    assert type(cause) is cause_type
    assert cause.tb.startswith('\n"""\nTraceback (most recent call last):\n')
    assert cause.tb.endswith(f'{traceback.format_exception_only(exc)[-1]}"""')
    assert f"in {fn.__name__}\n" in cause.tb
    printed = "".join(traceback.format_exception(exc))
    assert "The above exception was the direct cause of the following exception" in printed


# -- a call's own error ------------------------------------------------------------------


def test_a_calls_error_is_raised_as_process_pool_executor_raises_it(rt):
    with Executor(2) as ex, stdlib_executor() as ref:
        for fn in RAISERS:
            theirs = ref.submit(fn).exception(timeout=T)
            ours = ex.submit(fn).exception(timeout=T)
            assert _shape(ours) == _shape(theirs), fn
            assert isinstance(ours, type(theirs)) and isinstance(ours, TaskError)
            _check_remote_traceback(theirs, _RemoteTraceback, fn)
            _check_remote_traceback(ours, _RemoteTraceback, fn)
            if fn is raise_chained:  # the remote chain is in the remote traceback
                for err in (theirs, ours):
                    assert "KeyError: 'key'\n\nThe above exception was the direct cause" in (
                        err.__cause__.tb  # type: ignore[union-attr]
                    )
        # map raises it in the failing item's place, the same shape.
        for chunksize in (1, 2):
            errors = []
            for executor in (ref, ex):
                with pytest.raises(ValueError) as got:
                    list(executor.map(fail_on_three, range(5), chunksize=chunksize))
                errors.append(got.value)
            assert _shape(errors[1]) == _shape(errors[0])
            _check_remote_traceback(errors[1], _RemoteTraceback, fail_on_three)


def test_a_generator_function_fails_its_call_like_process_pool_executor(rt):
    """The stdlib cannot send a generator back; an actorlib task returning one would
    stream its items instead: the executor fails the call as the stdlib does."""
    with Executor(1) as ex, stdlib_executor() as ref:
        theirs = ref.submit(make_generator).exception(timeout=T)
        ours = ex.submit(make_generator).exception(timeout=T)
    assert _shape(ours) == _shape(theirs)
    assert type(ours.__cause__) is type(theirs.__cause__) is _RemoteTraceback


def test_an_error_whose_init_wants_other_arguments_arrives_deliberately(rt):
    """The stdlib cannot unpickle it: its pool breaks (``BrokenProcessPool`` for this call
    and every later one; Ray 2.60 raises an ``UnserializableException``). actorlib
    rebuilds it from its class and state, as pickle rebuilds any other object: raised as
    the stdlib raises the errors it can carry, and the executor goes on."""
    with stdlib_executor() as ref:
        broken = ref.submit(raise_two_args_error).exception(timeout=T)
        assert isinstance(broken, cf.process.BrokenProcessPool)
    with Executor(1) as ex:
        ours = ex.submit(raise_two_args_error).exception(timeout=T)
        assert ex.submit(square, 3).result(timeout=T) == 9
    assert isinstance(ours, TwoArgsError) and isinstance(ours, TaskError)
    assert _shape(ours) == _shape(TwoArgsError(1, 2))
    assert (ours.a, ours.b) == (1, 2)
    _check_remote_traceback(ours, _RemoteTraceback, raise_two_args_error)
    again = pickle.loads(pickle.dumps(ours))
    assert _shape(again) == _shape(ours) and (again.a, again.b) == (1, 2)


def test_a_calls_error_pickles_with_its_shape(rt):
    with Executor(1) as ex:
        err = ex.submit(raise_file_not_found).exception(timeout=T)
    again = pickle.loads(pickle.dumps(err))
    assert _shape(again) == _shape(err)
    assert isinstance(again, FileNotFoundError) and isinstance(again, TaskError)
    assert again.cause_type_name == "FileNotFoundError"


def test_a_calls_error_is_raised_as_multiprocessing_pool_raises_it(rt):
    remote_tb = multiprocessing.pool.RemoteTraceback  # type: ignore[attr-defined]
    with Pool(2) as pool, stdlib_pool() as ref:
        for fn in RAISERS:
            if fn is raise_system_exit:  # (it kills a multiprocessing worker: no result)
                continue
            got = []
            for p in (ref, pool):
                with pytest.raises(BaseException) as caught:
                    p.apply(fn)
                got.append(caught.value)
            assert _shape(got[1]) == _shape(got[0]), fn
            _check_remote_traceback(got[0], remote_tb, fn)
            _check_remote_traceback(got[1], remote_tb, fn)
        for run in (
            lambda p: p.map(fail_on_three, range(6), 2),
            lambda p: p.map_async(fail_on_three, range(6)).get(T),
            lambda p: p.starmap(fail_on_three, [(x,) for x in range(6)]),
            lambda p: list(p.imap(fail_on_three, range(6))),
            lambda p: list(p.imap_unordered(fail_on_three, range(6))),
        ):
            got = []
            for p in (ref, pool):
                with pytest.raises(ValueError) as caught:
                    run(p)
                got.append(caught.value)
            assert _shape(got[1]) == _shape(got[0])
            _check_remote_traceback(got[1], remote_tb, fail_on_three)
        # error_callback is handed the same error.
        handed: list[list[BaseException]] = [[], []]
        for p, into in zip((ref, pool), handed, strict=True):
            result = p.apply_async(raise_key_error, error_callback=into.append)
            result.wait(T)
            assert result.ready() and not result.successful()
        assert _shape(handed[1][0]) == _shape(handed[0][0])
        assert type(handed[1][0].__cause__) is remote_tb


# -- a callable that is not one ------------------------------------------------------------


def test_submitting_a_non_callable_fails_its_future_like_the_stdlib(rt):
    with Executor(1) as ex, cf.ThreadPoolExecutor(1) as ref:
        for executor in (ref, ex):
            future = executor.submit(NOT_CALLABLE)
            with pytest.raises(TypeError, match=r"^'int' object is not callable$"):
                future.result(timeout=T)
            assert list(executor.map(NOT_CALLABLE, [])) == []
            for chunksize in (1, 2):
                results = executor.map(NOT_CALLABLE, [1, 2], chunksize=chunksize)
                with pytest.raises(TypeError, match="not callable"):
                    next(results)
        assert ex.submit(square, 3).result(timeout=T) == 9  # the executor goes on


def test_a_pool_given_a_non_callable_fails_like_multiprocessing(rt):
    with Pool(1) as pool, multiprocessing.pool.ThreadPool(1) as ref:
        for p in (ref, pool):
            result = p.apply_async(NOT_CALLABLE)
            with pytest.raises(TypeError, match=r"^'int' object is not callable$"):
                result.get(T)
            assert p.map(NOT_CALLABLE, []) == []
            for run in (
                lambda p: p.apply(NOT_CALLABLE),
                lambda p: p.map(NOT_CALLABLE, [1, 2]),
                lambda p: p.starmap_async(NOT_CALLABLE, [(1,)]).get(T),
                lambda p: next(p.imap(NOT_CALLABLE, [1])),
                lambda p: next(p.imap_unordered(NOT_CALLABLE, [1], 2)),
            ):
                with pytest.raises(TypeError, match="not callable"):
                    run(p)
        assert pool.apply(square, (4,)) == 16


def test_arguments_of_the_wrong_shape_fail_the_call_like_multiprocessing(rt):
    """``args`` that are no sequence, ``kwds`` no mapping, a ``starmap`` item that is not
    iterable, an ``imap`` input that is not: multiprocessing returns the result (the
    iterator) and raises the ``TypeError`` from it, not from the call that was given them."""
    with Pool(1) as pool, multiprocessing.pool.ThreadPool(1) as ref:
        messages = []
        for p in (ref, pool):
            for result in (p.apply_async(square, 5), p.apply_async(square, (1,), 5),
                           p.starmap_async(square, [1])):
                with pytest.raises(TypeError) as caught:
                    result.get(T)
                messages.append(str(caught.value))
            with pytest.raises(TypeError):
                p.starmap(square, [1])
            items = p.imap(square, 5)
            with pytest.raises(TypeError, match="'int' object is not iterable"):
                next(items)
        assert messages[3:6] == messages[0:3]  # starmap's "'int' object is not iterable" too
        assert pool.apply(square, [6]) == 36


# -- imap over an input that raises --------------------------------------------------------


def _drain(it: Iterator[Any]) -> list[Any]:
    """Every step of ``it``: its values, and the type of each error it raised."""
    steps: list[Any] = []
    # (multiprocessing's chunked imap is a generator: no next(timeout))
    step = functools.partial(it.next, T) if hasattr(it, "next") else it.__next__
    while True:
        try:
            steps.append(step())
        except StopIteration:
            return steps
        except Exception as exc:
            steps.append(type(exc))


def test_imap_over_an_input_that_raises_yields_what_came_before_like_multiprocessing(rt):
    with Pool(2) as pool, multiprocessing.pool.ThreadPool(2) as ref:
        for p in (ref, pool):
            # The input's error takes the next item's place; then the iteration ends.
            assert _drain(p.imap(square, breaks_after(3))) == [1, 4, 9, RuntimeError]
            unordered = _drain(p.imap_unordered(square, breaks_after(3)))
            assert sorted(unordered, key=str) == sorted([1, 4, 9, RuntimeError], key=str)
            # Not from the imap call itself, even when the input fails at once.
            assert _drain(p.imap(square, breaks_after(0))) == [RuntimeError]
        assert pool.apply(square, (5,)) == 25


def test_chunked_imap_keeps_the_items_read_before_the_input_raised_deliberately(rt):
    with Pool(2) as pool, multiprocessing.pool.ThreadPool(2) as ref:
        # multiprocessing loses the chunk being read (3 here) when its input raises.
        assert _drain(ref.imap(square, breaks_after(3), 2)) == [1, 4, RuntimeError]
        assert _drain(pool.imap(square, breaks_after(3), 2)) == [1, 4, 9, RuntimeError]


# -- chunksize 0 ---------------------------------------------------------------------------


def test_map_with_chunksize_zero_raises_deliberately(rt):
    with Pool(1) as pool, multiprocessing.pool.ThreadPool(1) as ref:
        # multiprocessing runs nothing and returns a list of None (it never calls func).
        assert ref.map(square, [1, 2], chunksize=0) == [None, None]
        for run in (
            lambda: pool.map(square, [1, 2], chunksize=0),
            lambda: pool.map_async(square, [1, 2], chunksize=0),
        ):
            with pytest.raises(ValueError, match="Chunksize must be 1\\+, not 0"):
                run()



# -- at interpreter exit -------------------------------------------------------------------

EXIT_SCRIPT = textwrap.dedent("""
    import sys, time

    def write(path, delay):
        time.sleep(delay)
        with open(path, "w") as f:
            f.write("done")

    if __name__ == "__main__":
        side, out = sys.argv[1], sys.argv[2]
        if side == "stdlib":
            from concurrent.futures import ProcessPoolExecutor as Executor
            from multiprocessing import Pool
        else:
            from actorlib import Executor, Pool
        left = Executor(1)  # never shut down
        left.submit(write, out + "/never-shut-down", 0.2)
        dropped = Executor(1)
        dropped.submit(write, out + "/shut-down-without-wait", 0.2)
        dropped.shutdown(wait=False)
        pool = Pool(1)  # never closed: terminated at exit, its work unfinished
        pool.apply_async(write, (out + "/pool", 5.0))
""")


@pytest.mark.parametrize("backend", ["process", "thread"])
def test_calls_in_flight_finish_at_exit_as_with_the_stdlib(tmp_path, backend):
    """``ProcessPoolExecutor`` runs what was submitted to its end when the interpreter
    exits (shut down without waiting, or not at all); multiprocessing terminates a pool."""
    script = tmp_path / "exits.py"
    script.write_text(EXIT_SCRIPT)
    written = {}
    for side in ("stdlib", "actorlib"):
        out = tmp_path / f"written-by-{side}"  # (not "actorlib": the script runs here)
        out.mkdir()
        run_script(str(script), backend, timeout=60, args=[side, str(out)])
        written[side] = sorted(p.name for p in out.iterdir())
    assert written["stdlib"] == ["never-shut-down", "shut-down-without-wait"]
    assert written["actorlib"] == written["stdlib"]


INTERRUPTED_SCRIPT = textwrap.dedent("""
    import sys, time

    if __name__ == "__main__":
        if sys.argv[1] == "stdlib":
            from concurrent.futures import ProcessPoolExecutor as Executor
        else:
            from actorlib import Executor
        executor = Executor(1)
        future = executor.submit(time.sleep, 60)
        print("submitted", flush=True)
        if sys.argv[2] == "with":  # the with-block's shutdown(wait=True) is interrupted
            with executor:
                future.result()
        else:  # never shut down: the wait at exit is interrupted
            time.sleep(60)
""")


@pytest.mark.parametrize("where", ["with", "exit"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_ends_the_script_without_waiting_for_calls(tmp_path, signum, where):
    """Ctrl-C at a terminal (to the process group: the stdlib's workers too, whose calls
    it interrupts) or SIGTERM ends the script at once, from a ``with`` block as at exit:
    no wait for the calls in flight."""
    script = tmp_path / "interrupted.py"
    script.write_text(INTERRUPTED_SCRIPT)
    sides = ("stdlib", "actorlib") if signum == signal.SIGINT else ("actorlib",)
    for side in sides:
        token = uuid.uuid4().hex  # marks the script's processes (its workers too)
        proc = subprocess.Popen(
            [sys.executable, str(script), side, where], stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True, start_new_session=True,
            env=dict(os.environ, ACTORLIB_BACKEND="process", ACTORLIB_TEST_RUN_TOKEN=token),
            # (a Ctrl-C reaches a script as SIG_DFL: not the ignored SIGINT of a background job)
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "submitted"
            time.sleep(0.3)
            os.killpg(proc.pid, signum)
            proc.wait(timeout=15)  # (the call would take 60 s)
            assert_no_leftovers(token, grace=5)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()
