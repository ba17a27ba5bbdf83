"""The NAS-Bench-101 module hash (``graph_util.hash_module`` in the original), digest-identical.

A Weisfeiler-Lehman style fingerprint (SPEC b.2): every vertex starts from md5("(out, in, label)")
and is re-hashed V times from md5(sorted predecessor hashes + "|" + sorted successor hashes + "|" +
its own hash); the module hash is md5 of ``str(sorted(final vertex hashes))``.

Two implementations of the same function:

* :func:`module_hash` hashes one cell in plain Python: per-matrix "plans" (neighbour readers) are
  cached, and initial and first-round vertex hashes are memoised (they depend only on a vertex's
  degrees and its neighbours' degrees and labels).
* :func:`hash_cells` / :func:`hash_labelings` / :func:`hash_arrays` hash many cells at once.
  The md5 inputs of all vertices with the same in/out degree are built as rows of one numpy
  byte array (gather, sort, concatenate), so the only per-vertex Python work left is one
  C-level ``map(md5, rows)``. The cost is then close to the md5 computations themselves
  (V*(V+1)+1 per cell, minus the first round's repeats, hashed once per distinct message).

Labels and degrees are always rendered as plain ``int``: under numpy >= 2 a numpy integer renders
as ``np.int64(1)`` and would silently change every digest (SPEC b.4).
"""

from __future__ import annotations

from binascii import hexlify
from collections.abc import Iterable, Sequence
from operator import itemgetter

import numpy as np

try:  # CPython's built-in (HACL*) md5 has less per-call overhead than OpenSSL's for short inputs.
    from _md5 import md5 as _md5
except ImportError:  # pragma: no cover - interpreters built without it
    from hashlib import md5 as _md5

INPUT_LABEL = -1
OUTPUT_LABEL = -2

_DIGEST = type(_md5()).digest
_HEXDIGEST = type(_md5()).hexdigest
_BAR = ord("|")

# Memo tables for module_hash. Both are bounded by the space: (out, in, label) triples, and first-
# round messages, which depend only on a vertex's 1-neighbourhood (a few thousand in the space).
_INITIAL: dict[tuple[int, int, int], str] = {}
_FIRST_ROUND: dict[str, str] = {}
_FIRST_ROUND_BYTES: dict[bytes, bytes] = {}
_FIRST_ROUND_LIMIT = 1 << 18
_PLANS: dict[tuple, tuple] = {}
_PLANS_LIMIT = 1 << 16
_BATCH_CELLS = 1 << 15


def _md5hex(text: str) -> str:
    return _md5(text.encode("ascii")).hexdigest()


def initial_hash(out_degree: int, in_degree: int, label: int) -> str:
    """md5 of Python's ``str((out, in, label))`` with plain ints (SPEC b.2 step 2)."""
    key = (int(out_degree), int(in_degree), int(label))
    digest = _INITIAL.get(key)
    if digest is None:
        digest = _INITIAL[key] = _md5hex(str(key))
    return digest


def _gather(neighbours: list[int]) -> tuple[int, int | itemgetter | None]:
    """How to read the neighbours' hashes: (0, None), (1, index) or (count, itemgetter)."""
    if not neighbours:
        return 0, None
    if len(neighbours) == 1:
        return 1, neighbours[0]
    return len(neighbours), itemgetter(*neighbours)


def _plan(matrix: Sequence[Sequence[int]]) -> tuple[list[tuple[int, int]], list[tuple]]:
    """Per vertex: (out, in) degrees and (vertex, predecessor reader, successor reader).

    Cached by the matrix's entries: the space has a few thousand distinct matrices.
    """
    key = tuple(map(tuple, matrix))
    plan = _PLANS.get(key)
    if plan is None:
        n = len(matrix)
        if any(len(row) != n for row in key):
            raise ValueError("matrix must be square")
        predecessors = [[w for w in range(n) if key[w][v]] for v in range(n)]
        successors = [[w for w in range(n) if key[v][w]] for v in range(n)]
        degrees = [(len(successors[v]), len(predecessors[v])) for v in range(n)]
        steps = [(v, *_gather(predecessors[v]), *_gather(successors[v])) for v in range(n)]
        if len(_PLANS) > _PLANS_LIMIT:
            _PLANS.clear()
        plan = _PLANS[key] = (degrees, steps)
    return plan


