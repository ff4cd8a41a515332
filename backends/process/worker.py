"""A worker process of the process backend (started by ``ProcessBackend`` with FD and PPID).

A fresh interpreter (never a fork of the driver), so it inherits no threads, locks or
event loop, and does not re-run the driver's ``__main__``: code arrives pickled by
cloudpickle and is cached by id. It dies with its parent (``PR_SET_PDEATHSIG``, or where
there is none, the driver's lifeline pipe: :mod:`actorlib.backends.process.portable`).

Inside, a local runner (:mod:`actorlib.backends.runner`, as in the thread backend) runs
the work and reports over a socket to the driver, and a client forwards the actorlib API
(nested tasks, refs, ``get``) to the driver's core. An I/O thread owns the socket, so a
task blocked in ``get`` still receives its answer.
"""

from __future__ import annotations

import ctypes
import faulthandler
import functools
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, TextIO

from actorlib.backends import stacks
from actorlib.backends.base import HeapStore, ObjectStore
from actorlib.backends.log_files import RotatingLog, worker_log
from actorlib.backends.output import (
    STDERR,
    STDOUT,
    LineSender,
    apply_logging,
    capture_fds,
    make_prefix,
    prefix_lines,
    run_setup_hook,
)
from actorlib.backends.proc_title import TaskTitles, set_title, set_title_raw
from actorlib.backends.process import urgent
from actorlib.backends.process.claims import ClaimTable
from actorlib.backends.process.inline_tasks import InlineTasks
from actorlib.backends.process.portable import on_lifeline_cut, use_pdeathsig
from actorlib.backends.process.urgent import Wakeup
from actorlib.backends.runner.local_runner import LocalRunner
from actorlib.backends.transport import framing
from actorlib.backends.transport.forwarding import ForwardedEvents
from actorlib.backends.transport.messages import (
    Alive,
    CancelRun,
    EnvFailed,
    Exit,
    Init,
    ItemsConsumed,
    JobSetup,
    Output,
    Ready,
    Recall,
    Reply,
    RunCall,
    RunTask,
    StartActor,
    StopActor,
    SysPath,
    TaskRecalled,
    ToWorker,
)
from actorlib.backends.transport.remote_core import RemoteCoreClient
from actorlib.core import context, late_interrupts
from actorlib.core.fds import fill_standard_fds
from actorlib.core.records import Outcome
from actorlib.core.serialization import Serialized, serialize, set_buffer_mapper
from actorlib.core.specs import CodeRef
from actorlib.exceptions import RuntimeEnvSetupError

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int, lifeline: int | None = None) -> None:
    """Ask the kernel to SIGKILL us when the driver goes; exit if it already has.

    Without ``PR_SET_PDEATHSIG`` (not Linux), exit once the driver's ``lifeline`` pipe
    reads EOF: only the driver holds its write end.
    """
    if use_pdeathsig():
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    elif lifeline is not None:
        on_lifeline_cut(lifeline, lambda: os._exit(1), "actorlib-lifeline")
    if os.getppid() != parent_pid:
        os._exit(1)


def add_import_paths(paths: Any) -> None:
    """Where a cluster's jobs import their modules from; after our own, never before."""
    for entry in paths:
        if entry not in sys.path:
            sys.path.append(entry)


def _give_back(client: RemoteCoreClient, paths: list[str]) -> None:
    """Return granted arena extents the worker will not use (no answer awaited)."""
    client.forward_request("arena_return", (paths,), lambda ok, value: None)


def _run_now(fn: Callable[..., Any], *args: Any) -> None:
    """``post`` inside a worker: there is no core loop to defer to."""
    fn(*args)


