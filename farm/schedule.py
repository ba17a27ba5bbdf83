"""The run schedule both trainers share: when to evaluate, checkpoint, sync and stop.

``farm.train`` (op by op) and ``farm.fast.trainer`` (graph-replayed, possibly R fused repeats)
differ in how a step runs, how losses are summed and how state is saved, never in *when* things
happen: that is the NAS-Bench-101 protocol (SPEC e.2, f.2) and lives here once. A trainer
subclasses :class:`ScheduledRun` and provides the hooks; :meth:`ScheduledRun.train_loop` is the
loop. No torch import: the schedule is integer arithmetic on steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
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


def _fraction(value: float) -> Fraction:
    return Fraction(value).limit_denominator(1_000_000)


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


class ScheduledRun:
    """The step loop, over hooks a trainer provides.

    The subclass sets ``step``, ``training_time`` and ``should_stop`` and calls
    :meth:`_init_schedule`; it implements ``_train_step`` (one update, no host sync),
    ``_synchronize``, ``_check_finite``, ``_end_epoch`` (report and reset the epoch's loss),
    ``_evaluate(nominal_epoch, recorded_steps)`` and ``_checkpoint``, and the ``checkpointing``
    attribute (whether there is anywhere to checkpoint to).
    """

    step: int
    training_time: float
    checkpointing: bool
    should_stop: Callable[[], bool] | None

    def _init_schedule(self, config: TrainConfig, epochs: int) -> None:
        self.total_steps = config.total_steps(epochs)
        self.steps_per_epoch = Fraction(config.train_images, config.batch_size)
        self.checkpoint_every_epochs = config.checkpoint_every_epochs
        # Global step -> nominal epoch of the evaluations after step 1 (halfway..., final).
        self.evaluation_points = {steps: epoch for epoch, steps in evaluation_schedule(epochs, config)[1:]}

    def epoch_at(self, step: int) -> float:
        return float(step / self.steps_per_epoch)

    def _crossed(self, step: int, every_epochs: float) -> bool:
        """Whether update number ``step`` crossed a multiple of ``every_epochs`` epochs."""
        if every_epochs <= 0:
            return False
        period = self.steps_per_epoch * _fraction(every_epochs)
        return (step // period) > ((step - 1) // period)

    # -- hooks ---------------------------------------------------------------------------------

    def _train_step(self) -> None:
        raise NotImplementedError

    def _synchronize(self) -> None:
        raise NotImplementedError

    def _check_finite(self) -> None:
        raise NotImplementedError

    def _end_epoch(self) -> None:
        raise NotImplementedError

    def _evaluate(self, nominal_epoch: float, recorded_steps: int) -> None:
        raise NotImplementedError

    def _checkpoint(self) -> None:
        raise NotImplementedError

    # -- the loop ------------------------------------------------------------------------------

    def train_loop(self) -> None:
        """Train from ``self.step`` to ``total_steps``; raises :class:`Stopped` on request."""
        segment_start = time.perf_counter()
        while self.step < self.total_steps:
            if self.should_stop is not None and self.should_stop():
                self._synchronize()
                if self.step > 0:
                    self.training_time += time.perf_counter() - segment_start
                self._check_finite()
                if self.checkpointing:
                    self._checkpoint()
                raise Stopped(checkpointed=self.checkpointing, step=self.step, epoch=self.epoch_at(self.step))
            self._train_step()
            self.step += 1
            step = self.step
            epoch_end = self._crossed(step, 1.0) or step == self.total_steps
            checkpoint_due = self.checkpointing and self._crossed(step, self.checkpoint_every_epochs)
            evaluation = step == 1 or step in self.evaluation_points
            if not (epoch_end or checkpoint_due or evaluation):
                continue
            # A sync point: stop the training clock (the zero-LR first step is not counted).
            self._synchronize()
            if step > 1:
                self.training_time += time.perf_counter() - segment_start
            self._check_finite()
            if epoch_end:
                self._end_epoch()
            if step == 1:
                self._evaluate(0.0, 0)
            if step in self.evaluation_points:
                self._evaluate(self.evaluation_points[step], step)
            if checkpoint_due and step < self.total_steps:
                self._checkpoint()
            segment_start = time.perf_counter()
