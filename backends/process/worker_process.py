"""The driver's side of one worker process: starting it, talking to it, seeing it die.

A :class:`WorkerProcess` owns the process, its socket and its claim table; it hands what
the worker sends to its :class:`~actorlib.backends.process.backend.ProcessBackend` on the
core loop, and reports its death only once the process has exited and its last bytes
are read, so results it sent just before dying count, and count first. The helpers here
build a worker's environment and describe its silence and its exit.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from actorlib.backends.base import BackendConfig
from actorlib.backends.process import urgent
from actorlib.backends.process.launch import Launched
from actorlib.backends.process.portable import ExitWatcher
from actorlib.backends.transport import wire
from actorlib.backends.transport.client_link import ClientLink
from actorlib.backends.transport.messages import (
    Alive,
    FromWorker,
    Output,
    RunTask,
    StartActor,
    ToWorker,
)
from actorlib.core.ids import id_hex

if TYPE_CHECKING:
    from actorlib.backends.process.backend import ProcessBackend

KEEPS_CODE = frozenset({RunTask, StartActor})  # see WorkerProcess.send
log = logging.getLogger("actorlib.core")
EXITED: Any = object()  # a worker's death, handled after the messages it sent before


def _handle_all(run: list[tuple[Callable[[Any], None], FromWorker]]) -> None:
    """Handle a worker's messages on the core loop, in order (``_on_messages``); a
    handler's failure is logged and the rest still handled, as posted one by one."""
    for handler, message in run:
        try:
            handler(message)
        except Exception:
            log.exception("actorlib core: internal error in %r", handler)


def with_visible_gpus(env: dict[str, str] | None, gpu_ids: tuple[int, ...]) -> dict[str, str]:
    """The worker's environment: its GPUs are the only ones CUDA sees."""
    return {**(env or {}), "CUDA_VISIBLE_DEVICES": ",".join(map(str, gpu_ids))}


def worker_timeout(config: BackendConfig) -> float:
    """Seconds of silence after which a worker is taken for frozen; 0: never (default).

    Off by default: a worker in a long C call that keeps the GIL cannot answer either,
    and must not be killed for it unless the user says so.
    """
    value = config.options.get("worker_timeout_s") or os.environ.get("ACTORLIB_WORKER_TIMEOUT_S")
    if not value:
        return 0.0
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(
            f"ACTORLIB_WORKER_TIMEOUT_S must be a number of seconds, got {value!r}"
        ) from None
    return max(seconds, 0.0)


def settle_socket(sock: socket.socket, connecting: asyncio.Task[Any]) -> None:
    """Make sure ``sock`` never closes its descriptor number a second time.

    uvloop ties the socket object to its transport only once the connection is made. A
    transport closed before that (a worker that died first: writing its ``Init`` failed
    inside ``connection_made``) has closed the descriptor already, yet the object, when
    collected, closed the same number again: by then often another worker's pidfd or
    socket, so that worker's exit went unseen and ``shutdown()`` waited for it forever.
    asyncio's own transports close the socket object themselves.
    """
    if connecting.cancelled() or connecting.exception() is not None:
        return  # uvloop detached it; asyncio closed it
    transport, _ = connecting.result()
    if transport.is_closing() and type(transport).__module__.startswith("uvloop"):
        sock.detach()  # harmless if uvloop's own close detaches it later


def describe_exit(code: int | None) -> str:
    if code is None:
        return "an unknown status"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


