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
    all_campaigns: bool = False  # with no campaign named: allow more than one (nasfarm run --all)
    # "driver": the driver reads the data set and ships it to every node through Ray's object store;
    # "nodes": each worker reads its own node's copy at data_dir (a node whose copy is bad is drained).
    data_from: str = "driver"
    # The circuit breaker (scheduler.breaker): stop when >= threshold of the last `window` outcomes
    # failed with one error signature.
    breaker_window: int = 20
    breaker_threshold: float = 0.8
    # Node health (scheduler.health): drain a node after this many environment faults in the window.
    drain_after_faults: int = 3
    drain_window_s: float = 600.0
    job_runner: JobRunner | None = None  # the benchmark's near-zero-work job; None = the trainer
