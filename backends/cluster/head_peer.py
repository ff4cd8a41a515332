"""The head's view of one authenticated connection: a node, a driver or a status query.

A peer's messages are handed to the head on the core loop in the order they came; what
the head knows of a node (its running tasks, its actors, where its objects are served)
and of a driver (its job) lives here, with the connection it came by.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from actorlib.backends.transport import wire
from actorlib.backends.transport.client_link import ClientLink
from actorlib.backends.transport.messages import FromHead
from actorlib.core.records import NodeInfo

if TYPE_CHECKING:
    from actorlib.backends.cluster.head import HeadBackend


class HeadPeer:
    """One authenticated connection: a node, a driver or a status query."""

    def __init__(self, head: HeadBackend, role: str, address: str) -> None:
        self.head = head
        self.role = role
        self.address = address
        self.conn = wire.Connection(head.loop, self._on_message, self._on_lost, salvage=True)
        self.link = ClientLink(head.client, self.send, head.events.post)
        #: What this peer may send: a handler per record of its role's vocabulary.
        self.handlers = head.handlers[role]
        self.gone = False
        self.last_seen = time.monotonic()
        # nodes only
        self.node: NodeInfo | None = None
        self.session = ""
        self.objects: tuple[str, int] | None = None
        self.ready = False
        self.running: dict[int, int] = {}  # task id -> attempt
        self.actors: dict[int, int] = {}  # actor id -> incarnation
        self.stats: dict[str, Any] = {}
        # drivers only: the id prefix it mints with, which names its job in the core
        self.job: int | None = None
        self.log_to_driver = False  # whether it wants its tasks' output

    def send(self, message: FromHead) -> None:
        # Code travels whole on every message: a node passes specs on to workers that may
        # not have seen the code yet, and keeps no copy of its own.
        self.conn.send(message)

    def _on_message(self, message: Any) -> None:
        self.last_seen = time.monotonic()
        # On the core loop, after everything before it.
        self.head.events.post(self.head._handle, self, message)

    def _on_lost(self) -> None:
        self.head.events.post(self.head._peer_lost, self)
