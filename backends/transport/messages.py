"""Every message between actorlib's processes: one named, typed record per kind.

Who sends what to whom::

    driver (ProcessBackend)  ── ToWorker ──────▶  worker process (Worker)
                             ◀─ FromWorker ─────  ForwardedEvents (events), RemoteCoreClient (API)

    head (HeadBackend+core)  ── ToNode ────────▶  node (NodeDaemon: a ProcessBackend)
                             ◀─ FromNode ───────  ForwardedEvents, RemoteCoreClient (its workers')

    head                     ── ToDriver ──────▶  driver (ClusterClient)
                             ◀─ FromDriver ─────

    head                     ── ToCli ─────────▶  ``actorlib status``
                             ◀─ FromCli ────────

One task, process backend (the driver's core on the left, a worker process on the right)::

    core loop (driver)                          worker process
    ProcessBackend.run_task ─── RunTask ──────▶ Worker._run_task: its runner calls f(x)
                                                  inside f, g.remote(): RemoteCoreClient.submit_task
    ClientLink._submit_task ◀── SubmitTask ────
                                                  inside f, get(ref): RemoteCoreClient.watch
    ClientLink._watch       ◀── Watch ─────────
          (when ref's value is ready)  ──────── Ready ──────▶ RemoteCoreClient.on_ready
    ProcessBackend._task_finished ◀── TaskFinished ── ForwardedEvents.task_finished

One actor, then one call on it::

    ProcessBackend.start_actor ── StartActor ─▶ Worker._start_actor: a host builds the instance
    ProcessBackend             ◀─ ActorStarted ─ (ActorInitFailed if __init__ raised)
    ProcessBackend.run_call ───── RunCall ────▶ Worker._run_call: the actor's thread or loop
    ProcessBackend._call_finished ◀─ CallFinished ─ ForwardedEvents.call_finished

On a cluster the same records go one hop further: a driver's ``SubmitTask`` reaches the
head's core (``FromDriver``), the head sends ``RunTask`` to a node (``ToNode``), the node's
``ProcessBackend`` sends it on to a worker (``ToWorker``); ``TaskFinished`` comes back
worker → node → head, and the driver's ``Watch`` is answered by the head's ``Ready``.

The vocabularies share records where a message means the same thing on several links.
They come in four families:

- work orders, from a backend to whoever runs its work (driver → worker, head → node):
  ``RunTask``, ``RunCall``, ``StartActor``, ``StopActor``, ``CancelRun``,
  ``ItemsConsumed``, ``Recall``, ``SysPath``, ``Exit`` (and ``Init`` for a worker): the
  ``Backend`` methods;
- events, the way back (worker → driver, node → head): ``TaskFinished``, ``CallFinished``,
  ``ItemProduced``, ``TaskRecalled``, ``TaskCrashed``, ``ActorStarted``,
  ``ActorInitFailed``, ``ActorDied``: the ``CoreEvents`` methods, sent by
  :class:`~.forwarding.ForwardedEvents`;
- client calls, from a client of a core in another process (worker → driver, node → head
  for its workers, driver → head): ``AddRef`` ... ``Request``, the ``Client`` methods,
  received by :class:`~.client_link.ClientLink` and answered with ``Ready`` and ``Reply``;
- the cluster's own: ``NodeHello``/``DriverHello``, ``Welcome``, ``NodeReady``, ``Nodes``,
  ``Heartbeat``, ``Free``, ``StatusQuery``/``Status``, ``StateQuery``/``StateRows``,
  ``UnhandledError`` (an error of a driver's work nobody read, for it to report); and
  ``Output`` (a worker's lines, on to the driver that owns them), ``Alive`` (a worker's
  sign of life).

Two cancels, two names: ``CancelRun`` asks whoever runs a task or call to stop it (the
``Backend.cancel`` of the sender); ``CancelObject`` is ``actorlib.cancel(ref)`` called
inside a worker or a cluster driver (the ``Client.cancel`` of the receiver).

Records are ``NamedTuple``s: a tuple underneath, as cheap to build as the plain tuples they
replace, read by field name. On the wire each is the tuple ``(tag, *fields)``, pickled
(``TAGS``); the per-task kinds are flattened further by
:mod:`~.codec`. Receivers dispatch through handler tables: a dict from record type to
bound method, built once per receiver, which covers exactly its direction's vocabulary
(``tests/test_messages.py`` checks it). A record of another direction, or anything that is
not a record, finds no handler: the head closes such a peer's connection.
"""

