"""Jobs refer to their cell by an integer id, not by its 32-character hash.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30

Every byte of a job row is paid 5,083,488 times in a full campaign, and the cell's hash was paid
twice (the row, and the unique index on (campaign, cell, epochs, repeat)). Measured on the full
campaign before this revision: SQLite 959 MB, of which the jobs' hashes were ~64 bytes a job;
PostgreSQL's unique index alone 447 MB, filled in random order.

- ``cells`` gains ``id`` (its primary key; ``hash`` stays, unique). Existing cells are numbered in
  the order they were stored (SQLite: their rowid; PostgreSQL: a table scan's order).
- ``jobs.cell_hash`` becomes ``jobs.cell_id``; the unique constraint follows. A job whose cell was
  never stored (only hand-written SQL makes one) keeps its hash through a stored placeholder cell
  with no matrix and no ops: nothing is lost, and claiming it fails as bad input, as it did.
- SQLite's two claim indexes drop their explicit ``id`` column: every SQLite index ends with the
  rowid (jobs.id) already, and its planner reads the claim's order from it (PostgreSQL's keep it).
- The status triggers price a job by its cell's id; the views that showed ``jobs.cell_hash``
  (``active_workers``, ``job_failures``) show the cell's hash as before, and ``campaign_budgets``
  counts cells by id. Names and columns of every view are unchanged. ``results`` and
  ``promotions`` keep the hash: they are read by it, and hold one row per result or promotion.

SQLite cannot change a table's primary key or drop a column in a unique constraint in place: both
tables are rebuilt (``db.migrate.upgrade`` turns foreign-key enforcement off around the migration;
the references to jobs are checked before it commits). PostgreSQL alters them in place (the jobs
table is rewritten once). Not reversible: downgrading raises; restore a backup taken before the
upgrade instead.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

NOW = {
    "postgresql": "CAST(EXTRACT(EPOCH FROM now()) AS double precision)",
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
}
_UNSTARTED = "CASE WHEN {row}.status = 'running' AND {row}.lease_node IS NULL THEN 1 ELSE 0 END"

# A job's cell never stored: a placeholder keeps its hash (see above).
PLACEHOLDER_CELLS = """
INSERT INTO cells (hash, matrix, ops, vertices, edges)
SELECT DISTINCT j.cell_hash, '[]', '[]', 0, 0 FROM jobs j
WHERE NOT EXISTS (SELECT 1 FROM cells cl WHERE cl.hash = j.cell_hash)
"""

# --- PostgreSQL: the status trigger's function, by cell id (0007's, otherwise unchanged) ---------
PG_COUNT_FUNCTION = """
CREATE OR REPLACE FUNCTION nasfarm_count_job_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        INSERT INTO job_counts (campaign_id, epochs, status, n, cost, unstarted, busy_seconds, attempts)
        SELECT d.campaign_id, d.epochs, d.status, SUM(d.n),
               SUM(d.n * COALESCE(CAST(cl.flops AS DOUBLE PRECISION), 0) * d.epochs), SUM(d.unstarted),
               SUM(d.busy), SUM(d.attempts)
        FROM (
            SELECT campaign_id, epochs, cell_id, status, SUM(n) AS n, SUM(unstarted) AS unstarted,
                   SUM(busy) AS busy, SUM(attempts) AS attempts
            FROM (
                SELECT campaign_id, epochs, cell_id, status, 1 AS n, {unstarted_w} AS unstarted,
                       0.0 AS busy, attempts
                FROM new_rows w
                UNION ALL
                SELECT campaign_id, epochs, cell_id, status, -1, -{unstarted_o}, 0.0, -attempts
                FROM old_rows o
                UNION ALL
                SELECT o.campaign_id, o.epochs, o.cell_id, o.status, 0, 0, {now} - o.claimed_at, 0
                FROM old_rows o JOIN new_rows w ON w.id = o.id
                WHERE o.status = 'running' AND w.status <> 'running' AND o.claimed_at IS NOT NULL
            ) AS changes
            GROUP BY campaign_id, epochs, cell_id, status
            HAVING SUM(n) <> 0 OR SUM(unstarted) <> 0 OR SUM(busy) <> 0 OR SUM(attempts) <> 0
        ) AS d
        LEFT JOIN cells cl ON cl.id = d.cell_id
        GROUP BY d.campaign_id, d.epochs, d.status;
    ELSE
        INSERT INTO job_counts (campaign_id, epochs, status, n, cost, unstarted, busy_seconds, attempts)
        SELECT o.campaign_id, o.epochs, o.status, -COUNT(*),
               -SUM(COALESCE(CAST(cl.flops AS DOUBLE PRECISION), 0) * o.epochs), -SUM({unstarted_o}),
               0.0, -SUM(o.attempts)
        FROM old_rows o LEFT JOIN cells cl ON cl.id = o.cell_id
        GROUP BY o.campaign_id, o.epochs, o.status;
    END IF;
    RETURN NULL;
