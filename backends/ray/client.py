"""actorlib's client interface on Ray: specs become Ray calls, ids name Ray objects.

The API mints int ids and hands over specs whose arguments are already serialized; this
client keeps, per process, which Ray ObjectRef or ActorHandle each live id stands for
(counted as the API counts its refs and handles: the last one dropped releases the Ray
object to Ray's own reference counting). Values never pass through here on their way
to a task: a ref argument is handed to Ray as the Ray ref it stands for.

The same class serves the driver and every Ray worker running actorlib code (nested
tasks, actors calling actors): a worker learns the Ray objects behind ids from the boxes
(:mod:`.boxes`) its arguments arrive in.
"""

from __future__ import annotations

import dataclasses
import functools
import secrets
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from actorlib.backends.base import ObjectStore
from actorlib.backends.ray import metrics as ray_metrics
from actorlib.backends.ray.actor_table import kill_and_await_restart
from actorlib.backends.ray.boxes import ActorRef, Box, Packed, Retryable, packed
from actorlib.backends.ray.connector import ray_module
from actorlib.backends.ray.direct import DirectCall, RayTask, direct_call
from actorlib.backends.ray.errors import ended_mid_call, error_value
from actorlib.backends.ray.groups import RayGroups
from actorlib.backends.ray.interrupts import SigintDeferred
from actorlib.backends.ray.limits import Held, HeldTasks, Limits
from actorlib.backends.ray.options import (
    INTERNAL_PREFIX,
    actor_options,
    countable,
    groups_of,
    internal_name,
    task_options,
)
from actorlib.backends.ray.packages import RayPackages
from actorlib.backends.ray.recancel import SETTLE_S, Recanceller, SettleWindow, cancel_pending
from actorlib.backends.ray.streams import END, RayStream, core_worker, link
from actorlib.backends.ray.waits import RayWaits
from actorlib.backends.ray.wire import (
    INLINE_MAX,
    CallTemplates,
    NamedSubmit,
    TaskCallers,
    call_data,
    call_name,
    named_submit,
    ray_call_id,
    ray_task_id,
    task_data,
    task_name,
)
from actorlib.backends.runner.user_code import pack_error
from actorlib.backends.switches import env_switch
from actorlib.core import waiting
from actorlib.core.execution_context import current_execution
from actorlib.core.ids import COUNTER_BITS, IdAllocator, id_hex
from actorlib.core.metrics import Batch
from actorlib.core.records import NodeInfo
from actorlib.core.scheduler import Scheduler
from actorlib.core.serialization import Serialized, serialize
from actorlib.core.specs import (
    NO_ARGS,
    ActorSpec,
    Args,
    CallSpec,
    NodeAffinitySchedulingStrategy,
    PlacementGroupSpec,
    PlacementGroupStrategy,
    TaskSpec,
)
from actorlib.exceptions import (
    ActorAlreadyExistsError,
    ActorDiedError,
    ActorPlacementGroupRemoved,
    NotSupportedError,
    ObjectLostError,
    RuntimeClosedError,
    TaskCancelledError,
    TaskPlacementGroupRemoved,
)

#: How long a Ray object learnt from a box stays mapped with no actorlib ref counting it
#: (a value delivered to a waiter is unpickled right after, adding its refs).
_UNCLAIMED_S = 60.0
#: How long the cluster's node list is trusted for feasibility checks.
_NODES_TTL_S = 2.0
#: How long a stream's end waits for its call's completion (ready by then, as a rule:
#: Ray ends the stream as the call ends).
_COMPLETION_WAIT_S = 2.0
#: A call's options that are Ray's defaults (``.remote()`` without ``.options()``).
_DEFAULT_CALL = {"num_returns": 1}

ray = ray_module()
#: Whether a worker can read its Ray task's name (every Ray this backend was tested with).
_NAMED_CALLS = hasattr(ray.runtime_context.RuntimeContext, "get_task_name")


def ids_in_names() -> bool:
    """``ACTORLIB_RAY_IDS_IN_NAMES``: whether a plain task's or call's ids travel in its
    Ray name (no argument of actorlib's: 30-50 us less of the driver's CPU per call)
    rather than in an argument. Off by default: Ray labels its ``ray_tasks`` metric and
    its state API rows with the task's name, so a name per call grows Ray's metrics
    without bound and no longer matches a filter by the task's name."""
    return env_switch("ACTORLIB_RAY_IDS_IN_NAMES") and _NAMED_CALLS


#: The unique part of the actor id in a plain task's Ray task id (its actor id is the
#: job's nil one): Ray's ``TaskID`` layout, 8 bytes of its own, then the actor's 16.
_NO_ACTOR = b"\xff" * 12


def _actor_task(ref: Any) -> bool:
    """Whether Ray made ``ref`` by an actor task (its task id embeds the actor's id)."""
    return ref.task_id().actor_id().binary()[:12] != _NO_ACTOR


def _end_tasks(running: list[Any]) -> None:
    """End the tasks a driver leaves behind on a Ray connection that outlives its
    runtime: they would hold their CPUs until done, as Ray's driver exit would not let
    them (Ray ends a departed driver's tasks). Forced, with their children, as Ray's
    exit ends them: a task that catches ``KeyboardInterrupt`` must not live on."""
    cancel_pending(running, force=True, recursive=True, settle=SETTLE_S)


class PassStore(ObjectStore):
    """Ray copies values into its store as ``.remote()``/``put`` serialize them, in the
    caller's thread: nothing to copy before that."""

    def seal(self, obj: Serialized) -> Serialized:
        return obj



