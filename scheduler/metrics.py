"""The farm's own numbers where a Ray operator already looks: Ray's metrics (``ray.util.metrics``).

Exported by every node's metrics agent in Prometheus format (``ray_`` prefixed by Ray), so the
cluster's Prometheus/Grafana shows them beside Ray's own:

- ``ray_nasfarm_jobs_total`` (counter, tag ``outcome``: done, failed, released, environment,
  lost): job outcomes reported to this driver;
- ``ray_nasfarm_queue_jobs`` (gauge, tag ``status``): the run's campaigns' jobs by status;
- ``ray_nasfarm_workers`` (gauge, tag ``state``: training, idle, starting, drained): this
  driver's worker actors;
- ``ray_nasfarm_nodes_drained`` (gauge): nodes drained for environment faults;
- ``ray_nasfarm_epoch_seconds`` (histogram, from the workers: :mod:`workers.metrics`): training
  seconds of each epoch.

Driver-side metrics carry Ray's own ``WorkerId``/``NodeAddress`` tags, so two drivers' series stay
apart. Recording is a local call (Ray batches the export); a metric that cannot be recorded never
stops the farm.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

class FarmMetrics:
    """The driver's metrics; a no-op when Ray's metrics cannot be created."""

    def __init__(self) -> None:
        try:
            from ray.util.metrics import Counter, Gauge

            self.jobs = Counter("nasfarm_jobs", description="Job outcomes reported to the driver.",
                                tag_keys=("outcome",))
            self.queue = Gauge("nasfarm_queue_jobs", description="The run's jobs by status.",
                               tag_keys=("status",))
            self.workers = Gauge("nasfarm_workers", description="The driver's worker actors by state.",
                                 tag_keys=("state",))
            self.drained = Gauge("nasfarm_nodes_drained",
                                 description="Nodes drained for environment faults.")
        except Exception as exc:  # noqa: BLE001 -- metrics are for people; the farm goes on
            log.debug("Ray metrics unavailable: %s", exc)
            self.jobs = None

    def outcome(self, outcome: str) -> None:
        if self.jobs is not None:
            self.jobs.inc(1.0, tags={"outcome": outcome})

    def snapshot(self, counts: dict[str, int], workers: dict[str, int], drained_nodes: int) -> None:
        if self.jobs is None:
            return
        for status, n in counts.items():
            self.queue.set(float(n), tags={"status": status})
        for state, n in workers.items():
            self.workers.set(float(n), tags={"state": state})
        self.drained.set(float(drained_nodes))