END
$$
"""

# --- SQLite: the rebuilt tables, their indexes and the jobs' status triggers --------------------
SQLITE_CELLS = """
CREATE TABLE cells_new (
    id INTEGER NOT NULL,
    hash VARCHAR(32) NOT NULL,
    matrix TEXT NOT NULL,
    ops TEXT NOT NULL,
    vertices SMALLINT NOT NULL,
    edges SMALLINT NOT NULL,
    trainable_parameters BIGINT,
    flops BIGINT,
    CONSTRAINT pk_cells PRIMARY KEY (id),
    CONSTRAINT uq_cells_hash UNIQUE (hash)
)
"""
SQLITE_COPY_CELLS = """
INSERT INTO cells_new (id, hash, matrix, ops, vertices, edges, trainable_parameters, flops)
SELECT rowid, hash, matrix, ops, vertices, edges, trainable_parameters, flops FROM cells ORDER BY rowid
"""
_JOB_COLUMNS_AFTER_CELL = (
    "epochs, repeat, seed, status, priority, attempts, max_attempts, preemptions, not_before, "
    "lease_owner, lease_token, lease_node, claimed_at, heartbeat_at, finished_at, progress_step, "
    "progress_epoch, checkpoint_location, last_error, lease_expires_at, error_signature"
)
SQLITE_JOBS = """
CREATE TABLE jobs_new (
    id INTEGER NOT NULL,
    campaign_id INTEGER NOT NULL,
    cell_id INTEGER NOT NULL,
    epochs SMALLINT NOT NULL,
    repeat SMALLINT NOT NULL,
    seed BIGINT NOT NULL,
    status VARCHAR(10) DEFAULT 'pending' NOT NULL,
    priority INTEGER DEFAULT '0' NOT NULL,
    attempts INTEGER DEFAULT '0' NOT NULL,
    max_attempts INTEGER DEFAULT '3' NOT NULL,
    preemptions INTEGER DEFAULT '0' NOT NULL,
    not_before DOUBLE DEFAULT '0' NOT NULL,
    lease_owner VARCHAR(200),
    lease_token VARCHAR(64),
    lease_node VARCHAR(200),
    claimed_at DOUBLE,
    heartbeat_at DOUBLE,
    finished_at DOUBLE,
    progress_step BIGINT,
    progress_epoch DOUBLE,
    checkpoint_location TEXT,
    last_error TEXT,
    lease_expires_at DOUBLE,
    error_signature VARCHAR(200),
    CONSTRAINT pk_jobs PRIMARY KEY (id),
    CONSTRAINT uq_jobs_campaign_id_cell_id_epochs_repeat UNIQUE (campaign_id, cell_id, epochs, repeat),
    CONSTRAINT ck_jobs_ck_jobs_status CHECK (status IN ('pending', 'running', 'done', 'failed', 'cancelled'))
)
"""
SQLITE_COPY_JOBS = f"""
INSERT INTO jobs_new (id, campaign_id, cell_id, {_JOB_COLUMNS_AFTER_CELL})
SELECT j.id, j.campaign_id, cl.id, {", ".join("j." + c for c in _JOB_COLUMNS_AFTER_CELL.split(", "))}
FROM jobs j JOIN cells cl ON cl.hash = j.cell_hash
ORDER BY j.id
"""
SQLITE_JOB_INDEXES = (
    "CREATE INDEX ix_jobs_claim ON jobs (priority DESC) WHERE status = 'pending'",
    "CREATE INDEX ix_jobs_campaign_claim ON jobs (campaign_id, priority DESC) WHERE status = 'pending'",
    "CREATE INDEX ix_jobs_with_error ON jobs (id) WHERE last_error IS NOT NULL",
    "CREATE INDEX ix_jobs_running_lease_expiry ON jobs (lease_expires_at) WHERE status = 'running'",
)
_SQLITE_FLOPS = "COALESCE((SELECT CAST(flops AS DOUBLE PRECISION) FROM cells WHERE id = {row}.cell_id), 0)"
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
)

# --- the views that read jobs.cell_hash (0006, 0007), by cell id; names and columns unchanged ----
# The hash comes from a scalar subquery on the cells' primary key: it leaves the planner's choice of
# where to start (the jobs' partial indexes, see 0007's _JOBS_FIRST) as it was.
ACTIVE_WORKERS = """
CREATE VIEW active_workers AS
SELECT j.lease_owner AS owner,
       j.lease_node AS node,
       j.id AS job_id,
       c.name AS campaign,
       (SELECT cl.hash FROM cells cl WHERE cl.id = j.cell_id) AS cell_hash,
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

