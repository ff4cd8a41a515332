"""The head's questions to its nodes about their worker processes.

``actorlib stack`` and the dashboard's log page ask about workers that may run on other
machines; only the node beside a worker can dump its stacks or read its log file. The
head sends that node a ``NodeQuery`` and resolves a future with its ``NodeAnswer``: the
one node running the worker (known from its heartbeat's worker list), or every node for
the list of log files. Runs on the head's core loop.
"""

from __future__ import annotations

import concurrent.futures
import itertools
from typing import TYPE_CHECKING, Any

from actorlib.backends.transport.messages import NodeAnswer, NodeQuery
from actorlib.core.state import WorkerQuery

if TYPE_CHECKING:
    from actorlib.backends.cluster.head_peer import HeadPeer

Rows = list[dict[str, Any]]


class NodeQueries:
    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._waiting: dict[int, tuple[concurrent.futures.Future[Rows], HeadPeer]] = {}

    def ask(self, nodes: list[HeadPeer], query: WorkerQuery) -> concurrent.futures.Future[Rows]:
        """The answer of the node running worker ``pid`` (or of every node, for ``logs``;
        for ``log`` of a worker none runs, of the node that has its file)."""
        what, pid, _ = query
        if what == "logs":
            return self._gather([self._ask(node, query) for node in nodes])
        for node in nodes:
            rows = (node.stats or {}).get("worker_rows") or ()
            if any(row.get("pid") == pid and row.get("is_alive") for row in rows):
                return self._ask(node, query)
        if what == "log":
            # A worker that has exited (or that no heartbeat lists yet) left its log file
            # on its node, which ``logs`` lists: whichever node has the file answers.
            return self._found(self._gather([self._ask(node, query) for node in nodes]),
                               f"no log file of worker pid {pid} on the cluster's nodes")
        future: concurrent.futures.Future[Rows] = concurrent.futures.Future()
        future.set_exception(LookupError(
            f"no live worker with pid {pid} on the cluster's nodes; see `actorlib list workers`"
        ))
        return future

    @staticmethod
    def _found(rows: concurrent.futures.Future[Rows], missing: str
               ) -> concurrent.futures.Future[Rows]:
        """``rows``, or ``LookupError(missing)`` where no node had any."""
        found: concurrent.futures.Future[Rows] = concurrent.futures.Future()

        def done(_: concurrent.futures.Future[Rows]) -> None:
            got = rows.result()
            if got:
                found.set_result(got[:1])
            else:
                found.set_exception(LookupError(missing))

        rows.add_done_callback(done)
        return found

    def refresh(self, nodes: list[HeadPeer]) -> concurrent.futures.Future[None]:
        """Each node's worker rows as of now, kept in its ``stats`` as a heartbeat's are;
        resolved once every node has answered or is gone.

        A heartbeat's rows are up to a second old: a task placed since shows RUNNING
        with no process. A node handles its messages in order, so its answer covers
        every task the head sent it before asking."""
        parts = []
        for node in nodes:
            part = self._ask(node, ("workers", 0, 0))

            def store(done: concurrent.futures.Future[Rows], node: HeadPeer = node) -> None:
                if done.exception() is None and node.stats:  # before its first beat: wait
                    node.stats["worker_rows"] = done.result()

            part.add_done_callback(store)
            parts.append(part)
        refreshed: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._gather(parts).add_done_callback(lambda _: refreshed.set_result(None))
        return refreshed

    def _ask(self, node: HeadPeer, query: WorkerQuery) -> concurrent.futures.Future[Rows]:
        req = next(self._ids)
        future: concurrent.futures.Future[Rows] = concurrent.futures.Future()
        self._waiting[req] = (future, node)
        node.send(NodeQuery(req, *query))
        return future

    @staticmethod
    def _gather(parts: list[concurrent.futures.Future[Rows]]) -> concurrent.futures.Future[Rows]:
        """Every node's rows together; a node that could not answer is left out."""
        whole: concurrent.futures.Future[Rows] = concurrent.futures.Future()
        left = [len(parts)]
        if not parts:
            whole.set_result([])

        def one_done(_: concurrent.futures.Future[Rows]) -> None:
            left[0] -= 1
            if left[0] == 0:
                whole.set_result([row for part in parts if part.exception() is None
                                  for row in part.result()])

        for part in parts:
            part.add_done_callback(one_done)
        return whole

    def answered(self, message: NodeAnswer) -> None:
        entry = self._waiting.pop(message.req, None)
        if entry is None:
            return  # its node was declared gone meanwhile
        future = entry[0]
        if message.error is not None:
            future.set_exception(LookupError(message.error))
        else:
            future.set_result(list(message.rows))

    def node_lost(self, node: HeadPeer, why: str) -> None:
        for req, (future, asked) in list(self._waiting.items()):
            if asked is node:
                del self._waiting[req]
                future.set_exception(ConnectionError(why))
