"""The job queue: claim with a lease, heartbeat, complete, fail, release, reap -- all fenced.

Every operation is one short transaction, committed at once; no transaction is ever held while a
job trains. The lease token written by ``claim`` is the fence: ``heartbeat``, ``complete``,
``fail``, ``release``, ``record_metrics`` and ``set_checkpoint`` change nothing and return False
once the lease is gone (reaped, cancelled, or claimed anew by someone else). The SQL lives in
:mod:`db.statements`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from db import statements as q
from db.engine import autocommit_engine, read_connection
from db.errors import UnknownCampaign, translated
from db.schema import JOB_STATUSES, RESULT_METRICS
from db.views import compact_job_counts

MAX_ERROR_CHARS = 4000
REAP_BATCH = 1000
COMPACT_ABOVE_ROWS = 1000


@dataclass(frozen=True)
class ClaimedJob:
    job_id: int
    campaign: str
    cell_hash: str
    matrix: list[list[int]]
    ops: list[str]
    epochs: int
    repeat: int
    seed: int
    attempt: int
    max_attempts: int
    lease_token: str
    checkpoint_location: str | None
    profile: dict[str, Any]


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Seconds before a job may run again after its ``attempt``-th try ended badly.

    Capped exponential (base, 2 base, 4 base, ... up to cap) with "equal jitter": a uniform draw
    in [d/2, d], so jobs that failed together (a node died) do not all come back at once.
    """
    if base <= 0:
        return 0.0
    delay = min(cap, base * 2.0 ** max(0, attempt - 1))
    return delay / 2 + rng.uniform(0, delay / 2)


def _short_error(error: str) -> str:
    error = str(error)
    return error if len(error) <= MAX_ERROR_CHARS else error[: MAX_ERROR_CHARS - 3] + "..."


