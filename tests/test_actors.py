"""Actors: state, per-caller ordering, threaded and async concurrency, handles, lifetime."""

from __future__ import annotations

import asyncio
import pickle
import threading
import time

import pytest
from testkit import Recorder, Sync, T, live_actors, wait_until

import actorlib

pytestmark = pytest.mark.shared_runtime


@actorlib.remote(num_cpus=0)
class Counter:
    def __init__(self, start=0, *, step=1):
        self.n = start
        self.step = step

    def incr(self, by=None):
        self.n += self.step if by is None else by
        return self.n

    def value(self):
        return self.n

    @actorlib.method(num_returns=2)
    def pair(self):
        return self.n, -self.n

    def triple(self):
        return 1, 2, 3

    def my_id(self):
        return actorlib.get_runtime_context().get_actor_id()


@actorlib.remote(num_cpus=0)
class Log:
    """Sync actor that records its calls and notices any overlap."""

    def __init__(self):
        self.entries = []
        self.in_call = False
        self.overlapped = False

    def record(self, item, hold=0.0):
        if self.in_call:
            self.overlapped = True
        self.in_call = True
        try:
            if hold:
                time.sleep(hold)
            self.entries.append(item)
        finally:
            self.in_call = False
        return item

    def state(self):
        return self.entries, self.overlapped


@actorlib.remote(num_cpus=0)
class Meeter:
    """Blocks each call at a barrier: completes only if ``n`` calls run at once."""

    def meet(self, sync, n):
        return actorlib.get(sync.barrier.remote(n, "meet"), timeout=T)


@actorlib.remote(num_cpus=0)
class AsyncMeeter:
    def __init__(self):
        self.current = 0
        self.peak = 0

    async def meet(self, sync, n):
        return await sync.barrier.remote(n, "ameet")

    async def hold(self, sync, gate_count):
        """Enter, announce entry, wait until ``gate_count`` calls have entered, leave."""
        self.current += 1
        self.peak = max(self.peak, self.current)
        try:
            await sync.arrive.remote("entered")
            await sync.wait_count.remote(gate_count, "entered")
            await asyncio.sleep(0.001)
        finally:
            self.current -= 1
        return True

    async def peak_concurrency(self):
        return self.peak


@actorlib.remote(num_cpus=0)
class Forwarder:
    """Holds another actor's handle and calls it later."""

    def __init__(self, target=None):
        self.target = target

    def set_target(self, handle):
        self.target = handle
        return True

    def forward(self, by):
        return actorlib.get(self.target.incr.remote(by), timeout=T)


@actorlib.remote
def slow_value(sync, value):
    actorlib.get(sync.wait.remote(), timeout=T)
    return value


@actorlib.remote
def bump(counter, times):
    refs = [counter.incr.remote(1) for _ in range(times)]
    return actorlib.get(refs, timeout=T)


def test_counter_state_and_order(rt):
    c = Counter.remote()
    refs = [c.incr.remote() for _ in range(100)]
    assert actorlib.get(refs, timeout=T) == list(range(1, 101))
    assert actorlib.get(c.value.remote(), timeout=T) == 100


def test_constructor_args_and_isolation(rt):
    a = Counter.remote(10, step=5)
    b = Counter.remote()
    assert actorlib.get(a.incr.remote(), timeout=T) == 15
    assert actorlib.get(b.incr.remote(), timeout=T) == 1
    assert actorlib.get(a.value.remote(), timeout=T) == 15


@actorlib.remote(num_cpus=0)
class BrokenAtBirth:
    def __init__(self):
        raise ValueError("the constructor broke")


@actorlib.remote(num_cpus=0)
class AsyncCounter:
    def __init__(self):
        self.n = 0

    async def incr(self):
        self.n += 1
        return self.n


