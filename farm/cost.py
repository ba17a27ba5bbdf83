"""Closed-form size and cost of a NAS-Bench-101 network: vertex channels, parameters, FLOPs.

Pure Python on purpose (no torch import): the campaign planner, ``nasfarm space describe`` and the
search code ask these questions for hundreds of thousands of cells. The formulas are SPEC d.3
(channels) and d.6 (parameters); ``farm.model`` builds its modules from the same
:func:`compute_vertex_channels`, and the tests check the two against each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from farm.config import NB101, TrainConfig

if TYPE_CHECKING:
    from farm.spec import Cell

# Kernel size of each interior op label (0 conv3x3, 1 conv1x1, 2 maxpool3x3: no weights).
_KERNEL_OF_LABEL = (3, 1, 0)
_KERNEL_OF_OP = {"conv3x3-bn-relu": 3, "conv1x1-bn-relu": 1, "maxpool3x3": 0}
IMAGE_SIZE = 32
IMAGE_CHANNELS = 3


def compute_vertex_channels(c_in: int, c_out: int, matrix: Any) -> list[int]:
    """Channels of every vertex of one module (SPEC d.3), from the matrix exactly as given.

    The output's ``c_out`` channels are split over the interior vertices that feed the output, the
    remainder going one each to the lowest-index ones; a vertex that does not feed the output takes
    the largest count among its interior successors. ``vc[0] = c_in``, ``vc[-1] = c_out``.
    """
    rows = matrix.tolist() if hasattr(matrix, "tolist") else [list(r) for r in matrix]
    n = len(rows)
    channels = [0] * n
    channels[0] = c_in
    channels[n - 1] = c_out
    if n == 2:
        return channels
    last = n - 1
    feeders = [v for v in range(1, last) if rows[v][last]]
    if not feeders:
        raise ValueError("no interior vertex feeds the output; prune the matrix first")
    base, remainder = divmod(c_out, len(feeders))
    for rank, v in enumerate(feeders):
        channels[v] = base + 1 if rank < remainder else base
    # Successors have higher indices, so one backward sweep sees their final counts.
    for v in range(n - 3, 0, -1):
        if not rows[v][last]:
            successors = [channels[w] for w in range(v + 1, last) if rows[v][w]]
            channels[v] = max(successors) if successors else 0
    if any(c <= 0 for c in channels[1:last]):
        raise ValueError(
            f"vertex channels {channels}: {c_out} output channels over {len(feeders)} output "
            "vertices leaves one empty, or a vertex has no path to the output (prune first)"
        )
    return channels


def _stage_plan(config: TrainConfig) -> list[tuple[int, int, int]]:
    """(c_in, c_out, spatial size) of every module in network order (SPEC d.1)."""
    plan = []
    c_prev = config.stem_channels
    size = IMAGE_SIZE
    for stack in range(config.num_stacks):
        c_stack = config.stem_channels * 2**stack
        if stack > 0:
            size //= 2  # 2x2 max-pool, stride 2
        for _ in range(config.modules_per_stack):
            plan.append((c_prev, c_stack, size))
            c_prev = c_stack
    return plan


def _final_channels(config: TrainConfig) -> int:
    return config.stem_channels * 2 ** (config.num_stacks - 1)


def module_cost(
    rows: tuple[tuple[int, ...], ...], kernels: tuple[int, ...], c_in: int, c_out: int
) -> tuple[int, int]:
    """(trainable parameters, multiply-adds per output pixel) of one module (SPEC d.6).

    ``rows`` is the pruned matrix, ``kernels[v]`` the kernel size of vertex v's op (3, 1, or 0
    for max-pool and for the input/output). Every conv is conv-BN-ReLU: k*k*cin*cout weights
    + 2*cout BN (gamma, beta); no conv bias.
    """
    n = len(rows)
    last = n - 1
    if n == 2:
        return c_in * c_out + 2 * c_out, c_in * c_out
    channels = compute_vertex_channels(c_in, c_out, rows)
    params = 0
    macs = 0
    for t in range(1, last):
        c = channels[t]
        if rows[0][t]:  # own 1x1 projection of the module input
            params += c_in * c + 2 * c
            macs += c_in * c
        k = kernels[t]
        if k:
            params += k * k * c * c + 2 * c
            macs += k * k * c * c
    if rows[0][last]:  # input->output projection, added to the concatenation
        params += c_in * c_out + 2 * c_out
        macs += c_in * c_out
    return params, macs


@lru_cache(maxsize=64)
def _module_plan(config: TrainConfig) -> tuple[tuple[int, int, int], ...]:
    return tuple(_stage_plan(config))


@lru_cache(maxsize=1 << 17)
def _matrix_terms(
    rows: tuple[tuple[int, ...], ...], config: TrainConfig
) -> tuple[int, int, tuple[tuple[int, int, int], ...]]:
    """The network's cost split into what the matrix alone fixes and what each vertex's op adds.

    Vertex channels depend on the matrix, not on the ops (SPEC d.3), and a conv of kernel k at
    vertex t adds ``k*k*c*c + 2*c`` parameters and ``k*k*c*c*size*size`` multiply-adds in every
    module (c = its channels there). So per matrix: the cost without any conv op, and per interior
    vertex ``(sum c*c, sum c, sum c*c*size*size)`` over the modules; a cell's cost is then a few
    products (:func:`_network_cost`). The ~420k cells of the space share far fewer matrices (up to
    3**5 labelings each), so this is what makes the whole space take seconds.
    """
    n = len(rows)
    last = n - 1
    stem = config.stem_channels
    params = 9 * IMAGE_CHANNELS * stem + 2 * stem
    macs = 9 * IMAGE_CHANNELS * stem * IMAGE_SIZE * IMAGE_SIZE
    skip = rows[0][last] if n > 2 else 1  # a 2-vertex cell is one input->output projection
    projected = [t for t in range(1, last) if rows[0][t]]
    sq = [0] * n
    lin = [0] * n
    sq_area = [0] * n
    channels_of_width: dict[int, list[int]] = {}
    for c_in, c_out, size in _module_plan(config):
        projected_channels = 0
        if n > 2:
            vc = channels_of_width.get(c_out)
            if vc is None:
                vc = channels_of_width[c_out] = compute_vertex_channels(0, c_out, rows)
            projected_channels = sum(vc[t] for t in projected)
            for t in range(1, last):
                sq[t] += vc[t] * vc[t]
                lin[t] += vc[t]
                sq_area[t] += vc[t] * vc[t] * size * size
        module_macs = c_in * projected_channels + skip * c_in * c_out
        params += module_macs + 2 * projected_channels + skip * 2 * c_out
        macs += module_macs * size * size
    head_in = _final_channels(config)
    params += head_in * config.num_labels + config.num_labels  # dense kernel + bias
    macs += head_in * config.num_labels
    return params, macs, tuple(zip(sq, lin, sq_area, strict=True))


def _network_cost(
    rows: tuple[tuple[int, ...], ...], kernels: tuple[int, ...], config: TrainConfig
) -> tuple[int, int]:
    """(parameters, multiply-adds per image) of the whole network: the sums of
    :func:`module_cost` over the network, from the matrix's cached terms."""
    params, macs, terms = _matrix_terms(rows, config)
    for k, (sq, lin, sq_area) in zip(kernels, terms, strict=True):
        if k:
            kk = k * k
            params += kk * sq + 2 * lin
            macs += kk * sq_area
    return params, macs


