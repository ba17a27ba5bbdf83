"""The Ray driver loop: claim jobs for idle workers, dispatch them, handle every way a job can end.

(Over 400 lines on purpose: it is one single-threaded state machine, and splitting its handlers
across modules would scatter the state they share. Its options, summary, progress, placement, pool
and fleet are modules of their own.)

One loop, single-threaded, woken by Ray as soon as any worker finishes, starts or dies:

- pool: every few seconds the alive nodes are read and the fleet is grown or shrunk to the
  number of job slots (``scheduler.pool``); workers on a vanished node are dropped.
- claim: enough jobs for the idle workers plus a small prefetch, in one short database statement.
  Prefetched jobs wait in the driver, which heartbeats their leases.
- outcomes: a worker reports done / failed / released / lost after writing it itself. A worker that
  died (process killed, node lost) raises an actor error here, and the driver hands the job back
  at once with ``fail(retryable=True)``: a crash counts as an attempt, the queue decides the rest.
- reap: expired leases (a partition, a lost worker) go back to pending; so do, at once, the leases
  of a driver whose liveness row went stale (killed with -9): no wait for their TTL.
- stop: the first SIGTERM/SIGINT stops claiming, releases prefetched jobs, asks every busy worker
  to checkpoint and release, and waits up to ``drain_timeout_s``; a second signal exits at once.

The database is the only source of truth: Ray's retries are off, and the loop keeps going through a
database outage (its own calls back off; the workers' writes retry on their side).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

import ray
import ray.exceptions

from db.errors import DatabaseUnavailable
from db.queue import ClaimedJob, JobQueue
from db.retry import GaveUp, retry_db
from scheduler.breaker import CircuitBreaker
from scheduler.fleet import Fleet, Worker
from scheduler.health import HealthBook
from scheduler.metrics import FarmMetrics
from scheduler.options import RunOptions
from scheduler.placement import CardShare, IdleWorker, assign, no_share, usable_idle
from scheduler.pool import (
    AUTO,
    WorkerShape,
    alive_nodes,
    auto_shape,
    choose_shape,
    pool_target,
)
from scheduler.progress import RunProgress
from scheduler.signals import ImmediateExit, StopRequest
from scheduler.summary import ACTIVE_STATUSES, RunSummary
from workers.contracts import JobOutcome, WorkerSettings
from workers.contracts import OutcomeStatus as Status
from workers.job import MAX_FUSED_REPEATS, group_runner

log = logging.getLogger("nasfarm.run")

# How often a driver renews its liveness row (db.queue_fleet: stale after 3 missed beats + 5 s).
LIVENESS_INTERVAL_S = 5.0


class FarmError(RuntimeError):
    """The run cannot go on (workers cannot start, the cluster has no usable resources...)."""


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Driver:
    def __init__(
        self,
        queue: JobQueue,
        engine_url: str,
        campaigns: list[str],
        opts: RunOptions,
        payload: dict[str, Any] | None,
        stop: StopRequest,
        on_progress: Callable[[dict[str, int]], None] | None = None,
        *,
        storage_root: str,
    ):
        self.queue = queue
        self.campaigns = campaigns
        self.opts = opts
        self.stop = stop
        self.owner = default_owner()
        self.summary = RunSummary(campaigns=list(campaigns), owner=self.owner, follow=opts.follow)
        # Claimed, not yet dispatched (prefetch): units of one job, or (--trainer fused) of the
        # repeats of one cell, claimed together to train as one network.
        self.buffer: list[list[ClaimedJob]] = []
        self.grouped = group_runner(opts.trainer) is not None
        self.hand_backs: list[tuple[ClaimedJob, str]] = []  # dead workers' jobs, while the database is away
        self.started = time.monotonic()
        self.storage_root = storage_root
        # Once; Ray copies it once to each node that runs a worker (None: workers read their own).
        data_ref = ray.put(payload) if payload is not None else None
        self.shape, self.share, self.smallest_share = self._choose_shape(
            [n.resources for n in alive_nodes()])
        self.fleet = Fleet(self.shape, WorkerSettings(
            engine_url=engine_url,
            storage_root=self.storage_root,
            device=opts.device,
            lease_ttl_s=opts.lease_ttl_s,
            retry_backoff_s=opts.retry_backoff_s,
            cpus=self.shape.cpus,
            keep_checkpoints=opts.keep_checkpoints,
            trainer=opts.trainer,
            job_runner=opts.job_runner,
            data_from=opts.data_from,
            node_data_dir=opts.data_dir if opts.data_from == "nodes" else None,
        ), data_ref)
        self.health = HealthBook(opts.drain_after_faults, opts.drain_window_s)
        self.breaker = CircuitBreaker(opts.breaker_window, opts.breaker_threshold)
        # Nodes where a job failed with an error no rule knows: it retries on another node first.
        self.avoid: dict[int, set[str]] = {}
        self.heartbeat_s = max(opts.lease_ttl_s / 4.0, 0.05)
        self.liveness_s = min(LIVENESS_INTERVAL_S, self.heartbeat_s)
        self.reap_every_s = max(opts.lease_ttl_s / 4.0, 1.0)
        self.draining_since: float | None = None
        self.init_failures = 0
        self.last_init_error: str | None = None
        self.next_claim = 0.0
        self.next_resize = 0.0
        self.next_reap = 0.0
        self.next_beat = 0.0
        self.next_alive = 0.0
        self.next_count = 0.0
        self.counts: dict[str, int] = {}
        self.db_down_until = 0.0
        self.db_down_since: float | None = None
        self.capacity_warned = False
        self.progress = RunProgress(opts.progress, on_progress)
        self.metrics = FarmMetrics()

    def _choose_shape(
        self, nodes: list[dict[str, float]]
    ) -> tuple[WorkerShape, Callable[[list[ClaimedJob]], float], float]:
        """The worker actors' shape, each unit's share of its GPU (0: Ray's shape suffices) and
        the smallest share a unit can have."""
        opts = self.opts
        if opts.gpus_per_job == AUTO:
            from farm.packing import DEFAULT_RULE

            shape = auto_shape(nodes, DEFAULT_RULE.max_jobs_per_gpu, opts.cpus_per_job)
            if shape.uses_gpu:
                return shape, CardShare(), 1.0 / DEFAULT_RULE.max_jobs_per_gpu
            return shape, no_share, 0.0
        cluster_gpus = sum(n.get("GPU", 0.0) for n in nodes)
        return choose_shape(cluster_gpus, float(opts.gpus_per_job), opts.cpus_per_job), no_share, 0.0

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> RunSummary:
        log.info("driver %s: %s, storage %s", self.owner, self.shape.describe(), self.storage_root)
        # A liveness row: a driver that finds it stale (this one killed -9) reaps our leases at once.
        self._db(lambda: self.queue.register_driver(self.owner, self.liveness_s), "register driver")
        immediate = False
        try:
            while True:
                now = time.monotonic()
                if self.draining_since is None and (self.stop.requested.is_set() or self.summary.stopped_by):
                    self._begin_drain()
                if self.draining_since is not None:
                    if not self.fleet.busy() or now - self.draining_since > self.opts.drain_timeout_s:
                        break
                else:
                    if now >= self.next_resize:
                        self._resize()
                    if self._finished(now):
                        break
                    self._maintain(now)
                    self._claim(now)
                    self._dispatch()
                self._wait()
        except ImmediateExit:
            immediate = True  # second signal: no more database calls, the leases expire
            raise
        finally:
            self._close(immediate)
        return self.summary

    def _db(self, call: Callable[[], Any], what: str, default: Any = None) -> Any:
        """One driver-side database call; an outage is logged and skipped, the loop goes on."""
        if time.monotonic() < self.db_down_until:
            return default
        try:
            value = call()
        except DatabaseUnavailable as exc:
            if self.db_down_since is None:
                self.db_down_since = time.monotonic()
                log.warning("%s: %s; the driver keeps going and retries", what, exc)
            self.db_down_until = time.monotonic() + 2.0
            return default
        if self.db_down_since is not None:
            log.warning("database back after %.0f s", time.monotonic() - self.db_down_since)
            self.db_down_since = None
        return value

    # -- pool ----------------------------------------------------------------------------------

    def _resize(self) -> None:
        self.next_resize = time.monotonic() + self.opts.resize_interval_s
        nodes = alive_nodes()
        alive_ids = [n.node_id for n in nodes]
        for worker in self.fleet.on_nodes(alive_ids):
            log.warning("node of %s is gone; dropping the worker", worker.describe())
        target = pool_target((n.resources for n in nodes), self.shape, self.opts.max_workers)
        if target == 0 and not self.capacity_warned:
            log.warning("the cluster has no slot for %s; waiting for nodes", self.shape.describe())
            self.capacity_warned = True
        elif target:
            self.capacity_warned = False
        before = len(self.fleet)
        self.fleet.resize(target, alive_ids)
        self.summary.workers_started = self.fleet.created
        if len(self.fleet) != before:
            log.info("worker pool %d -> %d", before, len(self.fleet))

    # -- database upkeep ----------------------------------------------------------------------

    def _maintain(self, now: float) -> None:
        self._flush_hand_backs()
        if now >= self.next_alive:
            # Liveness, and the leases of drivers that lost theirs: a short fixed beat, whatever
            # the lease TTL, so a driver killed -9 costs its jobs seconds, not the TTL.
            self.next_alive = now + self.liveness_s
            self._db(lambda: self.queue.beat_driver(self.owner), "driver heartbeat")
            orphaned = self._db(lambda: self.queue.reap_dead_drivers(self.owner), "reap dead drivers", 0)
            if orphaned:
                log.warning("took back %d lease(s) of driver(s) that are gone", orphaned)
            # Adaptive campaigns: promote what is ready (db.promotions; cheap when nothing is).
            self._db(lambda: self.queue.promote_ready_budgets(self.campaigns or None, decided_by=self.owner),
                     "promote")
        if now >= self.next_reap:
            self.next_reap = now + self.reap_every_s
            reaped = self._db(lambda: self.queue.reap(legacy_ttl_s=self.opts.lease_ttl_s), "reap", 0)
            if reaped:
                log.warning("reaped %d expired lease(s)", reaped)

        if now >= self.next_beat and self.buffer:
            self.next_beat = now + self.heartbeat_s
            kept = []
            for unit in self.buffer:
                alive = [job for job in unit if self._beat_prefetched(job)]
                if alive:
                    kept.append(alive)
            self.buffer = kept

    def _beat_prefetched(self, job: ClaimedJob) -> bool:
        alive = self._db(lambda: self.queue.heartbeat(job.job_id, job.lease_token,
                                                      lease_ttl_s=self.opts.lease_ttl_s),
                         "heartbeat (prefetched)", True)
        if not alive:
            log.warning("prefetched job %d lost its lease", job.job_id)
        return alive

    def _claim(self, now: float) -> None:
        # Claim only for workers that exist (a cluster without capacity should leave the jobs to
        # other drivers), but keep the prefetch topped up while they are all busy: the next worker
        # to finish then gets a job without a database round trip.
        if now < self.next_claim or not any(w.ready and not w.drained for w in self.fleet.workers.values()):
            return
        # Idle workers on a card too full for even the smallest job do not count (auto packing).
        usable = usable_idle(self._idle_slots(), self.fleet.load(), smallest_share=self.smallest_share)
        wanted = usable + self.opts.prefetch - len(self.buffer)
        if wanted <= 0:
            return
        claimed = self._db(lambda: self._claim_units(wanted), "claim", [])
        self.buffer.extend(claimed)
        if len(claimed) < wanted:
            # The queue is dry (or backing off): ask again after a poll interval, not in a spin.
            self.next_claim = now + self.opts.poll_interval_s

    def _claim_units(self, wanted: int) -> list[list[ClaimedJob]]:
        """``wanted`` units: jobs one by one, or (--trainer fused) the repeats of a cell together."""
        campaigns = self.campaigns or None
        if self.grouped:
            return self.queue.claim_groups(wanted, self.owner, campaigns=campaigns,
                                           max_group=MAX_FUSED_REPEATS, lease_ttl_s=self.opts.lease_ttl_s)
        return [[job] for job in self.queue.claim(wanted, self.owner, campaigns=campaigns,
                                                  lease_ttl_s=self.opts.lease_ttl_s)]

    def _idle_slots(self) -> list[IdleWorker]:
        return [IdleWorker(worker, worker.device, worker.node_id) for worker in self.fleet.idle()]

    def _avoided_nodes(self, unit: list[ClaimedJob]) -> set[str]:
        """Nodes where a job of ``unit`` failed with an unknown error, unless no other node is
        there to try (then the same node again: the job's attempt budget still bounds it)."""
        avoided = set().union(*(self.avoid.get(job.job_id, set()) for job in unit))
        if not avoided:
            return avoided
        others = {w.node_id for w in self.fleet.workers.values() if not w.drained} - avoided
        return avoided if others else set()

    def _dispatch(self) -> None:
        if not self.buffer:
            return
        plan = assign(self.buffer, self.share, self._idle_slots(), self.fleet.load(),
                      avoid=self._avoided_nodes)
        for index, worker in plan:
            unit = self.buffer[index]
            worker.jobs = unit
            worker.share = self.share(unit)
            worker.run_ref = worker.handle.run_jobs.remote(unit)
            worker.preempt_sent = False
            self.summary.dispatched += len(unit)
        started = {index for index, _ in plan}
        self.buffer = [unit for index, unit in enumerate(self.buffer) if index not in started]

    def _finished(self, now: float) -> bool:
        if now < self.next_count:
            return False
        self.next_count = now + max(self.opts.poll_interval_s, 0.5)
        counts = self._db(lambda: self.queue.counts(self.campaigns or None), "counts")
        if counts is None:
            return False
        self.counts = counts
        busy = self.fleet.busy()
        workers = self.fleet.workers.values()
        self.metrics.snapshot(counts, {
            "training": len(busy), "idle": len(self.fleet.idle()),
            "starting": sum(1 for w in workers if not w.ready),
            "drained": sum(1 for w in workers if w.drained)}, len(self.health.drained()))
        self.progress.update(self.counts, workers=len(self.fleet.idle()) + len(busy),
                             training=sum(len(w.jobs) for w in busy),
                             running_fraction=self._running_fraction())
        if self.opts.follow or self.buffer or self.fleet.busy():
            return False
        # Done when nothing is pending or running and no adaptive campaign promotes now or still may.
        return not any(counts.get(s, 0) for s in ACTIVE_STATUSES) and self._db(
            lambda: not self.queue.promote_ready_budgets(self.campaigns or None, decided_by=self.owner)
            .can_add_jobs, "promote", False)

    def _running_fraction(self) -> float:
        """Jobs' worth of training done by the running jobs (each busy worker's last answer to
        ``progress()``; asked again now, answered by the next refresh: the loop never waits)."""
        if self.progress.bar is None:
            return 0.0
        total = 0.0
        for worker in self.fleet.busy():
            ref = worker.progress_ref
            if ref is not None:
                ready, _ = ray.wait([ref], timeout=0)
                if ready:
                    with contextlib.suppress(ray.exceptions.RayError):
                        worker.progress_fraction = float(ray.get(ready[0]))
                    worker.progress_ref = None
            if worker.progress_ref is None:
                worker.progress_ref = worker.handle.progress.remote()
            total += worker.progress_fraction * len(worker.jobs)
        return total

    # -- waiting for Ray -------------------------------------------------------------------------

    def _wait(self) -> None:
        refs = self.fleet.refs()
        timeout = self.opts.poll_interval_s
        if self.buffer and self.fleet.idle():
            timeout = 0.0
        if not refs:
            time.sleep(timeout)
            return
        ready, _ = ray.wait(list(refs), num_returns=1, timeout=timeout)
        if ready:
            ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=0)
        for ref in ready:
            kind, worker = refs[ref]
            if kind == "ready":
                self._on_ready(worker, ref)
            else:
                self._on_outcome(worker, ref)

    def _on_ready(self, worker: Worker, ref: Any) -> None:
        worker.ready_ref = None
        try:
            worker.info = ray.get(ref)
        except ray.exceptions.RayError as exc:
            self.fleet.remove(worker)
            self.init_failures += 1
            self.last_init_error = _first_line(exc)
            log.warning("a worker failed to start: %s", self.last_init_error)
            if self.init_failures >= 3 and not any(w.ready for w in self.fleet.workers.values()):
                raise FarmError(f"workers cannot start: {self.last_init_error}") from exc
            return
        self.init_failures = 0
        problems = worker.info.get("problems") or []
        if problems:
            # The node-local checks failed: this node is drained before it takes a single job.
            node = worker.node_id or worker.describe()
            for problem in problems:
                self.health.environment_fault(node, worker.describe(), problem)
            self._drain_node(node, worker.describe(), problems[0], force=True)
            return
        if self.health.is_drained(worker.node_id):
            worker.drained = True  # a new worker on a node drained before: it gets no job
            self._check_healthy_nodes()
            return
        self.summary.worker_threads.append(int(worker.info.get("torch_threads", 0)))
        log.info("worker ready: %s (%s, %s CPU(s), %d torch thread(s))", worker.info["node"],
                 worker.info["device"], worker.info.get("cpus"), worker.info.get("torch_threads", 0))

    def _on_outcome(self, worker: Worker, ref: Any) -> None:
        jobs = worker.jobs
        worker.jobs, worker.share, worker.run_ref = [], 0.0, None
        worker.progress_ref, worker.progress_fraction = None, 0.0
        ids = ", ".join(str(job.job_id) for job in jobs)
        try:
            outcomes = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            # run_jobs itself raised (it catches training errors, so this is a bug in the worker):
            # each job is charged an attempt and retried within its budget.
            log.error("worker %s crashed on job(s) %s: %s", worker.describe(), ids, exc)
            for job in jobs:
                self._hand_back(job, f"worker error: {exc}")
            self.summary.failed += len(jobs)
            return
        except ray.exceptions.RayError as exc:
            self.summary.worker_deaths += 1
            self.fleet.remove(worker)
            reason = _first_line(exc)
            log.warning("worker %s died running job(s) %s: %s", worker.describe(), ids, reason)
            for job in jobs:
                self._hand_back(job, f"worker lost ({worker.describe()}): {reason}")
            return
        for outcome in outcomes:
            self._count(outcome, worker)
        first = outcomes[0]
        if worker.last_finished_at is not None and first.status in (Status.DONE, Status.FAILED):
            self.summary.idle_gaps_s.append(max(first.started_at - worker.last_finished_at, 0.0))
        worker.last_finished_at = max(outcome.finished_at for outcome in outcomes)
        if any(outcome.worker_exiting for outcome in outcomes):
            log.warning("worker %s is draining (SIGTERM); retiring it", worker.describe())
            self.fleet.remove(worker)
        elif self.health.is_drained(worker.node_id):
            worker.drained = True
            self._check_healthy_nodes()

    def _count(self, outcome: JobOutcome, worker: Worker) -> None:
        status = outcome.status
        self.summary.handled.add(outcome.job_id)
        self.metrics.outcome(status.value)
        if status is Status.DONE:
            self.summary.done += 1
            self._breaker(None)
        elif status is Status.FAILED:
            self.summary.failed += 1
            log.warning("job %d failed (%s): %s", outcome.job_id,
                        "will retry" if outcome.retryable else "final", outcome.error)
            if outcome.fault == "unknown" and worker.node_id:
                self.avoid.setdefault(outcome.job_id, set()).add(worker.node_id)
            self._breaker(outcome.signature or outcome.error or "unknown error")
        elif status is Status.ENVIRONMENT:
            self.summary.environment_faults += 1
            node = worker.node_id or worker.describe()
            log.warning("job %d released: environment fault on %s: %s", outcome.job_id,
                        worker.describe(), outcome.error)
            if self.health.environment_fault(node, worker.describe(), outcome.error or ""):
                self._drain_node(node, worker.describe(), outcome.error or "")
            else:
                self._record_health(node)
            self._breaker(outcome.signature or outcome.error or "environment fault")
        elif status in (Status.RELEASED, Status.REFUSED):
            self.summary.released += 1
        elif status is Status.LOST:
            self.summary.lost += 1
            log.warning("job %d: lease lost; its result was not written", outcome.job_id)

    def _breaker(self, signature: str | None) -> None:
        trip = self.breaker.record(signature)
        if trip is not None and self.summary.stopped_by is None:
            self.summary.stopped_by = "breaker"
            self.summary.stop_reason = trip.describe()
            log.error("%s", self.summary.stop_reason)

    def _hand_back(self, job: ClaimedJob, error: str) -> None:
        """The job's worker is gone: fail this attempt now (retryable) instead of waiting for the TTL.

        During a database outage the call is queued and retried by the loop; if the lease expires
        first, the reaper does the same thing.
        """
        self.hand_backs.append((job, error))
        self._flush_hand_backs()

    def _flush_hand_backs(self) -> None:
        while self.hand_backs:
            job, error = self.hand_backs[0]
            written = self._db(
                lambda j=job, e=error: self.queue.fail(j.job_id, j.lease_token, e, retryable=True),
                f"job {job.job_id}: hand back", None,
            )
            if written is None:
                return
            self.hand_backs.pop(0)

    # -- stopping ------------------------------------------------------------------------------

    def _drain_node(self, node_id: str, label: str, error: str, *, force: bool = False) -> None:
        """Place no more jobs on ``node_id`` and retire its idle workers (busy ones retire when
        their job ends). With every node drained, the run stops: its jobs stay pending."""
        if force and not self.health.is_drained(node_id):
            self.health.node(node_id, label).drained_at = time.monotonic()
        self.summary.drained_nodes = sorted({*self.summary.drained_nodes, label.rsplit("/pid", 1)[0]})
        log.error("node %s drained (%d environment fault(s)): %s", label.rsplit("/pid", 1)[0],
                  self.health.node(node_id).total_faults, error.splitlines()[0] if error else "")
        self._record_health(node_id)
        # Its workers stay alive but get no job: holding the node's slots, they keep Ray from
        # placing replacements there (which would only be drained in turn).
        for worker in self.fleet.workers.values():
            if worker.node_id == node_id:
                worker.drained = True
        self._check_healthy_nodes()

    def _check_healthy_nodes(self) -> None:
        """Stop the run when every worker is on a drained node (starting ones may still be good)."""
        healthy = [w for w in self.fleet.workers.values() if not w.drained]
        if self.fleet.workers and not healthy and self.summary.stopped_by is None:
            self.summary.stopped_by = "no-healthy-worker"
            self.summary.stop_reason = (
                f"no healthy worker left: node(s) {', '.join(self.summary.drained_nodes)} drained "
                f"after environment faults; the jobs stay pending (fix the nodes, then run again)")
            log.error("%s", self.summary.stop_reason)

    def _record_health(self, node_id: str) -> None:
        health = self.health.node(node_id)
        self._db(lambda: self.queue.record_node_health(
            self.owner, node_id, health.label.rsplit("/pid", 1)[0], health.state, health.total_faults,
            health.last_error), "record node health")

    def _begin_drain(self) -> None:
        self.draining_since = time.monotonic()
        if self.summary.stopped_by is None:
            self.summary.interrupted = self.stop.signal_name or "stop requested"
        reason = self.summary.interrupted or self.summary.stop_reason
        busy = self.fleet.busy()
        log.warning("%s: stopping; %d running job(s) checkpoint and go back to pending",
                    reason, len(busy))
        for worker in busy:
            for job in worker.jobs:
                worker.handle.preempt.remote(job.job_id)
            worker.preempt_sent = True
        for unit in self.buffer:
            for job in unit:
                self._release(job)
        self.buffer.clear()

    def _release(self, job: ClaimedJob) -> None:
        try:
            if retry_db(lambda: self.queue.release(job.job_id, job.lease_token, reason="preempted"),
                        what=f"job {job.job_id}: release", deadline_s=10.0):
                self.summary.released += 1
        except GaveUp as exc:
            log.warning("%s; the reaper will take it after the lease TTL", exc)

    def _close(self, immediate: bool = False) -> None:
        self.progress.close()
        self.summary.abandoned = sum(len(worker.jobs) for worker in self.fleet.busy())
        for worker in self.fleet.busy():
            log.warning("job(s) %s still running on %s at exit; their leases will expire",
                        ", ".join(str(job.job_id) for job in worker.jobs), worker.describe())
        self.fleet.shutdown()
        if not immediate:
            # Leaving on an error: give back what this driver holds but never started.
            self.db_down_until = 0.0
            self._flush_hand_backs()
            for unit in self.buffer:
                for job in unit:
                    self._release(job)
            self.buffer.clear()
            with contextlib.suppress(GaveUp):  # else keep the last counts seen
                self.counts = retry_db(lambda: self.queue.counts(self.campaigns or None),
                                       what="final counts", deadline_s=5.0)
            with contextlib.suppress(GaveUp):
                self.summary.handled_failed = retry_db(
                    lambda: self.queue.failed_among(sorted(self.summary.handled)),
                    what="final status of the jobs handled", deadline_s=5.0)
            with contextlib.suppress(GaveUp):
                retry_db(lambda: self.queue.retire_driver(self.owner), what="retire driver", deadline_s=5.0)
        self.summary.counts = dict(self.counts)
        self.summary.elapsed_s = time.monotonic() - self.started

def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
