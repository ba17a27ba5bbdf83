"""The typed handoffs between the driver and its workers: what a worker is configured with, what it
reports back for each job, and which trainer it runs.

Everything here crosses a process boundary through Ray (pickled), so it is plain frozen data.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol


class TrainerName(enum.StrEnum):
    """``nasfarm run --trainer``: how a worker trains (one list, used by the CLI, driver and worker).

    FAITHFUL: the reference loop, op by op. FAST: the same run with the whole step replayed as one
    CUDA graph (same results, checkpoints and events). FUSED: FAST, with the repeats of a cell
    claimed together and trained as one repeat-grouped network.
    """

    FAITHFUL = "faithful"
    FAST = "fast"
    FUSED = "fused"

    @classmethod
    def parse(cls, value: str | TrainerName) -> TrainerName:
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown trainer {value!r}; one of {', '.join(t.value for t in cls)}") from None


class JobRunner(Protocol):
    """Trains one job (``farm.train``'s single-job entry point's shape); the farm benchmark injects
    a near-zero-work one."""

    def __call__(self, job: Any, data: Any, *, device: str, checkpoint_path: str | None,
                 on_event: Callable[[dict], None] | None,
                 should_stop: Callable[[], bool] | None) -> Any: ...


class GroupRunner(Protocol):
    """Trains the repeats of one cell together: one result per job, in order."""

    def __call__(self, jobs: Sequence[Any], data: Any, *, device: str,
                 checkpoint_paths: Sequence[str | None],
                 on_events: Sequence[Callable[[dict], None] | None],
                 should_stop: Callable[[], bool] | None) -> list[Any]: ...


@dataclass(frozen=True)
class WorkerSettings:
    """What every worker actor of one run is built with (the data set travels beside it as a Ray
    object reference, which Ray resolves only when it is a top-level argument)."""

    engine_url: str
    storage_root: str
    device: str = "auto"
    lease_ttl_s: float = 120.0
    retry_backoff_s: float = 30.0
    cpus: float = 1.0
    keep_checkpoints: bool = False
    trainer: TrainerName = TrainerName.FAITHFUL
    job_runner: JobRunner | None = None  # None: the trainer's own
    # Where the data set comes from: "driver" = the driver's copy, shipped through Ray's object
    # store (the argument beside these settings); "nodes" = each worker reads its own node's copy
    # (``nasfarm run --data-from nodes``), at node_data_dir or, if None, the node's own default
    # (NASFARM_DATA_DIR / the config / the cache, as that node sees them), so a node whose copy
    # is bad is found and drained.
    data_from: str = "driver"
    node_data_dir: str | None = None


class OutcomeStatus(enum.StrEnum):
    """How one job's turn on a worker ended, as the worker reports it to the driver."""

    DONE = "done"  # result committed
    FAILED = "failed"  # error recorded; the queue retries it (backoff) or marks it failed
    RELEASED = "released"  # preempted: checkpointed and back to pending, attempt not charged
    LOST = "lost"  # the lease was gone: nothing written
    REFUSED = "refused"  # the worker is draining: job released untouched
    ENVIRONMENT = "environment"  # the node is at fault: job released uncharged, with backoff


@dataclass(frozen=True)
class JobOutcome:
    """One job's report from a worker. Times are the worker's wall clock (``time.time()``)."""

    job_id: int
    status: OutcomeStatus
    started_at: float
    finished_at: float
    node: str
    worker_exiting: bool = False  # the worker got SIGTERM and retires after this
    resumed_epoch: float = 0.0
    released: bool | None = None  # RELEASED/REFUSED: whether the release was written
    checkpointed: bool | None = None
    stopped_epoch: float | None = None
    reason: str | None = None
    error: str | None = None  # FAILED / ENVIRONMENT: "Type: message"
    signature: str | None = None  # workers.faults.error_signature of the error
    fault: str | None = None  # workers.faults.FaultKind of the error
    retryable: bool | None = None
    heartbeats: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        return data
