"""The cells a benchmark table covers, and how the algorithms search only those (partial tables).

The reference algorithms assume a table with every one of the 423,624 cells (the published file).
A campaign in progress, a pilot over sampled cells or a public subset covers only some. The search
space of a run is then the *covered* cells: those with at least one repeat at the run's budget
(``--epochs``). Lower budgets (BOHB's rungs) are kept only where they cover every one of those cells.
A cell with fewer repeats than the table's most is queried over the repeats it has.

How each operation is restricted (docs/search.md, "Partial tables", says it per algorithm):

- every cell covered: nothing changes (the reference code path, bit for bit);
- *dense* tables (at least :data:`DENSE_COVERAGE` of the space): a random draw or a mutation whose
  cell is not in the table is redrawn, as the reference redraws an invalid one, so each draw has the
  reference's distribution conditioned on the table (fewer than ~2 draws on average; after
  :data:`DENSE_REDRAWS` draws a uniformly random covered cell is taken, which at this density is
  never observed);
- *sparse* tables: redrawing the reference's draw until it lands in a 1,000-cell table would take
  hundreds of draws (~65 us each), so a random draw is a covered cell chosen uniformly (its stored
  matrix, placed in the 7-vertex encoding with isolated, pruned-away extra vertices); a mutation is
  redrawn at most :data:`SPARSE_REDRAWS` times, then a uniformly random covered cell is taken (a
  restart; counted as a fallback in ``runs.csv``).

An encoding the experiment scripts' rule calls invalid stays what the reference makes of it (error
1, no cost). An encoding whose cell is valid but not in the table is never queried.
"""

from __future__ import annotations

import math
import random
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from farm.api import METRIC_KEYS, BenchmarkTable, ModelSpec, NASBench
from farm.search.encoding import (
    EDGE_SPOTS,
    NUM_VERTICES,
    OP_SPOTS,
    reference_valid,
    spec_from_vector,
)
from farm.spec import AVAILABLE_OPS, INPUT, OUTPUT

# Unique cells of NAS-Bench-101's space (farm.space.count_cells(); tests/test_space.py checks it).
SPACE_CELLS = 423_624
# From this fraction of the space on, redrawing the reference's draw costs < ~2 draws on average.
DENSE_COVERAGE = 0.5
DENSE_REDRAWS = 1_000
# A sparse table's mutation: ~1.3% of notebook mutations keep the parent's cell and a 1,000-cell
# table catches ~0.2% of the rest, so most mutations need ~60 draws; 16 bounds the cost per query
# to ~1 ms (16 draws of ~65 us) and keeps the parent's-cell outcome from dominating.
SPARSE_REDRAWS = 16
_MEMO_LIMIT = 500_000
_ROWS, _COLS = np.triu_indices(NUM_VERTICES, 1)


def share_text(fraction: float) -> str:
    """A share of the space as a percentage that stays informative for tiny tables: '0.24%', '0.0038%'."""
    return f"{fraction:.2%}" if fraction >= 0.001 or fraction == 0 else f"{fraction * 100:.2g}%"


@dataclass(frozen=True)
class Coverage:
    """What a table covers at one budget: printed by ``nasfarm search`` and written with its results."""

    source: str
    epochs: int
    cells: int  # cells with at least one repeat at ``epochs``: the search space
    table_budgets: tuple[int, ...]  # every budget with results
    budgets: tuple[int, ...]  # budgets <= epochs that cover every searched cell (BOHB's rungs)
    repeats: int  # the most repeats any cell has (what a query samples from)
    cells_with_fewer_repeats: int  # searched cells queried over fewer repeats (their mean is over those)
    space_cells: int = SPACE_CELLS

    @property
    def fraction(self) -> float:
        return self.cells / self.space_cells

    @property
    def complete(self) -> bool:
        return self.cells >= self.space_cells

    @property
    def mode(self) -> str:
        if self.complete:
            return "complete"
        return "dense" if self.fraction >= DENSE_COVERAGE else "sparse"

    def line(self) -> str:
        text = (f"table {self.source}: {self.cells:,} of {self.space_cells:,} cells "
                f"({share_text(self.fraction)}) at {self.epochs} epochs; "
                f"budgets present {', '.join(map(str, self.table_budgets))}; "
                f"up to {self.repeats} repeat(s)")
        if self.cells_with_fewer_repeats:
            text += f", {self.cells_with_fewer_repeats:,} cell(s) with fewer (mean over those present)"
        if not self.complete:
            text += (f"; searching the {self.cells:,} covered cells ({self.mode} table), regret relative "
                     "to the best cell in the table")
        return text

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "epochs": self.epochs, "cells": self.cells,
            "space_cells": self.space_cells, "fraction": round(self.fraction, 6), "mode": self.mode,
            "table_budgets": list(self.table_budgets), "search_budgets": list(self.budgets),
            "repeats": self.repeats, "cells_with_fewer_repeats": self.cells_with_fewer_repeats,
        }


