"""Monitoring: fast per-campaign counts (job_counts + triggers) and the SQL views.

Revision ID: 0002
Revises: 0001
Create Date: 2026-09-01

``job_counts`` holds signed deltas per (campaign, status): create_campaign adds +N pending for the
jobs it inserts; a trigger on jobs adds -1/+1 for every status change (with the change of the
job's attempts, and the seconds it spent running when it leaves 'running'); a delete subtracts.
Summing it answers "how many jobs are in each status" without reading 5M job rows, and inserting
deltas never makes two workers wait for each other (no counter row is updated in place). The
queue's reaper compacts it.

The views are written once; ``{now}`` (unix seconds) and ``{hour}`` (a unix time as 'YYYY-MM-DD
HH:00' UTC) are the two places the databases differ. Frozen: change views in a new revision.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

SNIPPETS = {
    "postgresql": {
        "now": "CAST(EXTRACT(EPOCH FROM now()) AS double precision)",
        "hour": "to_char(to_timestamp(floor({x} / 3600) * 3600) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:00')",
    },
    "sqlite": {
        "now": "((julianday('now') - 2440587.5) * 86400.0)",
        "hour": "strftime('%Y-%m-%d %H:00', {x}, 'unixepoch')",
    },
}

# Per campaign: job counts by status, done %, attempts charged (the jobs' attempts summed),
# GPU-seconds spent (time jobs held a lease, every
# attempt), jobs finished in the last hour, and the ETA at that rate.
CAMPAIGN_PROGRESS = """
CREATE VIEW campaign_progress AS
WITH counts AS (
    SELECT campaign_id,
           CAST(SUM(n) AS BIGINT) AS total,
           CAST(SUM(CASE WHEN status = 'pending' THEN n ELSE 0 END) AS BIGINT) AS pending,
           CAST(SUM(CASE WHEN status = 'running' THEN n ELSE 0 END) AS BIGINT) AS running,
           CAST(SUM(CASE WHEN status = 'done' THEN n ELSE 0 END) AS BIGINT) AS done,
           CAST(SUM(CASE WHEN status = 'failed' THEN n ELSE 0 END) AS BIGINT) AS failed,
           CAST(SUM(CASE WHEN status = 'cancelled' THEN n ELSE 0 END) AS BIGINT) AS cancelled,
           CAST(SUM(busy_seconds) AS DOUBLE PRECISION) AS gpu_seconds,
           CAST(SUM(attempts) AS BIGINT) AS attempts
    FROM job_counts
    GROUP BY campaign_id
), recent AS (
    SELECT campaign_id, COUNT(*) AS done_last_hour
    FROM results
    WHERE created_at > {now} - 3600
    GROUP BY campaign_id
)
SELECT c.id AS campaign_id,
       c.name AS campaign,
       COALESCE(k.total, 0) AS total,
       COALESCE(k.pending, 0) AS pending,
       COALESCE(k.running, 0) AS running,
       COALESCE(k.done, 0) AS done,
       COALESCE(k.failed, 0) AS failed,
       COALESCE(k.cancelled, 0) AS cancelled,
       CAST(CASE WHEN k.total > 0 THEN 100.0 * k.done / k.total END AS DOUBLE PRECISION) AS done_pct,
       COALESCE(k.attempts, 0) AS attempts,
       COALESCE(k.gpu_seconds, 0) AS gpu_seconds,
       COALESCE(r.done_last_hour, 0) AS done_last_hour,
       CAST(CASE WHEN r.done_last_hour > 0
                 THEN (k.pending + k.running) * 3600.0 / r.done_last_hour END
            AS DOUBLE PRECISION) AS eta_seconds
FROM campaigns c
LEFT JOIN counts k ON k.campaign_id = c.id
LEFT JOIN recent r ON r.campaign_id = c.id
"""

# Every leased job: who holds it, where, how far it got, and how long since it said so.
ACTIVE_WORKERS = """
CREATE VIEW active_workers AS
SELECT j.lease_owner AS owner,
       j.lease_node AS node,
       j.id AS job_id,
       c.name AS campaign,
       j.cell_hash,
       j.epochs,
       j.repeat,
       j.attempts AS attempt,
       j.progress_epoch AS epoch,
       j.progress_step AS step,
       {now} - j.heartbeat_at AS seconds_since_heartbeat,
       {now} - j.claimed_at AS seconds_running
