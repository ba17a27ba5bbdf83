"""Enumeration and sampling of the NAS-Bench-101 cell space (``scripts/generate_graphs.py``).

The original hashes every labeled graph (1,293,208 of them) and keeps the first one met for each
hash, in the order V ascending, then matrix bits, then labelings (SPEC c.2). We produce the same
list without hashing the duplicates:

* Within the space, equal hashes <=> isomorphic labeled graphs (SPEC c.5), and an isomorphism
  between two cells of V vertices fixes the input and the output and permutes the interior.
* So the first labeled graph of a class is ``(M, L)`` where ``M`` has the smallest bits among the
  upper-triangular relabelings of its graph ("bit-minimal"), and ``L`` is the lexicographically
  smallest labeling in its orbit under the automorphisms of ``M``.
* Both tests need only the (V-2)! interior permutations of each matrix, done with numpy; only the
  423,624 representatives are hashed (in worker processes, merged in order).

For spaces where the hash might collide for non-isomorphic graphs (edge limits above 9), the
representatives are deduplicated by hash afterwards, keeping the first, which is again exactly what
the original keeps.
"""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import NamedTuple

import numpy as np

from farm import space_cache
from farm.hashing import INPUT_LABEL, OUTPUT_LABEL, hash_arrays, hash_cells
from farm.procpool import pool_that_closes, without_the_callers_main

NUM_OPS = 3
# The limits the original space uses, and the largest space in which SPEC c.5 verified that equal
# hashes mean isomorphic graphs (so representatives need no hash-based deduplication).
DEFAULT_MAX_VERTICES = 7
DEFAULT_MAX_EDGES = 9
# 8 vertices would mean 2^28 matrices and 720 interior permutations each: out of reach here.
SUPPORTED_MAX_VERTICES = 7


class EnumeratedCell(NamedTuple):
    """A canonical representative: pruned V x V matrix and labels (-1, op index, -2).

    Within one result, ``matrix`` and ``labels`` lists are shared between cells with the same
    matrix or labeling (the full space then takes ~80 MiB): treat them as read-only, copy before
    mutating.
    """

    hash: str
    matrix: list[list[int]]
    labels: list[int]


@dataclass(frozen=True)
class MatrixClass:
    """One bit-minimal matrix and the labelings (base-3 codes, ascending) that start a class."""

    vertices: int
    bits: int
    codes: np.ndarray


def edge_bit(x: int, y: int) -> int:
    """Bit index of the edge x -> y (x < y) in the original's column-by-column encoding."""
    return y * (y - 1) // 2 + x


def matrix_from_bits(bits: int, vertices: int) -> list[list[int]]:
    matrix = [[0] * vertices for _ in range(vertices)]
    for y in range(1, vertices):
        for x in range(y):
            if bits >> edge_bit(x, y) & 1:
                matrix[x][y] = 1
    return matrix


def _popcount(values: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(values).astype(np.int64)
    as_bytes = values.astype("<u8").view(np.uint8).reshape(len(values), 8)
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)
    return table[as_bytes].sum(axis=1)


def full_dag_bits(vertices: int, max_edges: int) -> np.ndarray:
    """Bit patterns (ascending) of the "full DAGs" with at most ``max_edges`` edges (SPEC a.4)."""
    nbits = vertices * (vertices - 1) // 2
    bits = np.arange(1 << nbits, dtype=np.uint64)
    keep = _popcount(bits) <= max_edges
    for v in range(vertices):
        if v < vertices - 1:  # every vertex but the output has an out-edge
            row = sum(1 << edge_bit(v, y) for y in range(v + 1, vertices))
            keep &= (bits & np.uint64(row)) != 0
        if v > 0:  # every vertex but the input has an in-edge
            column = sum(1 << edge_bit(x, v) for x in range(v))
            keep &= (bits & np.uint64(column)) != 0
    return bits[keep].astype(np.int64)


@cache
def _interior_permutations(vertices: int) -> np.ndarray:
    """All vertex maps that fix input and output, as rows ``perm[v] = image of v``."""
    interior = range(1, vertices - 1)
    rows = [(0, *p, vertices - 1) for p in itertools.permutations(interior)]
    return np.array(rows, dtype=np.int64)


@cache
def _labelings(vertices: int) -> np.ndarray:
    """Interior labelings in the original's order (first interior vertex most significant)."""
    rows = list(itertools.product(range(NUM_OPS), repeat=vertices - 2))
    return np.array(rows, dtype=np.int64).reshape(len(rows), vertices - 2)