def module_hash(matrix: Sequence[Sequence[int]], labels: Sequence[int]) -> str:
    """Hash an already pruned adjacency matrix with integer labels (one cell).

    ``labels`` are -1 for the input, -2 for the output and the op index for interior vertices.
    Any nonzero entry counts as an edge.
    """
    degrees, steps = _plan(matrix)
    if len(labels) != len(steps):
        raise ValueError(f"{len(labels)} labels for a {len(steps)}x{len(steps)} matrix")
    known = _INITIAL.get
    hashes = [known((o, i, x)) or initial_hash(o, i, x) for (o, i), x in zip(degrees, labels, strict=True)]
    memo = _FIRST_ROUND
    if len(memo) > _FIRST_ROUND_LIMIT:  # only reachable with many cells from outside the space
        memo.clear()
    join = "".join
    for round_index in range(len(steps)):
        previous = hashes
        hashes = []
        for v, in_count, ins, out_count, outs in steps:
            # The concatenated, sorted hex hashes of the predecessors, then of the successors
            # (two neighbours, the commonest case, are ordered inline).
            if in_count == 1:
                before = previous[ins]
            elif in_count == 2:
                x, y = ins(previous)
                before = x + y if x < y else y + x
            elif in_count:
                before = join(sorted(ins(previous)))
            else:
                before = ""
            if out_count == 1:
                after = previous[outs]
            elif out_count == 2:
                x, y = outs(previous)
                after = x + y if x < y else y + x
            elif out_count:
                after = join(sorted(outs(previous)))
            else:
                after = ""
            message = f"{before}|{after}|{previous[v]}"
            if round_index:
                hashes.append(_HEXDIGEST(_md5(message.encode("ascii"))))
            else:  # first-round messages depend on 1-neighbourhoods only: they repeat a lot
                digest = memo.get(message)
                if digest is None:
                    digest = memo[message] = _md5hex(message)
                hashes.append(digest)
    hashes.sort()
    return _md5hex("['" + "', '".join(hashes) + "']" if hashes else "[]")  # str(sorted(hashes))


# ---------------------------------------------------------------------------------------------
# Batched hashing


def _row_bytes(rows: np.ndarray) -> list[bytes]:
    """Each row of a 2-D uint8 array as bytes (messages never contain NUL, so nothing is stripped)."""
    return np.ascontiguousarray(rows).view(f"S{rows.shape[1]}").ravel().tolist()


def _md5_rows(rows: np.ndarray) -> np.ndarray:
    """md5 of every row of a 2-D uint8 array, as lower-case hex digests (dtype S32)."""
    if len(rows) == 0:
        return np.empty(0, dtype="S32")
    # C-level map: no Python bytecode runs per message; one hexlify for the whole batch.
    digests = b"".join(map(_DIGEST, map(_md5, _row_bytes(rows))))
    return np.frombuffer(hexlify(digests), dtype="S32")


def _md5_rows_memoised(rows: np.ndarray) -> np.ndarray:
    """Like _md5_rows, but through a memo: for first-round messages, which mostly repeat."""
    if len(rows) == 0:
        return np.empty(0, dtype="S32")
    messages = _row_bytes(rows)
    memo = _FIRST_ROUND_BYTES
    found = list(map(memo.get, messages))
    if None in found:
        if len(memo) > _FIRST_ROUND_LIMIT:
            memo.clear()
        for i, digest in enumerate(found):
            if digest is None:
                message = messages[i]
                digest = memo.get(message)
                if digest is None:
                    digest = memo[message] = _md5(message).hexdigest().encode("ascii")
                found[i] = digest
    return np.frombuffer(b"".join(found), dtype="S32")


