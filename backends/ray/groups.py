"""actorlib's placement groups as Ray's, reachable from every process of the program.

actorlib names a group by an int id, which its handles and every
``PlacementGroupStrategy`` carry; Ray names it by its own ``PlacementGroupID``. A worker
that sees only actorlib's id (a child task captured into its parent's group, a handle
passed to a task) must find Ray's group, so the link lives in Ray's internal KV store,
beside the cluster it describes: ``pg/<actorlib id>`` holds Ray's id and the group's
spec from its creation to its removal (one read per group and process, then
remembered). A user's name is reserved there too (``name/<namespace>/<name>``, written
only if absent, so two processes cannot both take it), scoped by actorlib's namespace
as on every backend. Ray's own name for each group is ``actorlib-pg-<id>``, which
Ray's tools show.

Ray reserves the bundles, places the work and frees the resources; what Ray does not
do, this module does: refuse a group no set of nodes could hold (Ray would leave it
pending), refuse work sent to a group this process saw removed (Ray would leave it
waiting forever), and remove the groups a driver made when it shuts down while its Ray
connection stays up.
"""

from __future__ import annotations

import pickle
import threading
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from typing import Any

from actorlib.backends.ray.connector import ray_module
from actorlib.backends.ray.options import ray_selector
from actorlib.backends.ray.streams import core_worker
from actorlib.core.ids import id_hex
from actorlib.core.labels import describe_selector
from actorlib.core.placement_groups import never_fits
from actorlib.core.records import NodeInfo
from actorlib.core.scheduler import Node
from actorlib.core.specs import PlacementGroupSpec
from actorlib.exceptions import InfeasibleResourceError, NotSupportedError

ray = ray_module()

#: Ray's internal KV namespace of actorlib's records.
KV_NAMESPACE = "actorlib"
#: Ray's name of an actorlib group (and the prefix that tells actorlib's groups apart).
RAY_NAME_PREFIX = "actorlib-pg-"


def _kv() -> Any:
    from ray.experimental import internal_kv

    return internal_kv


def _group_key(group_id: int) -> bytes:
    return f"pg/{id_hex(group_id)}".encode()


def _name_key(namespace: str, name: str) -> bytes:
    return f"name/{namespace}/{name}".encode()


@dataclass
class _Group:
    spec: PlacementGroupSpec
    ray_group: Any  # Ray's PlacementGroup
    created_here: bool = False
    removed: bool = False
    tasks: list[int] = field(default_factory=list)  # return ids of tasks sent into it
    actors: list[int] = field(default_factory=list)  # actors this process made in it


