"""What one ``run_campaigns`` did: counts of outcomes, the cluster it used, idle gaps, the end state."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

ACTIVE_STATUSES = ("pending", "running")
FINISHED_STATUSES = ("done", "failed", "cancelled")

# `nasfarm run` / `nasfarm demo` exit codes (README, "Exit codes"). 2 is click's usage error.
EXIT_OK = 0  # every job this run handled is done (and nothing stopped it)
EXIT_JOBS_FAILED = 1  # some job this run handled failed for good (or the run ended with work left)
EXIT_PREFLIGHT = 3  # pre-flight failed: nothing was claimed
EXIT_BREAKER = 4  # the circuit breaker stopped the run: most outcomes failed the same way
EXIT_NO_HEALTHY_WORKER = 5  # every node was drained for environment faults; jobs stay pending
EXIT_SIGINT = 130  # stopped by Ctrl-C: running jobs checkpointed and released
EXIT_SIGTERM = 143  # stopped by SIGTERM: likewise


@dataclass
class RunSummary:
    campaigns: list[str]
    owner: str
    cluster: str = ""  # the GCS address of the Ray cluster this run used (joined or started)
    done: int = 0  # results committed by this run's workers
    failed: int = 0  # attempts that ended in an error (retried later or failed for good)
    released: int = 0  # jobs handed back as preempted (no attempt charged)
    lost: int = 0  # attempts whose lease had gone (nothing written)
    worker_deaths: int = 0  # actors that died mid-job (process killed, node lost)
    abandoned: int = 0  # jobs still running when the driver exited (their leases expire)
    dispatched: int = 0
    workers_started: int = 0
    interrupted: str | None = None  # the signal that stopped the run, if any
    elapsed_s: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)  # the campaigns' jobs by status at the end
    idle_gaps_s: list[float] = field(default_factory=list, repr=False)
    environment_faults: int = 0  # jobs released because their node was at fault (no attempt charged)
    drained_nodes: list[str] = field(default_factory=list)
    stopped_by: str | None = None  # "breaker" or "no-healthy-worker"
    stop_reason: str | None = None  # the line saying why
    handled: set[int] = field(default_factory=set, repr=False)  # job ids this run dispatched
    handled_failed: int = 0  # of those, failed for good at the end
    worker_threads: list[int] = field(default_factory=list)  # torch threads of each worker started
    follow: bool = False

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_SIGINT if self.interrupted == "SIGINT" else EXIT_SIGTERM
        if self.stopped_by == "breaker":
            return EXIT_BREAKER
        if self.stopped_by == "no-healthy-worker":
            return EXIT_NO_HEALTHY_WORKER
        if self.handled_failed or not (self.complete or self.follow):
            return EXIT_JOBS_FAILED
        return EXIT_OK

    @property
    def complete(self) -> bool:
        """True when the campaigns have no pending or running job left."""
        return not any(self.counts.get(s, 0) for s in ACTIVE_STATUSES)

    def idle_gap_percentile(self, q: int) -> float | None:
        """The q-th percentile (1..99) of a worker's idle time between two jobs, in seconds."""
        gaps = self.idle_gaps_s
        if len(gaps) < 2:
            return gaps[0] if gaps else None
        return statistics.quantiles(gaps, n=100, method="inclusive")[q - 1]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("idle_gaps_s")
        data.pop("handled")
        data["exit_code"] = self.exit_code
        data["idle_gap_p50_s"] = self.idle_gap_percentile(50)
        data["idle_gap_p99_s"] = self.idle_gap_percentile(99)
        data["complete"] = self.complete
        return data