@cache
def _permuted_codes(vertices: int) -> np.ndarray:
    """codes[p, k]: base-3 code of labeling k moved by permutation p (shape perms x 3^(V-2))."""
    perms = _interior_permutations(vertices)
    labelings = _labelings(vertices)
    weights = NUM_OPS ** np.arange(vertices - 3, -1, -1, dtype=np.int64)
    codes = np.empty((len(perms), len(labelings)), dtype=np.int64)
    for p, perm in enumerate(perms):
        # The image graph puts the label of vertex i on vertex perm[i]: new[perm[i]] = old[i].
        inverse = np.argsort(perm)
        moved = labelings[:, inverse[1:-1] - 1]
        codes[p] = moved @ weights
    return codes


def matrix_classes(vertices: int, max_edges: int) -> list[MatrixClass]:
    """The bit-minimal full DAGs of one size, in bit order, each with its class-starting labelings."""
    dags = full_dag_bits(vertices, max_edges)
    if len(dags) == 0:
        return []
    if vertices == 2:
        return [MatrixClass(2, int(b), np.zeros(1, dtype=np.int64)) for b in dags]
    positions = [(x, y) for y in range(1, vertices) for x in range(y)]
    edges = ((dags[:, None] >> np.arange(len(positions))) & 1).astype(bool)  # (n, nbits)
    perms = _interior_permutations(vertices)
    is_minimal = np.ones(len(dags), dtype=bool)
    automorphic = np.zeros((len(dags), len(perms)), dtype=bool)
    for p, perm in enumerate(perms):
        image = [(int(perm[x]), int(perm[y])) for x, y in positions]
        backwards = np.array([a > b for a, b in image])
        weights = np.array([0 if a > b else 1 << edge_bit(a, b) for a, b in image], dtype=np.int64)
        upper = ~(edges & backwards).any(axis=1)
        new_bits = edges.astype(np.int64) @ weights
        is_minimal &= ~(upper & (new_bits < dags))
        automorphic[:, p] = upper & (new_bits == dags)
    codes = _permuted_codes(vertices)
    identity = np.arange(codes.shape[1], dtype=np.int64)
    classes = []
    for i in np.flatnonzero(is_minimal):
        auts = np.flatnonzero(automorphic[i])
        # A labeling starts a class iff no automorphism maps it to a smaller one.
        first = (codes[auts] >= identity).all(axis=0)
        classes.append(MatrixClass(vertices, int(dags[i]), identity[first]))
    return classes


def _check_limits(max_vertices: int, max_edges: int) -> None:
    if not 1 <= max_vertices <= SUPPORTED_MAX_VERTICES:
        raise ValueError(f"max_vertices must be between 1 and {SUPPORTED_MAX_VERTICES}, got {max_vertices}")
    if max_edges < 0:
        raise ValueError(f"max_edges must be >= 0, got {max_edges}")


def _verified_space(max_vertices: int, max_edges: int) -> bool:
    """Inside the original space, distinct classes have distinct hashes (SPEC c.5)."""
    return max_vertices <= DEFAULT_MAX_VERTICES and max_edges <= DEFAULT_MAX_EDGES


def all_matrix_classes(max_vertices: int, max_edges: int) -> list[MatrixClass]:
    _check_limits(max_vertices, max_edges)
    return [mc for v in range(2, max_vertices + 1) for mc in matrix_classes(v, max_edges)]


class _LabelLists:
    """The label list of each (size, labeling code), built once per result and shared by its cells.

    Not cached across calls on purpose: a caller that mutates a cell's labels spoils only its
    own result, never a later enumeration.
    """

    def __init__(self) -> None:
        self._lists: dict[int, list[list[int]]] = {}

    def __call__(self, vertices: int, code: int) -> list[int]:
        lists = self._lists.get(vertices)
        if lists is None:
            rows = _labelings(vertices).tolist()
            lists = self._lists[vertices] = [[INPUT_LABEL, *row, OUTPUT_LABEL] for row in rows]
        return lists[code]


def _matrix_array(bits: int, vertices: int) -> np.ndarray:
    return np.array(matrix_from_bits(bits, vertices), dtype=bool)


def _hash_chunk(chunk: list[MatrixClass]) -> list[list[str]]:
    """Hashes of every class-starting labeling, class by class (one numpy batch per size)."""
    out: list[list[str]] = []
    for vertices, group in itertools.groupby(chunk, key=lambda mc: mc.vertices):
        classes = list(group)
        sizes = [len(mc.codes) for mc in classes]
        adjacency = np.repeat(np.stack([_matrix_array(mc.bits, vertices) for mc in classes]), sizes, axis=0)
        interior = _labelings(vertices)[np.concatenate([mc.codes for mc in classes])]
        labels = np.empty((len(interior), vertices), dtype=np.int64)
        labels[:, 0], labels[:, -1], labels[:, 1:-1] = INPUT_LABEL, OUTPUT_LABEL, interior
        hashes = hash_arrays(adjacency, labels)
        ends = np.cumsum(sizes).tolist()
        out.extend(hashes[end - size : end] for size, end in zip(sizes, ends, strict=True))
    return out


