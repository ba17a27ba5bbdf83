"""Queue upkeep and campaign-wide operations: the reaper, retry, cancel, and the queue's reads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from db.engine import read_connection
from db.errors import translated
from db.queue_core import DEFAULT_LEGACY_TTL_S, QueueCore
from db.schema import JOB_STATUSES
from db.statements import queue as q
from db.views import compact_job_counts

REAP_BATCH = 1000
COMPACT_ABOVE_ROWS = 1000


class Maintenance(QueueCore):
    @translated
    def reap(self, *, legacy_ttl_s: float = DEFAULT_LEGACY_TTL_S) -> int:
        """Expire every lease whose expiry has passed: back to pending after a backoff, or failed
        once the job used all its attempts (a crash counts). Returns how many were reaped.

        A lease expires by its own ``lease_expires_at`` -- the TTL of the driver or worker that
        claimed or last renewed it -- whatever the reaper's own TTL. ``legacy_ttl_s`` only judges
        leases written before that column existed: they expire that long after their last heartbeat.
        """
        reaped = 0
        while True:
            with self._transaction() as conn:
                expired = conn.execute(
                    self._sql(q.FIND_EXPIRED_LEASES), {"legacy_ttl": legacy_ttl_s, "batch": REAP_BATCH}
                ).all()
                for job in expired:
                    # Claimed ahead but never started (no worker recorded a start): the attempt
                    # is handed back, as a prefetched job released by its driver would be.
                    started = job.lease_node is not None
                    exhausted = started and job.attempts >= job.max_attempts
                    status = "failed" if exhausted else "pending"
                    error = (
                        f"lease expired: no heartbeat from {job.lease_owner} for {job.ttl:g} s"
                        + (f" (attempt {job.attempts} of {job.max_attempts})" if exhausted else "")
                        + ("" if started else "; it had not started: no attempt charged")
                    )
                    done = conn.execute(
                        self._sql(q.REAP_JOB),
                        {
                            "job_id": job.id, "token": job.lease_token, "status": status,
                            "error": error, "legacy_ttl": legacy_ttl_s, "uncharge": 0 if started else 1,
                            "delay": 0.0 if exhausted or not started else self._delay(job.attempts),
                        },
                    ).rowcount
                    if done:
                        reaped += 1
                        self._event(
                            conn, job.id, job.attempts, "reap", owner=job.lease_owner,
                            node=job.lease_node, status=status, error=error,
                        )
            if len(expired) < REAP_BATCH:
                break
        # The reaper runs periodically: a good moment to fold the count deltas (see db.views).
        with self._transaction() as conn:
            compact_job_counts(conn, min_rows=COMPACT_ABOVE_ROWS)
        return reaped

    @translated
    def retry(self, campaign: str, *, failed_only: bool = True) -> int:
        """Failed jobs (and cancelled ones unless ``failed_only``) back to pending with a fresh
        attempt budget. Returns how many."""
        statuses = ["failed"] if failed_only else ["failed", "cancelled"]
        with self._transaction() as conn:
            (campaign_id,) = self._campaign_ids(conn, [campaign])
            params = {"campaign_id": campaign_id, "statuses": statuses}
            conn.execute(self.sql.render(q.RETRY_EVENTS, expanding=("statuses",)), params)
            changed = conn.execute(self.sql.render(q.RETRY_JOBS, expanding=("statuses",)), params).rowcount
            compact_job_counts(conn, min_rows=COMPACT_ABOVE_ROWS)  # SQLite: one delta per job
        return changed

    @translated
    def cancel(self, campaign: str | None = None, *, job_ids: Sequence[int] | None = None) -> int:
        """Cancel the unfinished jobs of ``campaign`` or the given jobs. Running ones lose their
        lease (their next heartbeat returns False). Returns how many were cancelled."""
        if (campaign is None) == (job_ids is None):
            raise ValueError("cancel() takes a campaign or job_ids, not both or neither")
        with self._transaction() as conn:
            if campaign is not None:
                (campaign_id,) = self._campaign_ids(conn, [campaign])
                selection, params = "campaign_id = :campaign_id", {"campaign_id": campaign_id}
                expanding: tuple[str, ...] = ()
            else:
                if not job_ids:
                    return 0
                selection, params = "id IN :job_ids", {"job_ids": list(job_ids)}
                expanding = ("job_ids",)
            conn.execute(self.sql.render(q.CANCEL_EVENTS, expanding=expanding, selection=selection), params)
            changed = conn.execute(
                self.sql.render(q.CANCEL_JOBS, expanding=expanding, selection=selection), params
            ).rowcount
            compact_job_counts(conn, min_rows=COMPACT_ABOVE_ROWS)  # SQLite: one delta per job
        return changed

    # --- reading ---------------------------------------------------------------------------------
    @translated
    def counts(self, campaigns: Sequence[str] | None = None) -> dict[str, int]:
        """Jobs by status (every status present, zeros included), from the ``job_counts`` deltas:
        fast on millions of jobs."""
        totals = dict.fromkeys(JOB_STATUSES, 0)
        with read_connection(self.engine) as conn:
            if campaigns is None:
                statement, params = self._sql(q.COUNT_BY_STATUS, where=""), {}
            else:
                statement = self.sql.render(
                    q.COUNT_BY_STATUS, expanding=("campaign_ids",), where="WHERE campaign_id IN :campaign_ids"
                )
                params = {"campaign_ids": self._campaign_ids(conn, campaigns)}
            for status, n in conn.execute(statement, params):
                totals[status] = int(n or 0)
        return totals

    @translated
    def job(self, job_id: int) -> dict[str, Any] | None:
        """The job's row as a dict (None if there is no such job)."""
        with read_connection(self.engine) as conn:
            found = conn.execute(self._sql(q.JOB), {"id": job_id}).mappings().first()
            return dict(found) if found is not None else None

    @translated
    def history(self, job_id: int) -> list[dict[str, Any]]:
        """The job's events, oldest first."""
        with read_connection(self.engine) as conn:
            return [dict(r) for r in conn.execute(self._sql(q.JOB_HISTORY), {"id": job_id}).mappings()]
