"""What runs inside Ray's worker processes: one generic task and two actor hosts.

Each unboxes its arguments (learning the Ray objects behind the ids pickled inside),
runs the user's code under an :class:`ExecutionContext` with this process's actorlib
client installed (so nested ``.remote()``/``get``/``put`` go to Ray as well), and boxes
the results. An application error comes back as the task's value (actorlib's
``TaskError``, with the remote traceback); one that ``retry_exceptions`` covers is raised
as :class:`~.boxes.Retryable` instead, so Ray retries the task.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import functools
import inspect
import itertools
import signal
import sys
import threading
import warnings
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pickle import dumps as _dumps
from types import CoroutineType, FrameType
from typing import Any, TypeVar

from actorlib.backends.base import HeapStore
from actorlib.backends.ray.actor_table import restarts
from actorlib.backends.ray.boxes import Box, Packed, Raised, Retryable
from actorlib.backends.ray.client import PassStore, RayCore
from actorlib.backends.ray.connector import ray_module
from actorlib.backends.ray.errors import ended_mid_call
from actorlib.backends.ray.wire import (
    call_spec,
    named_call,
    named_task,
    plain_task_spec,
    ray_call_id,
    ray_task_id,
    task_spec,
)
from actorlib.backends.runner.interrupts import (
    held_back_at,
    raise_in_thread,
    until_done,
)
from actorlib.backends.runner.streaming import exactly, is_generator
from actorlib.backends.runner.user_code import (
    PID,
    CodeCache,
    LoopHolder,
    drive,
    leave_forked_child,
    pack_error,
    pack_results,
    run_sync_or_async,
    serialize_result,
)
from actorlib.core import context
from actorlib.core.actor_exit import (
    _ExitActor,
    _ExitAsyncActor,
    register_shutdown,
    run_shutdown,
)
from actorlib.core.builtin_methods import builtin
from actorlib.core.execution_context import ExecutionContext, current_execution
from actorlib.core.refs import ObjectRef
from actorlib.core.serialization import PLAIN_SCALARS, Serialized, deserialize
from actorlib.core.specs import ActorSpec, CallSpec, Dep, RetryExceptions, TaskSpec

_code = CodeCache()
#: Results and items go to Ray as they are: Ray copies them into its store as the task
#: returns (or as ``put``/a stream item is handed over), before user code runs again.
_store = PassStore()
#: A generator's items with an int ``num_returns`` are all made before any is stored:
#: each is copied when yielded, or the generator's later changes would show in it.
_copied = HeapStore()
_setup = threading.Lock()
_loops = threading.local()

ray = ray_module()


def client(namespace: str) -> RayCore:
    """This worker's actorlib client, installed on first use."""
    current = context.current()
    if isinstance(current, RayCore):
        return current
    with _setup:
        current = context.current()
        if not isinstance(current, RayCore):
            current = RayCore(namespace, stop_ray=False, worker=True)
            context.install(current)  # it waits in Ray: ``RayCore.wait_blocking``
            _note_cancels(current)
    return current


def _note_cancels(core: RayCore) -> None:
    """Ray cancels a running sync task by raising ``KeyboardInterrupt`` in it through
    SIGINT's handler (``_thread.interrupt_main``); this handler first marks the task
    cancelled, so ``is_canceled()`` is True in code that catches the interrupt, and
    tells ``core`` it has landed (the task's later waits must not wait in Ray, which
    would interrupt each of them again). Inside an import, the interrupt waits for the
    import's end, as on every backend (see :mod:`actorlib.backends.runner.interrupts`)."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        return

    def interrupted(signum: int, frame: Any) -> None:
        ctx = current_execution.get()
        if ctx is not None and core.landed_in(ctx):
            return  # a cancel sent again (``.recancel``): its interrupt lands once
        if ctx is not None:
            try:
                ctx.cancelled = bool(ray.get_runtime_context().is_canceled())
            except Exception:  # not a task Ray can say about (an async actor)
                pass
        with _interrupts:
            if ctx is not None and _running[0] is ctx and _held_back(frame):
                _running[1] = ctx  # owed: sent once it is out (or as the task ends)
                until_done(_interrupts, _send_owed)
                return
            if ctx is not None:
                core.interrupt_landed(ctx)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupted)


#: Ray's code that hands work to Ray (``.remote()``: a function's or class's first
#: export in this process, the submission): Ray marks a function exported before it
#: writes it to its function table, so an interrupt there left it never exported, and
#: every later task of it from this worker waited forever for a function no worker could
#: load ("has not been registered"). A cancel's interrupt waits until the thread is out.
_RAY_SUBMIT_CODE = (
    "/ray/remote_function.py",
    "/ray/actor.py",
    "/ray/_private/function_manager.py",
)


def _held_back(frame: FrameType | None) -> bool:
    """Whether an interrupt at ``frame`` must wait: the thread imports, runs one of
    actorlib's finalizers, or hands work to Ray (see ``_RAY_SUBMIT_CODE``)."""
    return held_back_at(frame, _RAY_SUBMIT_CODE)