def _key(cell: Cell) -> tuple[tuple[tuple[int, ...], ...], tuple[int, ...]]:
    rows = tuple(tuple(r) for r in cell.matrix.tolist())
    kernels = tuple(_KERNEL_OF_OP.get(op, 0) for op in cell.ops)
    return rows, kernels


def cost_from_labels(
    matrix: Sequence[Sequence[int]], labels: Sequence[int], config: TrainConfig = NB101
) -> tuple[int, int]:
    """(trainable parameters, forward multiply-adds) from a pruned matrix and integer labels.

    The fast path for enumerated cells (``farm.space.EnumeratedCell``): no Cell construction.
    """
    rows = tuple(map(tuple, matrix))
    kernels = tuple(_KERNEL_OF_LABEL[x] if x >= 0 else 0 for x in labels)
    return _network_cost(rows, kernels, config)


def trainable_parameters(cell: Cell, config: TrainConfig = NB101) -> int:
    """Trainable parameters of the whole network (SPEC d.6): equals the published count.

    Counts conv kernels, BN gamma and beta, the dense kernel and the dense bias; not BN running
    statistics.
    """
    return _network_cost(*_key(cell), config)[0]


def forward_flops(cell: Cell, config: TrainConfig = NB101) -> int:
    """Multiply-adds of one forward pass of one 32x32 image.

    Counted: every convolution (stem, input projections, conv ops; k*k*cin*cout per output pixel)
    and the dense layer (final channels x labels). Not counted: BatchNorm, ReLU, max-pools,
    the sums and concatenations, the global average pool and the bias add. A FLOP counter that
    reports 2 FLOPs per multiply-add (``torch.utils.flop_counter``) gives twice this number.
    """
    return _network_cost(*_key(cell), config)[1]
