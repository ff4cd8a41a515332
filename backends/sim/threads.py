"""Worker emulation: threads that run user code only while they hold the baton.

User code runs on real threads (it may block in ``get``, sleep, hold locks), but only one
thread runs at a time: a thread hands a :class:`SimWorker` the baton (``_switch``) and
waits on its own lock until the worker hands it back, when its job ends or when it would
block (``_park``). A worker between jobs runs a job it is given inline (``_run_here``).
The core is lent to these threads while one drives (``_borrow``), so the baton's holder
runs the core's work itself. :class:`Baton` is the part of the backend that owns these
threads and the core's quiescence (``_quiesce``, ``_hand_back``, :class:`Posting`). Separate
because this thread hand-off is the one piece of the simulator that is about threads and
locks; everything above it sees steps that run to completion one at a time.
"""

from __future__ import annotations

import _thread
import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

from actorlib.backends.base import CoreEvents, CoreView
from actorlib.backends.runner.interrupts import held_back, raise_in_thread, until_done
from actorlib.backends.sim.loop import Clock
from actorlib.core.interruptible import unshield_signals

__all__ = ["Baton", "CancelInterrupt", "Posting", "SimWorker", "Unwind", "Wait"]

log = logging.getLogger("actorlib.sim")

# The worker each simulator thread is, by thread id: found by ``CancelInterrupt``.
_workers: dict[int, SimWorker] = {}


class Unwind(BaseException):
    """Raised in user code whose worker the simulation killed or stopped."""


