"""actorlib.Executor against the documented semantics of concurrent.futures.

Where practical the same calls are made on a stdlib executor (ThreadPoolExecutor: same
``Executor`` contract, no processes to start) and the results and errors compared. Every
test runs on every backend: some let the Executor start its own runtime
(``backend_name``), others share the ``rt`` fixture's runtime.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import pickle
from concurrent.futures.process import BrokenProcessPool

import pytest
from testkit import Recorder, Sync, T, ctrl_c_elsewhere, wait_until

import actorlib
from actorlib import Executor
from actorlib.exceptions import (
    ActorlibError,
    RuntimeClosedError,
    TaskError,
    WorkerCrashedError,
)
from actorlib.executor import (
    BrokenExecutorError,
    ExecutorInitializerError,
    ExecutorShutdownError,
    ExecutorTimeoutError,
    ExecutorWorkerError,
    _translate,
)

pytestmark = pytest.mark.shared_runtime

# -- module-level functions (picklable by reference on every backend) ---------------------


def square(x):
    return x * x


def add(x, y):
    return x + y


def fail_on(x, bad=5):
    if x == bad:
        raise ValueError(f"bad item {x}")
    return x


def raise_key_error():
    raise KeyError("missing")


def identity(*args, **kwargs):
    return args, kwargs


def wait_for(sync, key="go", value=None):
    actorlib.get(sync.wait.remote(key), timeout=T)
    return value


def record(rec, x):
    actorlib.get(rec.append.remote(x), timeout=T)
    return x


def wait_then_record(sync, key, rec, x):
    actorlib.get(sync.wait.remote(key), timeout=T)
    return record(rec, x)


async def async_double(x):
    await asyncio.sleep(0)
    return 2 * x


_init_calls: list[str] = []


def set_up_worker(rec, tag):
    actorlib.get(rec.incr.remote(tag), timeout=T)


def failing_initializer():
    raise OSError("cannot set up")


def gauged(gauge, n):
    actorlib.get(gauge.enter.remote(n), timeout=T)
    actorlib.get(gauge.leave.remote(), timeout=T)


@actorlib.remote(num_cpus=0)
class Gauge:
    """Counts calls inside at once; each waits until two are inside (or all have come)."""

    def __init__(self):
        self.inside = 0
        self.peak = 0
        self.entered = 0
        self.cond = None

    def _c(self):
        if self.cond is None:
            self.cond = asyncio.Condition()
        return self.cond

    async def enter(self, n):
        async with self._c():
            self.inside += 1
            self.entered += 1
            self.peak = max(self.peak, self.inside)
            self._c().notify_all()
            await self._c().wait_for(lambda: self.inside >= 2 or self.entered >= n)

    async def leave(self):
        self.inside -= 1

    async def get_peak(self):
        return self.peak


# -- the runtime the executor runs on -----------------------------------------------------


def test_is_a_concurrent_futures_executor():
    assert issubclass(Executor, cf.Executor)


def test_starts_and_stops_its_own_runtime(backend_name):
    assert not actorlib.is_initialized()
    with Executor(2, backend=backend_name) as ex:
        assert actorlib.is_initialized()
        assert actorlib.cluster_resources()["CPU"] == 2
        assert ex.submit(square, 7).result(timeout=T) == 49
    assert not actorlib.is_initialized()


def test_shares_an_initialized_runtime_and_leaves_it_running(rt):
    with Executor(2) as ex:
        assert ex.submit(square, 3).result(timeout=T) == 9
    assert actorlib.is_initialized()
    assert actorlib.get(actorlib.put(1)) == 1


def test_max_workers_defaults_to_the_runtime_cpus(rt):
    with Executor() as ex:
        assert ex.max_workers == 4


def test_executors_that_started_a_runtime_share_it_until_the_last_shuts_down(backend_name):
    a = Executor(2, backend=backend_name)
    b = Executor(2, backend=backend_name)
    a.shutdown()
    assert actorlib.is_initialized()
    assert b.submit(add, 1, 2).result(timeout=T) == 3
    b.shutdown()
    assert not actorlib.is_initialized()


@pytest.mark.parametrize("bad", [0, -1])
def test_max_workers_must_be_positive(bad):
    with pytest.raises(ValueError):
        cf.ProcessPoolExecutor(bad)
    with pytest.raises(ValueError):
        Executor(bad)
    assert not actorlib.is_initialized()


def test_max_tasks_per_child_is_validated():
    with pytest.raises(ValueError):
        Executor(1, max_tasks_per_child=0)
    with pytest.raises(TypeError):
        Executor(1, max_tasks_per_child=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Executor(1, initializer=42)  # type: ignore[arg-type]
    assert not actorlib.is_initialized()


def test_concurrency_is_bounded_by_max_workers(rt):
    gauge = Gauge.remote()
    with Executor(2) as ex:
        futures = [ex.submit(gauged, gauge, 6) for _ in range(6)]
        cf.wait(futures, timeout=T)
        for f in futures:
            f.result()
    assert actorlib.get(gauge.get_peak.remote(), timeout=T) == 2


def test_concurrency_is_bounded_in_an_own_runtime(backend_name):
    with Executor(2, backend=backend_name) as ex:
        gauge = Gauge.remote()
        futures = [ex.submit(gauged, gauge, 6) for _ in range(6)]
        for f in futures:
            f.result(timeout=T)
        assert actorlib.get(gauge.get_peak.remote(), timeout=T) == 2
        del gauge


# -- submit -------------------------------------------------------------------------------


def test_submit_returns_standard_futures_like_the_stdlib(rt):
    with Executor(2) as ex, cf.ThreadPoolExecutor(2) as ref:
        for fn, args, kwargs in [
            (square, (4,), {}), (add, (1, 2), {}), (identity, (1,), {"k": [2]}),
        ]:
            ours, theirs = ex.submit(fn, *args, **kwargs), ref.submit(fn, *args, **kwargs)
            assert isinstance(ours, cf.Future)
            assert ours.result(timeout=T) == theirs.result()


def test_remote_exceptions_arrive_as_the_original_type(rt):
    with Executor(2) as ex, cf.ThreadPoolExecutor(1) as ref:
        for fn in (raise_key_error,):
            ours, theirs = ex.submit(fn), ref.submit(fn)
            with pytest.raises(KeyError) as got:
                ours.result(timeout=T)
            with pytest.raises(KeyError):
                theirs.result()
            assert isinstance(got.value, TaskError)
            assert "missing" in str(got.value)
            assert isinstance(ours.exception(), type(theirs.exception()))


def test_futures_work_with_wait_and_as_completed(rt):
    with Executor(2) as ex:
        futures = [ex.submit(square, i) for i in range(10)]
        done, not_done = cf.wait(futures, timeout=T)
        assert done == set(futures) and not not_done
        assert sorted(f.result() for f in cf.as_completed(futures, timeout=T)) == [
            i * i for i in range(10)
        ]


def test_an_executor_future_is_a_stdlib_future_with_a_lighter_condition():
    """``ExecutorFuture`` builds its own attributes and condition (fewer objects for the
    collector): the same attributes as ``Future``'s, and waits, time-outs, wake-ups of
    several waiting threads, ``wait``/``as_completed`` and callbacks as the stdlib's."""
    import threading

    from actorlib.executor_tasks import ChunkFuture, ExecutorFuture

    assert set(vars(cf.Future())) <= set(vars(ExecutorFuture()))
    assert isinstance(ExecutorFuture()._condition, threading.Condition)
    future = ChunkFuture()
    with pytest.raises(cf.TimeoutError):
        future.result(timeout=0.01)
    got: list[object] = []
    waiters = [
        threading.Thread(target=lambda: got.append(future.result(timeout=T)))
        for _ in range(3)
    ]
    for waiter in waiters:
        waiter.start()
    wait_until(lambda: len(future._condition._waiters) == 3, what="three waiting threads")
    other = ExecutorFuture()
    done, not_done = cf.wait([future, other], timeout=0.01)
    assert not done and not_done == {future, other}
    called: list[cf.Future[object]] = []
    future.add_done_callback(called.append)
    assert future.set_running_or_notify_cancel()
    future.set_result(7)
    for waiter in waiters:
        waiter.join(T)
    assert got == [7, 7, 7] and called == [future]
    assert cf.wait([future, other], return_when=cf.FIRST_COMPLETED).done == {future}
    other.set_exception(KeyError("k"))
    assert list(cf.as_completed([other], timeout=T)) == [other]
    assert isinstance(other.exception(), KeyError)
    cancelled = ExecutorFuture()
    assert cancelled.cancel() and cancelled.cancelled()
    with pytest.raises(cf.CancelledError):
        cancelled.result()


