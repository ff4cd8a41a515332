"""A cancel's interrupt that lands in a finalizer, raised again in the task it was for.

A cancel interrupts a running task with ``KeyboardInterrupt`` at its next bytecode, and
that may be the first bytecode of a finalizer: an ``ObjectRef``'s ``__del__`` sending
its drop as the task lets a ref go (``counter.incr.remote()`` as a statement does), or
any other ``__del__`` or weakref callback. Python prints and drops what a finalizer
raises ("Exception ignored in"), so the task ran on as if never cancelled: to its next
blocking ``get``, or to its end, or for ever in a loop that never waits.

So the interrupt is raised again in the frame the finalizer interrupted, as soon as that
frame has control back from a call: a C function or a Python function it called returns
into it, or it returns itself. That is where a cancel's own interrupt may land too; not at
a call (it would skip the call, such as the ``__exit__`` that releases a lock), not in the
finalizer (dropped again), and not in another frame (most likely the next finalizer). A
``get`` that would block first raises it instead (the task may wait there for good).

The watch is a profile function on the task's thread (``sys.setprofile``), for the few
bytecodes until the frame gets control back. It is set only in a process whose task
threads are actorlib's (:func:`keep_cancels` installed: a worker, a thread or sim
driver): in a Ray worker the frame may be Ray's own, where an interrupt at a point of our
choosing left Ray's ``get`` waiting for good. Nor while a profiler holds that thread's
hook. There, the next ``get`` alone raises it.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any, TypeVar

from actorlib.core.execution_context import ExecutionContext, current_execution

F = TypeVar("F", bound=Callable[..., Any])

#: The code of actorlib's own finalizers (a ref's and an actor handle's ``__del__``): a
#: cancel's interrupt waits until its thread is out of them (the runners look, see
#: ``actorlib.backends.runner.interrupts``). Raised again from there, the interrupt
#: still ends the task, but the finalizer's work is cut short: a ref's drop never sent
#: keeps its object alive until shutdown.
FINALIZERS: set[CodeType] = set()

#: Held by code that a cancel's interrupt must not cut short at all (a worker
#: connection's write of what other threads queued), and by a runner from its look at a
#: thread (``held_back``) to the interrupt it raises: so the two never cross (the look
#: alone could let the thread walk in before the raise). See :func:`settle`. Reentrant: a
#: collection may run a ref's finalizer on a thread holding it, and its drop writes.
GATE = threading.RLock()


def settle() -> None:
    """Called first thing with :data:`GATE` held: an interrupt raised into this thread
    before the gate was taken lands here, where nothing has begun yet (a Python call is
    where a pending interrupt is raised)."""


def _renew_gate() -> None:
    """In a forked child: the parent's thread that held the gate did not come along."""
    global GATE
    GATE = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_gate)


def finalizer(fn: F) -> F:
    """Mark ``fn`` as one of :data:`FINALIZERS`."""
    FINALIZERS.add(fn.__code__)
    return fn


def raise_again_later(execution: ExecutionContext) -> None:
    """(In a finalizer, or the unraisable hook, that caught a cancelled ``execution``'s
    interrupt.) Raise it again in the frame below the caller's (see the module)."""
    execution.lost_interrupt = True  # for the next get, if nothing below raises it first
    if sys.getprofile() is not None or _hook_before() is None:
        return
    catcher: FrameType | None = sys._getframe(1)  # the finalizer or hook that caught it
    assert catcher is not None
    target = catcher.f_back  # the frame it ran in
    if target is None:
        return

    def again(frame: FrameType, event: str, _arg: Any) -> None:
        nonlocal catcher
        if not execution.lost_interrupt:  # a get raised it meanwhile
            sys.setprofile(None)
            return
        if catcher is not None:  # its own events, up to its return
            if frame is catcher and event == "return":
                catcher = None
            return
        if (frame is target and event in ("c_return", "return")) or (
            event == "return" and frame.f_back is target
        ):
            execution.lost_interrupt = False
            sys.setprofile(None)
            raise KeyboardInterrupt

    sys.setprofile(again)


def _hook_before() -> Any:
    """The unraisable hook :func:`keep_cancels` wraps, None if it is not installed."""
    return getattr(sys.unraisablehook, "_actorlib_previous", None)


def keep_cancels() -> None:
    """Route a cancel's interrupt that escaped a finalizer back to its task (see the
    module) through ``sys.unraisablehook``; anything else goes to the hook there before.

    Process-wide: a worker installs it for good, a driver that runs tasks on its own
    threads for as long as its runtime lives (:func:`restore_unraisable_hook`).
    """
    if _hook_before() is not None:
        return
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        if unraisable.exc_type is KeyboardInterrupt:
            execution = current_execution.get()
            if execution is not None and execution.cancelled:
                raise_again_later(execution)
                return
        previous(unraisable)

    hook._actorlib_previous = previous  # type: ignore[attr-defined]
    sys.unraisablehook = hook


def restore_unraisable_hook() -> None:
    """Undo :func:`keep_cancels`, if it is still the hook (a program's own hook set since
    is left in place)."""
    previous = _hook_before()
    if previous is not None:
        sys.unraisablehook = previous