class JobQueue:
    """Queue operations on an engine (PostgreSQL or SQLite, identical behaviour).

    ``backoff_base`` / ``backoff_cap`` (seconds) shape the delay before a failed or reaped job may
    be claimed again (see :func:`backoff_delay`); 0 disables it.

    Durability on PostgreSQL: only ``complete`` waits for its commit to reach the disk (unless
    ``durable_complete=False``). Every other operation commits asynchronously
    (``synchronous_commit = off`` for that transaction): a server crash can forget its last
    fraction of a second, which the queue already survives -- a forgotten claim leaves the job
    pending (the worker's next heartbeat returns False), a forgotten heartbeat / fail / release
    leaves a lease the reaper expires. It never leaves the database inconsistent (each
    transaction is kept or lost whole), and it saves a disk flush per claim and heartbeat.
    SQLite (WAL, synchronous=NORMAL) behaves alike: safe against process crashes, not power loss.
    """

    def __init__(
        self,
        engine: sa.Engine,
        *,
        backoff_base: float = 30.0,
        backoff_cap: float = 3600.0,
        rng: random.Random | None = None,
        durable_complete: bool = True,
    ):
        self.engine = engine
        self.durable_complete = durable_complete
        self.dialect = engine.dialect.name
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.rng = rng or random.Random()
        self._campaigns: dict[int, tuple[str, dict[str, Any]]] = {}
        self._campaign_id_by_name: dict[str, int] = {}
        # PostgreSQL: single statements go through an autocommit pool (see _one).
        self._autocommit = autocommit_engine(engine) if self.dialect == "postgresql" else engine

    @contextmanager
    def _transaction(self, *, durable: bool = False) -> Iterator[sa.Connection]:
        """One short transaction (BEGIN IMMEDIATE on SQLite, see db.engine)."""
        with self.engine.begin() as conn:
            if not durable and self.dialect == "postgresql":
                conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            yield conn

    def _sql(self, template: str, **fragments: str) -> sa.TextClause:
        return q.render(template, self.dialect, **fragments)

    def _one(
        self, template: str, params: dict[str, Any], *, durable: bool = False, **fragments: str
    ) -> tuple[list[Any], int]:
        """Run one statement as its own transaction; returns (rows, rowcount).

        PostgreSQL: in autocommit mode, so the statement costs one round trip (no BEGIN, no
        COMMIT), prefixed with ``SET LOCAL synchronous_commit TO OFF`` unless ``durable``.
        SQLite: a BEGIN IMMEDIATE transaction around it.
        """
        if self.dialect == "postgresql":
            prefix = "" if durable else q.ASYNC_COMMIT_PREFIX
            statement = q.render(prefix + template, self.dialect, **fragments)
            with self._autocommit.connect() as conn:
                result = conn.execute(statement, params)
                return (list(result.mappings()) if result.returns_rows else []), result.rowcount
        with self._transaction(durable=durable) as conn:
            result = conn.execute(self._sql(template, **fragments), params)
            return (list(result.mappings()) if result.returns_rows else []), result.rowcount

    def _delay(self, attempt: int) -> float:
        return backoff_delay(attempt, self.backoff_base, self.backoff_cap, self.rng)

    # --- campaigns ---------------------------------------------------------------------------
    def _campaign_ids(self, conn: sa.Connection | None, names: Sequence[str]) -> list[int]:
        """Campaign ids by name (cached: a campaign's id never changes; it is never deleted)."""
        missing = [name for name in names if name not in self._campaign_id_by_name]
        if missing:
            if conn is None:
                with read_connection(self.engine) as fresh:
                    self._lookup_campaigns(fresh, missing)
            else:
                self._lookup_campaigns(conn, missing)
        return [self._campaign_id_by_name[name] for name in names]

    def _lookup_campaigns(self, conn: sa.Connection, names: Sequence[str]) -> None:
        rows = conn.execute(
            sa.text("SELECT id, name FROM campaigns WHERE name IN :names").bindparams(
                sa.bindparam("names", expanding=True)
            ),
            {"names": list(names)},
        ).all()
        found = {name: cid for cid, name in rows}
        missing = [name for name in names if name not in found]
        if missing:
            raise UnknownCampaign(f"unknown campaign {missing[0]!r}")
        self._campaign_id_by_name.update(found)

    def _campaign_info(self, conn: sa.Connection, campaign_ids: Iterable[int]) -> None:
        wanted = sorted(set(campaign_ids) - set(self._campaigns))
        if not wanted:
            return
        rows = conn.execute(
            sa.text("SELECT id, name, profile FROM campaigns WHERE id IN :ids").bindparams(
                sa.bindparam("ids", expanding=True)
            ),
            {"ids": wanted},
        ).all()
        for cid, name, profile in rows:
            self._campaigns[cid] = (name, json.loads(profile))

    # --- claim -------------------------------------------------------------------------------
    @translated
    def claim(
        self, n: int, owner: str, *, campaigns: Sequence[str] | None = None
    ) -> list[ClaimedJob]:
        """Lease up to ``n`` runnable pending jobs to ``owner``: highest priority first, then the
        campaign's order (job id).

        ``campaigns`` restricts the claim to those campaigns (by name; unknown names raise
        :class:`UnknownCampaign`), served in the order given. Each claim charges the job an attempt.
        """
        if n <= 0 or (campaigns is not None and not campaigns):
            return []
        params: dict[str, Any] = {"n": n, "owner": owner}
        if self.dialect == "postgresql":
            rows = self._claim_postgresql(params, campaigns)
            cells = self._claimed_cells_postgresql(rows)
        else:
            with self._transaction() as conn:
                rows = self._claim_sqlite(conn, params, campaigns)
                cells = self._log_claims_sqlite(conn, rows, owner)
        if not rows:
            return []
        if campaigns is None:  # RETURNING does not keep the ORDER BY
            rows.sort(key=lambda r: (-r["priority"], r["id"]))
        else:
            position = {name: i for i, name in enumerate(campaigns)}
            rows.sort(key=lambda r: (position[self._campaigns[r["campaign_id"]][0]], -r["priority"], r["id"]))
        return self._claimed_jobs(rows, cells)

    @translated
    def claim_groups(
        self,
        n_groups: int,
        owner: str,
        *,
        campaigns: Sequence[str] | None = None,
        max_group: int = 3,
    ) -> list[list[ClaimedJob]]:
        """Lease up to ``n_groups`` groups of jobs that share (campaign, cell, epochs) -- the
        repeats of a cell, to train together as one fused network.

        Each group's lead is the job :meth:`claim` would take next (same order, same
        ``campaigns``); with it come up to ``max_group - 1`` other runnable pending jobs of its
        (campaign, cell, epochs). PostgreSQL skips siblings another claimer holds locked (they
        are its to claim), never waiting for them. Every job is an ordinary claim (attempt + 1,
        its own lease token, its own claim event), so heartbeat, complete, fail, release and the
        reaper keep working job by job. Returns the groups in their leads' claim order, each
        sorted by ``repeat``; fewer (possibly none) when the queue runs dry. ``max_group=1``
        claims exactly what ``claim(n_groups, ...)`` would, one job per group.
        """
        if max_group < 1:
            raise ValueError(f"max_group must be at least 1 (jobs per group), not {max_group}")
        if n_groups <= 0 or (campaigns is not None and not campaigns):
            return []
        params: dict[str, Any] = {"owner": owner, "max_group": max_group}
        if self.dialect == "postgresql":
            # One autocommitted statement per group (n_groups is small: the idle workers), so a
            # crash between two leaves each group claimed whole or not at all.
            groups = self._claim_groups(
                n_groups,
                None if campaigns is None else self._campaign_ids(None, campaigns),
                lambda campaign_filter, extra: self._one(
                    q.CLAIM_GROUP_POSTGRESQL, {**params, **extra}, campaign_filter=campaign_filter
                )[0],
            )
            cells = self._claimed_cells_postgresql([r for group in groups for r in group])
        else:
            with self._transaction() as conn:
                groups = self._claim_groups(
                    n_groups,
                    None if campaigns is None else self._campaign_ids(conn, campaigns),
                    lambda campaign_filter, extra: conn.execute(
                        self._sql(q.CLAIM_GROUP_SQLITE, campaign_filter=campaign_filter),
                        {**params, **extra},
                    ).mappings().all(),
                )
                cells = self._log_claims_sqlite(conn, [r for group in groups for r in group], owner)
        return [self._claimed_jobs(group, cells) for group in groups]

    @staticmethod
    def _claim_groups(
        n_groups: int,
        campaign_ids: Sequence[int] | None,
        claim_group: Callable[[str, dict[str, Any]], Sequence[Any]],
    ) -> list[list[Any]]:
        """Run ``claim_group(campaign_filter, params)`` until ``n_groups`` groups are claimed or
        nothing is left; with ``campaign_ids``, one campaign at a time in the order given (as
        claim() does, each on that campaign's own pending index). Each group sorted by repeat."""
        filters: list[tuple[str, dict[str, Any]]] = (
            [("", {})]
            if campaign_ids is None
            else [("AND campaign_id = :campaign_id", {"campaign_id": cid}) for cid in campaign_ids]
        )
        groups: list[list[Any]] = []
        for campaign_filter, extra in filters:
            while len(groups) < n_groups:
                rows = claim_group(campaign_filter, extra)
                if not rows:  # no lead left in this campaign (a lead found is always in its group)
                    break
                groups.append(sorted(rows, key=lambda r: r["repeat"]))
        return groups

    def _claimed_cells_postgresql(
        self, rows: Sequence[Any]
    ) -> dict[str, tuple[list[list[int]], list[str]]]:
        """The cells of claimed rows (the PostgreSQL claim statements return matrix and ops with
        each row); also makes sure their campaigns' names and profiles are cached."""
        cells = {r["cell_hash"]: (json.loads(r["matrix"]), json.loads(r["ops"])) for r in rows}
        if rows and not set(self._campaigns) >= {r["campaign_id"] for r in rows}:
            with read_connection(self.engine) as conn:
                self._campaign_info(conn, {r["campaign_id"] for r in rows})
        return cells

    def _log_claims_sqlite(
        self, conn: sa.Connection, rows: Sequence[Any], owner: str
    ) -> dict[str, tuple[list[list[int]], list[str]]]:
        """In the claim's transaction: the claim events of ``rows``, and their cells (campaigns
        cached too)."""
        if not rows:
            return {}
        events = [
            {"job_id": r["id"], "attempt": r["attempts"], "owner": owner, "at": r["claimed_at"]}
            for r in rows
        ]
        conn.execute(self._sql(q.CLAIM_EVENTS), events)
        self._campaign_info(conn, {r["campaign_id"] for r in rows})
        return self._cells(conn, {r["cell_hash"] for r in rows})

    def _claimed_jobs(
        self, rows: Sequence[Any], cells: dict[str, tuple[list[list[int]], list[str]]]
    ) -> list[ClaimedJob]:
        """ClaimedJobs from claimed rows, in the rows' order (campaigns must be cached)."""
        claimed = []
        for r in rows:
            matrix, ops = cells[r["cell_hash"]]
            name, profile = self._campaigns[r["campaign_id"]]
            claimed.append(
                ClaimedJob(
                    job_id=r["id"],
                    campaign=name,
                    cell_hash=r["cell_hash"],
                    matrix=matrix,
                    ops=ops,
                    epochs=r["epochs"],
                    repeat=r["repeat"],
                    seed=r["seed"],
                    attempt=r["attempts"],
                    max_attempts=r["max_attempts"],
                    lease_token=r["lease_token"],
                    checkpoint_location=r["checkpoint_location"],
                    profile=dict(profile),
                )
            )
        return claimed

    def _claim_postgresql(
        self, params: dict[str, Any], campaigns: Sequence[str] | None
    ) -> list[Any]:
        """Each claim statement is its own (autocommitted) transaction: a crash between two of
        them leaves every claim either whole or absent."""
        if campaigns is None:
            return self._one(q.CLAIM_JOBS_POSTGRESQL, params, campaign_filter="")[0]
        # One campaign at a time, in the order given: each claim then walks that campaign's own
        # pending index (ix_jobs_campaign_claim) instead of everyone's.
        rows: list[Any] = []
        for campaign_id in self._campaign_ids(None, campaigns):
            wanted = {**params, "n": params["n"] - len(rows), "campaign_id": campaign_id}
            rows += self._one(
                q.CLAIM_JOBS_POSTGRESQL, wanted, campaign_filter="AND campaign_id = :campaign_id"
            )[0]
            if len(rows) >= params["n"]:
                break
        return rows

    def _claim_sqlite(
        self, conn: sa.Connection, params: dict[str, Any], campaigns: Sequence[str] | None
    ) -> list[Any]:
        if campaigns is None:
            return list(conn.execute(self._sql(q.CLAIM_JOBS_SQLITE, campaign_filter=""), params).mappings())
        statement = self._sql(q.CLAIM_JOBS_SQLITE, campaign_filter="AND campaign_id = :campaign_id")
        rows: list[Any] = []
        for campaign_id in self._campaign_ids(conn, campaigns):
            wanted = {**params, "n": params["n"] - len(rows), "campaign_id": campaign_id}
            rows += conn.execute(statement, wanted).mappings().all()
            if len(rows) >= params["n"]:
                break
        return rows

    @staticmethod
    def _cells(conn: sa.Connection, hashes: set[str]) -> dict[str, tuple[list[list[int]], list[str]]]:
        rows = conn.execute(
            sa.text("SELECT hash, matrix, ops FROM cells WHERE hash IN :hashes").bindparams(
                sa.bindparam("hashes", expanding=True)
            ),
            {"hashes": sorted(hashes)},
        ).all()
        return {h: (json.loads(matrix), json.loads(ops)) for h, matrix, ops in rows}

    # --- the lease holder's writes -------------------------------------------------------------
    @translated
    def start_attempt(
        self, job_id: int, token: str, *, node: str, resumed_from_epoch: float = 0.0
    ) -> bool:
        """Record that training started (or resumed from ``resumed_from_epoch``) on ``node``."""
        if self.dialect == "postgresql":
            params = {"job_id": job_id, "token": token, "node": node,
                      "resumed_from_epoch": resumed_from_epoch}
            return self._one(q.START_ATTEMPT_POSTGRESQL, params)[1] == 1
        with self._transaction() as conn:
            row = conn.execute(
                self._sql(q.START_ATTEMPT), {"job_id": job_id, "token": token, "node": node}
            ).first()
            if row is None:
                return False
            self._event(
                conn, job_id, row.attempts, "start", owner=row.lease_owner, node=node,
                resumed_from_epoch=resumed_from_epoch, status="running",
            )
        return True

    @translated
    def heartbeat(
        self, job_id: int, token: str, *, step: int | None = None, epoch: float | None = None
    ) -> bool:
        """Keep the lease alive; False means it is lost: stop the work and write nothing."""
        params = {"job_id": job_id, "token": token, "step": step, "epoch": epoch}
        return self._one(q.HEARTBEAT, params)[1] == 1

    @translated
    def record_metrics(self, job_id: int, token: str, event: dict[str, Any]) -> bool:
        """Append one training event (``farm.train`` ``on_event`` dict) to the metrics stream."""
        params = {
            "job_id": job_id,
            "token": token,
            "kind": str(event.get("kind", "epoch"))[:16],
            **{
                key: event.get(key)
                for key in (
                    "epoch", "step", "loss", "train_accuracy", "validation_accuracy",
                    "test_accuracy", "training_time",
                )
            },
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
        if self.dialect == "postgresql":
            params = {**_result_values(result), **fence}
            if self._one(q.COMPLETE_JOB_POSTGRESQL, params, durable=self.durable_complete)[0]:
                return True
            with read_connection(self.engine) as conn:
                return conn.execute(self._sql(q.COMPLETED_BY), fence).first() is not None
        with self._transaction(durable=self.durable_complete) as conn:
            row = conn.execute(self._sql(q.COMPLETE_JOB), fence).first()
            if row is None:
                again = conn.execute(self._sql(q.COMPLETED_BY), {"job_id": job_id, "token": token})
                return again.first() is not None
            conn.execute(self._sql(q.INSERT_RESULT), _result_row(job_id, row, result))
            self._event(
                conn, job_id, row.attempts, "end", owner=row.lease_owner, node=row.lease_node,
                status="done",
            )
        return True

    @translated
    def fail(self, job_id: int, token: str, error: str, *, retryable: bool) -> bool:
        """End the attempt with ``error``: pending again after a backoff when ``retryable`` and
        attempts remain, otherwise failed. False when the lease is lost."""
        error = _short_error(error)
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
                    "delay": self._delay(lease.attempts) if again else 0.0,
                },
            )
            self._event(
                conn, job_id, lease.attempts, "end", owner=lease.lease_owner, node=lease.lease_node,
                status=status, error=error,
            )
        return True

    @translated
    def release(self, job_id: int, token: str, *, reason: str = "preempted") -> bool:
        """Give the job back at once without charging the attempt (preemption, drain, shutdown)."""
        with self._transaction() as conn:
            lease = conn.execute(self._sql(q.LOCK_LEASE), {"job_id": job_id, "token": token}).first()
            if lease is None:
                return False
            conn.execute(self._sql(q.RELEASE_JOB), {"job_id": job_id, "token": token})
            self._event(
                conn, job_id, lease.attempts, "release", owner=lease.lease_owner,
                node=lease.lease_node, status="pending", error=_short_error(reason),
            )
        return True

    # --- maintenance -------------------------------------------------------------------------
    @translated
    def reap(self, ttl_seconds: float) -> int:
        """Expire leases silent for more than ``ttl_seconds``: back to pending after a backoff, or
        failed once the job used all its attempts (a crash counts). Returns how many were reaped."""
        reaped = 0
        while True:
            with self._transaction() as conn:
                expired = conn.execute(
                    self._sql(q.FIND_EXPIRED_LEASES), {"ttl": ttl_seconds, "batch": REAP_BATCH}
                ).all()
                for job in expired:
                    exhausted = job.attempts >= job.max_attempts
                    status = "failed" if exhausted else "pending"
                    error = (
                        f"lease expired: no heartbeat from {job.lease_owner} for {ttl_seconds:g} s"
                        + (f" (attempt {job.attempts} of {job.max_attempts})" if exhausted else "")
                    )
                    done = conn.execute(
                        self._sql(q.REAP_JOB),
                        {
                            "job_id": job.id, "token": job.lease_token, "status": status,
                            "error": error, "ttl": ttl_seconds,
                            "delay": 0.0 if exhausted else self._delay(job.attempts),
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
        expanding = sa.bindparam("statuses", expanding=True)
        with self._transaction() as conn:
            (campaign_id,) = self._campaign_ids(conn, [campaign])
            params = {"campaign_id": campaign_id, "statuses": statuses}
            conn.execute(self._sql(q.RETRY_EVENTS).bindparams(expanding), params)
            changed = conn.execute(self._sql(q.RETRY_JOBS).bindparams(expanding), params).rowcount
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
                binds: list[sa.BindParameter] = []
            else:
                if not job_ids:
                    return 0
                selection, params = "id IN :job_ids", {"job_ids": list(job_ids)}
                binds = [sa.bindparam("job_ids", expanding=True)]
            conn.execute(self._sql(q.CANCEL_EVENTS, selection=selection).bindparams(*binds), params)
            changed = conn.execute(
                self._sql(q.CANCEL_JOBS, selection=selection).bindparams(*binds), params
            ).rowcount
            compact_job_counts(conn, min_rows=COMPACT_ABOVE_ROWS)  # SQLite: one delta per job
        return changed

    # --- reading ------------------------------------------------------------------------------
    @translated
    def counts(self, campaigns: Sequence[str] | None = None) -> dict[str, int]:
        """Jobs by status (every status present, zeros included), from the ``job_counts`` deltas:
        fast on millions of jobs."""
        totals = dict.fromkeys(JOB_STATUSES, 0)
        with read_connection(self.engine) as conn:
            if campaigns is None:
                statement, params = self._sql(q.COUNT_BY_STATUS, where=""), {}
            else:
                ids = self._campaign_ids(conn, campaigns)
                statement = self._sql(
                    q.COUNT_BY_STATUS, where="WHERE campaign_id IN :campaign_ids"
                ).bindparams(sa.bindparam("campaign_ids", expanding=True))
                params = {"campaign_ids": ids}
            for status, n in conn.execute(statement, params):
                totals[status] = int(n or 0)
        return totals

    @translated
    def job(self, job_id: int) -> dict[str, Any] | None:
        """The job's row as a dict (None if there is no such job)."""
        with read_connection(self.engine) as conn:
            row = conn.execute(sa.text("SELECT * FROM jobs WHERE id = :id"), {"id": job_id})
            found = row.mappings().first()
            return dict(found) if found is not None else None

    @translated
    def history(self, job_id: int) -> list[dict[str, Any]]:
        """The job's events, oldest first."""
        with read_connection(self.engine) as conn:
            rows = conn.execute(
                sa.text("SELECT * FROM job_events WHERE job_id = :id ORDER BY id"), {"id": job_id}
            )
            return [dict(r) for r in rows.mappings()]

    def _event(self, conn: sa.Connection, job_id: int, attempt: int, kind: str, **fields: Any) -> None:
        params = {
            "job_id": job_id, "attempt": attempt, "kind": kind, "owner": None, "node": None,
            "resumed_from_epoch": None, "status": None, "error": None,
        }
        params.update(fields)
        conn.execute(self._sql(q.INSERT_EVENT), params)


def _result_row(job_id: int, job: Any, result: dict[str, Any]) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "campaign_id": job.campaign_id,
        "cell_hash": job.cell_hash,
        "epochs": job.epochs,
        "repeat": job.repeat,
        "attempt": job.attempts,
        "created_at": job.finished_at,
        **_result_values(result),
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
