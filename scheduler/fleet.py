"""The driver's worker actors: creating them to a target size, tracking what each one is doing.

A worker is ``starting`` until its ``ready()`` call returns (constructor done, dataset mapped),
then ``idle`` or ``busy`` with one job. The fleet only bookkeeps; the driver decides.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import ray

from db.queue import ClaimedJob
from scheduler.pool import WorkerShape
from workers.actor import ACTOR_OPTIONS, FarmWorker
from workers.contracts import WorkerSettings

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Worker:
    key: int
    handle: Any  # ray ActorHandle
    ready_ref: Any | None  # ObjectRef of ready() while starting
    info: dict[str, Any] | None = None  # ready()'s answer: pid, node, node_id, device
    jobs: list[ClaimedJob] = field(default_factory=list)  # what it is running (a fused group: several)
    share: float = 0.0  # of its GPU, while busy (scheduler.placement; 0 unless --gpus-per-job auto)
    run_ref: Any | None = None
    preempt_sent: bool = False
    drained: bool = False  # on a node drained for environment faults: alive, but given no job
    progress_ref: Any | None = None  # a pending progress() call (the driver's progress bar)
    progress_fraction: float = 0.0  # its last answer: the running job's share of steps done
    last_finished_at: float | None = None  # worker clock, for the idle gap between jobs

    @property
    def ready(self) -> bool:
        return self.info is not None

    @property
    def busy(self) -> bool:
        return bool(self.jobs)

    @property
    def device(self) -> Any:
        """What the worker's jobs share capacity on: its node's GPUs, or the worker alone."""
        gpus = self.info.get("gpus") if self.info else None
        return (self.info["node_id"], tuple(gpus)) if gpus else ("worker", self.key)

    @property
    def node_id(self) -> str | None:
        return self.info["node_id"] if self.info else None

    def describe(self) -> str:
        return self.info["node"] if self.info else f"worker #{self.key} (starting)"


class Fleet:
    def __init__(self, shape: WorkerShape, settings: WorkerSettings, data_ref: Any):
        self.shape = shape
        self.settings = settings
        self.data_ref = data_ref  # a Ray ObjectRef: resolved on the worker as a top-level argument
        self.remote_class = ray.remote(**ACTOR_OPTIONS)(FarmWorker)
        self.workers: dict[int, Worker] = {}
        self._keys = itertools.count(1)
        self.created = 0

    def __len__(self) -> int:
        return len(self.workers)

    def spawn(self) -> Worker:
        handle = self.remote_class.options(
            num_cpus=self.shape.cpus, num_gpus=self.shape.gpus or None
        ).remote(self.settings, self.data_ref)
        worker = Worker(key=next(self._keys), handle=handle, ready_ref=handle.ready.remote())
        self.workers[worker.key] = worker
        self.created += 1
        return worker

    def resize(self, target: int, alive_node_ids: Iterable[str]) -> None:
        """Grow to ``target`` workers, or shrink by retiring idle ones (never a busy one).

        Busy workers on a vanished node do not count: they are dead, their actor errors are on the
        way (and hand their jobs back), and the healthy workers must not be retired for them.
        """
        alive = set(alive_node_ids)
        live = [w for w in self.workers.values() if not w.ready or w.node_id in alive]
        for _ in range(target - len(live)):
            self.spawn()
        if len(live) > target:
            # Retire workers that cannot be placed first, then idle ones.
            spare = sorted((w for w in live if not w.busy), key=lambda w: (w.ready, w.key))
            for worker in spare[: len(live) - target]:
                self.remove(worker)

    def remove(self, worker: Worker) -> None:
        self.workers.pop(worker.key, None)
        try:
            ray.kill(worker.handle, no_restart=True)
        except Exception as exc:  # already dead: nothing to kill
            log.debug("kill %s: %s", worker.describe(), exc)

    def on_nodes(self, alive_node_ids: Iterable[str]) -> list[Worker]:
        """Forget ready workers whose node is gone (the busy ones also surface as actor errors)."""
        alive = set(alive_node_ids)
        gone = [w for w in self.workers.values() if w.ready and w.node_id not in alive and not w.busy]
        for worker in gone:
            self.remove(worker)
        return gone

    def starting(self) -> list[Worker]:
        return [w for w in self.workers.values() if not w.ready]

    def idle(self) -> list[Worker]:
        """Ready workers without a job, on healthy nodes."""
        return [w for w in self.workers.values() if w.ready and not w.busy and not w.drained]

    def busy(self) -> list[Worker]:
        return [w for w in self.workers.values() if w.busy]

    def load(self) -> dict[Any, float]:
        """The summed GPU share of the running jobs, per device."""
        load: dict[Any, float] = {}
        for worker in self.busy():
            load[worker.device] = load.get(worker.device, 0.0) + worker.share
        return load

    def refs(self) -> dict[Any, tuple[str, Worker]]:
        """Every object ref the driver waits on: ready() of starting workers, run_jobs() of busy ones."""
        refs: dict[Any, tuple[str, Worker]] = {}
        for worker in self.workers.values():
            if worker.ready_ref is not None:
                refs[worker.ready_ref] = ("ready", worker)
            if worker.run_ref is not None:
                refs[worker.run_ref] = ("run", worker)
        return refs

    def shutdown(self) -> None:
        for worker in list(self.workers.values()):
            self.remove(worker)
