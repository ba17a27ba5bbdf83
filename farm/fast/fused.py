"""R repeats of one cell trained as ONE network: "repeat fusion".

The three NAS-Bench-101 repeats of a cell have the same graph and different weights, data order
and augmentation. Stacked along the channel axis they become one network whose every conv is a
grouped conv (``groups = R`` over ``R * C`` channels): group r sees only repeat r's channels, so
the repeats never mix, yet each layer is one kernel launch with R times the work -- what a GPU
needs for small cells.

Layout: an activation is ``[N, R * C, H, W]`` with repeat r's C channels at ``r*C .. (r+1)*C - 1``
(read as ``[N, R, C, H, W]``). The input is the R repeats' own batches side by side,
``[N, 3R, 32, 32]``; the output is per-repeat logits ``[N, R, labels]``.

- BatchNorm is per channel, hence per repeat, and shards along N exactly as the plain network's
  (the same :class:`~farm.model.ShardedBatchNorm2d`, R*C features).
- Truncation keeps the first channels *of each repeat*, concatenation joins each repeat's parts
  (:meth:`FusedModule._truncate`, :meth:`FusedModule._concat` on a ``[.., R, C]`` view).
- Max-pools and the global average pool are per channel already.
- The dense head is R independent dense layers (:class:`GroupedLinear`).

The graph logic is not rewritten: :class:`FusedModule` and :class:`FusedNetwork` subclass
:class:`farm.model.CellModule` / :class:`farm.model.Network` and reuse their ``forward``; only the
layers and the two layout helpers differ. Parameter names and order equal the plain network's, and
every fused tensor is the R plain tensors concatenated along dim 0 -- so weights (and optimizer
slots) split back into R ordinary state dicts with :func:`split_state_dict`, and each repeat
starts from exactly the weights ``build_network`` draws for that repeat's generator
(:func:`build_fused_network`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from farm.config import TrainConfig
from farm.cost import IMAGE_CHANNELS, compute_vertex_channels
from farm.model import (
    CellModule,
    Conv2d,
    ConvBnRelu,
    Network,
    ShardedBatchNorm2d,
    Vertex,
    build_network,
)
from farm.spec import CONV1X1, CONV3X3, MAXPOOL3X3, Cell

Device = torch.device | str | None

# State-dict entries that are one counter per layer, not per channel: shared by the repeats.
_SHARED_SUFFIXES = ("num_batches_tracked",)


def _is_channels_last(x: torch.Tensor) -> bool:
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


class GroupedConvBnRelu(ConvBnRelu):
    """R independent conv-BN-ReLUs as one grouped conv + one BN over R*C channels."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, repeats: int, config: TrainConfig, device: Device = None
    ):
        nn.Module.__init__(self)
        self.conv = Conv2d(
            repeats * c_in, repeats * c_out, kernel, padding=kernel // 2, groups=repeats, bias=False,
            device=device,
        )
        self.bn = ShardedBatchNorm2d(
            repeats * c_out,
            shard_size=config.bn_shard_size,
            momentum=config.bn_momentum,
            eps=config.bn_eps,
            device=device,
        )


class SplitGroupConv2d(Conv2d):
    """A grouped conv computed as one ordinary conv per group, concatenated.

    Same parameter (``[R*C_out, C_in, k, k]``), same result: a drop-in for a grouped conv on a
    backend whose grouped kernels fail or are slow (cuDNN's autotuner found no engine for some of
    our grouped shapes on an H200). Under a CUDA graph the R launches cost no host time.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inputs = x.chunk(self.groups, dim=1)
        weights = self.weight.chunk(self.groups, dim=0)
        biases = self.bias.chunk(self.groups) if self.bias is not None else [None] * self.groups
        outputs = [
            F.conv2d(part, weight, bias, self.stride, self.padding, self.dilation)
            for part, weight, bias in zip(inputs, weights, biases, strict=True)
        ]
        return torch.cat(outputs, dim=1)


def split_grouped_convs(model: nn.Module) -> nn.Module:
    """Replace every grouped conv of ``model`` by a :class:`SplitGroupConv2d` holding the same
    weight tensor (names, state dict and optimizer state are unchanged). Returns ``model``."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Conv2d) and child.groups > 1 and not isinstance(child, SplitGroupConv2d):
                split = SplitGroupConv2d(
                    child.in_channels, child.out_channels, child.kernel_size, stride=child.stride,
                    padding=child.padding, dilation=child.dilation, groups=child.groups,
                    bias=child.bias is not None, device="meta",
                )
                split.weight, split.bias = child.weight, child.bias  # the same Parameters: no copy
                setattr(module, name, split)
    return model


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


def _make_fused_op(op: str, channels: int, repeats: int, config: TrainConfig, device: Device) -> nn.Module:
    if op == CONV3X3:
        return GroupedConvBnRelu(channels, channels, 3, repeats, config, device)
    if op == CONV1X1:
        return GroupedConvBnRelu(channels, channels, 1, repeats, config, device)
    if op == MAXPOOL3X3:
        return nn.MaxPool2d(3, stride=1, padding=1)
    raise ValueError(f"unknown op {op!r}")


class FusedModule(CellModule):
    """One cell instance for R repeats; ``forward`` is :class:`farm.model.CellModule`'s."""

    def __init__(
        self, matrix: Sequence[Sequence[int]], ops: Sequence[str], c_in: int, c_out: int, repeats: int,
        config: TrainConfig, device: Device = None,
    ):
        nn.Module.__init__(self)
        rows = [[int(x) for x in r] for r in matrix]
        n = len(rows)
        last = n - 1
        self.repeats = repeats
        # Per-repeat channel counts: the graph code asks for per-repeat widths, the helpers below
        # apply them to every repeat.
        self.channels = compute_vertex_channels(c_in, c_out, rows)
        self.sources = [[s for s in range(1, t) if rows[s][t]] for t in range(n)]
        self.output_sources = [s for s in range(1, last) if rows[s][last]]
        # Same registration order as farm.model.CellModule: parameter i here is the R plain
        # parameters i stacked.
        self.vertices = nn.ModuleList(
            Vertex(
                GroupedConvBnRelu(c_in, self.channels[t], 1, repeats, config, device) if rows[0][t] else None,
                _make_fused_op(ops[t], self.channels[t], repeats, config, device),
            )
            for t in range(1, last)
        )
        self.projection = (
            GroupedConvBnRelu(c_in, c_out, 1, repeats, config, device) if rows[0][last] else None
        )

    def _truncate(self, x: torch.Tensor, channels: int) -> torch.Tensor:
        """The first ``channels`` channels of every repeat (a copy; the plain net uses a view)."""
        r = self.repeats
        per_repeat = x.shape[1] // r
        if per_repeat == channels:
            return x
        if _is_channels_last(x):  # memory is [N, H, W, R, C]: slice and keep channels_last
            n, _, h, w = x.shape
            kept = x.permute(0, 2, 3, 1).unflatten(3, (r, per_repeat))[..., :channels]
            return kept.reshape(n, h, w, r * channels).contiguous().permute(0, 3, 1, 2)
        return x.unflatten(1, (r, per_repeat))[:, :, :channels].flatten(1, 2)

    def _concat(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        """Each repeat's parts joined in order: [a_0 b_0 | a_1 b_1 | ...] along channels."""
        if len(tensors) == 1:
            return tensors[0]
        r = self.repeats
        if all(_is_channels_last(t) for t in tensors):
            parts = [t.permute(0, 2, 3, 1).unflatten(3, (r, t.shape[1] // r)) for t in tensors]
            return torch.cat(parts, dim=4).flatten(3, 4).permute(0, 3, 1, 2)
        parts = [t.unflatten(1, (r, t.shape[1] // r)) for t in tensors]
        return torch.cat(parts, dim=2).flatten(1, 2)


class FusedNetwork(Network):
    """The whole network for R repeats: ``[N, 3R, 32, 32]`` -> logits ``[N, R, labels]``.

    ``forward`` is :class:`farm.model.Network`'s; the stem is a grouped conv (repeat r's images
    are input channels 3r..3r+2), the head a :class:`GroupedLinear`.
    """

    def __init__(self, cell: Cell, config: TrainConfig, repeats: int, device: Device = None):
        if repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {repeats}")
        nn.Module.__init__(self)
        self.repeats = repeats
        matrix = cell.matrix.tolist()
        ops = list(cell.ops)
        c = config.stem_channels
        self.stem = GroupedConvBnRelu(IMAGE_CHANNELS, c, 3, repeats, config, device)
        c_prev = c
        for stack in range(config.num_stacks):
            c_stack = c * 2**stack
            layers: OrderedDict[str, nn.Module] = OrderedDict()
            if stack > 0:
                layers["downsample"] = nn.MaxPool2d(2, stride=2)
            for m in range(config.modules_per_stack):
                layers[f"module{m}"] = FusedModule(matrix, ops, c_prev, c_stack, repeats, config, device)
                c_prev = c_stack
            self.add_module(f"stack{stack}", nn.Sequential(layers))
        self.num_stacks = config.num_stacks
        self.dense = GroupedLinear(c_prev, config.num_labels, repeats, device=device)


def fuse_inputs(batches: Sequence[torch.Tensor]) -> torch.Tensor:
    """R image batches ``[N, 3, H, W]`` -> the fused input ``[N, 3R, H, W]``."""
    return batches[0] if len(batches) == 1 else torch.cat(list(batches), dim=1)


def _is_shared(name: str) -> bool:
    return name.endswith(_SHARED_SUFFIXES)


def fuse_state_dicts(states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """R plain state dicts (same cell and config) -> one fused state dict."""
    fused: dict[str, torch.Tensor] = {}
    for name, first in states[0].items():
        if _is_shared(name):
            fused[name] = first.clone()
        else:
            fused[name] = torch.cat([state[name] for state in states], dim=0)
    return fused


def split_tensor(tensor: torch.Tensor, repeats: int) -> list[torch.Tensor]:
    """A fused per-channel tensor (parameter, BN statistic or optimizer slot) -> R plain ones."""
    return [part.clone() for part in tensor.chunk(repeats, dim=0)]


def split_state_dict(state: dict[str, torch.Tensor], repeats: int) -> list[dict[str, torch.Tensor]]:
    """A fused state dict -> R state dicts that load into ``build_network``'s plain network."""
    parts: list[dict[str, torch.Tensor]] = [OrderedDict() for _ in range(repeats)]
    for name, tensor in state.items():
        if _is_shared(name):
            pieces = [tensor.clone() for _ in range(repeats)]
        else:
            pieces = split_tensor(tensor, repeats)
        for r in range(repeats):
            parts[r][name] = pieces[r]
    return parts


def build_fused_network(
    cell: Cell, config: TrainConfig, generators: Sequence[torch.Generator | None]
) -> FusedNetwork:
    """The fused network whose repeat r starts from ``build_network(cell, config,
    generator=generators[r])``'s weights (drawn the same way, then stacked)."""
    plain = []
    for generator in generators:
        plain.append(build_network(cell, config, generator=generator).state_dict())
    fused = FusedNetwork(cell, config, len(generators))
    fused.load_state_dict(fuse_state_dicts(plain))
    return fused


def repeat_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of each repeat: logits ``[N, R, L]``, labels ``[N, R]`` -> ``[R]``.

    The training loss is their sum: each repeat's parameters get exactly their own loss's
    gradient, because no parameter is shared.
    """
    n, r, classes = logits.shape
    if r == 1:  # the plain network's exact reduction
        return F.cross_entropy(logits[:, 0], labels[:, 0]).unsqueeze(0)
    per_image = F.cross_entropy(logits.reshape(n * r, classes), labels.reshape(n * r), reduction="none")
    return per_image.view(n, r).mean(dim=0)


def plain_parameter_names(cell: Cell, config: TrainConfig) -> list[str]:
    """Names of the plain network's state dict, in order (the fused network must match them)."""
    with torch.device("meta"):
        return list(Network(cell, config).state_dict().keys())

