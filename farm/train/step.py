"""One training update and one evaluation batch, for R >= 1 repeats: eager, or a CUDA-graph replay.

Two ways to run the same update (forward, per-repeat cross-entropy, backward, TF-RMSProp):

- ``eager`` -- the faithful step (SPEC e.2) as farm.train has always run it: the learning rate is a
  host float from :func:`farm.optim.cosine_by_step_lr` set before each update, the batch is used
  as the stream made it (channels_last on CUDA), op by op.
- ``graph`` -- the whole update on static buffers with no host synchronisation: the LR comes from
  a device step counter, and TF-RMSProp's ``torch._foreach_*`` update reads it as a 0-dim device
  tensor. Eager PyTorch spends ~5-20 us of CPU per kernel launch and a NAS-Bench-101 step is ~500
  kernels, so on a fast GPU the host sets the pace; this body is captured once as a
  :class:`torch.cuda.CUDAGraph` (after a few eager warm-up calls on a side stream) and replayed
  with a single launch. On a CPU, or with ``use_graph=False``, the identical body runs eagerly:
  that is what the CPU equivalence tests exercise.

Rules the graph body keeps so that capture is legal: no ``.item()``/``.tolist()``, no host-to-device
copies (constants are made before capture), no data-dependent Python branches, and nothing it
reads is reallocated between replays (the optimizer's slots, the parameters, the buffers below).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from farm.augment import CIFAR_MEAN, CIFAR_STD, to_nchw_float
from farm.config import TrainConfig
from farm.optim import TFRMSprop, cosine_by_step_lr

StepMode = Literal["eager", "graph"]
IMAGE_SHAPE = (3, 32, 32)


def nb101_optimizer(parameters: Iterable[torch.Tensor], config: TrainConfig) -> TFRMSprop:
    """The original's optimizer for ``config`` (SPEC e.2); the step sets its learning rate."""
    return TFRMSprop(parameters, lr=0.0, decay=config.rms_decay, momentum=config.momentum,
                     epsilon=config.rms_epsilon, weight_decay=config.weight_decay)


def loss_dtype(param_dtype: torch.dtype) -> torch.dtype:
    """The loss is computed in fp32, or fp64 when the model is fp64."""
    return torch.promote_types(param_dtype, torch.float32)


def cosine_lr_(out: torch.Tensor, step: torch.Tensor, total_steps: int, base_lr: float) -> None:
    """Write ``farm.optim.cosine_by_step_lr(step, total_steps, base_lr)`` into ``out`` on the device.

    Same formula and operation order, in float64, rounded once into ``out``'s dtype -- so the LR
    equals the host-side schedule's float (to the last bit on a CPU).
    """
    progress = step.to(torch.float64).clamp(max=total_steps) / max(total_steps, 1)
    lr = (1.0 + torch.cos(math.pi * progress)) * (0.5 * base_lr)
    valid = (step > 0) & (total_steps > 0)
    out.copy_(torch.where(valid, lr, torch.zeros_like(lr)))


def eval_batch_size(eval_images: int, train_batch: int, *, max_factor: int = 4) -> int:
    """Images per graph-mode evaluation forward: the largest multiple of the training batch, up to
    ``max_factor`` times it, that divides ``eval_images`` (768 for 9,984 and 256; else the batch).

    Evaluation-mode BN treats images independently, so the batch size changes no prediction
    (beyond kernel rounding); fewer, larger forwards make the three evaluations of a short run
    cheaper, and dividing exactly keeps every batch on the captured graph.
    """
    for factor in range(max_factor, 0, -1):
        candidate = factor * train_batch
        if eval_images % candidate == 0:
            return candidate
    return train_batch


def fuse_inputs(batches: Sequence[torch.Tensor]) -> torch.Tensor:
    """R image batches ``[N, 3, H, W]`` -> the R-repeat network's input ``[N, 3R, H, W]``."""
    return batches[0] if len(batches) == 1 else torch.cat(list(batches), dim=1)


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


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    # No autocast weight cache: a cached cast would be taken once at capture time and replayed stale
    # (each weight is cast once per forward anyway, so eagerly the cache would save nothing).
    return torch.autocast(device.type, dtype=dtype, cache_enabled=False)