def test_ray_ready_says_an_actor_was_constructed(rt):
    """Ray's ``handle.__ray_ready__.remote()``, which programs use to wait for an actor:
    True once the constructor ran, on sync, threaded and async actors and on a handle
    from ``get_actor``; queued after the handle's earlier calls; the constructor's
    error if it failed."""
    c = Counter.options(name="ready-check").remote(5)
    first = c.incr.remote()
    assert actorlib.get(c.__ray_ready__.remote(), timeout=T) is True
    assert actorlib.get(first, timeout=T) == 6  # ran before the readiness call
    assert actorlib.get(actorlib.get_actor("ready-check").__ray_ready__.remote(), timeout=T)
    threaded = Counter.options(max_concurrency=4).remote()
    assert actorlib.get(threaded.__ray_ready__.remote(), timeout=T) is True
    assert actorlib.get(AsyncCounter.remote().__ray_ready__.remote(), timeout=T) is True
    with pytest.raises(actorlib.exceptions.ActorDiedError, match="the constructor broke"):
        actorlib.get(BrokenAtBirth.remote().__ray_ready__.remote(), timeout=T)


@actorlib.remote(num_cpus=0, max_restarts=2)
class Restartable:
    def __init__(self):
        self.n = 0

    def incr(self):
        self.n += 1
        return self.n


def test_ray_terminate_ends_an_actor_after_the_calls_before_it(rt):
    """Ray's ``handle.__ray_terminate__.remote()`` runs ``exit_actor()`` in the actor once
    the calls sent before it have run: it and later calls fail with ActorDiedError, and
    the actor is not restarted (whatever ``max_restarts``); on an async actor too."""
    a = Restartable.remote()
    before = [a.incr.remote() for _ in range(3)]
    ended = a.__ray_terminate__.remote()
    after = a.incr.remote()
    assert actorlib.get(before, timeout=T) == [1, 2, 3]
    for ref in (ended, after):
        with pytest.raises(actorlib.exceptions.ActorDiedError):
            actorlib.get(ref, timeout=T)
    with pytest.raises(actorlib.exceptions.ActorDiedError):
        actorlib.get(a.incr.remote(), timeout=T)
    b = AsyncCounter.remote()
    assert actorlib.get(b.incr.remote(), timeout=T) == 1
    with pytest.raises(actorlib.exceptions.ActorDiedError):
        actorlib.get(b.__ray_terminate__.remote(), timeout=T)
    with pytest.raises(actorlib.exceptions.ActorDiedError):
        actorlib.get(b.incr.remote(), timeout=T)


@actorlib.remote(num_cpus=0)
class CleansUp:
    """Writes what it did to ``path`` in ``__ray_shutdown__`` (a file: seen from every
    process the actor may run in)."""

    def __init__(self, path, broken=False):
        self.path, self.broken, self.calls = path, broken, 0

    def incr(self):
        self.calls += 1
        return self.calls

    def leave(self):
        from actorlib.actor import exit_actor

        exit_actor()

    def __ray_shutdown__(self):
        with open(self.path, "w") as f:
            f.write(f"{self.calls} {actorlib.get_runtime_context().get_actor_id()}")
        if self.broken:
            raise RuntimeError("cleanup broke")


@actorlib.remote(num_cpus=0)
class AsyncCleansUp(CleansUp):
    async def aincr(self):
        await asyncio.sleep(0)
        return self.incr()


@actorlib.remote
def nothing():
    return None


def _cleaned(path, wait=T):
    """What the actor's ``__ray_shutdown__`` wrote, or None if it has not run within
    ``wait`` s (the driver waits in ``get`` meanwhile: the sim backend runs steps then)."""
    deadline = time.monotonic() + wait
    while True:
        if path.exists() and path.read_text():
            return path.read_text()
        if time.monotonic() >= deadline:
            return None
        actorlib.get(nothing.remote(), timeout=T)
        time.sleep(0.02)


