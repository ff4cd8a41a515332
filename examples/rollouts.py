"""RL rollouts: worker actors step simulations, a learner trains the policy, collected with `wait`.

What it shows:
- Rollout workers are actors, each stepping its own batch of CartPole simulations (the
  classic pole-balancing physics, vectorized in numpy) with the policy it is sent, until
  every episode ends. `rollout` returns two refs (`num_returns=2`): the experience (states,
  actions, their probabilities, discounted returns) and a small summary for the driver.
- A learner actor holds the policy (linear softmax over the two pushes) and its Adam
  optimizer; `update(batch)` takes one policy-gradient step (REINFORCE, returns normalized
  per batch) and returns the new weights.
- Asynchronous collection: the driver `wait`s for whichever rollout finishes first, passes
  its experience ref straight to the learner (the arrays never go through the driver), and
  sends that worker off again with the ref of the weights this update will produce. No
  worker waits for the slowest. The price is policy lag: a batch may have been collected
  with weights a few updates old, so the learner weighs each step by the ratio of the
  current policy's probability of the action to the collecting one's, truncated at 1 (as
  IMPALA does), and reports how stale the batches were.
- Training stops once the mean return (steps the pole stayed up) of the last 20 episodes
  reaches the target; every worker then evaluates the final policy, acting greedily. The
  script asserts that the target was reached and that the greedy policy keeps the pole up
  for at least half the longest episode on average.

Expected output (the number of updates, the lag and the speed vary from run to run):

    CartPole, episodes of at most 500 steps: 4 rollout workers x 8 simulations, 2 CPUs
    untrained policy, greedy: mean return 9.7
      update   20: mean return (last 20 episodes)  64.8   policy lag 2.5     6,725 steps
      update   40: mean return (last 20 episodes)  70.2   policy lag 3.0    15,989 steps
      ...
      update  200: mean return (last 20 episodes) 219.1   policy lag 3.0   245,698 steps
    target 475 reached after 216 updates: 1,728 episodes, 295,002 steps in 5.5 s (53,527 steps/s)
    batches per worker: [58, 44, 62, 52]; policy lag mean 3.0, max 13 updates
    mean importance weight 0.96 (1 if every batch had been collected with the current policy)
    greedy evaluation, 4 workers x 8 episodes: mean return 500.0 (min 500)
    done

Run it with:  python examples/rollouts.py          (full size)
              python examples/rollouts.py --small  (the size the tests use)
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import numpy as np

import actorlib

SMALL = "--small" in sys.argv or os.environ.get("ACTORLIB_EXAMPLE_SIZE") == "small"
MAX_STEPS = 200 if SMALL else 500  # an episode ends when the pole falls or after this
TARGET = 150 if SMALL else 475  # mean return of the last 20 episodes that ends training
WORKERS = 4
ENVS = 8  # simulations per worker, stepped together
MAX_UPDATES = 500
GAMMA = 0.99
LR = 0.05
PRINT_EVERY = 10 if SMALL else 20

# CartPole's physics (Barto, Sutton and Anderson, 1983, as in Gym's CartPole)
GRAVITY, CART_MASS, POLE_MASS, HALF_LENGTH, FORCE, DT = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
TOTAL_MASS = CART_MASS + POLE_MASS
THETA_LIMIT, X_LIMIT = 12 * np.pi / 180, 2.4  # the pole has fallen / the cart left the track


def physics_step(state: np.ndarray, push_right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Advance every simulation (rows of ``state``: x, x', theta, theta') by one step."""
    x, x_dot, theta, theta_dot = state.T
    force = np.where(push_right, FORCE, -FORCE)
    cos, sin = np.cos(theta), np.sin(theta)
    temp = (force + POLE_MASS * HALF_LENGTH * theta_dot**2 * sin) / TOTAL_MASS
    theta_acc = (GRAVITY * sin - cos * temp) / (
        HALF_LENGTH * (4 / 3 - POLE_MASS * cos**2 / TOTAL_MASS)
    )
    x_acc = temp - POLE_MASS * HALF_LENGTH * theta_acc * cos / TOTAL_MASS
    state = np.stack(
        [x + DT * x_dot, x_dot + DT * x_acc, theta + DT * theta_dot, theta_dot + DT * theta_acc],
        axis=1,
    )
    failed = (np.abs(state[:, 0]) > X_LIMIT) | (np.abs(state[:, 2]) > THETA_LIMIT)
    return state, failed


