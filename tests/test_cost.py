"""farm.cost: vertex channels, parameter counts and FLOPs against the SPEC's published facts.

The cells below carry published NAS-Bench-101 facts (SPEC b.3, d.3, d.6, h): (matrix, interior
ops, hash, trainable parameters). The space's minimum and maximum are the canonical
representatives found by enumerating single-op labelings in the original's bit order; their
hashes, checked below, are the SPEC's. tests/test_model.py reuses them.
"""

from __future__ import annotations

import random

import pytest

from farm import cost
from farm.config import NB101, SMOKE
from farm.spec import Cell

C3, C1, MP = "conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3"

INCEPTION_README = (
    [[0, 1, 1, 1, 0, 1, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 1, 0, 0],
     [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0]],
    [C1, C3, C3, C3, MP],
    "28cfc7874f6d200472e1a9dcd8650aa0",
    2_694_282,
)
INCEPTION_CANONICAL = (
    [[0, 1, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1],
     [0, 0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0]],
    [C3, C1, MP, C3, C3],
    "28cfc7874f6d200472e1a9dcd8650aa0",
    2_694_282,
)
INPUT_OUTPUT_ONLY = ([[0, 1], [0, 0]], [], "043721b9c7fe8c5fad811d47d83132ec", 882_570)
CONV3X3_SKIP = (
    [[0, 1, 1], [0, 0, 1], [0, 0, 0]], [C3], "d32d0b26d534203b48d866facd98cc3e", 11_051_402
)
TRUNCATION = (
    [[0, 1, 0, 0, 0], [0, 0, 1, 0, 1], [0, 0, 0, 1, 1], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]],
    [C3, C1, C3],
    "075c302a76b065db022d643641d4c813",
    2_483_520,
)
SPACE_MINIMUM = (
    [[0, 1, 0, 0, 0, 0, 0], [0, 0, 1, 0, 1, 0, 1], [0, 0, 0, 1, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1],
     [0, 0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0]],
    [MP, MP, MP, MP, MP],
    "01da1025a8b3a7c0b848adccef93c5a5",
    227_274,
)
SPACE_MAXIMUM = (
    [[0, 1, 1, 0, 1, 0, 1], [0, 0, 0, 0, 1, 0, 0], [0, 0, 0, 1, 0, 0, 0], [0, 0, 0, 0, 1, 0, 0],
     [0, 0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0]],
    [C3, C3, C3, C3, C3],
    "012534f1e7781c0ac3ef57bfcc4dff91",
    49_979_274,
)

PUBLISHED = {
    "inception_readme": INCEPTION_README,
    "inception_canonical": INCEPTION_CANONICAL,
    "input_output_only": INPUT_OUTPUT_ONLY,
    "conv3x3_skip": CONV3X3_SKIP,
    "truncation": TRUNCATION,
    "space_minimum": SPACE_MINIMUM,
    "space_maximum": SPACE_MAXIMUM,
}


def make_cell(entry) -> Cell:
    matrix, interior, _, _ = entry
    return Cell.from_any(matrix, ["input", *interior, "output"])


def random_cells(count: int, seed: int) -> list[Cell]:
    """Distinct valid cells from random 7x7 upper-triangular matrices and random ops, pruned.

    Independent of farm.space on purpose; edge density is varied so that small and large, wide
    and deep cells all appear.
    """
    rng = random.Random(seed)
    ops = ["conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3"]
    cells: dict[str, Cell] = {}
    while len(cells) < count:
        n = rng.randint(2, 7)
        density = rng.uniform(0.2, 0.8)
        matrix = [[int(j > i and rng.random() < density) for j in range(n)] for i in range(n)]
        names = ["input", *(rng.choice(ops) for _ in range(n - 2)), "output"]
        try:
            cell = Cell.from_any(matrix, names)
        except ValueError:
            continue
        cells.setdefault(cell.hash, cell)
    return list(cells.values())


