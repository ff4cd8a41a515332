"""Ray example: a synchronous and an asynchronous parameter server with numpy."""

import numpy as np

import actorlib as ray

ray.init(num_cpus=4)
DIM = 8
TARGET = np.arange(DIM, dtype=np.float64)


@ray.remote
class ParameterServer:
    def __init__(self, lr):
        self.weights = np.zeros(DIM)
        self.lr = lr

    def apply_gradients(self, *gradients):
        self.weights = self.weights - self.lr * np.mean(gradients, axis=0)
        return self.weights

    def get_weights(self):
        return self.weights


@ray.remote
class DataWorker:
    def compute_gradients(self, weights):
        return 2 * (weights - TARGET)  # the gradient of |w - target|^2


ps = ParameterServer.remote(0.2)
workers = [DataWorker.remote() for _ in range(3)]
current = ps.get_weights.remote()
for _ in range(30):  # synchronous: every worker's gradient each step
    grads = [w.compute_gradients.remote(current) for w in workers]
    current = ps.apply_gradients.remote(*grads)
assert np.allclose(ray.get(current), TARGET, atol=1e-3), ray.get(current)

ps2 = ParameterServer.remote(0.2)
current = ps2.get_weights.remote()
pending = {w.compute_gradients.remote(current): w for w in workers}
for _ in range(60):  # asynchronous: apply whichever gradient arrives first
    [ready], _ = ray.wait(list(pending))
    worker = pending.pop(ready)
    current = ps2.apply_gradients.remote(ready)
    pending[worker.compute_gradients.remote(current)] = worker
weights = ray.get(ps2.get_weights.remote())
assert np.allclose(weights, TARGET, atol=0.1), weights  # stale gradients: looser
ray.shutdown()
print("OK")