def _as_repeats(logits: torch.Tensor) -> torch.Tensor:
    """Plain network logits [N, L] -> [N, 1, L]; R-repeat [N, R, L] stay."""
    return logits.unsqueeze(1) if logits.dim() == 2 else logits


class _Capturable:
    """Eager warm-up, then one capture, then replays (graph mode on CUDA); always eager elsewhere."""

    def __init__(self, device: torch.device, use_graph: bool, warmup_calls: int) -> None:
        self.device = device
        self.use_graph = use_graph and device.type == "cuda"
        self.warmup_calls = max(1, warmup_calls)
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None

    def _run_body(self) -> None:
        raise NotImplementedError

    def _before_capture(self) -> None:
        """Host-side preparation right before capture (nothing by default)."""

    def _launch(self) -> None:
        """Run the body once on the static buffers: eagerly, by capturing, or by replaying."""
        self.calls += 1
        if not self.use_graph:
            self._run_body()
            return
        if self.graph is None and self.calls <= self.warmup_calls:
            # Warm-up (cuDNN autotuning, lazy allocations) on a side stream, as capture requires.
            current = torch.cuda.current_stream(self.device)
            side = torch.cuda.Stream(self.device)
            side.wait_stream(current)
            with torch.cuda.stream(side):
                self._run_body()
            current.wait_stream(side)
            return
        if self.graph is None:
            self._before_capture()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self._run_body()
            self.graph = graph  # capture records without running: replay for this call too
        self.graph.replay()


class TrainStep(_Capturable):
    """One training update of a plain (R = 1) or R-repeat network.

    ``loss_sum`` (shape ``[R]``) accumulates each repeat's loss on the device; the caller reads
    and zeroes it (in place) at its sync points. ``step`` is the global step before the update
    (0 = the zero-LR first update); the step counter (a host int eagerly, a device tensor in graph
    mode) follows it from there.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, *, repeats: int, batch_size: int,
                 total_steps: int, base_lr: float, step: int, loss_sum: torch.Tensor,
                 autocast_dtype: torch.dtype | None = None, channels_last: bool = False,
                 mode: StepMode = "graph", use_graph: bool = True, warmup_steps: int = 3) -> None:
        param = next(model.parameters())
        super().__init__(param.device, use_graph and mode == "graph", warmup_steps)
        if loss_sum.shape != (repeats,):
            raise ValueError(f"loss_sum must have shape ({repeats},), got {tuple(loss_sum.shape)}")
        self.model = model
        self.optimizer = optimizer
        self.repeats = repeats
        self.total_steps = total_steps
        self.base_lr = base_lr
        self.autocast_dtype = autocast_dtype
        self.loss_dtype = loss_dtype(param.dtype)
        self.loss_sum = loss_sum
        self.param_dtype = param.dtype
        self.memory_format = torch.channels_last if channels_last else None
        self.static = mode == "graph"
        self.step: int | torch.Tensor = step
        if self.static:
            fmt = self.memory_format or torch.contiguous_format
            self.images = torch.zeros(
                (batch_size, repeats * IMAGE_SHAPE[0], *IMAGE_SHAPE[1:]), dtype=param.dtype,
                device=self.device,
            ).contiguous(memory_format=fmt)
            self.labels = torch.zeros((batch_size, repeats), dtype=torch.int64, device=self.device)
            self.step = torch.tensor(step, dtype=torch.int64, device=self.device)
            self.lr = torch.zeros((), dtype=param.dtype, device=self.device)
            for group in optimizer.param_groups:
                group["lr"] = self.lr  # TFRMSprop multiplies by it on the device

    def body(self, images: torch.Tensor, labels: torch.Tensor, lr: float | None = None) -> None:
        """The update (in graph mode: what is captured). ``lr``: eager mode only, a fixed LR
        instead of the schedule's (the benches)."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.static:
            cosine_lr_(self.lr, self.step, self.total_steps, self.base_lr)
        else:
            value = cosine_by_step_lr(self.step, self.total_steps, self.base_lr) if lr is None else lr
            for group in self.optimizer.param_groups:
                group["lr"] = value
        with _autocast(self.device, self.autocast_dtype):
            logits = _as_repeats(self.model(images))
        losses = repeat_losses(logits.to(self.loss_dtype), labels)
        losses.sum().backward()
        self.optimizer.step()
        self.step += 1
        self.loss_sum += losses.detach()

    def _run_body(self) -> None:
        self.body(self.images, self.labels)

    def _before_capture(self) -> None:
        # As PyTorch's whole-network capture recipe: drop the warm-up gradients before capture so
        # that the captured backward allocates them from the graph's own memory pool.
        self.optimizer.zero_grad(set_to_none=True)

    def __call__(self, images: Sequence[torch.Tensor], labels: Sequence[torch.Tensor],
                 lr: float | None = None) -> None:
        """One update on the repeats' batches (``images[r]``: float ``[N,3,32,32]``)."""
        if lr is not None and self.static:
            raise ValueError("a fixed learning rate needs the eager step (graph mode reads the schedule)")
        if not self.static:
            x = fuse_inputs(images).to(self.param_dtype)
            if self.memory_format is not None:
                x = x.contiguous(memory_format=self.memory_format)
            self.body(x, torch.stack(list(labels), dim=1), lr)
            return
        self.images.copy_(fuse_inputs(images))
        if self.repeats == 1:
            self.labels[:, 0].copy_(labels[0])
        else:
            self.labels.copy_(torch.stack(list(labels), dim=1))
        self._launch()


