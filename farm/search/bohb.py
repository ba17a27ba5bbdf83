"""BOHB (Falkner, Klein & Hutter 2018) as HpBandSter computes it, with the settings of the benchmark
authors' run_bohb.py. Our own code (hpbandster needs a Pyro name server and statsmodels); each
rule below names the HpBandSter / statsmodels line it reproduces.

- Hyperband (hpbandster/optimizers/bohb.py, get_next_iteration): budgets 4, 12, 36, 108
  (eta = 3), brackets s = 3, 2, 1, 0 in turn; bracket s starts
  ``n0 = floor(4 / (s + 1)) * eta**s`` configurations (27, 9, 6, 4) and keeps
  ``max(int(n0 * eta**-i), 1)`` of them at its i-th budget (successivehalving.py: the lowest
  losses). Each budget is an independent training run in NAS-Bench-101, so every evaluation is
  charged its own training time; the sequential worker samples each configuration after the
  previous result is in.
- Model (config_generators/bohb.py, new_result): per budget, once it has more than
  ``min_points_in_model - 1`` results and both halves have more rows than the 26 parameters, the
  best ``max(27, 15% n)`` results ("good") and the next ``max(27, 85% n)`` ("bad") each get a
  statsmodels ``KDEMultivariate(var_type='u' * 26, bw='normal_reference')``: bandwidth
  ``1.06 * std * n**(-1 / (4 + 26))`` per parameter (_kernel_base.py, _normal_reference; std
  over the category indices), clipped below at ``min_bandwidth``; the pdf is the mean over the
  data of a product of Aitchison-Aitken kernels, ``1 - h`` when the values agree and
  ``h / (L - 1)`` when they differ, where L is the number of *distinct values present in that
  KDE's data* (kernels.py, aitchison_aitken without num_levels) -- so a parameter on which all
  of a KDE's points agree gives an infinite density to any candidate that differs there.
  Results on a budget are no longer recorded once a larger budget has a model; proposals use the
  largest budget with a model.
- Proposal (get_config): random with probability ``random_fraction`` (or while there is no
  model); otherwise 64 candidates, each around a random good point, keeping each parameter with
  probability ``1 - h`` and otherwise drawing it uniformly from all its values (the bandwidth
  factor widens continuous parameters only, and there are none); the candidate with the smallest
  ``max(1e-32, g) / max(l, 1e-32)`` wins, except that the first candidate whose ratio is not
  finite while l is finite is taken at once.
- Invalid encodings: the experiment scripts' rule (encoding.objective): loss 1, no cost.
- A table that covers only some cells (farm.search.coverage): random proposals come from the table,
  and the proposal is the best-ranked of the 64 candidates that the table covers (or that are
  invalid, as above); when none is, a random one from the table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from farm.search.encoding import CARDINALITIES, DIMENSIONS, objective
from farm.search.harness import SearchEnv
from farm.search.settings import (
    BOHB_BANDWIDTH_FACTOR,
    BOHB_ETA,
    BOHB_MIN_BANDWIDTH,
    BOHB_NUM_SAMPLES,
    BOHB_RANDOM_FRACTION,
    BOHB_TOP_N_PERCENT,
)

_OFFSETS = np.concatenate([[0], np.cumsum(CARDINALITIES)[:-1]])
_FEATURES = int(CARDINALITIES.sum())


def _one_hot_all(vectors: np.ndarray) -> np.ndarray:
    """Every dimension one-hot (57 columns), for kernel sums as one matrix product."""
    out = np.zeros((len(vectors), _FEATURES), dtype=np.float64)
    out[np.arange(len(vectors))[:, None], _OFFSETS[None, :] + vectors] = 1.0
    return out


def bracket_sizes(s: int, brackets: int, eta: int) -> list[int]:
    """Configurations per budget of Hyperband bracket s, as HpBandSter's get_next_iteration."""
    n0 = int(math.floor(brackets / (s + 1)) * eta**s)
    return [max(int(n0 * eta ** (-i)), 1) for i in range(s + 1)]


