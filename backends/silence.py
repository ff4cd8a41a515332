"""Judging a peer dead by its silence, only for silence this process listened to.

A head watches its nodes' heartbeats, a driver its workers' ``Alive`` messages, each with
a periodic look on its event loop. After a stall of its own (stopped with Ctrl-Z or
SIGSTOP, starved of CPU, swapping) the peers' messages of that while wait unread in their
sockets, and the loop runs the overdue timer before it reads them: every peer would look
silent. So a look that comes late skips its turn (:meth:`Looks.late`), and a peer that
looks silent is judged again :data:`RECHECK_S` later, once the loop has read what arrived.
Never two looks in a row skip: under a load that makes every look late, a frozen peer
must still be found (the loop reads between two looks, and the re-check still applies).
"""

from __future__ import annotations

#: How long after a look finds a peer silent it is judged again (the loop reads between).
RECHECK_S = 0.05


class Looks:
    """When the periodic look last ran: one later than two periods says this process
    was not listening meanwhile."""

    __slots__ = ("_every", "_last", "_skipped")

    def __init__(self, every: float, now: float) -> None:
        self._every = every
        self._last = now
        self._skipped = False  # the last look came late and judged nobody

    def late(self, now: float) -> bool:
        """Record a look at ``now``; whether it came late after one that did not (then
        it judges nobody). The look after a skipped one judges, late or not: the loop
        has read since, and a loop always behind must not shield a frozen peer."""
        late, self._last = now - self._last > 2 * self._every, now
        self._skipped = late and not self._skipped
        return self._skipped