class WorkerProcess:
    """The driver's view of one worker process."""

    def __init__(
        self, backend: ProcessBackend, prefix: int, launched: Launched | None = None
    ) -> None:
        self.backend = backend
        self.prefix = prefix
        # Started here, or earlier by init() (the warm worker, see launch.prestart).
        launched = launched or Launched()
        launched.adopted = True
        parent_sock = launched.sock
        self.claims = launched.claims
        self.proc = launched.proc
        self.pid = self.proc.pid
        loop = backend.loop
        self.conn = wire.Connection(loop, self._on_message, self._on_eof, salvage=True,
                                    on_messages=self._on_messages)
        self._connecting = loop.create_task(
            loop.create_unix_connection(lambda: self.conn, sock=parent_sock)
        )
        self._connecting.add_done_callback(functools.partial(settle_socket, parent_sock))
        self.running: dict[int, int] = {}  # task id -> attempt
        # Its tasks waiting in ``get`` (their CPUs lent), and those that may not share the
        # process (env_vars, GPUs): see ``lendable``.
        self.blocked: set[int] = set()
        self.private: set[int] = set()
        self.actor: tuple[int, int] | None = None  # (actor id, incarnation) it hosts
        self.env_key = ""  # the runtime_env working_dir / py_modules it serves (CodeEnv.key)
        self.env_stamp: tuple[int, ...] = ()  # its folders' inodes when it started
        self.code_ids: set[int] = set()
        # Answers (``Ready``, ``Reply``) carry no code for the worker to keep: they go
        # straight to the connection, without ``send``'s frame.
        self.link = ClientLink(backend.client, self.conn.send, backend.events.post,
                               backend._adopt, backend.own_requests(self))
        # What to post to the core loop for each kind of message, given the message: the
        # backend's handler bound to this worker, but the link's own for a client call the
        # backend only passes on (``ProcessBackend._client_call``), two frames fewer for
        # every call and ref drop a task makes.
        self._posted: dict[type, Callable[[Any], None]] = {
            kind: self.link.handlers[kind] if handler == backend._client_call
            else functools.partial(handler, self)
            for kind, handler in backend._handlers.items()
        }
        self.expected_exit = False
        self.dead = False
        # max_calls: runs given to it per function id (per concurrency key for an
        # Executor's tasks); once one reaches its limit the worker takes no more work
        # and exits when its tasks are done.
        self.calls: dict[int | str, int] = {}
        self.retired = False
        self.last_alive = loop.time()  # its boot counts as a sign of life
        self.kill_reason = ""
        # Death is handled once the process has exited AND its last bytes have been read,
        # so results it sent just before dying count, and count first.
        self.exit_code: int | None = None
        self._exited = False
        self._eof = False
        self._death_posted = False
        self.exit_watcher = ExitWatcher(self.proc, loop, self._on_process_exit)
        self.held = 0  # its messages waiting behind its output (ProcessBackend._output)
        self.exit_detail: str | None = None

    def info(self, node_id: str) -> dict[str, Any]:
        """What ``list_workers`` shows of it (``Backend.workers``)."""
        return {
            "worker_id": id_hex(self.prefix), "pid": self.pid, "node_id": node_id,
            "worker_type": "WORKER", "is_alive": not self.dead,
            "task_ids": [] if self.dead else list(self.running),
            "actor_id": self.actor[0] if self.actor else 0,
            "exit_detail": self.exit_detail,
        }

    def send(self, message: ToWorker) -> None:
        # Code goes once per worker, counted as known only where the worker keeps it (the
        # task or actor it runs). Code inside another message, such as the spec a
        # get_actor() in a task looks up, travels whole and is not counted: the worker
        # does not keep it, and an actor of that class started there later would lack it.
        keeps_code = type(message) in KEEPS_CODE
        self.conn.send(message, self.code_ids if keeps_code else None)

    def send_urgent(self, message: ToWorker) -> None:
        """Send ``message`` (a cancel, a recall, an exit), and if a task or an actor's call
        of ours may run on the worker's reading thread (a sync actor's thread reads its
        own calls), signal it to read on elsewhere now (see
        :mod:`actorlib.backends.process.urgent`)."""
        self.send(message)
        if (self.running or self.actor is not None) and not self.dead:
            urgent.notify(self.pid)

    def kill(self) -> None:
        try:
            self.proc.send_signal(signal.SIGKILL)
        except ProcessLookupError:
            pass

    @property
    def idle(self) -> bool:
        return not self.running and self.actor is None and not self.dead and not self.retired

    def lendable(self, env_key: str) -> bool:
        """Whether a task of ``env_key`` may run here beside the tasks already here.

        Yes when every task here waits in ``get``: the core lent their CPUs, and the
        process, idle but for them, runs the new task on another of its threads (no new
        process, ~100 ms each, per task of a nested fan-out). Not beside a task that sets
        env_vars or GPUs: the environment is the process's.
        """
        return (bool(self.running) and len(self.blocked) == len(self.running)
                and not self.private and self.actor is None and not self.dead
                and not self.retired and not self.expected_exit and self.env_key == env_key)

    def _on_message(self, message: FromWorker) -> None:
        kind = type(message)
        if kind is Alive:
            self.last_alive = self.backend.loop.time()
            return
        if kind is Output or self.held:
            self.backend._output(self, message)
            return
        # Handled on the core loop, after everything this worker sent before it.
        self.backend.events.post(self._posted[kind], message)

    def _on_messages(self, messages: list[FromWorker]) -> None:
        """What one read brought, in order: ``_on_message`` of each, but the messages the
        core handles go to its loop in one post for the lot (each costs the core's loop
        a post otherwise, three per call a task makes)."""
        post = self.backend.events.post
        posted = self._posted
        run: list[tuple[Callable[[Any], None], FromWorker]] = []
        for message in messages:
            kind = type(message)
            if kind is Alive or kind is Output or self.held:
                if run:  # posted before output is written, as one at a time would be
                    post(_handle_all, run)
                    run = []
                self._on_message(message)
            else:
                run.append((posted[kind], message))
        if len(run) == 1:  # (one: posted as it is, without ``_handle_all``'s frame)
            post(*run[0])
        elif run:
            post(_handle_all, run)

    def _on_process_exit(self, code: int) -> None:
        loop = self.backend.loop
        self.exit_code = code
        self._exited = True
        self._maybe_dead()
        if not self._eof:  # a socket that never closes must not keep the death unseen
            loop.call_later(2.0, self._on_eof)

    def _on_eof(self) -> None:
        self._eof = True
        self._maybe_dead()
        if not self._exited:  # it hung up but lives on: an exec, its sockets closed
            self.backend.loop.call_later(2.0, self._hung_up)

    def _hung_up(self) -> None:
        """Still alive 2 s after its socket closed: it no longer runs actorlib's worker
        (user code exec'd another program, or closed every fd), and its work would wait
        for as long as that program lives. Killed, so its work fails or is retried now."""
        if not self._exited and not self.dead:
            self.kill_reason = self.kill_reason or (
                "it closed its connection without exiting: did the task exec another "
                "program or close the worker's file descriptors?"
            )
            self.kill()

    def _maybe_dead(self) -> None:
        if self._exited and self._eof and not self._death_posted:
            self._death_posted = True
            if self.held:  # after the messages still waiting behind its output
                self.backend._output(self, EXITED)
            else:
                self.backend.events.post(self.backend._on_exit, self)