#: The normal task running on the main thread (Ray interrupts only those), and the one
#: whose interrupt waits for an import, a finalizer or a submission under way to end
#: (``_held_back``); under ``_interrupts``.
_running: list[ExecutionContext | None] = [None, None]
_interrupts = threading.RLock()  # the SIGINT handler may run while the main thread holds it


def _send_owed() -> bool:
    """Raise the owed interrupt in the main thread once it has left the import or the
    submission (False: not yet). ``_interrupts`` held: the task cannot end meanwhile
    (``_task_ended``)."""
    if _running[1] is None:
        return True  # the task ended first, and raised it itself
    main = threading.main_thread().ident or 0
    if _held_back(sys._current_frames().get(main)):
        return False
    _landed(_running[1])
    _running[1] = None
    raise_in_thread(main, KeyboardInterrupt)
    return True


def _landed(ctx: ExecutionContext | None) -> None:
    """The cancel's interrupt of the task running ``ctx`` lands now (None: none will)."""
    core = context.current()
    if isinstance(core, RayCore):
        core.interrupt_landed(ctx)


def _task_ended(ctx: ExecutionContext) -> None:
    """The task's code is over: no interrupt may land from now on; one still owed (its
    import ended just before the task did) is raised here."""
    with _interrupts:
        owed = _running[1] is ctx
        _running[0] = _running[1] = None
        _landed(None)
    if owed:
        raise KeyboardInterrupt


_node: list[str] = []


def _node_id() -> str:
    """This worker's node (a process never moves: asked of Ray once)."""
    if not _node:
        _node.append(str(ray.get_runtime_context().get_node_id()))
    return _node[0]


def _gpu_ids(resources: dict[str, float]) -> tuple[int, ...]:
    """The GPUs Ray gave this task or actor (none asked for: none given, and Ray is not
    asked, which cost a tenth of a small task's time in the worker)."""
    if not resources.get("GPU"):
        return ()
    try:
        return tuple(int(g) for g in ray.get_gpu_ids())
    except Exception:  # ids that are not ints (GPU UUIDs)
        return ()


def _unpack(core: RayCore, payload: Packed | None, deps: tuple[Any, ...]) -> Any:
    """(args, kwargs), or the first error among the dependency values (the task then
    fails with it, as on every backend)."""
    values: list[Serialized] = []
    for dep in deps:
        value = core.value_of(dep)
        if value.is_error:
            return value
        values.append(value)
    if payload is None:
        return (), {}
    positional, keywords = deserialize(core.value_of(payload))
    if values:
        loaded = [deserialize(v) for v in values]
        positional = tuple(loaded[a.index] if type(a) is Dep else a for a in positional)
        keywords = {k: loaded[v.index] if type(v) is Dep else v for k, v in keywords.items()}
    return positional, keywords


def _finish(
    core: RayCore, values: Sequence[Serialized | Packed] | Serialized, num_returns: int
) -> Any:
    boxes: list[Packed]
    if isinstance(values, Serialized):  # one error for every return
        boxes = [Box(values, {})] * num_returns
    else:
        boxes = [core.box(v) if isinstance(v, Serialized) else v for v in values]
    if num_returns == 1:
        return boxes[0]
    if num_returns == 0:
        return None
    return tuple(boxes)


def _failed(exc: BaseException, name: str, retry: RetryExceptions) -> Serialized:
    if isinstance(exc, ray.exceptions.TaskCancelledError):
        raise exc  # Ray's cancel: Ray reports it
    packed, retryable = pack_error(exc, name, retry)
    if retryable:
        raise Retryable(packed)
    return packed


def _loop_holder() -> LoopHolder:
    holder = getattr(_loops, "holder", None)
    if holder is None:
        holder = _loops.holder = LoopHolder()
    return holder


def _values(core: RayCore, result: Any, generator: str, num_returns: int, name: str,
            work_id: int) -> Sequence[Serialized | Packed]:
    """A task's or call's results: ``dynamic``'s one ref of its items' refs, a generator's
    exact count of values (an int ``num_returns``), or the return value(s)."""
    if generator == "dynamic":
        if inspect.isasyncgen(result):
            result = _sync_items(result, name, _loop_holder())
        return _dynamic_box(core, _dynamic(core, _checked(result, name, generator), name,
                                           work_id), name)
    if is_generator(result):
        result = exactly(result, num_returns, name, _copied)
    return pack_results(result, num_returns, name, _store)


def _dynamic_box(core: RayCore, refs: Any, name: str) -> Sequence[Serialized | Packed]:
    """The refs of a dynamic generator's items, boxed while they are alive here (the box
    carries their Ray objects to the caller)."""
    return [core.box(pack_results(refs, 1, name, _store)[0])]


