"""The local runner: runs tasks and actors on threads of this process.

Built by the thread backend (its whole work) and by every process worker (which hands it
what the driver sends). It takes tasks (on a pool of :class:`TaskThread`, one task at a
time each, the tasks queued behind one kept with it), actors (an :class:`ActorHost`
each), cancels and recalls, and reports every end through the ``events`` it was given.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from actorlib.backends.base import CoreEvents, ObjectStore
from actorlib.backends.runner.streaming import Gates
from actorlib.backends.runner.task_thread import STOP, TaskThread
from actorlib.backends.runner.user_code import CodeCache, pack_error
from actorlib.core.records import ActorStart, CallRun, Outcome, TaskRun
from actorlib.exceptions import ActorDiedError, TaskCancelledError

#: How long ``join`` waits before saying what it waits for.
SAY_AFTER_S = 1.0

if TYPE_CHECKING:
    # Imported with the first actor: it needs asyncio, which a process that only runs
    # plain tasks (a pooled worker) never imports.
    from actorlib.backends.runner.actor_host import ActorHost, Reading


class LocalRunner:
    """Tasks and actors on threads of this process, reported to ``events``.

    ``store`` keeps the results' buffers. ``claim`` (in a process worker): whether a task
    queued behind another may start here, or the core took it back without asking (see
    :mod:`actorlib.backends.process.claims`); None: it always may. ``together`` (in a
    process worker): a block whose sends reach the core as one step (see
    ``TaskThread._run``).

    Its methods are called from one thread (the core's loop, or a worker's reader); what
    it reports may come from any of its threads.
    """

    def __init__(
        self, events: CoreEvents, store: ObjectStore,
        claim: Callable[[int], bool | None] | None = None,
        together: Callable[[], contextlib.AbstractContextManager[object]] = contextlib.nullcontext,
    ) -> None:
        self.events = events
        self.together = together
        self.alone = together is contextlib.nullcontext  # no block to enter per outcome
        self.store = store
        self.code = CodeCache()
        self.gates = Gates()  # the streams produced here, paused by backpressure
        self.claim = claim
        self._idle: list[TaskThread] = []
        self._threads: list[TaskThread] = []
        #: The thread of every task not finished (a task's thread drops its own entry).
        self.owner: dict[int, TaskThread] = {}
        self._actors: dict[int, ActorHost] = {}
        self._retired: list[ActorHost] = []  # stopped, their threads maybe still running
        #: A process worker's connection, which a sync actor's thread reads while idle
        #: (see ``ActorHost``); None in the thread backend.
        self.reading: Reading | None = None

    def sends_alone(self, outcome: Outcome) -> bool:
        """Whether ``outcome`` may go out by itself, outside a ``together`` block: the block
        only exists so that the drops of the refs a result held reach the core in the
        same write as the outcome, and a value holding no ref (nearly every one) has none."""
        if self.alone:
            return True
        values = outcome.values
        return (outcome.error is None and values is not None and len(values) == 1
                and not values[0].contained)

    # -- tasks ------------------------------------------------------------------------------

    def run_task(self, run: TaskRun) -> None:
        task_id = run.spec.task_id
        code = run.spec.function
        if code.id not in self.code.loaded:  # else known: nothing to remember
            self.code.remember(code)
        if task_id in self.owner and self.drop_stale(task_id):
            return
        if run.follows:
            owner = self.owner.get(run.follows)
            if owner is not None and owner.queue_behind(run):
                return
            # The task ahead has ended here: it starts on a thread of its own, claimed now
            # so that ``drop_stale`` never meets a copy with its claim undecided.
            if not self.claimed(run):
                return  # the core took it back meanwhile, and knows
        thread = self._take_thread()
        self.owner[task_id] = thread
        thread.jobs.put(run)

    def _take_thread(self) -> TaskThread:
        try:
            thread = self._idle.pop()
        except IndexError:
            thread = TaskThread(self, len(self._threads))
            self._threads.append(thread)
        with thread.lock:
            thread.busy = True
        return thread

    def adopt(self, task_id: int, thread: TaskThread) -> None:
        """``thread`` runs ``task_id`` (one of a worker's own, see ``InlineTasks``): cancels
        and recalls find it there."""
        self.owner[task_id] = thread

    def runs(self, task_id: int) -> bool:
        """Whether ``task_id`` was given here and has not ended."""
        return task_id in self.owner

    def claimed(self, run: TaskRun) -> bool:
        """Whether ``run`` may start here (a queued-behind task the core did not take back)."""
        return not run.follows or self.claim is None or bool(self.claim(run.spec.task_id))

    def forget(self, task_id: int, thread: TaskThread) -> None:
        """``thread``'s copy of the task ended, or will not start: forgotten unless the
        task was given again since, to another thread (see ``drop_stale``)."""
        if self.owner.get(task_id) is thread:
            del self.owner[task_id]

    def drop_stale(self, task_id: int) -> bool:
        """``task_id`` arrives again while a copy of it is still here: the core took that
        copy back from behind another task (through the claim table, without this
        process) and sent the task again. True if the new copy must be ignored.

        A copy still queued is dropped (False): left queued, it would keep the task's
        ``owner`` entry, and a recall of the new copy would find nothing to hand back (the
        core would wait for that recall for ever). But the task ahead may have ended
        first, and its thread claimed the old copy through the slot the core offered
        again for the new one: that copy runs (or is about to), the new one could never
        claim its spent slot, and the ``owner`` entry stays with the thread that runs
        the task, so a cancel or recall still finds it and the core gets one outcome.
        The thread claims under its lock (``TaskThread._next_follower``): the copy is
        found queued, or claimed, or forgotten, never between.
        """
        owner = self.owner.get(task_id)
        if owner is None:
            return False
        with owner.lock:
            if owner.unqueue(task_id) is not None:
                self.forget(task_id, owner)
                return False
            return self.owner.get(task_id) is owner

    def thread_idle(self, thread: TaskThread) -> None:
        self._idle.append(thread)

    def recall(self, task_id: int) -> None:
        """Hand a queued-behind task back to the core (``task_recalled``) if not started."""
        run = self.take_back(task_id)
        if run is not None:
            self.events.task_recalled(task_id, run.spec.attempt)

    def take_back(self, task_id: int) -> TaskRun | None:
        """Take back a task still queued behind another; None if it has started."""
        owner = self.owner.get(task_id)
        run = owner.take_follower(task_id) if owner is not None else None
        if run is not None:
            self.owner.pop(task_id, None)
            if not self.claimed(run):
                return None  # the core took it back first, and knows
        return run

    # -- actors -----------------------------------------------------------------------------

    def start_actor(self, start: ActorStart) -> None:
        old = self._actors.pop(start.spec.actor_id, None)
        if old is not None:
            old.stop(force=True)
            self._retired.append(old)
        from actorlib.backends.runner.actor_host import ActorHost

        self._actors[start.spec.actor_id] = ActorHost(self, start)

    def run_call(self, run: CallRun) -> None:
        host = self._actors.get(run.spec.actor_id)
        if host is None or host.incarnation != run.incarnation:
            died = ActorDiedError("The actor is not running.")
            error, _ = pack_error(died, run.spec.method, False)
            self.events.call_finished(Outcome(run.spec.call_id, run.spec.attempt, error=error))
            return
        if host.reader and host.run_here(run):  # read by the actor's own thread: run now
            return
        host.submit(run)

    def stop_actor(self, actor_id: int, *, force: bool) -> None:
        host = self._actors.pop(actor_id, None)
        if host is not None:
            host.stop(force)
            self._retired = [h for h in self._retired if h.alive()]
            self._retired.append(host)

    def join_stopped_actors(self) -> None:
        """Wait until every stopped actor's threads have ended (their queued calls run)."""
        for host in self._retired:
            host.join()

    # -- both -------------------------------------------------------------------------------

    def cancel(self, id: int, *, force: bool) -> None:
        queued = self.take_back(id)
        if queued is not None:
            spec = queued.spec
            error, _ = pack_error(TaskCancelledError(), spec.name, False)
            self.events.task_finished(Outcome(id, spec.attempt, error=error))
            return
        thread = self.owner.get(id)
        if thread is not None:
            abandoned = thread.abandon(id) if force else None
            if abandoned is None:
                thread.cancel(id)  # a no-op unless it runs there now
                return
            # force: the task ends now for everyone but its thread, which is interrupted
            # (KeyboardInterrupt) and abandoned; what it returns later is discarded (the
            # core no longer knows the task). Its CPU is free at once, as when Ray kills
            # the worker: a thread stuck in a C call must not hold a CPU for ever.
            run, followers = abandoned
            for follower in followers:  # back to the core, to start elsewhere
                self.owner.pop(follower.spec.task_id, None)
                self.events.task_recalled(follower.spec.task_id, follower.spec.attempt)
            self.owner.pop(id, None)
            error, _ = pack_error(TaskCancelledError(), run.spec.name, False)
            self.events.task_finished(Outcome(id, run.spec.attempt, error=error))
            return
        for host in self._actors.values():
            if host.cancel(id):
                return

    def items_consumed(self, id: int, consumed: int) -> None:
        """The consumer of the stream ``id`` produces has taken ``consumed`` items."""
        self.gates.consumed(id, consumed)

    def stop(self) -> None:
        """Stop every actor and task thread: running work is interrupted, none starts."""
        for host in list(self._actors.values()):
            host.stop(force=True)
            self._retired.append(host)
        self._actors.clear()
        for thread in self._threads:
            thread.jobs.put(STOP)
        for task_id, thread in list(self.owner.items()):
            thread.cancel(task_id)

    def join(self, timeout_s: float, say: Callable[[str], None] | None = None) -> None:
        """After ``stop``: wait up to ``timeout_s`` in all for the threads to end.

        User code cannot be killed, only interrupted between bytecodes: a thread in a
        long C call (``time.sleep``, a socket) ends when it ends, and is left behind
        after the timeout (a daemon thread, it dies with the interpreter). ``say``: told
        once, after :data:`SAY_AFTER_S`, what is still running and how long the wait may
        last, so a ``shutdown()`` that seems to hang says why.
        """
        start = time.monotonic()
        deadline = start + timeout_s
        threads = [t.thread for t in self._threads]
        threads += [t for host in self._retired for t in list(host.threads)]
        if say is not None and timeout_s > SAY_AFTER_S:
            for thread in threads:
                thread.join(max(0.0, start + SAY_AFTER_S - time.monotonic()))
            running = {t.thread: t.current.spec.name for t in self._threads
                       if t.current is not None}
            actors = {t: f"actor {host.spec.cls.name}" for host in self._retired
                      for t in list(host.threads)}
            busy = [running.get(t) or actors.get(t) or t.name for t in threads
                    if t.is_alive()]
            if busy:
                say(f"shutdown() waits up to {timeout_s:g} s for {len(busy)} thread(s) still "
                    f"in user code ({', '.join(busy[:5])}{', ...' if len(busy) > 5 else ''}"
                    "): a thread cannot be killed, only interrupted between bytecodes, and "
                    "a call such as time.sleep or a blocking read ends when it ends; those "
                    "still running then are left behind")
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
