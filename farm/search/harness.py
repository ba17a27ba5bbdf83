"""Runs a NAS algorithm against a benchmark, charging simulated training time as the API does.

An algorithm sees a :class:`SearchEnv`: ``query(spec, epochs=None)`` returns the API's answer
(one sampled repeat) and adds its training time to the run's budget counters; once the counters
reach the budget the next query raises :class:`BudgetExhausted`, which ends the run (the query
that crosses the budget counts, as in the official notebook's loops).

On a table that covers only some cells (farm.search.coverage) the run searches the covered cells:
the draws below (``random_spec``, ``mutate_spec``, ``random_vector``...) are the reference's,
restricted to the table, and a cell with fewer repeats than the table's most is queried over the
repeats it has (the regret uses their mean).

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
from farm.search.coverage import TableSpace, search_space
from farm.search.encoding import (
    CARDINALITIES,
    mutate_one_parameter,
    mutate_spec,
    random_spec,
    random_vector,
)


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
    fallbacks: int = 0  # partial tables: draws that found no covered cell and took a random one
    settled: bool = False  # partial tables: stopped once the table's best sample was the incumbent

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
        # The covered cells (all of them for a complete table); lower budgets only where they cover
        # every one of those cells.
        self.space: TableSpace = search_space(bench, epochs)
        self.budgets = list(self.space.coverage.budgets)
        self.fallbacks = 0
        self._repeat_rng = random.Random(f"{seed}:repeats")  # only for cells with missing repeats
        self._mean_test = bench.table.mean(epochs, "final_test_accuracy")
        self.best_test = float(np.nanmax(self._mean_test))
        self.trace: list[TracePoint] = []
        self.queries = 0
        self._incumbent_validation = -math.inf
        # A partial table: once the incumbent holds the table's best validation sample, no query can
        # change the trace (an incumbent changes only for a strictly higher sample), so the run
        # stops there ("settled") and its trace is closed at the budget, as if it had gone on.
        self._ceiling = None if self.space.complete else self.space.best_validation
        self.settled = False

    @property
    def spent(self) -> float:
        return self.bench.get_budget_counters()[0]

    def exhausted(self) -> bool:
        return self.spent >= self.budget

    def is_valid(self, spec: ModelSpec) -> bool:
        return self.bench.is_valid(spec)

    # -- the reference's draws, restricted to the table's cells (farm.search.coverage) ----------
    def random_spec(self) -> ModelSpec:
        """The notebook's random_spec."""
        space = self.space
        if space.complete:
            return random_spec(self.rng, self.is_valid)
        if space.sparse:
            return space.uniform_spec(self.rng)
        return self._redrawn(lambda: random_spec(self.rng, self.is_valid), space.contains_spec,
                             lambda: space.uniform_spec(self.rng))

    def mutate_spec(self, parent: ModelSpec, mutation_rate: float) -> ModelSpec:
        """The notebook's mutate_spec; a child outside the table is redrawn like an invalid one."""
        if self.space.complete:
            return mutate_spec(parent, self.rng, self.is_valid, mutation_rate)
        return self._redrawn(lambda: mutate_spec(parent, self.rng, self.is_valid, mutation_rate),
                             self.space.contains_spec, lambda: self.space.uniform_spec(self.rng))

    def random_vector(self) -> np.ndarray:
        """ConfigSpace's uniform sample of the 26 parameters."""
        space = self.space
        if space.complete:
            return random_vector(self.np_rng)
        if space.sparse:
            return space.uniform_vectors(self.np_rng)
        return self._redrawn(lambda: random_vector(self.np_rng), space.accepts_vector,
                             lambda: space.uniform_vectors(self.np_rng))

    def random_vectors(self, count: int) -> np.ndarray:
        """Many uniform samples at once (SMAC's random EI candidates). On a dense partial table they
        stay the reference's; the caller skips those outside the table (``accepts``)."""
        if self.space.sparse:
            return self.space.uniform_vectors(self.np_rng, count)
        return self.np_rng.integers(0, CARDINALITIES, size=(count, len(CARDINALITIES)))

    def mutate_one_parameter(self, parent: np.ndarray) -> np.ndarray:
        """run_regularized_evolution.py's one-parameter mutation; a child outside the table is redrawn."""
        if self.space.complete:
            return mutate_one_parameter(parent, self.np_rng)
        return self._redrawn(lambda: mutate_one_parameter(parent, self.np_rng), self.space.accepts_vector,
                             lambda: self.space.uniform_vectors(self.np_rng))

    def accepts(self, vector: np.ndarray) -> bool:
        """False only for an encoding of a valid cell that the table lacks (never queried)."""
        return self.space.accepts_vector(vector)

    def _redrawn(self, draw: Callable[[], Any], accept: Callable[[Any], bool], fallback: Callable[[], Any]):
        for _ in range(self.space.redraws):
            candidate = draw()
            if accept(candidate):
                return candidate
        self.fallbacks += 1
        return fallback()

    def query(self, spec: ModelSpec, epochs: int | None = None) -> dict[str, Any]:
        if self.settled or self.exhausted():
            raise BudgetExhausted
        budget_epochs = self.epochs if epochs is None else epochs
        if self.space.partial_repeats:
            data = self._query_repeats_present(spec, budget_epochs)
        else:
            data = self.bench.query(spec, epochs=budget_epochs)
        self.queries += 1
        if budget_epochs == self.epochs and data["validation_accuracy"] > self._incumbent_validation:
            self._incumbent_validation = data["validation_accuracy"]
            self.settled = self._ceiling is not None and self._incumbent_validation >= self._ceiling
            module_hash = self.bench.hash_of(spec)
            test = float(self._mean_test[self.bench.row_of(module_hash)])
            self.trace.append(
                TracePoint(self.spent, self.best_test - test, data["validation_accuracy"], test,
                           self.queries, module_hash)
            )
        return data


    def _query_repeats_present(self, spec: ModelSpec, epochs: int) -> dict[str, Any]:
        """The API's query, but a cell with fewer repeats than the table's most samples one of those
        it has (the API would refuse it as unfinished), charged the same way."""
        bench = self.bench
        module_hash = bench.hash_of(spec)
        row = bench.row_of(module_hash)
        if bench.table.counts[epochs][row] >= bench.config["num_repeats"]:
            return bench.query(spec, epochs=epochs)
        fixed, computed = bench.get_metrics_from_hash(module_hash)
        repeat = computed[epochs][self._repeat_rng.randrange(len(computed[epochs]))]
        data = dict(fixed)
        for key in ("training_time", "train_accuracy", "validation_accuracy", "test_accuracy"):
            data[key] = repeat["final_" + key]
        bench.training_time_spent += data["training_time"]
        bench.total_epochs_spent += epochs
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
    if trace:  # close the step function at the end of the run (a settled run: at the budget)
        last = trace[-1]
        trace.append(TracePoint(max(spent, float(budget)) if env.settled else spent, last.regret,
                                last.validation_accuracy, last.test_accuracy, env.queries, last.module_hash))
    return RunResult(algorithm.name, run, seed, float(budget), epochs, spent, epochs_spent, env.queries,
                     time.perf_counter() - start, trace, env.fallbacks, env.settled)


AlgorithmFactory = Callable[[], SearchAlgorithm]


def _one_blas_thread():
    """The model-based algorithms do many tiny matrix products; BLAS thread hand-offs make them
    several times slower (measured 7 ms vs 0.3 ms per BOHB density on 2 busy cores)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1)