class CancelInterrupt(KeyboardInterrupt):
    """The KeyboardInterrupt a cancel sends a preempted worker's thread (``_interrupt``).

    Made in that thread as the exception is raised there, so making it marks the
    interrupt landed: the worker's ``_enter`` then owes nothing (a task that caught it
    may go on, e.g. ``get`` a cleanup call, as on the thread backend). Without it,
    ``_enter`` could not tell a landed interrupt from a pending one."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(args or ("The task was cancelled.",)))
        worker = _workers.get(_thread.get_ident())
        if worker is not None:
            # No ``mutex``: it may land while this thread holds it (in ``_enter``). A
            # plain store, after the ``_interrupt`` that set it (it sent this).
            worker.interrupted = False


class Wait:
    """What a paused thread waits for: ``ready()``, or virtual time reaching ``deadline``."""

    __slots__ = ("deadline", "ids", "ready", "serial", "timed_out")

    _serials = 0

    def __init__(
        self, ready: Callable[[], bool], deadline: float | None, ids: list[int]
    ) -> None:
        self.ready = ready
        self.deadline = deadline
        self.ids = ids
        self.timed_out = False
        # Made by the one thread running now: the same sequence in every replay.
        Wait._serials += 1
        self.serial = Wait._serials


class SimWorker:
    """A thread that runs user code only while it holds the baton."""

    __slots__ = (
        "abandoned", "arg", "back", "detached", "go", "in_user", "index", "interrupted", "job",
        "label", "may_chain", "mutex", "on_done", "owed", "owner", "parked", "pinned_to",
        "resumer", "sim", "thread", "unwind", "unwound", "wait",
    )

    def __init__(self, sim: Baton, index: int) -> None:
        self.sim = sim
        self.index = index
        self.go = _thread.allocate_lock()
        self.go.acquire()
        # Released by whoever this worker hands the baton to (when it takes steps itself).
        self.back = _thread.allocate_lock()
        self.back.acquire()
        self.resumer = sim._back  # the lock its resumer waits on: released to hand back
        self.may_chain = False  # its job is the last thing its resumer's step does
        # Its job: ``job(arg)``, then ``on_done(arg, unwound)`` (no closure made a job).
        self.job: Callable[[Any], None] | None = None
        self.on_done: Callable[[Any, bool], None] | None = None
        self.arg: Any = None
        self.wait: Wait | None = None
        self.unwind = False
        self.unwound = False
        # Preemption (``Baton._switch``): ``in_user`` while it runs user code; ``detached``
        # once the thread that handed it the baton stopped waiting for it (it runs on in
        # real time, beside the simulation, until it needs the baton again: ``_enter``);
        # ``interrupted`` while a KeyboardInterrupt sent to it (a cancel) is pending (it
        # is cleared as it lands: ``CancelInterrupt``);
        # ``owed`` once a cancel's interrupt could not land in its user code (it had left
        # it, or it was about to): raised when it rejoins the run; ``abandoned`` once its
        # task ended for everyone while it ran on (a forced cancel, a kill): it never
        # runs user code again. All five change under ``mutex``.
        self.mutex = _thread.allocate_lock()
        self.in_user = False
        self.detached = False
        self.interrupted = False
        self.owed = False
        self.abandoned = False
        self.label = ""
        self.owner: Any = None
        # The sync actor whose every job runs on this thread (``Baton._launch``'s ``pin``),
        # and whether it waits for that actor's next job outside the pool of idle workers.
        self.pinned_to: Any = None
        self.parked = False
        self.thread = threading.Thread(
            target=self._main, name=f"actorlib-sim-{index}", daemon=True
        )
        self.thread.start()

    def _main(self) -> None:
        # User code runs here, and this thread may have been started by one of actorlib's
        # shielded threads (the core's, say), whose mask it inherits: a process the user
        # code starts would then ignore ``terminate()``.
        unshield_signals()
        sim = self.sim
        sim._by_ident[_thread.get_ident()] = _workers[_thread.get_ident()] = self
        try:
            while True:
                self.go.acquire()
                job = self.job
                if job is None:
                    return
                self.unwound = False
                try:
                    job(self.arg)
                except Unwind:
                    self.unwound = True
                except BaseException:  # a bug of the simulator's own job code
                    log.exception("actorlib sim: internal error in a worker")
                if sim._preempt > 0 and sim._enter(self, ending=True):  # took the baton back
                    self.unwound = self.unwound or self.unwind
                self.job = None
                sim._posted = True  # its job may have posted to the core (as ``_run_worker``)
                if not sim._reply_on_controller:
                    # Report the end here, before the baton goes back through the core:
                    # the core has handled the reply when the controller wakes.
                    done, self.on_done = self.on_done, None
                    arg, self.arg = self.arg, None
                    if done is not None:
                        done(arg, self.unwound)
                    if self.may_chain and not self.unwound:
                        sim._take_steps(self)
                sim._hand_back(self)
        finally:
            sim._by_ident.pop(_thread.get_ident(), None)
            _workers.pop(_thread.get_ident(), None)
            self.resumer.release()  # the controller waits for the exit too


class Posting:
    """The core's events, noting that something was posted (the core must go quiet).
    Each wrapped method is made once, on first use, and kept as an attribute."""

    def __init__(self, events: CoreEvents, sim: Baton) -> None:
        self._events = events
        self._sim = sim

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._events, name)
        if not callable(attr):
            return attr
        sim = self._sim

        def posting(*args: Any) -> Any:
            sim._posted = True
            return attr(*args)

        setattr(self, name, posting)
        return posting


class Baton:
    """The backend's workers and the hand-off of the one baton between them."""

    _raw_events: CoreEvents
    _core: CoreView  # the core in this process: lent while the simulation drives
    _core_loop: asyncio.AbstractEventLoop

    def __init__(self) -> None:
        self.clock = Clock()
        self._by_ident: dict[int, SimWorker] = {}
        self._workers: list[SimWorker] = []
        #: The workers paused in ``_park`` (a turn looks at ``_workers`` only if any is):
        #: a dict, whose single updates are atomic for a preempted worker parking beside.
        self._parked: dict[SimWorker, None] = {}
        self._idle: list[SimWorker] = []
        self._back = _thread.allocate_lock()
        self._back.acquire()
        self._stopping = False
        self._reply_on_controller = False
        self._posted = True  # something may have reached the core since it was last quiet
        self._lent = False  # the core is lent to the baton's holders (see ``_borrow``)
        self._driver_ident: int | None = None
        self._borrow_ident: int | None = None  # the thread that drives with the core lent
        self._preempt = 0.0  # seconds of real time a step may run before it is preempted
        self._rejoined = threading.Event()  # a preempted worker wants the baton back

    # -- preemption (settings.preempt > 0) -------------------------------------------------

    def _user(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run user code ``fn(*args, **kwargs)`` on this worker, preemptible when
        ``preempt`` > 0."""
        if self._preempt <= 0:
            return fn(*args, **kwargs)
        worker = self._by_ident[_thread.get_ident()]
        worker.in_user = True
        try:
            return fn(*args, **kwargs)
        finally:
            self._enter(worker)

    def _enter(self, worker: SimWorker, ending: bool = False) -> bool:
        """The worker leaves user code for the simulator's: if it was preempted, it waits
        for the baton first (resumed as any paused worker is). Whether it was.

        A cancel that found it out of its user code (or whose interrupt had not landed
        yet) is raised here once it holds the baton, as ``KeyboardInterrupt`` (so where
        it lands is a step of the run, not a moment of real time); a worker whose task
        was abandoned meanwhile unwinds at once, without the baton (its task has ended
        for everyone, so it touches nothing of the run), and rejoins only when its job
        has ended (``ending``: the job is over, nothing is raised)."""
        with worker.mutex:
            worker.in_user = False
            detached = worker.detached
            abandoned = worker.abandoned
            if worker.interrupted:  # sent, not landed: it must not land from here on
                worker.interrupted = False
                worker.owed = True
                raise_in_thread(worker.thread.ident or 0, None)
        if abandoned and not ending:
            raise Unwind()
        if detached:
            try:
                self._park(worker, Wait(_always, None, []))
            except Unwind:
                if not ending:
                    raise  # killed meanwhile
                # (the job is over: the caller sees ``worker.unwind``)
        # (It holds the baton now, or was never preempted: these no longer change.)
        if ending:
            worker.owed = worker.abandoned = False
        elif worker.abandoned:  # abandoned before it was back (it unwinds with the baton)
            raise Unwind()
        elif worker.owed:
            worker.owed = False
            raise CancelInterrupt()
        return detached

    def _preempted(self, worker: SimWorker) -> None:
        """A worker ran user code for longer than ``preempt`` seconds of real time: it now
        runs on beside the simulation. Overridden to record it."""

    def _interrupt(self, worker: SimWorker) -> bool:
        """KeyboardInterrupt in a preempted worker's user code (a cancel), as the thread
        backend does: now if it runs user code, else when it rejoins the run (``_enter``).
        False if it is not preempted (any more): it is paused, or runs with the baton."""
        with worker.mutex:
            if not worker.detached:
                return False
            # Owed until sent: if its user code ends first, ``_enter`` raises it.
            worker.owed = True
            if worker.in_user:
                until_done(worker.mutex, lambda: self._send_interrupt(worker))
            return True

    def _abandon(self, worker: SimWorker) -> bool:
        """A preempted worker's task ends for everyone now (a forced cancel, a kill): it is
        interrupted as by :meth:`_interrupt`, and unwinds as soon as it is back in the
        simulator's code, never running user code again (``_enter``). False if it is not
        preempted (any more): then it is paused, and is unwound as any paused worker."""
        with worker.mutex:
            if not worker.detached:
                return False
            worker.abandoned = True
            if worker.in_user:
                worker.owed = True  # (an abandoned worker unwinds in ``_enter`` first)
                until_done(worker.mutex, lambda: self._send_interrupt(worker))
            return True

    @staticmethod
    def _send_interrupt(worker: SimWorker) -> bool:
        """(``mutex`` held) The interrupt owed to a preempted worker's user code, sent
        unless that code is importing or in a finalizer (False: not yet, see
        :mod:`~actorlib.backends.runner.interrupts`). True once sent, or when the user
        code has ended meanwhile (``_enter`` has taken the debt over)."""
        if not (worker.in_user and worker.owed):
            return True
        ident = worker.thread.ident or 0
        if held_back(ident):
            return False
        worker.owed = False
        worker.interrupted = True
        raise_in_thread(ident, CancelInterrupt)
        return True

    def _detached(self) -> bool:
        return any(w.detached for w in self._workers)

    def _await_rejoin(self) -> bool:
        """Nothing runs, but preempted workers run on: wait (real time) a little for one
        to come back. Whether any is still out."""
        if not self._detached():
            return False
        self._rejoined.wait(0.005)
        self._rejoined.clear()
        self._posted = True  # it may have posted to the core meanwhile
        return True

    def _hand_back(self, worker: SimWorker) -> None:
        """A worker gives the baton back to whoever handed it over, through the core: that
        thread wakes once the core has handled everything the worker posted (one wake-up
        fewer than a separate quiesce)."""
        if self._lent or self._stopping or self._core.idle():  # no round trip
            worker.resumer.release()
        else:
            self._raw_events.post(self._core_loop.call_soon, worker.resumer.release)

    def _take_steps(self, worker: SimWorker) -> None:
        """A worker whose job just ended (the last thing of the step that launched or
        resumed it) may take the next steps itself, instead of two thread switches to
        the controller and back: see ``SimBackend._take_steps``."""

    def _quiesce(self) -> None:
        """Wait until the core has handled everything posted so far, scheduling included."""
        if self._lent:
            self._core.drain()  # the baton's holder runs it: no thread switch
            return
        if self._core.idle():
            return
        lock = _thread.allocate_lock()
        lock.acquire()
        self._raw_events.post(self._core_loop.call_soon, lock.release)
        lock.acquire()

    def _borrow(self) -> None:
        """Have the core lent to this backend's threads for a drive: the baton's holder
        (the driver, a worker, the idle driver) runs the core's work itself, where it
        would otherwise post to the core's loop and wait for it (two thread switches a
        step). Only the baton's holder runs, so the core still has one owner at a time."""
        ident = _thread.get_ident()
        if self._lent and self._borrow_ident == ident:
            return  # kept from this thread's last drive (see ``SimBackend._blocking_wait``)
        self._give_back()  # kept by another thread (a driver that has gone)
        self._borrow_ident = ident
        for _ in range(3):  # a post from a thread outside the simulation may race it
            self._quiesce()
            if self._core.lend(self._is_ours):
                self._lent = True
                return

    def _give_back(self) -> None:
        if self._lent:
            self._lent = False
            self._core.reclaim()

    def _is_ours(self) -> bool:
        ident = _thread.get_ident()
        # Only the baton's holder runs: a worker, or the thread driving (not the driver
        # while the idle driver drives, nor a preempted worker: they run alongside, and
        # must wait for the core).
        worker = self._by_ident.get(ident)
        if worker is not None:
            return not worker.detached
        return ident == self._borrow_ident

    def _unpin(self, pin: Any) -> None:
        """``pin``'s actor is gone: its worker joins the pool once it is idle."""
        worker, pin.pinned = pin.pinned, None
        if worker is None:
            return
        worker.pinned_to = None
        if worker.parked:
            worker.parked = False
            self._idle.append(worker)

    def _take_worker(self) -> SimWorker:
        if self._idle:
            return self._idle.pop()
        worker = SimWorker(self, len(self._workers))
        self._workers.append(worker)
        return worker

    def _launch(
        self, job: Callable[[Any], None], on_done: Callable[[Any, bool], None], arg: Any,
        label: str, owner: Any, holder: Any = None, unwind: bool = False, pin: Any = None,
    ) -> None:
        """Run ``job(arg)`` on a worker until it ends or pauses, ``holder.worker`` set to
        the worker first (so what the job runs for can find it); ``on_done(arg, unwound)``
        when it ends.

        A worker taking steps itself between jobs runs the job here, on its own thread:
        no thread switch unless the job pauses (then it hands the baton back as any
        worker does, and its steps go on when it is resumed). ``pin`` (a sync actor's
        host, whose ``pinned`` names its worker): every job of that actor runs on one
        worker, kept for it, as its calls run on one thread on every backend (a
        thread-local it made stays its own); that worker runs nothing else."""
        me = self._by_ident.get(_thread.get_ident())
        kept: SimWorker | None = None if pin is None else pin.pinned
        if kept is not None and not (kept.parked or (kept is me and kept.job is None)):
            # Busy (it cannot be: its actor runs one job at a time, and a worker it
            # resumes never takes steps that could need it): a fresh one, not a hang.
            kept.pinned_to = pin.pinned = None
            kept = None
        worker: SimWorker
        if kept is not None:
            worker = kept
        else:
            free = me is not None and me.job is None and me.pinned_to is None
            worker = me if free and me is not None else self._take_worker()
            if pin is not None:
                pin.pinned, worker.pinned_to = worker, pin
        worker.parked = False
        worker.job = job
        worker.on_done = on_done
        worker.arg = arg
        worker.label = label
        worker.owner = owner
        worker.unwind = unwind
        if holder is not None:
            holder.worker = worker
        if worker is me:
            self._run_here(worker)
        else:
            self._switch(worker, chain=not unwind)

    def _run_here(self, worker: SimWorker) -> None:
        """Run the job just given to ``worker``, the calling thread's own."""
        job = worker.job
        assert job is not None
        worker.unwound = False
        try:
            job(worker.arg)
        except Unwind:
            worker.unwound = True
        except BaseException:  # a bug of the simulator's own job code
            log.exception("actorlib sim: internal error in a worker")
        if self._preempt > 0 and self._enter(worker, ending=True):  # took the baton back
            worker.unwound = worker.unwound or worker.unwind
        worker.job = None
        done, worker.on_done = worker.on_done, None
        arg, worker.arg = worker.arg, None
        worker.owner = None
        worker.unwind = False
        self._posted = True
        if done is not None:
            done(arg, worker.unwound)

    def _switch(self, worker: SimWorker, chain: bool = False) -> None:
        """Hand ``worker`` the baton; return when it finished its job or paused.

        ``chain``: the switch is the last thing the step does, so the worker may take the
        next steps itself once its job ends (``_take_steps``)."""
        me = self._by_ident.get(_thread.get_ident())
        back = self._back if me is None else me.back
        worker.resumer = back
        # A pinned worker's steps never wait on a worker that could be another pinned
        # one: what a pinned worker resumes hands back to it instead of taking steps.
        worker.may_chain = chain and (me is None or me.pinned_to is None)
        worker.go.release()
        if self._preempt <= 0 or self._stopping:
            back.acquire()
        elif not self._wait_or_preempt(worker, back):
            self._posted = True
            self._preempted(worker)
            return
        # Handed back through the core, it is quiet; a lent core has work queued.
        self._posted = self._stopping or self._lent
        if worker.wait is None:  # the job ended
            done, worker.on_done = worker.on_done, None
            arg, worker.arg = worker.arg, None
            worker.owner = None
            worker.unwind = False
            if worker.pinned_to is None:
                self._idle.append(worker)
            else:  # kept for its actor's next job
                worker.parked = True
            if done is not None:
                done(arg, worker.unwound)

    def _wait_or_preempt(self, worker: SimWorker, back: Any) -> bool:
        """Wait for ``worker`` to hand the baton back (True), or preempt it (False) once it
        has run user code for ``preempt`` seconds without doing so."""
        while not back.acquire(timeout=self._preempt):
            with worker.mutex:
                if back.acquire(False):
                    return True
                if worker.in_user:
                    worker.detached = True
                    return False
        return True

    def _resume(self, worker: SimWorker, timed_out: bool) -> None:
        wait = worker.wait
        if wait is not None:
            wait.timed_out = timed_out and not wait.ready()
        self._switch(worker, chain=True)

    def _unwind(self, worker: SimWorker) -> None:
        """End the user code a paused worker runs (its worker died)."""
        worker.unwind = True
        self._switch(worker)

    def _worker_wait(
        self, worker: SimWorker, lock: Any, timeout: float | None, ids: list[int]
    ) -> bool:
        preempt = self._preempt > 0
        in_user = worker.in_user
        try:
            if preempt:  # out of user code (the get), the baton taken back if need be
                self._enter(worker)
            if worker.unwind:
                raise Unwind()
            if timeout is not None and timeout <= 0.001:
                self._quiesce()
                return bool(lock.acquire(False))
            deadline = None if timeout is None else self.clock.now + timeout
            wait = Wait(lambda: not lock.locked(), deadline, ids)
            self._park(worker, wait)
            if wait.timed_out:
                return False
            lock.acquire()
            return True
        finally:
            if preempt:
                worker.in_user = in_user  # back to the user code that called get

    def _park(self, worker: SimWorker, wait: Wait) -> None:
        """Pause this worker (its own thread) until the controller resumes it."""
        if worker.unwind:
            raise Unwind()
        with worker.mutex:
            worker.wait = wait
            self._parked[worker] = None
            detached, worker.detached = worker.detached, False
        if detached:  # preempted: nobody waits for it to hand back; it asks to be resumed
            self._rejoined.set()
        else:
            self._hand_back(worker)
        worker.go.acquire()
        worker.wait = None
        del self._parked[worker]
        if worker.unwind:
            raise Unwind()


def _always() -> bool:
    return True
