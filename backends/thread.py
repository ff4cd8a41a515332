"""The thread backend: tasks on a pool of threads, each actor on threads of its own.

Good for I/O-bound work, for code that releases the GIL (numpy, most C extensions), and
for tests and notebooks where start-up must be instant. Semantics are the same as on
the process backend: arguments and results are pickled (a task never mutates the
caller's objects), code is unpickled once per worker, objects are read-only.

The work itself is done by a :class:`~actorlib.backends.runner.local_runner.LocalRunner`,
the same that runs inside every process worker; this module makes it a ``Backend``: one
node (this machine), worker output prefixed, a stop that does not block the core's loop.

Limits that come with sharing one process: ``runtime_env["env_vars"]`` is applied to the
process environment while the task runs, visible to code running beside it;
``runtime_env`` ``working_dir`` / ``py_modules`` are refused (``runtime_env_files`` is
empty: a cwd and imports cannot belong to one task); a running task can
be interrupted by ``cancel`` only between Python bytecodes (a C call such as ``time.sleep``
ends first). ``force=True`` cannot kill a thread either: it ends the task at once for the
caller and the scheduler (its ref fails, its CPU is free) and abandons the interrupted
thread, whose result is discarded whenever it returns.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import uuid
from typing import Any

from actorlib.backends import stacks
from actorlib.backends.base import Backend, BackendConfig, CoreEvents
from actorlib.backends.mapped_store import MappedHeapStore
from actorlib.backends.node_resources import local_node_resources
from actorlib.backends.output import thread_backend_started, thread_backend_stopped
from actorlib.backends.runner.actor_host import resolve
from actorlib.backends.runner.local_runner import LocalRunner
from actorlib.core import late_interrupts
from actorlib.core.exiting import exiting
from actorlib.core.ids import DRIVER_PREFIX, id_hex
from actorlib.core.records import ActorStart, CallRun, NodeInfo, TaskRun

log = logging.getLogger("actorlib")

#: How long ``stop`` waits for threads still running user code: in all, not per thread.
STOP_GRACE_S = 10.0
#: The same at interpreter exit (after Ctrl-C, say), after which they are abandoned.
EXIT_GRACE_S = 0.5


def this_process(node_id: str) -> list[dict[str, Any]]:
    """``Backend.workers`` of a backend that runs every task in the driver's process."""
    return [{
        "worker_id": id_hex(DRIVER_PREFIX), "pid": os.getpid(), "node_id": node_id,
        "worker_type": "DRIVER", "is_alive": True, "task_ids": None, "actor_id": 0,
        "exit_detail": None,
    }]


class ThreadBackend(Backend):
    name = "thread"
    store = MappedHeapStore()
    takes_back = True  # its runner holds the queued tasks in this process
    pipelines = True
    runs_core_inline = True  # the runner's methods are thread-safe; no asyncio in them

    _runner: LocalRunner | None = None

    async def start(self, events: CoreEvents, config: BackendConfig) -> list[NodeInfo]:
        self.events = events
        resources = local_node_resources(config)
        self.node_id = uuid.uuid4().hex[:16]
        thread_backend_started(config.options)  # lines from tasks get their prefix
        self.worker_log_dir = config.options.get("log_dir")  # this process's log, if kept
        stacks.enable_in_driver()  # tasks run here: `actorlib stack` asks this process
        late_interrupts.keep_cancels()  # and are cancelled here, finalizers included
        runner = self._runner = LocalRunner(events, self.store)
        # The core hands over every task and call: straight to the runner, no frame here.
        self.run_task = runner.run_task  # type: ignore[method-assign]
        self.run_call = runner.run_call  # type: ignore[method-assign]
        return [NodeInfo(self.node_id, resources, labels=dict(config.labels))]

    @property
    def runner(self) -> LocalRunner:
        assert self._runner is not None, "the thread backend was not started"
        return self._runner

    def workers(self) -> list[dict[str, Any]]:
        return this_process(self.node_id)

    def run_task(self, run: TaskRun) -> None:
        self.runner.run_task(run)

    def recall(self, task_id: int) -> None:
        self.runner.recall(task_id)

    def take_back(self, task_id: int) -> bool:
        return self.runner.take_back(task_id) is not None

    def start_actor(self, start: ActorStart) -> None:
        self.runner.start_actor(start)

    def run_call(self, run: CallRun) -> None:
        self.runner.run_call(run)

    def stop_actor(self, actor_id: int, *, force: bool) -> None:
        self.runner.stop_actor(actor_id, force=force)

    def cancel(self, id: int, *, force: bool) -> None:
        self.runner.cancel(id, force=force)

    def items_consumed(self, id: int, consumed: int) -> None:
        self.runner.items_consumed(id, consumed)

    async def stop(self) -> None:
        runner = self._runner
        if runner is not None:
            runner.stop()
            # At exit, threads still in user code are abandoned after a short grace.
            grace = EXIT_GRACE_S if exiting() else STOP_GRACE_S
            loop = asyncio.get_running_loop()
            done: asyncio.Future[None] = loop.create_future()

            def join_all() -> None:
                # A plain thread, not the loop's executor: this also runs from atexit,
                # when executors refuse new work. The loop stays free for threads still
                # finishing (their outcomes go through it).
                runner.join(grace, None if exiting() else log.warning)
                loop.call_soon_threadsafe(resolve, done)

            threading.Thread(target=join_all, name="actorlib-thread-stop", daemon=True).start()
            await done
        thread_backend_stopped()
        stacks.disable_in_driver()
        late_interrupts.restore_unraisable_hook()