def test_a_map_future_is_a_stdlib_future_sharing_its_maps_condition():
    """``MapFuture`` (one per call of ``map``) shares one condition with the map's other
    futures: a wake-up for one does not end another's wait (on any thread, with or
    without a time limit); otherwise it is a stdlib future."""
    import threading

    from actorlib.core.interruptible import FutureCondition
    from actorlib.executor_tasks import MapFuture

    shared = FutureCondition()
    first, second, third = MapFuture(shared), MapFuture(shared), MapFuture(shared)
    assert set(vars(cf.Future())) <= set(vars(first))
    got: list[object] = []
    waiters = [
        threading.Thread(target=lambda: got.append(second.result())),
        threading.Thread(target=lambda: got.append(second.result(timeout=T))),
        threading.Thread(target=lambda: got.append(second.exception(timeout=T))),
    ]
    for waiter in waiters:
        waiter.start()
    wait_until(lambda: len(shared._waiters) == 3, what="three waiting threads")
    assert first.set_running_or_notify_cancel()
    first.set_result(1)  # wakes all three: each waits on for ``second``
    wait_until(lambda: len(shared._waiters) == 3, what="the three waiting again")
    assert got == [] and all(waiter.is_alive() for waiter in waiters)
    called: list[cf.Future[object]] = []
    second.add_done_callback(called.append)
    second.set_result(2)
    for waiter in waiters:
        waiter.join(T)
    assert sorted(got, key=repr) == [2, 2, None] and called == [second]
    assert first.result() == 1 and second.result(timeout=0) == 2
    with pytest.raises(cf.InvalidStateError):
        second.set_result(3)
    with pytest.raises(cf.TimeoutError):
        third.result(timeout=0.01)
    done, not_done = cf.wait([first, third], timeout=0.01)
    assert done == {first} and not_done == {third}
    watcher = threading.Thread(target=lambda: got.append(cf.wait([third], timeout=T)))
    watcher.start()
    wait_until(lambda: third._waiters, what="a wait() on the third")
    third.set_exception(KeyError("k"))
    watcher.join(T)
    assert got[-1].done == {third} and isinstance(third.exception(), KeyError)
    cancelled = MapFuture(shared)
    assert cancelled.cancel() and not cancelled.set_running_or_notify_cancel()
    with pytest.raises(cf.CancelledError):
        cancelled.result()


