"""Hyperparameter search with early stopping: losing trials are cancelled while they run.

What it shows:
- Each trial is a task training a logistic-regression model (mini-batch gradient descent
  in numpy) on one dataset `put` once; trials report their validation loss after every
  epoch to a tracker actor (fire-and-forget actor calls from inside tasks).
- The driver loops on `actorlib.wait(..., timeout=)`, collecting finished trials as they
  come, and applies asynchronous successive halving: at each rung (epochs 2, 4, 8, ...)
  a trial whose loss is worse than the median of the trials that reached that rung is
  stopped with `actorlib.cancel(ref)`, which interrupts the running task; its `get`
  then raises `TaskCancelledError`.
- A results table at the end: every trial, its learning rate and L2 penalty, the epochs
  it ran, its best validation loss, and whether it finished or was stopped.

Expected output (which trials are stopped varies with timing):

    21 trials, 24 epochs each, rungs at [2, 4, 8, 16], 2 CPUs
    trial  lr       l2       epochs  val_loss  status
       12  0.03     0.0001       24    0.3346  finished
        9  0.1      0.0001       24    0.3350  finished
      ...
        5  1        0.1           4    0.4322  stopped (rung 4)
       15  0.003    0.0001        2    0.4527  stopped (rung 2)
      ...
    best: trial 12 (lr=0.03, l2=0.0001), val_loss 0.3346
    11 trials stopped early, 10 finished; 264 of 504 epochs run
    done

Run it with:  python examples/hyperparameter_search.py          (full size)
              python examples/hyperparameter_search.py --small  (the size the tests use)
"""

from __future__ import annotations

import itertools
import os
import sys
import time

import numpy as np

import actorlib
from actorlib.exceptions import TaskCancelledError

SMALL = "--small" in sys.argv or os.environ.get("ACTORLIB_EXAMPLE_SIZE") == "small"
ROWS, FEATURES = (120_000, 20) if SMALL else (240_000, 50)
EPOCHS = 16 if SMALL else 24
RUNGS = [r for r in (2, 4, 8, 16) if r < EPOCHS]
LRS = [3.0, 0.3, 0.03, 0.0003] if SMALL else [3.0, 1.0, 0.3, 0.1, 0.03, 0.003, 0.0003]
L2S = [1e-4, 1e-1] if SMALL else [1e-4, 1e-2, 1e-1]


def make_data(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((ROWS, FEATURES)).astype(np.float32)
    w_true = rng.standard_normal(FEATURES).astype(np.float32)
    p = 1 / (1 + np.exp(-(x @ w_true) / 2))
    y = (rng.random(ROWS) < p).astype(np.float32)
    split = int(ROWS * 0.8)
    return {"x_train": x[:split], "y_train": y[:split], "x_val": x[split:], "y_val": y[split:]}


def log_loss(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(1 / (1 + np.exp(-(x @ w))), 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


@actorlib.remote(num_cpus=0)
class Tracker:
    """Validation loss of every trial after every epoch."""

    def __init__(self) -> None:
        self.losses: dict[int, list[float]] = {}

    def report(self, trial: int, loss: float) -> None:
        self.losses.setdefault(trial, []).append(loss)

    def snapshot(self) -> dict[int, list[float]]:
        return self.losses


@actorlib.remote(num_cpus=1, max_retries=0)
def train(trial: int, lr: float, l2: float, data: dict[str, np.ndarray],
          tracker: actorlib.ActorHandle) -> float:
    """Mini-batch gradient descent; reports the validation loss after each epoch."""
    rng = np.random.default_rng(trial)
    x, y = data["x_train"], data["y_train"]
    w = np.zeros(FEATURES, np.float32)
    best = float("inf")
    for _epoch in range(EPOCHS):
        order = rng.permutation(len(x))
        for start in range(0, len(x), 64):
            idx = order[start:start + 64]
            xb, yb = x[idx], y[idx]
            p = 1 / (1 + np.exp(-(xb @ w)))
            w -= lr * (xb.T @ (p - yb) / len(idx) + l2 * w)
        loss = log_loss(w, data["x_val"], data["y_val"])
        loss = loss if np.isfinite(loss) else 10.0
        best = min(best, loss)
        tracker.report.remote(trial, loss)
    return best


def main() -> None:
    actorlib.init(ignore_reinit_error=True)
    configs = list(itertools.product(LRS, L2S))
    cpus = int(actorlib.cluster_resources().get("CPU", 1))
    print(f"{len(configs)} trials, {EPOCHS} epochs each, rungs at {RUNGS}, {cpus} CPUs")
    data = actorlib.put(make_data())
    tracker = Tracker.remote()
    refs = {train.remote(i, lr, l2, data, tracker): i for i, (lr, l2) in enumerate(configs)}
    running = dict(refs)
    result: dict[int, float] = {}
    stopped: dict[int, int] = {}  # trial -> the rung it was stopped at
    judged: set[tuple[int, int]] = set()

    while running:
        ready, _ = actorlib.wait(list(running), num_returns=1, timeout=0.05)
        for ref in ready:
            trial = running.pop(ref)
            if trial not in stopped:
                result[trial] = actorlib.get(ref)
        losses = actorlib.get(tracker.snapshot.remote())
        for ref, trial in list(running.items()):
            for rung in RUNGS:
                if len(losses.get(trial, [])) < rung or (trial, rung) in judged:
                    continue
                peers = [min(h[:rung]) for h in losses.values() if len(h) >= rung]
                if len(peers) < 3:
                    break  # too few trials reached this rung to judge
                judged.add((trial, rung))
                if min(losses[trial][:rung]) > float(np.median(peers)):
                    actorlib.cancel(ref)  # interrupts the running task
                    stopped[trial] = rung
                    del running[ref]
                    break

    for ref, trial in refs.items():
        if trial in stopped:
            try:
                actorlib.get(ref)
            except TaskCancelledError:
                continue
            # It finished before the cancellation reached it: count it as finished.
            result[trial] = actorlib.get(ref)
            del stopped[trial]
    time.sleep(0.1)  # the last fire-and-forget reports
    losses = actorlib.get(tracker.snapshot.remote())

    print(f"{'trial':>5}  {'lr':<7}  {'l2':<7}  {'epochs':>6}  {'val_loss':>8}  status")
    rows = sorted(range(len(configs)), key=lambda t: min(losses.get(t, [np.inf])))
    for t in rows:
        lr, l2 = configs[t]
        hist = losses.get(t, [])
        status = f"stopped (rung {stopped[t]})" if t in stopped else "finished"
        best = min(hist) if hist else float("nan")
        print(f"{t:>5}  {lr:<7g}  {l2:<7g}  {len(hist):>6}  {best:>8.4f}  {status}")
    winner = min(result, key=result.__getitem__)
    lr, l2 = configs[winner]
    print(f"best: trial {winner} (lr={lr:g}, l2={l2:g}), val_loss {result[winner]:.4f}")
    ran = sum(len(h) for h in losses.values())
    print(f"{len(stopped)} trials stopped early, {len(result)} finished; "
          f"{ran} of {EPOCHS * len(configs)} epochs run")
    assert stopped, "no trial was stopped early"
    # A trial judged just as it ends may have sent its last report before the cancel
    # reached it (the driver judges from reports that lag the trials): it is still
    # cancelled, having run every epoch. So not every stopped trial ran fewer epochs;
    # the cancels must have cut some short.
    assert any(len(losses.get(t, [])) < EPOCHS for t in stopped), "no stopped trial was cut short"
    assert result[winner] < max(result.values()) or len(result) == 1
    actorlib.shutdown()
    print("done")


if __name__ == "__main__":
    main()
