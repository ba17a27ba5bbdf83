"""Train one cell the way NAS-Bench-101 did, with checkpoints that resume bit-identically.

The run (SPEC e.2, e.4, f.2): one update at learning rate 0 (it still moves BN statistics and the
RMSProp mean square), the "epoch 0" evaluation, then cosine-by-step training to
``int(E * images / batch)`` steps with evaluations at each intermediate fraction (halfway) and at
the end. Accuracy is measured in eval-mode BN on the first ``eval_images`` of train_eval
(data_batch_1), valid and test.

Host synchronisation happens only at "sync points": epoch boundaries, evaluations, checkpoints and
stop requests. Between them the loss is accumulated on the device, so a non-finite loss is detected
at the next sync point (at most one epoch late) instead of costing an ``.item()`` per step; the
weights are never checkpointed or evaluated without that check. ``training_time`` is the wall time
of training steps only, read at sync points (after a device synchronise), excluding evaluations and
checkpoints -- and, like the original's timer, excluding the zero-LR first step, so it is 0 at the
epoch-0 evaluation.

Randomness: (seed, repeat) derive three independent streams: weight initialisation, data order
and augmentation. Repeats differ; a given job is reproducible; every stream's state is in the
checkpoint.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from farm import checkpoint as ckpt
from farm.augment import TrainStream, normalize
from farm.config import NB101, TrainConfig
from farm.data import CifarSplits
from farm.metrics import RUN_METRICS
from farm.optim import TFRMSprop, cosine_by_step_lr
from farm.schedule import ScheduledRun, Stopped, evaluation_schedule, run_metrics
from farm.spec import Cell
from farm.train_errors import (
    BadInputError,
    CheckpointError,
    NonFiniteLossError,
    OutOfMemoryError,
    TrainingError,
)

__all__ = [
    "BadInputError",
    "CheckpointError",
    "NonFiniteLossError",
    "OutOfMemoryError",
    "Stopped",
    "TrainJob",
    "TrainResult",
    "TrainingError",
    "evaluation_schedule",
    "train",
]

POISON_ENV = "NASFARM_POISON_HASHES"
METRIC_NAMES = RUN_METRICS


@dataclass
class TrainJob:
    cell: Cell
    epochs: int
    repeat: int = 0
    seed: int = 0
    config: TrainConfig = NB101

    def identity(self) -> dict[str, Any]:
        """What a checkpoint must match to be resumed by this job."""
        return {
            "cell_hash": self.cell.hash,
            "epochs": self.epochs,
            "repeat": self.repeat,
            "seed": self.seed,
            "config": self.config.to_dict(),
        }

    def checkpoint_name(self) -> str:
        """A file name unique to the job (the config enters through a short digest)."""
        config_json = json.dumps(self.config.to_dict(), sort_keys=True)
        digest = hashlib.sha256(config_json.encode()).hexdigest()[:8]
        return (
            f"{self.cell.hash}_e{self.epochs}_r{self.repeat}_s{self.seed}_{self.config.name}-{digest}.ckpt"
        )


@dataclass
class TrainResult:
    metrics: dict[str, Any]
    evaluations: list[dict[str, Any]]
    resumed_from_step: int = 0
    resumed_from_epoch: float = 0.0
    # SHA-256 of the final state dict (weights and BN statistics): equal digests = identical models.
    weights_sha256: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "metrics": dict(self.metrics),
            "evaluations": [dict(e) for e in self.evaluations],
            "resumed_from_step": self.resumed_from_step,
            "resumed_from_epoch": self.resumed_from_epoch,
            "weights_sha256": self.weights_sha256,
            **({"extra": dict(self.extra)} if self.extra else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainResult:
        return cls(
            metrics=dict(data["metrics"]),
            evaluations=[dict(e) for e in data["evaluations"]],
            resumed_from_step=int(data.get("resumed_from_step", 0)),
            resumed_from_epoch=float(data.get("resumed_from_epoch", 0.0)),
            weights_sha256=str(data.get("weights_sha256", "")),
            extra=dict(data.get("extra", {})),
        )


def stream_seed(seed: int, repeat: int, stream: str) -> int:
    """An independent 63-bit seed per (job seed, repeat, stream name)."""
    digest = hashlib.sha256(f"nasfarm:{seed}:{repeat}:{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def state_dict_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over a state dict's names and raw tensor bytes: equal digests = identical models."""
    digest = hashlib.sha256()
    for name, tensor in state.items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def state_digest(module: torch.nn.Module) -> str:
    return state_dict_digest(module.state_dict())


