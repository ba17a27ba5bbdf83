"""The module hash against the original's published values (SPEC b.3, b.4) and a literal reference.

``reference_rounds`` below is a direct transcription of SPEC b.2, written for these tests only and
kept deliberately naive: it is what the fast implementations (``module_hash``, the batched
``hash_cells``/``hash_labelings``/``hash_arrays``) are checked against on many cells.
"""

from __future__ import annotations

import hashlib
import itertools
import random

import numpy as np
import pytest

from farm.hashing import hash_arrays, hash_cells, hash_labelings, module_hash


def reference_rounds(matrix, labels) -> list[list[str]]:
    """Vertex hashes after round 0..V of SPEC b.2 (the last entry: the final hashes)."""
    n = len(matrix)
    md5 = lambda text: hashlib.md5(text.encode("utf-8")).hexdigest()  # noqa: E731
    out_degree = [sum(matrix[v]) for v in range(n)]
    in_degree = [sum(matrix[w][v] for w in range(n)) for v in range(n)]
    hashes = [md5(str((out_degree[v], in_degree[v], labels[v]))) for v in range(n)]
    rounds = [hashes]
    for _ in range(n):
        previous = rounds[-1]
        rounds.append(
            [
                md5(
                    "".join(sorted(previous[w] for w in range(n) if matrix[w][v]))
                    + "|"
                    + "".join(sorted(previous[w] for w in range(n) if matrix[v][w]))
                    + "|"
                    + previous[v]
                )
                for v in range(n)
            ]
        )
    return rounds


def reference_hash(matrix, labels) -> str:
    final = reference_rounds(matrix, labels)[-1]
    return hashlib.md5(str(sorted(final)).encode("utf-8")).hexdigest()


# SPEC b.3, Example A and B: every intermediate value as printed by the original code.
EXAMPLE_A = {
    "matrix": [[0, 1], [0, 0]],
    "labels": [-1, -2],
    "rounds": [
        ["3bb65a81afada4c50c2c4630873f0a79", "da7ed8fcf085d449b70116bd536a0344"],
        ["6a9b02cac0c1197568db68e8a26172e5", "b03380eecb720dcb90c99e9368145d41"],
        ["24e83d4b6d15ac1c1dd62825fccc2b55", "6b642d06edcbee779700da045bbd0266"],
    ],
    "hash": "043721b9c7fe8c5fad811d47d83132ec",
}
EXAMPLE_B = {
    "matrix": [[0, 1, 0], [0, 0, 1], [0, 0, 0]],
    "labels": [-1, 0, -2],
    "rounds": [
        [
            "3bb65a81afada4c50c2c4630873f0a79",
            "d83dc8699b886cf73ffbd4db0625c540",
            "da7ed8fcf085d449b70116bd536a0344",
        ],
        [
            "2db5495790022c768943b347000b1ca8",
            "c35d4b8921f087212df4d626a2841ac3",
            "337d999cc6efa343de83be59e1f77d99",
        ],
        [
            "17cd7aa894e752580e36674c424c3d79",
            "4b68783b69396e495e6c523c2113eed7",
            "fe8464fc290cb883ecf856596d8daf2e",
        ],
        [
            "d67e8ecedc26905fdc611fb26327d258",
            "3e2bac0b99510f2e44aa7a76070c39cd",
            "e900b60544768237407b950153caaffa",
        ],
    ],
    "hash": "b49ac8c578b4561d79ac7087988f1c61",
}

C3, C1, MP = 0, 1, 2
# SPEC b.3 table: (matrix, interior labels, hash), all already pruned.
TABLE = [
    ([[0, 1, 1], [0, 0, 1], [0, 0, 0]], [C3], "d32d0b26d534203b48d866facd98cc3e"),
    (
        [[0, 1, 0, 1], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]],
        [C3, C3],
        "b5fb4f6193360330b6ff6a52cbf0cad7",
    ),
    (
        [
            [0, 1, 1, 1, 0, 1, 0],
            [0, 0, 0, 0, 0, 0, 1],
            [0, 0, 0, 0, 0, 0, 1],
            [0, 0, 0, 0, 1, 0, 0],
            [0, 0, 0, 0, 0, 0, 1],
            [0, 0, 0, 0, 0, 0, 1],
            [0, 0, 0, 0, 0, 0, 0],
        ],
        [C1, C3, C3, C3, MP],
        "28cfc7874f6d200472e1a9dcd8650aa0",
    ),
    (
        [
            [0, 1, 1, 1, 1, 0, 0],
            [0, 0, 0, 0, 0, 0, 1],
            [0, 0, 0, 0, 0, 0, 1],
            [0, 0, 0, 0, 0, 0, 1],
            [0, 0, 0, 0, 0, 1, 0],
            [0, 0, 0, 0, 0, 0, 1],
            [0, 0, 0, 0, 0, 0, 0],
        ],
        [C3, C1, MP, C3, C3],
        "28cfc7874f6d200472e1a9dcd8650aa0",
    ),
    (
        [
            [0, 1, 1, 0, 0, 1, 1],
            [0, 0, 0, 0, 0, 1, 0],
            [0, 0, 0, 1, 0, 0, 0],
            [0, 0, 0, 0, 1, 0, 0],
            [0, 0, 0, 0, 0, 1, 0],
            [0, 0, 0, 0, 0, 0, 1],
            [0, 0, 0, 0, 0, 0, 0],
        ],
        [C1, C3, MP, C3, C3],
        "02e5a0247bbdcf2860b7e96f74961594",
    ),
    (
        [[0, 1, 0, 0, 0], [0, 0, 1, 0, 1], [0, 0, 0, 1, 1], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]],
        [C3, C1, C3],
        "075c302a76b065db022d643641d4c813",
    ),
    # The a.2 pruning example after pruning: the chain input -> conv3x3 -> conv1x1 -> output.
    ([[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]], [C3, C1], "96794a104891b22bf4f2abbdd7c3e90f"),
]