def _ends_with_cleanup(a, path, end):
    """Three calls, then ``end(a)``, the handle dropped: the calls' results, then what
    ``__ray_shutdown__`` wrote (the calls it saw, the actor it ran in)."""
    actor_id = a.actor_id.hex()
    incr = a.aincr if hasattr(a, "aincr") else a.incr
    calls = [incr.remote() for _ in range(3)]
    ended = end(a)
    del a, incr
    assert sorted(actorlib.get(calls, timeout=T)) == [1, 2, 3]  # (async: interleaved)
    del calls, ended
    assert _cleaned(path) == f"3 {actor_id}"


def test_ray_shutdown_runs_once_an_actors_handles_are_gone(rt, tmp_path):
    """Ray's ``__ray_shutdown__``: called once the actor's handles are gone and the calls
    sent before have run, in the actor's context, with its state; on an async actor too."""
    _ends_with_cleanup(CleansUp.remote(str(tmp_path / "sync")), tmp_path / "sync", id)
    _ends_with_cleanup(AsyncCleansUp.remote(str(tmp_path / "async")), tmp_path / "async", id)


def test_ray_shutdown_runs_when_an_actor_ends_itself_not_when_killed(rt, tmp_path):
    """``__ray_shutdown__`` runs at ``__ray_terminate__`` (after the calls sent before) and
    at ``exit_actor()``; never after ``kill()``. Its error is logged, not raised."""
    for how, end in {
        "terminate": lambda a: a.__ray_terminate__.remote(),
        "exit_actor": lambda a: a.leave.remote(),
    }.items():
        _ends_with_cleanup(CleansUp.remote(str(tmp_path / how)), tmp_path / how, end)
    killed = tmp_path / "killed"
    k = CleansUp.remote(str(killed))
    assert actorlib.get(k.incr.remote(), timeout=T) == 1
    actorlib.kill(k)
    with pytest.raises(actorlib.exceptions.ActorDiedError):
        actorlib.get(k.incr.remote(), timeout=T)
    assert _cleaned(killed, wait=0.5) is None
    broken = tmp_path / "broken"
    b = CleansUp.remote(str(broken), broken=True)
    assert actorlib.get(b.incr.remote(), timeout=T) == 1
    with pytest.raises(actorlib.exceptions.ActorDiedError):
        actorlib.get(b.__ray_terminate__.remote(), timeout=T)
    assert _cleaned(broken) == f"1 {b.actor_id.hex()}"
    with pytest.raises(actorlib.exceptions.ActorDiedError):
        actorlib.get(b.incr.remote(), timeout=T)


def test_calls_before_an_exit_keep_their_results(rt, tmp_path):
    """The calls sent before ``exit_actor()`` or ``__ray_terminate__`` have run, and their
    results reach the caller, every time: the actor ends after their replies are out
    (the ray backend's kill from inside the actor lost some, 1 to 3 runs in 10)."""
    for round_ in range(10):
        a = CleansUp.remote(str(tmp_path / f"round{round_}"))
        calls = [a.incr.remote() for _ in range(3)]
        end = a.__ray_terminate__.remote() if round_ % 2 else a.leave.remote()
        assert actorlib.get(calls, timeout=T) == [1, 2, 3], round_
        with pytest.raises(actorlib.exceptions.ActorDiedError):
            actorlib.get(end, timeout=T)


@actorlib.remote(num_cpus=0)
class LeavesMidCall:
    async def stuck(self, started):
        await started.arrive.remote()
        await asyncio.sleep(3600)
        return "woke"

    async def leave(self):
        from actorlib.actor import exit_actor

        exit_actor()

    async def ping(self):
        return "pong"

    async def ticks(self):
        yield 1
        await asyncio.sleep(3600)
        yield 2


@actorlib.remote(num_cpus=0, max_concurrency=2)
class ThreadedLeavesMidCall:
    def stuck(self, started):
        actorlib.get(started.arrive.remote(), timeout=T)
        actorlib.get(started.wait_count.remote(10**6), timeout=600)
        return "woke"

    def leave(self):
        from actorlib.actor import exit_actor

        exit_actor()

    def ping(self):
        return "pong"


