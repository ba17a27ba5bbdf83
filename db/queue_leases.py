"""The lease holder's writes: start, heartbeat, metrics, checkpoint, complete, fail, release.

Every one is fenced by the lease token: once the lease is gone (reaped, cancelled, claimed anew by
someone else) it changes nothing and returns False.
"""

from __future__ import annotations

import json
from typing import Any

from db.errors import translated
from db.queue_core import QueueCore, short_error
from db.schema import RESULT_METRICS
from db.statements import queue as q

_METRIC_EVENT_FIELDS = (
    "epoch", "step", "loss", "train_accuracy", "validation_accuracy", "test_accuracy", "training_time",
)


class LeaseWrites(QueueCore):
    @translated
    def start_attempt(
        self, job_id: int, token: str, *, node: str, resumed_from_epoch: float = 0.0
    ) -> bool:
        """Record that training started (or resumed from ``resumed_from_epoch``) on ``node``."""
        params = {"job_id": job_id, "token": token, "node": node, "resumed_from_epoch": resumed_from_epoch}
        with self._statements() as conn:
            row = conn.execute(self._statement(self.sql.start_attempt), params).first()
            if row is None:
                return False
            if not self.sql.compound_writes:  # the start event, unless the statement logged it
                self._event(
                    conn, job_id, row.attempts, "start", owner=row.lease_owner, node=node,
                    resumed_from_epoch=resumed_from_epoch, status="running",
                )
        return True

    @translated
    def heartbeat(
        self,
        job_id: int,
        token: str,
        *,
        step: int | None = None,
        epoch: float | None = None,
        lease_ttl_s: float | None = None,
    ) -> bool:
        """Keep the lease alive for ``lease_ttl_s`` more seconds (None: the TTL the lease has);
        False means it is lost: stop the work and write nothing."""
        params = {"job_id": job_id, "token": token, "step": step, "epoch": epoch, "lease_ttl": lease_ttl_s}
        return self._one(q.HEARTBEAT, params)[1] == 1

    @translated
    def record_metrics(self, job_id: int, token: str, event: dict[str, Any]) -> bool:
        """Append one training event (``farm.train`` ``on_event`` dict) to the metrics stream."""
        params = {
            "job_id": job_id,
            "token": token,
            "kind": str(event.get("kind", "epoch"))[:16],
            **{key: event.get(key) for key in _METRIC_EVENT_FIELDS},
        }
        return self._one(q.RECORD_METRIC, params)[1] == 1

    @translated
    def set_checkpoint(self, job_id: int, token: str, location: str | None) -> bool:
        """Remember where the job's checkpoint is (kept for the next attempt to resume from)."""
        params = {"job_id": job_id, "token": token, "location": location}
        return self._one(q.SET_CHECKPOINT, params)[1] == 1

    @translated
    def complete(self, job_id: int, token: str, result: dict[str, Any]) -> bool:
        """Store the result and mark the job done, in one transaction.

        ``result`` is ``TrainResult.to_dict()`` (``metrics``, ``evaluations``, ``resumed_from_*``;
        a flat dict of the NAS-Bench-101 metric names works too). Returns False when the lease is
        lost. Calling it again with the same lease after success returns True and writes nothing.
        """
        fence = {"job_id": job_id, "token": token}
        durable = self.durable_complete
        with self._statements(durable=durable) as conn:
            values = _result_values(result)
            statement = self._statement(self.sql.complete_job, durable=durable)
            row = conn.execute(statement, {**values, **fence}).first()
            if row is None:  # lost -- or completed already by this very lease
                return conn.execute(self._sql(q.COMPLETED_BY), fence).first() is not None
            if not self.sql.compound_writes:  # the result and the event, unless the statement did
                conn.execute(self._sql(q.INSERT_RESULT), _result_row(job_id, row, values))
                self._event(
                    conn, job_id, row.attempts, "end", owner=row.lease_owner, node=row.lease_node,
                    status="done",
                )
        return True

    @translated
    def fail(self, job_id: int, token: str, error: str, *, retryable: bool, signature: str | None = None,
             fault: str | None = None, node: str | None = None) -> bool:
        """End the attempt with ``error``: pending again after a backoff when ``retryable`` and
        attempts remain, otherwise failed. ``signature`` groups errors (``job_failures``);
        ``fault`` (job | unknown) and ``node`` (the worker that hit it) go to the job's history.
        False when the lease is lost."""
        error = short_error(error)
        with self._transaction() as conn:
            lease = conn.execute(self._sql(q.LOCK_LEASE), {"job_id": job_id, "token": token}).first()
            if lease is None:
                return False
            again = retryable and lease.attempts < lease.max_attempts
            status = "pending" if again else "failed"
            conn.execute(
                self._sql(q.END_ATTEMPT),
                {
                    "job_id": job_id, "token": token, "status": status, "error": error,
                    "signature": signature, "delay": self._delay(lease.attempts) if again else 0.0,
                },
            )
            self._event(
                conn, job_id, lease.attempts, "end", owner=lease.lease_owner,
                node=node or lease.lease_node, status=status, error=error, fault=fault,
            )
        return True

    @translated
    def release(self, job_id: int, token: str, *, reason: str = "preempted", error: str | None = None,
                signature: str | None = None, backoff: bool = False) -> bool:
        """Give the job back without charging the attempt. Without ``error``: a preemption
        (SIGTERM, drain, shutdown), pending at once. With ``error``: the node was at fault or the
        job's checkpoint was moved aside -- the error is kept on the job, and with ``backoff`` it
        waits as a failed attempt would before it may run again (on a healthier node)."""
        with self._transaction() as conn:
            lease = conn.execute(self._sql(q.LOCK_LEASE), {"job_id": job_id, "token": token}).first()
            if lease is None:
                return False
            fence = {"job_id": job_id, "token": token}
            if error is None:
                conn.execute(self._sql(q.RELEASE_JOB), fence)
            else:
                delay = self._delay(max(lease.attempts, 1)) if backoff else 0.0
                conn.execute(self._sql(q.RELEASE_WITH_ERROR), {
                    **fence, "error": short_error(error), "signature": signature, "delay": delay})
            self._event(
                conn, job_id, lease.attempts - 1 if error is not None else lease.attempts, "release",
                owner=lease.lease_owner, node=lease.lease_node, status="pending",
                error=short_error(error if error is not None else reason),
                fault="environment" if reason == "environment" else None,
            )
        return True


