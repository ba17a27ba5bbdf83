"""SMAC (Hutter, Hoos & Leyton-Brown 2011) as the benchmark authors' run_smac.py ran SMAC3 0.10.0,
reimplemented on scikit-learn's random forest (SMAC3 needs pyrfr, a SWIG build). Each rule names the
SMAC3 v0.10.0 file it follows; the settings come from :mod:`farm.search.settings`.

- Initial design (initial_incumbent RANDOM): one random configuration, run once: the incumbent.
- Each SMBO iteration (optimizer/smbo.py): fit a random forest on every run so far (one row per
  run, runhistory2epm.py), expected improvement over the lowest *predicted* cost of any evaluated
  configuration (predict_incumbent=True), maximised by InterleavedLocalAndRandomSearch
  (ei_optimization.py): a first-improvement one-exchange local search (neighbours in random
  order, up to 10 plateau steps) from each of the 10 evaluated configurations with the highest EI,
  plus 4,990 random configurations, all sorted by EI. The challenger list interleaves a random
  configuration before each entry with probability 0.33 (ChooserProb).
- Intensification (intensification/intensification.py, non-deterministic, maxR 4, one
  challenger per iteration since intensification_percentage is 1e-10 and min_chall 1): skip a
  challenger equal to the incumbent; run the incumbent once more if it has fewer than 4 runs;
  race the challenger on the incumbent's runs (1, then 2, 4, ... at a time), rejecting it as
  soon as its mean cost on the shared runs is higher, and making it the incumbent when it has
  all of them and a lower mean. Every run, of a new or an already-run configuration, is a query
  that samples a repeat and is charged its training time (the benchmark ignores SMAC's seeds).
- Forest (rf_with_instances.py, cmd_reader.py defaults): 10 trees, bootstrapping, 5/6 of the
  features per split, min 3 samples to split and per leaf, depth <= 20; mean and variance of the
  tree predictions (compute_law_of_total_variance False). Difference: pyrfr splits the 3-valued op
  parameters as categories, here they are one-hot columns (21 edge bits + 15 op columns).
- Invalid encodings: the experiment scripts' rule (encoding.objective): cost 1, no training time.
- A table that covers only some cells (farm.search.coverage): random configurations (the initial
  one, the interleaved ones, the 4,990 EI candidates on a sparse table) come from the table; a
  challenger from the EI ranking that the table does not cover is skipped. The local search is
  not restricted (it only maximises EI); its results are skipped the same way. On a small table
  every configuration may end up run on all of the incumbent's runs, leaving nothing to pay for:
  after 10,000 such challengers in a row the run ends before its budget (runs.csv shows the time).
- One stated shortcut (the only one): the forest is refitted and EI re-maximised when the runs
  have grown by 10% (at least 1), not after every run; in between, challengers are taken in order
  from the last EI ranking. A faithful refit per iteration costs ~0.1 s, ~5,000 times per 5e6 s
  run: about 8 minutes a run instead of seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from farm.search.encoding import neighbours, objective, one_hot
from farm.search.harness import BudgetExhausted, SearchEnv
from farm.search.settings import (
    SMAC_ACQ_CHALLENGERS,
    SMAC_INITIAL_DESIGN,
    SMAC_LOCAL_SEARCHES,
    SMAC_MAX_DEPTH,
    SMAC_MAX_RUNS_PER_CONFIG,
    SMAC_MIN_SAMPLES_LEAF,
    SMAC_MIN_SAMPLES_SPLIT,
    SMAC_PLATEAU_WALK,
    SMAC_RANDOM_PROBABILITY,
    SMAC_RATIO_FEATURES,
    SMAC_TREES,
)

_VAR_FLOOR = 1e-10  # rf_with_instances.py: var_threshold (VERY_SMALL_NUMBER)
# Partial tables only: this many challengers in a row with nothing left to run ends the run early.
_IDLE_CHALLENGERS = 10_000


def expected_improvement(mean: np.ndarray, std: np.ndarray, best: float) -> np.ndarray:
    """EI for minimisation (acquisition.py, EI with par 0)."""
    from scipy.special import ndtr  # the normal CDF, without importing all of scipy.stats

    z = (best - mean) / std
    return (best - mean) * ndtr(z) + std * np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)


class RunHistory:
    """Every run: per configuration its runs by seed label, and the rows the forest is fitted on."""

    def __init__(self) -> None:
        self.runs: dict[bytes, dict[int, float]] = {}
        self.vectors: dict[bytes, np.ndarray] = {}
        self.rows: list[np.ndarray] = []
        self.costs: list[float] = []
        self._next_seed = 0

    def new_seed(self) -> int:
        self._next_seed += 1
        return self._next_seed

    def add(self, vector: np.ndarray, seed: int, cost: float) -> None:
        key = vector.tobytes()
        self.runs.setdefault(key, {})[seed] = cost
        self.vectors[key] = vector
        self.rows.append(vector)
        self.costs.append(cost)

    def seeds(self, vector: np.ndarray) -> set[int]:
        return set(self.runs.get(vector.tobytes(), {}))

    def mean_cost(self, vector: np.ndarray, seeds: set[int]) -> float:
        runs = self.runs[vector.tobytes()]
        return float(np.mean([runs[s] for s in seeds]))


@dataclass
class SMAC:
    name: str = "smac"
    initial_design: int = SMAC_INITIAL_DESIGN.value
    random_probability: float = SMAC_RANDOM_PROBABILITY.value
    trees: int = SMAC_TREES.value
    max_runs_per_config: int = SMAC_MAX_RUNS_PER_CONFIG.value
    ratio_features: float = SMAC_RATIO_FEATURES.value
    min_samples_split: int = SMAC_MIN_SAMPLES_SPLIT.value
    min_samples_leaf: int = SMAC_MIN_SAMPLES_LEAF.value
    max_depth: int = SMAC_MAX_DEPTH.value
    acq_challengers: int = SMAC_ACQ_CHALLENGERS.value
    local_searches: int = SMAC_LOCAL_SEARCHES.value
    plateau_walk: int = SMAC_PLATEAU_WALK.value
    refit_growth: float = 0.10  # the stated shortcut (module docstring), not a reference setting

    def run(self, env: SearchEnv) -> None:
        rng = env.np_rng
        history = RunHistory()
        incumbent = env.random_vector()
        for _ in range(self.initial_design):
            self._run(env, history, incumbent, history.new_seed())
        ranked: list[np.ndarray] = []
        fitted_at = 0
        while True:
            if not ranked or len(history.costs) >= fitted_at + max(1, int(self.refit_growth * fitted_at)):
                ranked = self._maximise_ei(env, history, rng)[::-1]  # reversed: pop() takes the best
                fitted_at = len(history.costs)
            incumbent = self._intensify(env, history, incumbent, ranked, rng)

    def _run(self, env: SearchEnv, history: RunHistory, vector: np.ndarray, seed: int) -> None:
        history.add(vector, seed, objective(env, vector))

    def _next_challenger(self, env: SearchEnv, ranked: list[np.ndarray],
                         rng: np.random.Generator) -> np.ndarray:
        """ChallengerList.__next__ with ChooserProb: random with probability 0.33, else the next by EI
        (on a partial table, the next by EI that the table covers)."""
        if rng.random() < self.random_probability or not ranked:
            return env.random_vector()
        challenger = ranked.pop()
        while not env.space.complete and not env.accepts(challenger):
            if not ranked:
                return env.random_vector()
            challenger = ranked.pop()
        return challenger

    def _intensify(self, env, history: RunHistory, incumbent: np.ndarray, ranked, rng) -> np.ndarray:
        idle = 0
        while True:
            challenger = self._next_challenger(env, ranked, rng)
            if np.array_equal(challenger, incumbent):
                continue
            if len(history.seeds(incumbent)) < self.max_runs_per_config:  # _add_inc_run
                self._run(env, history, incumbent, history.new_seed())
            incumbent, challenger_ran = self._race(env, history, challenger, incumbent, rng)
            if challenger_ran:  # min_chall 1 and no time left: one challenger per iteration
                return incumbent
            idle += 1
            if idle >= _IDLE_CHALLENGERS and not env.space.complete:
                # A small table: every configuration offered has already run on all of the
                # incumbent's (4) runs, so nothing is left to pay for; SMAC would spin forever.
                raise BudgetExhausted

    def _race(self, env, history: RunHistory, challenger, incumbent, rng) -> tuple[np.ndarray, bool]:
        """_race_challenger: aggressive racing on the incumbent's runs (minR 1)."""
        ran = False
        batch = 1
        incumbent_seeds = history.seeds(incumbent)
        while True:
            missing = sorted(incumbent_seeds - history.seeds(challenger))
            rng.shuffle(missing)
            for seed in missing[:batch]:
                self._run(env, history, challenger, seed)
                ran = True
            inc_runs, chall_runs = history.seeds(incumbent), history.seeds(challenger)
            shared = inc_runs & chall_runs
            chall_cost = history.mean_cost(challenger, shared)
            inc_cost = history.mean_cost(incumbent, shared)
            if chall_cost > inc_cost:
                return incumbent, ran
            if not inc_runs - chall_runs:
                return (incumbent if chall_cost >= inc_cost else challenger), ran
            batch *= 2

    def _maximise_ei(self, env: SearchEnv, history: RunHistory, rng: np.random.Generator) -> list[np.ndarray]:
        """The EI ranking of 10 local-search results and 4,990 random configurations, best first."""
        from sklearn.ensemble import RandomForestRegressor

        forest = RandomForestRegressor(
            n_estimators=self.trees,
            max_features=self.ratio_features,
            min_samples_split=self.min_samples_split,
            min_samples_leaf=self.min_samples_leaf,
            max_depth=self.max_depth,
            bootstrap=True,
            random_state=int(rng.integers(2**31 - 1)),
            n_jobs=1,
        ).fit(one_hot(np.array(history.rows)), np.array(history.costs))

        def predict(candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            features = np.ascontiguousarray(one_hot(candidates), dtype=np.float32)
            per_tree = np.stack([t.predict(features, check_input=False) for t in forest.estimators_])
            return per_tree.mean(axis=0), np.maximum(per_tree.var(axis=0), _VAR_FLOOR)

        evaluated = np.array(list(history.vectors.values()))
        mean, _ = predict(evaluated)
        best = float(mean.min())  # predict_incumbent: the lowest predicted cost of an evaluated one

        def acquisition(candidates: np.ndarray) -> np.ndarray:
            mean, var = predict(candidates)
            return expected_improvement(mean, np.sqrt(var), best)

        starts = evaluated[self._sort_by(acquisition(evaluated), rng)[: self.local_searches]]
        local_values, local_points = self._local_search(starts, acquisition, rng)
        count = self.acq_challengers - len(starts)
        randoms = env.random_vectors(count)
        random_values = acquisition(randoms)
        order = self._sort_by(random_values, rng)
        # random (sorted, random tie-break) + local, then a stable sort by EI, as maximize() does
        values = np.concatenate([random_values[order], local_values])
        points = np.concatenate([randoms[order], local_points])
        final = np.argsort(-values, kind="stable")
        return [points[i] for i in final]

    @staticmethod
    def _sort_by(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """_sort_configs_by_acq_value: descending, ties broken at random."""
        return np.lexsort((rng.random(len(values)), values))[::-1]

    def _local_search(self, starts: np.ndarray, acquisition, rng) -> tuple[np.ndarray, np.ndarray]:
        """LocalSearch._one_iter from every start, in lock step so each step is one batched
        prediction: first improving neighbour in a random order, else (up to plateau_walk times)
        the first neighbour of equal EI."""
        current = starts.copy()
        values = acquisition(current)
        plateau_steps = np.zeros(len(current), dtype=int)
        active = np.ones(len(current), dtype=bool)
        while active.any():
            rows = np.flatnonzero(active)
            around = np.stack([neighbours(current[i]) for i in rows])  # [active, 31, dims]
            for k in range(len(rows)):
                around[k] = around[k][rng.permutation(around.shape[1])]
            scores = acquisition(around.reshape(-1, around.shape[2])).reshape(around.shape[:2])
            for k, i in enumerate(rows):
                better = np.flatnonzero(scores[k] > values[i])
                equal = np.flatnonzero(scores[k] == values[i])
                if len(better):
                    j = better[0]
                    current[i], values[i] = around[k, j], scores[k, j]
                elif len(equal) and plateau_steps[i] < self.plateau_walk:
                    plateau_steps[i] += 1
                    current[i] = around[k, equal[0]]
                else:
                    active[i] = False
        return values, current