@pytest.mark.parametrize("cls", [LeavesMidCall, ThreadedLeavesMidCall],
                         ids=["async", "threaded"])
def test_exit_actor_fails_the_calls_still_running_in_the_actor(rt, cls):
    """``exit_actor()`` in an async or threaded actor ends it at once: a call still
    running in it fails with ActorDiedError, as do the exiting call and later ones (on
    ray, Ray 2.60 waited for that call to end, and the exiting call failed with
    ActorUnavailableError: a call that never ends left the actor neither alive nor dead
    and every later call waiting for ever)."""
    a = cls.remote()
    started = Sync.remote()
    assert actorlib.get(a.ping.remote(), timeout=T) == "pong"
    stuck = a.stuck.remote(started)
    actorlib.get(started.wait_count.remote(1), timeout=T)
    with pytest.raises(actorlib.exceptions.ActorDiedError):
        actorlib.get(a.leave.remote(), timeout=T)
    with pytest.raises(actorlib.exceptions.ActorDiedError):
        actorlib.get(stuck, timeout=T)
    with pytest.raises(actorlib.exceptions.ActorDiedError):
        actorlib.get(a.ping.remote(), timeout=T)
    # The thread backend cannot end a thread: the stuck call's waits on, until this.
    actorlib.kill(started)


def test_exit_actor_ends_a_stream_still_running_in_the_actor(rt):
    """A stream an async actor still produces when it ends itself fails at its next item
    with ActorDiedError saying so, as a call still running does (on ray, the exit waited
    for the generator about 1.6 s and the stream then failed as an actor that "died
    unexpectedly")."""
    a = LeavesMidCall.remote()
    stream = a.ticks.options(num_returns="streaming").remote()
    assert actorlib.get(next(stream), timeout=T) == 1
    with pytest.raises(actorlib.exceptions.ActorDiedError):
        actorlib.get(a.leave.remote(), timeout=T)
    with pytest.raises(actorlib.exceptions.ActorDiedError, match=r"exit_actor\(\)"):
        actorlib.get(next(stream), timeout=T)
    with pytest.raises(actorlib.exceptions.ActorDiedError):
        actorlib.get(a.ping.remote(), timeout=T)


def test_direct_instantiation_raises(rt):
    with pytest.raises(TypeError):
        Counter()


def test_method_num_returns(rt):
    c = Counter.remote(3)
    refs = c.pair.remote()
    assert len(refs) == 2
    assert actorlib.get(refs, timeout=T) == [3, -3]
    r3 = c.triple.options(num_returns=3).remote()
    assert actorlib.get(r3, timeout=T) == [1, 2, 3]


def test_later_call_with_ready_args_waits_for_earlier_slow_one(rt):
    """Per-caller order holds even when a later call's arguments are ready first."""
    sync = Sync.remote()
    log = Log.remote()
    first = log.record.remote(slow_value.remote(sync, "slow-first"))
    second = log.record.remote("fast-second")
    ready, _ = actorlib.wait([second], timeout=0.3)
    assert ready == [], "the later call ran before the earlier one"
    actorlib.get(sync.set.remote(), timeout=T)
    assert actorlib.get([first, second], timeout=T) == ["slow-first", "fast-second"]
    entries, overlapped = actorlib.get(log.state.remote(), timeout=T)
    assert entries == ["slow-first", "fast-second"]
    assert not overlapped


def test_sync_actor_runs_one_call_at_a_time(rt):
    log = Log.remote()
    refs = [log.record.remote(i, 0.002) for i in range(30)]
    refs += [bump.remote(Counter.remote(), 1)]  # unrelated work running meanwhile
    actorlib.get(refs, timeout=T)
    entries, overlapped = actorlib.get(log.state.remote(), timeout=T)
    assert entries == list(range(30))
    assert not overlapped