def _plain_args(inline: bytes | None, rest: list[Any], args: Args) -> tuple[Any, ...] | None:
    """What a plain task or call hands Ray (``RayCore._pack``'s ``inline`` and ``rest``):
    its payload alone, or none, then the Ray refs of its ref arguments; None where it
    must go the usual way (a payload too large to go inline)."""
    if not rest:
        return (inline,)
    if inline is None or not args.deps:
        return None
    return (inline, *rest[1:])  # ``rest[0]``: the box's place, taken by ``inline``

class RayCore(RayWaits, HeldTasks):
    """The :class:`~actorlib.core.context.Client` (and ``RunningCore``) on Ray."""

    address: str | None = None  # Ray's own address is Ray's business (``ray.init``)

    def __init__(self, namespace: str, *, stop_ray: bool, worker: bool = False) -> None:
        # Ids from every process of a program must not clash: a random prefix each.
        self.ids = IdAllocator(secrets.randbits(62) | 1 << 62)
        assert COUNTER_BITS == 40
        self.store: ObjectStore = PassStore()
        self.closed = False
        self._namespace = namespace
        self._stop_ray = stop_ray
        self._worker = worker
        # Re-entrant: a garbage collection while it is held (any allocation) may run an
        # ObjectRef's ``__del__``, whose ``drop_ref`` takes it again in the same thread.
        self._lock = threading.RLock()
        # id -> [Ray ObjectRef, count, ready]: ``ready`` once this process knows the
        # object is complete (its put, or a completion seen), so a ``get`` reads it at once.
        self._refs: dict[int, list[Any]] = {}
        self._actors: dict[int, list[Any]] = {}  # id -> [Ray ActorHandle, count, method groups]
        self._unclaimed: dict[int, tuple[Any, float]] = {}  # id -> (Ray object, since)
        self._watches: dict[Any, set[int]] = {}  # watcher -> ids it still waits for
        self._watchers: dict[int, set[Any]] = {}  # id -> its watchers (the same pairs)
        self._hooked: set[int] = set()  # ids with a Ray completion callback pending
        self._large: set[Any] = set()  # watchers of many ids (not in ``_watchers``)
        # Actors this driver made, killed at shutdown if still alive: weakly, so an actor
        # whose every handle is gone ends then, gracefully, as Ray ends it (its
        # ``__ray_shutdown__`` runs), instead of living on until the driver's end.
        self._created: dict[int, weakref.ref[Any]] = {}
        #: The Ray handles of actors no handle names any more, until their calls are done.
        self._retiring: dict[int, tuple[Any, Any]] = {}
        # Actors killed for good (handles may remain): why, as the error their calls get.
        self._killed: dict[int, tuple[type[ActorDiedError], str]] = {}
        self._nodes_at = 0.0
        self._groups = RayGroups()
        self._recancel = Recanceller()
        self._settle = SettleWindow()
        self._scheduler = Scheduler()
        self._scheduler.removed_groups = self._groups.removed
        self._ids_in_names = ids_in_names()
        self._task_callers = TaskCallers(
            self._ray_task, self._named_task if self._ids_in_names else None)
        self._call_templates = CallTemplates()
        # Actor id -> method -> the submits straight to Ray's core worker of its calls
        # with Ray's default options, to the host's Ray method of the method's own name
        # and to its generic ``call`` (None: not that way), made at its first such call
        # (see :mod:`.direct`).
        self._direct: dict[int, dict[str, tuple[DirectCall | None, DirectCall | None]]] = {}
        # Ids whose failure, if they fail, is this error instead of Ray's (work ended by
        # its placement group's removal, a group's ``ready()``).
        self._errors_as: dict[int, Serialized] = {}
        self._slots: dict[int, RayStream] = {}  # a stream's slot id -> its stream
        # A stream's end id -> its stream: Ray reports a generator's error as its last
        # item, not through its completion, so the end takes the error once it is read.
        self._ends: dict[int, RayStream] = {}
        # A blocking ``get``/``wait`` waits in Ray itself (``wait_blocking``): the objects
        # of its watch get no completion callback, and many are read in one ``ray.get``.
        self._thread = threading.local()  # ``deferred``: this thread's watch to wait for
        self._unread: set[Any] = set()  # watchers that only wait: they read no value
        self._probe_skip = 0  # rounds to go before a wait's next probe (see ``_probe``)
        self._probe_backoff = 0
        # Tasks over their concurrency limit, held here until a slot frees (see .limits).
        self._limits = Limits()
        self._packages = RayPackages()  # runtime_env working_dir / py_modules
        self._landed = None  # a task whose cancel landed (``RayWaits.interrupt_landed``)
        waiting.blocking_wait = self.wait_blocking
        waiting.blocking_fetch = self.fetch_blocking

    @property
    def namespace(self) -> str:
        return self._namespace

    # -- refs ---------------------------------------------------------------------------

    def add_ref(self, id_: int) -> None:
        with self._lock:
            entry = self._refs.get(id_) or self._actors.get(id_)
            if entry is not None:
                entry[1] += 1
                return
            found = self._unclaimed.pop(id_, None)
            if found is not None:
                self._adopt(id_, found[0], 1)

    def drop_ref(self, id_: int) -> None:
        retired = None
        with self._lock:
            for table in (self._refs, self._actors):
                entry = table.get(id_)
                if entry is not None:
                    entry[1] -= 1
                    if entry[1] <= 0:
                        del table[id_]
                        if self._errors_as:
                            self._errors_as.pop(id_, None)
                        if self._ends:
                            self._ends.pop(id_, None)
                        if self._slots:
                            self._slot_dropped(id_)
                        if self._direct:
                            self._direct.pop(id_, None)
                        if table is self._actors and not self.closed and id_ not in self._killed:
                            retired = entry[0]
                    break
        if retired is not None:
            self._retire(retired)

    def _retire(self, handle: Any) -> None:
        """The driver's last handle of an actor is gone: Ray ends it (out of scope) once
        the driver lets go of the Ray handle, which is held here until the calls sent
        before have run, as on every backend: Ray would end it with calls still queued."""
        try:
            last = handle.actorlib_spec.remote()  # a call of ours: after this caller's
            done = last.future()
        except Exception:  # Ray is going away, or so is the actor: nothing to wait for
            return
        key = id(last)
        retiring = self._retiring
        retiring[key] = (handle, last)
        done.add_done_callback(lambda _done: retiring.pop(key, None))

    def _adopt(self, id_: int, obj: Any, count: int) -> None:
        if isinstance(obj, ActorRef):
            self._actors[id_] = [obj.handle, count, obj.groups]
        else:
            self._refs[id_] = [obj, count, False]

    def learn(self, refs: dict[int, Any]) -> None:
        """Ray objects behind ids pickled in a value about to be unpickled here."""
        if not refs:
            return
        now = time.monotonic()
        with self._lock:
            for id_, obj in refs.items():
                if id_ not in self._refs and id_ not in self._actors:
                    self._unclaimed[id_] = (obj, now)
            if len(self._unclaimed) > 256:
                old = [i for i, (_, t) in self._unclaimed.items() if now - t > _UNCLAIMED_S]
                for id_ in old:
                    del self._unclaimed[id_]

    def ray_ref(self, id_: int) -> Any:
        with self._lock:
            ref = self._ray_ref(id_)
        if type(ref) is Held:
            return self._take_now(id_, ref)
        return ref

    def _handle(self, actor_id: int) -> Any:
        with self._lock:
            entry = self._actors.get(actor_id)
            if entry is None:
                found = self._unclaimed.get(actor_id)
                if found is not None and isinstance(found[0], ActorRef):
                    return found[0].handle, found[0].groups
        if entry is not None:
            return entry[0], entry[2]
        # A handle that reached this process outside a value (in a function's closure,
        # an actor's own handle): find the actor by its internal Ray name.
        ctx = current_execution.get()
        try:
            if ctx is not None and ctx.actor_id == actor_id and isinstance(ctx.spec, ActorSpec):
                # The actor's own handle (it may be busy running this very call).
                handle, spec = ray.get_runtime_context().current_actor, ctx.spec
            else:
                handle = ray.get_actor(internal_name(actor_id), namespace=self.namespace)
                spec = ray.get(handle.actorlib_spec.remote())
        except Exception:
            raise ActorDiedError(f"actor {actor_id:016x} is unknown to this process") from None
        groups = groups_of(spec)
        with self._lock:
            self._unclaimed[actor_id] = (ActorRef(handle, groups), time.monotonic())
        return handle, groups

    def box(self, value: Serialized) -> Packed:
        """``value`` with the Ray objects behind the ids pickled inside it."""
        refs: dict[int, Any] = {}
        if value.contained:
            with self._lock:
                for id_ in value.contained:
                    entry = self._refs.get(id_)
                    actor = self._actors.get(id_)
                    if entry is not None:
                        refs[id_] = entry[0]
                    elif actor is not None:
                        refs[id_] = ActorRef(actor[0], actor[2])
                    elif id_ in self._unclaimed:
                        refs[id_] = self._unclaimed[id_][0]
            for id_, ref in refs.items():
                if type(ref) is Held:
                    refs[id_] = self._take_now(id_, ref)
        return packed(value, refs)

    def _pack(self, args: Args, inline: bool = True) -> tuple[bytes | None, list[Any]]:
        """The payload to send inside the spec's one ``bytes`` argument (a small plain
        pickle, only if ``inline``), and the Ray arguments after that one: the payload's
        box if it did not go inside, then the Ray refs of top-level ref arguments (Ray
        resolves those to their values before the task runs). None at all for no
        arguments: Ray serializes each argument it is given, a None too."""
        payload = None if args.payload is None else self.box(args.payload)
        if inline and type(payload) is bytes and len(payload) <= INLINE_MAX:
            if not args.deps:
                return payload, []
            return payload, [None, *[self.ray_ref(d) for d in args.deps]]
        if not args.deps:
            return None, [] if payload is None else [payload]
        return None, [payload, *[self.ray_ref(d) for d in args.deps]]

    def put(self, id_: int, value: Serialized) -> None:
        self._check_open()
        ref = ray.put(self.box(value))
        with self._lock:
            self._refs[id_] = [ref, 1, True]

    def _ray_ref(self, id_: int) -> Any:
        """:meth:`ray_ref`, with the lock held."""
        entry = self._refs.get(id_)
        if entry is not None:
            return entry[0]
        found = self._unclaimed.get(id_)
        if found is not None:
            return found[0]
        if self.closed:
            raise RuntimeClosedError(
                f"object {id_:016x} is unknown to this process (its runtime was shut down)"
            )
        # A ref made from an id (``ObjectRef.from_hex``, ``nil()``) or one whose object
        # was freed: as the core says of an id it does not hold.
        raise ObjectLostError(f"Object {id_:016x} is not known to this runtime.")

    # -- streams (see :mod:`.streams`) -----------------------------------------------------

    def _open_stream(self, return_ids: tuple[int, ...], generator: Any,
                     actor: tuple[str, int] | None = None) -> None:
        """A streaming task or call (of ``actor``: its class name and id) was submitted:
        its head slot is Ray's first position, its end Ray's completion ref."""
        head, end = return_ids
        stream = RayStream(generator, head, end, actor)
        head_ref = stream.head_ref()
        with self._lock:
            self._refs[head] = [head_ref, 1, False]
            self._refs[end] = [generator.completed(), 1, False]
            self._slots[head] = stream
            self._ends[end] = stream

    def _slot_value(self, id_: int, data: Any) -> Serialized:
        """Slot ``id_``'s value, Ray's data at its position being ``data``: made once,
        taking the item from Ray's stream."""
        stream = self._slots.get(id_)
        if stream is None:
            return self.value_of(data)
        with stream.lock:
            known = stream.links.get(id_)
            if known is not None:
                return known
            if isinstance(data, ray.exceptions.ObjectRefStreamEndOfStreamError):
                value = self._end_of(stream)
            elif isinstance(data, BaseException) or stream.generator is None:
                stream.take()
                value = error_value(data) if isinstance(data, BaseException) else END
                if value.is_error:
                    with self._lock:
                        if stream.end in self._refs:
                            self._errors_as[stream.end] = value
            else:
                item_ref = stream.take()
                if item_ref is None:
                    # Ray ended the stream (a cancel, a failure) after ``data`` was read
                    # and before the item was taken: Ray fails the positions not taken.
                    # The item reads as what Ray holds at its position now (the item or
                    # that failure), and the slot after it is the stream's end: its
                    # completion, read as the end or the task's error.
                    done = stream.generator.completed()
                    with self._lock:
                        entry = self._refs.get(id_)
                    item_ref, next_ref = (done if entry is None else entry[0]), done
                    stream.generator = None  # ended: what follows is no item
                else:
                    next_ref = stream.head_ref()
                item_id, next_id = self.ids.next(), self.ids.next()
                with self._lock:  # counted by the consumer when it reads the link
                    self._refs[item_id] = [item_ref, 0, True]
                    self._refs[next_id] = [next_ref, 0, False]
                    self._slots[next_id] = stream
                stream.newest = next_id
                value = link(item_id, next_id)
            stream.links[id_] = value
        return value

    def _end_of(self, stream: RayStream) -> Serialized:
        """The value where Ray says ``stream`` ended: the end, unless it is an actor
        call's that was cancelled though this process never asked. Then its actor ended
        itself (``exit_actor()``) while the stream ran: Ray's exit cancels the call's
        stream at times before the call's own error (see the worker's ``stream``) reaches
        Ray, and Ray then reads the stream as ended."""
        actor = stream.actor
        if actor is None or stream.cancelled:
            return END
        with self._lock:
            entry = self._refs.get(stream.end)
        if entry is None:
            return END
        try:
            ray.get(entry[0], timeout=_COMPLETION_WAIT_S)
        except ray.exceptions.TaskCancelledError:
            return ended_mid_call(*actor)
        except Exception:  # its own error, or no answer in time: the stream ended
            pass
        return END

    def _slot_dropped(self, id_: int) -> None:
        """With the lock held: slot ``id_`` is gone. If nobody holds the slot to read
        next, nobody will read on: the stream is released."""
        stream = self._slots.pop(id_, None)
        if stream is None:
            return
        made = stream.links.pop(id_, None)
        newest = stream.newest
        entry = self._refs.get(newest)
        if newest != id_ and entry is not None and entry[1] > 0:
            return  # the consumer moved on to the next slot
        unread = made.contained if made is not None and made.contained else ()
        for unclaimed in (*unread, newest):  # made for a read that never came
            found = self._refs.get(unclaimed)
            if found is not None and found[1] <= 0:
                del self._refs[unclaimed]
            self._slots.pop(unclaimed, None)
        stream.release()

    # -- work ---------------------------------------------------------------------------

    def submit_task(self, spec: TaskSpec) -> int | None:
        self._check_open()
        if spec.concurrency is None:
            # Not with ``max_calls``: Ray counts it per Ray function, and a function's
            # tasks would then count under two (theirs and ``run_task``'s).
            if spec.num_returns == 1 and not spec.generator and not spec.max_calls:
                out = self._send_plain(spec)
                if out is not None:  # only its arguments went; its id is Ray's
                    self._accepted(spec, out)
                    return ray_task_id(out.task_id().binary(), self.ids.prefix)
            self._submit_to_ray(spec)
            return None
        # From taking its slot until Ray has it and it is tracked: a Ctrl-C meanwhile
        # is raised once that is done.
        with SigintDeferred():
            if not self._admit(spec):
                return None  # held: submitted when a slot under its limit frees
            try:
                out = self._send(spec)
            except BaseException:  # Ray refused it (the caller hears why): slot free
                self._give_back(spec.concurrency[0])
                raise
            self._accepted(spec, out)  # Ray has it: its slot frees when it ends
        return None

    def _send_plain(self, spec: TaskSpec) -> Any:
        """Hand a plain task to Ray as its template's own Ray function with its payload
        alone, then the Ray refs of its ref arguments (see :func:`.worker.plain_task`);
        Ray's ref, or None where it goes the usual way (a payload too large to go inline,
        a template that has no function of its own)."""
        plain = self._task_callers.plain(spec, self._plain_task)
        if plain is None:
            return None
        if spec.code_env is not None:  # its Ray options are made once: its packages kept
            self._packages.ensure(spec.code_env)
        args = _plain_args(*self._pack(spec.args), spec.args)
        return None if args is None else plain.remote(*args)

    def _submit_to_ray(self, spec: TaskSpec, held: Held | None = None) -> None:
        self._accepted(spec, self._send(spec), held)

    def _send(self, spec: TaskSpec) -> Any:
        """Hand ``spec`` to Ray; what its ``.remote()`` returned."""
        if spec.code_env is not None:  # its Ray options are made once: its packages kept
            self._packages.ensure(spec.code_env)
        if spec.generator == "streaming":
            core_worker("a streaming generator")  # before Ray runs what none could read
        task, template, named = self._task_callers.get(spec)
        if named is not None:
            return named(self._pack(spec.args, inline=False)[1], task_name(spec))
        inline, rest = self._pack(spec.args)
        return task.remote(task_data(spec, template, inline), *rest)

    def _accepted(self, spec: TaskSpec, out: Any, held: Held | None = None) -> None:
        """Ray took ``spec`` (``out``: its refs): the ids map to them, a limited one is
        tracked."""
        if spec.generator == "streaming":
            self._open_stream(spec.return_ids, out)
        else:
            refs = self._adopt_returns(spec.return_ids, out, held)
            if spec.concurrency is not None:
                self._track(spec, refs)
        strategy = spec.scheduling_strategy
        if type(strategy) is PlacementGroupStrategy:
            self._groups.track(strategy.group_id, spec.return_ids, self._refs.keys())

    def _adopt_returns(
        self, ids: tuple[int, ...], out: Any, held: Held | None = None,
    ) -> list[Any]:
        """Map ``ids`` to Ray's refs ``out``; a held task's only where its entries still
        stand for it (an id dropped meanwhile stays dropped: its task runs all the same)."""
        refs = [] if out is None else (out if isinstance(out, list) else [out])
        with self._lock:
            for id_, ref in zip(ids, refs, strict=True):
                if held is None:
                    self._refs[id_] = [ref, 1, False]
                else:
                    entry = self._refs.get(id_)
                    if entry is not None and entry[0] is held:
                        entry[0] = ref
        return refs

    def ray_session_name(self) -> str:
        """Ray's session name: ``get_runtime_context().get_session_name()`` answers it."""
        return str(ray.get_runtime_context().get_session_name())

    def ray_temp_dir(self) -> str:
        """Ray's temp dir on this node: ``get_runtime_context().get_temp_dir()``."""
        return str(ray.get_runtime_context().get_temp_dir())

    def create_actor(self, spec: ActorSpec, get_if_exists: bool = False) -> int:
        self._check_open()
        from actorlib.backends.ray import worker

        meta = dataclasses.replace(spec, args=NO_ARGS)
        options = actor_options(spec, self._groups.ray_group, self._packages.runtime_env)
        if get_if_exists and spec.name is not None:
            options["get_if_exists"] = True
        host = worker.remote_host(spec.is_async, spec.concurrency_groups, spec.cls.name,
                                  tuple(spec.method_returns))
        try:
            inline, rest = self._pack(spec.args)
            handle = host.options(**options).remote(meta, inline, *rest)
        except ValueError as exc:
            # Ray's ActorAlreadyExistsError (2.x later releases) or its plain ValueError.
            if type(exc).__name__ != "ActorAlreadyExistsError" and (
                    "already taken" not in str(exc)):
                raise
            raise ActorAlreadyExistsError(
                f"An actor named {spec.name!r} already exists in namespace "
                f"{spec.namespace!r}. Use get_actor() to reach it, or "
                "options(get_if_exists=True)."
            ) from None
        actor_id = spec.actor_id
        if get_if_exists and spec.name is not None:
            actor_id = ray.get(handle.actorlib_spec.remote()).actor_id
        strategy = spec.scheduling_strategy
        if type(strategy) is PlacementGroupStrategy and actor_id == spec.actor_id:
            self._groups.track_actor(strategy.group_id, actor_id)
        with self._lock:
            entry = self._actors.get(actor_id)
            if entry is not None:
                entry[1] += 1
            else:
                self._actors[actor_id] = [handle, 1, groups_of(spec)]
            if not spec.detached and actor_id == spec.actor_id:
                created = self._created
                if len(created) >= 64 and len(created) & (len(created) - 1) == 0:
                    for gone in [i for i, ref in created.items() if ref() is None]:
                        del created[gone]  # (at each power of two: amortized)
                created[actor_id] = weakref.ref(handle)
        return actor_id

    def submit_call(self, spec: CallSpec) -> int | None:
        self._check_open()
        killed = self._killed.get(spec.actor_id)
        if killed is not None:
            # Ray's kill is asynchronous: a call sent right after it could still reach
            # the old instance. One this process killed for good fails, as elsewhere.
            died = serialize(killed[0](
                f"actor {spec.actor_id:016x} {killed[1]}; {spec.method}() cannot run"),
                is_error=True)
            self._adopt_returns(spec.return_ids, [ray.put(Box(died, {})) for _ in spec.return_ids])
            return None
        handle, (method_groups, declared, cls_name) = self._handle(spec.actor_id)
        options: dict[str, Any] = {"num_returns": spec.num_returns}
        if spec.generator == "streaming":
            options["num_returns"] = "streaming"
            if spec.backpressure > 0:
                options["_generator_backpressure_num_objects"] = spec.backpressure
        group = spec.concurrency_group or method_groups.get(spec.method)
        if group is not None and group not in declared:
            # Ray would kill the actor's process for it: fail the call, as elsewhere.
            error = ValueError(
                f"concurrency group {group!r} is not one of actor {cls_name}'s "
                f"concurrency_groups ({', '.join(sorted(declared)) or 'none'})"
            )
            packed = pack_error(error, f"{cls_name}.{spec.method}", False)[0]
            failed = [ray.put(Box(packed, {})) for _ in spec.return_ids]
            self._adopt_returns(spec.return_ids, failed)
            return None
        if spec.max_task_retries is not None:
            options["max_task_retries"] = spec.max_task_retries
        if spec.retry_exceptions:
            options["retry_exceptions"] = [Retryable]
        if group is not None:
            options["concurrency_group"] = group
        if spec.generator == "streaming":
            core_worker("a streaming generator")
        plain = direct = None
        if options == _DEFAULT_CALL and spec.generator != "streaming":
            try:
                plain, direct = self._direct[spec.actor_id][spec.method]
            except KeyError:
                plain, direct = self._direct_for(spec.actor_id, handle, spec.method)
        sent: tuple[bytes | None, list[Any]] | None = None
        if plain is not None and not spec.generator:
            sent = self._pack(spec.args)
            args = _plain_args(*sent, spec.args)
            if args is not None and all(type(r) is ray.ObjectRef for r in args[1:]):
                out = plain(*args)  # only its arguments travel; its id is Ray's
                self._adopt_returns(spec.return_ids, out)
                return ray_call_id(out.task_id().binary())
        name = call_name(cls_name, spec) if self._ids_in_names else None
        if name is not None:  # the spec is the name: Ray gets only the arguments
            del options["num_returns"]  # one: Ray's default (its check costs a call)
            out = handle.named.options(name=name, **options).remote(
                *self._pack(spec.args, inline=False)[1])
        else:
            inline, rest = sent or self._pack(spec.args)
            data = call_data(spec, self._call_templates.get(spec), inline)
            if direct is not None and not rest:
                self._adopt_returns(spec.return_ids, direct(data))
                return None
            method = handle.stream if spec.generator == "streaming" else handle.call
            if options != _DEFAULT_CALL:
                method = method.options(**options)  # Ray's defaults need no wrapper
            out = method.remote(data, *rest)
        if spec.generator == "streaming":
            self._open_stream(spec.return_ids, out, (cls_name, spec.actor_id))
        else:
            self._adopt_returns(spec.return_ids, out)
        return None

    def _direct_for(self, actor_id: int, handle: Any, method: str
                    ) -> tuple[DirectCall | None, DirectCall | None]:
        """How calls of ``method`` with Ray's default options go to Ray's core worker:
        to the host's Ray method of that name (a plain call's), and to its generic
        ``call`` (its spec as the argument); None where Ray's ``.remote()`` must take
        them (see :mod:`.direct`)."""
        from actorlib.backends.ray.worker import plain_method

        plain = direct_call(handle, method) if plain_method(method) else None
        found = (plain, direct_call(handle, "call"))
        self._direct.setdefault(actor_id, {})[method] = found
        return found

    def cancel(self, object_id: int, force: bool, recursive: bool) -> None:
        if self.withdraw([object_id])[0]:
            return  # it was held: it never runs
        ref = self.ray_ref(object_id)
        if isinstance(ref, ray.ObjectRef) and ray.wait([ref], timeout=0)[0]:
            # Ended: nothing to refuse or cancel. Ray would still refuse a forced cancel
            # of an actor call for as long as it has not forgotten the call, and Ray
            # 2.60's cancel of a task whose result has just come ends the whole driver
            # (a failed check in its task manager: its `get` returns before it has
            # finished the task, so `get` then `cancel` crashed within 2 to 15 rounds).
            return
        if force and _actor_task(ref):
            # Ray refuses it where the call was made (ValueError) but only logs its
            # refusal in any other process: refused here in every process, as the other
            # backends' cores refuse it.
            from actorlib.core.runtime import FORCED_ACTOR_CALL

            raise ValueError(FORCED_ACTOR_CALL)
        with self._lock:
            stream = self._ends.get(object_id)
        if stream is not None:
            stream.cancelled = True
        elif force and isinstance(ref, ray.ObjectRef) and not self._settle.still_running(ref):
            return  # it ended by itself: see ``.recancel`` on Ray's fault this avoids
        ray.cancel(ref, force=force, recursive=recursive)
        if not force and isinstance(ref, ray.ObjectRef) and not _actor_task(ref):
            self._recancel.add(ref)  # Ray may drop it: see ``.recancel``

    def exit_actor(self, actor_id: int) -> None:
        """``exit_actor()`` in the actor this worker hosts: nothing here. The host ends it
        as the call unwinds, with Ray's own exit (a sync method's ``SystemExit``, an
        async one's ``exit_actor()``), after which Ray sends the replies of the calls
        before and fails the rest: ``ray.kill`` from inside lost some (1 to 3 runs in 10
        of three calls then the kill, on plain Ray 2.60)."""
        if not self._worker:
            self.kill_actor(actor_id, True)

    def kill_actor(self, actor_id: int, no_restart: bool) -> None:
        handle = self._handle(actor_id)[0]
        if no_restart:
            ray.kill(handle, no_restart=True)
            self._killed[actor_id] = (ActorDiedError, "was killed (actorlib.kill)")
            return
        kill_and_await_restart(handle)

    def task_blocked(self, task_id: int, blocked: bool) -> None:
        """Ray learns it from the wait itself (see ``worker.blocking_wait``)."""

    # -- queries ------------------------------------------------------------------------

    def lookup_actor(self, name: str, namespace: str) -> ActorSpec | None:
        try:
            handle = ray.get_actor(name, namespace=namespace)
        except ValueError:
            return None
        try:
            spec: ActorSpec = ray.get(handle.actorlib_spec.remote())
        except AttributeError:
            raise NotSupportedError(
                f"actor {name!r} in namespace {namespace!r} is a plain Ray actor, "
                "not one actorlib created"
            ) from None
        with self._lock:
            entry = self._actors.get(spec.actor_id)
            if entry is not None:
                entry[1] += 1
            else:
                self._actors[spec.actor_id] = [handle, 1, groups_of(spec)]
        return spec

    def named_actors(self, namespace: str | None) -> list[tuple[str, str]]:
        found = ray.util.list_named_actors(all_namespaces=True)
        return [
            (a["namespace"], a["name"]) for a in found
            if (namespace is None or a["namespace"] == namespace)
            and not a["name"].startswith(INTERNAL_PREFIX)
        ]

    def nodes(self) -> list[NodeInfo]:
        return [
            NodeInfo(n["NodeID"], dict(n.get("Resources", {})),
                     n.get("NodeManagerAddress", ""), bool(n.get("Alive")),
                     dict(n.get("Labels") or {}))
            for n in ray.nodes()
        ]

    def infeasible_reason(self, request: dict[str, float], strategy: Any) -> str | None:
        if type(strategy) is PlacementGroupStrategy:  # its bundles and removal: no nodes
            return self._scheduler.infeasible_reason(request, strategy)
        now = time.monotonic()
        if now - self._nodes_at > _NODES_TTL_S:
            scheduler = Scheduler()
            for node in self.nodes():
                if node.alive:
                    scheduler.add_node(node.node_id, countable(node.resources))
            scheduler.removed_groups = self._groups.removed
            self._scheduler, self._nodes_at = scheduler, now
        if not isinstance(strategy, (str, NodeAffinitySchedulingStrategy)):
            return None
        return self._scheduler.cached_infeasible_reason(request, strategy)

    def cluster_resources(self) -> dict[str, float]:
        return dict(ray.cluster_resources())

    def available_resources(self) -> dict[str, float]:
        return dict(ray.available_resources())

    def record_metrics(self, batch: Batch, done: Callable[[], None] | None = None) -> None:
        """Recorded in Ray's own metrics (see :mod:`.metrics`), which Ray exports."""
        try:
            ray_metrics.record(batch)
        finally:
            if done is not None:
                done()

    # -- the state API: nodes from Ray's GCS; the rest not mapped onto Ray yet ------------

    def state_rows(self, kind: str) -> list[dict[str, Any]]:
        """Nodes from Ray's own tables (their ids are Ray's here, as ``nodes()`` gives
        them). Tasks, actors, objects, workers, jobs and groups carry actorlib's ids,
        which Ray's tables do not know: a clear error, never a silent empty answer."""
        if kind == "nodes":
            return self._node_rows()
        raise NotSupportedError(
            f"actorlib.util.state ({kind}) is not served by the ray backend (only nodes "
            f"are): Ray's own tools observe Ray's work; ray.util.state (with ray[default]), "
            f"`ray status` and Ray's dashboard list this cluster's tasks, actors and objects"
        )

    def _node_rows(self) -> list[dict[str, Any]]:
        from ray._private.state import available_resources_per_node

        available = available_resources_per_node()  # live nodes only
        return [{
            "node_id": node.node_id,
            "state": "ALIVE" if node.alive else "DEAD",
            "resources_total": dict(node.resources),
            "resources_available": dict(available.get(node.node_id, {})),
        } for node in self.nodes()]

