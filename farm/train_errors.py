"""Typed training failures. The farm decides from ``retryable`` whether a job goes back to the queue.

They live apart from ``farm.train`` so that the checkpoint store can raise them without importing
the training loop; ``farm.train`` re-exports all of them.
"""

from __future__ import annotations


class TrainingError(Exception):
    """A training run failed. ``retryable``: whether another attempt might succeed."""

    retryable: bool = False


class NonFiniteLossError(TrainingError):
    """The loss became NaN or infinite (the original retried these)."""

    retryable = True


class OutOfMemoryError(TrainingError):
    """The device ran out of memory (the original retried these)."""

    retryable = True


class BadInputError(TrainingError):
    """The job cannot run as given (bad cell, budget, device or too little data)."""

    retryable = False


class CheckpointError(TrainingError):
    """A checkpoint is corrupt or belongs to another job; it is never loaded silently."""

    retryable = False


class InjectedFault(TrainingError):
    """A failpoint fired (``farm.failpoints``, ``NASFARM_FAILPOINTS``): a rehearsed failure.

    Retryable by default, as a crash is: the farm retries it within the job's attempt budget.
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable
