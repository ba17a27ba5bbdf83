"""When a run evaluates, checkpoints and stops, and the metrics it reports (SPEC e.2, f.2).

The NAS-Bench-101 protocol as integer arithmetic on steps; no torch import.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from farm.config import NB101, TrainConfig
from farm.metrics import RUN_METRICS

EVALUATED_SPLITS = ("train", "validation", "test")


class Stopped(Exception):
    """``should_stop()`` became true; the run checkpointed (if it had a path) and stopped.

    Not a :class:`~farm.train_errors.TrainingError`: a stop is not a failure of the job.
    """

    def __init__(self, *, checkpointed: bool, step: int, epoch: float):
        state = "checkpointed" if checkpointed else "not checkpointed"
        super().__init__(f"stopped at step {step} (epoch {epoch:.3f}), {state}")
        self.checkpointed = checkpointed
        self.step = step
        self.epoch = epoch


def evaluation_schedule(epochs: int, config: TrainConfig = NB101) -> list[tuple[float, int]]:
    """(nominal epoch, recorded training steps) of each evaluation, as the original records them.

    The first is (0.0, 0): it runs after the zero-LR first update. Then one per intermediate
    fraction f at int(f * E * images / batch) steps, and the final one at the total step count.
    """
    schedule = [(0.0, 0)]
    for fraction in (*config.intermediate_evaluations, 1.0):
        nominal = fraction * epochs
        schedule.append((float(nominal), config.total_steps(nominal)))
    return schedule


class Schedule:
    """The step arithmetic of one run of ``epochs`` epochs of ``config``."""

    def __init__(self, config: TrainConfig, epochs: int) -> None:
        self.total_steps = config.total_steps(epochs)
        self.steps_per_epoch = Fraction(config.train_images, config.batch_size)
        self.checkpoint_every_epochs = config.checkpoint_every_epochs
        # Global step -> nominal epoch of the evaluations after step 1 (halfway..., final).
        self.evaluation_points = {steps: epoch for epoch, steps in evaluation_schedule(epochs, config)[1:]}

    def epoch_at(self, step: int) -> float:
        return float(step / self.steps_per_epoch)

    def crossed(self, step: int, every_epochs: float) -> bool:
        """Whether update number ``step`` crossed a multiple of ``every_epochs`` epochs."""
        if every_epochs <= 0:
            return False
        period = self.steps_per_epoch * Fraction(every_epochs).limit_denominator(1_000_000)
        return (step // period) > ((step - 1) // period)


def halfway_entry(evaluations: list[dict[str, Any]], epochs: int) -> dict[str, Any]:
    """The evaluation at half the budget (or the first intermediate one if 0.5 is not asked)."""
    intermediate = evaluations[1:-1]
    if not intermediate:
        return evaluations[-1]
    half = 0.5 * epochs
    for entry in intermediate:
        if abs(entry["epochs"] - half) < 1e-9:
            return entry
    return intermediate[0]


def run_metrics(
    evaluations: list[dict[str, Any]], epochs: int, *, trainable_parameters: int, total_time: float
) -> dict[str, Any]:
    """The NAS-Bench-101 metrics of one run (``farm.metrics.RUN_METRICS``, in that order)."""
    metrics: dict[str, Any] = {
        "trainable_parameters": int(trainable_parameters),
        "total_time": total_time,
    }
    for prefix, entry in (("halfway", halfway_entry(evaluations, epochs)), ("final", evaluations[-1])):
        metrics[f"{prefix}_training_time"] = entry["training_time"]
        for name in EVALUATED_SPLITS:
            metrics[f"{prefix}_{name}_accuracy"] = entry[f"{name}_accuracy"]
    return {name: metrics[name] for name in RUN_METRICS}
