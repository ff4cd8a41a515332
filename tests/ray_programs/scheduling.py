"""Ray scheduling: "SPREAD", node affinity to the driver's node, node labels, and the
ray.util helpers that hand results back as they finish."""

import actorlib as ray
from actorlib.util import as_completed, map_unordered
from actorlib.util.scheduling_strategies import (
    In,
    NodeAffinitySchedulingStrategy,
    NodeLabelSchedulingStrategy,
)

ray.init(num_cpus=2)


@ray.remote
def node_of(x):
    return ray.get_runtime_context().get_node_id(), x


here = ray.get_runtime_context().get_node_id()
nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
spread = [node_of.options(scheduling_strategy="SPREAD").remote(i) for i in range(4)]
assert {node for node, _ in ray.get(spread)} <= nodes
pinned = node_of.options(
    scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=here, soft=False))
assert ray.get(pinned.remote(1)) == (here, 1)
# Every node carries its id as a label, as in Ray.
assert ray.get_runtime_context().get_node_labels()["ray.io/node-id"] == here
by_label = node_of.options(scheduling_strategy=NodeLabelSchedulingStrategy(
    hard={"ray.io/node-id": In(here)}))
assert ray.get(by_label.remote(2)) == (here, 2)
finished = as_completed([node_of.remote(i) for i in range(3)])  # values, as they finish
assert sorted(x for _, x in finished) == [0, 1, 2]
assert sorted(x for _, x in map_unordered(node_of, range(5))) == [0, 1, 2, 3, 4]
ray.shutdown()
print("OK")