def test_map_read_on_another_thread_waits_through_later_results(rt):
    """A later call's result, in first, wakes an iterator on another thread that waits
    for an earlier one: it reads on in order (``MapFuture``s share a condition)."""
    import threading
    import time

    sync, rec = Sync.remote(), Recorder.remote()
    got: list[str] = []
    with Executor(2) as ex:
        results = ex.map(wait_then_record, [sync] * 3, ["first", "then", "then"], [rec] * 3,
                         "abc")
        reader = threading.Thread(target=lambda: got.extend(results), daemon=True)
        reader.start()
        time.sleep(0.2)  # the reader waits for "a"
        actorlib.get(sync.set.remote("then"), timeout=T)
        wait_until(lambda: sorted(actorlib.get(rec.items.remote(), timeout=T)) == ["b", "c"],
                   what="the later calls")
        reader.join(0.2)
        assert reader.is_alive() and got == []
        actorlib.get(sync.set.remote("first"), timeout=T)
        reader.join(T)
    assert got == ["a", "b", "c"]


@pytest.mark.parametrize("wait", ["result", "exception", "map"])
def test_ctrl_c_reaches_a_main_thread_waiting_for_a_call(rt, wait):
    """``Future.result``/``exception`` (with or without a timeout) and ``map``'s iterator
    wait on the main thread: Ctrl-C reaches them at once, whichever thread of the process
    the kernel hands it to; the call itself runs on."""
    sync = Sync.remote()
    with Executor(1) as ex:
        future = ex.submit(wait_for, sync, "late", 1)
        waits = {
            "result": ("result", lambda: future.result()),
            "exception": ("exception", lambda: future.exception(timeout=T)),
            "map": ("result", lambda: next(ex.map(wait_for, [sync], ["late"], [2], timeout=T))),
        }
        function, block = waits[wait]
        with ctrl_c_elsewhere(
            function, "interruptible.py", lambda: actorlib.get(sync.set.remote("late"), timeout=T)
        ):
            block()
        assert future.result(timeout=T) == 1
        assert future.exception(timeout=0) is None