class Worker:
    def __init__(
        self, sock: socket.socket, claims: ClaimTable | None = None,
        wakeup: Wakeup | None = None,
    ) -> None:
        self.claims = claims
        self.local: LocalRunner | None = None
        self.inline: InlineTasks | None = None
        # Why this worker cannot enter its runtime_env (set by ``Init``): see _env_failed.
        self._env_error: RuntimeEnvSetupError | None = None
        self.client: RemoteCoreClient | None = None
        # Who the last task or actor given is, (qualified name, id): it names fd-level
        # output (by the name's last part, taken only then).
        # Not the work itself: its arguments would stay mapped, and their arena extents
        # pinned, until the next task came.
        self.last_work: tuple[str, int] = ("", 0)
        self.titles: TaskTitles | None = None  # set by ``Init`` where titles can be set
        self._hosts_actor = False  # then its title is the actor's class, for good
        self._senders: list[LineSender] = []
        self._finish_output: Callable[[], None] | None = None
        self._crash_log: TextIO | None = None
        self._log: RotatingLog | None = None  # this worker's log file, if it keeps one
        self._to_driver = True
        self._node: str | None = None
        # A cluster worker serves several drivers (jobs): each one's logging and setup
        # hook (``JobSetup``), the job whose logging is applied, the jobs hooked here.
        self._job_setups: dict[int, dict[str, Any]] = {}
        self._job = 0
        self._hooked: set[int] = set()
        self.exit = threading.Event()
        self.watch_s = urgent.WATCH_S  # the main thread's looks (``Init`` may change it)
        # The main thread's wait between looks: a driver's signal (something urgent was
        # sent) or an exit ends it early. The worker process's own is made by ``main``
        # (a signal handler is the process's); without one, an exit alone ends it.
        self.wakeup = wakeup or Wakeup(signals=False)
        #: One handler per record of ``messages.ToWorker``.
        self._handlers: dict[type, Callable[[Any], None]] = {
            Init: lambda message: self._init(message.config), SysPath: self._sys_path,
            JobSetup: self._job_setup,
            RunTask: self._run_task, RunCall: self._run_call, StartActor: self._start_actor,
            StopActor: self._stop_actor, CancelRun: self._cancel, Recall: self._recall,
            ItemsConsumed: self._items_consumed,
            Ready: self._ready, Reply: self._reply, Exit: self._exit,
            framing.Undecodable: self._undecodable,
        }
        self.conn = framing.BlockingConnection(sock, self._on_message, self._stop)
        self._sock = sock
        self.conn.start()

    def _on_message(self, message: ToWorker) -> None:
        kind = type(message)
        known: Any = message  # of type ``kind`` (mypy narrows no alias of ``type()``)
        if kind is RunCall and self.local is not None:
            # ``_run_call(message)``, without its frame (an actor's every call)
            self.local.run_call(known.run)
            return
        if kind is Ready and self.client is not None:
            # ``_ready(message)``, without its frame (every result a task awaits)
            self.client.on_ready(known[0], known[1], known[2])
            return
        self._handlers[kind](message)

    def _run_task(self, message: RunTask) -> None:
        assert self.local is not None
        run = message.run
        if self._env_error is not None:
            if not self.local.claimed(run):  # taken back from behind another: not ours
                return
            error = self._env_failed(self._env_error)
            self.local.events.task_finished(Outcome(run.spec.task_id, run.spec.attempt,
                                                    error=error))
            return
        self.last_work = (run.spec.name, run.spec.task_id)
        if run.job != self._job:  # a cluster driver's first task here, or another's
            self._enter_job(run.job, run.spec.task_id)
        if self.inline is not None and self.inline.run(run):
            return
        self.local.run_task(run)

    def _run_call(self, message: RunCall) -> None:
        assert self.local is not None
        self.local.run_call(message.run)

    def _start_actor(self, message: StartActor) -> None:
        assert self.local is not None
        spec = message.start.spec
        if self._env_error is not None:
            error = self._env_failed(self._env_error)
            self.local.events.actor_init_failed(spec.actor_id, message.start.incarnation, error)
            return
        self.last_work = (spec.cls.name, spec.actor_id)
        if message.start.job != self._job:
            self._enter_job(message.start.job, message.start.spec.actor_id)
        set_title(message.start.spec.cls.name)  # this worker now hosts this actor only
        self._hosts_actor = True
        self.local.start_actor(message.start)

    def _undecodable(self, message: framing.Undecodable) -> None:
        """Work whose message did not decode here fails with the reason, rather than being
        lost and its caller's get() waiting forever; so does a request whose answer did
        not (its caller gets the error). A worker whose ``Init`` did not decode can run
        nothing: it exits, and its work is retried or fails as a crashed worker's."""
        record = message.record
        if type(record) is Init or self.local is None:
            self._stop()
            return
        if type(record) is Reply:
            if self.client is not None:
                self.client.undecodable_reply(message, "the worker process")
            return
        events = self.local.events

        def error(what: str) -> Serialized:
            return serialize(message.failure(what, "the worker process"), is_error=True)

        # The code it brought is kept all the same: the driver sends code once per
        # worker, so the next work of that function or class comes without it.
        spec = getattr(getattr(record, "run", None) or getattr(record, "start", None),
                       "spec", None)
        code = getattr(spec, "function", None) or getattr(spec, "cls", None)
        if type(code) is CodeRef:
            self.local.code.remember(code)
        if type(record) is RunTask:
            run = record.run
            if self.local.claimed(run):
                events.task_finished(Outcome(run.spec.task_id, run.spec.attempt,
                                             error=error(f"task {run.spec.task_id:016x}")))
        elif type(record) is RunCall:
            spec = record.run.spec
            events.call_finished(Outcome(spec.call_id, spec.attempt,
                                         error=error(f"actor call {spec.method}")))
        elif type(record) is StartActor:
            start = record.start
            events.actor_init_failed(start.spec.actor_id, start.incarnation,
                                     error(f"the creation of actor {start.spec.actor_id:016x}"))

    def _stop_actor(self, message: StopActor) -> None:
        assert self.local is not None
        self.local.stop_actor(message.actor_id, force=message.force)
        threading.Thread(target=self._exit_after_actors, daemon=True).start()

    def _cancel(self, message: CancelRun) -> None:
        assert self.local is not None
        self.local.cancel(message.work_id, force=message.force)

    def _items_consumed(self, message: ItemsConsumed) -> None:
        assert self.local is not None
        self.local.items_consumed(message.work_id, message.consumed)

    def _recall(self, message: Recall) -> None:
        assert self.local is not None
        run = self.local.take_back(message.task_id)
        if run is not None:
            self.conn.send(TaskRecalled(run.spec.task_id, run.spec.attempt))

    def _ready(self, message: Ready) -> None:
        assert self.client is not None
        self.client.on_ready(message.token, message.object_id, message.value)

    def _reply(self, message: Reply) -> None:
        assert self.client is not None
        self.client.on_reply(message.req, message.ok, message.value)

    def _sys_path(self, message: SysPath) -> None:
        add_import_paths(message.paths)

    def _job_setup(self, message: JobSetup) -> None:
        if message.setup is None:
            self._job_setups.pop(message.job, None)
        else:
            self._job_setups[message.job] = message.setup

    def _enter_job(self, job: int, owner: int) -> None:
        """Work of cluster driver ``job`` is next: apply its logging, and before its first
        task or actor here run its setup hook. A hook that fails ends the worker, as on
        the process backend; its traceback goes to that driver (``owner``: the work's id).
        """
        self._job = job
        setup = self._job_setups.get(job)
        if setup is None:
            return
        if setup.get("logging") is not None:
            apply_logging(setup["logging"])
        hook = setup.get("setup_hook")
        if hook is None or job in self._hooked:
            return
        self._hooked.add(job)
        try:
            run_setup_hook(hook)
        except BaseException:
            self._send_output(STDERR, prefix_lines(
                make_prefix("", os.getpid(), self._node),
                "worker_process_setup_hook failed; the worker exits:\n" + traceback.format_exc(),
            ), owner)
            self._close_output()
            os._exit(1)

    def _env_failed(self, error: RuntimeEnvSetupError) -> Serialized:
        """This worker was started for a runtime_env it could not enter, and serves one
        environment for life: the work it was started for fails with ``error``, and the
        driver (or node), told first, sends it no more work but ``Exit``; a worker
        started for that environment's next work has the package extracted again."""
        self.conn.send(EnvFailed())
        return serialize(error, is_error=True)

    def _exit(self, message: Exit) -> None:
        self._stop()

    def _stop(self) -> None:
        self.exit.set()
        self.wakeup.poke()

    alive_every_s: float | None = None

    def _init(self, config: dict[str, Any]) -> None:
        if config.get("alive_every_s"):
            self.alive_every_s = config["alive_every_s"]
            self.conn.send(Alive())
        self.watch_s = config.get("inline_watch_s") or urgent.WATCH_S
        for entry in reversed(config["sys_path"]):
            if entry not in sys.path:
                sys.path.insert(0, entry)
        add_import_paths(config.get("job_sys_path", ()))
        self._job_setups.update(config.get("job_setups") or {})
        # runtime_env: this worker serves one working_dir / py_modules for life.
        for entry in reversed(config.get("code_paths", ())):
            sys.path.insert(0, entry)
        if config.get("cwd"):
            try:
                os.chdir(config["cwd"])
            except OSError as exc:  # removed since the node checked it: fail the work
                self._env_error = RuntimeEnvSetupError(
                    f"runtime_env: the package {os.path.basename(config['cwd'])[:12]} (a "
                    f"working_dir) could not be entered by worker process {os.getpid()}: "
                    f"{type(exc).__name__}: {exc}"
                )
        context.inherited_code_env = config.get("code_env")
        store: ObjectStore = HeapStore()
        worker_store = None
        if config.get("store") is not None:
            from actorlib.backends.process.shm_store import SharedMemoryStore

            worker_store = SharedMemoryStore.for_worker(config["store"])
            set_buffer_mapper(worker_store.map_location)
            store = worker_store
            if config.get("cluster") is not None:  # other nodes' objects come through ours
                from actorlib.backends.cluster.objects import WorkerMapper

                link = config["cluster"]
                tls = link["tls"].client_context() if link["tls"] is not None else None
                set_buffer_mapper(WorkerMapper(worker_store, link["objects"], link["token"], tls))
        # On a cluster node a worker never hears that another node left (its driver's
        # client does, and forgets what it remembered then: a task re-run by lineage makes
        # its inline results pending again), so it asks the core at each ``wait``.
        client = RemoteCoreClient(
            self.conn, config["prefix"], config["namespace"], store, config["nodes"],
            remembers_ready=config.get("cluster") is None,
        )
        if worker_store is not None and config["store"].get("arena"):
            # Large results and puts go into the driver's arena, in extents it grants.
            worker_store.ask_extents = functools.partial(client.request, "arena_extents")
            worker_store.give_back = functools.partial(_give_back, client)
        claim = self.claims.take if self.claims is not None else None
        local = LocalRunner(
            ForwardedEvents(self.conn.send, client, _run_now), store, claim, self.conn.together
        )
        titles = TaskTitles()
        if titles.enabled:  # ``actorlib::worker square`` while square runs (``run``)
            self.titles = titles
        self.client = client
        context.install(client)
        self.local = local
        self.inline = InlineTasks(local, self.conn)
        local.reading = self.conn  # a sync actor's thread reads while idle
        self._setup_output(config)
        stacks.enable(config.get("stack_dir"))  # `actorlib stack`: dumps on request

    # -- output ------------------------------------------------------------------------

    def _setup_output(self, config: dict[str, Any]) -> None:
        """Route stdout/stderr to the driver, apply its logging, run the setup hook.

        On the reader thread, before any later message: the hook has run before the
        first task starts.
        """
        output = config.get("output") or {}
        node = config["node_id"] if config.get("cluster") is not None else None
        self._node = node
        self._to_driver = bool(output.get("log_to_driver", True))
        self._log = worker_log(config.get("log_dir"))
        if self._to_driver or self._log is not None:
            # Fatal-error tracebacks (segfaults) still reach the original stderr: the
            # pipe's reader dies with the process and could not pass them on.
            self._crash_log = os.fdopen(os.dup(2), "w")
            faulthandler.enable(self._crash_log)
            self._finish_output = capture_fds(self._send_output, self._fd_owner)
            pid = os.getpid()
            self._senders = [LineSender(STDOUT, self._send_output, pid, node, 1),
                             LineSender(STDERR, self._send_output, pid, node, 2)]
            sys.stdout, sys.stderr = self._senders
        if output.get("logging") is not None:
            apply_logging(output["logging"])
        hook = output.get("setup_hook")
        if hook is not None:
            try:
                run_setup_hook(hook)
            except BaseException:
                # Its tasks fail as crashed (and are retried elsewhere, up to max_retries);
                # the traceback goes to the driver's stderr first.
                sys.stderr.write(
                    "worker_process_setup_hook failed; the worker exits:\n"
                    + traceback.format_exc()
                )
                self._close_output()
                os._exit(1)

    def _send_output(self, stream: str, text: str, owner: int) -> None:
        if self._log is not None:
            self._log.write(text)
        if self._to_driver:
            self.conn.send(Output(stream, text, owner))

    def _fd_owner(self) -> tuple[str, int]:
        """Who wrote to fd 1/2 (the reader cannot tell): the last task or actor given."""
        name, owner = self.last_work
        return make_prefix(name.rpartition(".")[2], os.getpid(), self._node), owner

    def _close_output(self) -> None:
        for sender in self._senders:
            sender.flush_all()
        if self._finish_output is not None:
            self._finish_output()
        if self._log is not None:
            self._log.close()

    def _exit_after_actors(self) -> None:
        if self.local is not None:
            self.local.join_stopped_actors()
        self._stop()

    def _show_work(self) -> None:
        """At each look: the title names a task running here, if one is."""
        titles, local = self.titles, self.local
        if titles is None or local is None or self._hosts_actor:
            return
        running = None
        for thread in list(local.owner.values()):  # one C-level copy: safe from this thread
            run = thread.current
            if run is not None:
                running = (run.spec.name or run.spec.function.name).rpartition(".")[2]
                break
        titles.show(running)

    def run(self) -> None:
        # The main thread tells the driver this process is alive, when the driver checks
        # (``worker_timeout_s``): a frozen process, or one stuck holding the GIL, falls
        # silent. And it watches the tasks run on the reading thread (``InlineTasks``):
        # one still running at the next look has reading passed to a spare thread.
        # Looks are frequent while tasks come, rare when none has for a while; the
        # driver's signal that it sent something urgent (a cancel, an exit) passes
        # reading on at once.
        seen = 0
        pause = self.watch_s
        next_alive = time.monotonic() + (self.alive_every_s or 0.0)
        while not self.exit.is_set():
            if self.wakeup.wait(pause):
                self.conn.urgent()
            if self.exit.is_set():
                break
            if self.alive_every_s and time.monotonic() >= next_alive:
                next_alive = time.monotonic() + self.alive_every_s
                self.conn.send(Alive())
            runs = self.conn.watch_inline(seen)
            self._show_work()
            busy = self.watch_s  # ``Init`` sets it (after this loop began)
            pause = busy if runs != seen else min(pause * 2, max(1.0, 10 * busy))
            if self.alive_every_s:  # signs of life at most half a period late
                pause = min(pause, self.alive_every_s / 2)
            seen = runs
        self.conn.flush()  # submissions and drops queued to go together (send_soon)
        if self.client is not None:
            self.client.close()
        self._close_output()
        stacks.disable()
        # The driver hears the end now, even where a process forked by user code holds a
        # copy of the socket (it would see the exit only after a fallback delay).
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        # Every message already left (sends are synchronous, the queued ones flushed
        # above). Threads still running user code are abandoned: the driver has already
        # given up on them.
        os._exit(0)