def coverage_of(bench: NASBench, epochs: int) -> Coverage:
    return search_space(bench, epochs).coverage


class TableSpace:
    """The covered cells of one table at one budget, with the restricted draws the algorithms use.

    Shared by every run over the table (built once, before the runner forks); the generators are
    always the caller's, so runs still reproduce by seed."""

    def __init__(self, bench: NASBench, epochs: int) -> None:
        table = bench.table
        self._is_valid = bench.is_valid
        counts = table.counts[epochs]
        self.rows = np.flatnonzero(counts > 0)
        self.hashes = frozenset(table.hashes[i] for i in self.rows)
        repeats = int(bench.config["num_repeats"])
        budgets = tuple(e for e in table.epochs
                        if e <= epochs and bool(np.all(table.counts[e][self.rows] > 0)))
        fewer = int(np.count_nonzero(np.any(
            np.stack([table.counts[e][self.rows] < repeats for e in budgets]), axis=0)))
        self.coverage = Coverage(bench.name, epochs, len(self.rows), tuple(table.epochs), budgets, repeats,
                                 fewer)
        self.complete = self.coverage.complete
        self.sparse = self.coverage.mode == "sparse"
        self.partial_repeats = fewer > 0
        validation = table.metrics[epochs][self.rows, :, METRIC_KEYS.index("final_validation_accuracy")]
        self.best_validation = float(np.nanmax(validation))  # the best sample a query can return
        self._table = table
        self._memo: dict[bytes, bool] = {}
        self._reps: tuple[np.ndarray, np.ndarray] | None = None
        self._verified = np.zeros(len(self.rows), dtype=bool)
        if self.sparse:
            self.representatives()  # here, before the runner forks its workers

    # -- membership ----------------------------------------------------------------------------
    def contains_spec(self, spec: ModelSpec) -> bool:
        """The spec is a valid cell of the space and the table covers it."""
        matrix = np.asarray(spec.original_matrix, dtype=np.int8)
        key = matrix.tobytes() + ",".join(spec.original_ops).encode()
        found = self._memo.get(key)
        if found is None:
            found = bool(self._is_valid(spec)) and spec.hash_spec(AVAILABLE_OPS) in self.hashes
            self._remember(key, found)
        return found

    def accepts_vector(self, vector: np.ndarray) -> bool:
        """An encoding the algorithms may evaluate: invalid by the scripts' rule (error 1, free, as
        the reference) or a covered cell. False only for a valid cell the table lacks."""
        if self.complete:
            return True
        key = np.asarray(vector, dtype=np.int8).tobytes()
        found = self._memo.get(key)
        if found is None:
            found = (not reference_valid(vector, self._is_valid)
                     or spec_from_vector(vector).hash_spec(AVAILABLE_OPS) in self.hashes)
            self._remember(key, found)
        return found

    def _remember(self, key: bytes, value: bool) -> None:
        if len(self._memo) > _MEMO_LIMIT:
            self._memo.clear()
        self._memo[key] = value

    # -- draws ---------------------------------------------------------------------------------
    @property
    def redraws(self) -> int:
        """How many times a draw outside the table is redrawn before a uniform covered cell."""
        return SPARSE_REDRAWS if self.sparse else DENSE_REDRAWS

    def uniform_spec(self, rng: random.Random) -> ModelSpec:
        """A covered cell chosen uniformly, as a 7-vertex spec (extra vertices isolated, ops uniform)."""
        index = rng.randrange(len(self.rows))
        edges, ops = self._representative(index)
        free = [AVAILABLE_OPS[rng.randrange(len(AVAILABLE_OPS))] for _ in range(OP_SPOTS)]
        names = [INPUT] + [AVAILABLE_OPS[o] if o >= 0 else free[k] for k, o in enumerate(ops)] + [OUTPUT]
        matrix = np.zeros((NUM_VERTICES, NUM_VERTICES), dtype=np.int64)
        matrix[_ROWS, _COLS] = edges
        return ModelSpec(matrix, names)

    def uniform_vectors(self, rng: np.random.Generator, count: int | None = None) -> np.ndarray:
        """Covered cells chosen uniformly (with replacement) as 26-parameter encodings."""
        n = 1 if count is None else count
        indices = rng.integers(0, len(self.rows), n)
        free = rng.integers(0, len(AVAILABLE_OPS), (n, OP_SPOTS))
        edges, ops = self.representatives()
        for index in np.unique(indices):
            self._verify(int(index))
        out = np.concatenate([edges[indices], np.where(ops[indices] >= 0, ops[indices], free)], axis=1)
        return out[0] if count is None else out

    def representatives(self) -> tuple[np.ndarray, np.ndarray]:
        """Every covered cell's encoding: edge bits [cells, 21], op indices [cells, 5] (-1: an
        isolated extra vertex, whose op is free)."""
        if self._reps is None:
            table = self._table
            edges = np.zeros((len(self.rows), EDGE_SPOTS), dtype=np.int64)
            ops = np.full((len(self.rows), OP_SPOTS), -1, dtype=np.int64)
            index_of = {op: i for i, op in enumerate(AVAILABLE_OPS)}
            for k, row in enumerate(self.rows):
                edges[k], ops[k] = _encode(table.raw_adjacency[row], table.raw_operations[row], index_of)
            self._reps = (edges, ops)
        return self._reps

    def _representative(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        edges, ops = self.representatives()
        self._verify(index)
        return edges[index], ops[index]

    def _verify(self, index: int) -> None:
        """The stored matrix must hash to the row's hash, or a draw would query another cell."""
        if self._verified[index]:
            return
        edges, ops = self.representatives()
        vector = np.concatenate([edges[index], np.where(ops[index] >= 0, ops[index], 0)])
        row = self.rows[index]
        if spec_from_vector(vector).hash_spec(AVAILABLE_OPS) != self._table.hashes[row]:
            raise ValueError(
                f"the table's matrix for cell {self._table.hashes[row]} ({self._table.raw_adjacency[row]}, "
                f"{self._table.raw_operations[row]}) does not hash to it"
            )
        self._verified[index] = True

    def policy_sample(self, log_probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A covered cell drawn with probability proportional to a per-parameter categorical
        policy's probability of its encoding (the free ops of isolated vertices marginalised out),
        and those free ops drawn from the policy: REINFORCE on a sparse table."""
        edges, ops = self.representatives()
        d = np.arange(EDGE_SPOTS)
        scores = log_probs[d, edges].sum(axis=1)
        op_logs = log_probs[EDGE_SPOTS + np.arange(OP_SPOTS), np.maximum(ops, 0)]
        scores = scores + np.where(ops >= 0, op_logs, 0.0).sum(axis=1)
        weights = np.exp(scores - scores.max())
        cumulative = np.cumsum(weights)
        index = int(min(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"),
                        len(cumulative) - 1))
        self._verify(index)
        op_probs = np.exp(log_probs[EDGE_SPOTS:, : len(AVAILABLE_OPS)])
        free = [int(min(np.searchsorted(np.cumsum(p), rng.random() * p.sum(), side="right"), len(p) - 1))
                for p in op_probs]
        return np.concatenate([edges[index], np.where(ops[index] >= 0, ops[index], free)])


def _encode(raw_adjacency: str, raw_operations: str,
            index_of: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """A stored cell (n <= 7 vertices) placed in the 7-vertex encoding: vertex i < n - 1 stays i, the
    output goes to 6, the vertices between are isolated (pruned away, their ops free: -1)."""
    n = int(round(math.sqrt(len(raw_adjacency))))
    if n * n != len(raw_adjacency) or not 2 <= n <= NUM_VERTICES:
        raise ValueError(f"a stored matrix of {len(raw_adjacency)} entries is not a cell of <= 7 vertices")
    small = np.frombuffer(raw_adjacency.encode("ascii"), dtype=np.uint8).reshape(n, n) - ord("0")
    place = [*range(n - 1), NUM_VERTICES - 1]
    matrix = np.zeros((NUM_VERTICES, NUM_VERTICES), dtype=np.int64)
    matrix[np.ix_(place, place)] = small
    names = raw_operations.split(",")
    ops = np.full(OP_SPOTS, -1, dtype=np.int64)
    for vertex in range(1, n - 1):
        ops[vertex - 1] = index_of[names[vertex]]
    return matrix[_ROWS, _COLS], ops


_SPACES: weakref.WeakKeyDictionary[BenchmarkTable, dict[tuple[int, int], TableSpace]] = (
    weakref.WeakKeyDictionary()
)


def search_space(bench: NASBench, epochs: int) -> TableSpace:
    """The table's space at ``epochs``, built once per table (runs and twins share it)."""
    per_table = _SPACES.setdefault(bench.table, {})
    key = (epochs, int(bench.config["num_repeats"]))
    found = per_table.get(key)
    if found is None:
        found = per_table[key] = TableSpace(bench, epochs)
    return found