def _chunks(items: list[MatrixClass], target_cells: int) -> Iterator[list[MatrixClass]]:
    chunk: list[MatrixClass] = []
    size = 0
    for item in items:
        chunk.append(item)
        size += len(item.codes)
        if size >= target_cells:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _hashed_classes(
    classes: list[MatrixClass], workers: int, tick: Callable[[int], None]
) -> Iterator[tuple[MatrixClass, list[str]]]:
    """(class, hashes of its labelings), in input order; hashing spread over processes."""
    import multiprocessing

    total = sum(len(mc.codes) for mc in classes)
    # Daemonic processes (pool workers, some actor runtimes) may not start children.
    if workers <= 1 or total < 20_000 or multiprocessing.current_process().daemon:
        for chunk in _chunks(classes, target_cells=20_000):
            for mc, hashes in zip(chunk, _hash_chunk(chunk), strict=True):
                tick(len(hashes))
                yield mc, hashes
        return
    # Small chunks keep the ordered merge flowing and the progress bar honest.
    chunks = list(_chunks(classes, target_cells=max(500, total // (workers * 40))))
    # Not fork: a caller with threads (Ray, torch, a gRPC client) can be forked while one of
    # them holds a lock, leaving a child deadlocked; if the caller also has a Python SIGTERM
    # handler (Ray drivers do), that child survives the pool's terminate() and joining it hangs
    # forever. A forkserver (or spawn) child starts from a clean interpreter.
    methods = multiprocessing.get_all_start_methods()
    method = "forkserver" if "forkserver" in methods else "spawn"
    with without_the_callers_main():
        pool = multiprocessing.get_context(method).Pool(workers)
    with pool_that_closes(pool):
        for chunk, results in zip(chunks, pool.imap(_hash_chunk, chunks), strict=True):
            for mc, hashes in zip(chunk, results, strict=True):
                tick(len(hashes))
                yield mc, hashes


def enumerate_cells(
    max_vertices: int = DEFAULT_MAX_VERTICES,
    max_edges: int = DEFAULT_MAX_EDGES,
    *,
    progress: bool = False,
    workers: int | None = None,
    cache: bool = True,
) -> list[EnumeratedCell]:
    """Every unique cell with the original's canonical representative, in its discovery order.

    ``workers``: processes used for hashing (default: the CPUs this process may use).
    ``cache``: take the hashes from the verified on-disk cache (``farm.space_cache``) when there is
    one, and write it after hashing; the result is the same either way.
    """
    classes = all_matrix_classes(max_vertices, max_edges)
    total = sum(len(mc.codes) for mc in classes)
    bar = _progress_bar(total, progress)
    tick = bar.update if bar is not None else (lambda n: None)
    seen: set[str] = set()
    dedupe = not _verified_space(max_vertices, max_edges)
    use_cache = (cache and _verified_space(max_vertices, max_edges)
                 and space_cache.cache_file(max_vertices, max_edges) is not None)
    cached = space_cache.load(max_vertices, max_edges, total, _cell_at(classes)) if use_cache else None
    computed: list[str] | None = [] if use_cache and cached is None else None
    labels_of = _LabelLists()
    cells: list[EnumeratedCell] = []
    try:
        if cached is not None:
            tick(total)
            hashed: Iterator[tuple[MatrixClass, list[str]]] = _split(classes, cached)
        else:
            hashed = _hashed_classes(classes, workers or _default_workers(), tick)
        for mc, hashes in hashed:
            if computed is not None:
                computed.extend(hashes)
            matrix = matrix_from_bits(mc.bits, mc.vertices)
            for code, digest in zip(mc.codes.tolist(), hashes, strict=True):
                if dedupe:
                    if digest in seen:
                        continue
                    seen.add(digest)
                cells.append(EnumeratedCell(digest, matrix, labels_of(mc.vertices, code)))
    finally:
        if bar is not None:
            bar.close()
    if computed is not None:
        space_cache.store(max_vertices, max_edges, computed)
    return cells


def _cell_at(classes: list[MatrixClass]) -> space_cache.CellAt:
    """The k-th class-starting labeling of ``classes`` (in class order) as (matrix, labels)."""
    offsets = np.cumsum([0] + [len(mc.codes) for mc in classes])

    def cell_at(index: int) -> tuple[list[list[int]], list[int]]:
        i = int(np.searchsorted(offsets, index, side="right")) - 1
        mc = classes[i]
        interior = _labelings(mc.vertices)[int(mc.codes[index - offsets[i]])].tolist()
        return matrix_from_bits(mc.bits, mc.vertices), [INPUT_LABEL, *interior, OUTPUT_LABEL]

    return cell_at


def _split(classes: list[MatrixClass], hashes: list[str]) -> Iterator[tuple[MatrixClass, list[str]]]:
    """(class, its hashes) from the flat list of all hashes in class order."""
    start = 0
    for mc in classes:
        end = start + len(mc.codes)
        yield mc, hashes[start:end]
        start = end


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="cell", desc="hashing", leave=False)


def count_cells(max_vertices: int = DEFAULT_MAX_VERTICES, max_edges: int = DEFAULT_MAX_EDGES) -> int:
    """Number of unique cells, without hashing (exact inside the original space)."""
    return sum(len(mc.codes) for mc in all_matrix_classes(max_vertices, max_edges))


def sample_cells(
    n: int,
    seed: int,
    *,
    max_vertices: int = DEFAULT_MAX_VERTICES,
    max_edges: int = DEFAULT_MAX_EDGES,
) -> list[EnumeratedCell]:
    """A deterministic uniform sample of ``n`` distinct cells, in the sample's (random) order.

    Same (n, seed, limits) -> same cells, on any machine: indices come from ``random.Random(seed)``
    over the enumeration order. Only the sampled cells are hashed.
    """
    if not _verified_space(max_vertices, max_edges):
        population = enumerate_cells(max_vertices, max_edges)
        if not 0 <= n <= len(population):
            raise ValueError(f"cannot sample {n} cells from a space of {len(population)}")
        return random.Random(seed).sample(population, n)
    classes = all_matrix_classes(max_vertices, max_edges)
    offsets = np.cumsum([0] + [len(mc.codes) for mc in classes])
    total = int(offsets[-1])
    if not 0 <= n <= total:
        raise ValueError(f"cannot sample {n} cells from a space of {total}")
    picked = []
    labels_of = _LabelLists()
    matrices: dict[int, list[list[int]]] = {}
    for index in random.Random(seed).sample(range(total), n):
        i = int(np.searchsorted(offsets, index, side="right")) - 1
        mc = classes[i]
        matrix = matrices.get(i)
        if matrix is None:
            matrix = matrices[i] = matrix_from_bits(mc.bits, mc.vertices)
        picked.append((matrix, labels_of(mc.vertices, int(mc.codes[index - offsets[i]]))))
    return [
        EnumeratedCell(digest, matrix, labels)
        for digest, (matrix, labels) in zip(hash_cells(picked), picked, strict=True)
    ]


def counts_by_vertices(cells: list[EnumeratedCell]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for cell in cells:
        counts[len(cell.labels)] = counts.get(len(cell.labels), 0) + 1
    return dict(sorted(counts.items()))


def sorted_hashes_sha256(cells: list[EnumeratedCell]) -> str:
    """SHA-256 of the sorted hashes joined by newlines, no trailing newline (SPEC c.3)."""
    import hashlib

    return hashlib.sha256("\n".join(sorted(c.hash for c in cells)).encode("ascii")).hexdigest()


def iter_original_json(cells: list[EnumeratedCell]) -> Iterator[str]:
    """The original enumerator's output file, in pieces: ``json.dump({hash: [matrix, labels]},
    sort_keys=True)`` with default separators and no trailing newline (SPEC c.2 step 4)."""
    import json

    texts: dict[int, str] = {}  # matrices and labels are shared lists: render each once

    def text(value: list) -> str:
        rendered = texts.get(id(value))
        if rendered is None:
            rendered = texts[id(value)] = json.dumps(value)
        return rendered

    yield "{"
    for i, cell in enumerate(sorted(cells, key=lambda c: c.hash)):
        prefix = ", " if i else ""
        yield f'{prefix}"{cell.hash}": [{text(cell.matrix)}, {text(cell.labels)}]'
    yield "}"


def original_json_sha256(cells: list[EnumeratedCell]) -> str:
    import hashlib

    digest = hashlib.sha256()
    for piece in iter_original_json(cells):
        digest.update(piece.encode("ascii"))
    return digest.hexdigest()


__all__ = [
    "EnumeratedCell",
    "count_cells",
    "counts_by_vertices",
    "enumerate_cells",
    "iter_original_json",
    "matrix_from_bits",
    "original_json_sha256",
    "sample_cells",
    "sorted_hashes_sha256",
]