def test_futures_keep_the_stdlib_timeouts_and_cancellation(rt):
    """The waits Ctrl-C can interrupt keep the stdlib's results, on and off the main
    thread: ``TimeoutError`` (also for a timeout of 0 or less), ``CancelledError``."""
    sync = Sync.remote()
    with Executor(1) as ex, cf.ThreadPoolExecutor(1) as other:
        running = ex.submit(wait_for, sync, "go", 1)
        queued = ex.submit(square, 3)
        for timeout in (0.15, 0, -1):
            for wait in (running.result, running.exception, queued.result):
                with pytest.raises(cf.TimeoutError):
                    wait(timeout)
                with pytest.raises(cf.TimeoutError):
                    other.submit(wait, timeout).result(timeout=T)
        assert queued.cancel()
        for wait in (queued.result, queued.exception):
            with pytest.raises(cf.CancelledError):
                wait()
            with pytest.raises(cf.CancelledError):
                other.submit(wait).result(timeout=T)
        actorlib.get(sync.set.remote("go"), timeout=T)
        assert running.exception() is None and running.result() == 1
        assert other.submit(running.result, 0).result(timeout=T) == 1


def test_futures_work_with_asyncio(rt):
    async def main(ex):
        loop = asyncio.get_running_loop()
        a = await asyncio.wrap_future(ex.submit(square, 5))
        b = await loop.run_in_executor(ex, add, 2, 3)
        c = await asyncio.gather(*(loop.run_in_executor(ex, square, i) for i in range(4)))
        return a, b, c

    with Executor(2) as ex:
        assert asyncio.run(main(ex)) == (25, 5, [0, 1, 4, 9])


def test_async_functions_run_to_their_result(rt):
    with Executor(2) as ex:
        assert ex.submit(async_double, 21).result(timeout=T) == 42
        assert list(ex.map(async_double, range(5), chunksize=2)) == [0, 2, 4, 6, 8]


def test_lambdas_and_partials(rt):
    import functools

    with Executor(2) as ex:
        assert ex.submit(lambda x: x + 1, 1).result(timeout=T) == 2
        assert ex.submit(functools.partial(add, 10), 5).result(timeout=T) == 15
        assert list(ex.map(functools.partial(add, 1), [1, 2], chunksize=2)) == [2, 3]


def test_unpicklable_argument_fails_the_future(rt):
    import threading

    with Executor(1) as ex:
        future = ex.submit(square, threading.Lock())
        with pytest.raises(TypeError):
            future.result(timeout=T)


