"""Cells: the original's validation and pruning (SPEC a), input forms, and error messages."""

from __future__ import annotations

import numpy as np
import pytest

from farm.spec import (
    AVAILABLE_OPS,
    CONV1X1,
    CONV3X3,
    MAXPOOL3X3,
    Cell,
    InvalidCellError,
    cell_from_labels,
    prune,
)

INCEPTION = (
    [
        [0, 1, 1, 1, 0, 1, 0],
        [0, 0, 0, 0, 0, 0, 1],
        [0, 0, 0, 0, 0, 0, 1],
        [0, 0, 0, 0, 1, 0, 0],
        [0, 0, 0, 0, 0, 0, 1],
        [0, 0, 0, 0, 0, 0, 1],
        [0, 0, 0, 0, 0, 0, 0],
    ],
    ["input", CONV1X1, CONV3X3, CONV3X3, CONV3X3, MAXPOOL3X3, "output"],
)
# The dataset's canonical representative of the same cell (SPEC b.3 table).
INCEPTION_CANONICAL = (
    [
        [0, 1, 1, 1, 1, 0, 0],
        [0, 0, 0, 0, 0, 0, 1],
        [0, 0, 0, 0, 0, 0, 1],
        [0, 0, 0, 0, 0, 0, 1],
        [0, 0, 0, 0, 0, 1, 0],
        [0, 0, 0, 0, 0, 0, 1],
        [0, 0, 0, 0, 0, 0, 0],
    ],
    ["input", CONV3X3, CONV1X1, MAXPOOL3X3, CONV3X3, CONV3X3, "output"],
)


def chain(n: int) -> list[list[int]]:
    return [[int(j == i + 1) for j in range(n)] for i in range(n)]


def test_available_ops_in_canonical_order():
    assert AVAILABLE_OPS == ("conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3")


def test_pruning_example_of_spec_a2():
    matrix = [[0] * 7 for _ in range(7)]
    for i, j in [(0, 1), (0, 2), (1, 3), (3, 6), (4, 5), (5, 6)]:
        matrix[i][j] = 1
    ops = ["input", CONV3X3, MAXPOOL3X3, CONV1X1, CONV3X3, MAXPOOL3X3, "output"]
    cell = Cell.from_any(matrix, ops)
    assert cell.matrix.tolist() == chain(4)
    assert cell.ops == ("input", CONV3X3, CONV1X1, "output")
    assert cell.hash == "96794a104891b22bf4f2abbdd7c3e90f"
    assert cell.original_matrix.tolist() == matrix and cell.original_ops == tuple(ops)
    assert prune(np.array(matrix)) == [0, 1, 3, 6]


def test_limits_apply_after_pruning():
    """SPEC a.2 point 4: 8 raw vertices and 10 raw edges are fine if pruning removes enough."""
    matrix = [[0] * 8 for _ in range(8)]
    for i, j in [(0, 1), (1, 7), (2, 3), (3, 4), (4, 5), (5, 6), (2, 4), (3, 5), (2, 6), (4, 6)]:
        matrix[i][j] = 1
    cell = Cell.from_any(matrix, ["input"] + [CONV3X3] * 6 + ["output"])
    assert cell.num_vertices == 3 and cell.num_edges == 2
    assert cell.hash == "b49ac8c578b4561d79ac7087988f1c61"  # SPEC b.3 Example B


def test_inception_cell_and_its_canonical_representative_are_equal():
    cell = Cell.from_any(*INCEPTION)
    canonical = Cell.from_any(*INCEPTION_CANONICAL)
    assert cell.hash == canonical.hash == "28cfc7874f6d200472e1a9dcd8650aa0"
    assert cell == canonical and hash(cell) == hash(canonical)
    assert cell.labels == [-1, 1, 0, 0, 0, 2, -2]
    assert all(type(x) is int for x in cell.labels)
    assert cell.to_dict() == {
        "hash": "28cfc7874f6d200472e1a9dcd8650aa0",
        "matrix": INCEPTION[0],
        "ops": INCEPTION[1],
        "vertices": 7,
        "edges": 9,
    }


