"""The process backend: tasks and actors in worker processes on this machine.

True parallelism for CPU-bound Python. Workers are fresh interpreters started with
``subprocess`` (never a fork of a driver that has threads and a running loop), connected
by a Unix socket speaking :mod:`actorlib.backends.transport.wire`. Task workers are pooled and
reused; each actor gets a process of its own. Large buffers go through shared memory
(:mod:`actorlib.backends.process.shm_store`) and are read zero-copy everywhere.

A worker's death is seen at once through its pidfd (elsewhere, a waiter thread; see
:mod:`actorlib.backends.process.portable`): its tasks are reported crashed (the
core retries them), its actor dead (the core restarts it), and the references it held
are released.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
import sys
import threading
import uuid
from collections.abc import Callable
from typing import Any

from actorlib.backends import stacks
from actorlib.backends.base import Backend, BackendConfig, CoreEvents, ObjectStore
from actorlib.backends.node_resources import local_node_resources
from actorlib.backends.output import OutputWriter
from actorlib.backends.process import urgent
from actorlib.backends.process.code_envs import CodeEnvDirs
from actorlib.backends.process.launch import Launched
from actorlib.backends.process.worker_process import (
    EXITED,
    WorkerProcess,
    describe_exit,
    with_visible_gpus,
    worker_timeout,
)
from actorlib.backends.runner.user_code import pack_error
from actorlib.backends.silence import RECHECK_S, Looks
from actorlib.backends.switches import env_switch
from actorlib.backends.transport.framing import Undecodable
from actorlib.backends.transport.messages import (
    CLIENT_CALLS,
    ActorInitFailed,
    ActorStarted,
    CallFinished,
    CancelRun,
    ClientCall,
    EnvFailed,
    Exit,
    FromWorker,
    Init,
    ItemProduced,
    ItemsConsumed,
    Output,
    Recall,
    RunCall,
    RunTask,
    StartActor,
    StopActor,
    TaskBlocked,
    TaskFinished,
    TaskRecalled,
)
from actorlib.core.ids import DRIVER_PREFIX
from actorlib.core.records import ActorStart, CallRun, NodeInfo, Outcome, TaskRun
from actorlib.core.serialization import (
    Serialized,
    map_readonly,
    serialize,
    set_buffer_mapper,
)
from actorlib.core.specs import CodeEnv
from actorlib.exceptions import ActorDiedError, RuntimeEnvSetupError, WorkerCrashedError

# The per-task records are made with tuple.__new__: a NamedTuple's own __new__ is a
# Python function, on a path taken once per task and per call.
_new = tuple.__new__
DEAD_WORKERS_KEPT = 100  # how many ended workers ``list_workers`` still shows


def share_blocked_workers() -> bool:
    """``ACTORLIB_SHARE_BLOCKED_WORKERS``: whether a task may run in the process of tasks
    that all wait in ``get`` (see ``ProcessBackend._take_worker``)."""
    return env_switch("ACTORLIB_SHARE_BLOCKED_WORKERS")


class ProcessBackend(Backend):
    name = "process"
    takes_back = True  # a queued task's claim is taken in shared memory
    pipelines = True
    # A worker holds up to eight plain tasks: measured against two (one running, one
    # queued), a batch of trivial tasks costs the driver and the workers a quarter to a
    # third less CPU per task (fewer reads, writes and loop turns per task); four saved
    # about half of that, sixteen no more (docs/performance.md).
    pipeline_depth = 8
    runtime_env_files = frozenset({"working_dir", "py_modules"})

    def __init__(self) -> None:
        self._workers: list[WorkerProcess] = []
        self._gone: collections.deque[dict[str, Any]] = collections.deque(
            maxlen=DEAD_WORKERS_KEPT
        )
        # Idle workers (``WorkerProcess.idle``), each once: one is added as its last task
        # leaves, and taken off when it gets work (``_take_worker``) or dies. No other way
        # gives it work: a task queued behind another goes to the worker running that
        # one, and a shared worker runs tasks already.
        self._idle: list[WorkerProcess] = []
        self._actors: dict[int, WorkerProcess] = {}
        self._task_worker: dict[int, WorkerProcess] = {}
        self._call_worker: dict[int, WorkerProcess] = {}
        self._prefixes = itertools.count(DRIVER_PREFIX + 1)
        self._store_config: dict[str, Any] | None = None
        self._worker_extra: dict[str, Any] = {}
        self.store_override: Any = None  # a cluster node brings the store it serves
        self._worker_timeout = 0.0
        self._looks: Looks | None = None  # ``_check_alive``'s (with a worker timeout)
        self._inline_watch_s = urgent.WATCH_S
        self._stopping = False
        self._trimming: threading.Thread | None = None  # giving the arena's free pages back
        self._trim_every = 5.0
        self._death: asyncio.Future[None] | None = None  # set by a worker's death
        self._code_envs = CodeEnvDirs()
        #: Where workers' output goes on a cluster node (to the head); None: the driver's
        #: own streams, through ``_writer``.
        self.forward_output: Callable[[Output], None] | None = None
        self._output_config: dict[str, Any] | None = None
        #: What a worker sends, but for ``Alive`` and ``Output`` (seen on arrival).
        self._handlers: dict[type, Callable[[WorkerProcess, Any], None]] = {
            TaskFinished: self._task_finished, TaskRecalled: self._task_recalled,
            CallFinished: self._call_finished, ItemProduced: self._item_produced,
            ActorStarted: self._actor_started,
            ActorInitFailed: self._actor_init_failed, EnvFailed: self._env_failed,
            **dict.fromkeys(CLIENT_CALLS, self._client_call),
            TaskBlocked: self._task_blocked, Undecodable: self._undecodable,
        }

    # == lifecycle ==========================================================================

    async def start(self, events: CoreEvents, config: BackendConfig) -> list[NodeInfo]:
        self._inline_watch_s = urgent.watch_period()  # a bad value fails before anything starts
        self.events = events
        self.client = events.client
        self.loop = asyncio.get_running_loop()
        self.store = self._make_store(config)
        resources = local_node_resources(config)
        # A cluster node names itself and gets a range of id prefixes from its head.
        self.node_id = config.options.get("node_id") or uuid.uuid4().hex[:16]
        self._prefixes = itertools.count(config.options.get("prefix_base", DRIVER_PREFIX + 1))
        self._worker_extra = config.options.get("worker_init", {})
        self._worker_timeout = worker_timeout(config)
        self._share_blocked = share_blocked_workers()
        self._output_config = config.options.get("output")
        self._stack_dir = stacks.directory(create=True)  # `actorlib stack` reads them there
        stacks.sweep(self._stack_dir)
        self._log_dir = config.options.get("log_dir")  # per-worker log files, if any
        self.worker_log_dir = self._log_dir
        self._writer = OutputWriter(lambda tokens: self.events.post(self._released, tokens))
        if self._worker_timeout:
            self._looks = Looks(self._worker_timeout / 4, self.loop.time())
            self.loop.call_later(self._worker_timeout / 4, self._check_alive)
        trim_after = getattr(self.store, "trim_after", -1.0)
        if trim_after >= 0:
            self._trim_every = min(5.0, max(0.05, trim_after / 2))
            self.loop.call_later(self._trim_every, self._trim_check)
        self.nodes = [NodeInfo(self.node_id, resources, labels=dict(config.labels))]
        # One worker now, the rest when work first needs them: each is a fresh
        # interpreter, and booting num_cpus of them at once delays the first result
        # (they share the same cores) and holds memory a small job never uses.
        self._idle.append(self._spawn(launched=config.options.get("prestarted")))
        return self.nodes

    def _make_store(self, config: BackendConfig) -> ObjectStore:
        try:
            from actorlib.backends.process.shm_store import SharedMemoryStore
        except ImportError:
            from actorlib.backends.base import HeapStore

            return HeapStore()
        store = self.store_override or SharedMemoryStore.for_driver(
            config.object_store_memory, config.options.get("spill_root"))
        self._store_config = store.config()
        if self.store_override is not None:
            # A node's objects are served to other nodes by path: an arena extent has none.
            self._store_config["arena"] = False
        set_buffer_mapper(store.map_location)  # follow objects spilled while in flight
        return store

    def _spawn(
        self, code_env: CodeEnv | None = None, launched: Launched | None = None
    ) -> WorkerProcess:
        setup = self._code_envs.worker_setup(code_env)
        worker = WorkerProcess(self, next(self._prefixes), launched)
        worker.env_key = code_env.key if code_env else ""
        worker.env_stamp = self._code_envs.stamp(code_env)
        self._workers.append(worker)
        if code_env is not None:  # once per worker: what its nested work inherits
            setup["code_env"] = code_env
        worker.send(Init({
            "prefix": worker.prefix,
            "namespace": self.client.namespace,
            "node_id": self.node_id,
            "nodes": self.nodes,
            "sys_path": list(sys.path),
            "store": self._store_config,
            "alive_every_s": self._worker_timeout / 4 if self._worker_timeout else None,
            "inline_watch_s": self._inline_watch_s,
            "output": self._output_config,
            "stack_dir": self._stack_dir,
            "log_dir": self._log_dir,
            **self._worker_extra,
            **setup,
        }))
        return worker

    def own_requests(self, worker: WorkerProcess) -> dict[str, Callable[..., None]]:
        """Requests of a worker answered here, not by the core: arena extents for its
        large results and puts (see ``SharedMemoryStore.grant``)."""
        if not (self._store_config or {}).get("arena"):
            return {}
        return {
            "arena_extents": lambda args, answered: self._grant(worker, args, answered),
            "arena_return": lambda args, answered: self._return_grants(worker, args, answered),
        }

    def _grant(self, worker: WorkerProcess, args: tuple[Any, ...],
               answered: Callable[[bool, Any], None]) -> None:
        """Extents for a worker's buffers: at once when they fit in the segments made, else
        on a thread (spilling or making a segment must not stall the core loop)."""
        sizes = args[0] if len(args) == 1 else None
        if not isinstance(sizes, list) or not all(
            type(size) is int and size >= 0 for size in sizes
        ):
            answered(False, ValueError(f"arena_extents takes a list of sizes, got {args!r}"))
            return
        store: Any = self.store
        grants = store.grant(worker.prefix, sizes, block=False)
        if grants is not None:
            answered(True, grants)
            return

        def grant_blocking() -> None:
            try:
                result: tuple[bool, Any] = (True, store.grant(worker.prefix, sizes, block=True))
            except Exception as exc:
                result = (False, exc)
            self.events.post(answered, *result)

        threading.Thread(target=grant_blocking, name="actorlib-arena-grant", daemon=True).start()

    def _return_grants(self, worker: WorkerProcess, args: tuple[Any, ...],
                       answered: Callable[[bool, Any], None]) -> None:
        paths = args[0] if len(args) == 1 else None
        if not isinstance(paths, list) or not all(type(path) is str for path in paths):
            answered(False, ValueError(f"arena_return takes a list of paths, got {args!r}"))
            return
        store: Any = self.store
        store.return_grants(worker.prefix, paths)
        answered(True, None)

    def _check_alive(self) -> None:
        """Kill workers silent for longer than the timeout: frozen (SIGSTOP), deadlocked,
        or stuck in a C call that holds the GIL. Their work is then retried or restarted
        like that of any dead worker."""
        if self._stopping:
            return
        timeout = self._worker_timeout
        now = self.loop.time()
        # Only silence this process listened to counts (``backends.silence``).
        assert self._looks is not None
        if not self._looks.late(now):
            silent = [w for w in self._workers if now - w.last_alive > timeout]
            if silent:
                self.loop.call_later(RECHECK_S, self._kill_silent, silent)
        self.loop.call_later(timeout / 4, self._check_alive)

    def _kill_silent(self, workers: list[WorkerProcess]) -> None:
        timeout = self._worker_timeout
        now = self.loop.time()
        for worker in workers:
            if self._stopping:
                return
            if not worker.dead and not worker.kill_reason and now - worker.last_alive > timeout:
                worker.kill_reason = (
                    f"it did not answer for {timeout:g} s: frozen (SIGSTOP), deadlocked, or "
                    "in a C call holding the GIL; see worker_timeout_s"
                )
                worker.kill()

    def _trim_check(self) -> None:
        """Give the arena's free pages back after a while without large objects, on a
        thread (it takes the arena's lock for as long as the kernel frees the pages)."""
        if self._stopping:
            return
        store: Any = self.store
        if (self._trimming is None or not self._trimming.is_alive()) and store.trim_due():
            self._trimming = threading.Thread(target=store.trim, name="actorlib-arena-trim",
                                              daemon=True)
            self._trimming.start()
        self.loop.call_later(self._trim_every, self._trim_check)

    async def stop(self) -> None:
        self._stopping = True
        for worker in self._workers:
            worker.expected_exit = True
            worker.send_urgent(Exit())
        await self._all_dead(3.0)
        for worker in self._workers:
            if not worker.dead:
                worker.kill()
        await self._all_dead(None)
        for worker in self._workers:
            worker.conn.close()
            worker.claims.close()
        if self._trimming is not None:
            self._trimming.join()
        self.store.cleanup()
        self._code_envs.cleanup()
        set_buffer_mapper(map_readonly)
        self._writer.close()

    def workers(self) -> list[dict[str, Any]]:
        return [w.info(self.node_id) for w in self._workers] + list(self._gone)

    async def _all_dead(self, timeout: float | None) -> None:
        """Until every worker is dead (or ``timeout`` s have passed), woken by each death
        (``_on_exit``) rather than polling: shutdown() returns as soon as the last goes."""
        deadline = None if timeout is None else self.loop.time() + timeout
        while any(not w.dead for w in self._workers):
            left = None if deadline is None else deadline - self.loop.time()
            if left is not None and left <= 0:
                return
            self._death = self.loop.create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._death), left)
            except asyncio.TimeoutError:
                return

    # == work ===============================================================================

    def _take_worker(self, code_env: CodeEnv | None, shares: bool = False) -> WorkerProcess:
        """An idle worker of this runtime_env (working_dir / py_modules), else (for a task
        that ``shares`` a process) one whose every task waits in ``get``, else a new one.

        A worker serves one environment for life (its cwd and imports are set at start),
        so a new one replaces an idle worker of another environment: the pool stays as
        large as the work needs, whatever the number of environments.

        A task blocked in ``get`` lends its CPU, and a nested fan-out places the children
        on it. With ``ACTORLIB_SHARE_BLOCKED_WORKERS=1`` (:func:`share_blocked_workers`), on
        a worker whose tasks all wait, each child runs on another thread of that process
        instead of a new process (a start costs ~100 ms; a fan-out of a few hundred
        nested tasks took 15-45 s of starts). Off by default: the tasks then share the
        process's state (a lock held across ``get`` deadlocks), and a crash or a forced
        cancel of one ends them all.
        """
        key = code_env.key if code_env else ""
        # Its folders as they are now: a worker started in one removed since is retired
        stamp = self._code_envs.stamp(code_env) if key else ()
        idle = self._idle
        for i in range(len(idle) - 1, -1, -1):  # the newest first
            worker = idle[i]
            if worker.env_key == key:
                del idle[i]
                if worker.env_stamp == stamp:
                    return worker
                worker.expected_exit = True
                worker.send(Exit())
        if shares:
            lendable = [w for w in self._workers if w.lendable(key) and w.env_stamp == stamp]
            if lendable:  # the least shared: its tasks, back from get, share one GIL
                return min(lendable, key=lambda w: len(w.running))
        if self._idle:
            other = self._idle.pop(0)
            other.expected_exit = True
            other.send(Exit())
        return self._spawn(code_env)

    def run_task(self, run: TaskRun) -> None:
        spec = run.spec
        # Queued behind a task on its worker; if that one has already ended (its outcome
        # is on the way to the core), the task just starts on a free worker.
        worker = self._task_worker.get(run.follows) if run.follows else None
        key = spec.code_env.key if spec.code_env else ""
        # env_vars, GPUs: the process's environment is the task's own.
        shares = self._share_blocked and not (spec.env_vars or run.gpu_ids)
        if (worker is None or worker.dead or worker.retired  # retired: max_calls reached
                or worker.env_key != key):
            try:
                worker = self._take_worker(spec.code_env, shares)
            except RuntimeEnvSetupError as exc:  # its working_dir / py_modules: the task's
                error = serialize(exc, is_error=True)
                self.events.task_finished(Outcome(spec.task_id, spec.attempt, error=error))
                return
        if run.gpu_ids:
            env = with_visible_gpus(spec.env_vars, run.gpu_ids)
            run = dataclasses.replace(run, spec=dataclasses.replace(spec, env_vars=env))
        if run.follows and not worker.claims.offer(spec.task_id):
            run = dataclasses.replace(run, follows=0)  # no slot free: it just starts there
        worker.running[spec.task_id] = spec.attempt
        if self._share_blocked and not shares:
            worker.private.add(spec.task_id)
        self._task_worker[spec.task_id] = worker
        if spec.max_calls:
            # Counted per function; an Executor's tasks (one concurrency key, whatever
            # callable each runs) together, as its ``max_tasks_per_child`` counts them.
            counted: int | str = (
                spec.function.id if spec.concurrency is None else spec.concurrency[0]
            )
            count = worker.calls[counted] = worker.calls.get(counted, 0) + 1
            if count >= spec.max_calls:
                worker.retired = True
        if spec.code_env is not None:  # the worker was started in it: the bytes stay here
            run = dataclasses.replace(run, spec=dataclasses.replace(run.spec, code_env=None))
        worker.send(_new(RunTask, (run,)))

    def start_actor(self, start: ActorStart) -> None:
        spec = start.spec
        try:
            worker = self._take_worker(spec.code_env)
        except RuntimeEnvSetupError as exc:  # as in run_task: the actor's constructor fails
            error = serialize(exc, is_error=True)
            self.events.actor_init_failed(spec.actor_id, start.incarnation, error)
            return
        worker.actor = (spec.actor_id, start.incarnation)
        self._actors[spec.actor_id] = worker
        if start.gpu_ids:
            env = with_visible_gpus(spec.env_vars, start.gpu_ids)
            start = dataclasses.replace(start, spec=dataclasses.replace(spec, env_vars=env))
        if spec.code_env is not None:  # as in run_task
            start = dataclasses.replace(start, spec=dataclasses.replace(start.spec, code_env=None))
        worker.send(StartActor(start))

    def run_call(self, run: CallRun) -> None:
        worker = self._actors.get(run.spec.actor_id)
        if worker is None or worker.actor != (run.spec.actor_id, run.incarnation):
            died = ActorDiedError("The actor is not running.")
            error, _ = pack_error(died, run.spec.method, False)
            self.events.call_finished(Outcome(run.spec.call_id, run.spec.attempt, error=error))
            return
        self._call_worker[run.spec.call_id] = worker
        # ``worker.send``, without its frame: a call carries no code for the worker to keep
        worker.conn.send(_new(RunCall, (run,)))

    def stop_actor(self, actor_id: int, *, force: bool) -> None:
        worker = self._actors.pop(actor_id, None)
        if worker is None:
            return
        worker.expected_exit = True
        if force:
            worker.kill()
        else:
            worker.send(StopActor(actor_id, False))

    def recall(self, task_id: int) -> None:
        worker = self._task_worker.get(task_id)
        if worker is not None and not self._take_back(worker, task_id):
            worker.send_urgent(Recall(task_id))

    def take_back(self, task_id: int) -> bool:
        worker = self._task_worker.get(task_id)
        if worker is None or not worker.claims.take(task_id, wait=False):
            return False  # started, or the worker is claiming right now
        self._task_left(worker, task_id)
        return True

    def _take_back(self, worker: WorkerProcess, task_id: int) -> bool:
        """Take a queued-behind task back without the worker's help (it may be frozen, or
        in a C call holding its GIL). False if the worker must be asked: it holds the claim
        lock right now. True also when the task has started there: nothing to take back."""
        taken = worker.claims.take(task_id, wait=False)
        if taken is None:
            return False
        if taken:
            self._recalled(worker, task_id)
        return True

    def _recalled(self, worker: WorkerProcess, task_id: int) -> None:
        attempt = worker.running.get(task_id, 0)
        self._task_left(worker, task_id)
        self.events.task_recalled(task_id, attempt)

    def cancel(self, id: int, *, force: bool) -> None:
        worker = self._task_worker.get(id)
        if worker is not None:
            taken = worker.claims.take(id, wait=False)
            if taken:
                # Queued behind another task, never started: taken back here, the core
                # ends it as cancelled. Nothing to ask the worker, which may be frozen.
                # (Even if forced: killing the worker would kill the task ahead.)
                self._recalled(worker, id)
                return
            if force and (taken is False or next(iter(worker.running), None) == id):
                worker.kill()  # it runs: never queued, or claimed by the worker
            else:
                # Not forced; or the worker holds its claims' lock this instant, with
                # tasks ahead of this one: it takes the task back if still queued, else
                # interrupts it (and, forced, abandons its thread).
                worker.send_urgent(CancelRun(id, force))
            return
        worker = self._call_worker.get(id)
        if worker is not None:  # the call may run as the reading thread's inline work
            worker.send_urgent(CancelRun(id, False))

    def items_consumed(self, id: int, consumed: int) -> None:
        worker = self._task_worker.get(id) or self._call_worker.get(id)
        if worker is not None:
            worker.send(ItemsConsumed(id, consumed))

    # == messages from workers (on the core loop) ===========================================

    def _output(self, worker: WorkerProcess, message: FromWorker) -> None:
        """A worker's output, or a message it sent after output not yet written.

        Writing to the driver's stdout may block (a full pipe, a paused terminal), so it
        happens on the writer's thread, never here. What the worker sent after its
        output waits until that output is written (``held``), so a task's lines appear
        before its result is delivered, and inside the driver's ``redirect_stdout``.
        """
        if self.forward_output is not None:  # a cluster node: on to the head, in order
            assert type(message) is Output  # nothing is held back on a node
            self.forward_output(message)
            return
        worker.held += 1
        if type(message) is Output:
            self._writer.put(message.stream, message.text, (worker, None))
        else:
            self._writer.put(None, "", (worker, message))

    def _released(self, tokens: list[tuple[WorkerProcess, FromWorker | None]]) -> None:
        for worker, message in tokens:
            worker.held -= 1
            if message is EXITED:
                self._on_exit(worker)
            elif message is not None:
                self._handle(worker, message)

    def _adopt(self, value: Serialized | None) -> None:
        if value is not None and value.locations:
            self.store.adopt(value)

    def _task_left(self, worker: WorkerProcess, task_id: int) -> None:
        worker.running.pop(task_id, None)
        if worker.blocked or worker.private:
            worker.blocked.discard(task_id)
            worker.private.discard(task_id)
        self._task_worker.pop(task_id, None)
        if worker.idle:
            self._idle.append(worker)
        elif worker.retired and not worker.running and not worker.expected_exit:
            worker.expected_exit = True  # max_calls reached: it exits, a fresh one replaces it
            worker.send(Exit())

    def _handle(self, worker: WorkerProcess, message: FromWorker) -> None:
        self._handlers[type(message)](worker, message)

    def _task_finished(self, worker: WorkerProcess, message: TaskFinished) -> None:
        outcome = message.outcome
        for value in outcome.values or ():
            if value.locations:  # ``_adopt``, without its frame
                self.store.adopt(value)
        self._task_left(worker, outcome.id)
        self.events.task_finished(outcome)

    def _task_recalled(self, worker: WorkerProcess, message: TaskRecalled) -> None:
        self._task_left(worker, message.task_id)
        self.events.task_recalled(message.task_id, message.attempt)

    def _call_finished(self, worker: WorkerProcess, message: CallFinished) -> None:
        outcome = message.outcome
        for value in outcome.values or ():
            if value.locations:  # ``_adopt``, without its frame
                self.store.adopt(value)
        self._call_worker.pop(outcome.id, None)
        self.events.call_finished(outcome)

    def _item_produced(self, worker: WorkerProcess, message: ItemProduced) -> None:
        self._adopt(message.item.value)
        self.events.item_produced(message.item)

    def _actor_started(self, worker: WorkerProcess, message: ActorStarted) -> None:
        self.events.actor_started(message.actor_id, message.incarnation)

    def _actor_init_failed(self, worker: WorkerProcess, message: ActorInitFailed) -> None:
        self.events.actor_init_failed(message.actor_id, message.incarnation, message.error)

    def _env_failed(self, worker: WorkerProcess, message: EnvFailed) -> None:
        """The worker could not enter its runtime_env: retired before its failed outcome
        is read, so no other work is sent to it, and told to exit once that is (a worker
        started for that environment's next work has the package extracted again)."""
        worker.retired = True

    def _client_call(self, worker: WorkerProcess, message: ClientCall) -> None:
        worker.link.handle(message)

    def _undecodable(self, worker: WorkerProcess, message: Undecodable) -> None:
        """A worker's message that did not decode here (the decoder logged it): its
        request or submission is answered with the error, so the worker does not wait
        forever for it."""
        where = "the cluster node" if self.forward_output is not None else "the driver"
        worker.link.undecodable(message, where)

    def _task_blocked(self, worker: WorkerProcess, message: TaskBlocked) -> None:
        """A task of ``worker`` waits in ``get`` or stopped waiting: noted here before the
        core lends its CPU, so the task the lent CPU places may share its process."""
        if self._share_blocked and message.task_id in worker.running:
            if message.blocked:
                worker.blocked.add(message.task_id)
            else:
                worker.blocked.discard(message.task_id)
        worker.link.handle(message)

    # == deaths =============================================================================

    def _on_exit(self, worker: WorkerProcess) -> None:
        """After the worker's last message: fail its work, release what it held."""
        code = worker.exit_code
        worker.dead = True
        if self._death is not None and not self._death.done():
            self._death.set_result(None)  # wakes stop() (_all_dead)
        worker.conn.close()
        worker.claims.close()
        why = f"worker process {worker.pid} died with {describe_exit(code)}"
        if worker.kill_reason:
            why += f" ({worker.kill_reason})"
        worker.exit_detail = why
        stacks.forget(worker.pid, self._stack_dir)
        self._gone.append(worker.info(self.node_id))
        for task_id, attempt in list(worker.running.items()):
            self._task_worker.pop(task_id, None)
            self.events.task_crashed(task_id, attempt, WorkerCrashedError(why))
        worker.running.clear()
        worker.blocked.clear()
        worker.private.clear()
        if worker.actor is not None:
            actor_id, incarnation = worker.actor
            if self._actors.get(actor_id) is worker:
                del self._actors[actor_id]
            for call_id, w in list(self._call_worker.items()):
                if w is worker:
                    del self._call_worker[call_id]
            if not worker.expected_exit:
                self.events.actor_died(actor_id, incarnation, WorkerCrashedError(why))
        worker.link.release()
        holder_gone = getattr(self.store, "holder_gone", None)
        if holder_gone is not None:  # extents it was granted and never sent back
            holder_gone(worker.prefix)
        if worker in self._idle:
            self._idle.remove(worker)
        if worker in self._workers:
            self._workers.remove(worker)