JOB_FAILURES = """
CREATE VIEW job_failures AS
SELECT j.id AS job_id,
       c.name AS campaign,
       (SELECT cl.hash FROM cells cl WHERE cl.id = j.cell_id) AS cell_hash,
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

# 0006's definition with the jobs' cells counted and priced by id.
CAMPAIGN_BUDGETS = """
CREATE VIEW campaign_budgets AS
WITH adaptive_jobs AS (
    SELECT j.campaign_id, j.epochs, j.cell_id, j.status, CAST(cl.flops AS DOUBLE PRECISION) AS flops
    FROM jobs j
    JOIN promotion_rounds pr ON pr.campaign_id = j.campaign_id AND pr.epochs = j.epochs
    JOIN cells cl ON cl.id = j.cell_id
), job_state AS (
    SELECT campaign_id, epochs,
           COUNT(DISTINCT cell_id) AS cells,
           COUNT(*) AS jobs,
           SUM(CASE WHEN status = 'pending' THEN 1 ELSE 0 END) AS pending,
           SUM(CASE WHEN status = 'running' THEN 1 ELSE 0 END) AS running,
           SUM(CASE WHEN status = 'done' THEN 1 ELSE 0 END) AS done,
           SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) AS failed,
           SUM(CASE WHEN status = 'cancelled' THEN 1 ELSE 0 END) AS cancelled,
           SUM(flops * epochs) AS enqueued_cost
    FROM adaptive_jobs
    GROUP BY campaign_id, epochs
), cell_state AS (
    SELECT campaign_id, epochs, cell_id,
           MAX(CASE WHEN status IN ('pending', 'running', 'cancelled') THEN 1 ELSE 0 END) AS unfinished
    FROM adaptive_jobs
    GROUP BY campaign_id, epochs, cell_id
), finished AS (
    SELECT campaign_id, epochs, SUM(1 - unfinished) AS cells_finished
    FROM cell_state
    GROUP BY campaign_id, epochs
), means AS (
    SELECT r.campaign_id, r.epochs, r.cell_hash, AVG(r.final_validation_accuracy) AS mean
    FROM results r
    JOIN promotion_rounds pr ON pr.campaign_id = r.campaign_id AND pr.epochs = r.epochs
    WHERE r.final_validation_accuracy IS NOT NULL
    GROUP BY r.campaign_id, r.epochs, r.cell_hash
), ranked AS (
    SELECT campaign_id, epochs, mean,
           ROW_NUMBER() OVER (PARTITION BY campaign_id, epochs ORDER BY mean DESC, cell_hash) AS cell_rank,
           COUNT(*) OVER (PARTITION BY campaign_id, epochs) AS n
    FROM means
), done_cost AS (
    SELECT r.campaign_id, r.epochs, SUM(CAST(cl.flops AS DOUBLE PRECISION) * r.epochs) AS done_cost
    FROM results r
    JOIN promotion_rounds pr ON pr.campaign_id = r.campaign_id AND pr.epochs = r.epochs
    JOIN cells cl ON cl.hash = r.cell_hash
    GROUP BY r.campaign_id, r.epochs
), grid AS (
    SELECT j.campaign_id, SUM(j.flops) AS flops_per_epoch
    FROM adaptive_jobs j
    JOIN promotion_rounds pr ON pr.campaign_id = j.campaign_id AND pr.epochs = j.epochs
    WHERE pr.budget_index = 0
    GROUP BY j.campaign_id
), promoted AS (
    SELECT campaign_id, epochs, COUNT(*) AS promoted
    FROM promotions
    GROUP BY campaign_id, epochs
)
SELECT c.name AS campaign,
       pr.budget_index,
       pr.epochs,
       pr.next_epochs,
       CAST(c.promote_numerator AS DOUBLE PRECISION) / c.promote_denominator AS promote_fraction,
       c.promote_mode,
       COALESCE(js.cells, 0) AS cells,
       COALESCE(js.jobs, 0) AS jobs,
       COALESCE(js.pending, 0) AS pending,
       COALESCE(js.running, 0) AS running,
       COALESCE(js.done, 0) AS done,
       COALESCE(js.failed, 0) AS failed,
       COALESCE(js.cancelled, 0) AS cancelled,
       COALESCE(f.cells_finished, 0) AS cells_finished,
       COALESCE(rk.n, 0) AS cells_ranked,
       COALESCE(p.promoted, 0) AS promoted,
       CASE WHEN pr.decided_at IS NULL THEN 0 ELSE 1 END AS decided,
       pr.decided_at,
       pr.decided_by,
       CASE WHEN pr.next_epochs IS NULL THEN NULL
            WHEN pr.decided_at IS NOT NULL THEN pr.threshold
            ELSE rk.mean END AS threshold,
       COALESCE(dc.done_cost, 0) AS done_cost,
       COALESCE(js.enqueued_cost, 0) AS enqueued_cost,
       COALESCE(g.flops_per_epoch, 0) * pr.epochs AS grid_cost