# No ``from __future__ import annotations`` here: NamedTuple makes a ForwardRef (compiling
# it) of each string annotation, about a fifth of this module's own import, in every process.
from typing import Any, NamedTuple, get_args

from actorlib.core.records import ActorStart, CallRun, NodeInfo, Outcome, StreamItem, TaskRun
from actorlib.core.serialization import Serialized
from actorlib.core.specs import ActorSpec, CallSpec, TaskSpec

# == work orders: a backend to whoever runs its work =========================================


class Init(NamedTuple):
    """Driver → worker, first: its id prefix, store, nodes, import paths, output options."""

    config: dict[str, Any]


class RunTask(NamedTuple):
    run: TaskRun


class RunCall(NamedTuple):
    run: CallRun


class StartActor(NamedTuple):
    start: ActorStart


class StopActor(NamedTuple):
    """Stop hosting an actor; ``force``: kill it without letting queued calls finish."""

    actor_id: int
    force: bool


class CancelRun(NamedTuple):
    """Stop a task or actor call the receiver runs (``Backend.cancel``)."""

    work_id: int
    force: bool


class Recall(NamedTuple):
    """Hand back a task queued behind another (``TaskRun.follows``) if it has not started."""

    task_id: int


class SysPath(NamedTuple):
    """Import paths of the cluster's jobs (head → node → worker), appended to ``sys.path``."""

    paths: list[str]


class NodeQuery(NamedTuple):
    """Head → node: a question about one of its worker processes, or all of them
    (``actorlib.core.state.worker_query``: what, pid, bytes); answered by ``NodeAnswer``."""

    req: int
    what: str
    pid: int
    size: int


class NodeAnswer(NamedTuple):
    """Node → head: the rows answering ``NodeQuery`` ``req``, or ``error`` (a message)."""

    req: int
    rows: list[dict[str, Any]]
    error: str | None = None


class JobSetup(NamedTuple):
    """A cluster driver's logging and setup hook (head → node → worker), applied by a
    worker before it runs that driver's first task (``TaskRun.job``). ``setup`` None: the
    driver is gone, forget it. ``setup`` holds ``logging`` (``output.driver_logging``)
    and ``setup_hook`` (pickled, or ``"module.function"``, or None)."""

    job: int
    setup: dict[str, Any] | None


class ItemsConsumed(NamedTuple):
    """The consumer of a streaming task or call has taken ``consumed`` items: a producer
    paused by backpressure may go on (``Backend.items_consumed``)."""

    work_id: int
    consumed: int


class Exit(NamedTuple):
    """Driver → worker, head → node: finish up and exit."""


# == events: the way back (CoreEvents) ========================================================


class TaskFinished(NamedTuple):
    outcome: Outcome


class CallFinished(NamedTuple):
    outcome: Outcome


class ItemProduced(NamedTuple):
    """A streaming task or call yielded an item (``CoreEvents.item_produced``)."""

    item: StreamItem


class TaskRecalled(NamedTuple):
    """A task queued behind another, handed back unstarted."""

    task_id: int
    attempt: int


class TaskCrashed(NamedTuple):
    """Node → head: the worker running the task died."""

    task_id: int
    attempt: int
    error: BaseException


class ActorStarted(NamedTuple):
    actor_id: int
    incarnation: int


class ActorInitFailed(NamedTuple):
    actor_id: int
    incarnation: int
    error: Serialized


class EnvFailed(NamedTuple):
    """Worker → driver or node, before the failed outcome of the work it was started for:
    this worker could not enter its runtime_env (its working_dir went before it
    started), so it must get no more work (it is told to exit instead)."""