# -- cancel and shutdown ------------------------------------------------------------------


def test_cancel_a_queued_future(rt):
    sync, rec = Sync.remote(), Recorder.remote()
    with Executor(1) as ex:
        running = ex.submit(wait_for, sync, "go", "first")
        queued = ex.submit(record, rec, "never")
        assert queued.cancel() is True
        assert queued.cancelled()
        actorlib.get(sync.set.remote("go"), timeout=T)
        assert running.result(timeout=T) == "first"
        assert running.cancel() is False  # done futures cannot be cancelled
    with pytest.raises(cf.CancelledError):
        queued.result()
    assert actorlib.get(rec.items.remote(), timeout=T) == []


def test_a_running_future_cannot_be_cancelled(rt):
    sync = Sync.remote()
    with Executor(1) as ex:
        running = ex.submit(wait_for, sync, "go", 1)
        assert running.running()
        assert running.cancel() is False
        actorlib.get(sync.set.remote("go"), timeout=T)
        assert running.result(timeout=T) == 1


def test_shutdown_cancel_futures(rt):
    sync, rec = Sync.remote(), Recorder.remote()
    ex = Executor(1)
    first = ex.submit(wait_for, sync, "go", "first")
    rest = [ex.submit(record, rec, i) for i in range(3)]
    ex.shutdown(wait=False, cancel_futures=True)
    assert all(f.cancelled() for f in rest)
    actorlib.get(sync.set.remote("go"), timeout=T)
    assert first.result(timeout=T) == "first"
    ex.shutdown(wait=True)
    assert actorlib.get(rec.items.remote(), timeout=T) == []


def test_shutdown_waits_for_pending_work(backend_name):
    ex = Executor(1, backend=backend_name)
    futures = [ex.submit(square, i) for i in range(5)]
    ex.shutdown(wait=True)
    assert all(f.done() for f in futures)
    assert [f.result() for f in futures] == [0, 1, 4, 9, 16]
    assert not actorlib.is_initialized()


def large(n):
    return bytearray(n)  # out of band: through shared memory on the process backend


def test_map_results_read_after_shutdown(backend_name):
    """As the stdlib: a map's results, small and large, can be read after shutdown(wait)
    ended the runtime the executor started."""
    ex = Executor(2, backend=backend_name)
    small = ex.map(square, range(20))
    chunked = ex.map(square, range(20), chunksize=6)
    big = ex.map(large, [1 << 21] * 3)
    ex.shutdown(wait=True)
    assert not actorlib.is_initialized()
    assert list(small) == list(chunked) == [i * i for i in range(20)]
    assert [len(b) for b in big] == [1 << 21] * 3


def test_shutdown_without_wait_still_finishes_the_work(backend_name):
    ex = Executor(1, backend=backend_name)
    futures = [ex.submit(square, i) for i in range(5)]
    ex.shutdown(wait=False)
    assert [f.result(timeout=T) for f in futures] == [0, 1, 4, 9, 16]
    # The runtime it started goes away once the work is done.
    wait_until(lambda: not actorlib.is_initialized(), what="the runtime to stop")


def test_submit_after_shutdown_raises_runtime_error(rt):
    for factory in (lambda: Executor(1), lambda: cf.ThreadPoolExecutor(1)):
        ex = factory()
        ex.shutdown()
        with pytest.raises(RuntimeError):
            ex.submit(square, 1)
        with pytest.raises(RuntimeError):
            ex.map(square, [1])
    ex = Executor(1)
    ex.shutdown()
    with pytest.raises(ExecutorShutdownError) as got:
        ex.submit(square, 1)
    assert isinstance(got.value, RuntimeClosedError)
    assert isinstance(got.value, ActorlibError)
    ex.shutdown()  # idempotent


# -- map ----------------------------------------------------------------------------------