def _result_row(job_id: int, job: Any, values: dict[str, Any]) -> dict[str, Any]:
    """The results row of a job completed by ``job`` (COMPLETE_JOB_SQLITE's row)."""
    return {
        "job_id": job_id,
        "campaign_id": job.campaign_id,
        "cell_hash": job.cell_hash,
        "epochs": job.epochs,
        "repeat": job.repeat,
        "attempt": job.attempts,
        "created_at": job.finished_at,
        **values,
    }


def _result_values(result: dict[str, Any]) -> dict[str, Any]:
    """The results columns taken from ``TrainResult.to_dict()`` (or a flat dict of metrics)."""
    metrics = result.get("metrics", result)
    row: dict[str, Any] = {
        "evaluations": json.dumps(result.get("evaluations", [])),
        "resumed_from_step": result.get("resumed_from_step"),
        "resumed_from_epoch": result.get("resumed_from_epoch"),
    }
    for name in RESULT_METRICS:
        value = metrics.get(name)
        if value is not None:
            value = int(value) if name == "trainable_parameters" else float(value)
        row[name] = value
    known = {"metrics", "evaluations", "resumed_from_step", "resumed_from_epoch", *RESULT_METRICS}
    extra = {key: value for key, value in result.items() if key not in known and key != "extra"}
    extra.update(result.get("extra") or {})  # TrainResult.extra (e.g. the trainer) at the top level
    row["extra"] = json.dumps(extra, default=str) if extra else None
    return row