def _sorted_hex_block(hashes: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Concatenated sorted hex digests of hashes[index] row by row, as a (rows, 32*k) uint8 array."""
    rows, k = index.shape
    gathered = hashes[index]  # a fresh array: sort it in place
    if k > 1:
        gathered.sort(axis=1)
    return gathered.view(np.uint8).reshape(rows, 32 * k)


class _DegreeGroup:
    """The (cell, vertex) slots with one (in-degree, out-degree): equal-length md5 messages.

    Slots are numbered group by group, so a group's own hashes are one contiguous slice.
    """

    def __init__(self, start: int, preds: np.ndarray, succs: np.ndarray):
        self.span = slice(start, start + len(preds))
        self.preds = preds  # (slots, in-degree) slot numbers of the predecessors
        self.succs = succs  # (slots, out-degree) slot numbers of the successors

    def messages(self, hashes: np.ndarray) -> np.ndarray:
        count, ins, outs = len(self.preds), self.preds.shape[1], self.succs.shape[1]
        rows = np.empty((count, 32 * (ins + outs + 1) + 2), dtype=np.uint8)
        rows[:, : 32 * ins] = _sorted_hex_block(hashes, self.preds)
        rows[:, 32 * ins] = _BAR
        rows[:, 32 * ins + 1 : 32 * (ins + outs) + 1] = _sorted_hex_block(hashes, self.succs)
        rows[:, 32 * (ins + outs) + 1] = _BAR
        rows[:, -32:] = hashes[self.span].view(np.uint8).reshape(count, 32)
        return rows


def _degree_groups(adjacency: np.ndarray) -> tuple[list[_DegreeGroup], np.ndarray]:
    """The degree groups, and ``slot_of[cell * V + v]``: where vertex v of a cell lives."""
    cells, n, _ = adjacency.shape
    in_degree = adjacency.sum(axis=1)
    out_degree = adjacency.sum(axis=2)
    members = []
    for ins, outs in sorted(set(zip(in_degree.ravel().tolist(), out_degree.ravel().tolist(), strict=True))):
        cell, vertex = np.nonzero((in_degree == ins) & (out_degree == outs))
        # np.nonzero walks rows in order, so each slot's neighbours come out contiguous and sorted.
        _, pred = np.nonzero(adjacency[cell, :, vertex])
        _, succ = np.nonzero(adjacency[cell, vertex, :])
        base = (cell * n)[:, None]
        preds = base + pred.reshape(len(cell), ins)
        succs = base + succ.reshape(len(cell), outs)
        members.append((cell * n + vertex, preds, succs))
    slot_of = np.empty(cells * n, dtype=np.int64)
    slot_of[np.concatenate([flat for flat, _, _ in members])] = np.arange(cells * n)
    groups, start = [], 0
    for flat, preds, succs in members:
        groups.append(_DegreeGroup(start, slot_of[preds], slot_of[succs]))
        start += len(flat)
    return groups, slot_of


def _final_messages(hashes: np.ndarray, cells: int, n: int) -> np.ndarray:
    """Rows of ``str(sorted(hashes))``: "['h1', 'h2', ..., 'hn']" (36 n bytes)."""
    ordered = np.sort(hashes.reshape(cells, n), axis=1).view(np.uint8).reshape(cells, n, 32)
    items = np.empty((cells, n, 36), dtype=np.uint8)
    items[:, :, 0] = items[:, :, 33] = ord("'")
    items[:, :, 1:33] = ordered
    items[:, :, 34] = ord(",")
    items[:, :, 35] = ord(" ")
    rows = np.empty((cells, 36 * n), dtype=np.uint8)
    rows[:, 0] = ord("[")
    rows[:, 1:-1] = items.reshape(cells, 36 * n)[:, :-2]  # drop the last ", "
    rows[:, -1] = ord("]")
    return rows


def hash_arrays(adjacency: np.ndarray, labels: np.ndarray) -> list[str]:
    """Module hashes of ``cells`` cells of one size: adjacency (cells, V, V), labels (cells, V).

    Equal, cell by cell, to ``module_hash(adjacency[i], labels[i])``.
    """
    adjacency = np.asarray(adjacency).astype(bool)
    labels = np.asarray(labels, dtype=np.int64)
    cells, n = labels.shape
    if adjacency.shape != (cells, n, n):
        raise ValueError(f"adjacency of shape {adjacency.shape} does not fit labels of shape {labels.shape}")
    if cells == 0:
        return []
    if n == 0:  # the original hashes an empty matrix too: str([]) -> "[]"
        return [_md5hex("[]")] * cells
    # Initial hashes: one md5 per distinct (out, in, label), found through a packed integer key.
    out_degree, in_degree = adjacency.sum(axis=2).ravel(), adjacency.sum(axis=1).ravel()
    lowest = int(labels.min())
    span = int(labels.max()) - lowest + 1
    keys = (out_degree * (n + 1) + in_degree) * span + (labels.ravel() - lowest)
    distinct, inverse = np.unique(keys, return_inverse=True)
    triples = [(k // span // (n + 1), k // span % (n + 1), k % span + lowest) for k in distinct.tolist()]
    table = np.array([initial_hash(*triple) for triple in triples], dtype="S32")
    groups, slot_of = _degree_groups(adjacency)
    hashes = np.empty(cells * n, dtype="S32")
    hashes[slot_of] = table[inverse.ravel()]
    for round_index in range(n):
        updated = np.empty_like(hashes)
        for group in groups:
            rows = group.messages(hashes)
            # First-round messages depend only on 1-neighbourhoods: most of them repeat.
            digest = _md5_rows_memoised(rows) if round_index == 0 else _md5_rows(rows)
            updated[group.span] = digest
        hashes = updated
    final = _final_messages(hashes[slot_of], cells, n)  # back to cell-major order
    return list(map(_HEXDIGEST, map(_md5, _row_bytes(final))))


def hash_cells(cells: Iterable[tuple[Sequence[Sequence[int]], Sequence[int]]]) -> list[str]:
    """``module_hash(matrix, labels)`` for many (matrix, labels) pairs, in order; sizes may differ."""
    items = list(cells)
    result: list[str] = [""] * len(items)
    by_size: dict[int, list[int]] = {}
    for i, (matrix, labels) in enumerate(items):
        if len(labels) != len(matrix):
            raise ValueError(f"{len(labels)} labels for a {len(matrix)}x{len(matrix)} matrix")
        by_size.setdefault(len(labels), []).append(i)
    for n, same_size in by_size.items():
        if len(same_size) < 8:  # numpy's fixed costs outweigh the batch
            for i in same_size:
                result[i] = module_hash(*items[i])
            continue
        # Batches of bounded size keep the working arrays at a few tens of MiB.
        for start in range(0, len(same_size), _BATCH_CELLS):
            indices = same_size[start : start + _BATCH_CELLS]
            adjacency = np.array([items[i][0] for i in indices]).reshape(len(indices), n, n)
            labels = np.array([[int(x) for x in items[i][1]] for i in indices], dtype=np.int64)
            labels = labels.reshape(len(indices), n)
            for i, digest in zip(indices, hash_arrays(adjacency, labels), strict=True):
                result[i] = digest
    return result


def hash_labelings(matrix: Sequence[Sequence[int]], labelings: Sequence[Sequence[int]]) -> list[str]:
    """``module_hash(matrix, labels)`` for each labeling of one matrix."""
    if len(labelings) < 8:
        return [module_hash(matrix, labels) for labels in labelings]
    base = np.asarray(matrix).astype(bool)
    labels = np.array([[int(x) for x in row] for row in labelings], dtype=np.int64)
    adjacency = np.broadcast_to(base, (len(labels), *base.shape))
    return hash_arrays(adjacency, labels.reshape(len(labelings), base.shape[0]))