# -- placement groups (see :mod:`.groups`) --------------------------------------------

    def create_placement_group(self, spec: PlacementGroupSpec) -> None:
        self._check_open()
        nodes = [NodeInfo(n.node_id, countable(n.resources), n.address, n.alive, n.labels)
                 for n in self.nodes()]
        self._groups.create(spec, nodes)

    def remove_placement_group(self, group_id: int) -> None:
        """Cancel the tasks this process sent into the group, then remove it in Ray
        (which kills its actors and fails the work waiting for it)."""
        self._check_open()
        actors = self._groups.remove(group_id,
                                     functools.partial(self._end_group_tasks, group_id))
        self._scheduler.forget_feasibility()
        for actor_id in actors:  # Ray kills them soon; a call sent now must not run
            self._killed[actor_id] = (
                ActorPlacementGroupRemoved,
                f"died: its placement group {id_hex(group_id)} was removed")

    def _end_group_tasks(self, group_id: int, tasks: list[int]) -> None:
        ended = []
        cancelled = serialize(TaskPlacementGroupRemoved(
            f"The task was cancelled: its placement group {id_hex(group_id)} was removed."),
            is_error=True)
        with self._lock:
            for id_ in tasks:
                entry = self._refs.get(id_)
                if entry is not None and not entry[2]:
                    ended.append(entry[0])
                    self._errors_as[id_] = cancelled
        cancel_pending(ended, force=True, recursive=False, settle=SETTLE_S)

    def placement_group_ready(self, group_id: int, object_id: int, value: Serialized) -> None:
        self._check_open()
        removed = serialize(TaskCancelledError(
            f"The placement group {id_hex(group_id)} was removed before it was ready."),
            is_error=True)
        ref = self._groups.ready(group_id, Box(value, {}))  # a Box: Ray pickles it
        if ref is None:
            ref = ray.put(Box(removed, {}))
        with self._lock:
            self._refs[object_id] = [ref, 1, False]
            self._errors_as[object_id] = removed

    def lookup_placement_group(self, name: str, namespace: str) -> PlacementGroupSpec | None:
        self._check_open()
        return self._groups.lookup(name, namespace)

    def placement_groups(self) -> list[dict[str, Any]]:
        self._check_open()
        return self._groups.table()

    # -- the end ------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeClosedError("actorlib was shut down")

    def shutdown(self) -> None:
        """Kill this driver's non-detached actors, release its objects, and stop Ray if
        actorlib started it (a cluster joined by address, or a Ray this process had
        already initialized, stays up)."""
        if self.closed:
            return
        self.closed = True
        with self._lock:
            running = [] if self._stop_ray or self._worker else self._running_tasks()
            created = [h for h in (ref() for ref in self._created.values()) if h is not None]
            watches = list(self._watches.items())
            self._created.clear()
            self._watches.clear()
            self._watchers.clear()
            self._hooked.clear()
            self._large.clear()
            self._refs.clear()
            self._actors.clear()
            self._unclaimed.clear()
            self._errors_as.clear()
            self._ends.clear()
            self._direct.clear()
            self._limits.clear()
            for stream in self._slots.values():
                stream.release()
            self._slots.clear()
        self._recancel.close()
        if waiting.blocking_wait == self.wait_blocking:
            waiting.blocking_wait = None
        if waiting.blocking_fetch == self.fetch_blocking:
            waiting.blocking_fetch = None
        closed = serialize(RuntimeClosedError("actorlib was shut down"), is_error=True)
        for callback, ids in watches:
            for id_ in ids:
                try:
                    callback(id_, closed)
                except Exception:  # one waiter's failure must not hide the others
                    pass
        if self._worker:
            return
        self._groups.close()
        if self._stop_ray:
            ray.shutdown()
            return
        _end_tasks(running)
        for handle in created:
            try:
                ray.kill(handle)
            except Exception:  # already gone
                pass

    def _running_tasks(self) -> list[Any]:
        """The Ray refs and generators of this driver's tasks that may still run (not
        actor calls: this driver's actors are killed, others' calls are theirs)."""
        refs = {entry[0] for entry in self._refs.values()
                if not entry[2] and isinstance(entry[0], ray.ObjectRef)
                and not _actor_task(entry[0])}
        streams = {id(s): s.generator for s in (*self._slots.values(), *self._ends.values())
                   if s.generator is not None}
        return [*refs, *streams.values()]

    def _ray_task(self, spec: TaskSpec) -> RayTask:
        """Ray's remote function for ``spec``'s tasks, its options applied."""
        from actorlib.backends.ray import worker

        options = task_options(spec, self._groups.ray_group, self._packages.runtime_env)
        streaming = spec.generator == "streaming"
        if streaming:
            options["num_returns"] = "streaming"
            if spec.backpressure > 0:
                options["_generator_backpressure_num_objects"] = spec.backpressure
        wrapper = worker.remote_task(spec.max_calls, streaming).options(**options)
        # Plain tasks from a driver go to Ray's core worker directly (see .direct).
        return RayTask(wrapper, direct=not (self._worker or streaming))

    def _plain_task(self, spec: TaskSpec, template: bytes) -> RayTask | None:
        """The plain tasks' submit of ``spec``'s template (see :func:`.worker.plain_task`);
        None on Ray Client (``ray://``), whose refs this was not tried with."""
        from actorlib.backends.ray import worker

        if getattr(ray._private.worker.global_worker, "core_worker", None) is None:
            return None
        options = task_options(spec, self._groups.ray_group, self._packages.runtime_env)
        shown = (spec.name or spec.function.name).rpartition(".")[2]
        function = worker.plain_task(template, self.ids.prefix, shown)
        # From a driver, its tasks go to Ray's core worker directly (see .direct).
        return RayTask(function.options(**options), direct=not self._worker)

    def _named_task(self, spec: TaskSpec, template: bytes) -> NamedSubmit | None:
        """A submit by name for ``spec``'s tasks (see :func:`.wire.named_submit`)."""
        from actorlib.backends.ray import worker

        options = task_options(spec, self._groups.ray_group, self._packages.runtime_env)
        full = named_submit(worker.bound_task(template, spec.max_calls).options(**options))
        if spec.max_calls:
            # Ray counts ``max_calls`` per Ray function: one for calls with arguments and
            # one for calls without would let a worker run up to twice as many.
            return full
        bare = named_submit(
            worker.bound_task(template, spec.max_calls, takes_args=False).options(**options))
        if bare is None or full is None:
            return None
        return lambda args, name: (full if args else bare)(args, name)

    def debug_state(self) -> dict[str, Any]:
        with self._lock:
            actors = [a for a in self._actors if a not in self._killed]
            return {"objects": list(self._refs), "actors": actors, "problems": []}



