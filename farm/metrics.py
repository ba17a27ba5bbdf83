"""The names NAS-Bench-101 records for one training run (SPEC f.2, g), shared by the trainer, the
API and the database so that they cannot drift apart. No torch import: the database layer uses it."""

from __future__ import annotations

# The eight per-repeat numbers the published API returns (computed_statistics), in storage order.
REPEAT_METRICS: tuple[str, ...] = (
    "halfway_training_time",
    "halfway_train_accuracy",
    "halfway_validation_accuracy",
    "halfway_test_accuracy",
    "final_training_time",
    "final_train_accuracy",
    "final_validation_accuracy",
    "final_test_accuracy",
)

# Everything a finished run reports: the cell's size and the run's wall time, then the above.
RUN_METRICS: tuple[str, ...] = ("trainable_parameters", "total_time", *REPEAT_METRICS)
