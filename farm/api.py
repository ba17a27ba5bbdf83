"""A NAS-Bench-101-style query API over nasfarm results (SPEC g).

``NASBench(source, seed=None)`` reads a record source -- the published ``nasbench_*.tfrecord``
files, a nasfarm export (``.jsonl[.gz]`` / ``.parquet`` / ``.tfrecord``), any iterable of
:class:`~farm.records.BenchmarkRecord` (the CLI builds one from a database campaign), or a ready
:class:`BenchmarkTable` -- and answers the original's calls with the original's semantics:

- ``query(spec, epochs=108, stop_halfway=False)`` samples one repeat uniformly from
  ``config['num_repeats']`` with a ``random.Random(seed)`` of its own (the original reseeds the
  global ``random`` module; we never touch it) and charges the budget counters;
- ``is_valid``, ``get_metrics_from_hash``, ``get_metrics_from_spec``, ``hash_iterator``,
  ``get_budget_counters``, ``reset_budget_counters``, ``OutOfDomainError``;
- results come back with the table's canonical representative, not the queried matrix.

Deliberate differences: too many vertices raises OutOfDomainError (the original's message bug
raises TypeError there), and a valid cell that the source has no (or too few) results for raises
:class:`CellNotFinishedError` (a KeyError, as the original's dict lookup was) naming the cell; a
cell with results at other budgets but none at the one asked for raises its subclass
:class:`NotTrainedAtBudgetError` ("not trained at this budget": an adaptive campaign trains a cell
at a budget only once promoted to it), never a made-up number.

One table, one data set: records carry the data set they were trained on (a database campaign's,
a jsonl/parquet export's ``dataset`` column, a tfrecord export's sidecar JSON; NAS-Bench-101's own
files, which have no such field, are CIFAR-10). Records of two data sets do not mix
(:class:`DatasetMismatchError`), and ``NASBench(source, dataset="cifar100")`` refuses a source of
another data set. ``NASBench.dataset`` says which it is.

Results are stored column-wise in numpy (NaN = missing repeat), so the full 5-million-record
table fits in a few hundred MB instead of the original's nested dicts.
"""

from __future__ import annotations

import copy
import os
import random
from array import array
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from farm.hashing import INPUT_LABEL, OUTPUT_LABEL, module_hash
from farm.metrics import REPEAT_METRICS
from farm.records import BenchmarkRecord, iter_file
from farm.spec import AVAILABLE_OPS, INPUT, MAX_EDGES, MAX_VERTICES, OUTPUT, Cell

# The eight per-repeat numbers NAS-Bench-101 keeps, in storage order.
METRIC_KEYS: tuple[str, ...] = REPEAT_METRICS
_METRIC_INDEX = {key: i for i, key in enumerate(METRIC_KEYS)}


class OutOfDomainError(Exception):
    """A spec outside the NAS-Bench-101 space, or an epoch budget the table does not have."""


