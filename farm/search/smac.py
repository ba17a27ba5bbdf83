"""SMAC-style Bayesian optimisation (Hutter, Hoos & Leyton-Brown 2011), on scikit-learn's random
forest. SMAC3 itself needs pyrfr (a SWIG build) and would dominate the run time; this is the
published algorithm with its defaults where they matter, plus one stated shortcut:

- surrogate: a random forest (10 trees, bootstrap, 5/6 of the features per split, min 3 samples
  per split) on 21 edge bits + one-hot ops, predicting the validation error; mean and variance
  over the trees;
- acquisition: expected improvement over the best observed error, maximised over 1000 random
  configurations plus a greedy one-exchange local search from the 10 best observed ones;
- interleaving: each proposal is uniformly random with probability 0.2 (SMAC's random design);
- initial design: 10 random configurations;
- invalid cells score error 1 and cost nothing (the usual NAS-Bench-101 tabular convention);
- shortcut: the forest is refitted when the observations have grown by 10% (at least 1), not
  after every one; in between, proposals are taken in EI order from the last maximisation.
  It keeps a 5e6-second run (~2,000 evaluations) to seconds instead of minutes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from farm.search.encoding import neighbours, one_hot, random_vector, spec_from_vector
from farm.search.harness import SearchEnv


def expected_improvement(mean: np.ndarray, std: np.ndarray, best: float) -> np.ndarray:
    """EI for minimisation."""
    from scipy.special import ndtr  # the normal CDF, without importing all of scipy.stats

    std = np.maximum(std, 1e-9)
    z = (best - mean) / std
    return (best - mean) * ndtr(z) + std * np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)


@dataclass
class SMAC:
    name: str = "smac"
    initial_design: int = 10
    trees: int = 10
    random_probability: float = 0.2
    random_candidates: int = 1000
    local_search_starts: int = 10
    local_search_steps: int = 10
    refit_growth: float = 0.10

    def run(self, env: SearchEnv) -> None:
        rng = env.np_rng
        xs: list[np.ndarray] = []
        ys: list[float] = []
        seen: set[bytes] = set()
        queue: list[np.ndarray] = []
        fitted_at = 0
        while True:
            if len(ys) < self.initial_design or rng.random() < self.random_probability:
                vector = random_vector(rng)
            else:
                if not queue or len(ys) >= fitted_at + max(1, int(self.refit_growth * fitted_at)):
                    queue = self._maximise_ei(np.array(xs), np.array(ys), rng, seen)
                    fitted_at = len(ys)
                vector = queue.pop(0) if queue else random_vector(rng)
            seen.add(vector.tobytes())
            spec = spec_from_vector(vector)
            error = 1.0 - env.query(spec)["validation_accuracy"] if env.is_valid(spec) else 1.0
            xs.append(vector)
            ys.append(error)

    def _maximise_ei(self, xs: np.ndarray, ys: np.ndarray, rng: np.random.Generator, seen: set[bytes]):
        from sklearn.ensemble import RandomForestRegressor

        forest = RandomForestRegressor(
            n_estimators=self.trees,
            max_features=5 / 6,
            min_samples_split=3,
            min_samples_leaf=1,
            bootstrap=True,
            random_state=int(rng.integers(2**31)),
            n_jobs=1,
        ).fit(one_hot(xs), ys)
        best = float(ys.min())

        def ei(candidates: np.ndarray) -> np.ndarray:
            features = np.ascontiguousarray(one_hot(candidates), dtype=np.float32)
            per_tree = np.stack([t.predict(features, check_input=False) for t in forest.estimators_])
            return expected_improvement(per_tree.mean(axis=0), per_tree.std(axis=0), best)

        pool = [rng.integers(0, 3, size=(self.random_candidates, xs.shape[1]))]
        pool[0][:, : xs.shape[1] - 5] %= 2  # edge dimensions are bits
        # Greedy one-exchange local search from the best observed configurations, all starts
        # in lock step so that each step is one batched forest prediction.
        current = xs[np.argsort(ys, kind="stable")[: self.local_search_starts]]
        current_ei = ei(current)
        for _ in range(self.local_search_steps):
            around = np.stack([neighbours(c) for c in current])  # [starts, 31, dims]
            values = ei(around.reshape(-1, around.shape[2])).reshape(around.shape[:2])
            step = values.argmax(axis=1)
            better = values[np.arange(len(current)), step] > current_ei
            if not better.any():
                break
            current = np.where(better[:, None], around[np.arange(len(current)), step], current)
            current_ei = np.where(better, values[np.arange(len(current)), step], current_ei)
            pool.append(current[better])
        candidates = np.unique(np.concatenate(pool), axis=0)
        values = ei(candidates)
        order = np.argsort(-values, kind="stable")
        ranked = [candidates[i] for i in order if candidates[i].tobytes() not in seen]
        return ranked[: max(1, int(self.refit_growth * len(ys)) + 1)]