FROM promotion_rounds pr
JOIN campaigns c ON c.id = pr.campaign_id
LEFT JOIN job_state js ON js.campaign_id = pr.campaign_id AND js.epochs = pr.epochs
LEFT JOIN finished f ON f.campaign_id = pr.campaign_id AND f.epochs = pr.epochs
LEFT JOIN ranked rk ON rk.campaign_id = pr.campaign_id AND rk.epochs = pr.epochs
      AND rk.cell_rank = (rk.n * c.promote_numerator + c.promote_denominator - 1) / c.promote_denominator
LEFT JOIN done_cost dc ON dc.campaign_id = pr.campaign_id AND dc.epochs = pr.epochs
LEFT JOIN grid g ON g.campaign_id = pr.campaign_id
LEFT JOIN promoted p ON p.campaign_id = pr.campaign_id AND p.epochs = pr.epochs
"""

# 0006's, unchanged: it reads campaign_budgets, so it is dropped and made again with it.
CAMPAIGN_COMPUTE = """
CREATE VIEW campaign_compute AS
SELECT campaign,
       MAX(promote_fraction) AS promote_fraction,
       MAX(promote_mode) AS promote_mode,
       SUM(done_cost) AS done_cost,
       SUM(enqueued_cost) AS enqueued_cost,
       SUM(grid_cost) AS grid_cost,
       CAST(CASE WHEN SUM(grid_cost) > 0 THEN SUM(done_cost) / SUM(grid_cost) END
            AS DOUBLE PRECISION) AS done_fraction_of_grid,
       CAST(CASE WHEN SUM(grid_cost) > 0 THEN SUM(enqueued_cost) / SUM(grid_cost) END
            AS DOUBLE PRECISION) AS enqueued_fraction_of_grid,
       SUM(CASE WHEN budget_index = 0 THEN cells ELSE 0 END) AS cells,
       SUM(CASE WHEN next_epochs IS NULL THEN cells ELSE 0 END) AS cells_at_last_budget
