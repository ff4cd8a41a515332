"""A cluster driver's object store: a ``put``'s large buffers go to a node, never the head.

On the same machine as a node, the driver writes the buffers into that node's
shared-memory store itself (one copy, as the node's own workers do) and hands the files
over to the node, which then accounts for them, spills them and frees them like its own.
Elsewhere it streams them to a node's object server, which receives them straight into
new files of its store. Either way the head gets only their locations. Without any node
(a cluster still starting) they travel inline, as small values do.
"""

from __future__ import annotations

import random

from actorlib.backends.base import HeapStore, ObjectStore
from actorlib.backends.cluster.objects import NodeLinks
from actorlib.backends.cluster.transfer import encode, read_reply
from actorlib.backends.process.shm_files import byte_view, unlink
from actorlib.core.serialization import Serialized
from actorlib.exceptions import ObjectLostError, ObjectStoreFullError

__all__ = ["DriverStore"]


class DriverStore(ObjectStore):
    """Seals a driver's values: large buffers into a node's store. Thread-safe."""

    def __init__(self, links: NodeLinks) -> None:
        self.links = links
        self._heap = HeapStore()

    def seal(self, obj: Serialized) -> Serialized:
        if not any(byte_view(b).nbytes for b in obj.buffers):
            return self._heap.seal(obj)
        here = self.links.local_node()
        if here is not None:
            return self._into_local(here, obj)
        sessions = list(self.links.directory())
        if not sessions:
            return self._heap.seal(obj)
        return self._send(random.choice(sessions), obj)

    def _into_local(self, session: str, obj: Serialized) -> Serialized:
        store = self.links.local_store(session)
        assert store is not None  # local_node() found it
        store.seal(obj)  # files named as the node's own
        locations = [loc for loc in obj.locations or () if loc is not None]
        try:
            ok, error = self.links.pool.request(self.links.address(session),
                                                ("adopt", locations))
            if not ok:
                raise ObjectLostError(f"the node refused the object's files: {error}")
        except BaseException:
            for path, _ in locations:
                unlink(path)
            raise
        return obj

    def _send(self, session: str, obj: Serialized) -> Serialized:
        """Stream the buffers to the node of ``session``: ``write`` (go-ahead), bytes, reply."""
        links = self.links
        address = links.address(session)
        raws = [byte_view(b) for b in obj.buffers]
        sock = links.pool.connect(address, fresh=True)
        try:
            sock.sendall(encode(("write", [raw.nbytes for raw in raws])))
            ok, error = read_reply(sock)
            if not ok:
                if error.startswith("ObjectStoreFullError"):
                    raise ObjectStoreFullError(error.partition(": ")[2])
                raise ObjectLostError(f"could not store the object on a node: {error}")
            try:
                for raw in raws:
                    sock.sendall(raw)
                ok, result = read_reply(sock)
            except (ConnectionError, EOFError) as exc:
                raise ObjectLostError(
                    f"the node at {address[0]}:{address[1]} closed the connection while "
                    f"receiving the object ({exc}); its shared memory may be full"
                ) from exc
            if not ok:
                raise ObjectLostError(f"could not store the object on a node: {result}")
        except BaseException:
            sock.close()
            raise
        links.pool.release(address, sock)
        obj.buffers = [raw.toreadonly() for raw in raws]
        obj.locations = list(result)
        return obj
