"""Parameter server: one actor holds the model, worker actors compute gradients on shards.

What it shows:
- The dataset (numpy arrays) is `put` once; every worker actor receives the same ref and
  keeps a view of its own shard. On the process backend the arrays are mapped read-only
  from shared memory: no worker holds a copy of the data.
- Synchronous training: each step the driver passes one weights ref (the result of the
  last update, never fetched by the driver) to every worker, and the gradients refs
  straight to `ParameterServer.apply_gradients`, which averages them. Nothing but refs
  crosses the driver.
- Asynchronous training: each worker runs its own loop inside an actor method, calling
  the parameter server's handle (nested actor calls): pull the weights, compute a
  gradient, push it, without waiting for the other workers. The server counts how stale
  each gradient is (how many updates landed since that worker pulled).
- The model is a softmax (multinomial logistic) regression in numpy on synthetic
  10-class data; the server evaluates the held-out loss and accuracy as it goes, and the
  script asserts that the loss went down and the final accuracy is above a threshold.

Expected output (times and staleness vary):

    data: 200,000 train rows x 128 features (109 MB), 10 classes; 4 workers on 2 CPUs
    sync: 4 workers x 120 steps, batch 256
      update    0: test loss 2.3026  accuracy 0.100
      update   30: test loss 0.4902  accuracy 0.913
      update   60: test loss 0.3708  accuracy 0.914
      update   90: test loss 0.3294  accuracy 0.914
      update  120: test loss 0.3084  accuracy 0.913
      120 updates in 0.4 s
    async: 4 workers x 120 steps each, batch 256
      update    0: test loss 2.3026  accuracy 0.100
      update  120: test loss 0.3060  accuracy 0.909
      update  240: test loss 0.2787  accuracy 0.911
      update  360: test loss 0.2706  accuracy 0.911
      update  480: test loss 0.2667  accuracy 0.910
      480 updates in 0.4 s, mean staleness 2.8 updates (max 11)
    final accuracy: sync 0.913, async 0.910 (threshold 0.85)
    done

Run it with:  python examples/parameter_server.py          (full size)
              python examples/parameter_server.py --small  (the size the tests use)
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

import actorlib

SMALL = "--small" in sys.argv or os.environ.get("ACTORLIB_EXAMPLE_SIZE") == "small"
ROWS, FEATURES = (20_000, 32) if SMALL else (200_000, 128)
NOISE = 1.2 if SMALL else 2.5  # the nearest class centre is right 93% (small), 91% (full)
CLASSES = 10
WORKERS = 4
STEPS = 40 if SMALL else 120  # per worker, in both modes
BATCH = 256
LR = 0.05
EVAL_EVERY = 10 if SMALL else 30
THRESHOLD = 0.85


def make_data(seed: int = 0) -> dict[str, np.ndarray]:
    """Gaussian clusters, one per class, around random centres; 10% held out."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((CLASSES, FEATURES)).astype(np.float32) * 0.7
    n = ROWS + ROWS // 10
    y = rng.integers(0, CLASSES, size=n)
    x = centres[y] + rng.standard_normal((n, FEATURES), dtype=np.float32) * NOISE
    return {"x": x[:ROWS], "y": y[:ROWS], "x_test": x[ROWS:], "y_test": y[ROWS:]}


def softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def loss_and_grad(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of ``softmax(x @ w)`` and its gradient (bias as a last row)."""
    xb = np.hstack([x, np.ones((len(x), 1), x.dtype)])
    p = softmax(xb @ w)
    loss = float(-np.log(p[np.arange(len(y)), y] + 1e-12).mean())
    p[np.arange(len(y)), y] -= 1.0
    return loss, xb.T @ p / len(y)


def accuracy(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    return float(((x @ w[:-1] + w[-1]).argmax(axis=1) == y).mean())


@actorlib.remote(num_cpus=0)
class ParameterServer:
    """Holds the weights; applies gradients; evaluates on the held-out set as it goes."""

    def __init__(self, data: dict[str, np.ndarray], lr: float, eval_every: int) -> None:
        self.x_test, self.y_test = data["x_test"], data["y_test"]
        self.w = np.zeros((FEATURES + 1, CLASSES), np.float32)
        self.lr = lr
        self.eval_every = eval_every
        self.version = 0
        self.staleness: list[int] = []
        self.history: list[tuple[int, float, float]] = []
        self._evaluate()

    def _evaluate(self) -> None:
        loss, _ = loss_and_grad(self.w, self.x_test, self.y_test)
        self.history.append((self.version, loss, accuracy(self.w, self.x_test, self.y_test)))

    def _step(self, grad: np.ndarray) -> None:
        self.w = self.w - self.lr * grad  # a new array: results already returned stay valid
        self.version += 1
        if self.version % self.eval_every == 0:
            self._evaluate()

    # synchronous mode: the driver passes every worker's gradient ref at once
    def apply_gradients(self, *grads: np.ndarray) -> np.ndarray:
        self._step(np.mean(grads, axis=0))
        return self.w

    # asynchronous mode: each worker pushes on its own
    def pull(self) -> tuple[int, np.ndarray]:
        return self.version, self.w

    def push(self, grad: np.ndarray, pulled_version: int) -> tuple[int, np.ndarray]:
        self.staleness.append(self.version - pulled_version)
        self._step(grad)
        return self.version, self.w

    def weights(self) -> np.ndarray:
        return self.w

    def report(self) -> dict[str, object]:
        if self.history[-1][0] != self.version:
            self._evaluate()
        return {"history": self.history, "staleness": self.staleness, "version": self.version}


@actorlib.remote
class Worker:
    def __init__(self, data: dict[str, np.ndarray], index: int, seed: int) -> None:
        per = ROWS // WORKERS
        lo, hi = index * per, (index + 1) * per
        self.x, self.y = data["x"][lo:hi], data["y"][lo:hi]  # views: no copy of the shard
        self.rng = np.random.default_rng(seed)
        self.shared = not self.x.flags.writeable  # read-only: mapped from the store

    def _batch(self) -> tuple[np.ndarray, np.ndarray]:
        idx = self.rng.integers(0, len(self.x), size=BATCH)
        return self.x[idx], self.y[idx]

    def compute_gradient(self, w: np.ndarray) -> np.ndarray:
        return loss_and_grad(w, *self._batch())[1]

    def train_async(self, ps: actorlib.ActorHandle, steps: int) -> int:
        version, w = actorlib.get(ps.pull.remote())
        for _ in range(steps):
            grad = loss_and_grad(w, *self._batch())[1]
            version, w = actorlib.get(ps.push.remote(grad, version))
        return steps

    def data_is_shared(self) -> bool:
        return self.shared


def print_history(history: list[tuple[int, float, float]]) -> None:
    for version, loss, acc in history:
        print(f"  update {version:4d}: test loss {loss:.4f}  accuracy {acc:.3f}")


def check(history: list[tuple[int, float, float]], mode: str) -> float:
    first, last = history[0], history[-1]
    assert last[1] < 0.5 * first[1], f"{mode}: loss did not go down: {first} -> {last}"
    assert last[2] > THRESHOLD, f"{mode}: final accuracy {last[2]:.3f} <= {THRESHOLD}"
    return last[2]


def main() -> None:
    info = actorlib.init(ignore_reinit_error=True)
    cpus = actorlib.cluster_resources().get("CPU", 1)
    data = make_data()
    nbytes = sum(a.nbytes for a in data.values())
    print(f"data: {ROWS:,} train rows x {FEATURES} features ({nbytes / 2**20:.0f} MB), "
          f"{CLASSES} classes; {WORKERS} workers on {cpus:g} CPUs")
    data_ref = actorlib.put(data)  # stored once, shared by the server and every worker

    workers = [Worker.options(num_cpus=cpus / WORKERS).remote(data_ref, i, seed=i)
               for i in range(WORKERS)]
    shared = actorlib.get([w.data_is_shared.remote() for w in workers])
    if info.backend != "thread":  # the thread backend copies objects in and out
        assert all(shared), "a worker got a writable copy of the dataset"

    # -- synchronous: every step waits for all workers' gradients ---------------------
    ps = ParameterServer.remote(data_ref, LR, EVAL_EVERY)
    print(f"sync: {WORKERS} workers x {STEPS} steps, batch {BATCH}")
    w_ref = ps.weights.remote()
    actorlib.wait([w_ref])  # the server is up: time the training only
    t0 = time.perf_counter()
    for _ in range(STEPS):
        grads = [worker.compute_gradient.remote(w_ref) for worker in workers]
        w_ref = ps.apply_gradients.remote(*grads)  # refs in, a ref out: no driver round trip
    actorlib.get(w_ref)
    elapsed = time.perf_counter() - t0
    sync = actorlib.get(ps.report.remote())
    print_history(sync["history"])
    print(f"  {sync['version']} updates in {elapsed:.1f} s")
    assert sync["version"] == STEPS
    sync_acc = check(sync["history"], "sync")
    actorlib.kill(ps)  # the workers stay: their shards serve the asynchronous run too

    # -- asynchronous: workers pull and push on their own ------------------------------
    ps = ParameterServer.remote(data_ref, LR, EVAL_EVERY * WORKERS)
    print(f"async: {WORKERS} workers x {STEPS} steps each, batch {BATCH}")
    actorlib.get(ps.pull.remote())
    t0 = time.perf_counter()
    done = actorlib.get([w.train_async.remote(ps, STEPS) for w in workers])
    elapsed = time.perf_counter() - t0
    result = actorlib.get(ps.report.remote())
    print_history(result["history"])
    stale = np.array(result["staleness"])
    print(f"  {result['version']} updates in {elapsed:.1f} s, "
          f"mean staleness {stale.mean():.1f} updates (max {stale.max()})")
    assert sum(done) == result["version"] == WORKERS * STEPS == len(stale)
    async_acc = check(result["history"], "async")

    print(f"final accuracy: sync {sync_acc:.3f}, async {async_acc:.3f} (threshold {THRESHOLD})")
    actorlib.shutdown()
    print("done")


if __name__ == "__main__":
    main()