# --- vertex channels: SPEC d.3 examples, from running the original function -------------------


@pytest.mark.parametrize(
    "c_out, interior", [(128, [32] * 5), (256, [64] * 5), (512, [128] * 5)]
)
def test_inception_cell_splits_evenly(c_out, interior):
    matrix = INCEPTION_README[0]
    assert cost.compute_vertex_channels(7, c_out, matrix) == [7, *interior, c_out]


THREE_FEEDERS = [[0, 1, 1, 1, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 1], [0, 0, 0, 0, 1], [0] * 5]


@pytest.mark.parametrize(
    "c_out, interior", [(128, [43, 43, 42]), (256, [86, 85, 85]), (512, [171, 171, 170])]
)
def test_remainder_goes_to_the_lowest_index_feeders(c_out, interior):
    assert cost.compute_vertex_channels(128, c_out, THREE_FEEDERS) == [128, *interior, c_out]


@pytest.mark.parametrize(
    "c_out, interior", [(128, [43, 43, 42]), (256, [86, 85, 85]), (512, [171, 171, 170])]
)
def test_truncation_example(c_out, interior):
    assert cost.compute_vertex_channels(64, c_out, TRUNCATION[0]) == [64, *interior, c_out]


MAX_RULE = [[0, 1, 0, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 1], [0] * 5]


def test_vertex_not_feeding_output_takes_max_of_successors():
    assert cost.compute_vertex_channels(128, 128, MAX_RULE) == [128, 64, 64, 64, 128]
    # The original's unit test.
    assert cost.compute_vertex_channels(8, 9, MAX_RULE) == [8, 5, 5, 4, 9]


def test_two_vertex_cell_has_only_input_and_output():
    assert cost.compute_vertex_channels(128, 256, [[0, 1], [0, 0]]) == [128, 256]


def test_numpy_matrix_accepted():
    cell = make_cell(TRUNCATION)
    assert cost.compute_vertex_channels(128, 128, cell.matrix) == [128, 43, 43, 42, 128]


def test_too_few_channels_for_the_split_is_an_error():
    with pytest.raises(ValueError, match="output channels"):
        cost.compute_vertex_channels(2, 2, THREE_FEEDERS)


def test_properties_the_original_asserts_hold_on_random_cells():
    for cell in random_cells(300, seed=1):
        m = cell.matrix.tolist()
        n = len(m)
        for c_in, c_out in [(128, 128), (128, 256), (256, 512)]:
            vc = cost.compute_vertex_channels(c_in, c_out, m)
            interior = range(1, n - 1)
            assert all(vc[v] > 0 for v in interior)
            assert all(vc[s] >= vc[t] for s in interior for t in interior if m[s][t])
            # Truncation drops at most one channel (the original asserts a difference of 1).
            assert all(vc[s] - vc[t] <= 1 for s in interior for t in interior if m[s][t])
            if n > 2:
                assert sum(vc[v] for v in interior if m[v][n - 1]) == c_out


# --- parameters: SPEC d.6 and the published counts -----------------------------------------


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_parameter_counts(name):
    entry = PUBLISHED[name]
    cell = make_cell(entry)
    assert cell.hash == entry[2]
    assert cost.trainable_parameters(cell) == entry[3]


def test_inception_breakdown_by_module():
    """SPEC d.6's worked table: the per-module counts of the Inception-like cell."""
    cell = make_cell(INCEPTION_README)
    rows = tuple(tuple(r) for r in cell.matrix.tolist())
    kernels = (0, 1, 3, 3, 3, 0, 0)
    assert cost.module_cost(rows, kernels, 128, 128)[0] == 45_568
    assert cost.module_cost(rows, kernels, 128, 256)[0] == 148_480
    assert cost.module_cost(rows, kernels, 256, 256)[0] == 181_248
    assert cost.module_cost(rows, kernels, 256, 512)[0] == 591_872
    assert cost.module_cost(rows, kernels, 512, 512)[0] == 722_944