class ActorDied(NamedTuple):
    """Node → head: the worker hosting the actor died."""

    actor_id: int
    incarnation: int
    error: BaseException


class Alive(NamedTuple):
    """Worker → driver every few seconds, when liveness checks are on."""


class Output(NamedTuple):
    """Whole lines a task or actor wrote, prefixed; worker → driver (node → head → driver
    on a cluster). ``owner``: the id of the task or actor, 0 if none."""

    stream: str  # "stdout" or "stderr"
    text: str
    owner: int


# == client calls: the actorlib API, to a core in another process (Client) ====================


class AddRef(NamedTuple):
    object_id: int


class DropRef(NamedTuple):
    object_id: int


class Put(NamedTuple):
    object_id: int
    value: Serialized


class Watch(NamedTuple):
    """Send a ``Ready`` for each of ``ids`` once it has a value. ``reads``: the watcher
    reads the values (``get``), so an error delivered is handled; False for a ``wait``,
    which leaves an error to be reported if nobody reads it."""

    token: int
    ids: list[int]
    reads: bool = True


class Unwatch(NamedTuple):
    token: int
    ids: list[int]


class SubmitTask(NamedTuple):
    spec: TaskSpec


class SubmitCall(NamedTuple):
    spec: CallSpec


class CreateActor(NamedTuple):
    """An unnamed actor (a named one is a ``Request``: its name may be taken)."""

    spec: ActorSpec


class KillActor(NamedTuple):
    actor_id: int
    no_restart: bool


class TaskBlocked(NamedTuple):
    """A task waits in ``get`` (its CPU may go to another) or has stopped waiting."""

    task_id: int
    blocked: bool


class CancelObject(NamedTuple):
    """``actorlib.cancel(ref)`` (``Client.cancel``). A forced cancel goes as the
    ``Request`` "cancel" instead, since the core may refuse it (an actor call)."""

    object_id: int
    force: bool
    recursive: bool


class Request(NamedTuple):
    """A query needing an answer (``client_link.REQUESTS``), answered by a ``Reply``."""

    req: int
    method: str
    args: tuple[Any, ...]


# -- their answers ---------------------------------------------------------------------------


class Ready(NamedTuple):
    """A watched object has its value (or error)."""

    token: int
    object_id: int
    value: Serialized


class Reply(NamedTuple):
    req: int
    ok: bool
    value: Any  # the result, or the exception if not ok


class UnhandledError(NamedTuple):
    """Head → driver: an error value of the driver's work died with nobody having read
    it; the driver reports it (as a core in the driver would)."""

    value: Serialized


# == the cluster's own ========================================================================


class NodeHello(NamedTuple):
    """Node → head, first message after the handshake."""

    node_id: str
    resources: dict[str, float]
    host: str
    pid: int
    labels: dict[str, str]


class DriverHello(NamedTuple):
    """Driver → head, first message after the handshake."""

    pid: int
    sys_path: list[str]
    log_to_driver: bool
    setup: dict[str, Any] | None = None  # its logging and setup hook (``JobSetup``)
    entrypoint: str = ""  # its command line, for ``list_jobs``


class Welcome(NamedTuple):
    """Head → node or driver: its id prefix and the cluster as it is."""

    prefix: int
    nodes: list[NodeInfo]
    directory: dict[str, tuple[str, int]]  # store session -> object server address
    sys_path: list[str]


class NodeReady(NamedTuple):
    """Node → head: its store session and object server; it takes work from now on."""

    session: str
    objects: tuple[str, int]


class Nodes(NamedTuple):
    """Head → nodes and drivers, whenever the nodes change."""

    nodes: list[NodeInfo]
    directory: dict[str, tuple[str, int]]


class Heartbeat(NamedTuple):
    """Node → head every second: workers, idle workers, store bytes in use."""

    stats: dict[str, Any]


class Free(NamedTuple):
    """Head → nodes: object files to remove (their objects were freed)."""

    paths: list[str]