class CellNotFinishedError(KeyError):
    """A valid cell with no (or not all) results in this table, e.g. a campaign still running."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class NotTrainedAtBudgetError(CellNotFinishedError):
    """A cell of the table with results at other budgets but none at the one asked for: not trained
    at this budget (an adaptive campaign did not promote it there, or not yet)."""


class DatasetMismatchError(ValueError):
    """Records of more than one data set in one table, or a table of another data set than asked."""


# What records without a data set were trained on: NAS-Bench-101's own files are CIFAR-10.
NB101_DATASET = "cifar10"


def _kept_vertices(rows: list[list[int]]) -> list[int] | None:
    """Vertices on an input->output path, as ``farm.spec.prune`` (which tests check it against),
    on plain lists: the search harness builds thousands of specs per second."""
    n = len(rows)
    if n < 2:
        return None
    forward = [False] * n
    forward[0] = True
    for v in range(n):
        if forward[v]:
            row = rows[v]
            for w in range(v + 1, n):
                if row[w]:
                    forward[w] = True
    backward = [False] * n
    backward[n - 1] = True
    for v in range(n - 1, 0, -1):
        if backward[v]:
            for u in range(v):
                if rows[u][v]:
                    backward[u] = True
    keep = [v for v in range(n) if forward[v] and backward[v]]
    return keep if len(keep) >= 2 else None


class ModelSpec:
    """A cell as the original's ``ModelSpec``: ``original_matrix``/``original_ops`` as given,
    ``matrix``/``ops`` pruned (None when input and output are disconnected), ``valid_spec``."""

    def __init__(self, matrix: Any, ops: Any, data_format: str = "channels_last") -> None:
        if not isinstance(matrix, np.ndarray):
            matrix = np.array(matrix)
        shape = np.shape(matrix)
        if len(shape) != 2 or shape[0] != shape[1]:
            raise ValueError("matrix must be square")
        if shape[0] != len(ops):
            raise ValueError("length of ops must match matrix dimensions")
        rows = matrix.tolist()
        n = len(rows)
        if any(rows[i][j] for i in range(n) for j in range(i + 1)):
            raise ValueError("matrix must be upper triangular")
        self.original_matrix = matrix.copy()
        self.original_ops = list(ops)  # op names are immutable strings: a shallow copy is a deep one
        self.data_format = data_format
        keep = _kept_vertices(rows)
        if keep is None:
            self.matrix: np.ndarray | None = None
            self.ops: list[str] | None = None
            self.valid_spec = False
        else:
            self.matrix = np.array([[rows[i][j] for j in keep] for i in keep], dtype=matrix.dtype)
            self.ops = [self.original_ops[i] for i in keep]
            self.valid_spec = True

    def hash_spec(self, canonical_ops: Iterable[str] = AVAILABLE_OPS) -> str:
        """The module hash of the pruned spec; interior ops labelled by index in canonical_ops."""
        if self.matrix is None or self.ops is None:
            raise ValueError("an invalid spec has no hash")
        order = list(canonical_ops)
        labels = [INPUT_LABEL] + [order.index(op) for op in self.ops[1:-1]] + [OUTPUT_LABEL]
        return module_hash(self.matrix.tolist(), labels)

    def to_cell(self) -> Cell:
        """The farm's :class:`~farm.spec.Cell` (raises InvalidCellError outside the space)."""
        return Cell.from_any(self.original_matrix, self.original_ops)

    def __repr__(self) -> str:
        return f"ModelSpec(matrix={self.original_matrix.tolist()}, ops={self.original_ops})"


