"""The NAS-Bench-101 network for a cell, in PyTorch (SPEC d).

Layout (names mirror the original's TF scopes, which helps when mapping checkpoints):

    stem                      conv3x3(3 -> C) - BN - ReLU
    stack0.module0..          modules at C channels, 32x32
    stack1.downsample         2x2 max-pool, stride 2 (no conv: the next module's projections
    stack1.module0..          double the channels), 2C channels, 16x16
    stack2.downsample, ...    4C channels, 8x8
    dense                     global average pool, then Linear(4C -> labels): the only bias

Each module is built from the cell's pruned matrix exactly as given (vertex order matters through
the channel-remainder rule). BatchNorm follows every conv; in training mode it normalizes each
shard of ``config.bn_shard_size`` images with that shard's statistics, as the two TPU cores did
(see :class:`ShardedBatchNorm2d` for the running statistics).

Every layer comes from one small factory, :class:`Layers`, for R >= 1 repeats of the network side
by side ("repeat fusion", :mod:`farm.fused`): R = 1 is the plain network; with R > 1 an activation
is ``[N, R * C, H, W]`` with repeat r's C channels at ``r*C .. (r+1)*C - 1``, every conv is grouped
(``groups = R``: the repeats never mix), BN is per channel (so per repeat), the max-pools are per
channel already and the head is R dense layers (:class:`GroupedLinear`). Only the two layout helpers
of :class:`CellModule` (truncation and concatenation, per repeat) know R; the graph logic does not.
Parameter names and order do not depend on R, and each fused tensor is the R plain ones stacked
along dim 0.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from farm.config import TrainConfig
from farm.cost import IMAGE_CHANNELS, compute_vertex_channels
from farm.spec import CONV1X1, CONV3X3, MAXPOOL3X3, Cell

# tf.variance_scaling_initializer (TF >= 1.12) divides the std by the std of a standard normal
# truncated at +-2, so that the truncated draw has variance scale/fan_in (SPEC d.2).
TRUNCATED_NORMAL_STD_CORRECTION = 0.87962566103423978

Device = torch.device | str | None


class ShardedBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose training-mode statistics come from shards of ``shard_size`` images.

    NAS-Bench-101 trained on one TPU v2 chip: the 256-image batch was split over 2 cores, each
    normalizing its 128 images with its own batch statistics (no cross-replica BN). Evaluation
    mode uses the running statistics, as usual. ``shard_size = 0`` means the whole batch.

    Running statistics follow :func:`update_running_stats_from`: each replica kept its own copy
    of the moving averages, updated from its own shard; the copy the host saved (and evaluated)
    was replica 0's, i.e. the first shard's.
    """

    def __init__(
        self, num_features: int, *, shard_size: int, momentum: float, eps: float,
        device: Device = None,
    ):
        super().__init__(num_features, eps=eps, momentum=momentum, device=device)
        self.shard_size = shard_size

    def reset_parameters(self) -> None:
        # Meta tensors hold no values: skipping the five fills makes counting networks on the
        # meta device (nasfarm space describe) markedly faster.
        if not self.weight.is_meta:
            super().reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.shard_size <= 0 or x.shape[0] <= self.shard_size:
            return super().forward(x)
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
        shards = x.split(self.shard_size)
        updating = update_running_stats_from(len(shards))
        outputs = [
            F.batch_norm(
                shard,
                self.running_mean if i == updating else None,
                self.running_var if i == updating else None,
                self.weight,
                self.bias,
                True,
                self.momentum,
                self.eps,
            )
            for i, shard in enumerate(shards)
        ]
        return torch.cat(outputs)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, shard_size={self.shard_size}"


def update_running_stats_from(num_shards: int) -> int:
    """The shard whose batch statistics update the running mean and variance: shard 0.

    Why replica 0 and not an average: under TF1 TPU replication every core holds its own copy of
    each variable. Weights stay identical because the optimizer applies all-reduced (averaged)
    gradients, but the BN moving-average assignments use each core's local shard statistics and
    no cross-replica op, so the copies drift apart; the checkpoint (and hence every evaluation)
    stores one copy, the primary replica's. This is an inference from TF's replication model --
    neither the SPEC nor the original code states it. Averaging would differ only slightly (the
    EMA is linear, so averaging the copies equals updating with the mean of the shards' stats).
    """
    del num_shards  # the rule does not depend on how many shards there are
    return 0