def action_probs(w: np.ndarray, states: np.ndarray) -> np.ndarray:
    """The policy: softmax over (push left, push right) of a linear function of the state."""
    logits = states @ w[:-1] + w[-1]
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


@actorlib.remote
class RolloutWorker:
    """Steps ENVS simulations at once with the policy it is given."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.rng = np.random.default_rng(1000 + index)

    def _episodes(self, w: np.ndarray, greedy: bool) -> dict[str, np.ndarray]:
        state = self.rng.uniform(-0.05, 0.05, size=(ENVS, 4))
        running = np.ones(ENVS, bool)
        states, actions, probs, alive = [], [], [], []
        for _ in range(MAX_STEPS):
            p = action_probs(w, state)
            act = p[:, 1] > 0.5 if greedy else self.rng.random(ENVS) < p[:, 1]
            states.append(state)
            actions.append(act)
            probs.append(np.where(act, p[:, 1], p[:, 0]))
            alive.append(running.copy())
            state, failed = physics_step(state, act)
            running &= ~failed
            if not running.any():
                break
        mask = np.array(alive)  # (steps, ENVS): the steps each episode was still running
        returns = np.zeros(mask.shape)  # discounted reward (1 a step) to the episode's end
        future = np.zeros(ENVS)
        for t in range(len(mask) - 1, -1, -1):
            future = mask[t] * (1.0 + GAMMA * future)
            returns[t] = future
        return {
            "states": np.array(states)[mask],
            "actions": np.array(actions)[mask],
            "probs": np.array(probs)[mask],
            "returns": returns[mask],
            "lengths": mask.sum(axis=0),
        }

    @actorlib.method(num_returns=2)
    def rollout(self, policy: tuple[int, np.ndarray]) -> tuple[dict[str, Any], dict[str, Any]]:
        """One episode in each simulation: (the experience, a summary)."""
        version, w = policy
        batch = self._episodes(w, greedy=False)
        batch["version"] = version
        # The return of an episode is its length: a reward of 1 for every step the pole
        # stayed up.
        summary = {
            "worker": self.index,
            "version": version,
            "episode_returns": batch["lengths"].tolist(),
        }
        return batch, summary

    def evaluate(self, policy: tuple[int, np.ndarray]) -> list[int]:
        """The returns of ENVS episodes acting greedily (the likelier push every step)."""
        return self._episodes(policy[1], greedy=True)["lengths"].tolist()


@actorlib.remote(num_cpus=0)
class Learner:
    """Holds the policy; one policy-gradient step (with Adam) per batch of experience."""

    def __init__(self, lr: float) -> None:
        self.w = np.zeros((5, 2))  # 4 state weights and a bias, for each of the 2 actions
        self.m, self.v = np.zeros_like(self.w), np.zeros_like(self.w)
        self.lr = lr
        self.version = 0
        self.lags: list[int] = []
        self.weight_sum = 0.0  # of the importance weights, over every step learned from
        self.steps = 0

    def policy(self) -> tuple[int, np.ndarray]:
        return self.version, self.w

    def update(self, batch: dict[str, Any]) -> tuple[int, np.ndarray]:
        states, actions = batch["states"], batch["actions"].astype(int)
        rows = np.arange(len(actions))
        p = action_probs(self.w, states)
        # Importance weights: the batch was collected with weights `version`, maybe older.
        ratio = p[rows, actions] / batch["probs"]
        rho = np.minimum(ratio, 1.0)
        returns = batch["returns"]
        advantage = (returns - returns.mean()) / (returns.std() + 1e-8)
        dlogits = -p  # d log p(action) / d logits = onehot(action) - p
        dlogits[rows, actions] += 1.0
        scaled = dlogits * (rho * advantage)[:, None]
        grad = np.vstack([states.T @ scaled, scaled.sum(axis=0)]) / len(rows)
        self._adam_ascent(grad)
        self.lags.append(self.version - batch["version"])
        self.weight_sum += float(rho.sum())
        self.steps += len(rows)
        self.version += 1
        return self.version, self.w

    def _adam_ascent(self, grad: np.ndarray, b1: float = 0.9, b2: float = 0.999) -> None:
        self.m = b1 * self.m + (1 - b1) * grad
        self.v = b2 * self.v + (1 - b2) * grad**2
        t = self.version + 1
        step = self.lr * (self.m / (1 - b1**t)) / (np.sqrt(self.v / (1 - b2**t)) + 1e-8)
        self.w = self.w + step  # a new array: weights already handed out stay as they were

    def stats(self) -> dict[str, Any]:
        return {
            "updates": self.version,
            "lags": self.lags,
            "mean_weight": self.weight_sum / max(self.steps, 1),
        }


def main() -> None:
    actorlib.init(ignore_reinit_error=True)
    cpus = actorlib.cluster_resources().get("CPU", 1)
    print(
        f"CartPole, episodes of at most {MAX_STEPS} steps: {WORKERS} rollout workers x "
        f"{ENVS} simulations, {cpus:g} CPUs"
    )
    learner = Learner.remote(LR)
    workers = [RolloutWorker.options(num_cpus=cpus / WORKERS).remote(i) for i in range(WORKERS)]
    policy = learner.policy.remote()
    scores = [r for rs in actorlib.get([w.evaluate.remote(policy) for w in workers]) for r in rs]
    print(f"untrained policy, greedy: mean return {np.mean(scores):.1f}")

    t0 = time.perf_counter()
    in_flight = {}  # summary ref -> (worker, experience ref)
    for worker in workers:
        batch, summary = worker.rollout.remote(policy)
        in_flight[summary] = (worker, batch)
    updates = steps = 0
    returns: list[int] = []
    lags: list[int] = []
    per_worker = [0] * WORKERS
    while updates < MAX_UPDATES:
        [done], _ = actorlib.wait(list(in_flight), num_returns=1)  # the first to finish
        worker, batch = in_flight.pop(done)
        info = actorlib.get(done)
        # The learner applies this batch after the `updates` already sent to it.
        policy = learner.update.remote(batch)
        lags.append(updates - info["version"])
        updates += 1
        per_worker[info["worker"]] += 1
        returns += info["episode_returns"]
        steps += sum(info["episode_returns"])
        mean_return = float(np.mean(returns[-20:]))
        if updates % PRINT_EVERY == 0:
            print(
                f"  update {updates:4d}: mean return (last 20 episodes) {mean_return:5.1f}"
                f"   policy lag {np.mean(lags[-PRINT_EVERY:]):.1f}   {steps:>7,} steps"
            )
        if mean_return >= TARGET:
            break
        batch, summary = worker.rollout.remote(policy)  # off again, with the newest weights
        in_flight[summary] = (worker, batch)
    final = policy
    actorlib.get(final)
    elapsed = time.perf_counter() - t0
    # Rollouts still in flight finish unused: each worker runs its calls in order, so its
    # evaluation below starts after them.

    reached = float(np.mean(returns[-20:])) >= TARGET
    print(
        f"target {TARGET} {'reached' if reached else 'NOT reached'} after {updates} updates: "
        f"{len(returns):,} episodes, {steps:,} steps in {elapsed:.1f} s "
        f"({steps / elapsed:,.0f} steps/s)"
    )
    stats = actorlib.get(learner.stats.remote())
    assert stats["updates"] == updates and stats["lags"] == lags, (stats, lags)
    print(
        f"batches per worker: {per_worker}; policy lag mean {np.mean(lags):.1f}, "
        f"max {max(lags)} updates"
    )
    print(
        f"mean importance weight {stats['mean_weight']:.2f} (1 if every batch had been "
        "collected with the current policy)"
    )

    scores = [r for rs in actorlib.get([w.evaluate.remote(final) for w in workers]) for r in rs]
    print(
        f"greedy evaluation, {WORKERS} workers x {ENVS} episodes: mean return "
        f"{np.mean(scores):.1f} (min {min(scores)})"
    )
    assert reached, f"the mean return did not reach {TARGET} in {MAX_UPDATES} updates"
    assert np.mean(scores) >= MAX_STEPS / 2, f"greedy evaluation: {np.mean(scores):.1f}"
    actorlib.shutdown()
    print("done")


if __name__ == "__main__":
    main()
