"""Ray example: batch prediction with a model loaded once per actor, via ActorPool."""

import numpy as np

import actorlib as ray
from actorlib.util import ActorPool

ray.init(num_cpus=4)


def load_model():
    weights = np.array([0.5, -1.0, 2.0])
    return lambda batch: batch @ weights


@ray.remote
class BatchPredictor:
    def __init__(self, model_ref):
        self.model = model_ref  # a top-level ref argument arrives as its value

    def predict(self, shard):
        return self.model(shard)


@ray.remote
def make_shard(i):
    return np.full((10, 3), float(i))


model_ref = ray.put(load_model())
actors = [BatchPredictor.remote(model_ref) for _ in range(2)]
pool = ActorPool(actors)
shards = [make_shard.remote(i) for i in range(6)]
predictions = list(pool.map(lambda a, s: a.predict.remote(s), shards))
assert len(predictions) == 6
for i, pred in enumerate(predictions):
    assert pred.shape == (10,) and np.allclose(pred, 1.5 * i), (i, pred)

unordered = sorted(float(p[0]) for p in pool.map_unordered(
    lambda a, s: a.predict.remote(s), shards))
assert unordered == [1.5 * i for i in range(6)]
pool.submit(lambda a, v: a.predict.remote(v), np.ones((2, 3)))
assert pool.has_next() and list(pool.get_next(timeout=30)) == [1.5, 1.5]
ray.shutdown()
print("OK")