FROM jobs j
JOIN campaigns c ON c.id = j.campaign_id
WHERE j.status = 'running'
"""

# Jobs that hit an error: failed for good, or pending again after a retryable failure / a reap.
JOB_FAILURES = """
CREATE VIEW job_failures AS
SELECT j.id AS job_id,
       c.name AS campaign,
       j.cell_hash,
       j.epochs,
       j.repeat,
       j.status,
       j.attempts,
       j.max_attempts,
       j.preemptions,
       j.last_error,
       j.not_before,
       j.finished_at
FROM jobs j
JOIN campaigns c ON c.id = j.campaign_id
WHERE j.last_error IS NOT NULL
"""

# One row per finished (cell, epochs, repeat) in NAS-Bench-101's shape (api.get_metrics_from_hash:
# module_adjacency / module_operations as JSON text, the halfway and final metrics).
NB101_RESULTS = """
CREATE VIEW nb101_results AS
SELECT c.name AS campaign,
       r.cell_hash AS module_hash,
       cl.matrix AS module_adjacency,
       cl.ops AS module_operations,
       r.epochs,
       r.repeat,
       r.trainable_parameters,
       r.total_time,
       r.halfway_training_time,
       r.halfway_train_accuracy,
       r.halfway_validation_accuracy,
       r.halfway_test_accuracy,
       r.final_training_time,
       r.final_train_accuracy,
       r.final_validation_accuracy,
       r.final_test_accuracy,
       r.evaluations,
       r.job_id,
       r.created_at
FROM results r
JOIN cells cl ON cl.hash = r.cell_hash
JOIN campaigns c ON c.id = r.campaign_id
"""

# Finished jobs per campaign and UTC hour, with the training time they reported.
HOURLY_THROUGHPUT = """
CREATE VIEW hourly_throughput AS
SELECT c.name AS campaign,
       h.hour,
       h.jobs_done,
       h.training_seconds
FROM (
    SELECT campaign_id,
           {hour_of_created_at} AS hour,
           COUNT(*) AS jobs_done,
           CAST(SUM(total_time) AS DOUBLE PRECISION) AS training_seconds
    FROM results
    GROUP BY campaign_id, {hour_of_created_at}
) h
JOIN campaigns c ON c.id = h.campaign_id
"""

VIEWS = {
    "campaign_progress": CAMPAIGN_PROGRESS,
    "active_workers": ACTIVE_WORKERS,
    "job_failures": JOB_FAILURES,
    "nb101_results": NB101_RESULTS,
    "hourly_throughput": HOURLY_THROUGHPUT,
}

# PostgreSQL: one statement-level trigger per UPDATE / DELETE statement, reading the changed rows
# from transition tables, so a bulk cancel of 5M jobs inserts a handful of delta rows. A
# heartbeat (status unchanged) sums to zero and inserts nothing.
PG_COUNT_FUNCTION = """
CREATE FUNCTION nasfarm_count_job_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        INSERT INTO job_counts (campaign_id, status, n, busy_seconds, attempts)
        SELECT campaign_id, status, SUM(n), SUM(busy), SUM(attempts)
        FROM (
            SELECT campaign_id, status, 1 AS n, 0.0 AS busy, attempts FROM new_rows
            UNION ALL
            SELECT campaign_id, status, -1, 0.0, -attempts FROM old_rows
            UNION ALL
            SELECT o.campaign_id, o.status, 0, {now} - o.claimed_at, 0
            FROM old_rows o JOIN new_rows w ON w.id = o.id
            WHERE o.status = 'running' AND w.status <> 'running' AND o.claimed_at IS NOT NULL
        ) AS d
        GROUP BY campaign_id, status
        HAVING SUM(n) <> 0 OR SUM(busy) <> 0 OR SUM(attempts) <> 0;
    ELSE
        INSERT INTO job_counts (campaign_id, status, n, busy_seconds, attempts)
        SELECT campaign_id, status, -COUNT(*), 0.0, -SUM(attempts) FROM old_rows
        GROUP BY campaign_id, status;
    END IF;
    RETURN NULL;