@pytest.mark.parametrize("example", [EXAMPLE_A, EXAMPLE_B], ids=["A", "B"])
def test_worked_examples_with_intermediate_hashes(example):
    rounds = reference_rounds(example["matrix"], example["labels"])
    assert rounds == example["rounds"]
    assert reference_hash(example["matrix"], example["labels"]) == example["hash"]
    assert module_hash(example["matrix"], example["labels"]) == example["hash"]


def test_initial_strings_are_out_in_label_tuples():
    # SPEC b.3: the initial strings of Example B are (1, 0, -1), (1, 1, 0), (0, 1, -2).
    strings = ["(1, 0, -1)", "(1, 1, 0)", "(0, 1, -2)"]
    expected = [hashlib.md5(s.encode()).hexdigest() for s in strings]
    assert expected == EXAMPLE_B["rounds"][0]


@pytest.mark.parametrize("matrix, interior, expected", TABLE)
def test_published_table(matrix, interior, expected):
    labels = [-1, *interior, -2]
    assert module_hash(matrix, labels) == expected
    assert hash_cells([(matrix, labels)] * 9) == [expected] * 9  # the batched path (>= 8 cells)
    assert reference_hash(matrix, labels) == expected


def test_numpy_inputs_hash_like_plain_ints():
    """SPEC b.4: numpy scalars must not leak into the formatted strings."""
    labels = np.array(EXAMPLE_B["labels"], dtype=np.int64)
    matrix = np.array(EXAMPLE_B["matrix"], dtype=np.int8)
    assert module_hash(matrix, labels) == EXAMPLE_B["hash"]
    assert module_hash(matrix.tolist(), [np.int32(x) for x in labels]) == EXAMPLE_B["hash"]
    assert hash_labelings(matrix, [labels] * 10) == [EXAMPLE_B["hash"]] * 10


@pytest.mark.skipif(np.lib.NumpyVersion(np.__version__) < "2.0.0", reason="numpy < 2 prints ints plainly")
def test_the_numpy_pitfall_is_real():
    """The naive algorithm fed numpy labels gives the wrong digest quoted in SPEC b.4."""
    labels = list(np.array(EXAMPLE_B["labels"], dtype=np.int64))
    assert reference_hash(EXAMPLE_B["matrix"], labels) == "f25c99d34ea59cbab39fce088bf2fafc"


def _random_dag(rng: random.Random, n: int, density: float) -> list[list[int]]:
    return [[int(j > i and rng.random() < density) for j in range(n)] for i in range(n)]


def test_fast_paths_equal_the_reference_on_random_graphs():
    """Random DAGs of 0..8 vertices (unpruned, any degrees, labels -2..2): all paths agree."""
    rng = random.Random(1234)
    cells = []
    for _ in range(600):
        n = rng.randint(0, 8)
        matrix = _random_dag(rng, n, rng.choice([0.2, 0.5, 0.8]))
        labels = [rng.randint(-2, 2) for _ in range(n)]
        cells.append((matrix, labels))
    expected = [reference_hash(m, labels) for m, labels in cells]
    assert [module_hash(m, labels) for m, labels in cells] == expected
    assert hash_cells(cells) == expected


def test_hash_labelings_equals_module_hash_for_every_labeling():
    matrix = TABLE[4][0]  # the "best" 7-vertex cell
    labelings = [[-1, *interior, -2] for interior in itertools.product(range(3), repeat=5)]
    batched = hash_labelings(matrix, labelings)
    assert len(batched) == 243
    assert batched == [module_hash(matrix, labels) for labels in labelings]
    assert len(set(batched)) == 243  # that graph has no automorphism: every labeling differs


def test_hash_arrays_checks_shapes_and_handles_empty_batches():
    assert hash_arrays(np.zeros((0, 3, 3), dtype=bool), np.zeros((0, 3), dtype=np.int64)) == []
    with pytest.raises(ValueError, match="does not fit"):
        hash_arrays(np.zeros((2, 3, 3), dtype=bool), np.zeros((2, 4), dtype=np.int64))
    with pytest.raises(ValueError, match="labels"):
        module_hash([[0, 1], [0, 0]], [-1])


def test_hash_is_invariant_under_vertex_permutation():
    """The hash is an isomorphism invariant: relabel the vertices of each table cell at random."""
    rng = random.Random(7)
    for matrix, interior, expected in TABLE:
        labels = [-1, *interior, -2]
        n = len(matrix)
        for _ in range(5):
            perm = list(range(n))
            rng.shuffle(perm)  # vertex v becomes perm[v]; the matrix need not stay triangular
            moved = [[0] * n for _ in range(n)]
            for i in range(n):
                for j in range(n):
                    moved[perm[i]][perm[j]] = matrix[i][j]
            moved_labels = [0] * n
            for v in range(n):
                moved_labels[perm[v]] = labels[v]
            assert module_hash(moved, moved_labels) == expected
