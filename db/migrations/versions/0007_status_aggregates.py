"""Monitoring from maintained aggregates; status tells the truth; resumable campaign creation.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

(Longer than our modules usually are: a migration carries the frozen SQL of both directions.)

- ``job_counts`` (the signed deltas the status triggers append) gains ``epochs``, ``cost`` (cell
  FLOPs x epochs) and ``unstarted`` (of ``n``, the running jobs that are leased but whose worker has
  not started them: claimed ahead). Summed per (campaign, epochs, status) they give job counts and
  the remaining / finished cost without reading the jobs: ``campaign_progress``, ``campaign_eta``
  and everything ``nasfarm status`` shows read O(campaigns x budgets) rows. The triggers are
  replaced to keep the new columns (PostgreSQL: statement-level, transition tables; SQLite: row
  level, on the columns that change a job's bucket). Seconds of lease time recorded before this
  revision were kept per campaign only: they are kept as rows of ``epochs = 0``.
- ``result_counts``: deltas of finished jobs and their reported training time per (campaign, UTC
  hour), appended by a trigger on ``results``; ``hourly_throughput`` and ``campaign_eta``'s device
  calibration read it instead of every result.
- ``results``: the index on ``created_at`` becomes (``campaign_id``, ``created_at``), so "the last
  hour" of a trained campaign never walks the rows an import of millions of published results
  wrote at the same time.
- ``campaigns.enqueued_at``: when the campaign's creation finished enqueueing its jobs; NULL while
  ``nasfarm campaign create`` is still streaming them (or was interrupted: running it again
  completes the campaign). Existing campaigns were created whole: their creation time.
- Views (names and columns kept; new columns appended):
  ``campaign_progress``: ``running`` counts the jobs actually training; ``claimed`` (new, last) the
  jobs leased ahead and not started; imported campaigns have no ``gpu_seconds`` or
  ``done_last_hour``. ``campaign_eta``: from the aggregates; an imported campaign has no
  last-hour cost and no ``seconds_per_cost``. ``active_workers``: jobs being trained (started),
  with the epoch and step of the newer of the latest epoch metric and the heartbeat.
  ``hourly_throughput``: trained campaigns only, from ``result_counts``. ``job_failures`` and
  ``active_workers`` start from the jobs' partial indexes even when read for one campaign.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

SNIPPETS = {
    "postgresql": {
        "now": "CAST(EXTRACT(EPOCH FROM now()) AS double precision)",
        "hour": "to_char(to_timestamp({x}) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:00')",
    },
    "sqlite": {
        "now": "((julianday('now') - 2440587.5) * 86400.0)",
        "hour": "strftime('%Y-%m-%d %H:00', {x}, 'unixepoch')",
    },
}

# A job's cost, as campaign_eta has always defined it: its cell's FLOPs x its epoch budget.
_COST = "COALESCE(CAST(cl.flops AS DOUBLE PRECISION), 0) * {row}.epochs"
# The rows of a job's bucket that are leased but not started: start_attempt writes lease_node.
_UNSTARTED = "CASE WHEN {row}.status = 'running' AND {row}.lease_node IS NULL THEN 1 ELSE 0 END"

# PostgreSQL: one statement-level trigger per UPDATE / DELETE (transition tables). Deltas are
# summed per (campaign, epochs, cell, status) first, so a heartbeat (nothing changes) reads no cell
# and inserts nothing; then priced with the cells' FLOPs and folded per (campaign, epochs, status).
PG_COUNT_FUNCTION = """
CREATE OR REPLACE FUNCTION nasfarm_count_job_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        INSERT INTO job_counts (campaign_id, epochs, status, n, cost, unstarted, busy_seconds, attempts)
        SELECT d.campaign_id, d.epochs, d.status, SUM(d.n), SUM(d.n * {cost_d}), SUM(d.unstarted),
               SUM(d.busy), SUM(d.attempts)
        FROM (
            SELECT campaign_id, epochs, cell_hash, status, SUM(n) AS n, SUM(unstarted) AS unstarted,
                   SUM(busy) AS busy, SUM(attempts) AS attempts
            FROM (
                SELECT campaign_id, epochs, cell_hash, status, 1 AS n, {unstarted_w} AS unstarted,
                       0.0 AS busy, attempts
                FROM new_rows w
                UNION ALL
                SELECT campaign_id, epochs, cell_hash, status, -1, -{unstarted_o}, 0.0, -attempts
                FROM old_rows o
                UNION ALL
                SELECT o.campaign_id, o.epochs, o.cell_hash, o.status, 0, 0, {now} - o.claimed_at, 0
                FROM old_rows o JOIN new_rows w ON w.id = o.id
                WHERE o.status = 'running' AND w.status <> 'running' AND o.claimed_at IS NOT NULL
            ) AS changes
            GROUP BY campaign_id, epochs, cell_hash, status
            HAVING SUM(n) <> 0 OR SUM(unstarted) <> 0 OR SUM(busy) <> 0 OR SUM(attempts) <> 0
        ) AS d
        LEFT JOIN cells cl ON cl.hash = d.cell_hash
        GROUP BY d.campaign_id, d.epochs, d.status;
    ELSE
        INSERT INTO job_counts (campaign_id, epochs, status, n, cost, unstarted, busy_seconds, attempts)
        SELECT o.campaign_id, o.epochs, o.status, -COUNT(*), -SUM({cost_o}), -SUM({unstarted_o}),
               0.0, -SUM(o.attempts)
        FROM old_rows o LEFT JOIN cells cl ON cl.hash = o.cell_hash
        GROUP BY o.campaign_id, o.epochs, o.status;
    END IF;
    RETURN NULL;