def _checked(result: Any, name: str, generator: str) -> Any:
    if not is_generator(result):
        raise TypeError(
            f"{name} has num_returns={generator!r} but returned {type(result).__name__}, "
            "not a generator: use yield, or an int num_returns"
        )
    return result


def _dynamic(core: RayCore, items: Any, name: str, work_id: int) -> Any:
    """``num_returns="dynamic"``: each item put into Ray's store as it is yielded (this
    worker owns them, as it owns its ``put`` objects), their refs returned together."""
    from actorlib.core.generators import DynamicObjectRefGenerator

    refs: list[ObjectRef[Any]] = []
    for index, item in enumerate(items):
        id_ = core.ids.next()
        core.put(id_, _store.seal(serialize_result(item, f"item {index} of {name}")))
        refs.append(ObjectRef(id_, core, name, work_id))
    return DynamicObjectRefGenerator(refs)


def _sync_items(result: Any, name: str, holder: LoopHolder) -> Iterator[Any]:
    """A streaming result's items on this thread (an async generator on its loop)."""
    if inspect.isasyncgen(result):
        loop = holder.loop()
        while True:
            try:
                item = loop.run_until_complete(result.__anext__())
            except StopAsyncIteration:
                return
            yield item
    yield from _checked(result, name, "streaming")


def _raised(exc: Exception, name: str, retry: RetryExceptions) -> Exception:
    """How a generator's failure leaves it: raised, so Ray ends the stream with it."""
    if isinstance(exc, (Raised, Retryable, ray.exceptions.TaskCancelledError)):
        return exc
    packed, retryable = pack_error(exc, name, retry)
    return Retryable(packed) if retryable else Raised(packed)


@contextlib.contextmanager
def _running_as(ctx: ExecutionContext) -> Iterator[None]:
    """User code in between runs under ``ctx`` (what ``get_runtime_context()`` reads)."""
    token = current_execution.set(ctx)
    try:
        yield
    finally:
        current_execution.reset(token)


def _boxed(core: RayCore, item: Any, index: int, name: str) -> Packed:
    return core.box(_store.seal(serialize_result(item, f"item {index} of {name}")))


_END: Any = object()  # past a stream's last item


def _stream(core: RayCore, ctx: ExecutionContext, make: Callable[[], Any], name: str,
            retry: RetryExceptions) -> Iterator[Packed]:
    """``num_returns="streaming"`` in a sync worker: each item boxed as it is yielded
    (Ray streams it to the caller), the user's code run under ``ctx`` step by step."""
    try:
        with _running_as(ctx):
            items = _sync_items(make(), name, _loop_holder())
        for index in itertools.count():
            with _running_as(ctx):
                item = next(items, _END)
            if item is _END:
                return
            yield _boxed(core, item, index, name)
    except Exception as exc:
        raise _raised(exc, name, retry) from None


async def _stream_async(core: RayCore, ctx: ExecutionContext, make: Callable[[], Any],
                        name: str, retry: RetryExceptions) -> AsyncIterator[Packed]:
    """:func:`_stream` in an async actor (an async generator driven on its loop)."""
    try:
        with _running_as(ctx):
            result = make()
            if inspect.isawaitable(result) and not inspect.isasyncgen(result):
                result = await result
        _checked(result, name, "streaming")
        for index in itertools.count():
            with _running_as(ctx):
                if inspect.isasyncgen(result):
                    item = await anext(result, _END)
                else:
                    item = next(result, _END)
            if item is _END:
                return
            yield _boxed(core, item, index, name)
    except Exception as exc:
        raise _raised(exc, name, retry) from None


def run_stream_task(data: bytes, payload: Packed | None = None,
                    *deps: Any) -> Iterator[Packed]:
    """A ``num_returns="streaming"`` task: Ray's generator task, yielding boxed items."""
    spec, inline = task_spec(data)
    payload = payload if inline is None else inline
    core = client(spec.namespace)
    name = spec.name or spec.function.name
    ctx = ExecutionContext(
        _node_id(), task_id=spec.task_id, gpu_ids=_gpu_ids(spec.resources),
        namespace=spec.namespace, spec=spec,
    )

    def make() -> Any:
        unpacked = _unpack(core, payload, deps)
        if isinstance(unpacked, Serialized):
            raise Raised(unpacked)
        fn = ctx.code = _code.load(spec.function)
        return run_sync_or_async(fn, unpacked[0], unpacked[1], _loop_holder())

    yield from _stream(core, ctx, make, name, spec.retry_exceptions)


def run_task(data: bytes, payload: Packed | None = None, *deps: Any) -> Any:
    """A task: ``data`` its spec (:func:`.wire.task_data`), ``payload`` its arguments
    when they did not go inside ``data``, ``deps`` its ref arguments' values."""
    spec, inline = task_spec(data)
    return _run_task(spec, payload if inline is None else inline, deps)


