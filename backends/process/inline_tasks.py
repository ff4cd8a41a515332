"""Plain tasks run on the thread that read them, as ``multiprocessing.Pool``'s worker does.

A worker's reader thread hands each task to a task thread: a wake-up of that thread and a
hand-over of the GIL per task, which cost a trivial task more than the task itself (two
context switches and half a dozen futex calls per task, against about 0.5 with the task
run where it was read). So a worker runs a plain task (a sync function, not a generator)
on the reading thread itself when nothing else runs there, then the tasks the driver
queued behind it, and reads on. The connection
(:meth:`~actorlib.backends.transport.framing.BlockingConnection.run_inline`) passes
reading to a spare thread whenever such a task waits for an answer (a nested ``get``) or
runs long enough for the worker's watchdog to notice, so cancels, answers and ``Exit``
are still read while it runs. Everything else (async tasks, generators, actors, a task
arriving while another runs) goes to the local runner's threads as before.
"""

from __future__ import annotations

from threading import get_ident

from actorlib.backends.runner.local_runner import LocalRunner
from actorlib.backends.runner.task_thread import TaskThread
from actorlib.backends.transport.framing import BlockingConnection
from actorlib.core.records import TaskRun


class _ReaderTasks(TaskThread):
    """A task thread's bookkeeping (followers, cancels) for tasks run on the reader."""

    def __init__(self, runner: LocalRunner) -> None:
        super().__init__(runner, -1, start=False)
        self.runs_on = 0

    @property
    def ident(self) -> int:
        return self.runs_on


class InlineTasks:
    """Runs a worker's plain tasks on its reading thread (see the module's docstring)."""

    def __init__(self, runner: LocalRunner, conn: BlockingConnection) -> None:
        self._runner = runner
        self._conn = conn
        self._tasks = _ReaderTasks(runner)

    def run(self, run: TaskRun) -> bool:
        """Run ``run`` here and now if it may be; False: the caller hands it on."""
        spec = run.spec
        runner = self._runner
        if (spec.generator or spec.function.is_async or self._tasks.busy
                or not self._conn.may_run_inline()
                or (run.follows and runner.runs(run.follows))):  # queued behind a thread's
            return False
        runner.code.remember(spec.function)
        if spec.task_id in runner.owner and runner.drop_stale(spec.task_id):
            return True  # a copy sent before runs here already: this one's claim is spent
        if not runner.claimed(run):  # the core took it back meanwhile
            return True
        tasks = self._tasks
        with tasks.lock:
            tasks.busy = True
        runner.adopt(spec.task_id, tasks)
        self._conn.run_inline(lambda: self._run_all(run))
        return True

    def _run_all(self, first: TaskRun) -> None:
        """``first``, then each task queued behind it meanwhile, as a task thread does."""
        self._tasks.runs_on = get_ident()
        self._tasks.run_chain(first)
