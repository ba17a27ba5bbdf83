"""Random search, regularized evolution and REINFORCE, as in the paper's comparison (section 5).

RS and RE follow the official notebook (random_spec / mutate_spec over the original matrix,
population 50, tournament 10, mutation rate 1.0). REINFORCE is the paper's controller: one
independent categorical distribution (logits) per decision -- 21 edges, 5 ops --, sampled, rewarded
with the validation accuracy, updated by the policy gradient against a moving-average baseline.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np

from farm.search.encoding import CARDINALITIES, DIMENSIONS, mutate_spec, random_spec, spec_from_vector
from farm.search.harness import SearchEnv


@dataclass
class RandomSearch:
    name: str = "rs"

    def run(self, env: SearchEnv) -> None:
        while True:
            env.query(random_spec(env.rng, env.is_valid))


@dataclass
class RegularizedEvolution:
    """Real et al. 2019 as in the notebook: age-based removal, tournament selection."""

    name: str = "re"
    population_size: int = 50
    tournament_size: int = 10
    mutation_rate: float = 1.0

    def run(self, env: SearchEnv) -> None:
        population: collections.deque = collections.deque()
        for _ in range(self.population_size):
            spec = random_spec(env.rng, env.is_valid)
            population.append((spec, env.query(spec)["validation_accuracy"]))
        while True:
            candidates = env.rng.sample(list(population), self.tournament_size)
            parent = max(candidates, key=lambda member: member[1])[0]
            child = mutate_spec(parent, env.rng, env.is_valid, self.mutation_rate)
            population.append((child, env.query(child)["validation_accuracy"]))
            population.popleft()


@dataclass
class Reinforce:
    """REINFORCE with per-decision categorical logits and an exponential moving-average baseline.

    Invalid samples (pruned graph over 9 edges) are redrawn at no cost and, by default, without
    an update (``invalid_reward=None``); a number instead rewards them with it. The default
    learning rate 1.0 was the best of {0.05, 0.1, 0.5, 1, 5, 20} on the synthetic table: rewards
    are accuracies whose differences are ~0.01, so small rates barely move the logits within a
    run, and rewarding invalid samples with 0 swamps that signal.
    """

    name: str = "reinforce"
    learning_rate: float = 1.0
    baseline_decay: float = 0.95
    invalid_reward: float | None = None
    max_invalid_in_a_row: int = 100_000

    def run(self, env: SearchEnv) -> None:
        rng = env.np_rng
        width = int(CARDINALITIES.max())
        logits = np.zeros((DIMENSIONS, width))
        mask = np.arange(width)[None, :] < CARDINALITIES[:, None]
        baseline: float | None = None
        rows = np.arange(DIMENSIONS)
        invalid_in_a_row = 0
        while True:
            shifted = np.where(mask, logits, -np.inf)
            probs = np.exp(shifted - shifted.max(axis=1, keepdims=True))
            probs /= probs.sum(axis=1, keepdims=True)
            # Inverse-CDF sampling of every decision at once.
            choice = (probs.cumsum(axis=1) < rng.random((DIMENSIONS, 1))).sum(axis=1)
            choice = np.minimum(choice, CARDINALITIES - 1)
            spec = spec_from_vector(choice)
            valid = env.is_valid(spec)
            invalid_in_a_row = 0 if valid else invalid_in_a_row + 1
            if invalid_in_a_row > self.max_invalid_in_a_row:
                raise RuntimeError(f"REINFORCE drew {invalid_in_a_row} invalid cells in a row")
            if valid:
                reward = env.query(spec)["validation_accuracy"]
                baseline = reward if baseline is None else (
                    self.baseline_decay * baseline + (1 - self.baseline_decay) * reward
                )
            elif self.invalid_reward is None:
                continue
            else:
                reward = self.invalid_reward
            advantage = reward - (baseline if baseline is not None else reward)
            # d log softmax / d logits = onehot(choice) - probs, per decision.
            gradient = -probs
            gradient[rows, choice] += 1.0
            logits += self.learning_rate * advantage * np.where(mask, gradient, 0.0)
