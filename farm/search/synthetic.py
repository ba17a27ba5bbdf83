"""A deterministic synthetic benchmark table over the real enumerated cell space.

For testing and timing the search algorithms without CIFAR-10 results: every one of the 423,624
cells of ``farm.space.enumerate_cells`` gets NAS-Bench-101-shaped results at 4/12/36/108 epochs
with 3 repeats. Accuracy is a fixed smooth function of the cell (op counts, depth, edges, an
input->output skip) plus a perturbation seeded by the cell's hash, so it does not depend on table
order; lower budgets are lower and noisier (imperfect rank correlation, as in the real data).
Training time is affine in ``farm.cost`` trainable parameters (the Inception cell, 2.69 M
parameters, gets ~1150 s at 108 epochs, as published) and proportional to the budget.

Nothing here claims to model real accuracies; it is a landscape with structure (so evolution can
beat random sampling) and noise (so the repeat sampling matters).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

from farm.api import METRIC_KEYS, BenchmarkTable
from farm.spec import AVAILABLE_OPS, INPUT, OUTPUT

EPOCH_BUDGETS = (4, 12, 36, 108)
# Mean accuracy drop of a shorter budget, and the extra cell-level noise it adds.
_BUDGET_GAP = {4: (0.30, 0.030), 12: (0.12, 0.020), 36: (0.03, 0.010), 108: (0.0, 0.0)}
_SECONDS_BASE, _SECONDS_PER_PARAM = 420.0, 2.73e-4
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A counter-based 64-bit mixer: deterministic pseudo-random bits from any integer key."""
    with np.errstate(over="ignore"):
        z = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return z ^ (z >> np.uint64(31))


def _normal(keys: np.ndarray, stream: int) -> np.ndarray:
    """Standard normals, one per key, for a named stream (Box-Muller on two mixed uniforms)."""
    with np.errstate(over="ignore"):
        base = keys * np.uint64(0x100000001B3) + np.uint64(stream) * np.uint64(0x9E3779B97F4A7C15)
    u1 = (_splitmix64(base) >> np.uint64(11)).astype(np.float64) / 2.0**53
    u2 = (_splitmix64(base ^ np.uint64(0xA5A5A5A5A5A5A5A5)) >> np.uint64(11)).astype(np.float64) / 2.0**53
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)


def _matrix_features(matrix: Sequence[Sequence[int]]) -> tuple[str, int, int, int]:
    """(raw adjacency, edges, longest input->output path in edges, input->output skip)."""
    n = len(matrix)
    depth = [0] * n
    for v in range(1, n):
        depth[v] = max((depth[u] + 1 for u in range(v) if matrix[u][v]), default=0)
    raw = "".join(str(int(x)) for row in matrix for x in row)
    return raw, sum(map(sum, matrix)), depth[n - 1], int(matrix[0][n - 1])


@dataclass
class CellFeatures:
    """What the synthetic landscape depends on, per cell (the slow part: ~1 min for the space)."""

    hashes: list[str]
    raw_adjacency: list[str]
    raw_operations: list[str]
    op_counts: np.ndarray  # [n, 3]: conv3x3, conv1x1, maxpool3x3
    shape: np.ndarray  # [n, 4]: vertices, edges, depth (longest input->output path), skip
    trainable_parameters: np.ndarray  # [n], from farm.cost


def cell_features(cells: Sequence | None = None) -> CellFeatures:
    """Features of ``cells`` (EnumeratedCell-like: hash, matrix, labels); default: the space,
    computed once per process (enumeration + parameter counts take about a minute)."""
    if cells is None:
        return _space_features()
    return _features_of(cells)


@cache
def _space_features() -> CellFeatures:
    from farm.space import enumerate_cells

    return _features_of(enumerate_cells())


def _features_of(cells: Sequence) -> CellFeatures:
    from farm.cost import cost_from_labels

    n = len(cells)
    op_of_label = {-1: INPUT, -2: OUTPUT, **dict(enumerate(AVAILABLE_OPS))}
    counts = np.zeros((n, 3), dtype=np.float64)
    shape = np.zeros((n, 4), dtype=np.float64)
    params = np.zeros(n, dtype=np.int64)
    adjacency: list[str] = []
    operations: list[str] = []
    per_matrix: dict[int, tuple[str, int, int, int]] = {}
    for i, cell in enumerate(cells):
        key = id(cell.matrix)  # enumerated cells share matrix lists: compute once per matrix
        found = per_matrix.get(key)
        if found is None:
            found = per_matrix[key] = _matrix_features(cell.matrix)
        raw, edges, depth, skip = found
        adjacency.append(raw)
        labels = cell.labels
        operations.append(",".join(op_of_label[x] for x in labels))
        for x in labels[1:-1]:
            counts[i, x] += 1
        shape[i] = (len(labels), edges, depth, skip)
        params[i] = cost_from_labels(cell.matrix, labels)[0]
    return CellFeatures([c.hash for c in cells], adjacency, operations, counts, shape, params)


