"""The backend interface: where code runs and where bytes live.

The core decides *what* runs *when* (dependencies, resources, ordering, retries); a backend
decides *where* and *how*: it reports nodes and their resources, runs a task on a worker,
hosts an actor and runs its calls in the order delivered, keeps object bytes, and tells
the core when something finished or died.

Threading contract: the core calls every ``Backend`` method on its own event loop thread,
and those methods must not block. A backend reports back through :class:`CoreEvents`,
whose methods may be called from any thread (they hand the event to the core's loop).
"""

from __future__ import annotations

import concurrent.futures
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from actorlib.core.context import Client
from actorlib.core.records import ActorStart, CallRun, NodeInfo, Outcome, StreamItem, TaskRun
from actorlib.core.serialization import Serialized
from actorlib.core.state import WorkerQuery


@dataclass(slots=True)
class BackendConfig:
    """What ``init()`` asks of a backend: the node's resources, store size, options."""

    num_cpus: float | None = None
    num_gpus: float | None = None
    resources: dict[str, float] = field(default_factory=dict)
    object_store_memory: int | None = None
    labels: dict[str, str] = field(default_factory=dict)  # the node's (this machine's)
    address: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


class CoreEvents(Protocol):
    """What a backend tells the core. Thread-safe: call from any thread.

    ``client`` is the core's own client interface: backends whose workers live in other
    processes forward those workers' API calls (nested tasks, refs, ``get``) to it.
    """

    @property
    def client(self) -> Client: ...

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the core loop after everything handed over so far."""

    def task_finished(self, outcome: Outcome) -> None: ...

    def task_recalled(self, task_id: int, attempt: int) -> None:
        """A queued-behind task (``TaskRun.follows``) was handed back before it started."""

    def task_crashed(self, task_id: int, attempt: int, error: BaseException) -> None:
        """The worker running the task died; the core retries or fails it."""

    def item_produced(self, item: StreamItem) -> None:
        """A streaming task or call yielded an item (its value already in the store)."""

    def actor_started(self, actor_id: int, incarnation: int) -> None: ...

    def actor_init_failed(self, actor_id: int, incarnation: int, error: Serialized) -> None: ...

    def call_finished(self, outcome: Outcome) -> None: ...

    def actor_died(self, actor_id: int, incarnation: int, error: BaseException) -> None: ...

    def node_added(
        self, node_id: str, resources: dict[str, float], labels: dict[str, str] | None = None
    ) -> None:
        """A node joined after start (clusters)."""

    def node_removed(self, node_id: str) -> None:
        """A node left; report its tasks crashed and its actors dead first."""

    def objects_lost(self, lost: Callable[[Serialized], bool], why: str) -> None:
        """Values for which ``lost(value)`` holds lost their bytes (their node died).

        The core re-runs the tasks that made them where it can, else fails them with
        ``ObjectLostError``.
        """

    def job_started(self, job: int, pid: int, entrypoint: str, host: str) -> None:
        """A driver connected (clusters): its ids carry prefix ``job``; process ``pid``
        on ``host`` running ``entrypoint`` (what ``list_jobs`` shows)."""

    def job_ended(self, job: int) -> None:
        """The driver whose ids carry prefix ``job`` disconnected (clusters).

        The core cancels its tasks (running ones forcibly, so their CPUs come free) and
        kills its actors, except detached ones; nested work counts as its caller's job.
        """

    @property
    def view(self) -> CoreView | None:
        """The core itself, to read from, when it runs in this process (a cluster's head);
        None where events travel to a core elsewhere (a worker, a node)."""


class CoreView(Protocol):
    """What a backend may read from a core in its own process, on the core's loop only
    (a cluster's head routes output and answers ``actorlib status`` from there); and,
    for a backend that runs everything one step at a time (``sim``), the core's loop
    lent to its threads (``idle``, ``lend``, ``drain``, ``reclaim``, ``queued``, from any
    thread)."""

    def job_of_work(self, id_: int) -> int | None:
        """The job of a live task or actor; None if the core does not know it."""

    def node_available(self, node_id: str) -> dict[str, float] | None:
        """What the scheduler has free on the node now; None for an unknown node."""

    def debug_state(self) -> dict[str, Any]:
        """The core's counts: live ``objects`` and ``actors``, ``tasks``, ``queued``."""

    def idle(self) -> bool:
        """Whether the core has handled everything handed over so far, its scheduling
        included (a backend may skip a round trip through the loop when it has)."""
        ...

    def lend(self, borrower: Callable[[], bool]) -> bool:
        """Let the threads for which ``borrower()`` holds run the core's work themselves,
        one at a time, until ``reclaim``; only when idle (else False): no thread switch
        to the core's loop and back for each step."""
        ...

    def drain(self) -> None:
        """While lent: run what was posted, and the scheduling after it, on this thread."""

    def reclaim(self) -> None:
        """End a ``lend``: the core's loop runs its work again."""

    def queued(self) -> bool:
        """Whether work handed over waits to run (while lent: none of the borrowers has
        drained it yet), reference counts aside."""
        ...


class ObjectStore(ABC):
    """Owns the memory of large object buffers. Thread-safe."""

    @abstractmethod
    def seal(self, obj: Serialized) -> Serialized:
        """Copy ``obj``'s out-of-band buffers into store-owned, read-only memory.

        Called in the producer's thread before ``.remote()``/``put`` returns, so the
        producer may mutate its own buffers afterwards.
        """

    def free(self, obj: Serialized) -> None:
        """The object's last reference died: its memory may be reused.

        Only a value with ``locations`` holds memory of a store's own: the core may skip
        this call for any other (it does, as a ref dies: most values are inline).
        """

    # Abilities of stores that keep bytes in files (shared memory, spill files). The
    # defaults fit stores that keep nothing outside the heap.

    def adopt(self, obj: Serialized) -> None:
        """Take charge of an object a worker wrote into this store's files."""

    def free_paths(self, paths: list[str]) -> None:
        """Free objects named by their files (the cluster's head names them that way)."""

    def in_use(self) -> int:
        """Bytes of objects held in the store's own memory (0 if it keeps none)."""
        return 0

    def is_spilled(self, path: str) -> bool:
        """Whether the buffer file at ``path`` was moved to disk (the state API asks)."""
        return False

    def cleanup(self) -> None:
        """Remove everything this store ever wrote (its owner, at shutdown)."""


class HeapStore(ObjectStore):
    """Buffers copied into immutable ``bytes`` on the Python heap (one process)."""

    def seal(self, obj: Serialized) -> Serialized:
        if obj.buffers:
            obj.buffers = [bytes(b) for b in obj.buffers]
        return obj


class Backend(ABC):
    """A place to run tasks and actors. One instance per runtime."""

    name: str = "?"
    store: ObjectStore = HeapStore()
    #: Whether objects live on different nodes (so placing work near its data pays).
    has_locality: bool = False
    #: Whether ``run_task`` takes ``TaskRun.follows``: a task queued on the worker behind
    #: a running one, so the worker starts it without waiting a round trip to the core.
    #: Such a backend starts the queued task when the one ahead ends (and before it
    #: reports that end), hands it back through ``task_recalled`` on ``recall`` if it has
    #: not started, and reports it crashed (not started) if the worker dies.
    pipelines: bool = False
    #: How many tasks a pipelining worker holds at once: the running one and those queued
    #: behind it. More than two lets a worker run several short tasks while the core is
    #: busy, and the core read their outcomes (and write the next tasks) in batches.
    pipeline_depth: int = 2
    #: Whether ``take_back`` can hand a queued-behind task back at once (its worker is
    #: within reach of this process). Without it the core queues no task under a
    #: concurrency limit behind another: an Executor's ``cancel()`` of a PENDING future
    #: withdraws the task, which must be possible while no worker has started it.
    takes_back: bool = False
    #: Whether a driver running its core serves the state API on a unix socket unless
    #: ``$ACTORLIB_STATE_SOCKET`` says otherwise (``backends.state_socket``).
    serves_state: bool = True
    #: The runtime_env file fields it applies: ``working_dir`` / ``py_modules`` need a
    #: worker process of their own (cwd and imports are process-wide), so a backend
    #: whose work shares one process leaves them out and they are refused at submission.
    runtime_env_files: frozenset[str] = frozenset()
    #: Where its workers keep their log files (``init(log_dir=)``, a node's logs/), if anywhere.
    worker_log_dir: str | None = None
    #: Whether the core may run on other threads than its loop's (one at a time, under
    #: the core's lock): the thread that submits work or reports its end then runs the
    #: core's handlers itself, without a hop through the loop thread. Only for a backend
    #: whose methods (but ``start`` and ``stop``) any thread may call, and whose threads
    #: report a task's or call's end holding no lock its methods take.
    runs_core_inline: bool = False
    #: Whether the process running the core is a driver (a job of its own in
    #: ``list_jobs``); a cluster's head is not: its drivers connect to it.
    runs_driver: bool = True

    @abstractmethod
    async def start(self, events: CoreEvents, config: BackendConfig) -> list[NodeInfo]:
        """Bring up workers; return the nodes and their total resources."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop every worker and free every resource. Must not leave threads or processes.

        When ``actorlib.core.exiting.exiting()``, return promptly: threads running user
        code may be left to die with the interpreter (daemon threads), never waited for.
        """

    @abstractmethod
    def run_task(self, run: TaskRun) -> None:
        """Run a task; report through ``events.task_finished`` or ``task_crashed``."""

    @abstractmethod
    def start_actor(self, start: ActorStart) -> None:
        """Create the actor (run ``__init__``); report ``actor_started`` or ``actor_init_failed``.

        Calls may arrive before the constructor has finished; they run after it.
        """

    @abstractmethod
    def run_call(self, run: CallRun) -> None:
        """Queue a call on its actor. Calls start in the order they arrive here."""

    @abstractmethod
    def stop_actor(self, actor_id: int, *, force: bool) -> None:
        """End an actor. ``force``: at once, dropping queued calls; else after them.

        The backend reports ``actor_died`` when it is gone.
        """

    @abstractmethod
    def cancel(self, id: int, *, force: bool) -> None:
        """Interrupt a running task or call; no-op if it already finished."""

    @abstractmethod
    def items_consumed(self, id: int, consumed: int) -> None:
        """The consumer of a streaming task or call has taken ``consumed`` items: a
        producer paused by backpressure (``TaskSpec.backpressure``) may go on."""

    def recall(self, task_id: int) -> None:
        """Hand back a queued-behind task that has not started (``pipelines`` only)."""

    def take_back(self, task_id: int) -> bool:
        """Take back a queued-behind task at once, without a ``task_recalled``: True if
        done (it will never start there), False if it has started or cannot be taken
        back right now (``pipelines`` only)."""
        return False

    def locate(self, path: str) -> str | None:
        """The node whose store holds the file at ``path``; None if unknown."""
        return None

    def workers(self) -> list[dict[str, Any]]:
        """The processes that run this backend's work, for ``list_workers``: plain dicts
        (keys in :data:`actorlib.core.state.WorkerInfo`). Empty when the backend cannot
        tell (its work runs somewhere it does not see)."""
        return []

    def refresh_workers(self) -> concurrent.futures.Future[None] | None:
        """Bring :meth:`workers` up to date where it may lag behind the work (a cluster's
        head knows its nodes' workers as of their last heartbeats, so a task placed since
        would show no process), resolved on the core loop once it is; None where
        :meth:`workers` is always current. Called on the core loop before the rows that
        name worker processes are made."""
        return None

    def worker_query(self, query: WorkerQuery) -> concurrent.futures.Future[list[dict[str, Any]]]:
        """Answer a question about its worker processes (``actorlib.core.state.worker_query``:
        a stack dump, its log files, a log's tail), later: a dump waits for the process.
        Called on the core loop. By default answered on this machine, where the workers
        are (:mod:`actorlib.backends.worker_files`); a backend whose workers run elsewhere
        asks there."""
        from actorlib.backends import worker_files

        node_id = next((w.get("node_id") for w in self.workers()), None)
        return worker_files.answer_in_thread(query, node_id, self.worker_log_dir)

    def unhandled_error(self, job: int, value: Serialized) -> bool:
        """An error nobody retrieved, of work of ``job``, as its last ref dies: report it
        where the job's driver runs. False (the default) if the core's own process is
        that place: the core logs it there. Called on the core loop."""
        return False


class RunningCore(Client, Protocol):
    """A core this process talks to: its own ``Runtime``, or a client of one elsewhere."""

    @property
    def address(self) -> str | None:
        """The cluster's address (``host:port``) when the core is a cluster's; else None."""

    def shutdown(self) -> None: ...
    def debug_state(self) -> dict[str, Any]: ...


class Connector(ABC):
    """The other kind of backend: the core runs elsewhere (a cluster's head), so ``init``
    connects to it instead of starting a ``Runtime`` around a :class:`Backend`."""

    name: str = "?"
    runtime_env_files: frozenset[str] = frozenset()  # as Backend.runtime_env_files
    # ``init(logging_config=)`` is the backend's to apply, in the driver too (Ray's own)
    applies_logging_config: bool = False
    # Whether the driver serves the state API on its socket for ``actorlib list`` (a
    # private cluster has no session a second terminal could find its head by).
    serves_state: bool = False

    @classmethod
    @abstractmethod
    def connect(cls, config: BackendConfig, namespace: str) -> RunningCore:
        """Reach the core (starting it first if the backend owns it); raise if unreachable."""