def test_vertex_order_changes_parameters_through_the_remainder():
    """Two orders of one cell: the +1 channel lands on a different op, so the counts differ.

    Three output feeders (conv3x3, conv1x1, maxpool) share 128 = 43 + 43 + 42: whichever op sits at
    the last feeder gets 42. The published count belongs to the representative that was stored.
    """
    a = Cell.from_any(THREE_FEEDERS, ["input", "conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3",
                                      "output"])
    b = Cell.from_any(THREE_FEEDERS, ["input", "maxpool3x3", "conv1x1-bn-relu", "conv3x3-bn-relu",
                                      "output"])
    assert a.hash == b.hash
    assert cost.trainable_parameters(a) != cost.trainable_parameters(b)
    assert cost.trainable_parameters(a) > cost.trainable_parameters(b)  # conv3x3 got 43, not 42


def test_cost_from_labels_matches_the_cell_api():
    for cell in random_cells(50, seed=2):
        params, macs = cost.cost_from_labels(cell.matrix.tolist(), cell.labels)
        assert params == cost.trainable_parameters(cell)
        assert macs == cost.forward_flops(cell)


def test_smoke_profile_two_vertex_cell_by_hand():
    """stem 8 channels, one module per stack (8, 16, 32 channels), dense 32 -> 10."""
    stem = 3 * 3 * 3 * 8 + 2 * 8
    modules = (8 * 8 + 2 * 8) + (8 * 16 + 2 * 16) + (16 * 32 + 2 * 32)
    head = 32 * 10 + 10
    assert cost.trainable_parameters(make_cell(INPUT_OUTPUT_ONLY), SMOKE) == stem + modules + head
    assert cost.trainable_parameters(make_cell(INPUT_OUTPUT_ONLY), NB101) == 882_570


# --- FLOPs (the module-based check is in test_model.py) ---------------------------------------


def test_flops_of_the_two_vertex_cell_by_hand():
    """Stem + 9 projections + dense, multiply-adds per image, counted by hand from SPEC d.1."""
    stem = 3 * 3 * 3 * 128 * 32 * 32
    stack0 = 3 * 128 * 128 * 32 * 32
    stack1 = (128 * 256 + 2 * 256 * 256) * 16 * 16
    stack2 = (256 * 512 + 2 * 512 * 512) * 8 * 8
    dense = 512 * 10
    cell = make_cell(INPUT_OUTPUT_ONLY)
    assert cost.forward_flops(cell) == stem + stack0 + stack1 + stack2 + dense


def test_flops_grow_with_convs():
    small = cost.forward_flops(make_cell(SPACE_MINIMUM))
    large = cost.forward_flops(make_cell(SPACE_MAXIMUM))
    inception = cost.forward_flops(make_cell(INCEPTION_README))
    assert small < inception < large


@pytest.mark.slow
def test_whole_space_parameter_range_and_median():
    """Over all 423,624 cells: the SPEC's range (227,274 ... 49,979,274, SPEC h) at the SPEC's
    extreme hashes, and the full-space median of 5.36M from the research note (training-anchors
    section 1.1)."""
    from farm.search.synthetic import cell_features

    # cost_from_labels of every enumerated cell, computed once per process: test_search's
    # synthetic table is built on the same features, so the suite pays for the space only once.
    features = cell_features()
    counts = dict(zip(features.hashes, features.trainable_parameters.tolist(), strict=True))
    assert len(counts) == 423_624
    assert min(counts.values()) == 227_274 == counts[SPACE_MINIMUM[2]]
    assert max(counts.values()) == 49_979_274 == counts[SPACE_MAXIMUM[2]]
    ordered = sorted(counts.values())
    median = (ordered[len(ordered) // 2 - 1] + ordered[len(ordered) // 2]) / 2
    assert median == pytest.approx(5.36e6, rel=0.001)