FROM campaign_budgets
GROUP BY campaign
"""

# Dropped first (campaign_compute reads campaign_budgets), made again last, in this order reversed.
VIEWS = {
    "campaign_compute": CAMPAIGN_COMPUTE,
    "campaign_budgets": CAMPAIGN_BUDGETS,
    "active_workers": ACTIVE_WORKERS,
    "job_failures": JOB_FAILURES,
}


def _fill(sql: str, dialect: str) -> str:
    fragments = {
        "now": NOW[dialect],
        "unstarted_w": _UNSTARTED.format(row="w"), "unstarted_o": _UNSTARTED.format(row="o"),
        "unstarted_old": _UNSTARTED.format(row="OLD"), "unstarted_new": _UNSTARTED.format(row="NEW"),
        "flops_old": _SQLITE_FLOPS.format(row="OLD"), "flops_new": _SQLITE_FLOPS.format(row="NEW"),
    }
    for key, value in fragments.items():
        sql = sql.replace("{" + key + "}", value)
    return sql


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for name in VIEWS:
        op.execute(f"DROP VIEW {name}")
    if dialect == "postgresql":
        _upgrade_postgresql()
    else:
        _upgrade_sqlite()
    for sql in reversed(VIEWS.values()):
        op.execute(_fill(sql, dialect))


def _upgrade_postgresql() -> None:
    op.execute("LOCK TABLE cells, jobs IN ACCESS EXCLUSIVE MODE")
    # cells: numbered by a new serial column (filled as the table is scanned), its primary key.
    op.execute("ALTER TABLE cells DROP CONSTRAINT pk_cells")
    op.execute("ALTER TABLE cells ADD COLUMN id SERIAL")
    op.execute("ALTER TABLE cells ADD CONSTRAINT pk_cells PRIMARY KEY (id)")
    op.execute("ALTER TABLE cells ADD CONSTRAINT uq_cells_hash UNIQUE (hash)")
    op.execute(PLACEHOLDER_CELLS)
    # jobs: the id written beside the hash (one rewrite of the table), then the hash dropped.
    op.execute("ALTER TABLE jobs ADD COLUMN cell_id INTEGER")
    op.execute("UPDATE jobs SET cell_id = cl.id FROM cells cl WHERE cl.hash = jobs.cell_hash")
    op.execute("ALTER TABLE jobs ALTER COLUMN cell_id SET NOT NULL")
    op.execute("ALTER TABLE jobs DROP CONSTRAINT uq_jobs_campaign_id_cell_hash_epochs_repeat")
    op.execute("ALTER TABLE jobs DROP COLUMN cell_hash")
    op.execute("ALTER TABLE jobs ADD CONSTRAINT uq_jobs_campaign_id_cell_id_epochs_repeat"
               " UNIQUE (campaign_id, cell_id, epochs, repeat)")
    op.execute(_fill(PG_COUNT_FUNCTION, "postgresql"))


def _upgrade_sqlite() -> None:
    bind = op.get_bind()
    # Renaming a table leaves the views and triggers that name it alone (they are made again or
    # still valid): SQLite >= 3.26 would otherwise re-check every view against a half-built schema.
    op.execute("PRAGMA legacy_alter_table = ON")
    op.execute(SQLITE_CELLS)
    op.execute(SQLITE_COPY_CELLS)
    op.execute("DROP TABLE cells")
    op.execute("ALTER TABLE cells_new RENAME TO cells")
    op.execute(PLACEHOLDER_CELLS)
    op.execute(SQLITE_JOBS)
    op.execute(SQLITE_COPY_JOBS)
    op.execute("DROP TABLE jobs")  # its indexes and triggers go with it
    op.execute("ALTER TABLE jobs_new RENAME TO jobs")
    op.execute("PRAGMA legacy_alter_table = OFF")
    for index in SQLITE_JOB_INDEXES:
        op.execute(index)
    for trigger in SQLITE_TRIGGERS:
        op.execute(_fill(trigger, "sqlite"))
    # Foreign-key enforcement is off while the tables are swapped (db.migrate): check the
    # references to jobs (events, metrics, results) before this transaction commits.
    broken = bind.execute(sa.text("PRAGMA foreign_key_check")).fetchall()
    if broken:
        raise RuntimeError(f"migration 0008: {len(broken)} rows refer to missing rows, e.g. {broken[0]}")


def downgrade() -> None:
    raise NotImplementedError(
        "revision 0008 (jobs refer to cells by id) is not reversible: restore the database from a "
        "backup taken before `nasfarm db upgrade`"
    )