class StatusQuery(NamedTuple):
    """``actorlib status`` → head."""

    req: int


class Status(NamedTuple):
    req: int
    status: dict[str, Any]


class StateQuery(NamedTuple):
    """``actorlib list/summary/get`` → head: the state API's rows of one ``kind``."""

    req: int
    kind: str


class StateRows(NamedTuple):
    """Head → CLI: the rows asked for, or ``error`` (a message) instead."""

    req: int
    rows: list[dict[str, Any]]
    error: str | None = None


# == the vocabularies =========================================================================

WorkOrder = (
    RunTask | RunCall | StartActor | StopActor | CancelRun | ItemsConsumed | SysPath | Exit
)
Event = (
    TaskFinished | CallFinished | ItemProduced | TaskRecalled | TaskCrashed | ActorStarted
    | ActorInitFailed | ActorDied
)
ClientCall = (
    AddRef | DropRef | Put | Watch | Unwatch | SubmitTask | SubmitCall | CreateActor | KillActor
    | TaskBlocked | CancelObject | Request
)
Answer = Ready | Reply

ToWorker = Init | WorkOrder | Recall | JobSetup | Answer
FromWorker = (
    Alive | Output | TaskFinished | CallFinished | ItemProduced | TaskRecalled | ActorStarted
    | ActorInitFailed | EnvFailed | ClientCall
)
ToNode = Welcome | Nodes | Free | WorkOrder | Recall | JobSetup | NodeQuery | Answer
FromNode = NodeHello | NodeReady | Heartbeat | Output | NodeAnswer | Event | ClientCall
ToDriver = Welcome | Nodes | Output | UnhandledError | Answer
FromDriver = DriverHello | ClientCall
ToCli = Status | StateRows
FromCli = StatusQuery | StateQuery
FromHead = ToNode | ToDriver | ToCli

#: The record types each direction carries, for handler tables and their tests.
TO_WORKER: tuple[type, ...] = get_args(ToWorker)
FROM_WORKER: tuple[type, ...] = get_args(FromWorker)
TO_NODE: tuple[type, ...] = get_args(ToNode)
FROM_NODE: tuple[type, ...] = get_args(FromNode)
TO_DRIVER: tuple[type, ...] = get_args(ToDriver)
FROM_DRIVER: tuple[type, ...] = get_args(FromDriver)
TO_CLI: tuple[type, ...] = get_args(ToCli)
FROM_CLI: tuple[type, ...] = get_args(FromCli)
EVENTS: tuple[type, ...] = get_args(Event)
CLIENT_CALLS: tuple[type, ...] = get_args(ClientCall)

# == tags =====================================================================================

#: Every record, in tag order: append only, so a tag keeps its meaning. Tags start at 16;
#: 1 to 15 are the codec's flat forms of the per-task kinds.
RECORDS: tuple[type, ...] = (
    Init, RunTask, RunCall, StartActor, StopActor, CancelRun, Recall, SysPath, Exit,
    TaskFinished, CallFinished, TaskRecalled, TaskCrashed, ActorStarted, ActorInitFailed,
    ActorDied, Alive, Output,
    AddRef, DropRef, Put, Watch, Unwatch, SubmitTask, SubmitCall, CreateActor, KillActor,
    TaskBlocked, CancelObject, Request, Ready, Reply,
    NodeHello, DriverHello, Welcome, NodeReady, Nodes, Heartbeat, Free, StatusQuery, Status,
    ItemProduced, ItemsConsumed,
    StateQuery, StateRows, UnhandledError, JobSetup, NodeQuery, NodeAnswer, EnvFailed,
)
FIRST_TAG = 16
TAGS: dict[type, int] = {cls: FIRST_TAG + i for i, cls in enumerate(RECORDS)}


def name_of(message: Any) -> str:
    """A message's kind, for logs: the record's name, or what an unknown object is."""
    if type(message) in TAGS:
        return type(message).__name__
    return f"not a message: {type(message).__name__}"
