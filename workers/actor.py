"""The worker actor: runs ONE job at a time (or, for the fused trainer, the repeats of one cell
trained together), from its lease to its result.

For each job: record the attempt (with the epoch its checkpoint resumes from), start the lease
keeper thread, train (resuming from the job's checkpoint, checkpointing every epoch to the job's
location in ``--storage``), then write the result and the done status in one fenced transaction
and remove the checkpoint. Every database write retries through outages (``db.retry``).

Stopping: ``preempt(job_id)`` (from the driver, on its own thread: a separate concurrency group)
and SIGTERM/SIGINT to this process (a node drain, a spot reclaim) make training checkpoint at its
next step and the job go back to pending as preempted, without charging an attempt. A lost lease
stops training too (``LeaseLost`` raised out of the loop), but then nothing more is written, not
even a checkpoint: the job may already be training elsewhere.

A fused group: each job keeps its own lease, keeper thread, checkpoint, events and result; the
group stops as one (a stop or a failure applies to every job in it). When one job's lease is lost,
the others go back to pending uncharged and resume from their last epoch checkpoint.

The actor is created by the driver with ``max_restarts=0`` and ``max_task_retries=0``: when it dies,
the driver hands the job back to the database, which alone decides about retries.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import ray

from db.queue import ClaimedJob
from db.retry import retry_db
from workers import storage
from workers.checks import node_problems
from workers.contracts import JobOutcome, WorkerSettings
from workers.contracts import OutcomeStatus as Status
from workers.faults import (
    FaultKind,
    classify,
    describe_error,
    error_signature,
    is_retryable,
    node_key,
    node_key_of,
)
from workers.heartbeat import LeaseKeeper
from workers.job import build_train_job, checkpoint_epoch, group_runner, trainer_runner
from workers.metrics import EpochTimer

log = logging.getLogger(__name__)

class LeaseLost(Exception):
    """Raised through the training loop when the job's lease is gone: stop without any write."""


@dataclass
class _Lease:
    """A job this worker holds and trains: its lease keeper, checkpoint and where it resumed."""

    job: ClaimedJob
    train_job: Any  # farm.train.TrainJob (the trainer is imported only inside the worker)
    location: str
    resumed_epoch: float
    keeper: LeaseKeeper


