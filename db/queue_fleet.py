"""The farm's own records beside the jobs: driver liveness (and reaping a dead driver's leases at
once), node health, where a job failed, and events a lease holder notes on its job."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence

from db.errors import translated
from db.queue_core import QueueCore, short_error
from db.statements import fleet as f
from db.statements import queue as q

# A driver is dead when it missed this many heartbeats (plus a grace for a loaded machine).
MISSED_BEATS = 3
GRACE_S = 5.0
BATCH = 1000


class FleetRecords(QueueCore):
    # --- driver liveness -------------------------------------------------------------------------
    @translated
    def register_driver(self, owner: str, heartbeat_s: float) -> None:
        """Start ``owner``'s liveness row; :meth:`beat_driver` every ``heartbeat_s`` keeps it fresh."""
        params = {"owner": owner, "host": socket.gethostname(), "pid": os.getpid(),
                  "heartbeat_s": float(heartbeat_s)}
        self._one(f.REGISTER_DRIVER, params)

    @translated
    def beat_driver(self, owner: str) -> bool:
        return self._one(f.BEAT_DRIVER, {"owner": owner})[1] == 1

    @translated
    def retire_driver(self, owner: str) -> None:
        """The driver exits: its row says so (its leases were released or are about to expire)."""
        self._one(f.RETIRE_DRIVER, {"owner": owner})

    @translated
    def reap_dead_drivers(self, me: str, *, missed: int = MISSED_BEATS, grace_s: float = GRACE_S) -> int:
        """Leases held by drivers whose liveness row is stale (killed -9, lost with their machine)
        go back to pending now, without waiting for their TTL. An attempt that never started
        training (claimed ahead, prefetched) is handed back uncharged; one that trained is charged,
        as a crash is. Returns how many."""
        reaped = 0
        while True:
            with self._transaction() as conn:
                leases = conn.execute(self._sql(f.DEAD_DRIVER_LEASES), {
                    "missed": missed, "grace_s": grace_s, "me": me, "batch": BATCH}).all()
                for job in leases:
                    started = job.lease_node is not None
                    exhausted = started and job.attempts >= job.max_attempts
                    status = "failed" if exhausted else "pending"
                    error = (f"driver {job.lease_owner} is gone (no liveness heartbeat)"
                             + ("" if started else "; the job had not started: no attempt charged"))
                    done = conn.execute(self._sql(f.REAP_DEAD_LEASE), {
                        "job_id": job.id, "token": job.lease_token, "status": status, "error": error,
                        "signature": "driver gone", "uncharge": 0 if started else 1,
                        "delay": 0.0 if not started or exhausted else self._delay(job.attempts),
                    }).rowcount
                    if done:
                        reaped += 1
                        self._event(conn, job.id, job.attempts - (0 if started else 1), "reap",
                                    owner=job.lease_owner, node=job.lease_node, status=status, error=error)
            if len(leases) < BATCH:
                return reaped

    # --- node health -----------------------------------------------------------------------------
    @translated
    def record_node_health(self, driver: str, node_id: str, node: str, state: str, faults: int,
                           last_error: str | None) -> None:
        """This driver's judgement of a node (scheduler.health), for ``worker_health`` and status."""
        params = {"driver": driver, "node_id": node_id, "node": node, "state": state, "faults": faults,
                  "last_error": short_error(last_error) if last_error else None}
        with self._transaction() as conn:
            conn.execute(self._sql(f.DELETE_NODE_HEALTH), params)
            conn.execute(self._sql(f.INSERT_NODE_HEALTH), params)

    # --- what failed where -----------------------------------------------------------------------
    @translated
    def failure_nodes(self, job_id: int) -> set[str]:
        """Workers on which the job's attempts ended with an unknown error (``fault='unknown'``)."""
        rows, _ = self._one(f.FAILURE_NODES, {"job_id": job_id})
        return {row["node"] for row in rows}

    @translated
    def failed_among(self, job_ids: Sequence[int]) -> int:
        """How many of these jobs are failed for good now."""
        total = 0
        ids = list(job_ids)
        for start in range(0, len(ids), 500):
            with self._transaction() as conn:
                statement = self.sql.render(f.FAILED_AMONG, expanding=("ids",))
                total += conn.execute(statement, {"ids": ids[start:start + 500]}).scalar_one()
        return total

    @translated
    def record_event(self, job_id: int, token: str, kind: str, *, error: str | None = None) -> bool:
        """Note something that happened to a job under this lease (e.g. its checkpoint was moved
        aside); False when the lease is gone."""
        with self._transaction() as conn:
            lease = conn.execute(self._sql(q.LOCK_LEASE), {"job_id": job_id, "token": token}).first()
            if lease is None:
                return False
            self._event(conn, job_id, lease.attempts, kind[:16], owner=lease.lease_owner,
                        node=lease.lease_node, status="running",
                        error=short_error(error) if error else None)
        return True