class RayGroups:
    """This process's view of the program's placement groups. Any thread may call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._groups: dict[int, _Group] = {}
        #: Groups this process saw removed (shared with the feasibility checks).
        self.removed: set[int] = set()

    # -- creation -------------------------------------------------------------------------

    def create(self, spec: PlacementGroupSpec, nodes: list[NodeInfo]) -> None:
        """Reserve ``spec``'s group on Ray; raises at once if no set of nodes could hold
        it or its name is taken."""
        alive = [Node(n.node_id, dict(n.resources), dict(n.resources), labels=n.labels)
                 for n in nodes if n.alive]
        reason = never_fits(spec, alive)
        if reason is not None:
            raise InfeasibleResourceError(reason)
        selectors = [ray_selector(s) for s in spec.bundle_selectors]
        kv = _kv()
        options: dict[str, Any] = {"name": RAY_NAME_PREFIX + id_hex(spec.group_id)}
        if spec.detached:
            options["lifetime"] = "detached"
        if selectors:
            options["bundle_label_selector"] = selectors
        group = ray.util.placement_group(
            [dict(b) for b in spec.bundles], strategy=spec.strategy, **options)
        # The group and its record exist before its name is reserved, so a holder of a
        # name always has a record another process can check (else it is stale).
        try:
            kv._internal_kv_put(_group_key(spec.group_id),
                                pickle.dumps((group.id.binary(), spec), protocol=5),
                                namespace=KV_NAMESPACE)
            if spec.name:
                self._reserve_name(spec)
        except BaseException:
            ray.util.remove_placement_group(group)
            kv._internal_kv_del(_group_key(spec.group_id), namespace=KV_NAMESPACE)
            raise
        with self._lock:
            self._groups[spec.group_id] = _Group(spec, group, created_here=True)

    def _reserve_name(self, spec: PlacementGroupSpec) -> None:
        kv = _kv()
        key = _name_key(spec.namespace, spec.name)
        value = id_hex(spec.group_id).encode()
        for _ in range(3):
            if not kv._internal_kv_put(key, value, overwrite=False, namespace=KV_NAMESPACE):
                return  # it was free
            holder = kv._internal_kv_get(key, namespace=KV_NAMESPACE)
            if holder is not None and self._live_spec(int(holder, 16)) is not None:
                raise ValueError(
                    f"A placement group named {spec.name!r} already exists in namespace "
                    f"{spec.namespace!r}. Use get_placement_group() to reach it."
                )
            # A stale reservation (its driver ended without removing it): take it over,
            # unless someone else did meanwhile.
            if kv._internal_kv_get(key, namespace=KV_NAMESPACE) == holder:
                kv._internal_kv_del(key, namespace=KV_NAMESPACE)
        raise ValueError(f"could not reserve the placement group name {spec.name!r}")

    # -- finding Ray's group -----------------------------------------------------------------

    def _find(self, group_id: int) -> _Group | None:
        """The group, learning it from the KV store on first use; None if removed."""
        with self._lock:
            found = self._groups.get(group_id)
        if found is not None:
            return None if found.removed else found
        record = _kv()._internal_kv_get(_group_key(group_id), namespace=KV_NAMESPACE)
        if record is None:
            return None
        ray_id, spec = pickle.loads(record)
        from ray._raylet import PlacementGroupID
        from ray.util.placement_group import PlacementGroup

        group = PlacementGroup(PlacementGroupID(ray_id),
                               bundle_cache=[dict(b) for b in spec.bundles])
        with self._lock:
            return self._groups.setdefault(group_id, _Group(spec, group))

    def _live_spec(self, group_id: int) -> PlacementGroupSpec | None:
        found = self._find(group_id)
        if found is None:
            return None
        row = ray.util.placement_group_table(found.ray_group)
        if row.get("state") == "REMOVED":
            return None
        return found.spec

    def ray_group(self, group_id: int) -> Any:
        """Ray's group for actorlib's ``group_id``; raises if it was removed."""
        found = self._find(group_id)
        if found is None:
            raise InfeasibleResourceError(
                f"placement group {id_hex(group_id)} was removed (it is not in this Ray "
                "cluster)"
            )
        return found.ray_group

    def track(self, group_id: int, return_ids: tuple[int, ...], live: Container[int]) -> None:
        """Remember tasks sent into a group, so its removal can end them (``live``: the
        ids still mapped, to drop finished ones from time to time)."""
        with self._lock:
            found = self._groups.get(group_id)
            if found is None:
                return
            found.tasks.extend(return_ids)
            if len(found.tasks) > 1024:
                found.tasks = [i for i in found.tasks if i in live]

    def track_actor(self, group_id: int, actor_id: int) -> None:
        """Remember an actor made in a group, so its removal can say it died."""
        with self._lock:
            found = self._groups.get(group_id)
            if found is not None:
                found.actors.append(actor_id)

    # -- readiness, removal, lookups --------------------------------------------------------

    def ready(self, group_id: int, value: Any) -> Any | None:
        """A Ray ref that resolves to ``value`` once the group is reserved (Ray's own
        ``ready()``, with our value); None if the group was removed."""
        found = self._find(group_id)
        if found is None:
            return None
        core = core_worker("a placement group's ready()")
        wait_ready = getattr(core, "async_wait_placement_group_ready", None)
        if wait_ready is None:
            raise NotSupportedError(
                "ready() of a placement group on the ray backend needs a newer Ray than "
                f"{ray.__version__} (its core worker cannot wait for a group; "
                "Ray 2.60 is tested)"
            )
        worker = ray._private.worker.global_worker
        serialized = worker.get_serialization_context().serialize(value)
        return wait_ready(found.ray_group.id, serialized)

    def remove(self, group_id: int, end_tasks: Callable[[list[int]], None]) -> list[int]:
        """Remove the group (nothing if it is gone already), first ending the tasks this
        process sent into it (``end_tasks`` of their return ids): Ray would retry a task
        its removal killed, and the retry would wait for the removed group forever.
        Returns the actors this process made in it (Ray kills them, asynchronously)."""
        found = self._find(group_id)
        if found is None:
            return []
        with self._lock:
            if found.removed:
                return []
            found.removed = True
            self.removed.add(group_id)
            tasks, found.tasks = found.tasks, []
            actors, found.actors = found.actors, []
        try:
            end_tasks(tasks)
            ray.util.remove_placement_group(found.ray_group)
        finally:
            kv = _kv()
            kv._internal_kv_del(_group_key(group_id), namespace=KV_NAMESPACE)
            spec = found.spec
            if spec.name:
                key = _name_key(spec.namespace, spec.name)
                if kv._internal_kv_get(key, namespace=KV_NAMESPACE) == \
                        id_hex(group_id).encode():
                    kv._internal_kv_del(key, namespace=KV_NAMESPACE)
        return actors

    def lookup(self, name: str, namespace: str) -> PlacementGroupSpec | None:
        holder = _kv()._internal_kv_get(_name_key(namespace, name), namespace=KV_NAMESPACE)
        return None if holder is None else self._live_spec(int(holder, 16))

    def table(self) -> list[dict[str, Any]]:
        """Rows as the core's ``placement_group_table``: every live actorlib group of
        the cluster, and those this process knew that were removed since."""
        kv = _kv()
        for key in kv._internal_kv_list(b"pg/", namespace=KV_NAMESPACE):
            self._find(int(key[3:], 16))
        ray_rows = ray.util.placement_group_table()
        with self._lock:
            groups = list(self._groups.items())
        rows = []
        for group_id, group in groups:
            spec = group.spec
            ray_row = ray_rows.get(group.ray_group.id.hex(), {})
            state = "REMOVED" if group.removed else ray_row.get("state", "REMOVED")
            rows.append({
                "placement_group_id": id_hex(group_id),
                "name": spec.name,
                "namespace": spec.namespace,
                "bundles": {i: dict(b) for i, b in enumerate(spec.bundles)},
                "bundles_to_node_id": {} if state == "REMOVED" else dict(
                    ray_row.get("bundles_to_node_id", {})),
                "bundle_label_selector": [describe_selector(s) for s in spec.bundle_selectors],
                "strategy": spec.strategy,
                "state": state,
                "lifetime": "detached" if spec.detached else "non_detached",
            })
        return rows

    def close(self) -> None:
        """Remove the groups this driver made that are not detached (Ray would at the
        driver's exit; its connection may outlive this runtime)."""
        with self._lock:
            mine = [g for g, rec in self._groups.items()
                    if rec.created_here and not rec.removed and not rec.spec.detached]
        for group_id in mine:
            try:
                self.remove(group_id, lambda tasks: None)
            except Exception:  # Ray gone already: its groups went with it
                pass