def test_threaded_actor_overlaps(rt):
    """max_concurrency=3 on a sync class: three calls must be inside at once to finish."""
    sync = Sync.remote()
    m = Meeter.options(max_concurrency=3).remote()
    refs = [m.meet.remote(sync, 3) for _ in range(3)]
    assert sorted(actorlib.get(refs, timeout=T)) == [3, 3, 3]


def test_async_actor_interleaves(rt):
    sync = Sync.remote()
    m = AsyncMeeter.options(max_concurrency=4).remote()
    refs = [m.meet.remote(sync, 4) for _ in range(4)]
    assert actorlib.get(refs, timeout=T) == [4, 4, 4, 4]


def test_async_actor_default_concurrency_is_high(rt):
    sync = Sync.remote()
    m = AsyncMeeter.remote()
    refs = [m.meet.remote(sync, 20) for _ in range(20)]
    assert actorlib.get(refs, timeout=T) == [20] * 20


def test_async_actor_respects_max_concurrency(rt):
    """Exactly max_concurrency calls get in; the rest wait until one leaves."""
    sync = Sync.remote()
    m = AsyncMeeter.options(max_concurrency=2).remote()
    refs = [m.hold.remote(sync, 2) for _ in range(6)]
    assert all(actorlib.get(refs, timeout=T))
    assert actorlib.get(m.peak_concurrency.remote(), timeout=T) == 2


def test_handle_passed_to_task(rt):
    c = Counter.remote()
    assert actorlib.get(bump.remote(c, 5), timeout=T) == [1, 2, 3, 4, 5]
    assert actorlib.get(c.value.remote(), timeout=T) == 5


def test_handle_passed_to_actor(rt):
    c = Counter.remote()
    f = Forwarder.remote(c)
    assert actorlib.get(f.forward.remote(3), timeout=T) == 3
    g = Forwarder.remote()
    actorlib.get(g.set_target.remote(c), timeout=T)
    assert actorlib.get(g.forward.remote(4), timeout=T) == 7
    assert actorlib.get(c.value.remote(), timeout=T) == 7


def test_handle_pickles(rt):
    c = Counter.remote()
    c2 = pickle.loads(pickle.dumps(c))
    actorlib.get(c.incr.remote(), timeout=T)
    assert actorlib.get(c2.incr.remote(), timeout=T) == 2


@actorlib.remote
class Named:
    """Methods named like a handle's own attributes, or like the API's verbs."""

    def remote(self) -> str:
        return "remote"

    def options(self) -> str:
        return "options"

    def actor_id(self) -> str:
        return "actor_id"

    def _id(self) -> str:
        return "_id"


def test_handle_methods_named_like_its_attributes(rt):
    """Every method is reachable as ``handle.name`` unless the handle has an attribute of
    that name (``_id`` stays the handle's); unknown names raise AttributeError naming the
    methods; handles of one class, made or unpickled, behave the same."""
    n = Named.remote()
    for handle in (n, pickle.loads(pickle.dumps(n))):
        assert isinstance(handle, actorlib.ActorHandle)
        assert actorlib.get(handle.remote.remote(), timeout=T) == "remote"
        assert actorlib.get(handle.options.remote(), timeout=T) == "options"
        assert actorlib.get(handle.actor_id.remote(), timeout=T) == "actor_id"
        assert isinstance(handle._id, int)
        with pytest.raises(AttributeError, match=r"has no method 'nope'.*actor_id"):
            handle.nope  # noqa: B018
        with pytest.raises(AttributeError):
            handle.__nope__  # noqa: B018
    c = Counter.remote()
    assert not hasattr(c, "remote")  # another class's methods are not bound to it
    assert actorlib.get(c.incr.remote(), timeout=T) == 1


def test_runtime_context_in_actor(rt):
    c = Counter.remote()
    aid = actorlib.get(c.my_id.remote(), timeout=T)
    assert isinstance(aid, str) and aid
    other = actorlib.get(Counter.remote().my_id.remote(), timeout=T)
    assert other != aid


