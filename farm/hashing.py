"""The NAS-Bench-101 module hash (``graph_util.hash_module`` in the original), digest-identical.

A Weisfeiler-Lehman style fingerprint: every vertex starts from md5("(out, in, label)") and is
re-hashed V times from the sorted hashes of its predecessors and successors. See SPEC section b.
Degrees and labels are converted to plain ``int`` on purpose: under numpy >= 2 a numpy integer
renders as ``np.int64(1)`` and silently changes every digest (SPEC b.4).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

INPUT_LABEL = -1
OUTPUT_LABEL = -2


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def module_hash(matrix: Sequence[Sequence[int]], labels: Sequence[int]) -> str:
    """Hash an already pruned, strictly upper-triangular adjacency matrix with integer labels.

    ``labels`` are -1 for the input, -2 for the output and the op index for interior vertices.
    """
    rows = [[int(x) for x in row] for row in matrix]
    n = len(rows)
    labels = [int(x) for x in labels]
    predecessors = [[w for w in range(n) if rows[w][v]] for v in range(n)]
    successors = [[w for w in range(n) if rows[v][w]] for v in range(n)]
    hashes = [
        _md5(f"({len(successors[v])}, {len(predecessors[v])}, {labels[v]})") for v in range(n)
    ]
    for _ in range(n):
        hashes = [
            _md5(
                "".join(sorted(hashes[w] for w in predecessors[v]))
                + "|"
                + "".join(sorted(hashes[w] for w in successors[v]))
                + "|"
                + hashes[v]
            )
            for v in range(n)
        ]
    return _md5(str(sorted(hashes)))


def hash_labelings(matrix: Sequence[Sequence[int]], labelings: Sequence[Sequence[int]]) -> list[str]:
    """``module_hash(matrix, labels)`` for each labeling of one pruned matrix."""
    return [module_hash(matrix, labels) for labels in labelings]