def run_named_task(template: bytes, payload: Packed | None = None, *deps: Any) -> Any:
    """A task submitted by name (:func:`.wire.named_submit`): its template bound into
    its Ray function, its ids in its Ray name."""
    spec = named_task(template, ray.get_runtime_context().get_task_name())
    return _run_task(spec, payload, deps)


def run_plain_task(template: bytes, prefix: int, payload: bytes | None = None,
                   *deps: Any) -> Any:
    """A plain task (:func:`plain_task`): its template bound into its Ray function, its
    id made from Ray's task id under its submitter's prefix; ``deps`` its ref arguments'
    values."""
    task_id = ray_task_id(_current_task_id(), prefix)
    return _run_task(plain_task_spec(template, task_id), payload, deps)


def _left_fork(forks: int, failure: BaseException | None = None) -> None:
    """In a process the user code forked (``os.fork()`` without ``exec``), come back out
    of it: it ends here, as on every backend (:func:`leave_forked_child`), never reaching
    Ray's worker code with a copy of this worker."""
    if PID.forks != forks:
        leave_forked_child(failure)


def _run_task(spec: TaskSpec, payload: Packed | None, deps: tuple[Any, ...]) -> Any:
    core = client(spec.namespace)
    name = spec.name or spec.function.name
    ctx = ExecutionContext(
        _node_id(), task_id=spec.task_id, gpu_ids=_gpu_ids(spec.resources),
        namespace=spec.namespace, spec=spec,
    )
    token = current_execution.set(ctx)
    try:
        _running[0] = ctx  # a cancel's interrupt may wait for an import's end from here
        forks = PID.forks
        try:
            try:
                unpacked = _unpack(core, payload, deps)
                if isinstance(unpacked, Serialized):
                    return _finish(core, unpacked, spec.num_returns)
                fn = ctx.code = _code.load(spec.function)
                result = run_sync_or_async(fn, unpacked[0], unpacked[1], _loop_holder())
                _left_fork(forks)
                values = _values(core, result, spec.generator, spec.num_returns, name,
                                 spec.task_id)
            except KeyboardInterrupt:
                raise  # the cancel's interrupt: Ray reports the task cancelled
            except BaseException as exc:
                _left_fork(forks, exc)
                # ``SystemExit`` too is the task's error, as on every backend: left to
                # Ray, it would end Ray's worker, and Ray would retry the task.
                _still_cancelled(core, ctx)
                error = _failed(exc, name, spec.retry_exceptions)
                return _finish(core, error, spec.num_returns)
            _still_cancelled(core, ctx)
            return _finish(core, values, spec.num_returns)
        finally:
            _task_ended(ctx)
    finally:
        current_execution.reset(token)


_F = TypeVar("_F", bound=Callable[..., Any])


def _untraced(method: _F) -> _F:
    """A host's own step, never a Ray method: Ray's actor class wraps every method of
    the class in its tracing span wrapper (``_inject_tracing_into_class``), so each step
    a call takes through ``self`` cost a wrapper's call, five a call (about 3 us of the
    actor's CPU, a third of the host's own). Ray leaves alone a method it finds marked
    as wrapped already."""
    method.__ray_tracing_wrapped__ = True  # type: ignore[attr-defined]
    return method


def _still_cancelled(core: RayCore, ctx: ExecutionContext) -> None:
    """A task whose cancel's interrupt landed, and which caught it and ended as if it had
    not, is cancelled all the same, as on every backend: its caller's ``get`` raises
    ``TaskCancelledError``, never the value it returned nor the error it raised after.
    Raised as the interrupt, Ray reports it as it reports any task its cancel ended."""
    if core.landed_in(ctx):
        raise KeyboardInterrupt


class _SyncCallContext(ExecutionContext):
    """A sync (or threaded) actor's call on Ray: ``ray.cancel`` of it running only raises
    Ray's flag (no interrupt, no message to actorlib), so ``is_canceled()`` asks Ray."""

    __slots__ = ()

    @property
    def cancelled(self) -> bool:
        if _CANCELLED.__get__(self):
            return True
        try:
            return bool(ray.get_runtime_context().is_canceled())
        except Exception:  # not in a Ray task (the constructor's context, kept after it)
            return False

    @cancelled.setter
    def cancelled(self, value: bool) -> None:
        _CANCELLED.__set__(self, value)


_CANCELLED: Any = ExecutionContext.__dict__["cancelled"]  # the dataclass's slot


#: The fields :meth:`_Host._enter_plain` passes positionally, in ``ExecutionContext``'s
#: order: one added or moved before them fails the import, not each call quietly.
_PLAIN_CONTEXT = ("node_id", "task_id", "actor_id", "gpu_ids", "namespace", "cancelled",
                  "wakeup", "spec", "incarnation", "method", "code")