class CategoricalKDE:
    """statsmodels' KDEMultivariate over unordered variables with the normal-reference bandwidth,
    clipped below at min_bandwidth as HpBandSter does."""

    def __init__(self, data: np.ndarray, min_bandwidth: float) -> None:
        n, d = data.shape
        bandwidth = 1.06 * data.std(axis=0) * n ** (-1.0 / (4 + d))
        self.bandwidth = np.clip(bandwidth, min_bandwidth, None)
        self.data = data
        self._hot = _one_hot_all(data)
        # Distinct values present per parameter (np.unique per column, from the one-hot columns:
        # the same integers without 26 sorts per fit; BOHB refits after every result).
        self.levels = np.add.reduceat(self._hot.any(axis=0).astype(np.int64), _OFFSETS)

    def pdf(self, candidates: np.ndarray) -> np.ndarray:
        single = self.levels == 1  # h / (L - 1) = h / 0: statsmodels' kernel is infinite there
        infinite = np.any(candidates[:, single] != self.data[0, single], axis=1)
        same = np.log1p(-self.bandwidth)
        with np.errstate(divide="ignore"):
            differ = np.where(single, 0.0, np.log(self.bandwidth / np.maximum(self.levels - 1, 1)))
        weights = np.repeat(same - differ, CARDINALITIES)
        # log prod_d k_d = sum_d differ_d + sum_d [agree_d] (same_d - differ_d)
        scores = differ.sum() + (_one_hot_all(candidates) * weights) @ self._hot.T
        top = scores.max(axis=1, keepdims=True)
        density = np.exp(top[:, 0]) * np.exp(scores - top).mean(axis=1)
        return np.where(infinite, np.inf, density)