def _is_channels_last(x: torch.Tensor) -> bool:
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


class Conv2d(nn.Conv2d):
    """nn.Conv2d without PyTorch's default (kaiming-uniform) init: :func:`initialize` sets the
    weights, so drawing them twice would only cost time (a lot of it when counting thousands of
    networks on the meta device)."""

    def reset_parameters(self) -> None:
        pass


class ConvBnRelu(nn.Module):
    """conv (k x k, stride 1, SAME, no bias) -> BatchNorm -> ReLU (SPEC d.2); for R repeats one
    grouped conv over R*C channels and one BN over them."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, config: TrainConfig, device: Device = None,
        repeats: int = 1,
    ):
        super().__init__()
        self.conv = Conv2d(repeats * c_in, repeats * c_out, kernel, padding=kernel // 2, groups=repeats,
                           bias=False, device=device)
        self.bn = ShardedBatchNorm2d(
            repeats * c_out,
            shard_size=config.bn_shard_size,
            momentum=config.bn_momentum,
            eps=config.bn_eps,
            device=device,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class GroupedLinear(nn.Module):
    """R dense layers: ``[N, R*C]`` -> ``[N, R, out]``. Weight ``[R*out, C]``, bias ``[R*out]``
    (repeat r's rows at ``r*out .. (r+1)*out - 1``, i.e. the R nn.Linear tensors stacked)."""

    def __init__(self, c_in: int, c_out: int, repeats: int, device: Device = None):
        super().__init__()
        self.repeats = repeats
        self.in_features = c_in
        self.out_features = c_out
        self.weight = nn.Parameter(torch.empty(repeats * c_out, c_in, device=device))
        self.bias = nn.Parameter(torch.zeros(repeats * c_out, device=device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.repeats
        grouped = x.unflatten(1, (r, self.in_features))  # [N, R, C]
        weight = self.weight.view(r, self.out_features, self.in_features)
        return torch.einsum("nrc,roc->nro", grouped, weight) + self.bias.view(r, self.out_features)


class Layers:
    """The one place the network's layers are made, for ``repeats`` copies side by side."""

    def __init__(self, config: TrainConfig, repeats: int = 1, device: Device = None):
        if repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {repeats}")
        self.config = config
        self.repeats = repeats
        self.device = device

    def conv_bn_relu(self, c_in: int, c_out: int, kernel: int) -> ConvBnRelu:
        return ConvBnRelu(c_in, c_out, kernel, self.config, self.device, repeats=self.repeats)

    def op(self, op: str, channels: int) -> nn.Module:
        if op == CONV3X3:
            return self.conv_bn_relu(channels, channels, 3)
        if op == CONV1X1:
            return self.conv_bn_relu(channels, channels, 1)
        if op == MAXPOOL3X3:
            # Stride 1, SAME: PyTorch pads with -inf, so padding never wins the max, as in TF.
            return nn.MaxPool2d(3, stride=1, padding=1)
        raise ValueError(f"unknown op {op!r}")

    def dense(self, c_in: int, c_out: int) -> nn.Module:
        if self.repeats == 1:
            return nn.Linear(c_in, c_out, device=self.device)
        return GroupedLinear(c_in, c_out, self.repeats, device=self.device)


class Vertex(nn.Module):
    """One interior vertex: an optional 1x1 projection of the module input, then its op."""

    def __init__(self, projection: nn.Module | None, op: nn.Module):
        super().__init__()
        self.projection = projection
        self.op = op


class CellModule(nn.Module):
    """One cell instance (the original's "module"): SPEC d.4."""

    def __init__(
        self, matrix: Sequence[Sequence[int]], ops: Sequence[str], c_in: int, c_out: int, layers: Layers
    ):
        super().__init__()
        rows = [[int(x) for x in r] for r in matrix]
        n = len(rows)
        last = n - 1
        self.repeats = layers.repeats
        # Per-repeat widths: with R repeats every layout helper applies them to each repeat.
        self.channels = compute_vertex_channels(c_in, c_out, rows)
        # Interior sources of each interior vertex, in increasing order (the original's order).
        self.sources = [[s for s in range(1, t) if rows[s][t]] for t in range(n)]
        self.output_sources = [s for s in range(1, last) if rows[s][last]]
        # Registered in the original's build order (vertex by vertex, projection before op, then
        # the output projection): the initializer draws in registration order.
        self.vertices = nn.ModuleList(
            Vertex(
                layers.conv_bn_relu(c_in, self.channels[t], 1) if rows[0][t] else None,
                layers.op(ops[t], self.channels[t]),
            )
            for t in range(1, last)
        )
        # Input->output: a projection to c_out, added to the concatenation (or the whole output
        # of a 2-vertex cell).
        self.projection = layers.conv_bn_relu(c_in, c_out, 1) if rows[0][last] else None

    def _truncate(self, x: torch.Tensor, channels: int) -> torch.Tensor:
        """The first ``channels`` channels of every repeat (SPEC d.4: sources have at most one extra)."""
        r = self.repeats
        per_repeat = x.shape[1] // r
        if per_repeat == channels:
            return x
        if r == 1:
            return x[:, :channels]
        if _is_channels_last(x):  # memory is [N, H, W, R, C]: slice and keep channels_last (a copy)
            n, _, h, w = x.shape
            kept = x.permute(0, 2, 3, 1).unflatten(3, (r, per_repeat))[..., :channels]
            return kept.reshape(n, h, w, r * channels).contiguous().permute(0, 3, 1, 2)
        return x.unflatten(1, (r, per_repeat))[:, :, :channels].flatten(1, 2)

    def _concat(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        """Each repeat's parts joined in order: [a_0 b_0 | a_1 b_1 | ...] along channels."""
        r = self.repeats
        if len(tensors) == 1:
            return tensors[0]
        if r == 1:
            return torch.cat(tensors, dim=1)
        if all(_is_channels_last(t) for t in tensors):
            parts = [t.permute(0, 2, 3, 1).unflatten(3, (r, t.shape[1] // r)) for t in tensors]
            return torch.cat(parts, dim=4).flatten(3, 4).permute(0, 3, 1, 2)
        parts = [t.unflatten(1, (r, t.shape[1] // r)) for t in tensors]
        return torch.cat(parts, dim=2).flatten(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs: list[torch.Tensor] = [x]
        for t, vertex in enumerate(self.vertices, start=1):
            addends = [self._truncate(outputs[s], self.channels[t]) for s in self.sources[t]]
            if vertex.projection is not None:
                addends.append(vertex.projection(x))
            total = addends[0]
            for extra in addends[1:]:  # a plain sum: no activation after it
                total = total + extra
            outputs.append(vertex.op(total))
        if not self.output_sources:  # 2-vertex cell: the output is the projection
            return self.projection(x)
        out = self._concat([outputs[s] for s in self.output_sources])
        if self.projection is not None:
            out = out + self.projection(x)
        return out


class Network(nn.Module):
    """stem -> stacks of modules with 2x2 max-pool downsampling -> global average pool -> dense.

    Constructing it leaves the conv weights uninitialized (see :class:`Conv2d`): use
    :func:`build_network`, or call :func:`initialize`, unless you only count (meta device).
    ``repeats`` R > 1: R networks side by side, ``[N, 3R, 32, 32]`` -> ``[N, R, labels]`` (the stem
    sees repeat r's images as input channels 3r..3r+2); see :func:`farm.fused.build_fused_network`.
    """

    def __init__(self, cell: Cell, config: TrainConfig, device: Device = None, *, repeats: int = 1):
        super().__init__()
        layers = Layers(config, repeats, device)
        self.repeats = repeats
        matrix = cell.matrix.tolist()
        ops = list(cell.ops)
        c = config.stem_channels
        self.stem = layers.conv_bn_relu(IMAGE_CHANNELS, c, 3)
        c_prev = c
        for stack in range(config.num_stacks):
            c_stack = c * 2**stack
            modules: OrderedDict[str, nn.Module] = OrderedDict()
            if stack > 0:
                modules["downsample"] = nn.MaxPool2d(2, stride=2)
            for m in range(config.modules_per_stack):
                modules[f"module{m}"] = CellModule(matrix, ops, c_prev, c_stack, layers)
                c_prev = c_stack
            self.add_module(f"stack{stack}", nn.Sequential(modules))
        self.num_stacks = config.num_stacks
        self.dense = layers.dense(c_prev, config.num_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stack in range(self.num_stacks):
            x = getattr(self, f"stack{stack}")(x)
        return self.dense(x.mean(dim=(2, 3)))


def truncated_normal(
    shape: Sequence[int], std: float, generator: torch.Generator | None
) -> torch.Tensor:
    """N(0, std^2) truncated at +-2 std, CPU float32, as TF's truncated_normal: every draw that
    falls outside is redrawn (only those, so the cost stays near one normal draw)."""
    out = torch.empty(tuple(shape), dtype=torch.float32, device="cpu")
    flat = out.view(-1)
    flat.normal_(0.0, std, generator=generator)
    bound = 2.0 * std
    redo = (flat.abs() > bound).nonzero().squeeze(1)
    while redo.numel():
        flat[redo] = torch.empty(redo.numel(), device="cpu").normal_(0.0, std, generator=generator)
        redo = redo[flat[redo].abs() > bound]
    return out


def initialize(network: nn.Module, generator: torch.Generator | None = None) -> None:
    """The original's initialization, drawn on the CPU from ``generator`` in module order.

    Convs: truncated normal (+-2 std), std = sqrt(1/fan_in) / 0.8796..., fan_in = k*k*c_in.
    Dense: Glorot uniform, limit sqrt(6 / (fan_in + fan_out)); bias 0. BN: gamma 1, beta 0,
    running mean 0, running variance 1. Values are drawn on the CPU and copied, so a given
    generator state gives the same weights on any device; meta tensors are skipped.
    """
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, nn.Conv2d):
                weight = module.weight
                fan_in = weight.shape[1] * weight.shape[2] * weight.shape[3]
                std = math.sqrt(1.0 / fan_in) / TRUNCATED_NORMAL_STD_CORRECTION
                if not weight.is_meta:
                    weight.copy_(truncated_normal(weight.shape, std, generator))
            elif isinstance(module, nn.Linear):
                fan_out, fan_in = module.weight.shape
                limit = math.sqrt(6.0 / (fan_in + fan_out))
                if not module.weight.is_meta:
                    draw = torch.empty(module.weight.shape, dtype=torch.float32, device="cpu")
                    draw.uniform_(-limit, limit, generator=generator)
                    module.weight.copy_(draw)
                    if module.bias is not None:
                        module.bias.zero_()
            elif isinstance(module, nn.BatchNorm2d) and not module.weight.is_meta:
                module.reset_parameters()


def build_network(
    cell: Cell, config: TrainConfig, *, generator: torch.Generator | None = None
) -> Network:
    """The full NAS-Bench-101 network for ``cell``, initialized as the original.

    Input: float32 NCHW normalized images [N, 3, 32, 32]; output: logits [N, num_labels].
    Parameters are created on the current default device (``with torch.device("meta"):`` gives
    a weightless network for counting); initial values come from ``generator`` (the global RNG
    when None) and are identical for identical generator states on every device.
    """
    network = Network(cell, config)
    initialize(network, generator)
    return network


def count_parameters(network: nn.Module) -> int:
    """Trainable parameters of a built module (what NAS-Bench-101 calls trainable_parameters)."""
    return sum(p.numel() for p in network.parameters() if p.requires_grad)


def meta_parameter_count(cell: Cell, config: TrainConfig) -> int:
    """Parameters counted from the real module, built on the meta device (no memory, no init)."""
    return count_parameters(Network(cell, config, device="meta"))