def _retitle_forked() -> None:
    """A process user code forks here is the user's, not a worker: ``ps`` (and a check
    for ``actorlib::`` processes left behind) must not take it for one."""
    set_title_raw(f"{os.path.basename(sys.executable)} (forked from actorlib worker "
                  f"{os.getppid()})")


def main() -> None:
    fill_standard_fds()  # the fds passed in are open: only holes at 0-2 are filled
    set_title("worker")
    fd = int(sys.argv[1])
    parent = int(sys.argv[2])
    die_with_parent(parent, int(sys.argv[4]) if len(sys.argv) > 4 else None)
    sock = socket.socket(fileno=fd)
    os.set_inheritable(fd, False)  # passed to us inheritable: no program we exec keeps it
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_retitle_forked)
    # A task may be decoded before Init installs the store's mapper (one read, both).
    from actorlib.backends.process.arena import map_early

    set_buffer_mapper(map_early)
    claims = ClaimTable(int(sys.argv[3])) if len(sys.argv) > 3 else None
    wakeup = urgent.Wakeup()  # here, on the main thread: the handlers are the process's
    stacks.install()  # `actorlib stack`'s answer, on the main thread (Init opens its file)
    late_interrupts.keep_cancels()  # for good: this process runs tasks only
    Worker(sock, claims, wakeup).run()


if __name__ == "__main__":
    main()