class BenchmarkTable:
    """All results of a source, column-wise: per epoch budget an array [cells, repeats, 8]."""

    def __init__(
        self,
        hashes: list[str],
        raw_adjacency: list[str],
        raw_operations: list[str],
        trainable_parameters: np.ndarray,
        metrics: dict[int, np.ndarray],
        dataset: str | None = None,  # None: not stated (e.g. a synthetic table)
    ) -> None:
        self.hashes = hashes
        self.dataset = dataset
        self.index = {h: i for i, h in enumerate(hashes)}
        self.raw_adjacency = raw_adjacency
        self.raw_operations = raw_operations
        self.trainable_parameters = np.asarray(trainable_parameters, dtype=np.int64)
        self.metrics = {int(e): np.asarray(m, dtype=np.float64) for e, m in metrics.items()}
        self._means: dict[tuple[int, str], np.ndarray] = {}
        # A repeat is present when its final validation accuracy is.
        self.counts = {
            e: np.count_nonzero(~np.isnan(m[:, :, _METRIC_INDEX["final_validation_accuracy"]]), axis=1)
            for e, m in self.metrics.items()
        }

    @property
    def epochs(self) -> list[int]:
        return sorted(e for e, c in self.counts.items() if c.any())

    def __len__(self) -> int:
        return len(self.hashes)

    def max_repeats(self) -> int:
        return max((int(c.max()) for c in self.counts.values() if c.size), default=0)

    def mean(self, epochs: int, key: str) -> np.ndarray:
        """Per-cell mean of one metric over the repeats present (NaN for a cell with none).

        Memoised (read-only result): the search harness asks for it once per run."""
        found = self._means.get((epochs, key))
        if found is not None:
            return found
        values = self.metrics[epochs][:, :, _METRIC_INDEX[key]]
        counts = self.counts[epochs]
        sums = np.nansum(values, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        means.setflags(write=False)
        self._means[(epochs, key)] = means
        return means

    @classmethod
    def from_records(cls, records: Iterable[BenchmarkRecord], *, progress: bool = False) -> BenchmarkTable:
        hashes: list[str] = []
        index: dict[str, int] = {}
        adjacency: list[str] = []
        operations: list[str] = []
        params = array("q")
        # Per budget: flat metric values, and where each record goes (cell row, repeat slot).
        values: dict[int, array] = {}
        rows: dict[int, array] = {}
        slots: dict[int, array] = {}
        seen: dict[int, dict[int, int]] = {}
        datasets: set[str] = set()
        iterator: Iterable[BenchmarkRecord] = records
        if progress:
            from tqdm import tqdm

            iterator = tqdm(records, desc="loading records", unit="rec", mininterval=1.0)
        for record in iterator:
            datasets.add(record.dataset or NB101_DATASET)
            row = index.get(record.module_hash)
            if row is None:
                row = index[record.module_hash] = len(hashes)
                hashes.append(record.module_hash)
                adjacency.append(record.raw_adjacency)
                operations.append(record.raw_operations)
                p = record.metrics.trainable_parameters
                params.append(-1 if p is None else int(p))
            epochs = int(record.epochs)
            if epochs not in values:
                values[epochs], rows[epochs], slots[epochs], seen[epochs] = (
                    array("d"), array("l"), array("l"), {}
                )
            metrics = record.nb101_metrics()
            values[epochs].extend(float("nan") if metrics[k] is None else metrics[k] for k in METRIC_KEYS)
            counter = seen[epochs]
            slot = counter.get(row, 0)
            counter[row] = slot + 1
            rows[epochs].append(row)
            slots[epochs].append(slot)
        if len(datasets) > 1:
            raise DatasetMismatchError(
                f"records of {len(datasets)} data sets ({', '.join(sorted(datasets))}): a table holds one "
                "data set; load each separately")
        n = len(hashes)
        tables = {}
        for epochs in values:
            r = np.array(rows[epochs], dtype=np.int64)
            s = np.array(slots[epochs], dtype=np.int64)
            table = np.full((n, int(s.max()) + 1, len(METRIC_KEYS)), np.nan)
            table[r, s] = np.frombuffer(values[epochs], dtype=np.float64).reshape(-1, len(METRIC_KEYS))
            tables[epochs] = table
        return cls(hashes, adjacency, operations, np.frombuffer(params, dtype=np.int64).copy(), tables,
                   dataset=next(iter(datasets), None))


def load_table(source: Any, *, progress: bool = False) -> BenchmarkTable:
    """A table from a path (tfrecord/jsonl/parquet), an iterable of records, or a table."""
    if isinstance(source, BenchmarkTable):
        return source
    if isinstance(source, str | os.PathLike):
        return BenchmarkTable.from_records(iter_file(source), progress=progress)
    return BenchmarkTable.from_records(source, progress=progress)


class _FixedStatistics(Mapping):
    """``nasbench.fixed_statistics`` as a read-only view built on demand."""

    def __init__(self, bench: NASBench) -> None:
        self._bench = bench

    def __getitem__(self, module_hash: str) -> dict[str, Any]:
        return self._bench._fixed(self._bench._row(module_hash))

    def __iter__(self) -> Iterator[str]:
        return iter(self._bench.table.hashes)

    def __len__(self) -> int:
        return len(self._bench.table)


class _ComputedStatistics(_FixedStatistics):
    """``nasbench.computed_statistics`` as a read-only view built on demand."""

    def __getitem__(self, module_hash: str) -> dict[int, list[dict[str, float]]]:
        return self._bench._computed(self._bench._row(module_hash))


class NASBench:
    """NAS-Bench-101's ``api.NASBench`` over a nasfarm record source (see the module doc)."""

    def __init__(
        self,
        source: Any,
        seed: int | None = None,
        *,
        num_repeats: int | None = None,
        progress: bool = False,
        name: str | None = None,
        dataset: str | None = None,
    ) -> None:
        self.table = load_table(source, progress=progress)
        self.name = name or (os.fspath(source) if isinstance(source, str | os.PathLike) else "records")
        if dataset is not None and self.table.dataset is not None and dataset != self.table.dataset:
            raise DatasetMismatchError(
                f"{self.name} holds results on {self.table.dataset}, not {dataset}: one table per data set")
        # The table's data set (asked for, when the table does not say; None: not stated).
        self.dataset = self.table.dataset if self.table.dataset is not None else dataset
        self.config: dict[str, Any] = {
            "module_vertices": MAX_VERTICES,
            "max_edges": MAX_EDGES,
            "available_ops": list(AVAILABLE_OPS),
            # The original samples from 3 repeats; a table of a 1-repeat campaign samples from 1.
            "num_repeats": num_repeats or max(1, self.table.max_repeats()),
        }
        self.valid_epochs = set(self.table.epochs)
        self.seed = seed
        self._rng = random.Random(seed)
        self._hash_cache: dict[tuple[bytes, int, tuple[str, ...]], str] = {}
        self.history: dict[str, Any] = {}
        self.fixed_statistics = _FixedStatistics(self)
        self.computed_statistics = _ComputedStatistics(self)
        self.reset_budget_counters()

    def with_seed(self, seed: int | None) -> NASBench:
        """A twin over the same table with its own generator and budget counters (cheap)."""
        twin = copy.copy(self)
        twin._rng = random.Random(seed)
        twin.seed = seed
        twin._hash_cache = {}
        twin.fixed_statistics = _FixedStatistics(twin)
        twin.computed_statistics = _ComputedStatistics(twin)
        twin.reset_budget_counters()
        return twin

    # -- the original's public calls ------------------------------------------------------
    def query(self, model_spec: ModelSpec, epochs: int = 108, stop_halfway: bool = False) -> dict[str, Any]:
        if epochs not in self.valid_epochs:
            raise OutOfDomainError(
                f"invalid number of epochs {epochs}; this table has {sorted(self.valid_epochs)}"
            )
        row = self._row(self._hash_checked(model_spec))
        self._require_finished(row, epochs)
        sample = self._rng.randint(0, self.config["num_repeats"] - 1)
        values = self._repeat_values(row, epochs, sample)
        prefix = "halfway_" if stop_halfway else "final_"
        data = self._fixed(row)
        data["training_time"] = values[prefix + "training_time"]
        data["train_accuracy"] = values[prefix + "train_accuracy"]
        data["validation_accuracy"] = values[prefix + "validation_accuracy"]
        data["test_accuracy"] = values[prefix + "test_accuracy"]
        self.training_time_spent += data["training_time"]
        self.total_epochs_spent += epochs // 2 if stop_halfway else epochs
        return data

    def is_valid(self, model_spec: ModelSpec) -> bool:
        try:
            self._check_spec(model_spec)
        except OutOfDomainError:
            return False
        return True

    def get_budget_counters(self) -> tuple[float, int]:
        return self.training_time_spent, self.total_epochs_spent

    def reset_budget_counters(self) -> None:
        self.training_time_spent = 0.0
        self.total_epochs_spent = 0

    def hash_iterator(self) -> Iterator[str]:
        return iter(self.table.hashes)

    def get_metrics_from_hash(self, module_hash: str) -> tuple[dict[str, Any], dict[int, list[dict]]]:
        row = self._row(module_hash)
        return self._fixed(row), self._computed(row)

    def get_metrics_from_spec(self, model_spec: ModelSpec) -> tuple[dict[str, Any], dict[int, list[dict]]]:
        return self.get_metrics_from_hash(self._hash_checked(model_spec))

    # -- helpers beyond the original (used by the search harness) -------------------------
    def hash_of(self, model_spec: ModelSpec) -> str:
        """The module hash of a valid spec (OutOfDomainError otherwise); memoised."""
        return self._hash_checked(model_spec)

    def row_of(self, module_hash: str) -> int:
        return self._row(module_hash)

    # -- internals -------------------------------------------------------------------------
    def _check_spec(self, model_spec: ModelSpec) -> None:
        if not model_spec.valid_spec or model_spec.matrix is None or model_spec.ops is None:
            raise OutOfDomainError("invalid spec, provided graph is disconnected")
        vertices = len(model_spec.ops)
        edges = int(np.sum(model_spec.matrix))
        if vertices > self.config["module_vertices"]:
            raise OutOfDomainError(
                f"too many vertices, got {vertices} (max vertices = {self.config['module_vertices']})"
            )
        if edges > self.config["max_edges"]:
            raise OutOfDomainError(f"too many edges, got {edges} (max edges = {self.config['max_edges']})")
        if model_spec.ops[0] != INPUT:
            raise OutOfDomainError("first operation should be 'input'")
        if model_spec.ops[-1] != OUTPUT:
            raise OutOfDomainError("last operation should be 'output'")
        for op in model_spec.ops[1:-1]:
            if op not in self.config["available_ops"]:
                raise OutOfDomainError(
                    f"unsupported op {op!r} (available ops = {self.config['available_ops']})"
                )

    def _hash_checked(self, model_spec: ModelSpec) -> str:
        self._check_spec(model_spec)
        matrix = np.asarray(model_spec.matrix, dtype=np.int8)
        key = (matrix.tobytes(), matrix.shape[0], tuple(model_spec.ops))
        found = self._hash_cache.get(key)
        if found is None:
            if len(self._hash_cache) > 500_000:  # bound the memo; hashes are cheap to redo
                self._hash_cache.clear()
            found = self._hash_cache[key] = model_spec.hash_spec(self.config["available_ops"])
        return found

    def _row(self, module_hash: str) -> int:
        row = self.table.index.get(module_hash)
        if row is None:
            raise CellNotFinishedError(
                f"cell {module_hash} has no results in {self.name}: it is outside the table or "
                "its campaign has not finished it yet"
            )
        return row

    def _require_finished(self, row: int, epochs: int) -> None:
        have = int(self.table.counts[epochs][row])
        if have == 0:
            elsewhere = [e for e in sorted(self.table.counts) if self.table.counts[e][row]]
            if elsewhere:
                raise NotTrainedAtBudgetError(
                    f"cell {self.table.hashes[row]} has 0 of {self.config['num_repeats']} repeats at "
                    f"{epochs} epochs in {self.name}: not trained at this budget (it has results at "
                    f"{', '.join(map(str, elsewhere))} epochs; an adaptive campaign trains a cell at a "
                    "budget only once it promoted the cell there)")
        if have < self.config["num_repeats"]:
            raise CellNotFinishedError(
                f"cell {self.table.hashes[row]} has {have} of {self.config['num_repeats']} repeats "
                f"at {epochs} epochs in {self.name}: its campaign has not finished it yet"
            )

    def _repeat_values(self, row: int, epochs: int, sample: int) -> dict[str, float]:
        values = self.table.metrics[epochs][row, sample]
        return {key: float(values[i]) for i, key in enumerate(METRIC_KEYS)}

    def _fixed(self, row: int) -> dict[str, Any]:
        raw = self.table.raw_adjacency[row]
        size = int(round(len(raw) ** 0.5))
        matrix = np.frombuffer(raw.encode("ascii"), dtype=np.uint8).reshape(size, size) - ord("0")
        return {
            "module_adjacency": matrix.astype(np.int8),
            "module_operations": self.table.raw_operations[row].split(","),
            "trainable_parameters": int(self.table.trainable_parameters[row]),
        }

    def _computed(self, row: int) -> dict[int, list[dict[str, float]]]:
        out: dict[int, list[dict[str, float]]] = {}
        for epochs in sorted(self.table.metrics):
            count = int(self.table.counts[epochs][row])
            if count:
                out[epochs] = [self._repeat_values(row, epochs, i) for i in range(count)]
        return out
