"""Ray API: placement groups reserve bundles; tasks and actors are scheduled into them."""

import actorlib as ray
from actorlib.util.placement_group import (
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from actorlib.util.scheduling_strategies import PlacementGroupSchedulingStrategy

ray.init(num_cpus=4)
pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="PACK", name="pg-demo")
ray.get(pg.ready(), timeout=30)
assert pg.wait(timeout_seconds=10)
assert placement_group_table(pg)["state"] == "CREATED"
assert ray.available_resources()["CPU"] == 2


@ray.remote(num_cpus=1)
def where():
    return ray.get_runtime_context().get_placement_group_id()


@ray.remote(num_cpus=1)
class Actor:
    def ping(self):
        return "pong"


strategy = PlacementGroupSchedulingStrategy(placement_group=pg, placement_group_bundle_index=0)
assert ray.get(where.options(scheduling_strategy=strategy).remote()) == pg.id.hex()
actor = Actor.options(scheduling_strategy=PlacementGroupSchedulingStrategy(
    placement_group=pg, placement_group_bundle_index=1)).remote()
assert ray.get(actor.ping.remote()) == "pong"
assert ray.get(where.remote()) is None
ray.kill(actor)

try:  # a bundle no node can hold
    placement_group([{"CPU": 64}], strategy="STRICT_PACK")
except ValueError as err:
    print("infeasible group refused:", type(err).__name__)

remove_placement_group(pg)
assert placement_group_table(pg)["state"] == "REMOVED"
ray.shutdown()
print("OK")
