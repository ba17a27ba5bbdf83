"""Monitoring and upkeep: the job-count bookkeeping, the views' reads, results, locks and pings.

The views themselves are created by the migrations (0002, 0003); db.views documents them.
"""

PING = "SELECT 1"

# PostgreSQL: concurrent `nasfarm db upgrade` runs take turns (any constant key; released at commit).
LOCK_MIGRATIONS_POSTGRESQL = "SELECT pg_advisory_xact_lock(7310101)"

COUNT_JOB_COUNT_ROWS = "SELECT COUNT(*) FROM job_counts"

# compact_job_counts (PostgreSQL): fold the delta rows into one row per (campaign, status) in one
# statement. Rows inserted meanwhile by other transactions are not in this statement's snapshot,
# so they are neither deleted nor counted twice.
COMPACT_JOB_COUNTS_POSTGRESQL = """
WITH gone AS (
    DELETE FROM job_counts RETURNING campaign_id, status, n, busy_seconds, attempts
)
INSERT INTO job_counts (campaign_id, status, n, busy_seconds, attempts)
SELECT campaign_id, status, SUM(n), SUM(busy_seconds), SUM(attempts) FROM gone
GROUP BY campaign_id, status
HAVING SUM(n) <> 0 OR SUM(busy_seconds) <> 0 OR SUM(attempts) <> 0
"""
# compact_job_counts (SQLite): the same in five statements; the caller's write lock keeps them atomic.
COMPACT_JOB_COUNTS_SQLITE = (
    "CREATE TEMP TABLE IF NOT EXISTS folded_counts (campaign_id, status, n, busy_seconds, attempts)",
    "DELETE FROM temp.folded_counts",
    """INSERT INTO temp.folded_counts
       SELECT campaign_id, status, SUM(n), SUM(busy_seconds), SUM(attempts)
       FROM job_counts GROUP BY campaign_id, status
       HAVING SUM(n) <> 0 OR SUM(busy_seconds) <> 0 OR SUM(attempts) <> 0""",
    "DELETE FROM job_counts",
    """INSERT INTO job_counts (campaign_id, status, n, busy_seconds, attempts)
       SELECT campaign_id, status, n, busy_seconds, attempts FROM temp.folded_counts""",
)

# recount: rebuild job_counts from the jobs themselves, keeping the GPU-seconds. PostgreSQL locks
# out status changes meanwhile; SQLite's write lock already does.
LOCK_JOBS_FOR_RECOUNT_POSTGRESQL = "LOCK TABLE jobs IN SHARE MODE"
BUSY_SECONDS_BY_CAMPAIGN = "SELECT campaign_id, SUM(busy_seconds) FROM job_counts GROUP BY campaign_id"
DELETE_JOB_COUNTS = "DELETE FROM job_counts"
COUNT_JOBS_INTO_JOB_COUNTS = """
INSERT INTO job_counts (campaign_id, status, n, busy_seconds, attempts)
SELECT campaign_id, status, COUNT(*), 0.0, SUM(attempts) FROM jobs GROUP BY campaign_id, status
"""
KEEP_BUSY_SECONDS = """
INSERT INTO job_counts (campaign_id, status, n, busy_seconds) VALUES (:campaign_id, 'running', 0, :seconds)
"""

# --- the views ------------------------------------------------------------------------------------
CAMPAIGN_PROGRESS = "SELECT * FROM campaign_progress ORDER BY campaign_id"
# read_view: {view} and {order} come from fixed tables in db.views, never from a caller's string;
# {where} is empty or a campaign filter with bind parameters; {limit} empty or "LIMIT :limit".
READ_VIEW = "SELECT * FROM {view} {where} ORDER BY {order} {limit}"

# --- results --------------------------------------------------------------------------------------
CAMPAIGN_EXISTS = "SELECT 1 FROM campaigns WHERE name = :campaign"
NB101_RESULTS = "SELECT * FROM nb101_results {where} ORDER BY job_id"