if tuple(f.name for f in dataclasses.fields(ExecutionContext))[:11] != _PLAIN_CONTEXT:
    raise ImportError("_Host._enter_plain must pass ExecutionContext's fields in its order")


class _Host:
    """One actorlib actor inside a Ray actor."""

    def __init__(self, spec: ActorSpec, inline: bytes | None = None,
                 payload: Packed | None = None, *deps: Any) -> None:
        core = client(spec.namespace)
        payload = payload if inline is None else inline
        self._spec = spec
        with warnings.catch_warnings():  # Ray's property uses its own deprecated API
            warnings.simplefilter("ignore")
            reconstructed = ray.get_runtime_context().was_current_actor_reconstructed
        # Only a restarted actor asks Ray's actor table how often (a call to the GCS).
        count = 0
        if reconstructed:
            count = restarts(ray.get_runtime_context().get_actor_id()) or 1
        self._incarnation = count + 1
        self._node = _node_id()
        self._gpus = _gpu_ids(spec.resources)  # an actor's GPUs are its own for life
        token = current_execution.set(self._context(None))
        try:
            unpacked = _unpack(core, payload, deps)
            if isinstance(unpacked, Serialized):
                raise deserialize(unpacked)
            cls = _code.load(spec.cls)
            try:
                self._instance = cls(*unpacked[0], **unpacked[1])
            except Exception as exc:
                raise deserialize(pack_error(exc, f"{spec.cls.name}.__init__", False)[0]) from None
            register_shutdown(spec.actor_id, self._instance)
        finally:
            current_execution.reset(token)

    def __ray_shutdown__(self) -> None:
        """Ray ends this actor gracefully (its handles gone): the user's
        ``__ray_shutdown__``, if its class has one and ``exit_actor()`` has not run it
        already, in the actor's context. Ray never calls it after a kill."""
        token = current_execution.set(self._context(None))
        try:
            run_shutdown(self._spec.actor_id)
        finally:
            current_execution.reset(token)

    @_untraced
    def _context(self, call_id: int | None, method: str = "") -> ExecutionContext:
        spec = self._spec
        instance = getattr(self, "_instance", None)
        return (_SyncCallContext if isinstance(self, SyncHost) else ExecutionContext)(
            self._node, task_id=call_id, actor_id=spec.actor_id, gpu_ids=self._gpus,
            namespace=spec.namespace, spec=spec, incarnation=self._incarnation,
            method=method, code=None if instance is None else type(instance),
        )

    @_untraced
    def _enter_plain(self, method: str, kind: type[ExecutionContext]
                     ) -> tuple[RayCore, int, contextvars.Token[ExecutionContext | None]]:
        """A plain call's start (:meth:`SyncHost._plain`, :meth:`AsyncHost._plain`): this
        worker's client, the call's id (Ray's task id, read before any ``await``), and
        its context set, made as :meth:`_context` makes one, positionally."""
        spec = self._spec
        core = context.current()
        if type(core) is not RayCore:
            core = client(spec.namespace)
        call_id = ray_call_id(_current_task_id())
        token = current_execution.set(kind(
            self._node, call_id, spec.actor_id, self._gpus, spec.namespace, False, None,
            spec, self._incarnation, method, type(self._instance)))
        return core, call_id, token

    @_untraced
    def _method(self, spec: CallSpec, payload: Packed | None, deps: tuple[Any, ...]) -> Any:
        core = client(self._spec.namespace)
        unpacked = _unpack(core, payload, deps)
        if isinstance(unpacked, Serialized):
            return unpacked
        try:
            method = getattr(self._instance, spec.method)
        except AttributeError as exc:
            method = builtin(spec.method, exc)
        return functools.partial(method, *unpacked[0], **unpacked[1])

    @_untraced
    def _streamed(self, spec: CallSpec, payload: Packed | None,
                  deps: tuple[Any, ...]) -> Any:
        """:meth:`_method` for a stream, whose failure to unpack ends it raised."""
        method = self._method(spec, payload, deps)
        if isinstance(method, Serialized):
            raise Raised(method)
        return method

    @_untraced
    def _name(self, spec: CallSpec) -> str:
        return f"{self._spec.cls.name}.{spec.method}"

    def actorlib_spec(self) -> ActorSpec:
        return self._spec


