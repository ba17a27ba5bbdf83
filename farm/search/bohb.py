"""BOHB (Falkner, Klein & Hutter 2018), our own implementation -- no maintained BOHB library
installs cleanly here (hpbandster is unmaintained since 2018).

- Hyperband over the table's epoch budgets (4, 12, 36, 108 are a factor eta = 3 apart, as BOHB's
  NAS-Bench-101 runs used): brackets s = s_max..0, each a successive-halving run that starts
  ceil((s_max+1)/(s+1) * eta^s) configurations at budget index s_max - s and keeps the best
  1/eta by validation accuracy for the next budget. Each budget is an independent training run
  in NAS-Bench-101, so every evaluation is charged its own training time.
- Proposals: with probability 1/3 uniform at random; otherwise from a TPE-style model fitted on
  the largest budget with enough observations: the best 15% ("good") and the rest ("bad") each
  get a product Aitchison-Aitken kernel density over the 26 categorical dimensions (21 edges,
  5 ops) with normal-reference bandwidths; 64 candidates are drawn around good points with the
  bandwidth widened by 3, and the one maximising l(x)/g(x) is evaluated.
- Invalid cells score accuracy 0 and cost nothing (the usual NAS-Bench-101 tabular convention).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from farm.search.encoding import CARDINALITIES, DIMENSIONS, random_vector, spec_from_vector
from farm.search.harness import SearchEnv

_OFFSETS = np.concatenate([[0], np.cumsum(CARDINALITIES)[:-1]])
_FEATURES = int(CARDINALITIES.sum())


def _one_hot_all(vectors: np.ndarray) -> np.ndarray:
    """Every dimension one-hot (57 columns), for kernel sums as one matrix product."""
    out = np.zeros((len(vectors), _FEATURES), dtype=np.float64)
    out[np.arange(len(vectors))[:, None], _OFFSETS[None, :] + vectors] = 1.0
    return out


class _Observations:
    """One budget's results in growing arrays (vectors, their one-hot rows, losses)."""

    def __init__(self) -> None:
        self.size = 0
        self.vectors = np.zeros((64, DIMENSIONS), dtype=np.int64)
        self.hot = np.zeros((64, _FEATURES))
        self.losses = np.zeros(64)

    def add(self, vector: np.ndarray, loss: float) -> None:
        if self.size == len(self.losses):
            grow = len(self.losses)
            self.vectors = np.concatenate([self.vectors, np.zeros_like(self.vectors[:grow])])
            self.hot = np.concatenate([self.hot, np.zeros_like(self.hot[:grow])])
            self.losses = np.concatenate([self.losses, np.zeros(grow)])
        self.vectors[self.size] = vector
        self.hot[self.size] = _one_hot_all(vector[None])[0]
        self.losses[self.size] = loss
        self.size += 1


class _KernelDensity:
    """Product Aitchison-Aitken kernel density over categorical vectors."""

    def __init__(self, points: np.ndarray, hot: np.ndarray, min_bandwidth: float) -> None:
        n = len(points)
        spread = points.std(axis=0) if n > 1 else np.zeros(DIMENSIONS)
        bandwidth = 1.06 * spread * n ** (-1 / 5)  # normal reference rule, as statsmodels
        self.max_bandwidth = (CARDINALITIES - 1) / CARDINALITIES  # = uniform kernel
        self.bandwidth = np.clip(bandwidth, min_bandwidth, self.max_bandwidth)
        self.points = points
        self._hot = hot

    def log_density(self, candidates_hot: np.ndarray) -> np.ndarray:
        same = np.log1p(-self.bandwidth)  # log k when the values agree
        differ = np.log(self.bandwidth / (CARDINALITIES - 1))
        weights = np.repeat(same - differ, CARDINALITIES)
        # sum_d log k_d = sum_d differ_d + sum_d [agree_d] (same_d - differ_d)
        scores = differ.sum() + (candidates_hot * weights) @ self._hot.T
        top = scores.max(axis=1, keepdims=True)
        return (top + np.log(np.exp(scores - top).mean(axis=1, keepdims=True))).ravel()


@dataclass
class BOHB:
    name: str = "bohb"
    eta: int = 3
    top_n_percent: int = 15
    num_samples: int = 64
    random_fraction: float = 1 / 3
    bandwidth_factor: float = 3.0
    min_bandwidth: float = 1e-3
    min_points_in_model: int = DIMENSIONS + 1

    def run(self, env: SearchEnv) -> None:
        budgets = env.budgets
        s_max = len(budgets) - 1
        observations = {b: _Observations() for b in budgets}
        iteration = 0
        while True:
            s = s_max - iteration % (s_max + 1)
            n = math.ceil((s_max + 1) / (s + 1) * self.eta**s)
            configs: list[np.ndarray] = []
            losses: list[float] = []
            first = budgets[s_max - s]
            for _ in range(n):  # sampled one at a time, so each proposal sees every result so far
                vector = self._propose(env, observations)
                configs.append(vector)
                losses.append(self._evaluate(env, vector, first, observations))
            for rung in range(1, s + 1):
                keep = max(1, len(configs) // self.eta)
                order = np.argsort(losses, kind="stable")[:keep]
                configs = [configs[i] for i in order]
                budget = budgets[s_max - s + rung]
                losses = [self._evaluate(env, c, budget, observations) for c in configs]
            iteration += 1

    def _evaluate(self, env: SearchEnv, vector: np.ndarray, budget: int, observations) -> float:
        spec = spec_from_vector(vector)
        loss = 1.0 - env.query(spec, epochs=budget)["validation_accuracy"] if env.is_valid(spec) else 1.0
        observations[budget].add(vector, loss)
        return loss

    def _propose(self, env: SearchEnv, observations) -> np.ndarray:
        rng = env.np_rng
        if rng.random() < self.random_fraction:
            return random_vector(rng)
        model_budget = None
        for budget in sorted(observations, reverse=True):
            if observations[budget].size >= 2 * self.min_points_in_model:
                model_budget = observations[budget]
                break
        if model_budget is None:
            return random_vector(rng)
        n = model_budget.size
        order = np.argsort(model_budget.losses[:n], kind="stable")
        n_good = max(self.min_points_in_model, self.top_n_percent * n // 100)
        good_rows, bad_rows = order[:n_good], order[n_good:]
        vectors, hot_rows = model_budget.vectors, model_budget.hot
        good = _KernelDensity(vectors[good_rows], hot_rows[good_rows], self.min_bandwidth)
        bad = _KernelDensity(vectors[bad_rows], hot_rows[bad_rows], self.min_bandwidth)
        # Draw around good points with the bandwidth widened by bandwidth_factor.
        centres = good.points[rng.integers(0, len(good.points), self.num_samples)]
        keep_probability = 1.0 - np.minimum(good.bandwidth * self.bandwidth_factor, good.max_bandwidth)
        resample = rng.random(centres.shape) >= keep_probability
        candidates = np.where(resample, rng.integers(0, CARDINALITIES, centres.shape), centres)
        hot = _one_hot_all(candidates)
        scores = good.log_density(hot) - bad.log_density(hot)
        return candidates[int(np.argmax(scores))]
