"""R repeats of one cell trained as ONE network ("repeat fusion"): weights in and out, split convs.

The three NAS-Bench-101 repeats of a cell have the same graph and different weights, data order
and augmentation. :class:`farm.model.Network` with ``repeats=R`` stacks them along the channel
axis (every conv grouped, so the repeats never mix, yet each layer is one kernel launch with R
times the work -- what a GPU needs for small cells). Its parameter names and order equal the plain
network's and every fused tensor is the R plain tensors concatenated along dim 0, so weights and
optimizer slots move between the two layouts with :func:`fuse_state_dicts` / :func:`split_tensor`
/ :func:`split_state_dict`, and each repeat starts from exactly the weights ``build_network``
draws for that repeat's generator (:func:`build_fused_network`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from farm.config import TrainConfig
from farm.model import Conv2d, Network, build_network
from farm.spec import Cell

# State-dict entries that are one counter per layer, not per channel: shared by the repeats.
_SHARED_SUFFIXES = ("num_batches_tracked",)


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


def _is_shared(name: str) -> bool:
    return name.endswith(_SHARED_SUFFIXES)


def fuse_state_dicts(states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """R plain state dicts (same cell and config) -> one fused state dict."""
    return {name: first.clone() if _is_shared(name) else torch.cat([state[name] for state in states])
            for name, first in states[0].items()}


def split_tensor(tensor: torch.Tensor, repeats: int) -> list[torch.Tensor]:
    """A fused per-channel tensor (parameter, BN statistic or optimizer slot) -> R plain ones."""
    return [part.clone() for part in tensor.chunk(repeats, dim=0)]


def split_state_dict(state: dict[str, torch.Tensor], repeats: int) -> list[dict[str, torch.Tensor]]:
    """A fused state dict -> R state dicts that load into ``build_network``'s plain network."""
    parts: list[dict[str, torch.Tensor]] = [OrderedDict() for _ in range(repeats)]
    for name, tensor in state.items():
        pieces = [tensor.clone() for _ in parts] if _is_shared(name) else split_tensor(tensor, repeats)
        for part, piece in zip(parts, pieces, strict=True):
            part[name] = piece
    return parts


def build_fused_network(
    cell: Cell, config: TrainConfig, generators: Sequence[torch.Generator | None]
) -> Network:
    """The R-repeat network whose repeat r starts from ``build_network(cell, config,
    generator=generators[r])``'s weights (drawn the same way, then stacked)."""
    plain = [build_network(cell, config, generator=generator).state_dict() for generator in generators]
    fused = Network(cell, config, repeats=len(generators))
    fused.load_state_dict(fuse_state_dicts(plain))
    return fused