class SyncHost(_Host):
    def call(self, data: bytes, payload: Packed | None = None, *deps: Any) -> Any:
        spec, inline = call_spec(data)
        return self._call(spec, payload if inline is None else inline, deps)

    def named(self, payload: Packed | None = None, *deps: Any) -> Any:
        """A plain call whose spec is its Ray task's name (:func:`.wire.call_name`)."""
        name = ray.get_runtime_context().get_task_name()
        return self._call(named_call(name, self._spec.actor_id), payload, deps)

    @_untraced
    def _plain(self, method: str, payload: bytes | None, deps: tuple[Any, ...] = ()) -> Any:
        """A plain call sent to the Ray method named as the user's (see
        :func:`remote_host`): nothing but its arguments travels (its ref arguments as Ray
        refs, ``deps`` their values), its id is Ray's.

        :meth:`_call` written out for this one shape (one return, no generator, Ray's
        defaults), which nearly every call has: the actor's process is what bounds a
        stream of calls, and the general path's steps (its spec, a context built with
        keywords, ``_method``'s partial, ``_values`` and ``_finish``'s lists) cost it
        about as much again as this one. Whatever is not that shape (a generator, an
        ``exit_actor()``, an error) goes on as :meth:`_call` would. Its twin is
        :meth:`AsyncHost._plain`: a change to either goes to the other."""
        spec, instance = self._spec, self._instance
        core, call_id, token = self._enter_plain(method, _SyncCallContext)
        forks = PID.forks
        try:
            try:
                if payload is None and not deps:
                    result = getattr(instance, method)()
                else:
                    unpacked = _unpack(core, payload, deps)
                    if isinstance(unpacked, Serialized):  # an argument's error
                        return Box(unpacked, {})
                    result = getattr(instance, method)(*unpacked[0], **unpacked[1])
                _left_fork(forks)
                if type(result) in PLAIN_SCALARS:
                    return _dumps(result, 5)  # ``pack_results`` then ``box`` of a scalar
                if isinstance(result, CoroutineType):
                    result = drive(result, _loop_holder())
                values = _values(core, result, "", 1, f"{spec.cls.name}.{method}", call_id)
            except _ExitActor:
                ray.actor.exit_actor()
            except (Exception, SystemExit) as exc:  # sys.exit(): the call's error
                _left_fork(forks, exc)
                return _finish(core, _failed(exc, f"{spec.cls.name}.{method}", False), 1)
            return _finish(core, values, 1)
        finally:
            current_execution.reset(token)

    @_untraced
    def _call(self, spec: CallSpec, payload: Packed | None, deps: tuple[Any, ...]) -> Any:
        core = client(self._spec.namespace)
        token = current_execution.set(self._context(spec.call_id, spec.method))
        forks = PID.forks
        try:
            try:
                method = self._method(spec, payload, deps)
                if isinstance(method, Serialized):
                    return _finish(core, method, spec.num_returns)
                result = run_sync_or_async(method, (), {}, _loop_holder())
                _left_fork(forks)
                values = _values(core, result, spec.generator, spec.num_returns,
                                 self._name(spec), spec.call_id)
            except _ExitActor:
                # exit_actor() (or __ray_terminate__): Ray's own exit, as in an async
                # method below.
                ray.actor.exit_actor()
            except (Exception, SystemExit) as exc:  # sys.exit(): the call's error
                _left_fork(forks, exc)
                error = _failed(exc, self._name(spec), spec.retry_exceptions)
                return _finish(core, error, spec.num_returns)
            return _finish(core, values, spec.num_returns)
        finally:
            current_execution.reset(token)

    def stream(self, data: bytes, payload: Packed | None = None, *deps: Any
               ) -> Iterator[Packed]:
        """A ``num_returns="streaming"`` call: Ray's generator method."""
        spec, inline = call_spec(data)
        payload = payload if inline is None else inline
        core = client(self._spec.namespace)

        def make() -> Any:
            return run_sync_or_async(self._streamed(spec, payload, deps), (), {},
                                     _loop_holder())

        yield from _stream(core, self._context(spec.call_id, spec.method), make,
                           self._name(spec), spec.retry_exceptions)


