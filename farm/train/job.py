"""What a training run is given and what it returns: the job, its result, its random streams.

A job is (cell, epochs, repeat, seed, config). (seed, repeat) derive three independent random
streams -- weight initialisation, data order and augmentation -- so repeats differ and a given job
is reproducible; every stream's state is in the checkpoint.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from farm.config import NB101, TrainConfig
from farm.datasets import Splits
from farm.spec import Cell
from farm.train_errors import BadInputError


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


def resolve_device(device: str | torch.device) -> torch.device:
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise BadInputError(f"unknown device {device!r}") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise BadInputError(f"device {device!r} requested but CUDA is not available here")
    if resolved.type not in ("cpu", "cuda"):
        raise BadInputError(f"device {device!r} is not supported (cpu or cuda)")
    return resolved


def _validate(job: TrainJob, data: Splits) -> None:
    if not isinstance(job.cell, Cell):
        raise BadInputError(f"job.cell must be a farm.spec.Cell, got {type(job.cell).__name__}")
    if isinstance(job.epochs, bool) or not isinstance(job.epochs, int) or job.epochs < 1:
        raise BadInputError(f"epochs must be a positive integer, got {job.epochs!r}")
    if job.repeat < 0:
        raise BadInputError(f"repeat must be >= 0, got {job.repeat}")
    config = job.config
    if config.total_steps(job.epochs) < 2:
        raise BadInputError(f"{job.epochs} epochs of {config.name} is fewer than 2 training steps")
    classes = getattr(data, "num_classes", config.num_labels)
    if classes != config.num_labels:
        raise BadInputError(
            f"profile {config.name!r} has a {config.num_labels}-way head but data set "
            f"{getattr(data, 'dataset', '?')!r} has {classes} classes (farm.datasets.fit_config gives a "
            "profile the data set's head)")
    for split in ("train", "valid", "test", "train_eval"):
        count = config.train_images if split == "train" else config.eval_images
        images, labels = getattr(data, split)
        shape = tuple(images.shape)
        if shape[0] < count:
            raise BadInputError(f"profile {config.name!r} needs {count} {split} images, the data has "
                                f"{shape[0]}")
        if images.dtype != torch.uint8 or shape[1:] != (32, 32, 3):
            raise BadInputError(f"{split} images must be uint8 [N,32,32,3], got {images.dtype} {shape}")
        if labels.shape[0] != images.shape[0]:
            raise BadInputError(f"{split}: {labels.shape[0]} labels for {images.shape[0]} images")


def validate_jobs(jobs: Sequence[TrainJob], data: Splits) -> None:
    """Jobs trained as one run (usually one): each valid; all of one cell, budget and config, with
    distinct (seed, repeat)."""
    if not jobs:
        raise BadInputError("no jobs to train")
    for job in jobs:
        _validate(job, data)
    first = jobs[0]
    for job in jobs[1:]:
        if job.cell.hash != first.cell.hash or job.epochs != first.epochs or job.config != first.config:
            raise BadInputError(
                "fused repeats must share cell, epochs and config; got "
                f"{first.cell.hash}/{first.epochs}/{first.config.name} and "
                f"{job.cell.hash}/{job.epochs}/{job.config.name}"
            )
    if len({(job.seed, job.repeat) for job in jobs}) != len(jobs):
        raise BadInputError("fused repeats must differ in (seed, repeat)")
