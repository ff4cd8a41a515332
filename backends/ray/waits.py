"""Waiting for Ray's objects: the watches, Ray's completion callbacks, and the blocking
``get``/``wait`` that waits in Ray itself, in rounds of ``ray.wait``/``ray.get``.

A watch (``watch``/``unwatch``: the core's waiters) is served one of two ways. An
``await``, an Executor or a future gets one Ray completion callback per object, shared
by every watcher of it. A blocking ``get``/``wait`` made in this thread
(``waiting.blocking_wait``, :meth:`RayWaits.wait_blocking`) waits in Ray for the objects
it still lacks and reads those ready in one ``ray.get``, as plain Ray's ``get`` of a list
does; its rounds start short and grow, so a wait ended by other means (a shutdown, a
cancel) is seen within one.

A task whose cancel has landed (its ``KeyboardInterrupt`` raised in it once) waits by
completion callbacks instead: Ray (2.58 on) keeps such a task's cancellation flag up and
fails every later ``ray.wait``/``ray.get`` of it that checks for signals (one that times
out, one over objects in its shared store, one that lasts a second) with a
``KeyboardInterrupt`` of its own, with no signal behind it, where actorlib's cancel
interrupts a task once: a task that caught it may still ``get`` and ``wait``.

:class:`RayWaits` is part of :class:`~.client.RayCore`: its tables are the client's,
made in the client's ``__init__``, and guarded by the client's lock.
"""

from __future__ import annotations

import functools
import importlib
import threading
import time
from collections.abc import Callable
from itertools import compress, islice, repeat
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from actorlib.backends.ray.boxes import Box
from actorlib.backends.ray.connector import ray_module
from actorlib.backends.ray.errors import ended_itself, error_value
from actorlib.backends.ray.limits import Held, Limits
from actorlib.backends.ray.streams import RayStream
from actorlib.core import waiting
from actorlib.core.execution_context import ExecutionContext, current_execution
from actorlib.core.serialization import UNREAD, Serialized, serialize
from actorlib.exceptions import ObjectLostError, RuntimeClosedError

Watcher = Callable[[int, Serialized], None]

#: A watch of more ids than this is scanned on completions rather than indexed by id.
_INDEXED = 16
#: A blocking wait's rounds in Ray: the first this long, each next twice as long, up to
#: the last (a wait ended by other means than its objects, such as a shutdown, is seen
#: within a round).
_FIRST_ROUND_S = 0.05
_LAST_ROUND_S = 1.0
#: A round of a wait over more refs than this first asks Ray about the oldest this many.
_PROBE = 64
#: Rounds without a probe after probes that found too few, at most (doubling from one).
_PROBE_BACKOFF_MAX = 16

ray = ray_module()

# The passes over a wait's ids and refs run in C (``map``, ``compress``): a loop of
# ``wait`` over many refs makes them at each step, as Ray's own ``wait`` does in C++.
_ref_of = itemgetter(0)
_is_complete = itemgetter(2)
_second = itemgetter(1)
_UNKNOWN = (None, 0, False)  # stands for an entry this process does not hold


def _raise_signalled(exc: Exception) -> None:
    """Raise what a signal handler raised while Ray waited (a test's timeout, an
    application's alarm): Ray's ``get``/``wait`` keep it pending until they return and
    then raise a ``SystemError`` whose context it is (``KeyboardInterrupt`` alone is
    raised as itself)."""
    if isinstance(exc, SystemError) and isinstance(exc.__context__, BaseException):
        raise exc.__context__