class AsyncHost(_Host):
    #: The calls running in this actor (their asyncio tasks), and whether one of them
    #: has ended it: ``exit_actor()`` fails the others at once, as on every backend
    #: (Ray 2.60 waits for them, and one that never ends left the actor neither alive
    #: nor dead, every later call waiting for ever).
    _running: set[asyncio.Task[Any]] | None = None
    _exiting = False

    async def call(self, data: bytes, payload: Packed | None = None, *deps: Any) -> Any:
        spec, inline = call_spec(data)
        return await self._call(spec, payload if inline is None else inline, deps)

    async def named(self, payload: Packed | None = None, *deps: Any) -> Any:
        """A plain call whose spec is its Ray task's name (:func:`.wire.call_name`)."""
        name = ray.get_runtime_context().get_task_name()
        return await self._call(named_call(name, self._spec.actor_id), payload, deps)

    @_untraced
    async def _plain(self, method: str, payload: bytes | None,
                     deps: tuple[Any, ...] = ()) -> Any:
        """:meth:`SyncHost._plain`, and :meth:`_call` written out for it likewise (the id
        read before the call's first ``await``)."""
        spec, instance = self._spec, self._instance
        core, call_id, token = self._enter_plain(method, ExecutionContext)
        running, this = self._track()
        forks = PID.forks
        try:
            try:
                if payload is None and not deps:
                    result = getattr(instance, method)()
                else:
                    unpacked = _unpack(core, payload, deps)
                    if isinstance(unpacked, Serialized):  # an argument's error
                        return Box(unpacked, {})
                    result = getattr(instance, method)(*unpacked[0], **unpacked[1])
                if type(result) is CoroutineType or inspect.isawaitable(result):
                    result = await result
                _left_fork(forks)
                if type(result) in PLAIN_SCALARS:
                    return _dumps(result, 5)  # ``pack_results`` then ``box`` of a scalar
                values = _values(core, result, "", 1, f"{spec.cls.name}.{method}", call_id)
            except _ExitAsyncActor:
                self._exit(running, this)
            except asyncio.CancelledError:
                if not self._exiting:
                    raise
                return Box(self._ended(), {})
            except (Exception, SystemExit) as exc:  # sys.exit(): the call's error
                _left_fork(forks, exc)
                return _finish(core, _failed(exc, f"{spec.cls.name}.{method}", False), 1)
            return _finish(core, values, 1)
        finally:
            running.discard(this)
            current_execution.reset(token)

    @_untraced
    async def _call(self, spec: CallSpec, payload: Packed | None,
                    deps: tuple[Any, ...]) -> Any:
        core = client(self._spec.namespace)
        token = current_execution.set(self._context(spec.call_id, spec.method))
        running, this = self._track()
        forks = PID.forks
        try:
            try:
                method = self._method(spec, payload, deps)
                if isinstance(method, Serialized):
                    return _finish(core, method, spec.num_returns)
                result = method()
                if inspect.isawaitable(result):
                    result = await result
                _left_fork(forks)
                if spec.generator == "dynamic" and inspect.isasyncgen(result):
                    result = [item async for item in result]  # its items, then as a task's
                    refs = _dynamic(core, result, self._name(spec), spec.call_id)
                    values = _dynamic_box(core, refs, self._name(spec))
                else:
                    values = _values(core, result, spec.generator, spec.num_returns,
                                     self._name(spec), spec.call_id)
            except _ExitAsyncActor:
                self._exit(running, this)
            except asyncio.CancelledError:
                if not self._exiting:
                    raise  # a cancel of this call: Ray's
                return _finish(core, self._ended(), spec.num_returns)
            except (Exception, SystemExit) as exc:  # sys.exit(): the call's error
                _left_fork(forks, exc)
                error = _failed(exc, self._name(spec), spec.retry_exceptions)
                return _finish(core, error, spec.num_returns)
            return _finish(core, values, spec.num_returns)
        finally:
            running.discard(this)
            current_execution.reset(token)

    @_untraced
    def _exit(self, running: set[asyncio.Task[Any]], this: asyncio.Task[Any] | None) -> None:
        """exit_actor() in an async method (or __ray_terminate__): Ray's own exit ends the
        actor after the replies of the calls before (the client's ``exit_actor``), and
        this call fails with ActorDiedError, as on every backend. The calls still running
        fail now: Ray's exit waits for them."""
        self._exiting = True
        for other in running:
            if other is not this:
                other.cancel()
        ray.actor.exit_actor()

    @_untraced
    def _track(self) -> tuple[set[asyncio.Task[Any]], asyncio.Task[Any] | None]:
        """The calls running here, the current one (its asyncio task) added."""
        running = self._running
        if running is None:
            running = self._running = set()
        this = asyncio.current_task()
        if this is not None:
            running.add(this)
        return running, this

    @_untraced
    def _ended(self) -> Serialized:
        """The error of a call still running when its actor ended itself."""
        return ended_mid_call(self._spec.cls.name, self._spec.actor_id)

    async def actorlib_spec(self) -> ActorSpec:  # type: ignore[override]
        return self._spec

    async def stream(self, data: bytes, payload: Packed | None = None, *deps: Any
                     ) -> AsyncIterator[Packed]:
        """A ``num_returns="streaming"`` call: Ray's async generator method."""
        spec, inline = call_spec(data)
        payload = payload if inline is None else inline
        core = client(self._spec.namespace)

        def make() -> Any:
            return self._streamed(spec, payload, deps)()

        # One asyncio task of Ray's drives the whole stream: a call still running, for
        # ``exit_actor()`` (see ``_call``).
        running, this = self._track()
        try:
            async for box in _stream_async(core, self._context(spec.call_id, spec.method),
                                           make, self._name(spec), spec.retry_exceptions):
                yield box
        except asyncio.CancelledError:
            if not self._exiting:
                raise  # a cancel of this stream: Ray's
            raise Raised(self._ended()) from None
        finally:
            running.discard(this)


# Made on first use and kept out of the module's names, so that Ray pickles the functions
# and classes by reference (workers import them) rather than by value.
_remote: dict[Any, Any] = {}


