"""The three ways to call the training run, with one contract: arguments, results, events,
checkpoints (one file format), ``should_stop``/:class:`Stopped` and typed errors.

- :func:`train` -- the faithful trainer: eager steps, bf16 autocast + channels_last on CUDA only.
- :func:`train_fast` -- the same job with the step replayed as a CUDA graph (``cuda_graphs``).
- :func:`train_repeats_fused` -- the repeats of one cell as one network, graph-replayed; one
  result, event sink and checkpoint per job, so any repeat can later resume alone in either trainer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from farm import checkpoint as ckpt
from farm import failpoints
from farm.datasets import Splits
from farm.spec import Cell
from farm.train.job import TrainJob, TrainResult, resolve_device, validate_jobs
from farm.train.run import EventSink, Run, StopRequest
from farm.train.schedule import Stopped
from farm.train_errors import BadInputError, OutOfMemoryError, TrainingError


def train(job: TrainJob, data: Splits, *, device: str = "cpu", checkpoint_path: str | None = None,
          on_event: EventSink = None, should_stop: StopRequest = None) -> TrainResult:
    """Train ``job`` on ``data``; resume from ``checkpoint_path`` if a checkpoint is there.

    Raises a :class:`TrainingError` subclass on failure and :class:`Stopped` when ``should_stop``
    asked to stop.
    """
    return _train([job], data, device, [checkpoint_path], [on_event], should_stop, mode="eager")[0]


def train_fast(job: TrainJob, data: Splits, *, device: str = "cuda", checkpoint_path: str | None = None,
               on_event: EventSink = None, should_stop: StopRequest = None, cuda_graphs: bool = True,
               dtype: torch.dtype | None = None) -> TrainResult:
    """:func:`train` with graph-replayed steps (same arguments, result, errors).

    ``cuda_graphs=False`` runs the same step code eagerly (for comparisons). ``dtype`` casts the
    model (e.g. ``torch.float64`` for CPU equivalence tests); None keeps fp32 weights.
    """
    return _train([job], data, device, [checkpoint_path], [on_event], should_stop, mode="graph",
                  use_graph=cuda_graphs, dtype=dtype)[0]


def train_repeats_fused(jobs: Sequence[TrainJob], data: Splits, *, device: str = "cuda",
                        checkpoint_paths: Sequence[str | None] | None = None,
                        on_events: Sequence[EventSink] | None = None, should_stop: StopRequest = None,
                        cuda_graphs: bool = True, dtype: torch.dtype | None = None,
                        split_convs: bool = False) -> list[TrainResult]:
    """Train the repeats of one cell (same cell, epochs, config) as one fused network.

    ``split_convs``: run each grouped conv as one conv per repeat (same weights, same result;
    for a backend whose grouped kernels fail, see :class:`farm.fused.SplitGroupConv2d`).

    ``checkpoint_paths[i]`` and ``on_events[i]`` belong to ``jobs[i]``: each job gets exactly the
    checkpoints and events :func:`train` would give it. Resumes together when the jobs' checkpoints
    agree (all absent, all complete, or all at the same step); otherwise each job resumes alone
    (as :func:`train_fast`), which is slower but loses nothing. ``should_stop`` stops them all
    (one :class:`Stopped`, after checkpointing every job that has a path).
    """
    return _train(list(jobs), data, device, checkpoint_paths, on_events, should_stop, mode="graph",
                  use_graph=cuda_graphs, dtype=dtype, split_convs=split_convs)


def _train(jobs: list[TrainJob], data: Splits, device: str, paths: Sequence[str | None] | None,
           sinks: Sequence[EventSink] | None, should_stop: StopRequest, **run: Any) -> list[TrainResult]:
    for job in jobs:
        failpoints.hit("train.start", cell=job.cell.hash if isinstance(job.cell, Cell) else None,
                       epochs=job.epochs, repeat=job.repeat)
    resolved = resolve_device(device)
    validate_jobs(jobs, data)
    paths = _per_job(paths, len(jobs), "checkpoint paths")
    sinks = _per_job(sinks, len(jobs), "event sinks")

    def body(jobs: list[TrainJob], paths: list[str | None], sinks: list[EventSink]) -> list[TrainResult]:
        # Inside run_guarded: building the run (weights to the device) can run out of memory too.
        saved = [ckpt.load(path, job.identity()) if path is not None else None
                 for job, path in zip(jobs, paths, strict=True)]
        if not _resumable_together(saved):
            del saved
            alone = zip(jobs, paths, sinks, strict=True)
            return [body([job], [path], [sink])[0] for job, path, sink in alone]
        return Run(jobs, data, resolved, checkpoint_paths=paths, on_events=sinks, should_stop=should_stop,
                   saved=saved, **run).run()

    return run_guarded(resolved, lambda: body(jobs, paths, sinks))


def _per_job(values: Sequence[Any] | None, count: int, what: str) -> list[Any]:
    if values is None:
        return [None] * count
    values = list(values)
    if len(values) != count:
        raise BadInputError(f"{len(values)} {what} for {count} jobs")
    return values


def _resumable_together(states: Sequence[dict[str, Any] | None]) -> bool:
    """All absent, all complete, or all incomplete at the same step."""
    return len({s if s is None else "complete" if s.get("complete") else int(s["step"]) for s in states}) == 1


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)


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