@pytest.mark.parametrize("chunksize", [1, 3, 100])
def test_map_matches_the_stdlib(rt, chunksize):
    with Executor(2) as ex, cf.ThreadPoolExecutor(2) as ref:
        assert list(ex.map(square, range(20), chunksize=chunksize)) == list(
            ref.map(square, range(20))
        )
        # Several iterables stop at the shortest, as zip does.
        assert list(ex.map(add, range(7), [10, 20, 30], chunksize=chunksize)) == list(
            ref.map(add, range(7), [10, 20, 30])
        )
        assert list(ex.map(square, [], chunksize=chunksize)) == []


@pytest.mark.parametrize("chunksize", [1, 3, 100])
def test_map_over_ranges_in_chunks(rt, chunksize):
    # A range's chunks travel as ranges; results in order, a failure after its chunk's
    # earlier items, as the stdlib.
    with Executor(2) as ex:
        for items in (range(3, 40, 4), range(10, -7, -3), range(0)):
            assert list(ex.map(square, items, chunksize=chunksize)) == [x * x for x in items]
        got = []
        with pytest.raises(ValueError, match="bad item 5"):
            for value in ex.map(fail_on, range(1, 12, 2), chunksize=chunksize):
                got.append(value)
        assert got == [1, 3]


def count_args(*args):
    return len(args), args


@pytest.mark.parametrize("chunksize", [1, 3])
def test_map_passes_each_item_as_one_argument(rt, chunksize):
    items = [(1, 2), [3, 4], None, (), (5,)] * 2
    with Executor(2) as ex:
        assert list(ex.map(count_args, items, chunksize=chunksize)) == [
            (1, (item,)) for item in items
        ]
        assert list(ex.map(count_args, items, "xy", chunksize=chunksize)) == [
            (2, ((1, 2), "x")), (2, ([3, 4], "y")),
        ]


@pytest.mark.parametrize("chunksize", [1, 3])
def test_map_raises_at_the_failing_item(rt, chunksize):
    def consume(it):
        got = []
        with pytest.raises(ValueError) as info:
            for v in it:
                got.append(v)
        return got, info.value

    with Executor(2) as ex, cf.ThreadPoolExecutor(2) as ref:
        ours, err = consume(ex.map(fail_on, range(10), chunksize=chunksize))
        theirs, ref_err = consume(ref.map(fail_on, range(10)))
    assert ours == theirs == [0, 1, 2, 3, 4]
    assert "bad item 5" in str(err)
    assert isinstance(err, type(ref_err))
    assert not hasattr(err, "_actorlib_chunk_results")


def test_map_submits_eagerly_and_yields_lazily(rt):
    rec = Recorder.remote()
    ex = Executor(2)
    results = ex.map(record, [rec] * 5, range(5))
    assert iter(results) is results
    ex.shutdown(wait=True)  # never iterated, yet all calls ran
    assert sorted(actorlib.get(rec.items.remote(), timeout=T)) == [0, 1, 2, 3, 4]
    assert list(results) == [0, 1, 2, 3, 4]


def test_map_timeout(rt):
    sync = Sync.remote()
    with Executor(1) as ex:
        results = ex.map(wait_for, [sync], timeout=0.05)
        with pytest.raises(TimeoutError) as info:
            next(results)
        assert isinstance(info.value, ExecutorTimeoutError)
        assert isinstance(info.value, cf.TimeoutError)
        actorlib.get(sync.set.remote("go"), timeout=T)


def test_map_rejects_bad_chunksize(rt):
    with Executor(1) as ex, pytest.raises(ValueError):
        ex.map(square, [1], chunksize=0)


@pytest.mark.fresh_runtime  # reads stderr: no output of earlier tests
def test_map_with_progress_bar(rt, capsys):
    with Executor(2) as ex:
        assert list(ex.map(square, range(10), chunksize=3, progress=True)) == [
            i * i for i in range(10)
        ]
    assert capsys.readouterr().err == ""  # stderr is not a terminal: no bar


