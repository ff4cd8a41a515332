"""actorlib.Pool against multiprocessing.Pool's documented semantics, and actorlib.progress.

Results and errors are compared with ``multiprocessing.pool.ThreadPool`` (the same
``Pool`` API on threads, so no processes to start). Every test runs on every backend.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import multiprocessing
from multiprocessing.pool import ThreadPool

import pytest
from testkit import Recorder, Sync, T, ctrl_c_elsewhere

import actorlib
from actorlib import Pool
from actorlib.exceptions import ActorlibError, GetTimeoutError
from actorlib.executor import ExecutorInitializerError
from actorlib.pool import PoolTimeoutError

pytestmark = pytest.mark.shared_runtime


def square(x):
    return x * x


def add(x, y):
    return x + y


def fail_on(x, bad=5):
    if x == bad:
        raise ValueError(f"bad item {x}")
    return x


def kw(a, b=0, *, c=0):
    return a + b + c


def wait_for(sync, key="go", value=None):
    actorlib.get(sync.wait.remote(key), timeout=T)
    return value


def wait_item(args):
    return wait_for(*args)


def set_up_worker(rec):
    actorlib.get(rec.incr.remote("init"), timeout=T)


def failing_initializer():
    raise OSError("no setup")


@pytest.fixture
def ref_pool():
    with ThreadPool(2) as p:
        yield p


# -- construction and state ---------------------------------------------------------------


def test_starts_and_stops_its_own_runtime(backend_name):
    assert not actorlib.is_initialized()
    pool = Pool(2, backend=backend_name)
    assert actorlib.is_initialized()
    assert pool.map(square, range(5)) == [0, 1, 4, 9, 16]
    pool.close()
    pool.join()
    assert not actorlib.is_initialized()


def test_context_manager_terminates(backend_name):
    with Pool(2, backend=backend_name) as pool:
        assert pool.apply(add, (1, 2)) == 3
    assert not actorlib.is_initialized()
    with pytest.raises(ValueError):
        pool.apply(add, (1, 2))


def test_shares_the_running_runtime(rt):
    with Pool(2) as pool:
        assert pool.map(square, [3]) == [9]
    assert actorlib.is_initialized()


def test_ctrl_c_reaches_a_blocked_apply(rt):
    """``apply`` (``map``, ``get``) waits on the main thread: Ctrl-C reaches it at once,
    whichever thread of the process the kernel hands it to."""
    sync = Sync.remote()
    with Pool(1) as pool, ctrl_c_elsewhere(
        "get", "pool.py", lambda: actorlib.get(sync.set.remote("late"), timeout=T)
    ):
        pool.apply(wait_for, (sync, "late", 1))


@pytest.mark.parametrize("how", ["map", "starmap", "imap", "imap_unordered", "imap_timeout"])
def test_ctrl_c_reaches_a_blocked_map_or_imap(rt, how):
    """``map``/``starmap`` and ``imap``/``imap_unordered``'s iterators (``next`` with a
    timeout too) wait on the main thread: Ctrl-C reaches them at once, whichever thread of
    the process the kernel hands it to."""
    sync = Sync.remote()
    late = [(sync, "late", 1)]
    with Pool(1) as pool:
        waits = {
            "map": ("wait_futures", "executor_results.py", lambda: pool.map(wait_item, late)),
            "starmap": ("wait_futures", "executor_results.py",
                        lambda: pool.starmap(wait_for, late)),
            "imap": ("exception", "interruptible.py", lambda: next(pool.imap(wait_item, late))),
            "imap_unordered": ("get", "interruptible.py",
                               lambda: next(pool.imap_unordered(wait_item, late))),
            "imap_timeout": ("get", "interruptible.py",
                             lambda: pool.imap_unordered(wait_item, late).next(timeout=T)),
        }
        function, filename, block = waits[how]
        with ctrl_c_elsewhere(
            function, filename, lambda: actorlib.get(sync.set.remote("late"), timeout=T)
        ):
            block()
        assert list(pool.imap_unordered(wait_item, late * 2)) == [1, 1]


@pytest.mark.parametrize("bad", [0, -2])
def test_processes_must_be_positive(bad):
    for cls in (ThreadPool, Pool):
        with pytest.raises(ValueError):
            cls(bad)


@pytest.mark.parametrize("bad", [0, -1, 1.5])
def test_maxtasksperchild_is_validated(bad):
    with pytest.raises(ValueError):
        multiprocessing.Pool(1, maxtasksperchild=bad)
    with pytest.raises(ValueError):
        Pool(1, maxtasksperchild=bad)


def test_close_join_and_state_errors(rt, ref_pool):
    pool = Pool(2)
    with pytest.raises(ValueError, match="still running"):
        pool.join()
    with pytest.raises(ValueError):
        ref_pool.join()
    result = pool.map_async(square, range(4))
    pool.close()
    for p in (pool, ref_pool):
        p.close()
        with pytest.raises(ValueError, match="Pool not running"):
            p.apply_async(square, (1,))
        with pytest.raises(ValueError):
            p.map(square, [1])
        with pytest.raises(ValueError):
            p.imap(square, [1])
    pool.join()
    assert result.get(timeout=T) == [0, 1, 4, 9]


def test_terminate_drops_queued_work(rt):
    sync, rec = Sync.remote(), Recorder.remote()
    pool = Pool(1)
    blocked = pool.apply_async(wait_for, (sync, "go", 1))
    queued = [pool.apply_async(rec.append.remote, (i,)) for i in range(3)]
    pool.terminate()
    pool.join()
    for r in [blocked, *queued]:
        assert r.ready()
        with pytest.raises(ActorlibError):
            r.get(timeout=T)
    assert actorlib.get(rec.items.remote(), timeout=T) == []
    # The terminated task may have reached its wait on the actor first: release it.
    actorlib.get(sync.set.remote("go"), timeout=T)


# -- apply --------------------------------------------------------------------------------


def test_apply_and_apply_async_match_multiprocessing(rt, ref_pool):
    with Pool(2) as pool:
        for p in (pool, ref_pool):
            assert p.apply(kw, (1,), {"b": 2, "c": 3}) == 6
            assert p.apply(kw, (1, 2)) == 3
            r = p.apply_async(add, (2, 3))
            assert r.get(timeout=T) == 5
            assert r.ready() and r.successful()
            r.wait(T)


def test_apply_async_callbacks_run_before_ready(rt):
    results, errors = [], []
    with Pool(2) as pool:
        ok = pool.apply_async(square, (4,), callback=results.append)
        bad = pool.apply_async(fail_on, (5,), error_callback=errors.append)
        assert ok.get(timeout=T) == 16
        assert results == [16]  # called before get() returned
        with pytest.raises(ValueError, match="bad item 5"):
            bad.get(timeout=T)
        assert not bad.successful()
        assert len(errors) == 1 and isinstance(errors[0], ValueError)


def test_async_result_timeout_and_not_ready(rt, ref_pool):
    sync = Sync.remote()
    with Pool(1) as pool:
        for key, p in (("ours", pool), ("stdlib", ref_pool)):
            r = p.apply_async(wait_for, (sync, key, 7))
            assert not r.ready()
            with pytest.raises(multiprocessing.TimeoutError):
                r.get(timeout=0.01)
            with pytest.raises(ValueError):
                r.successful()
            r.wait(0.01)
            assert not r.ready()
            actorlib.get(sync.set.remote(key), timeout=T)
            assert r.get(timeout=T) == 7
    err = PoolTimeoutError("x")
    assert isinstance(err, (GetTimeoutError, TimeoutError, multiprocessing.TimeoutError))


# -- map family ---------------------------------------------------------------------------


@pytest.mark.parametrize("chunksize", [None, 1, 3, 50])
def test_map_and_starmap_match_multiprocessing(rt, ref_pool, chunksize):
    items = list(range(23))
    pairs = list(zip(items, reversed(items), strict=True))
    with Pool(2) as pool:
        for p in (pool, ref_pool):
            assert p.map(square, items, chunksize) == [x * x for x in items]
            assert p.map(square, iter(items), chunksize) == [x * x for x in items]
            assert p.starmap(add, pairs, chunksize) == [22] * 23
            assert p.map_async(square, items, chunksize).get(timeout=T) == [
                x * x for x in items
            ]
            assert p.starmap_async(add, pairs, chunksize).get(timeout=T) == [22] * 23
            assert p.map(square, []) == []


@pytest.mark.parametrize("chunksize", [None, 1, 3, 50])
def test_map_over_ranges_matches_multiprocessing(rt, ref_pool, chunksize):
    # A range's chunks travel as ranges: every step, direction and edge maps the same.
    ranges = [range(23), range(3, 40, 4), range(10, -7, -3), range(5, 5), range(1)]
    with Pool(2) as pool:
        for items in ranges:
            expected = ref_pool.map(square, items, chunksize)
            assert pool.map(square, items, chunksize) == expected == [x * x for x in items]
            assert pool.map_async(square, items, chunksize).get(timeout=T) == expected
            assert list(pool.imap(square, items, chunksize or 1)) == expected
        with pytest.raises(ValueError, match="bad item 5"):
            pool.map(fail_on, range(0, 20, 5), chunksize)


def count_args(*args):
    return len(args), args


@pytest.mark.parametrize("chunksize", [None, 1, 4])
def test_map_passes_each_item_as_one_argument(rt, ref_pool, chunksize):
    # Items travel bare in chunks: a tuple, a list or None is still the one argument.
    items = [(1, 2), [3, 4], None, (), "ab", (5,)] * 3
    with Pool(2) as pool:
        for p in (pool, ref_pool):
            expected = [(1, (item,)) for item in items]
            assert p.map(count_args, items, chunksize) == expected
            assert list(p.imap(count_args, items, chunksize or 1)) == expected
            assert p.starmap(count_args, [(1, 2), [3], ()], chunksize) == [
                (2, (1, 2)), (1, (3,)), (0, ()),
            ]


def test_map_raises_the_error(rt, ref_pool):
    with Pool(2) as pool:
        for p in (pool, ref_pool):
            with pytest.raises(ValueError, match="bad item 5"):
                p.map(fail_on, range(10))
            with pytest.raises(ValueError, match="bad item 5"):
                p.map(fail_on, range(10), 3)


def held_or_failing(sync, x):
    if x == 0:
        actorlib.get(sync.wait.remote("go"), timeout=T)
        return 0
    raise ValueError(f"bad item {x}")


@pytest.mark.parametrize("star", [False, True])
def test_map_raises_the_first_failure_while_other_chunks_still_run(rt, star):
    """As multiprocessing: map() does not wait for the chunks before the failing one."""
    sync = Sync.remote()
    try:
        with Pool(2) as pool, pytest.raises(ValueError, match="bad item 1"):
            if star:
                pool.starmap(held_or_failing, [(sync, 0), (sync, 1)], chunksize=1)
            else:
                pool.map(_held_or_failing_pair, [(sync, 0), (sync, 1)], chunksize=1)
    finally:
        actorlib.get(sync.set.remote("go"), timeout=T)


def _held_or_failing_pair(pair):
    return held_or_failing(*pair)


def test_map_async_callbacks(rt):
    got, errors = [], []
    with Pool(2) as pool:
        r = pool.map_async(square, range(5), callback=got.append)
        assert r.get(timeout=T) == [0, 1, 4, 9, 16]
        assert got == [[0, 1, 4, 9, 16]]
        r = pool.map_async(fail_on, range(10), 2, error_callback=errors.append)
        with pytest.raises(ValueError):
            r.get(timeout=T)
        assert not r.successful()
        assert [type(e) for e in errors] == [type(r._error)]
        assert pool.map_async(square, [], callback=got.append).get(timeout=T) == []
        assert got[-1] == []


@pytest.mark.parametrize("chunksize", [1, 4])
def test_imap_matches_multiprocessing(rt, ref_pool, chunksize):
    with Pool(2) as pool:
        for p in (pool, ref_pool):
            assert list(p.imap(square, range(15), chunksize)) == [x * x for x in range(15)]
            assert sorted(p.imap_unordered(square, range(15), chunksize)) == [
                x * x for x in range(15)
            ]
            it = p.imap(square, [3])
            assert it.next(timeout=T) == 9
            with pytest.raises(StopIteration):
                it.next(timeout=T)


def test_imap_reads_the_input_lazily(rt):
    with Pool(2) as pool:
        squares = pool.imap(square, itertools.count(), chunksize=3)
        assert [next(squares) for _ in range(10)] == [x * x for x in range(10)]
        unordered = pool.imap_unordered(square, itertools.count())
        assert len({next(unordered) for _ in range(10)}) == 10


def test_imap_errors_like_multiprocessing(rt, ref_pool):
    with Pool(2) as pool:
        for p in (pool, ref_pool):
            # chunksize 1: the error takes the failing item's place; iteration goes on.
            it = p.imap(fail_on, range(8))
            got = [next(it) for _ in range(5)]
            with pytest.raises(ValueError):
                next(it)
            assert got + list(it) == [0, 1, 2, 3, 4, 6, 7]
        # chunksize > 1: results before the failing item, then the error, then the end
        # (multiprocessing drops the whole failing chunk: actorlib keeps what it computed).
        it = pool.imap(fail_on, range(8), 3)
        got = []
        with pytest.raises(ValueError):
            for v in it:
                got.append(v)
        assert got == [0, 1, 2, 3, 4]
        assert list(it) == []


def test_imap_next_timeout(rt):
    sync = Sync.remote()
    with Pool(1) as pool:
        it = pool.imap(wait_for, [sync])
        with pytest.raises(multiprocessing.TimeoutError):
            it.next(timeout=0.01)
        actorlib.get(sync.set.remote("go"), timeout=T)
        assert it.next(timeout=T) is None


def test_bad_chunksize(rt, ref_pool):
    with Pool(1) as pool:
        for p in (pool, ref_pool):
            with pytest.raises(ValueError):
                p.imap(square, [1], 0)


@pytest.mark.fresh_runtime  # reads stderr: no output of earlier tests
def test_progress_keyword(rt, capsys):
    with Pool(2) as pool:
        assert pool.map(square, range(6), progress=True) == [x * x for x in range(6)]
        assert list(pool.imap(square, range(6), progress=True)) == [x * x for x in range(6)]
    assert capsys.readouterr().err == ""


# -- initializer --------------------------------------------------------------------------


@pytest.mark.fresh_runtime  # workers keep its code, with initargs (an actor), until shutdown
def test_initializer_runs_per_worker(rt):
    rec = Recorder.remote()
    with Pool(2, initializer=set_up_worker, initargs=(rec,)) as pool:
        assert pool.map(square, range(10), 1) == [x * x for x in range(10)]
    assert 1 <= actorlib.get(rec.value.remote("init"), timeout=T) < 10


def test_failing_initializer(rt):
    with Pool(1, initializer=failing_initializer) as pool, pytest.raises(
        ExecutorInitializerError, match="no setup"
    ):
        pool.apply(square, (1,))


# -- actorlib.progress --------------------------------------------------------------------


@actorlib.remote
def remote_square(x):
    return x * x


@pytest.mark.fresh_runtime  # reads stderr: no output of earlier tests
def test_progress_over_refs_futures_and_iterables(rt, capsys):
    refs = [remote_square.remote(i) for i in range(5)]
    assert sorted(actorlib.get(list(actorlib.progress(refs, desc="refs")))) == [
        0, 1, 4, 9, 16
    ]
    with cf.ThreadPoolExecutor(2) as ex:
        futures = [ex.submit(square, i) for i in range(5)]
        done = list(actorlib.progress(futures))
        assert set(done) == set(futures)
        mixed = [remote_square.remote(2), ex.submit(square, 3)]
        assert set(actorlib.progress(mixed)) == set(mixed)
    assert list(actorlib.progress(x for x in range(3))) == [0, 1, 2]
    assert list(actorlib.progress([])) == []
    assert capsys.readouterr().err == ""


def test_progress_bar_draws_on_a_terminal(monkeypatch, capsys):
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert list(actorlib.progress([1, 2, 3], desc="items")) == [1, 2, 3]
    err = capsys.readouterr().err
    assert "items" in err and "3/3" in err


def _square_where(x):
    return x * x, actorlib.get_runtime_context().get_task_id()


def _fails_at_three(x):
    if x == 3:
        raise KeyError("three")
    return x


def test_joblib_runs_on_the_ray_backend_of_register_ray(rt):
    """Ray's ``ray.util.joblib``: after ``register_ray()``, joblib's ``Parallel`` under
    ``parallel_backend("ray")`` runs its batches as the runtime's tasks, results in order,
    a task's error raised as itself; ``n_jobs=-1`` is the runtime's CPUs; options of
    Ray's pool actors are refused, not ignored."""
    joblib = pytest.importorskip("joblib")  # a test dependency: never skipped in CI
    from actorlib.exceptions import NotSupportedError
    from actorlib.util.joblib import register_ray

    register_ray()
    with joblib.parallel_backend("ray"):
        out = joblib.Parallel(n_jobs=2)(joblib.delayed(_square_where)(i) for i in range(30))
        assert [square for square, _ in out] == [i * i for i in range(30)]
        assert actorlib.get(actorlib.remote(lambda: 1).remote(), timeout=T) == 1
        with pytest.raises(KeyError, match="three"):
            joblib.Parallel(n_jobs=2)(joblib.delayed(_fails_at_three)(i) for i in range(6))
        parallel = joblib.Parallel(n_jobs=-1)
        assert parallel._effective_n_jobs() == actorlib.cluster_resources()["CPU"] == 4
    with pytest.raises(NotSupportedError, match="ray_remote_args"):  # noqa: SIM117
        with joblib.parallel_backend("ray", ray_remote_args={"num_cpus": 2}):
            joblib.Parallel(n_jobs=2)(joblib.delayed(abs)(-1) for _ in range(2))


def test_register_ray_without_joblib_says_how_to_get_it(monkeypatch):
    import sys

    from actorlib.util.joblib import register_ray

    monkeypatch.setitem(sys.modules, "joblib", None)  # import joblib -> ImportError
    with pytest.raises(ImportError, match="pip install joblib"):
        register_ray()
