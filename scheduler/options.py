"""How ``run_campaigns`` works through its campaigns: ``nasfarm run``'s options, typed and frozen."""

from __future__ import annotations

from dataclasses import dataclass

from workers.contracts import JobRunner, TrainerName


@dataclass(frozen=True)
class RunOptions:
    """How ``run_campaigns`` works through its campaigns (``nasfarm run``'s options)."""

    address: str | None = None
    gpus_per_job: float | str = 1.0  # or "auto": each job's share of a card from its cell's FLOPs
    cpus_per_job: float | None = None
    max_workers: int | None = None
    storage: str | None = None
    data_dir: str | None = None
    lease_ttl_s: float = 120.0
    retry_backoff_s: float = 30.0  # first delay before a failed/crashed job runs again (doubles)
    follow: bool = False
    device: str = "auto"
    prefetch: int = 1
    keep_checkpoints: bool = False
    drain_timeout_s: float = 45.0
    poll_interval_s: float = 0.5
    resize_interval_s: float = 2.0
    progress: bool | None = None  # None: a bar when stderr is a terminal
    trainer: TrainerName = TrainerName.FAITHFUL
    job_runner: JobRunner | None = None  # the benchmark's near-zero-work job; None = the trainer