class RayWaits:
    """The waiting half of :class:`~.client.RayCore` (see the module docstring)."""

    closed: bool
    _worker: bool
    _lock: threading.RLock
    _refs: dict[int, list[Any]]  # id -> [Ray ObjectRef (or a Held task), count, ready]
    _watches: dict[Any, set[int]]  # watcher -> ids it still waits for
    _watchers: dict[int, set[Any]]  # id -> its watchers (small watches only)
    _hooked: set[int]  # ids with a Ray completion callback pending
    _large: set[Any]  # watchers of many ids (not in ``_watchers``)
    _unread: set[Any]  # watchers that only wait (a ``wait``): handed ``UNREAD``
    _probe_skip: int
    _probe_backoff: int
    _thread: threading.local  # ``deferred``: this thread's watch to wait for
    _errors_as: dict[int, Serialized]
    _slots: dict[int, RayStream]
    _ends: dict[int, RayStream]
    _limits: Limits
    _landed: ExecutionContext | None  # the task whose cancel's interrupt landed

    if TYPE_CHECKING:  # the client's own
        def _check_open(self) -> None: ...
        def _ray_ref(self, id_: int) -> Any: ...
        def learn(self, refs: dict[int, Any]) -> None: ...
        def _slot_value(self, id_: int, data: Any) -> Serialized: ...
        def _slot_freed(self, id_: int) -> None: ...

    def ready_value(self, id_: int) -> Serialized | None:
        """The value of ``id_`` if this process knows it is complete."""
        return self.ready_values([id_], 1, False).get(id_)

    def ready_values(
        self, ids: list[int], need: int, fail_fast: bool, reads: bool = True,
    ) -> dict[int, Serialized]:
        """The objects this process knows are complete (its puts, completions it has
        seen), read in one ``ray.get``. Nothing else is asked of Ray here: probing a
        just-submitted task's ref (``ray.wait(timeout=0)``) asked the raylet and took a
        third of a ``get(f.remote())``. A wait that is about to give up at a zero
        timeout asks Ray in :meth:`flush` instead. ``reads`` False (a ``wait``): none is
        read (a ``ray.get`` per step of a ``wait`` loop, which Ray's own ``wait`` does
        not make), unless a stream is open (reading its slots moves it on)."""
        if len(ids) == 1 and reads and not self._slots and not self._errors_as:
            return self._read_one(ids[0])
        with self._lock:
            table = self._refs
            complete = compress(ids, map(_is_complete, map(table.get, ids, repeat(_UNKNOWN))))
            chosen = [(id_, table[id_][0]) for id_ in islice(complete, need)]
        if not chosen:
            return {}
        if not reads and not self._slots:
            return dict.fromkeys(map(_ref_of, chosen), UNREAD)
        return self._read_all(chosen, fail_fast)

    def _read_one(self, id_: int) -> dict[int, Serialized]:
        """:meth:`ready_values` of one id, no stream or translated error about: a
        ``get(ref)`` (whose Python around Ray's own read was a tenth of a large
        array's ``get`` from a cold cache)."""
        entry = self._refs.get(id_)
        if entry is None or not entry[2]:
            return {}
        ref = entry[0]
        try:
            data = ray.get([ref])[0]
        except Exception:  # an error: as the value
            data = self._read(ref)
        return {id_: self.value_of(data)}

    def _read_all(self, chosen: list[tuple[int, Any]], fail_fast: bool) -> dict[int, Serialized]:
        """The values of complete Ray objects, in one ``ray.get``."""
        try:
            datas = ray.get([ref for _, ref in chosen])
        except Exception:  # one holds an error: read them one by one, errors as values
            datas = [self._read(ref) for _, ref in chosen]
        return self._values(chosen, datas, fail_fast)

    def _values(
        self, chosen: list[tuple[int, Any]], datas: list[Any], fail_fast: bool
    ) -> dict[int, Serialized]:
        """actorlib's values of ``chosen`` (id, Ray ref), whose Ray data are ``datas``."""
        got: dict[int, Serialized] = {}
        errors_as = self._errors_as
        slots = self._slots
        for (id_, _), data in zip(chosen, datas, strict=True):
            if slots and id_ in slots:
                value = got[id_] = self._slot_value(id_, data)
            else:
                value = got[id_] = self.value_of(data)
            if errors_as and (value.is_error or id_ in self._ends):
                value = got[id_] = errors_as.get(id_, value)
            if fail_fast and value.is_error:
                break
        return got

    @staticmethod
    def _read(ref: Any) -> Any:
        try:
            return ray.get(ref)
        except Exception as exc:  # Ray's errors, as the value
            return exc

    def watch(self, ids: list[int], callback: Watcher, reads: bool = True) -> None:
        """One Ray completion callback per Ray object, shared by every watcher of it (a
        loop of ``wait`` over the remaining refs would otherwise add one per ref and step,
        O(n^2) calls into Ray). A small watch is indexed by id; a large one (a ``wait``
        over many refs) is kept whole and scanned as objects complete, so that each step
        of such a loop costs set operations, not a Python loop over its refs."""
        self._check_open()
        # ``get``/``wait`` call ``wait_blocking`` next, in this thread: it waits in Ray.
        defer = (getattr(callback, "hook_follows", False)
                 and waiting.blocking_wait == self.wait_blocking)
        with self._lock:
            try:
                refs = dict(zip(ids, map(_ref_of, map(self._refs.__getitem__, ids)), strict=True))
            except KeyError:  # an object this process has not claimed yet, or none
                refs = {id_: self._ray_ref(id_) for id_ in ids}
            watched = self._watches.get(callback)
            if watched is None:
                watched = self._watches[callback] = set()
            watched.update(ids)
            if not reads:
                self._unread.add(callback)
            if len(watched) > _INDEXED:
                self._large.add(callback)
            else:
                for id_ in ids:
                    self._watchers.setdefault(id_, set()).add(callback)
            if not defer:
                new = refs.keys() - self._hooked
                if self._limits.standing:  # a held task's ids are hooked once submitted
                    new = {i for i in new if type(refs[i]) is not Held}
                self._hooked.update(new)
        if defer:
            earlier = getattr(self._thread, "deferred", None)
            self._thread.deferred = (callback, refs, reads)
            if earlier is not None:  # never reached its wait: never leave it unhooked
                self._hook_up(earlier[1])
            return
        for id_ in new:  # outside the lock: Ray may call back at once
            refs[id_]._on_completed(functools.partial(self._completed, id_))

    def _hook_up(self, refs: dict[int, Any]) -> None:
        """A completion callback for each of ``refs`` (id -> Ray ref) that has none."""
        if self.closed:
            return
        with self._lock:
            # What stood for a held task may be in ``refs`` (made earlier): such an id
            # was hooked when its task was submitted, or will be.
            new = {i for i in refs.keys() - self._hooked if type(refs[i]) is not Held}
            self._hooked.update(new)
        for id_ in new:
            refs[id_]._on_completed(functools.partial(self._completed, id_))

    def unwatch(self, ids: list[int], callback: Watcher) -> None:
        deferred = getattr(self._thread, "deferred", None)
        if deferred is not None and deferred[0] is callback:
            self._thread.deferred = None
        with self._lock:
            waiting = self._watches.get(callback)
            if waiting is None:
                return
            waiting.difference_update(ids)
            if not waiting:
                del self._watches[callback]
                self._large.discard(callback)
                self._unread.discard(callback)
            if callback in self._large:
                return
            for id_ in ids:
                watchers = self._watchers.get(id_)
                if watchers is not None:
                    watchers.discard(callback)
                    if not watchers:
                        del self._watchers[id_]

    def _completed(self, id_: int, data: Any) -> None:
        """Ray's completion callback (on Ray's thread)."""
        self._deliver(id_, data, hooked=True)
        if id_ in self._limits.tracked:
            self._slot_freed(id_)

    def _deliver(self, id_: int, data: Any, hooked: bool = False, unread: bool = False) -> None:
        """Hand a complete object (Ray's data, or a value :meth:`_read_all` made) to the
        watchers still waiting for it. ``unread``: ``data`` is the object's Ray ref, read
        only if a watcher reads (a ``wait`` is told it is ready, as Ray's ``wait`` is)."""
        with self._lock:
            if hooked:
                self._hooked.discard(id_)
            entry = self._refs.get(id_)
            if entry is not None:
                entry[2] = True
            candidates = [*self._watchers.pop(id_, ()), *self._large]
            callbacks = []
            for callback in candidates:
                waiting = self._watches.get(callback)
                if waiting is None or id_ not in waiting:
                    continue  # done already (or a small watch that grew large)
                callbacks.append(callback)
                waiting.discard(id_)
                if not waiting:
                    del self._watches[callback]
                    self._large.discard(callback)
                    if not unread:
                        self._unread.discard(callback)
            if unread:
                unread_only = self._unread.issuperset(callbacks)
                self._unread.difference_update(
                    c for c in callbacks if c not in self._watches)
        if not callbacks:
            return
        if unread:
            if unread_only and not (self._slots and id_ in self._slots):
                for callback in callbacks:
                    callback(id_, UNREAD)
                return
            data = self._read_all([(id_, data)], False)[id_]
        if type(data) is Serialized:
            value = data
        elif self._slots and id_ in self._slots:
            value = self._slot_value(id_, data)
        else:
            value = self.value_of(data)
        if self._errors_as and (value.is_error or id_ in self._ends):
            value = self._errors_as.get(id_, value)
        for callback in callbacks:
            callback(id_, value)

    def interrupt_landed(self, ctx: ExecutionContext | None) -> None:
        """In a worker: the cancel of the task running ``ctx`` has raised its
        ``KeyboardInterrupt`` in it (None: that task is over). Its later blocking waits
        wait by completion callbacks, not in Ray (see the module docstring)."""
        self._landed = ctx

    def landed_in(self, ctx: ExecutionContext) -> bool:
        """Whether the cancel's interrupt of the task running ``ctx`` has landed."""
        return self._landed is ctx

    def _cancel_landed(self) -> bool:
        """Whether this thread runs a task whose cancel's interrupt has landed."""
        landed = self._landed
        return landed is not None and landed is current_execution.get()

    def wait_blocking(
        self, lock: Any, timeout: float | None, ids: list[int], asynchronous: bool,
        need: int,
    ) -> bool:
        """``waiting.blocking_wait``: a blocking ``get``/``wait`` waits in Ray for the
        objects its watch (made just before, in this thread) still lacks, and reads those
        ready in one ``ray.get``, as plain Ray's ``get`` of a list does: no completion
        callback per object (Ray deserialized each alone on its callback thread, and a
        ``wait`` that gave up before that thread caught up missed objects complete in
        Ray). An ``await`` gets its completion callbacks now and waits for them."""
        deferred = getattr(self._thread, "deferred", None)
        self._thread.deferred = None
        if asynchronous or deferred is None or (self._worker and self._cancel_landed()):
            if deferred is not None:
                self._hook_up(deferred[1])
            if asynchronous:
                return True
            return bool(lock.acquire(timeout=-1 if timeout is None else timeout))
        start = time.monotonic()
        try:
            return self._wait_in_ray(lock, timeout, deferred, len(ids), need)
        except BaseException as exc:  # interrupted (a cancel): nothing will deliver to it now
            ctx = current_execution.get() if self._worker else None
            if ctx is not None and isinstance(exc, KeyboardInterrupt):
                # The cancel's interrupt (Ray's, raised by its wait): it has landed.
                self.interrupt_landed(ctx)
                if ctx.actor_id is not None:
                    # Ray (2.58 on) ends the wait of a cancelled actor call so, where
                    # actorlib never interrupts an actor call (it sees ``is_canceled()``):
                    # this wait goes on, by completion callbacks.
                    self._hook_up(deferred[1])
                    left = None if timeout is None else max(
                        timeout - (time.monotonic() - start), 0.0)
                    return bool(lock.acquire(timeout=-1 if left is None else left))
            self.unwatch(ids, deferred[0])
            raise

    def fetch_blocking(
        self, ids: list[int], need: int, fail_fast: bool, reads: bool,
    ) -> dict[int, Serialized] | None:
        """``waiting.blocking_fetch``: a driver's ``get`` (no timeout) of objects this
        process maps to Ray refs waits in one ``ray.get`` of them, and its ``wait`` in
        one ``ray.wait``, in rounds (a shutdown meanwhile is seen within one), with no
        watch: no other waiter is served by it (theirs are). None, for the usual watch
        and wait, where anything else is at stake: a worker's wait (its task's cancel),
        streams, tasks held over a limit, or an error Ray raises for one of them (the
        usual path reads them one by one)."""
        if self._worker or self._slots or self._limits.standing or (
                reads and need != len(ids)):
            return None
        if not reads:
            return self._wait_blocking_in_ray(ids, need)
        with self._lock:
            try:
                chosen = [(id_, self._refs[id_][0]) for id_ in ids]
            except KeyError:  # not claimed here yet, or let go
                return None
        refs = list(map(_second, chosen))
        while not self.closed:
            try:
                # Long rounds: each costs Ray a pass over all the refs, and only a
                # shutdown ends this wait otherwise (a Ctrl-C is Ray's to raise).
                datas = ray.get(refs, timeout=_LAST_ROUND_S)
            except ray.exceptions.GetTimeoutError:
                continue
            except Exception as exc:
                _raise_signalled(exc)
                return None
            got = self._values(chosen, datas, fail_fast)
            with self._lock:  # known complete: a later ``get`` reads them at once
                for entry in map(self._refs.get, got):
                    if entry is not None:
                        entry[2] = True
            return got
        return None

    def _wait_blocking_in_ray(self, ids: list[int], need: int) -> dict[int, Serialized] | None:
        """:meth:`fetch_blocking` for a ``wait``: the ids of the first ``need`` of
        ``ids`` Ray finds complete, each with ``UNREAD``. A loop of waits calls this
        once per object over all those left: it does as little per ref as it can."""
        with self._lock:
            try:
                refs = list(map(_ref_of, map(self._refs.__getitem__, ids)))  # in C
            except KeyError:  # not claimed here yet, or let go
                return None
        while not self.closed:
            try:
                ready = ray.wait(refs, num_returns=need, timeout=_LAST_ROUND_S)[0]
            except Exception as exc:  # a stream or a held task (not a ref), a duplicate
                _raise_signalled(exc)
                return None
            if len(ready) < need:
                continue
            if need == 1:
                found = [ids[refs.index(ready[0])]]
            else:
                done = set(ready)
                found = [id_ for id_, ref in zip(ids, refs, strict=True) if ref in done]
            with self._lock:  # known complete: a later ``get`` reads them at once
                for entry in map(self._refs.get, found):
                    if entry is not None:
                        entry[2] = True
            return dict.fromkeys(found, UNREAD)
        return None

    def _wait_in_ray(
        self, lock: Any, timeout: float | None, watch: tuple[Watcher, dict[int, Any], bool],
        total: int, need: int,
    ) -> bool:
        """Rounds of waiting in Ray until ``lock`` is released (the watch has what it
        needs, or was ended otherwise: a shutdown, a cancel) or ``timeout`` passes.
        Rounds are short at first and grow, so a release by other means is seen."""
        deadline = None if timeout is None else time.monotonic() + timeout
        step = _FIRST_ROUND_S
        callback, refs, reads = watch
        # Tasks held over their limit (see .limits) are not in Ray yet: once submitted,
        # their Ray refs are the client's (``refs`` has what stood for them).
        held = bool(self._limits.standing) and any(type(r) is Held for r in refs.values())
        while not lock.acquire(timeout=0):
            with self._lock:
                watched = self._watches.get(callback, ())  # in the caller's order:
                pending = list(compress(refs.items(), map(watched.__contains__, refs)))
                count = len(pending)
                if held:
                    pending = self._in_ray(pending)
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            if not count:  # delivered meanwhile: the lock says
                return bool(lock.acquire(timeout=-1 if left is None else left))
            missing = need - (total - count)
            if left == 0.0:  # the end: hand over all that is ready by now, then give up
                if pending:
                    self._ray_round(pending, len(pending), 0.0, reads)
                return bool(lock.acquire(timeout=0))
            wait = step if left is None else min(step, left)
            if pending:
                self._ray_round(pending, missing, wait, reads)
            elif lock.acquire(timeout=wait):
                return True
            step = min(step * 2, _LAST_ROUND_S)
        return True

    def _in_ray(self, pending: list[tuple[int, Any]]) -> list[tuple[int, Any]]:
        """With the lock held: ``pending`` (id, Ray ref or Held) as Ray refs, leaving
        out the tasks still held (their completion callbacks, hooked when they are
        submitted, deliver them)."""
        out = []
        for id_, ref in pending:
            if type(ref) is Held:
                entry = self._refs.get(id_)
                ref = entry[0] if entry is not None else None
                if ref is None or type(ref) is Held:
                    continue
            out.append((id_, ref))
        return out

    def _ray_round(
        self, pending: list[tuple[int, Any]], need: int, timeout: float, reads: bool = True,
    ) -> int:
        """Wait up to ``timeout`` in Ray for ``need`` of ``pending`` (id, Ray ref), then
        hand those ready to their watchers (how many): ``ray.get`` of them all when all
        are needed, else ``ray.wait`` and one ``ray.get`` of those ready (none for a
        ``wait``, ``reads`` False, unless another watcher reads them). A worker waits
        in ``ray.wait`` without fetching, as it always did: Ray then keeps its CPU for
        it (a ``ray.get`` would lend it to other tasks, and an ``Executor``'s tasks
        blocked in ``get`` would no longer be bounded by its ``max_workers``)."""
        refs = list(map(_second, pending))
        if reads and need >= len(pending) and timeout > 0 and not self._worker:
            try:
                datas = ray.get(refs, timeout=timeout)
            except ray.exceptions.GetTimeoutError:
                # Ray's get of a list waits for all of them: hand over those complete
                # by now, so that an error among them ends a fail-fast get at once.
                return self._ray_round(pending, len(pending), 0.0, reads)
            except Exception as exc:  # one holds an error: those ready, errors as values
                _raise_signalled(exc)
                return (self._ray_round(pending, len(pending), 0.0, reads)
                        or self._ray_round(pending, 1, timeout, reads))
            values = self._values(pending, datas, False)
        else:
            unique = list(dict.fromkeys(refs))  # Ray's wait refuses duplicates
            need = max(1, min(need, len(unique)))
            try:
                ready = self._probe(pending, unique, need) if timeout > 0 else []
                if not ready:
                    ready = ray.wait(unique, num_returns=need, timeout=timeout,
                                     fetch_local=not self._worker)[0]
            except SystemError as exc:
                _raise_signalled(exc)
                raise
            if not ready:
                return 0
            chosen = set(ready)
            found = list(compress(pending, map(chosen.__contains__, refs)))
            if not reads:
                for id_, ref in found:
                    self._deliver(id_, ref, unread=True)
                return len(found)
            values = self._read_all(found, False)
        for id_, value in values.items():
            self._deliver(id_, value)
        return len(values)

    def _probe(self, pending: list[tuple[int, Any]], unique: list[Any], need: int) -> list[Any]:
        """The first ``need`` complete of the oldest few of ``unique`` (``pending``'s Ray
        refs, in the caller's order), if that many are, marking the others complete so
        that the next waits of a loop read them at once; else none. A loop of waits over
        many refs mostly finds its objects complete in the order it made them: this asks
        Ray about a few, where waiting on all of them (and sweeping the rest for those
        complete too) made Ray look at every remaining ref twice per round."""
        if len(unique) <= _PROBE:
            return []
        if self._probe_skip > 0:  # recent probes found too few: the loop outran Ray
            self._probe_skip -= 1
            return []
        done = ray.wait(unique[:_PROBE], num_returns=_PROBE, timeout=0, fetch_local=False)[0]
        if len(done) < need:
            # A loop waiting for each next object as it completes gains nothing from a
            # probe (each costs as much as the wait that follows it): probe less often.
            self._probe_backoff = min(2 * self._probe_backoff or 1, _PROBE_BACKOFF_MAX)
            self._probe_skip = self._probe_backoff
            return []
        self._probe_backoff = 0
        self._known_complete(pending, done[need:])
        return done[:need]

    def _known_complete(self, pending: list[tuple[int, Any]], refs: list[Any]) -> None:
        """``refs`` of ``pending`` (id, Ray ref) are complete: ``ready_values`` reads them."""
        if not refs:
            return
        complete = set(refs)
        found = compress(pending, map(complete.__contains__, map(_second, pending)))
        with self._lock:
            for id_, _ in found:
                entry = self._refs.get(id_)
                if entry is not None:
                    entry[2] = True

    def flush(self) -> None:
        """A wait about to give up at a (near) zero timeout must still see the objects
        that are complete: ask Ray now about every watched object (the completion
        callbacks may not have run yet) and hand those ready to their watchers."""
        with self._lock:
            ids = set(self._watchers)
            for callback in self._large:
                ids.update(self._watches.get(callback, ()))
            pairs = []
            for id_ in ids:
                try:
                    ref = self._ray_ref(id_)
                except (RuntimeClosedError, ObjectLostError):
                    # Let go by this process while watched (an Executor's watch outlives
                    # the refs of futures settled otherwise): its callback delivers it.
                    continue
                if type(ref) is not Held:  # not in Ray yet: not complete
                    pairs.append((id_, ref))
        if not pairs:
            return
        refs = [ref for _, ref in pairs]
        try:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
        except KeyboardInterrupt:
            if self._worker and self._cancel_landed():
                # Ray's standing flag of a cancel that landed, no new interrupt: this
                # wait sees what Ray's completion callbacks have reported.
                return
            raise
        if not ready:
            return
        ready_set = set(ready)
        chosen = [(id_, ref) for id_, ref in pairs if ref in ready_set]
        for id_, value in self._read_all(chosen, False).items():
            self._deliver(id_, value)

    def value_of(self, data: Any) -> Serialized:
        """A Ray object's content as actorlib's serialized value (errors translated)."""
        if type(data) is bytes:  # a plain value's pickle (see ``boxes.packed``)
            return Serialized(data)
        if isinstance(data, Box):
            self.learn(data.refs)
            return data.value
        if isinstance(data, BaseException):
            exited = ended_itself(data)
            if exited is not None:
                _end_exited(exited)
            return error_value(data)
        return serialize(data)  # a value Ray made (a plain Ray task's)


def _end_exited(actor_hex: str) -> None:
    """Kill an actor that ended itself while other calls ran in it (see
    :func:`.errors.ended_itself`): those calls fail with ActorDiedError now, as on every
    backend, instead of holding the actor, and every later call with it, until they end."""
    try:
        worker: Any = importlib.import_module("ray._private.worker").global_worker
        worker.core_worker.kill_actor(ray.ActorID.from_hex(actor_hex), True)
    except Exception:  # gone already, or never known to this process
        pass