END
$$
"""
PG_RESULTS_FUNCTION = """
CREATE FUNCTION nasfarm_count_results() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO result_counts (campaign_id, hour_start, n, total_time, final_training_time)
        SELECT campaign_id, floor(created_at / 3600) * 3600, COUNT(*), COALESCE(SUM(total_time), 0),
               COALESCE(SUM(final_training_time), 0)
        FROM new_results GROUP BY campaign_id, floor(created_at / 3600);
    ELSE
        INSERT INTO result_counts (campaign_id, hour_start, n, total_time, final_training_time)
        SELECT campaign_id, floor(created_at / 3600) * 3600, -COUNT(*), -COALESCE(SUM(total_time), 0),
               -COALESCE(SUM(final_training_time), 0)
        FROM old_results GROUP BY campaign_id, floor(created_at / 3600);
    END IF;
    RETURN NULL;
END
$$
"""
PG_RESULTS_TRIGGERS = (
    "CREATE TRIGGER results_count_insert AFTER INSERT ON results"
    " REFERENCING NEW TABLE AS new_results FOR EACH STATEMENT EXECUTE FUNCTION nasfarm_count_results()",
    "CREATE TRIGGER results_count_delete AFTER DELETE ON results"
    " REFERENCING OLD TABLE AS old_results FOR EACH STATEMENT EXECUTE FUNCTION nasfarm_count_results()",
)

# SQLite: row-level triggers (the only kind). A job leaves one bucket and enters another when its
# status, its start (lease_node) or its attempts change; heartbeats touch none of these columns.
_SQLITE_FLOPS = (
    "COALESCE((SELECT CAST(flops AS DOUBLE PRECISION) FROM cells WHERE hash = {row}.cell_hash), 0)"
)
SQLITE_TRIGGERS = (
    """
    CREATE TRIGGER jobs_count_update AFTER UPDATE OF status, lease_node, attempts ON jobs
    WHEN OLD.status IS NOT NEW.status OR OLD.attempts IS NOT NEW.attempts
      OR (OLD.lease_node IS NULL) <> (NEW.lease_node IS NULL)
    BEGIN
        INSERT INTO job_counts (campaign_id, epochs, status, n, cost, unstarted, busy_seconds, attempts)
        VALUES
            (OLD.campaign_id, OLD.epochs, OLD.status, -1, -{flops_old} * OLD.epochs, -{unstarted_old},
             CASE WHEN OLD.status = 'running' AND NEW.status <> 'running' AND OLD.claimed_at IS NOT NULL
                  THEN {now} - OLD.claimed_at ELSE 0.0 END,
             -OLD.attempts),
            (NEW.campaign_id, NEW.epochs, NEW.status, 1, {flops_new} * NEW.epochs, {unstarted_new}, 0.0,
             NEW.attempts);
    END
    """,
    """
    CREATE TRIGGER jobs_count_delete AFTER DELETE ON jobs
    BEGIN
        INSERT INTO job_counts (campaign_id, epochs, status, n, cost, unstarted, busy_seconds, attempts)
        VALUES (OLD.campaign_id, OLD.epochs, OLD.status, -1, -{flops_old} * OLD.epochs, -{unstarted_old},
                0.0, -OLD.attempts);
    END
    """,
    """
    CREATE TRIGGER results_count_insert AFTER INSERT ON results
    BEGIN
        INSERT INTO result_counts (campaign_id, hour_start, n, total_time, final_training_time)
        VALUES (NEW.campaign_id, CAST(NEW.created_at / 3600 AS INTEGER) * 3600.0, 1,
                COALESCE(NEW.total_time, 0), COALESCE(NEW.final_training_time, 0));
    END
    """,
    """
    CREATE TRIGGER results_count_delete AFTER DELETE ON results
    BEGIN
        INSERT INTO result_counts (campaign_id, hour_start, n, total_time, final_training_time)
        VALUES (OLD.campaign_id, CAST(OLD.created_at / 3600 AS INTEGER) * 3600.0, -1,
                -COALESCE(OLD.total_time, 0), -COALESCE(OLD.final_training_time, 0));
    END
    """,
)

# The aggregates rebuilt from the rows (the jobs' counts; the lease seconds are kept, see above).
RECOUNT_JOBS = """
INSERT INTO job_counts (campaign_id, epochs, status, n, cost, unstarted, busy_seconds, attempts)
SELECT j.campaign_id, j.epochs, j.status, COUNT(*), SUM({cost_j}), SUM({unstarted_j}), 0.0, SUM(j.attempts)
FROM jobs j LEFT JOIN cells cl ON cl.hash = j.cell_hash
GROUP BY j.campaign_id, j.epochs, j.status
"""
COUNT_RESULTS = """
INSERT INTO result_counts (campaign_id, hour_start, n, total_time, final_training_time)
SELECT campaign_id, hour_start, COUNT(*), COALESCE(SUM(total_time), 0), COALESCE(SUM(final_training_time), 0)
FROM (SELECT campaign_id, {hour_start} AS hour_start, total_time, final_training_time FROM results) r
GROUP BY campaign_id, hour_start
"""
HOUR_START = {
    "postgresql": "floor(created_at / 3600) * 3600",
    "sqlite": "CAST(created_at / 3600 AS INTEGER) * 3600.0",
}

CAMPAIGN_PROGRESS = """
CREATE VIEW campaign_progress AS
WITH counts AS (
    SELECT campaign_id,
           CAST(SUM(n) AS BIGINT) AS total,
           CAST(SUM(CASE WHEN status = 'pending' THEN n ELSE 0 END) AS BIGINT) AS pending,
           CAST(SUM(CASE WHEN status = 'running' THEN n - unstarted ELSE 0 END) AS BIGINT) AS running,
           CAST(SUM(CASE WHEN status = 'running' THEN unstarted ELSE 0 END) AS BIGINT) AS claimed,
           CAST(SUM(CASE WHEN status = 'done' THEN n ELSE 0 END) AS BIGINT) AS done,
           CAST(SUM(CASE WHEN status = 'failed' THEN n ELSE 0 END) AS BIGINT) AS failed,
           CAST(SUM(CASE WHEN status = 'cancelled' THEN n ELSE 0 END) AS BIGINT) AS cancelled,
           CAST(SUM(busy_seconds) AS DOUBLE PRECISION) AS gpu_seconds,
           CAST(SUM(attempts) AS BIGINT) AS attempts
    FROM job_counts
    GROUP BY campaign_id
), recent AS (
    SELECT c.id AS campaign_id, COUNT(*) AS done_last_hour
    FROM campaigns c
    JOIN results r ON r.campaign_id = c.id AND r.created_at > {now} - 3600
    WHERE c.source <> 'imported'
    GROUP BY c.id
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
       CAST(CASE WHEN c.source = 'imported' THEN 0 ELSE COALESCE(k.gpu_seconds, 0) END
            AS DOUBLE PRECISION) AS gpu_seconds,
       COALESCE(r.done_last_hour, 0) AS done_last_hour,
       CAST(CASE WHEN r.done_last_hour > 0
                 THEN (k.pending + k.claimed + k.running) * 3600.0 / r.done_last_hour END
            AS DOUBLE PRECISION) AS eta_seconds,
       COALESCE(k.claimed, 0) AS claimed
FROM campaigns c
LEFT JOIN counts k ON k.campaign_id = c.id
LEFT JOIN recent r ON r.campaign_id = c.id
"""

CAMPAIGN_ETA = """
CREATE VIEW campaign_eta AS
WITH counts AS (
    SELECT campaign_id,
           SUM(CASE WHEN status IN ('pending', 'running') THEN n ELSE 0 END) AS remaining_jobs,
           SUM(CASE WHEN status IN ('pending', 'running') THEN cost ELSE 0 END) AS remaining_cost,
           SUM(CASE WHEN status = 'done' THEN cost ELSE 0 END) AS done_cost
    FROM job_counts
    GROUP BY campaign_id
), recent AS (
    SELECT c.id AS campaign_id,
           SUM(CAST(cl.flops AS DOUBLE PRECISION) * r.epochs) AS done_cost_last_hour
    FROM campaigns c
    JOIN results r ON r.campaign_id = c.id AND r.created_at > {now} - 3600
    JOIN cells cl ON cl.hash = r.cell_hash
    WHERE c.source <> 'imported'
    GROUP BY c.id
), trained AS (
    SELECT campaign_id, SUM(final_training_time) AS training_seconds
    FROM result_counts
    GROUP BY campaign_id
)
SELECT c.name AS campaign,
       CAST(COALESCE(m.remaining_jobs, 0) AS BIGINT) AS remaining_jobs,
       CAST(COALESCE(m.remaining_cost, 0) AS DOUBLE PRECISION) AS remaining_cost,
       CAST(COALESCE(m.done_cost, 0) AS DOUBLE PRECISION) AS done_cost,
       CAST(COALESCE(f.done_cost_last_hour, 0) AS DOUBLE PRECISION) AS done_cost_last_hour,
       CAST(CASE WHEN f.done_cost_last_hour > 0
                 THEN COALESCE(m.remaining_cost, 0) * 3600.0 / f.done_cost_last_hour END
            AS DOUBLE PRECISION) AS eta_seconds,
       CAST(CASE WHEN c.source <> 'imported' AND m.done_cost > 0 THEN t.training_seconds / m.done_cost END
            AS DOUBLE PRECISION) AS seconds_per_cost
FROM campaigns c
LEFT JOIN counts m ON m.campaign_id = c.id
LEFT JOIN recent f ON f.campaign_id = c.id
LEFT JOIN trained t ON t.campaign_id = c.id
"""

# _JOBS_FIRST: a view of a few jobs (the running ones, those with an error) is read with a filter on
# the campaign's name. Given "FROM jobs JOIN campaigns", SQLite's planner then starts from the
# campaign and walks all of its jobs (5M: seconds); a CROSS JOIN makes it start from the jobs'
# partial index (running jobs, jobs with an error), as without the filter. PostgreSQL reads a CROSS
# JOIN with a WHERE as an inner join and orders it by its statistics.
#
# The newer of two progress reports: the latest epoch metric of the current lease, and what the
# heartbeat carried (epochs only grow within a lease, so the larger epoch is the newer report). A
# lease starts from nothing: the metrics of an earlier lease (a released job keeps its attempt
# number) are not where this one stands.
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
       CASE WHEN m.epoch IS NOT NULL AND (j.progress_epoch IS NULL OR m.epoch > j.progress_epoch)
            THEN m.epoch ELSE j.progress_epoch END AS epoch,
       CASE WHEN m.epoch IS NOT NULL AND (j.progress_epoch IS NULL OR m.epoch > j.progress_epoch)
            THEN m.step ELSE COALESCE(j.progress_step, m.step) END AS step,
       {now} - j.heartbeat_at AS seconds_since_heartbeat,
       {now} - j.claimed_at AS seconds_running
FROM jobs j
CROSS JOIN campaigns c
LEFT JOIN job_metrics m ON m.id = (
    SELECT MAX(latest.id) FROM job_metrics latest
    WHERE latest.job_id = j.id AND latest.attempt = j.attempts AND latest.at > j.claimed_at
)
WHERE j.status = 'running' AND j.lease_node IS NOT NULL AND c.id = j.campaign_id
"""

# Unchanged columns; the jobs come first (see _JOBS_FIRST).
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
       j.error_signature,
       j.last_error,
       j.not_before,
       j.finished_at
FROM jobs j
CROSS JOIN campaigns c
WHERE j.last_error IS NOT NULL AND c.id = j.campaign_id
"""

HOURLY_THROUGHPUT = """
CREATE VIEW hourly_throughput AS
SELECT c.name AS campaign,
       {hour_of_start} AS hour,
       CAST(h.jobs_done AS BIGINT) AS jobs_done,
       h.training_seconds
FROM (
    SELECT campaign_id, hour_start, SUM(n) AS jobs_done,
           CAST(SUM(total_time) AS DOUBLE PRECISION) AS training_seconds
    FROM result_counts
    GROUP BY campaign_id, hour_start
    HAVING SUM(n) <> 0
) h
JOIN campaigns c ON c.id = h.campaign_id
WHERE c.source <> 'imported'
"""

VIEWS = {
    "campaign_progress": CAMPAIGN_PROGRESS,
    "campaign_eta": CAMPAIGN_ETA,
    "active_workers": ACTIVE_WORKERS,
    "hourly_throughput": HOURLY_THROUGHPUT,
    "job_failures": JOB_FAILURES,
}


def _fill(sql: str, dialect: str) -> str:
    snippets = SNIPPETS[dialect]
    rows = {f"{name}_{row}": template.format(row=row) for row in ("o", "w", "d", "j", "old", "new")
            for name, template in (("cost", _COST), ("unstarted", _UNSTARTED))}
    flops = {f"flops_{row}": _SQLITE_FLOPS.format(row=row.upper()) for row in ("old", "new")}
    fragments = {
        **rows, **flops,
        "unstarted_old": _UNSTARTED.format(row="OLD"), "unstarted_new": _UNSTARTED.format(row="NEW"),
        "cost_d": "COALESCE(CAST(cl.flops AS DOUBLE PRECISION), 0) * d.epochs",
        "now": snippets["now"],
        "hour_of_start": snippets["hour"].format(x="h.hour_start"),
        "hour_start": HOUR_START[dialect],
    }
    for key, value in fragments.items():
        sql = sql.replace("{" + key + "}", value)
    return sql


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("LOCK TABLE jobs IN SHARE MODE")  # no status change while the counts are rebuilt
    for name in VIEWS:
        op.execute(f"DROP VIEW {name}")
    # job_counts: the new columns, and its rows rebuilt from the jobs (lease seconds kept).
    op.add_column("job_counts", sa.Column("epochs", sa.SmallInteger, nullable=False, server_default="0"))
    op.add_column("job_counts", sa.Column("cost", sa.Double, nullable=False, server_default="0"))
    op.add_column("job_counts", sa.Column("unstarted", sa.BigInteger, nullable=False, server_default="0"))
    op.execute(
        "CREATE TEMPORARY TABLE kept_busy_seconds AS"
        " SELECT campaign_id, SUM(busy_seconds) AS seconds FROM job_counts GROUP BY campaign_id"
    )
    op.execute("DELETE FROM job_counts")
    op.execute(_fill(RECOUNT_JOBS, dialect))
    op.execute(
        "INSERT INTO job_counts (campaign_id, epochs, status, n, cost, unstarted, busy_seconds, attempts)"
        " SELECT campaign_id, 0, 'running', 0, 0.0, 0, seconds, 0 FROM kept_busy_seconds WHERE seconds <> 0"
    )
    op.execute("DROP TABLE kept_busy_seconds")
    op.create_table(
        "result_counts",
        sa.Column("id", BigId, nullable=False),
        sa.Column("campaign_id", sa.Integer, nullable=False),
        sa.Column("hour_start", sa.Double, nullable=False),
        sa.Column("n", sa.BigInteger, nullable=False),
        sa.Column("total_time", sa.Double, nullable=False, server_default="0"),
        sa.Column("final_training_time", sa.Double, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("id", name="pk_result_counts"),
    )
    op.execute(_fill(COUNT_RESULTS, dialect))
    if dialect == "postgresql":
        op.execute(_fill(PG_COUNT_FUNCTION, dialect))
        op.execute(PG_RESULTS_FUNCTION)
        for trigger in PG_RESULTS_TRIGGERS:
            op.execute(trigger)
    else:
        op.execute("DROP TRIGGER jobs_count_update")
        op.execute("DROP TRIGGER jobs_count_delete")
        for trigger in SQLITE_TRIGGERS:
            op.execute(_fill(trigger, dialect))
    op.drop_index("ix_results_created_at", "results")
    op.create_index("ix_results_campaign_id_created_at", "results", ["campaign_id", "created_at"])
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("enqueued_at", sa.Double))
    op.execute("UPDATE campaigns SET enqueued_at = created_at")
    for sql in VIEWS.values():
        op.execute(_fill(sql, dialect))


# --- downgrade: the definitions of revisions 0002-0006 --------------------------------------------

OLD_PG_COUNT_FUNCTION = """
CREATE OR REPLACE FUNCTION nasfarm_count_job_changes() RETURNS trigger LANGUAGE plpgsql AS $$
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
OLD_SQLITE_TRIGGERS = (
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
OLD_VIEWS = {
    "campaign_progress": """
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
SELECT c.id AS campaign_id, c.name AS campaign, COALESCE(k.total, 0) AS total,
       COALESCE(k.pending, 0) AS pending, COALESCE(k.running, 0) AS running,
       COALESCE(k.done, 0) AS done, COALESCE(k.failed, 0) AS failed,
       COALESCE(k.cancelled, 0) AS cancelled,
       CAST(CASE WHEN k.total > 0 THEN 100.0 * k.done / k.total END AS DOUBLE PRECISION) AS done_pct,
       COALESCE(k.attempts, 0) AS attempts, COALESCE(k.gpu_seconds, 0) AS gpu_seconds,
       COALESCE(r.done_last_hour, 0) AS done_last_hour,
       CAST(CASE WHEN r.done_last_hour > 0
                 THEN (k.pending + k.running) * 3600.0 / r.done_last_hour END
            AS DOUBLE PRECISION) AS eta_seconds
FROM campaigns c
LEFT JOIN counts k ON k.campaign_id = c.id
LEFT JOIN recent r ON r.campaign_id = c.id
""",
    "campaign_eta": """
CREATE VIEW campaign_eta AS
WITH remaining AS (
    SELECT j.campaign_id, COUNT(*) AS remaining_jobs,
           SUM(CAST(cl.flops AS DOUBLE PRECISION) * j.epochs) AS remaining_cost
    FROM jobs j JOIN cells cl ON cl.hash = j.cell_hash
    WHERE j.status IN ('pending', 'running')
    GROUP BY j.campaign_id
), finished AS (
    SELECT r.campaign_id,
           SUM(CAST(cl.flops AS DOUBLE PRECISION) * r.epochs) AS done_cost,
           SUM(CASE WHEN r.created_at > {now} - 3600
                    THEN CAST(cl.flops AS DOUBLE PRECISION) * r.epochs ELSE 0 END) AS done_cost_last_hour,
           SUM(r.final_training_time) AS training_seconds
    FROM results r JOIN cells cl ON cl.hash = r.cell_hash
    GROUP BY r.campaign_id
)
SELECT c.name AS campaign, COALESCE(m.remaining_jobs, 0) AS remaining_jobs,
       COALESCE(m.remaining_cost, 0) AS remaining_cost, COALESCE(f.done_cost, 0) AS done_cost,
       COALESCE(f.done_cost_last_hour, 0) AS done_cost_last_hour,
       CAST(CASE WHEN f.done_cost_last_hour > 0
                 THEN COALESCE(m.remaining_cost, 0) * 3600.0 / f.done_cost_last_hour END
            AS DOUBLE PRECISION) AS eta_seconds,
       CAST(CASE WHEN f.done_cost > 0 THEN f.training_seconds / f.done_cost END
            AS DOUBLE PRECISION) AS seconds_per_cost
FROM campaigns c
LEFT JOIN remaining m ON m.campaign_id = c.id
LEFT JOIN finished f ON f.campaign_id = c.id
""",
    "active_workers": """
CREATE VIEW active_workers AS
SELECT j.lease_owner AS owner, j.lease_node AS node, j.id AS job_id, c.name AS campaign, j.cell_hash,
       j.epochs, j.repeat, j.attempts AS attempt, j.progress_epoch AS epoch, j.progress_step AS step,
       {now} - j.heartbeat_at AS seconds_since_heartbeat, {now} - j.claimed_at AS seconds_running
FROM jobs j
JOIN campaigns c ON c.id = j.campaign_id
WHERE j.status = 'running'
""",
    "hourly_throughput": """
CREATE VIEW hourly_throughput AS
SELECT c.name AS campaign, h.hour, h.jobs_done, h.training_seconds
FROM (
    SELECT campaign_id, {old_hour} AS hour, COUNT(*) AS jobs_done,
           CAST(SUM(total_time) AS DOUBLE PRECISION) AS training_seconds
    FROM results
    GROUP BY campaign_id, {old_hour}
) h
JOIN campaigns c ON c.id = h.campaign_id
""",
}
OLD_VIEWS["job_failures"] = """
CREATE VIEW job_failures AS
SELECT j.id AS job_id, c.name AS campaign, j.cell_hash, j.epochs, j.repeat, j.status, j.attempts,
       j.max_attempts, j.preemptions, j.error_signature, j.last_error, j.not_before, j.finished_at
FROM jobs j
JOIN campaigns c ON c.id = j.campaign_id
WHERE j.last_error IS NOT NULL
"""
OLD_HOUR = {
    "postgresql": "to_char(to_timestamp(floor(created_at / 3600) * 3600) AT TIME ZONE 'UTC', "
                  "'YYYY-MM-DD HH24:00')",
    "sqlite": "strftime('%Y-%m-%d %H:00', created_at, 'unixepoch')",
}


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    now = SNIPPETS[dialect]["now"]
    for name in VIEWS:
        op.execute(f"DROP VIEW {name}")
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("enqueued_at")
    op.drop_index("ix_results_campaign_id_created_at", "results")
    op.create_index("ix_results_created_at", "results", ["created_at"])
    if dialect == "postgresql":
        for trigger in ("results_count_insert", "results_count_delete"):
            op.execute(f"DROP TRIGGER {trigger} ON results")
        op.execute("DROP FUNCTION nasfarm_count_results()")
        op.execute(OLD_PG_COUNT_FUNCTION.replace("{now}", now))
    else:
        for trigger in ("jobs_count_update", "jobs_count_delete", "results_count_insert",
                        "results_count_delete"):
            op.execute(f"DROP TRIGGER {trigger}")
        for trigger in OLD_SQLITE_TRIGGERS:
            op.execute(trigger.replace("{now}", now))
    op.drop_table("result_counts")
    # job_counts folded back to one row per (campaign, status).
    op.execute(
        "CREATE TEMPORARY TABLE folded_job_counts AS SELECT campaign_id, status, SUM(n) AS n,"
        " SUM(busy_seconds) AS busy_seconds, SUM(attempts) AS attempts FROM job_counts"
        " GROUP BY campaign_id, status"
    )
    op.execute("DELETE FROM job_counts")
    with op.batch_alter_table("job_counts") as batch:
        batch.drop_column("unstarted")
        batch.drop_column("cost")
        batch.drop_column("epochs")
    op.execute(
        "INSERT INTO job_counts (campaign_id, status, n, busy_seconds, attempts)"
        " SELECT campaign_id, status, n, busy_seconds, attempts FROM folded_job_counts"
    )
    op.execute("DROP TABLE folded_job_counts")
    for sql in OLD_VIEWS.values():
        op.execute(sql.replace("{now}", now).replace("{old_hour}", OLD_HOUR[dialect]))