class EvalStep(_Capturable):
    """Counts each repeat's correct argmax predictions on one batch of uint8 HWC images.

    Every repeat sees the same images (the R-repeat input repeats them). ``mean``/``std``: the data
    set's normalisation statistics (CIFAR-10's by default). ``correct`` ([R], int64)
    stays on the device until the caller reads it once per evaluation. Eager mode normalises as
    :func:`farm.augment.normalize` (and keeps its layout unless ``channels_last``); graph mode runs
    full batches through static buffers in a fixed layout.
    """

    def __init__(self, model: nn.Module, *, repeats: int, batch_size: int,
                 autocast_dtype: torch.dtype | None = None, channels_last: bool = False,
                 mode: StepMode = "graph", use_graph: bool = True,
                 mean: tuple[float, float, float] = CIFAR_MEAN,
                 std: tuple[float, float, float] = CIFAR_STD) -> None:
        param = next(model.parameters())
        super().__init__(param.device, use_graph and mode == "graph", warmup_calls=1)
        self.model = model
        self.repeats = repeats
        self.dtype = param.dtype
        self.autocast_dtype = autocast_dtype
        self.static = mode == "graph"
        self.memory_format = torch.channels_last if channels_last else (
            torch.contiguous_format if self.static else None)
        self.images = torch.zeros((batch_size, 32, 32, 3), dtype=torch.uint8, device=self.device)
        self.labels = torch.zeros((batch_size,), dtype=torch.int64, device=self.device)
        self.correct = torch.zeros((repeats,), dtype=torch.int64, device=self.device)
        # farm.augment.normalize's constants (the data set's statistics), made here because capture
        # forbids host copies.
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)

    def body(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        x = ((to_nchw_float(images) - self.mean) / self.std).to(self.dtype)  # = augment.normalize
        if self.repeats > 1:
            x = x.repeat(1, self.repeats, 1, 1)
        if self.memory_format is not None:
            x = x.contiguous(memory_format=self.memory_format)
        with _autocast(self.device, self.autocast_dtype):
            logits = _as_repeats(self.model(x))
        self.correct += (logits.argmax(dim=2) == labels[:, None]).sum(dim=0)

    def _run_body(self) -> None:
        self.body(self.images, self.labels)

    def reset(self) -> None:
        self.correct.zero_()

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        """Add this batch's correct counts (model in eval mode, under no_grad)."""
        if not self.static or images.shape[0] != self.images.shape[0]:
            self.body(images, labels)  # eager, or a short last batch (no second graph)
            return
        self.images.copy_(images)
        self.labels.copy_(labels)
        self._launch()
