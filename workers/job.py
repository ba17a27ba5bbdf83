"""From a claimed job to a training run: build the TrainJob, classify what went wrong.

Kept apart from the actor so that the classification rules can be read (and tested) without Ray.
"""

from __future__ import annotations

import traceback
from typing import Any

from db.queue import ClaimedJob
from workers.contracts import GroupRunner, JobRunner, TrainerName

# The most repeats one fused group trains at once (NAS-Bench-101 has 3 per cell and budget).
MAX_FUSED_REPEATS = 3


def trainer_runner(name: TrainerName) -> JobRunner:
    """The one-job entry point of trainer ``name`` (imported lazily: the driver never imports a
    trainer).

    For FUSED it is the fast trainer: a group of one (the other repeats were done, running or
    backing off) trains alone on the same path.
    """
    name = TrainerName.parse(name)
    return _train_faithful if name is TrainerName.FAITHFUL else _train_fast


def group_runner(name: TrainerName) -> GroupRunner | None:
    """The entry point that trains several repeats of a cell at once, or None when trainer
    ``name`` trains one job at a time (and the driver claims jobs one by one)."""
    return _train_fused if TrainerName.parse(name) is TrainerName.FUSED else None


def _train_faithful(*args: Any, **kwargs: Any):
    from farm.train import train

    return train(*args, **kwargs)


def _train_fast(*args: Any, **kwargs: Any):
    from farm.train import train_fast

    return train_fast(*args, **kwargs)


def _train_fused(*args: Any, **kwargs: Any):
    from farm.train import train_repeats_fused

    # Split convs: each repeat's convolutions run as ordinary convs on its slice of the grouped
    # weight (the same math: equal to the grouped network within 1e-9 in float64, tests/test_fast.py).
    # The grouped-conv kernels crashed the CUDA context on the H200 we measured (docs/gpu.md);
    # ordinary convs ran there.
    kwargs.setdefault("split_convs", True)
    return train_repeats_fused(*args, **kwargs)

MAX_ERROR_CHARS = 8000


def build_train_job(job: ClaimedJob):
    """The TrainJob for a claimed job; a cell whose hash differs from the queue's is bad input."""
    from farm.config import TrainConfig
    from farm.spec import Cell
    from farm.train import BadInputError, TrainJob

    cell = Cell.from_any(job.matrix, job.ops)
    if cell.hash != job.cell_hash:
        raise BadInputError(f"the job's cell hashes to {cell.hash}, the queue says {job.cell_hash}")
    return TrainJob(
        cell=cell,
        epochs=int(job.epochs),
        repeat=int(job.repeat),
        seed=int(job.seed),
        config=TrainConfig.from_dict(job.profile),
    )


def checkpoint_epoch(train_job, location: str) -> float:
    """The epoch a checkpoint at ``location`` resumes from (0 when there is none).

    Read before training so the attempt history can say where each attempt started. A corrupt or
    foreign checkpoint reads as 0 here; train() itself then raises CheckpointError for it.
    """
    from farm import checkpoint as ckpt
    from farm.train_errors import CheckpointError

    try:
        state = ckpt.load(location, train_job.identity())
    except CheckpointError:
        return 0.0
    if state is None:
        return 0.0
    if state.get("complete"):
        return float(train_job.epochs)
    return float(state.get("step", 0)) / train_job.config.steps_per_epoch()


def is_retryable(exc: BaseException) -> bool:
    """Whether another attempt might succeed.

    Typed training errors carry their verdict (non-finite loss and OOM: yes; bad input and corrupt
    checkpoints: no). A bare ``TrainingError`` says only "training failed" without a cause, so it
    is retried within the job's attempt budget, like a crash. Anything else (a bad cell, a bug in
    the code) fails at once: repeating it cannot help, and its traceback is in the job's error.
    """
    from farm.spec import InvalidCellError
    from farm.train_errors import TrainingError

    if isinstance(exc, InvalidCellError):
        return False
    if type(exc) is TrainingError:
        return True
    if isinstance(exc, TrainingError):
        return bool(exc.retryable)
    return False


def describe_error(exc: BaseException) -> str:
    """The error text stored on the job: the exception line first, then the traceback (bounded)."""
    head = f"{type(exc).__name__}: {exc}"
    trace = "".join(traceback.format_exception(exc))
    text = f"{head}\n{trace}"
    if len(text) > MAX_ERROR_CHARS:
        text = head + "\n...\n" + trace[-(MAX_ERROR_CHARS - len(head) - 5):]
    return text
