"""Runs a NAS algorithm against a benchmark, charging simulated training time as the API does.

An algorithm sees a :class:`SearchEnv`: ``query(spec, epochs=None)`` returns the API's answer
(one sampled repeat) and adds its training time to the run's budget counters; once the counters
reach the budget the next query raises :class:`BudgetExhausted`, which ends the run (the query
that crosses the budget counts, as in the official notebook's loops).

The trace follows the paper's measure: the incumbent is the full-budget query with the highest
(sampled) validation accuracy so far; its test regret is the best mean test accuracy of any cell
in the table minus the incumbent cell's mean test accuracy over its repeats. The trace is a step
function: one point each time the incumbent changes, plus one at the end of the run.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from farm.api import ModelSpec, NASBench, OutOfDomainError


class BudgetExhausted(Exception):
    """The run's simulated training budget is spent."""


class SearchAlgorithm(Protocol):
    name: str

    def run(self, env: SearchEnv) -> None:
        """Query ``env`` until it raises BudgetExhausted."""


@dataclass
class TracePoint:
    time: float  # simulated seconds spent when this incumbent was found
    regret: float
    validation_accuracy: float  # the sampled validation accuracy that made it the incumbent
    test_accuracy: float  # the incumbent cell's mean test accuracy
    queries: int
    module_hash: str


@dataclass
class RunResult:
    algorithm: str
    run: int
    seed: int
    budget: float
    epochs: int
    time_spent: float
    epochs_spent: int
    queries: int
    wall_seconds: float
    trace: list[TracePoint] = field(default_factory=list)

    def regret_at(self, times: np.ndarray) -> np.ndarray:
        """Regret of the incumbent at each time (NaN before the first full-budget query)."""
        stamps = np.array([p.time for p in self.trace])
        regrets = np.array([p.regret for p in self.trace])
        index = np.searchsorted(stamps, times, side="right") - 1
        out = np.where(index >= 0, regrets[np.maximum(index, 0)], np.nan)
        return out


class SearchEnv:
    """One run's view of a benchmark: its own repeat generator, counters, budget and trace."""

    def __init__(self, bench: NASBench, *, budget: float, epochs: int = 108, seed: int = 0) -> None:
        if epochs not in bench.valid_epochs:
            raise OutOfDomainError(f"the table has no {epochs}-epoch results ({sorted(bench.valid_epochs)})")
        self.bench = bench.with_seed(seed)
        self.budget = float(budget)
        self.epochs = epochs
        self.seed = seed
        # Algorithms draw from these, never from global generators: runs reproduce by seed.
        self.rng = random.Random(seed)
        self.np_rng = np.random.default_rng(seed)
        self.budgets = sorted(e for e in bench.valid_epochs if e <= epochs)
        self._mean_test = bench.table.mean(epochs, "final_test_accuracy")
        self.best_test = float(np.nanmax(self._mean_test))
        self.trace: list[TracePoint] = []
        self.queries = 0
        self._incumbent_validation = -math.inf

    @property
    def spent(self) -> float:
        return self.bench.get_budget_counters()[0]

    def exhausted(self) -> bool:
        return self.spent >= self.budget

    def is_valid(self, spec: ModelSpec) -> bool:
        return self.bench.is_valid(spec)

    def query(self, spec: ModelSpec, epochs: int | None = None) -> dict[str, Any]:
        if self.exhausted():
            raise BudgetExhausted
        budget_epochs = self.epochs if epochs is None else epochs
        data = self.bench.query(spec, epochs=budget_epochs)
        self.queries += 1
        if budget_epochs == self.epochs and data["validation_accuracy"] > self._incumbent_validation:
            self._incumbent_validation = data["validation_accuracy"]
            module_hash = self.bench.hash_of(spec)
            test = float(self._mean_test[self.bench.row_of(module_hash)])
            self.trace.append(
                TracePoint(self.spent, self.best_test - test, data["validation_accuracy"], test,
                           self.queries, module_hash)
            )
        return data


def run_search(
    algorithm: SearchAlgorithm, bench: NASBench, *, budget: float, epochs: int = 108, seed: int = 0,
    run: int = 0,
) -> RunResult:
    env = SearchEnv(bench, budget=budget, epochs=epochs, seed=seed)
    start = time.perf_counter()
    with _one_blas_thread():
        try:
            algorithm.run(env)
        except BudgetExhausted:
            pass
        else:
            raise RuntimeError(f"{algorithm.name} returned before spending its budget")
    spent, epochs_spent = env.bench.get_budget_counters()
    trace = list(env.trace)
    if trace:  # close the step function at the end of the run
        last = trace[-1]
        trace.append(TracePoint(spent, last.regret, last.validation_accuracy, last.test_accuracy,
                                env.queries, last.module_hash))
    return RunResult(algorithm.name, run, seed, float(budget), epochs, spent, epochs_spent, env.queries,
                     time.perf_counter() - start, trace)


AlgorithmFactory = Callable[[], SearchAlgorithm]


def _one_blas_thread():
    """The model-based algorithms do many tiny matrix products; BLAS thread hand-offs make them
    several times slower (measured 7 ms vs 0.3 ms per BOHB density on 2 busy cores)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1)
