"""A NAS-Bench-101 cell: adjacency matrix + op names, with the original's validation and pruning.

A :class:`Cell` always holds the pruned graph (``matrix``, ``ops``) next to what the caller gave
(``original_matrix``, ``original_ops``). Construction raises :class:`InvalidCellError` naming the
problem; the space limits (7 vertices, 9 edges) apply to the pruned graph, as in the original.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from farm.hashing import INPUT_LABEL, OUTPUT_LABEL, module_hash

INPUT = "input"
OUTPUT = "output"
CONV3X3 = "conv3x3-bn-relu"
CONV1X1 = "conv1x1-bn-relu"
MAXPOOL3X3 = "maxpool3x3"
# Canonical order: an interior op's hash label is its index here (SPEC a.1).
AVAILABLE_OPS: tuple[str, ...] = (CONV3X3, CONV1X1, MAXPOOL3X3)
MAX_VERTICES = 7
MAX_EDGES = 9


class InvalidCellError(ValueError):
    """A cell that is not in the NAS-Bench-101 space; the message says why."""


def parse_matrix(matrix: Any) -> np.ndarray:
    """Accept nested 0/1 lists, numpy arrays or the dataset's ``raw_adjacency`` string ("0110")."""
    if isinstance(matrix, str):
        text = matrix.strip()
        if text.startswith("["):
            import json

            try:
                matrix = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InvalidCellError(f"matrix is not valid JSON: {exc}") from None
        else:
            if not text or set(text) - {"0", "1"}:
                raise InvalidCellError(f"raw adjacency must be a string of 0 and 1, got {text!r}")
            size = int(round(len(text) ** 0.5))
            if size * size != len(text):
                raise InvalidCellError(
                    f"raw adjacency of length {len(text)} is not a square matrix"
                )
            return np.array([int(c) for c in text], dtype=np.int8).reshape(size, size)
    try:
        array = np.asarray(matrix)
    except ValueError:  # ragged nested lists
        raise InvalidCellError("matrix must be square (rows of different lengths)") from None
    if array.dtype == object or array.dtype.kind in "USV":
        raise InvalidCellError("matrix entries must be 0 or 1")
    if array.ndim != 2 or array.shape[0] != array.shape[1]:
        raise InvalidCellError(f"matrix must be square, got shape {array.shape}")
    if array.size and not np.isin(array, (0, 1)).all():
        raise InvalidCellError("matrix entries must be 0 or 1")
    return array.astype(np.int8)


def parse_ops(ops: Any) -> list[str]:
    """Accept a list of op names or the dataset's comma-joined ``raw_operations`` string."""
    if isinstance(ops, str):
        ops = [op.strip() for op in ops.split(",")]
    return [str(op) for op in ops]


def prune(matrix: np.ndarray) -> list[int] | None:
    """Vertices on some input->output path, in order; None when the output is unreachable."""
    n = matrix.shape[0]
    if n < 2:
        return None
    forward = {0}
    for v in range(n):
        if v in forward:
            forward.update(int(w) for w in np.flatnonzero(matrix[v]))
    backward = {n - 1}
    for v in range(n - 1, -1, -1):
        if v in backward:
            backward.update(int(w) for w in np.flatnonzero(matrix[:, v]))
    keep = sorted(forward & backward)
    return keep if len(keep) >= 2 else None


@dataclass(frozen=True, eq=False)
class Cell:
    """A pruned, validated NAS-Bench-101 cell. Equality and hashing follow the module hash."""

    matrix: np.ndarray
    ops: tuple[str, ...]
    original_matrix: np.ndarray = field(repr=False)
    original_ops: tuple[str, ...] = field(repr=False)

    @classmethod
    def from_any(
        cls,
        matrix: Any,
        ops: Any,
        *,
        max_vertices: int = MAX_VERTICES,
        max_edges: int = MAX_EDGES,
    ) -> Cell:
        raw = parse_matrix(matrix)
        names = parse_ops(ops)
        n = raw.shape[0]
        if len(names) != n:
            raise InvalidCellError(f"{len(names)} ops given for a {n}x{n} matrix")
        if np.tril(raw).any():
            i, j = (int(x) for x in np.argwhere(np.tril(raw))[0])
            raise InvalidCellError(
                f"matrix must be strictly upper triangular (entry [{i}][{j}] is set)"
            )
        # From here on the original's order (API _check_spec on the pruned spec, SPEC a.3): so an
        # unknown op on a vertex that pruning removes is accepted, as by the original.
        keep = prune(raw)
        if keep is None:
            raise InvalidCellError("no path from input to output")
        pruned = raw[np.ix_(keep, keep)].copy()
        if len(keep) > max_vertices:
            raise InvalidCellError(
                f"{len(keep)} vertices after pruning; the space allows at most {max_vertices}"
            )
        edges = int(pruned.sum())
        if edges > max_edges:
            raise InvalidCellError(
                f"{edges} edges after pruning; the space allows at most {max_edges}"
            )
        if names[0] != INPUT:
            raise InvalidCellError(f"the first op must be '{INPUT}', got '{names[0]}'")
        if names[-1] != OUTPUT:
            raise InvalidCellError(f"the last op must be '{OUTPUT}', got '{names[-1]}'")
        bad = [names[i] for i in keep[1:-1] if names[i] not in AVAILABLE_OPS]
        if bad:
            raise InvalidCellError(
                f"unknown op {bad[0]!r}; interior ops must be one of {', '.join(AVAILABLE_OPS)}"
            )
        pruned.setflags(write=False)
        original = raw.copy()
        original.setflags(write=False)
        return cls(pruned, tuple(names[i] for i in keep), original, tuple(names))

    @property
    def num_vertices(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def num_edges(self) -> int:
        return int(self.matrix.sum())

    @property
    def labels(self) -> list[int]:
        """Integer labels used by the hash: -1 input, -2 output, op index otherwise."""
        return [INPUT_LABEL] + [AVAILABLE_OPS.index(op) for op in self.ops[1:-1]] + [OUTPUT_LABEL]

    @cached_property
    def hash(self) -> str:
        return module_hash(self.matrix.tolist(), self.labels)

    @property
    def raw_adjacency(self) -> str:
        return "".join(str(int(x)) for x in self.matrix.flatten())

    @property
    def raw_operations(self) -> str:
        return ",".join(self.ops)

    def to_dict(self) -> dict[str, Any]:
        return {
            "hash": self.hash,
            "matrix": self.matrix.tolist(),
            "ops": list(self.ops),
            "vertices": self.num_vertices,
            "edges": self.num_edges,
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Cell) and other.hash == self.hash

    def __hash__(self) -> int:
        return hash(self.hash)


def cell_from_labels(matrix: Sequence[Sequence[int]], labels: Sequence[int]) -> Cell:
    """Build a cell from the enumerator's integer labels (-1, op indices, -2)."""
    interior = [int(x) for x in labels[1:-1]]
    if any(not 0 <= x < len(AVAILABLE_OPS) for x in interior):
        raise InvalidCellError(
            f"interior labels must be op indices 0..{len(AVAILABLE_OPS) - 1}, got {interior}"
        )
    ops = [INPUT] + [AVAILABLE_OPS[x] for x in interior] + [OUTPUT]
    if len(labels) < 2:
        ops = [INPUT][: len(labels)]
    return Cell.from_any(matrix, ops)
