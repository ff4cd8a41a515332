"""Where a cancel's interrupt may land in a task's thread: never inside one of actorlib's
finalizers (``actorlib.backends.runner.interrupts``).

A task that lets refs go in a loop spends much of its time in their ``__del__``. An
interrupt landing there was raised again in the task, but the drop the finalizer was
about to send was lost and the object lived until shutdown (1 to 2 objects in 20 cancels
on the thread backend). The shared behaviour is in ``test_cancel_kill.py``; here, the
mechanism, with a finalizer held open on purpose.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from actorlib.actor import ActorHandle
from actorlib.backends.runner.interrupts import held_back, raise_in_thread, until_done
from actorlib.core.late_interrupts import FINALIZERS
from actorlib.core.refs import ObjectRef

T = 10.0


class HeldClient:
    """A client whose ``drop_ref`` waits for the test: its caller's thread stays inside
    the ref's finalizer until then."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.dropped: list[int] = []

    def drop_ref(self, id_: int) -> None:
        self.entered.set()
        self.release.wait(T)
        self.dropped.append(id_)


def lets_a_ref_go(client: HeldClient, outcome: list[Any]) -> None:
    """A task's thread: lets a ref go, then runs on until it is interrupted."""
    try:
        ref = ObjectRef(7, client)
        del ref  # __del__ runs here, in client.drop_ref until the test releases it
        deadline = time.monotonic() + T
        while time.monotonic() < deadline:
            time.sleep(0.001)
        outcome.append("never interrupted")
    except KeyboardInterrupt:
        outcome.append(("interrupted after the drop of", list(client.dropped)))


def test_actorlibs_finalizers_are_known():
    assert ObjectRef.__del__.__code__ in FINALIZERS
    assert ActorHandle.__del__.__code__ in FINALIZERS


def test_an_interrupt_waits_until_its_thread_is_out_of_a_refs_finalizer():
    client, outcome = HeldClient(), []
    thread = threading.Thread(target=lets_a_ref_go, args=(client, outcome), daemon=True)
    thread.start()
    assert client.entered.wait(T)
    ident = thread.ident
    assert ident is not None
    assert held_back(ident)  # inside ObjectRef.__del__ (in the client it called)

    lock = threading.Lock()

    def attempt() -> bool:
        if held_back(ident):
            return False
        raise_in_thread(ident, KeyboardInterrupt)
        return True

    with lock:
        until_done(lock, attempt)  # as a runner sends a cancel's interrupt
    time.sleep(0.1)
    assert outcome == []  # not sent while the finalizer runs
    client.release.set()
    thread.join(T)
    assert outcome == [("interrupted after the drop of", [7])]


def test_a_thread_out_of_every_finalizer_is_not_held_back():
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, args=(T,), daemon=True)
    thread.start()
    try:
        assert thread.ident is not None
        assert not held_back(thread.ident)
    finally:
        stop.set()
        thread.join(T)