def remote_task(max_calls: int = 0, streaming: bool = False) -> Any:
    """The Ray function running actorlib tasks (Ray takes ``max_calls`` only here)."""
    key = ("stream" if streaming else "task", max_calls)
    found = _remote.get(key)
    if found is None:
        fn = run_stream_task if streaming else run_task
        found = _remote[key] = (
            ray.remote(max_calls=max_calls)(fn) if max_calls else ray.remote(fn)
        )
    return found


def bound_task(template: bytes, max_calls: int = 0, takes_args: bool = True) -> Any:
    """A Ray function running the tasks of one template (:func:`run_named_task`): Ray
    ships it to a worker once, as it does any function, and each task then needs no
    argument to say what it is. Without ``takes_args`` it has no parameter: Ray binds
    the arguments of a function that has any to its signature on every call."""
    if takes_args:
        def actorlib_task(payload: Packed | None = None, *deps: Any) -> Any:
            return run_named_task(template, payload, *deps)
    else:
        def actorlib_task() -> Any:  # type: ignore[misc]
            return run_named_task(template)

    # Not kept here: the client keeps it with the template (``wire.TaskCallers``).
    return ray.remote(max_calls=max_calls)(actorlib_task) if max_calls else ray.remote(
        actorlib_task)


def _current_task_id() -> bytes:
    """The running Ray task's id (its ``binary()``)."""
    return bytes(ray._private.worker.global_worker.core_worker.get_current_task_id()
                 .binary())


def plain_method(name: str) -> bool:
    """Whether an actor method ``name`` gets a Ray method of that name on its host class
    (:func:`remote_host`): a public name the hosts do not use themselves."""
    return (name.isidentifier() and not name.startswith("_")
            and not hasattr(SyncHost, name) and not hasattr(AsyncHost, name))


def _sync_plain(method: str) -> Callable[..., Any]:
    def plain(self: SyncHost, payload: bytes | None = None, *deps: Any) -> Any:
        return self._plain(method, payload, deps)

    plain.__name__ = plain.__qualname__ = method
    return plain


def _async_plain(method: str) -> Callable[..., Any]:
    async def plain(self: AsyncHost, payload: bytes | None = None, *deps: Any) -> Any:
        return await self._plain(method, payload, deps)

    plain.__name__ = plain.__qualname__ = method
    return plain


def plain_task(template: bytes, prefix: int, shown: str) -> Any:
    """A Ray function running the plain tasks of one template (one return, no generator,
    no concurrency limit or ``max_calls``, a small payload) from the process whose id
    prefix is ``prefix``: each task hands Ray its payload alone, or nothing (then the Ray
    refs of its top-level ref arguments, which Ray resolves to their values as it does a
    plain Ray task's), as a plain Ray task does, where a spec as an argument costs Ray's worker a
    deserialization under ``DeferSigint``; its id is made from Ray's task id on both
    sides (:func:`.wire.ray_task_id`). Named ``shown``, as Ray names a task after its
    function. Not kept here: the client keeps it with the template."""
    def actorlib_task(payload: bytes | None = None, *deps: Any) -> Any:
        return run_plain_task(template, prefix, payload, *deps)

    actorlib_task.__name__ = actorlib_task.__qualname__ = shown
    return ray.remote(actorlib_task)


def remote_host(is_async: bool, groups: dict[str, int] | None = None,
                class_name: str = "", methods: tuple[str, ...] = ()) -> Any:
    """The Ray actor class hosting an actorlib actor (Ray takes concurrency groups only
    here, in ``ray.remote``: one class per distinct set of groups).

    It is named as the user's class and has a Ray method of each of its public method
    names (``plain_method``), as Ray's own class would: a plain call (Ray's default
    options, a small payload) goes to that method with its arguments' payload as its
    one argument, or none, so that it costs Ray what a plain Ray call costs. A Ray
    method with an argument deserializes it under Ray's ``DeferSigint`` (two
    ``signal.signal`` calls and an ``enum`` conversion of the handler each), and
    unpacking a spec costs actorlib: about 50 us of the actor's CPU per call on a
    2-core machine. The call's id is Ray's task id, read on both sides
    (:func:`.wire.ray_call_id`). Other calls go to the generic ``call``."""
    plain = tuple(m for m in methods if plain_method(m))
    base = AsyncHost if is_async else SyncHost
    key = (base.__name__, tuple(sorted((groups or {}).items())), class_name if plain else "",
           plain)
    found = _remote.get(key)
    if found is None:
        cls: type[_Host] = base
        if plain:
            make = _async_plain if is_async else _sync_plain
            shown = class_name.rpartition(".")[2] or base.__name__
            cls = type(shown, (base,), {m: make(m) for m in plain})
            cls.__qualname__ = shown
        found = _remote[key] = (
            ray.remote(concurrency_groups=dict(groups))(cls) if groups else ray.remote(cls)
        )
    return found