def test_string_and_array_input_forms():
    matrix, ops = INCEPTION
    raw_adjacency = "".join(str(x) for row in matrix for x in row)
    raw_operations = ",".join(ops)
    expected = Cell.from_any(matrix, ops)
    for m in (raw_adjacency, np.array(matrix), np.array(matrix, dtype=bool), str(matrix)):
        for o in (raw_operations, ops, tuple(ops)):
            cell = Cell.from_any(m, o)
            assert cell.hash == expected.hash
            assert cell.matrix.tolist() == matrix
    assert expected.raw_adjacency == raw_adjacency
    assert expected.raw_operations == raw_operations
    assert Cell.from_any("0100", " input , output ").hash == "043721b9c7fe8c5fad811d47d83132ec"


def test_cell_from_labels_round_trip():
    cell = Cell.from_any(*INCEPTION_CANONICAL)
    again = cell_from_labels(cell.matrix.tolist(), cell.labels)
    assert again.ops == cell.ops and again.hash == cell.hash
    with pytest.raises(InvalidCellError, match="op indices"):
        cell_from_labels(chain(3), [-1, 3, -2])
    with pytest.raises(InvalidCellError, match="op indices"):
        cell_from_labels(chain(3), [-1, -1, -2])


@pytest.mark.parametrize(
    "matrix, ops, message",
    [
        ([[0, 1, 0], [0, 0, 1]], ["input", CONV3X3, "output"], r"matrix must be square, got shape \(2, 3\)"),
        ([[0, 1], [0]], ["input", "output"], "matrix must be square"),
        ("01101", ["input", "output"], "not a square matrix"),
        ("0a00", ["input", "output"], "string of 0 and 1"),
        ("[[0, 1], [0, 0]", ["input", "output"], "not valid JSON"),
        ([[0, 2], [0, 0]], ["input", "output"], "entries must be 0 or 1"),
        (chain(3), ["input", "output"], r"2 ops given for a 3x3 matrix"),
        ([[0, 1], [1, 0]], ["input", "output"], r"strictly upper triangular \(entry \[1\]\[0\] is set\)"),
        ([[1, 1], [0, 0]], ["input", "output"], r"strictly upper triangular \(entry \[0\]\[0\] is set\)"),
        (chain(3), ["input", "conv5x5", "output"], "unknown op 'conv5x5'; interior ops must be one of"),
        (chain(3), ["conv3x3-bn-relu", CONV3X3, "output"], "the first op must be 'input'"),
        (chain(3), ["input", CONV3X3, MAXPOOL3X3], "the last op must be 'output'"),
        ([[0, 1, 0], [0, 0, 0], [0, 0, 0]], ["input", CONV3X3, "output"], "no path from input to output"),
        ([[0]], ["input"], "no path from input to output"),
        (chain(8), ["input"] + [CONV3X3] * 6 + ["output"], "8 vertices after pruning; .* at most 7"),
    ],
)
def test_invalid_cells_name_the_problem(matrix, ops, message):
    with pytest.raises(InvalidCellError, match=message):
        Cell.from_any(matrix, ops)


def test_too_many_edges_after_pruning():
    # 7 vertices, 10 edges, all on input->output paths.
    matrix = [[0] * 7 for _ in range(7)]
    for i, j in [(0, 1), (0, 2), (0, 3), (1, 4), (2, 4), (3, 5), (1, 5), (4, 6), (5, 6), (0, 6)]:
        matrix[i][j] = 1
    with pytest.raises(InvalidCellError, match="10 edges after pruning; the space allows at most 9"):
        Cell.from_any(matrix, ["input"] + [CONV3X3] * 5 + ["output"])
    assert Cell.from_any(matrix, ["input"] + [CONV3X3] * 5 + ["output"], max_edges=10).num_edges == 10


def test_unknown_op_on_a_pruned_vertex_is_accepted_like_the_original():
    """The original checks op names on the pruned spec only (SPEC a.3)."""
    matrix = [[0, 1, 1], [0, 0, 0], [0, 0, 0]]  # vertex 1 does not reach the output
    cell = Cell.from_any(matrix, ["input", "not-an-op", "output"])
    assert cell.ops == ("input", "output") and cell.hash == "043721b9c7fe8c5fad811d47d83132ec"


def test_cells_are_immutable():
    cell = Cell.from_any(*INCEPTION)
    with pytest.raises(ValueError):
        cell.matrix[0, 1] = 0