def test_actor_stopped_when_last_handle_dies(rt):
    """No handle left (and not detached): the actor stops after its pending calls."""
    c = Counter.remote()
    aid = actorlib.get(c.my_id.remote(), timeout=T)
    assert aid in live_actors()
    pending = [c.incr.remote() for _ in range(5)]
    del c
    assert actorlib.get(pending, timeout=T) == [1, 2, 3, 4, 5]
    wait_until(lambda: aid not in live_actors(), what="unreferenced actor to stop")


def test_actor_kept_alive_by_handle_in_another_actor(rt):
    c = Counter.remote()
    aid = actorlib.get(c.my_id.remote(), timeout=T)
    f = Forwarder.remote(c)
    del c
    assert aid in live_actors()
    assert actorlib.get(f.forward.remote(1), timeout=T) == 1
    del f
    wait_until(lambda: aid not in live_actors(), what="actor to stop once every handle is gone")


def test_actor_methods_called_from_several_driver_threads(rt):
    """Handles are usable from any driver thread; the actor still serializes calls."""
    log = Log.remote()
    results: list[list[int]] = [[] for _ in range(4)]

    def worker(k: int) -> None:
        refs = [log.record.remote((k, i)) for i in range(25)]
        results[k] = [i for (_, i) in actorlib.get(refs, timeout=T)]

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [list(range(25))] * 4
    entries, overlapped = actorlib.get(log.state.remote(), timeout=T)
    assert not overlapped
    for k in range(4):
        assert [i for (kk, i) in entries if kk == k] == list(range(25))


def test_recorder_helper(rt):
    r = Recorder.remote()
    assert actorlib.get([r.append.remote("a"), r.append.remote("b")], timeout=T) == [1, 2]
    assert actorlib.get(r.items.remote(), timeout=T) == ["a", "b"]


def test_actor_unknown_option_names_it(rt):
    with pytest.raises(TypeError, match="bogus_actor_option"):
        Counter.options(bogus_actor_option=1)


def test_actor_options_accepted(rt):
    c = Counter.options(
        num_cpus=0, max_restarts=1, max_task_retries=1, max_concurrency=1, runtime_env={}
    ).remote(2)
    assert actorlib.get(c.incr.remote(), timeout=T) == 3


@actorlib.remote(num_cpus=0)
class _Shapes:
    """Calls of every common shape, for a call with options and one without."""

    def scalar(self):
        return 7

    def nested(self, x, *, y):
        return {"sum": [x + y]}

    def fails(self):
        raise ValueError("boom")

    @actorlib.method(num_returns=1)
    def one_yield(self):
        yield 5

    def names(self):
        ctx = actorlib.get_runtime_context()
        return ctx.get_task_name(), ctx.get_actor_id(), ctx.get_task_id() is not None


@pytest.mark.parametrize("method", ["scalar", "nested", "fails", "one_yield", "names"])
def test_a_call_with_options_and_one_without_end_alike(rt, method):
    """A backend may take a quicker path for a call with no options (the ray backend
    does): what the caller gets, and what the call sees of itself, are the same."""
    a = _Shapes.remote()
    args = (1,) if method == "nested" else ()
    kwargs = {"y": 2} if method == "nested" else {}

    def outcome(ref):
        try:
            return ("value", actorlib.get(ref, timeout=60))
        except actorlib.exceptions.TaskError as exc:
            return ("error", type(exc.cause).__name__, str(exc.cause))

    plain = outcome(getattr(a, method).remote(*args, **kwargs))
    optioned = outcome(getattr(a, method).options(max_task_retries=0).remote(*args, **kwargs))
    assert plain == optioned
    expected = {"scalar": ("value", 7), "nested": ("value", {"sum": [3]}),
                "fails": ("error", "ValueError", "boom"), "one_yield": ("value", 5)}
    if method == "names":
        assert plain[1][0] == "_Shapes.names" and plain[1][2] is True
    else:
        assert plain == expected[method]
    actorlib.kill(a)
