"""From a claimed job to a training run: the trainer to call, the TrainJob, where it resumes.

Kept apart from the actor so that it can be read (and tested) without Ray.
"""

from __future__ import annotations

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
    foreign checkpoint raises :class:`~farm.train_errors.CheckpointError` (the worker moves it aside).
    """
    from farm import checkpoint as ckpt

    state = ckpt.load(location, train_job.identity())
    if state is None:
        return 0.0
    if state.get("complete"):
        return float(train_job.epochs)
    return float(state.get("step", 0)) / train_job.config.steps_per_epoch()
