"""Batched image preprocessing on the training device, and the shuffled infinite training stream.

Augmentation follows the original (SPEC e.3) in order: zero-pad the raw 0-255 image by 4 pixels,
take a random 32x32 crop, flip horizontally with probability 1/2, then normalise per channel.
Because padding comes before normalisation, padded pixels become -mean/std, not 0. Crop and flip
are one gather over the padded batch: no per-sample Python, no DataLoader workers.

The stream reproduces ``shuffle_and_repeat`` + ``batch(drop_remainder)``: a full reshuffle every
epoch and batches cut from the endless sequence, so a batch may span two epochs (156.25 steps per
epoch at 40,000/256). Its whole state (generators, permutation, position) fits in a state dict so a
resumed run continues bit-identically.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from farm.datasets.base import CIFAR10_MEAN, CIFAR10_STD

# CIFAR-10's statistics (SPEC e.3: RGB, 0-255 scale), the default of every function here. Other
# data sets pass their own (``Splits.mean``/``Splits.std``, from the registry).
CIFAR_MEAN = CIFAR10_MEAN
CIFAR_STD = CIFAR10_STD
PAD = 4
SIZE = 32

Stats = tuple[float, float, float]

_CONSTANTS: dict[tuple[torch.device, Stats, Stats], tuple[torch.Tensor, torch.Tensor]] = {}


def _channel_constants(device: torch.device, mean: Stats = CIFAR_MEAN,
                       std: Stats = CIFAR_STD) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std as [1,3,1,1] tensors on ``device``, made once per device and statistics.

    Cached because ``torch.tensor(list, device="cuda")`` is a blocking host-to-device copy: one
    per step would be a host synchronisation inside the training step.
    """
    key = (device, tuple(mean), tuple(std))
    if key not in _CONSTANTS:
        mean_t = torch.tensor(key[1], dtype=torch.float32).view(1, 3, 1, 1).to(device)
        std_t = torch.tensor(key[2], dtype=torch.float32).view(1, 3, 1, 1).to(device)
        _CONSTANTS[key] = (mean_t, std_t)
    return _CONSTANTS[key]


def to_nchw_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N,32,32,3] HWC -> float32 [N,3,32,32] on the 0-255 scale."""
    return images.permute(0, 3, 1, 2).to(torch.float32)


def normalize(images: torch.Tensor, mean: Stats = CIFAR_MEAN, std: Stats = CIFAR_STD) -> torch.Tensor:
    """uint8 HWC batch -> normalised float32 NCHW (evaluation: no augmentation)."""
    mean_t, std_t = _channel_constants(images.device, mean, std)
    return (to_nchw_float(images) - mean_t) / std_t


def augment(images: torch.Tensor, generator: torch.Generator, mean: Stats = CIFAR_MEAN,
            std: Stats = CIFAR_STD) -> torch.Tensor:
    """uint8 HWC batch -> padded, randomly cropped and flipped, normalised float32 NCHW batch.

    Random numbers come from ``generator`` (on the images' device): per image one crop offset
    pair in 0..8 and one flip bit. ``mean``/``std``: the data set's statistics (0-255 scale).
    """
    n = images.shape[0]
    device = images.device
    padded = F.pad(to_nchw_float(images), (PAD, PAD, PAD, PAD))  # zeros on the raw scale
    span = 2 * PAD + 1
    offsets = torch.randint(0, span, (2, n), generator=generator, device=device)
    flips = torch.randint(0, 2, (n,), generator=generator, device=device)
    steps = torch.arange(SIZE, device=device)
    rows = offsets[0, :, None] + steps  # [N, 32]
    # A flipped crop reads its columns right to left.
    cols_forward = offsets[1, :, None] + steps
    cols_backward = offsets[1, :, None] + (SIZE - 1 - steps)
    cols = torch.where(flips[:, None].bool(), cols_backward, cols_forward)
    batch = torch.arange(n, device=device)[:, None, None, None]
    channel = torch.arange(3, device=device)[None, :, None, None]
    crops = padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]
    mean_t, std_t = _channel_constants(device, mean, std)
    return (crops - mean_t) / std_t


class TrainStream:
    """An endless, per-epoch reshuffled sequence of augmented training batches on one device.

    ``order_generator`` (CPU) draws one permutation per epoch; ``augment_generator`` (on the
    device) draws the crops and flips. Both are owned by the stream and saved in its state.
    ``mean``/``std``: the data set's normalisation statistics (CIFAR-10's by default).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        order_seed: int,
        augment_seed: int,
        mean: Stats = CIFAR_MEAN,
        std: Stats = CIFAR_STD,
    ) -> None:
        if images.shape[0] != labels.shape[0]:
            raise ValueError("images and labels differ in length")
        if batch_size < 1 or images.shape[0] < 1:
            raise ValueError("need at least one image and a positive batch size")
        self.images = images
        self.labels = labels
        self.device = images.device
        self.batch_size = batch_size
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.num_images = images.shape[0]
        self.order_generator = torch.Generator(device="cpu").manual_seed(order_seed)
        self.augment_generator = torch.Generator(device=self.device).manual_seed(augment_seed)
        self.epoch = 0  # index of the permutation being consumed
        self.position = 0  # next unread index within it
        self.permutation = self._draw_permutation()

    def _draw_permutation(self) -> torch.Tensor:
        perm = torch.randperm(self.num_images, generator=self.order_generator)
        if self.device.type == "cuda":
            # From pinned memory the copy is asynchronous: no host synchronisation at epoch ends.
            return perm.pin_memory().to(self.device, non_blocking=True)
        return perm.to(self.device)

    def next_indices(self) -> torch.Tensor:
        """The next batch_size positions of the endless shuffled sequence."""
        pieces = []
        needed = self.batch_size
        while needed:
            if self.position == self.num_images:
                self.permutation = self._draw_permutation()
                self.epoch += 1
                self.position = 0
            take = min(needed, self.num_images - self.position)
            pieces.append(self.permutation[self.position : self.position + take])
            self.position += take
            needed -= take
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        index = self.next_indices()
        return augment(self.images[index], self.augment_generator, self.mean, self.std), self.labels[index]

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "position": self.position,
            "permutation": self.permutation.cpu(),
            "order_generator": self.order_generator.get_state(),
            "augment_generator": self.augment_generator.get_state(),
            "num_images": self.num_images,
            "batch_size": self.batch_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["num_images"] != self.num_images or state["batch_size"] != self.batch_size:
            raise ValueError(
                f"stream state is for {state['num_images']} images in batches of {state['batch_size']}, "
                f"this stream has {self.num_images} in batches of {self.batch_size}"
            )
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self.permutation = state["permutation"].to(self.device)
        self.order_generator.set_state(state["order_generator"])
        self.augment_generator.set_state(state["augment_generator"])
