"""Training: one run object for R >= 1 repeats of a cell, reached through three entry points.

- :mod:`farm.train.job`       ``TrainJob``, ``TrainResult``, the random streams, input checks
- :mod:`farm.train.schedule`  the protocol: evaluation points, ``Stopped``, the run's metrics (no torch)
- :mod:`farm.train.step`      one update / one evaluation batch, eager or as a CUDA-graph replay
- :mod:`farm.train.run`       :class:`~farm.train.run.Run`: state, loop, events, checkpoints, results
- :mod:`farm.train.api`       ``train`` (faithful), ``train_fast`` (graph), ``train_repeats_fused``

Imports only torch/numpy/stdlib and farm's domain modules (no click, tqdm, Ray or SQL), so the GPU
bench runs from a bare checkout.
"""

from farm.train.api import run_guarded, train, train_fast, train_repeats_fused
from farm.train.job import TrainJob, TrainResult, state_dict_digest, stream_seed
from farm.train.schedule import Stopped, evaluation_schedule
from farm.train_errors import (
    BadInputError,
    CheckpointError,
    InjectedFault,
    NonFiniteLossError,
    OutOfMemoryError,
    TrainingError,
)

__all__ = [
    "BadInputError", "CheckpointError", "InjectedFault", "NonFiniteLossError", "OutOfMemoryError", "Stopped",
    "TrainJob", "TrainResult", "TrainingError", "evaluation_schedule", "run_guarded", "state_dict_digest",
    "stream_seed", "train", "train_fast", "train_repeats_fused",
]
