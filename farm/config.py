"""The fixed training hyperparameters, as named profiles.

``nb101`` is NAS-Bench-101's exhaustive-evaluation configuration (SPEC e). ``smoke`` runs the same
code path with a tiny network and data subset so that CPU tests and demos finish in seconds. A
campaign stores its profile as a dict (``to_dict``) so that every job of it trains identically.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any


@dataclass(frozen=True)
class TrainConfig:
    name: str = "nb101"
    # Network (SPEC d.1)
    stem_channels: int = 128
    num_stacks: int = 3
    modules_per_stack: int = 3
    num_labels: int = 10
    # BatchNorm in PyTorch's convention: running = (1 - m) * running + m * batch, so TF's 0.997
    # decay is m = 0.003 here (SPEC d.2).
    bn_momentum: float = 0.003
    bn_eps: float = 1e-5
    # BN batch statistics per shard, as on the 2 TPU cores (SPEC e.2). 0 = whole batch.
    bn_shard_size: int = 128
    # Optimisation (SPEC e.2): TF1 RMSProp, epsilon inside the sqrt, ms slot starting at 1.
    batch_size: int = 256
    learning_rate: float = 0.2
    momentum: float = 0.9
    rms_decay: float = 0.9
    rms_epsilon: float = 1.0
    weight_decay: float = 1e-4
    # Data (SPEC e.3, f.2): images per split actually used.
    train_images: int = 40_000
    eval_images: int = 9_984
    # Evaluation points as fractions of the budget, after the zero-LR first step (SPEC f.2).
    intermediate_evaluations: tuple[float, ...] = (0.5,)
    # Checkpoint every this many epochs (0 = only when asked to stop).
    checkpoint_every_epochs: float = 1.0

    def steps_per_epoch(self) -> float:
        return self.train_images / self.batch_size

    def total_steps(self, epochs: int | float) -> int:
        """int(E * images / batch), as the original computes it (16,875 for 108 epochs)."""
        return int(epochs * self.train_images / self.batch_size)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["intermediate_evaluations"] = list(self.intermediate_evaluations)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown training config keys: {', '.join(sorted(unknown))}")
        values = dict(data)
        if "intermediate_evaluations" in values:
            values["intermediate_evaluations"] = tuple(values["intermediate_evaluations"])
        return cls(**values)


NB101 = TrainConfig()

SMOKE = replace(
    NB101,
    name="smoke",
    stem_channels=8,
    modules_per_stack=1,
    batch_size=32,
    bn_shard_size=16,
    # A smoke run lasts tens of steps, so TF's 0.997 moving-average decay would leave the running
    # BN statistics near their initial values and eval-mode accuracy at chance: track them faster.
    bn_momentum=0.1,
    train_images=512,
    eval_images=256,
)

PROFILES: dict[str, TrainConfig] = {"nb101": NB101, "smoke": SMOKE}


def get_profile(name: str) -> TrainConfig:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}") from None