class _Run(ScheduledRun):
    """One training run's state and loop; ``train()`` is the public entry."""

    def __init__(
        self,
        job: TrainJob,
        data: CifarSplits,
        device: torch.device,
        checkpoint_path: str | None,
        on_event: Callable[[dict], None] | None,
        should_stop: Callable[[], bool] | None,
    ) -> None:
        from farm.model import build_network

        self.wall_start = time.perf_counter()
        self.job = job
        self.config = config = job.config
        self.device = device
        self.checkpoint_path = checkpoint_path
        self.on_event = on_event
        self.should_stop = should_stop
        self.cuda = device.type == "cuda"
        # Precision and layout switches (on for CUDA); bench/train_cpu.py flips them to compare.
        self.use_autocast = self.cuda
        self.use_channels_last = self.cuda
        self._init_schedule(config, job.epochs)
        self.checkpointing = checkpoint_path is not None

        init = torch.Generator(device="cpu").manual_seed(stream_seed(job.seed, job.repeat, "init"))
        model = build_network(job.cell, config, generator=init)
        self.trainable_parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
        if self.cuda:
            torch.backends.cudnn.benchmark = True
        if self.use_channels_last:
            model = model.to(device, memory_format=torch.channels_last)
        else:
            model = model.to(device)
        self.model = model.train()
        self.optimizer = TFRMSprop(
            model.parameters(),
            lr=0.0,
            decay=config.rms_decay,
            momentum=config.momentum,
            epsilon=config.rms_epsilon,
            weight_decay=config.weight_decay,
        )
        train_images, train_labels = data.train
        self.stream = TrainStream(
            train_images[: config.train_images].to(device),
            train_labels[: config.train_images].to(device),
            config.batch_size,
            order_seed=stream_seed(job.seed, job.repeat, "order"),
            augment_seed=stream_seed(job.seed, job.repeat, "augment"),
        )
        n = config.eval_images
        self.eval_splits = {
            name: (getattr(data, split)[0][:n].to(device), getattr(data, split)[1][:n].to(device))
            for name, split in (("train", "train_eval"), ("validation", "valid"), ("test", "test"))
        }
        # Run state (all of it goes into checkpoints).
        self.step = 0
        self.training_time = 0.0
        self.elapsed_before = 0.0  # wall time of earlier attempts, up to their last checkpoint
        self.evaluations: list[dict[str, Any]] = []
        self.loss_sum = torch.zeros((), dtype=torch.float32, device=device)
        self.loss_count = 0
        self.resumed_from_step = 0
        self.finished_result: TrainResult | None = None

    # -- the loop --------------------------------------------------------------------------------

    def _autocast(self):
        if self.use_autocast:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _train_step(self, lr: float | None = None) -> None:
        """One update. ``lr``: None = the schedule's for ``self.step`` (the loop); the benches
        (bench/train_cpu.py, bench/gpu_train_check.py) pass a fixed one."""
        if lr is None:
            lr = cosine_by_step_lr(self.step, self.total_steps, self.config.learning_rate)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        images, labels = self.stream.next_batch()
        if self.use_channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            logits = self.model(images)
        loss = F.cross_entropy(logits.float(), labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.loss_sum += loss.detach()
        self.loss_count += 1

    def _synchronize(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def _check_finite(self) -> None:
        if self.loss_count and not bool(torch.isfinite(self.loss_sum).item()):
            raise NonFiniteLossError(
                f"non-finite training loss before step {self.step} (epoch {self.epoch_at(self.step):.2f})"
            )

    def _end_epoch(self) -> None:
        self._emit("epoch", loss=float(self.loss_sum.item()) / max(self.loss_count, 1))
        self.loss_sum.zero_()
        self.loss_count = 0

    def _emit(self, kind: str, **fields: Any) -> None:
        if self.on_event is not None:
            event = {"kind": kind, "epoch": self.epoch_at(self.step), "step": self.step,
                     "training_time": self.training_time}
            event.update(fields)
            self.on_event(event)

    def _accuracy(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        batch = self.config.batch_size
        for start in range(0, images.shape[0], batch):
            x = normalize(images[start : start + batch])
            if self.use_channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with self._autocast():
                logits = self.model(x)
            correct += (logits.argmax(dim=1) == labels[start : start + batch]).sum()
        return int(correct.item()) / images.shape[0]

    def _evaluate(self, nominal_epoch: float, recorded_steps: int) -> None:
        self.model.eval()
        try:
            with torch.no_grad():
                accuracies = {
                    f"{name}_accuracy": self._accuracy(*split) for name, split in self.eval_splits.items()
                }
        finally:
            self.model.train()
        entry = {
            "epochs": nominal_epoch,
            "training_steps": recorded_steps,
            "training_time": self.training_time,
            **accuracies,
        }
        self.evaluations.append(entry)
        self._emit("evaluation", **accuracies, epoch=nominal_epoch)

    def _elapsed(self) -> float:
        return self.elapsed_before + (time.perf_counter() - self.wall_start)

    def _state(self) -> dict[str, Any]:
        state = {
            "step": self.step,
            "training_time": self.training_time,
            "elapsed": self._elapsed(),
            "evaluations": [dict(e) for e in self.evaluations],
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "stream": self.stream.state_dict(),
            "loss_sum": self.loss_sum.detach().cpu(),
            "loss_count": self.loss_count,
            "cpu_rng": torch.get_rng_state(),
        }
        if self.cuda:
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def _checkpoint(self) -> None:
        assert self.checkpoint_path is not None
        ckpt.save(self.checkpoint_path, self.job.identity(), {"complete": False, **self._state()})
        self._emit("checkpoint", path=self.checkpoint_path)

    def _restore(self) -> None:
        state = ckpt.load(self.checkpoint_path, self.job.identity()) if self.checkpoint_path else None
        if state is None:
            return
        if state.get("complete"):
            result = TrainResult.from_dict(state["result"])
            result.resumed_from_step = self.total_steps
            result.resumed_from_epoch = self.epoch_at(self.total_steps)
            self.finished_result = result
            return
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.stream.load_state_dict(state["stream"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"checkpoint {self.checkpoint_path} does not fit this job: {exc}") from exc
        self.step = int(state["step"])
        self.training_time = float(state["training_time"])
        self.elapsed_before = float(state["elapsed"])
        self.evaluations = [dict(e) for e in state["evaluations"]]
        self.loss_sum = state["loss_sum"].to(self.device)
        self.loss_count = int(state["loss_count"])
        torch.set_rng_state(state["cpu_rng"])
        if self.cuda and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        self.resumed_from_step = self.step

    def run(self) -> TrainResult:
        self._restore()
        if self.finished_result is not None:
            return self.finished_result
        self.train_loop()
        return self._finish()

    def _finish(self) -> TrainResult:
        result = TrainResult(
            metrics=run_metrics(self.evaluations, self.job.epochs,
                                trainable_parameters=self.trainable_parameters, total_time=self._elapsed()),
            evaluations=[dict(e) for e in self.evaluations],
            resumed_from_step=self.resumed_from_step,
            resumed_from_epoch=self.epoch_at(self.resumed_from_step),
            weights_sha256=state_digest(self.model),
        )
        if self.checkpoint_path is not None:
            # Replace the (large) training state with the result: a retry after a crash between
            # here and the caller recording the result returns it without training again.
            final_state = {"complete": True, "result": result.to_dict()}
            ckpt.save(self.checkpoint_path, self.job.identity(), final_state)
            self._emit("checkpoint", path=self.checkpoint_path, complete=True)
        return result


def _resolve_device(device: str | torch.device) -> torch.device:
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise BadInputError(f"unknown device {device!r}") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise BadInputError(f"device {device!r} requested but CUDA is not available here")
    if resolved.type not in ("cpu", "cuda"):
        raise BadInputError(f"device {device!r} is not supported (cpu or cuda)")
    return resolved


def _validate(job: TrainJob, data: CifarSplits) -> None:
    if not isinstance(job.cell, Cell):
        raise BadInputError(f"job.cell must be a farm.spec.Cell, got {type(job.cell).__name__}")
    if isinstance(job.epochs, bool) or not isinstance(job.epochs, int) or job.epochs < 1:
        raise BadInputError(f"epochs must be a positive integer, got {job.epochs!r}")
    if job.repeat < 0:
        raise BadInputError(f"repeat must be >= 0, got {job.repeat}")
    config = job.config
    if config.total_steps(job.epochs) < 2:
        raise BadInputError(f"{job.epochs} epochs of {config.name} is fewer than 2 training steps")
    needed = {
        "train": config.train_images,
        "valid": config.eval_images,
        "test": config.eval_images,
        "train_eval": config.eval_images,
    }
    for split, count in needed.items():
        images, labels = getattr(data, split)
        if images.shape[0] < count:
            raise BadInputError(
                f"profile {config.name!r} needs {count} {split} images, the data has {images.shape[0]}"
            )
        if images.dtype != torch.uint8 or tuple(images.shape[1:]) != (32, 32, 3):
            raise BadInputError(
                f"{split} images must be uint8 [N,32,32,3], got {images.dtype} {tuple(images.shape)}"
            )
        if labels.shape[0] != images.shape[0]:
            raise BadInputError(f"{split}: {labels.shape[0]} labels for {images.shape[0]} images")


def _check_poison(job: TrainJob) -> None:
    poisoned = {h.strip() for h in os.environ.get(POISON_ENV, "").split(",") if h.strip()}
    if poisoned and isinstance(job.cell, Cell) and job.cell.hash in poisoned:
        raise TrainingError(f"poison cell ({POISON_ENV})")


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)


def train(
    job: TrainJob,
    data: CifarSplits,
    *,
    device: str = "cpu",
    checkpoint_path: str | None = None,
    on_event: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train ``job`` on ``data``; resume from ``checkpoint_path`` if a checkpoint is there.

    Raises a :class:`TrainingError` subclass on failure and :class:`Stopped` when ``should_stop``
    asked to stop.
    """
    _check_poison(job)
    resolved = _resolve_device(device)
    _validate(job, data)

    def body() -> TrainResult:  # building the run (weights to the device) can run out of memory too
        return _Run(job, data, resolved, checkpoint_path, on_event, should_stop).run()

    return run_guarded(resolved, body)


def run_guarded(device: torch.device, body: Callable[[], Any]) -> Any:
    """``body()``, with an out-of-memory error (of any kind) turned into :class:`OutOfMemoryError`
    (retryable) after freeing the CUDA cache; training errors and stops pass unchanged."""
    try:
        return body()
    except (TrainingError, Stopped):
        raise
    except Exception as exc:
        if _is_oom(exc):
            if device.type == "cuda":
                torch.cuda.empty_cache()
            raise OutOfMemoryError(f"out of memory on {device}: {str(exc).splitlines()[0]}") from exc
        raise