# -- initializer, broken executor, worker death -------------------------------------------


@pytest.mark.fresh_runtime  # workers keep its code, with initargs (an actor), until shutdown
def test_initializer_runs_once_per_worker_before_its_first_task(rt):
    rec = Recorder.remote()
    with Executor(2, initializer=set_up_worker, initargs=(rec, "init")) as ex:
        assert list(ex.map(square, range(20))) == [i * i for i in range(20)]
        assert ex.submit(square, 3).result(timeout=T) == 9
    inits = actorlib.get(rec.value.remote("init"), timeout=T)
    assert 1 <= inits <= len(actorlib.nodes()) * 20  # once per worker, not per task
    assert inits < 21


@pytest.mark.fresh_runtime  # workers keep its code, with initargs (an actor), until shutdown
def test_max_tasks_per_child_reruns_the_initializer(rt):
    rec = Recorder.remote()
    with Executor(
        1, initializer=set_up_worker, initargs=(rec, "init"), max_tasks_per_child=2
    ) as ex:
        for i in range(6):
            assert ex.submit(square, i).result(timeout=T) == i * i
    # One worker thread/process may serve all six calls (3 inits), or several (more).
    assert 3 <= actorlib.get(rec.value.remote("init"), timeout=T) <= 6


def own_pid(_: object = None) -> int:
    import os

    return os.getpid()


def own_pid_too(_: object = None) -> int:
    import os

    return os.getpid()


@pytest.mark.fresh_runtime  # retires worker processes
def test_max_tasks_per_child_replaces_the_worker_process(rt):
    """As the stdlib's: a worker process exits after that many of the executor's tasks,
    whichever callables they ran (two here), and a fresh one takes the next."""
    import os

    import psutil

    with Executor(1, max_tasks_per_child=2) as ex:
        pids = [ex.submit(own_pid if i % 2 else own_pid_too).result(timeout=T)
                for i in range(6)]
    if rt.backend in ("thread", "sim"):  # one process: the initializer reruns instead
        assert set(pids) == {os.getpid()}
        return
    assert [pids.count(p) for p in dict.fromkeys(pids)] == [2, 2, 2], pids
    wait_until(lambda: not any(psutil.pid_exists(p) for p in pids[:4]), T,
               "retired workers to exit")


def test_failing_initializer_breaks_the_executor(rt):
    with Executor(1, initializer=failing_initializer) as ex:
        future = ex.submit(square, 2)
        with pytest.raises(BrokenProcessPool) as info:
            future.result(timeout=T)
        assert isinstance(info.value, cf.BrokenExecutor)
        assert isinstance(info.value, ExecutorInitializerError)
        assert "cannot set up" in str(info.value)
        with pytest.raises(cf.BrokenExecutor):
            ex.submit(square, 3)


def test_worker_errors_are_broken_executor_errors():
    crashed = WorkerCrashedError("worker 3 died")
    err = _translate(crashed)
    assert isinstance(err, ExecutorWorkerError)
    assert isinstance(err, WorkerCrashedError)
    assert isinstance(err, cf.BrokenExecutor)
    assert isinstance(err, BrokenProcessPool)
    assert err.__cause__ is crashed
    assert _translate(err) is err
    other = ValueError("x")
    assert _translate(other) is other
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is ExecutorWorkerError and str(again) == "worker 3 died"
    assert issubclass(BrokenExecutorError, ActorlibError)


def _items_then_error(n):
    yield from range(n)
    raise LookupError("the iterable broke")


def test_map_whose_iterable_raises_part_way_still_runs_what_it_submitted(rt):
    rec = Recorder.remote()
    ex = Executor(2)
    with pytest.raises(LookupError):
        ex.map(record, [rec] * 10, _items_then_error(3))
    ex.shutdown(wait=True)  # returns: the three submitted calls ran and ended
    assert sorted(actorlib.get(rec.items.remote(), timeout=T)) == [0, 1, 2]