class FarmWorker:
    """Plain class; the driver makes it a Ray actor (``ray.remote(FarmWorker).options(...)``)."""

    def __init__(self, settings: WorkerSettings, data_payload: dict[str, Any] | None):
        from db.engine import make_engine
        from db.queue import JobQueue

        self.settings = settings
        self.queue = JobQueue(make_engine(settings.engine_url), backoff_base=settings.retry_backoff_s)
        self.storage_root = settings.storage_root
        self.device = _resolve_device(settings.device)
        # Node-local problems found at start (reported by ready(): the driver drains the node).
        self.problems: list[str] = []
        self.data = self._load_data(settings, data_payload)
        self.heartbeat_s = max(settings.lease_ttl_s / 4.0, 0.05)
        self.keep_checkpoints = settings.keep_checkpoints
        self.job_runner = settings.job_runner or trainer_runner(settings.trainer)
        self.group_runner = group_runner(settings.trainer)
        self.pid = os.getpid()
        self.node_id = ray.get_runtime_context().get_node_id()
        self.node_key = node_key(socket.gethostname(), self.node_id)  # a machine, whatever the worker
        self.node = f"{self.node_key}/pid{self.pid}"
        gpu_ids = ray.get_gpu_ids()
        if gpu_ids:  # shown by `nasfarm status` (active_workers.node): which card a job is on
            self.node += "/gpu" + ",".join(str(g) for g in gpu_ids)
        # torch's intra-op threads = the CPUs Ray gave this actor, not the machine's cores: N
        # workers each running cores-many threads on a shared machine thrash (20x slower measured).
        import torch

        self.cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", settings.cpus)
        torch.set_num_threads(max(int(self.cpus), 1))
        self._lock = threading.Lock()
        self._current: set[int] = set()  # ids of the jobs being trained (a fused group: several)
        self._fraction = 0.0  # of the current job's steps done (progress())
        self._epoch_timer = EpochTimer()  # ray_nasfarm_epoch_seconds
        self._stop = threading.Event()  # polled by train() at every step
        self._stop_reason: str | None = None
        self._preempt_before_start: set[int] = set()
        self._draining = False  # SIGTERM/SIGINT: finish the current job's release, take no more
        self._install_signal_handlers()

    def _load_data(self, settings: WorkerSettings, payload: dict[str, Any] | None) -> Any:
        """The driver's shipped copy, or (``--data-from nodes``) this node's own copy of the
        campaigns' data set, checked against the fingerprint they recorded (a copy that differs
        is a problem of this node: the driver drains it)."""
        if settings.data_from != "nodes":
            from workers.data import from_payload

            return from_payload(payload)
        from farm.datasets import load_dataset
        from workers.data import expectation, node_copy_problems

        dataset, fingerprint = expectation(payload)
        try:
            splits = load_dataset(dataset, settings.node_data_dir)  # None: this node's own default
        except Exception as exc:  # whatever is wrong with this node's copy: the node is at fault
            self.problems.append(f"data set on this node: {type(exc).__name__}: {exc}")
            return None
        self.problems += node_copy_problems(fingerprint, splits.fingerprint)
        return splits

    # -- lifecycle ---------------------------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        # Ray runs actor constructors on the process's main thread, where handlers must be set.
        if threading.current_thread() is not threading.main_thread():
            log.warning("worker %s: not on the main thread; SIGTERM will not checkpoint", self.node)
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        with self._lock:
            self._draining = True
            if self._current:
                self._request_stop("drained")

    def _request_stop(self, reason: str) -> None:
        if self._stop_reason is None:
            self._stop_reason = reason
        self._stop.set()

    def ready(self) -> dict[str, Any]:
        """Called once by the driver: the worker is constructed (data loaded), where it runs, and
        what is wrong with its node (``problems``: the node-local checks; non-empty = drain it)."""
        return {
            "pid": self.pid,
            "node": self.node,
            "node_id": self.node_id,
            "device": self.device,
            "problems": self.problems + node_problems(self.device, self.storage_root),
            "cpus": self.cpus,
            "torch_threads": __import__("torch").get_num_threads(),
            # Which card(s) Ray gave this actor: the driver packs jobs per card (--gpus-per-job auto).
            "gpus": [str(g) for g in ray.get_gpu_ids()],
        }

    @ray.method(concurrency_group="control")
    def progress(self) -> float:
        """The fraction of its budget the current job (or fused group) has trained, by steps."""
        return self._fraction if self._current else 0.0

    @ray.method(concurrency_group="control")
    def preempt(self, job_id: int) -> bool:
        """Checkpoint and release ``job_id`` now (or as soon as it starts). True if it was running."""
        with self._lock:
            if job_id in self._current:
                self._request_stop("preempted")
                return True
            self._preempt_before_start.add(job_id)
            return False

    # -- one job, or the repeats of a cell together ---------------------------------------------------

    def run_jobs(self, jobs: list[ClaimedJob]) -> list[JobOutcome]:
        """Train claimed jobs (``db.queue.ClaimedJob``) and record how each ended, in order.

        One job trains alone. Several are the repeats of one cell, claimed together for the fused
        trainer: each keeps its own lease, checkpoint, events and result, and they train as one
        repeat-grouped network (``workers.job.group_runner``).
        """
        started_at = time.time()
        ids = {job.job_id for job in jobs}
        with self._lock:
            refused = self._draining or bool(ids & self._preempt_before_start)
            self._preempt_before_start -= ids
            if not refused:
                self._current = ids
                self._fraction = 0.0
                self._stop.clear()
                self._stop_reason = None
        if refused:
            return [self._refuse(job, started_at) for job in jobs]
        try:
            return self._run(jobs, started_at)
        finally:
            with self._lock:
                self._current = set()
            if self.device.startswith("cuda"):
                import torch

                torch.cuda.empty_cache()

    def _refuse(self, job: ClaimedJob, started_at: float) -> JobOutcome:
        ok = retry_db(lambda: self.queue.release(job.job_id, job.lease_token, reason="preempted"),
                      what=f"job {job.job_id}: release")
        status = Status.REFUSED if self._draining else Status.RELEASED
        return self._outcome(job, status, started_at, released=ok)

    def _run(self, jobs: list[ClaimedJob], started_at: float) -> list[JobOutcome]:
        outcomes: dict[int, JobOutcome] = {}
        leases: list[_Lease] = []
        for job in jobs:
            began = self._begin(job, started_at)
            if isinstance(began, _Lease):
                leases.append(began)
            else:  # failed or lost before training: the others still train
                outcomes[job.job_id] = began
        if leases:
            for lease, outcome in zip(leases, self._train(leases, started_at), strict=True):
                outcomes[lease.job.job_id] = outcome
        return [outcomes[job.job_id] for job in jobs]

    def _begin(self, job: ClaimedJob, started_at: float) -> _Lease | JobOutcome:
        """Record the attempt and start the job's lease keeper; an outcome if it cannot train."""
        queue, token = self.queue, job.lease_token
        location = job.checkpoint_location or storage.checkpoint_location(self.storage_root, job)
        try:
            train_job = build_train_job(job)
            resumed_epoch, quarantined = self._resume_point(job, train_job, location)
        except Exception as exc:  # a bad cell or profile, storage that cannot be read
            return self._fail(job, exc, started_at, resumed_epoch=0.0)

        if not retry_db(lambda: queue.start_attempt(job.job_id, token, node=self.node,
                                                    resumed_from_epoch=resumed_epoch),
                        what=f"job {job.job_id}: start attempt"):
            return self._outcome(job, Status.LOST, started_at)
        if location != job.checkpoint_location and not retry_db(
            lambda: queue.set_checkpoint(job.job_id, token, location),
            what=f"job {job.job_id}: set checkpoint",
        ):
            return self._outcome(job, Status.LOST, started_at)
        if quarantined is not None:
            retry_db(lambda: queue.record_event(job.job_id, token, "ckpt_quarantine",
                                                error=quarantined),
                     what=f"job {job.job_id}: record quarantine")
        try:
            storage.prepare_location(location)
        except Exception as exc:  # the checkpoint store is unreachable or read-only: the node's fault
            return self._fail(job, exc, started_at, resumed_epoch=resumed_epoch)
        keeper = LeaseKeeper(queue, job.job_id, token, interval_s=self.heartbeat_s,
                             lease_ttl_s=self.settings.lease_ttl_s).start()
        return _Lease(job, train_job, location, resumed_epoch, keeper)

    def _resume_point(self, job: ClaimedJob, train_job: Any, location: str) -> tuple[float, str | None]:
        """The epoch the job's checkpoint resumes from, and (when the checkpoint could not be used)
        what was done with it. A corrupt or foreign checkpoint is moved aside and the job starts
        from epoch 0: no person has to delete a file for the campaign to finish."""
        from farm.train_errors import CheckpointError

        try:
            return checkpoint_epoch(train_job, location), None
        except CheckpointError as exc:
            moved = storage.quarantine_checkpoint(location)
            note = f"{exc}; moved aside to {moved}; restarting from epoch 0"
            log.warning("job %d: %s", job.job_id, note)
            return 0.0, note

    def _train(self, leases: list[_Lease], started_at: float) -> list[JobOutcome]:
        from farm.train import Stopped

        config = leases[0].train_job.config
        total = max(config.total_steps(leases[0].train_job.epochs), 1)
        per_epoch = config.steps_per_epoch()
        first_step = round(leases[0].resumed_epoch * per_epoch)
        steps = [first_step]

        def should_stop() -> bool:
            # Called once before every training step: it also counts them, so the driver's
            # progress moves by steps, not by whole jobs (progress()).
            steps[0] += 1
            done = steps[0] - 1  # updates finished before this one
            self._fraction = min(done / total, 1.0)
            for lease in leases:  # the next heartbeat carries it: active_workers' live step/epoch
                lease.keeper.progress(done, done / per_epoch)
            # A lost lease must not even checkpoint (the job may already train elsewhere): raise
            # out of the training loop instead of asking it to stop (which would checkpoint).
            for lease in leases:
                if lease.keeper.lost.is_set():
                    raise LeaseLost(f"job {lease.job.job_id}: lease lost")
            return self._stop.is_set()

        timer = self._epoch_timer
        timer.last = 0.0 if leases[0].resumed_epoch == 0 else None  # resumed: the next epoch starts it

        def timed(post):  # the first job's events also feed the epoch-seconds histogram
            def sink(event: dict) -> None:
                timer.event(event)
                post(event)
            return sink

        sinks = [timed(leases[0].keeper.post)] + [lease.keeper.post for lease in leases[1:]]
        try:
            if len(leases) == 1:
                (lease,) = leases
                results = [self.job_runner(
                    lease.train_job, self.data, device=self.device, checkpoint_path=lease.location,
                    on_event=sinks[0], should_stop=should_stop)]
            else:
                results = self.group_runner(
                    [lease.train_job for lease in leases], self.data, device=self.device,
                    checkpoint_paths=[lease.location for lease in leases],
                    on_events=sinks, should_stop=should_stop)
        except LeaseLost:
            # Nothing is written for a job whose lease is gone. A repeat trained beside it still
            # holds its lease: it goes back to pending uncharged, resuming from its last epoch
            # checkpoint (the one being trained now was never saved).
            return [self._after_sibling_lost(lease, started_at) for lease in leases]
        except Stopped as stopped:
            return [self._release(lease, started_at, checkpointed=stopped.checkpointed,
                                  stopped_epoch=stopped.epoch) for lease in leases]
        except Exception as exc:
            return [self._failed(lease, exc, started_at) for lease in leases]
        return [self._complete(lease, result, started_at)
                for lease, result in zip(leases, results, strict=True)]

    def _lost(self, lease: _Lease, started_at: float) -> JobOutcome:
        return self._outcome(lease.job, Status.LOST, started_at, resumed_epoch=lease.resumed_epoch)

    def _after_sibling_lost(self, lease: _Lease, started_at: float) -> JobOutcome:
        if lease.keeper.lost.is_set():
            lease.keeper.close(flush=False)
            return self._lost(lease, started_at)
        return self._release(lease, started_at, checkpointed=False, stopped_epoch=None,
                             reason="a repeat trained with it lost its lease")

    def _release(self, lease: _Lease, started_at: float, *, checkpointed: bool,
                 stopped_epoch: float | None, reason: str | None = None) -> JobOutcome:
        job = lease.job
        if not lease.keeper.close(flush=True):
            return self._lost(lease, started_at)
        ok = retry_db(lambda: self.queue.release(job.job_id, job.lease_token, reason="preempted"),
                      what=f"job {job.job_id}: release")
        return self._outcome(job, Status.RELEASED, started_at, resumed_epoch=lease.resumed_epoch,
                             released=ok, checkpointed=checkpointed, stopped_epoch=stopped_epoch,
                             reason=reason or self._stop_reason)

    def _failed(self, lease: _Lease, exc: BaseException, started_at: float) -> JobOutcome:
        if not lease.keeper.close(flush=True):
            return self._lost(lease, started_at)
        return self._fail(lease.job, exc, started_at, resumed_epoch=lease.resumed_epoch)

    def _complete(self, lease: _Lease, result: Any, started_at: float) -> JobOutcome:
        job = lease.job
        if not lease.keeper.close(flush=True):
            return self._lost(lease, started_at)
        payload = result.to_dict()
        committed = retry_db(lambda: self.queue.complete(job.job_id, job.lease_token, payload),
                             what=f"job {job.job_id}: complete")
        if not committed:
            return self._lost(lease, started_at)
        if not self.keep_checkpoints:
            try:
                storage.remove_checkpoint(lease.location)
            except OSError as exc:  # the result is safe; a stray file is only disk space
                log.warning("job %d: could not remove checkpoint %s: %s", job.job_id, lease.location, exc)
        return self._outcome(job, Status.DONE, started_at, resumed_epoch=lease.resumed_epoch,
                             heartbeats=lease.keeper.beats)

    def _fail(self, job: ClaimedJob, exc: BaseException, started_at: float, *,
              resumed_epoch: float) -> JobOutcome:
        """Record how the job's turn failed, by whose fault (``workers.faults``)."""
        from farm.train_errors import CheckpointError

        kind = classify(exc)
        error, signature = describe_error(exc), error_signature(exc)
        summary = dict(resumed_epoch=resumed_epoch, error=f"{type(exc).__name__}: {exc}",
                       signature=signature, fault=kind.value)
        token = job.lease_token
        if isinstance(exc, CheckpointError) and job.checkpoint_location:
            # Found unusable only while restoring: move it aside; the job restarts, uncharged.
            moved = storage.quarantine_checkpoint(job.checkpoint_location)
            ok = retry_db(lambda: self.queue.release(job.job_id, token, reason="checkpoint_quarantined",
                                                     error=f"{error}\nmoved aside to {moved}"),
                          what=f"job {job.job_id}: release")
            return self._outcome(job, Status.RELEASED if ok else Status.LOST, started_at,
                                 reason="corrupt checkpoint moved aside", **summary)
        if kind is FaultKind.ENVIRONMENT:
            ok = retry_db(lambda: self.queue.release(job.job_id, token, reason="environment", error=error,
                                                     signature=signature, backoff=True),
                          what=f"job {job.job_id}: release")
            return self._outcome(job, Status.ENVIRONMENT if ok else Status.LOST, started_at, **summary)
        if kind is FaultKind.UNKNOWN:
            # Retried on another node; the job's fault once it failed so on two different nodes.
            earlier = retry_db(lambda: self.queue.failure_nodes(job.job_id),
                               what=f"job {job.job_id}: failure nodes")
            retryable = not {node_key_of(n) for n in earlier} - {self.node_key}
        else:
            retryable = is_retryable(exc)
        ok = retry_db(lambda: self.queue.fail(job.job_id, token, error, retryable=retryable,
                                              signature=signature, fault=kind.value, node=self.node),
                      what=f"job {job.job_id}: fail")
        return self._outcome(job, Status.FAILED if ok else Status.LOST, started_at, retryable=retryable,
                             **summary)

    def _outcome(self, job: ClaimedJob, status: Status, started_at: float,
                 **extra: Any) -> JobOutcome:
        return JobOutcome(job_id=job.job_id, status=status, started_at=started_at,
                          finished_at=time.time(), node=self.node, worker_exiting=self._draining,
                          **extra)


def _resolve_device(device: str) -> str:
    """``auto``: CUDA when Ray gave this actor a GPU and torch sees one, else CPU."""
    if device != "auto":
        return device
    if ray.get_gpu_ids():
        import torch

        if torch.cuda.is_available():
            return "cuda"
    return "cpu"


# Resource options every worker actor gets, whatever its shape: the database, not Ray, retries.
ACTOR_OPTIONS: dict[str, Any] = {
    "max_restarts": 0,
    "max_task_retries": 0,
    "concurrency_groups": {"control": 2},
}