class _Budget:
    """One budget's recorded results and, once there are enough, its good/bad KDE pair."""

    def __init__(self) -> None:
        self.vectors: list[np.ndarray] = []
        self.losses: list[float] = []
        self._rows = np.zeros((0, DIMENSIONS), dtype=np.int64)  # self.vectors as one array, grown
        self._filled = 0
        self._fitted_at = -1
        self._model: tuple[CategoricalKDE, CategoricalKDE] | None = None

    def split(self, top_n_percent: int, min_points: int) -> tuple[np.ndarray, np.ndarray] | None:
        n = len(self.losses)
        if n <= min_points - 1:
            return None
        n_good = max(min_points, top_n_percent * n // 100)
        n_bad = max(min_points, (100 - top_n_percent) * n // 100)
        order = np.argsort(np.array(self.losses), kind="stable")
        good, bad = order[:n_good], order[n_good:n_good + n_bad]
        if len(good) <= DIMENSIONS or len(bad) <= DIMENSIONS:
            return None
        return good, bad

    def model(self, top_n_percent: int, min_points: int, min_bandwidth: float):
        if self._fitted_at != len(self.losses):
            halves = self.split(top_n_percent, min_points)
            if halves is not None:
                data = self._data()
                self._model = (CategoricalKDE(data[halves[0]], min_bandwidth),
                               CategoricalKDE(data[halves[1]], min_bandwidth))
            self._fitted_at = len(self.losses)
        return self._model

    def _data(self) -> np.ndarray:
        """np.array(self.vectors), kept in a buffer that doubles (a copy per refit made long runs
        quadratic in their results)."""
        have, n = self._filled, len(self.vectors)
        if n > len(self._rows):
            grown = np.zeros((max(n, 2 * len(self._rows)), DIMENSIONS), dtype=np.int64)
            grown[:have] = self._rows[:have]
            self._rows = grown
        if n > have:
            self._rows[have:n] = np.array(self.vectors[have:n])
            self._filled = n
        return self._rows[:n]


@dataclass
class BOHB:
    name: str = "bohb"
    eta: int = BOHB_ETA.value
    top_n_percent: int = BOHB_TOP_N_PERCENT.value
    num_samples: int = BOHB_NUM_SAMPLES.value
    random_fraction: float = BOHB_RANDOM_FRACTION.value
    bandwidth_factor: float = BOHB_BANDWIDTH_FACTOR.value  # continuous parameters only: unused here
    min_bandwidth: float = BOHB_MIN_BANDWIDTH.value
    min_points_in_model: int = DIMENSIONS + 1  # settings.BOHB_MIN_POINTS_IN_MODEL: None -> d + 1

    def run(self, env: SearchEnv) -> None:
        budgets = env.budgets
        brackets = len(budgets)
        self._records = {b: _Budget() for b in budgets}
        iteration = 0
        while True:
            s = brackets - 1 - iteration % brackets
            sizes = bracket_sizes(s, brackets, self.eta)
            rungs = budgets[brackets - 1 - s:]
            configs: list[np.ndarray] = []
            losses: list[float] = []
            for _ in range(sizes[0]):  # one at a time: each proposal sees every result so far
                vector = self._propose(env)
                configs.append(vector)
                losses.append(self._evaluate(env, vector, rungs[0]))
            for stage in range(1, s + 1):
                ranks = np.argsort(np.argsort(losses, kind="stable"), kind="stable")
                configs = [c for c, rank in zip(configs, ranks, strict=True) if rank < sizes[stage]]
                losses = [self._evaluate(env, c, rungs[stage]) for c in configs]
            iteration += 1

    def _evaluate(self, env: SearchEnv, vector: np.ndarray, budget: int) -> float:
        loss = objective(env, vector, epochs=budget)
        if not any(b > budget and self._model_of(b) is not None for b in self._records):
            record = self._records[budget]
            record.vectors.append(vector)
            record.losses.append(loss)
        return loss

    def _model_of(self, budget: int):
        return self._records[budget].model(self.top_n_percent, self.min_points_in_model, self.min_bandwidth)

    def _propose(self, env: SearchEnv) -> np.ndarray:
        rng = env.np_rng
        model = None
        for budget in sorted(self._records, reverse=True):
            model = self._model_of(budget)
            if model is not None:
                break
        if model is None or rng.random() < self.random_fraction:
            return env.random_vector()
        good, bad = model
        centres = good.data[rng.integers(0, len(good.data), self.num_samples)]
        keep = rng.random(centres.shape) < 1.0 - good.bandwidth
        candidates = np.where(keep, centres, rng.integers(0, CARDINALITIES, centres.shape))
        l_values, g_values = good.pdf(candidates), bad.pdf(candidates)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratios = np.maximum(g_values, 1e-32) / np.maximum(l_values, 1e-32)
        if not env.space.complete:
            return self._first_in_table(env, candidates, ratios, l_values)
        best, chosen = math.inf, None
        for i, ratio in enumerate(ratios):
            if not np.isfinite(ratio) and np.isfinite(l_values[i]):
                return candidates[i]
            if ratio < best:
                best, chosen = ratio, candidates[i]
        return chosen if chosen is not None else env.random_vector()

    @staticmethod
    def _first_in_table(env: SearchEnv, candidates: np.ndarray, ratios: np.ndarray, l_values: np.ndarray):
        """A partial table: the candidate the loop above would pick among those the table can answer
        (invalid ones stay allowed, as in the reference). Its order: candidates whose ratio is not
        finite while l is, by index; then the rest by (ratio, index), NaN ratios never."""
        special = [i for i in range(len(ratios)) if not np.isfinite(ratios[i]) and np.isfinite(l_values[i])]
        rest = sorted((float(ratios[i]), i) for i in range(len(ratios))
                      if i not in special and not np.isnan(ratios[i]))
        for i in special + [i for _, i in rest]:
            if env.accepts(candidates[i]):
                return candidates[i]
        return env.random_vector()
