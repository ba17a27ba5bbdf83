"""What one ``run_campaigns`` did: counts of outcomes, the cluster it used, idle gaps, the end state."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

ACTIVE_STATUSES = ("pending", "running")
FINISHED_STATUSES = ("done", "failed", "cancelled")


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
        data["idle_gap_p50_s"] = self.idle_gap_percentile(50)
        data["idle_gap_p99_s"] = self.idle_gap_percentile(99)
        data["complete"] = self.complete
        return data
