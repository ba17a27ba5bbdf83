"""Random search, regularized evolution and REINFORCE, as in the paper's comparison (section 5).

- ``rs`` and ``re`` follow the official notebook line for line (random_spec / mutate_spec over the
  original matrix, redrawn until ``nasbench.is_valid``; population 50, tournament 10 drawn without
  replacement, mutation rate 1.0).
- ``rs_script`` is run_random_search.py: every parameter uniform (ConfigSpace's
  sample_configuration), an invalid encoding costs nothing.
- ``re_script`` is regularized evolution as in the benchmark authors' experiment script
  (run_regularized_evolution.py): population 100, a sample of 10 drawn *with* replacement, a
  mutation that changes exactly one of the 26 parameters, and the scripts' validity rule (an
  invalid cell joins the population with error 1 and costs nothing).
- ``reinforce`` is run_rl.py's controller: one independent categorical distribution (logits) per
  decision, sampled until the reward (validation accuracy) exceeds 0.001, a bias-corrected
  exponential moving-average baseline updated with the reward before the advantage is taken,
  and plain gradient ascent on the logits.
- On a table that covers only some cells, every draw goes through the run's ``SearchEnv``, which
  restricts it to the table (:mod:`farm.search.coverage`); REINFORCE on a sparse table samples the
  table's cells in proportion to the policy's probability of their encodings.

Every default comes from :mod:`farm.search.settings`, which names its source.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np

from farm.search.encoding import CARDINALITIES, DIMENSIONS, objective
from farm.search.harness import SearchEnv
from farm.search.settings import (
    RE_NOTEBOOK_MUTATION_RATE,
    RE_NOTEBOOK_POPULATION,
    RE_NOTEBOOK_TOURNAMENT,
    RE_SCRIPT_POPULATION,
    RE_SCRIPT_SAMPLE,
    REINFORCE_LEARNING_RATE,
    REINFORCE_MIN_REWARD,
    REINFORCE_MOMENTUM,
)

# Invalid encodings cost nothing, so a run that only ever drew invalid ones would never end;
# this many in a row is a bug, not bad luck (the chance of 10^5 in a row at 28% valid is nil).
_MAX_INVALID_IN_A_ROW = 100_000


@dataclass
class RandomSearch:
    name: str = "rs"

    def run(self, env: SearchEnv) -> None:
        while True:
            env.query(env.random_spec())


@dataclass
class RandomSearchScript:
    """run_random_search.py: uniform over the 26 parameters; invalid encodings cost nothing."""

    name: str = "rs_script"

    def run(self, env: SearchEnv) -> None:
        for _ in iter(int, 1):  # forever; each invalid draw is free, the harness ends the run
            for _attempt in range(_MAX_INVALID_IN_A_ROW):
                if objective(env, env.random_vector()) < 1.0:
                    break
            else:
                raise RuntimeError(f"rs_script drew {_MAX_INVALID_IN_A_ROW} invalid cells in a row")


@dataclass
class RegularizedEvolution:
    """Real et al. 2019 as in the notebook: age-based removal, tournament selection."""

    name: str = "re"
    population_size: int = RE_NOTEBOOK_POPULATION.value
    tournament_size: int = RE_NOTEBOOK_TOURNAMENT.value
    mutation_rate: float = RE_NOTEBOOK_MUTATION_RATE.value

    def run(self, env: SearchEnv) -> None:
        population: collections.deque = collections.deque()
        for _ in range(self.population_size):
            spec = env.random_spec()
            population.append((env.query(spec)["validation_accuracy"], spec))
        while True:
            # The notebook's random_combination: indices without replacement, kept in population
            # order; sorted(...)[-1] picks the last of equally good candidates.
            indices = sorted(env.rng.sample(range(len(population)), self.tournament_size))
            sample = [population[i] for i in indices]
            parent = sorted(sample, key=lambda member: member[0])[-1][1]
            child = env.mutate_spec(parent, self.mutation_rate)
            population.append((env.query(child)["validation_accuracy"], child))
            population.popleft()


@dataclass
class RegularizedEvolutionScript:
    """run_regularized_evolution.py: ConfigSpace sampling and one-parameter mutations."""

    name: str = "re_script"
    population_size: int = RE_SCRIPT_POPULATION.value
    sample_size: int = RE_SCRIPT_SAMPLE.value

    def run(self, env: SearchEnv) -> None:
        population: collections.deque = collections.deque()
        invalid_in_a_row = 0
        while len(population) < self.population_size:
            vector = env.random_vector()
            population.append((-objective(env, vector), vector))  # fitness = -error, as the script
        while True:
            sample = [population[env.rng.randrange(len(population))] for _ in range(self.sample_size)]
            parent = max(sample, key=lambda member: member[0])[1]
            child = env.mutate_one_parameter(parent)
            fitness = -objective(env, child)
            invalid_in_a_row = invalid_in_a_row + 1 if fitness <= -1.0 else 0
            if invalid_in_a_row > _MAX_INVALID_IN_A_ROW:
                raise RuntimeError(f"re_script made {invalid_in_a_row} invalid children in a row")
            population.append((fitness, child))
            population.popleft()


@dataclass
class Reinforce:
    """REINFORCE over per-decision categorical logits, as run_rl.py (REINFORCEOptimizer.step)."""

    name: str = "reinforce"
    learning_rate: float = REINFORCE_LEARNING_RATE.value
    momentum: float = REINFORCE_MOMENTUM.value
    min_reward: float = REINFORCE_MIN_REWARD.value

    def run(self, env: SearchEnv) -> None:
        rng = env.np_rng
        width = int(CARDINALITIES.max())
        logits = np.zeros((DIMENSIONS, width))
        mask = np.arange(width)[None, :] < CARDINALITIES[:, None]
        rows = np.arange(DIMENSIONS)
        numerator = denominator = 0.0  # ExponentialMovingAverage: value = numerator / denominator
        while True:
            shifted = np.where(mask, logits, -np.inf)
            probs = np.exp(shifted - shifted.max(axis=1, keepdims=True))
            probs /= probs.sum(axis=1, keepdims=True)
            cumulative = probs.cumsum(axis=1)
            if env.space.sparse:  # a sparse table: the policy restricted to its cells (coverage.py)
                with np.errstate(divide="ignore"):
                    log_probs = np.log(probs)
            for _attempt in range(_MAX_INVALID_IN_A_ROW):
                if env.space.sparse:
                    choice = env.space.policy_sample(log_probs, rng)
                else:  # inverse-CDF sampling of every decision at once
                    choice = np.minimum((cumulative < rng.random((DIMENSIONS, 1))).sum(axis=1),
                                        CARDINALITIES - 1)
                reward = 1.0 - objective(env, choice)
                if reward > self.min_reward:
                    break
            else:
                raise RuntimeError(f"REINFORCE drew {_MAX_INVALID_IN_A_ROW} invalid cells in a row")
            numerator = self.momentum * numerator + (1 - self.momentum) * reward
            denominator = self.momentum * denominator + (1 - self.momentum)
            advantage = reward - numerator / denominator
            # d log p(choice) / d logits = onehot(choice) - probs, per decision.
            gradient = -probs
            gradient[rows, choice] += 1.0
            logits += self.learning_rate * advantage * np.where(mask, gradient, 0.0)