END
$$
"""
PG_TRIGGERS = (
    "CREATE TRIGGER jobs_count_update AFTER UPDATE ON jobs"
    " REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION nasfarm_count_job_changes()",
    "CREATE TRIGGER jobs_count_delete AFTER DELETE ON jobs"
    " REFERENCING OLD TABLE AS old_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION nasfarm_count_job_changes()",
)
# SQLite: row-level triggers (the only kind), the same deltas.
SQLITE_TRIGGERS = (
    """
    CREATE TRIGGER jobs_count_update AFTER UPDATE OF status ON jobs
    WHEN OLD.status IS NOT NEW.status
    BEGIN
        INSERT INTO job_counts (campaign_id, status, n, busy_seconds, attempts) VALUES
            (OLD.campaign_id, OLD.status, -1,
             CASE WHEN OLD.status = 'running' AND OLD.claimed_at IS NOT NULL
                  THEN {now} - OLD.claimed_at ELSE 0.0 END,
             -OLD.attempts),
            (NEW.campaign_id, NEW.status, 1, 0.0, NEW.attempts);
    END
    """,
    """
    CREATE TRIGGER jobs_count_delete AFTER DELETE ON jobs
    BEGIN
        INSERT INTO job_counts (campaign_id, status, n, busy_seconds, attempts)
        VALUES (OLD.campaign_id, OLD.status, -1, 0.0, -OLD.attempts);
    END
    """,
)


def _fill(sql: str, dialect: str) -> str:
    snippets = SNIPPETS[dialect]
    hour = snippets["hour"].format(x="created_at")
    return sql.replace("{now}", snippets["now"]).replace("{hour_of_created_at}", hour)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_table(
        "job_counts",
        sa.Column("id", BigId, nullable=False),
        sa.Column("campaign_id", sa.Integer, nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("n", sa.BigInteger, nullable=False),
        sa.Column("busy_seconds", sa.Double, server_default="0", nullable=False),
        sa.Column("attempts", sa.BigInteger, server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_job_counts"),
    )
    op.create_index("ix_job_counts_campaign_id_status", "job_counts", ["campaign_id", "status"])
    # job_failures reads only jobs with an error: a partial index keeps it off the 5M-row scan.
    has_error = sa.text("last_error IS NOT NULL")
    op.create_index(
        "ix_jobs_with_error", "jobs", ["id"], postgresql_where=has_error, sqlite_where=has_error
    )
    # Count the jobs that exist already (none, unless upgrading a 0001 database in use).
    op.execute(
        "INSERT INTO job_counts (campaign_id, status, n, busy_seconds, attempts)"
        " SELECT campaign_id, status, COUNT(*), 0.0, SUM(attempts) FROM jobs"
        " GROUP BY campaign_id, status"
    )
    if dialect == "postgresql":
        op.execute(_fill(PG_COUNT_FUNCTION, dialect))
        for trigger in PG_TRIGGERS:
            op.execute(trigger)
    else:
        for trigger in SQLITE_TRIGGERS:
            op.execute(_fill(trigger, dialect))
    for sql in VIEWS.values():
        op.execute(_fill(sql, dialect))


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for name in VIEWS:
        op.execute(f"DROP VIEW {name}")
    op.execute("DROP TRIGGER jobs_count_update" + (" ON jobs" if dialect == "postgresql" else ""))
    op.execute("DROP TRIGGER jobs_count_delete" + (" ON jobs" if dialect == "postgresql" else ""))
    if dialect == "postgresql":
        op.execute("DROP FUNCTION nasfarm_count_job_changes()")
    op.drop_index("ix_jobs_with_error", "jobs")
    op.drop_table("job_counts")