def synthetic_table(
    seed: int = 0,
    *,
    features: CellFeatures | None = None,
    epochs: Sequence[int] = EPOCH_BUDGETS,
    repeats: int = 3,
) -> BenchmarkTable:
    """The synthetic table over ``features`` (default: the whole enumerated space, ~423k cells)."""
    f = features if features is not None else cell_features()
    keys = np.array([int(h[:16], 16) for h in f.hashes], dtype=np.uint64) ^ np.uint64(seed * 0x2545F491)
    conv3, conv1, pool = f.op_counts.T
    vertices, edges, depth, skip = f.shape.T
    # A structured trend with one best region (many 3x3 convs, depth 4, a skip, dense wiring),
    # a small per-cell deviation, and nothing clipped at the top, so the optimum is a real cell
    # that a search has to find rather than a plateau or a noise outlier.
    trend = (
        0.60 * conv3
        + 0.25 * conv1
        - 0.35 * np.maximum(pool - 1, 0)
        + 0.30 * np.minimum(depth, 4)
        - 0.40 * np.maximum(depth - 4, 0)
        + 0.25 * skip
        + 0.08 * edges
    )
    valid_108 = np.clip(0.75 + 0.036 * trend + 0.004 * _normal(keys, 1), 0.10, 0.99)
    test_offset = -0.006 + 0.002 * _normal(keys, 2)
    seconds_108 = _SECONDS_BASE + _SECONDS_PER_PARAM * f.trainable_parameters

    tables = {}
    for budget in epochs:
        gap, spread = _BUDGET_GAP.get(budget, (0.0, 0.0))
        valid_mean = np.clip(valid_108 - gap + spread * _normal(keys, 10 + budget), 0.05, 0.99)
        tables[int(budget)] = repeat_table(keys, int(budget), repeats, valid_mean, 0.003, test_offset,
                                           seconds_108)
    return BenchmarkTable(f.hashes, f.raw_adjacency, f.raw_operations, f.trainable_parameters, tables)


def repeat_table(keys: np.ndarray, budget: int, repeats: int, valid_mean: np.ndarray, repeat_sd: float,
                 test_offset: np.ndarray, seconds_108: np.ndarray) -> np.ndarray:
    """The ``[cells, repeats, METRIC_KEYS]`` metrics at one budget from each cell's mean validation
    accuracy: per-repeat noise, the test offset, training time proportional to the budget and a
    halfway drop, each from its own seeded stream (shared by the synthetic tables)."""
    table = np.empty((len(keys), repeats, len(METRIC_KEYS)))
    for r in range(repeats):
        stream = 1000 * budget + 10 * r
        valid = np.clip(valid_mean + repeat_sd * _normal(keys, stream + 1), 0.0, 1.0)
        test = np.clip(valid + test_offset + 0.002 * _normal(keys, stream + 2), 0.0, 1.0)
        final_time = seconds_108 * budget / 108.0 * (1.0 + 0.01 * _normal(keys, stream + 3))
        halfway_drop = 0.08 + 0.02 * np.abs(_normal(keys, stream + 4))
        columns = {
            "halfway_training_time": final_time / 2.0,
            "halfway_train_accuracy": np.clip(valid - halfway_drop + 0.03, 0.0, 1.0),
            "halfway_validation_accuracy": np.clip(valid - halfway_drop, 0.0, 1.0),
            "halfway_test_accuracy": np.clip(test - halfway_drop, 0.0, 1.0),
            "final_training_time": final_time,
            "final_train_accuracy": np.clip(valid + 0.06, 0.0, 1.0),
            "final_validation_accuracy": valid,
            "final_test_accuracy": test,
        }
        for k, key in enumerate(METRIC_KEYS):
            table[:, r, k] = columns[key]
    return table
