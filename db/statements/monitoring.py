"""Monitoring and upkeep: the job-count bookkeeping, the views' reads, results, locks and pings.

The views themselves are created by the migrations (0002, 0003, 0005, 0007); db.views documents
them, db.counts keeps the aggregates they read. ``{hour_start}`` is filled per database.
"""

PING = "SELECT 1"

# PostgreSQL: concurrent `nasfarm db upgrade` runs take turns (any constant key; released at commit).
LOCK_MIGRATIONS_POSTGRESQL = "SELECT pg_advisory_xact_lock(7310101)"

# --- the aggregates behind the views (db.counts) --------------------------------------------------
COUNT_JOB_COUNT_ROWS = "SELECT COUNT(*) FROM job_counts"
COUNT_RESULT_COUNT_ROWS = "SELECT COUNT(*) FROM result_counts"

# A job's cost (campaign_eta): its cell's FLOPs x its epoch budget; a cell without FLOPs costs 0.
_JOB_COST = "COALESCE(CAST(cl.flops AS DOUBLE PRECISION), 0) * j.epochs"
_UNSTARTED = "CASE WHEN j.status = 'running' AND j.lease_node IS NULL THEN 1 ELSE 0 END"
_JOB_COUNT_COLUMNS = "campaign_id, epochs, status, n, cost, unstarted, busy_seconds, attempts"

# count_new_jobs: the jobs a statement just inserted into one campaign (id above :after_id, the
# largest id before it), counted in the buckets they were inserted in. The inserter holds the
# campaign's lock (LOCK_CAMPAIGN), so no one else adds jobs to that campaign meanwhile; rows other
# campaigns insert at the same time have ids above :after_id too and are filtered out.
MAX_JOB_ID = "SELECT COALESCE(MAX(id), 0) FROM jobs"
COUNT_NEW_JOBS = f"""
INSERT INTO job_counts ({_JOB_COUNT_COLUMNS})
SELECT j.campaign_id, j.epochs, j.status, COUNT(*), SUM({_JOB_COST}), SUM({_UNSTARTED}), 0.0, SUM(j.attempts)
FROM jobs j LEFT JOIN cells cl ON cl.id = j.cell_id
WHERE j.campaign_id = :campaign_id AND j.id > :after_id
GROUP BY j.campaign_id, j.epochs, j.status
"""
# add_pending: jobs a bulk load inserted and counted itself (db.bulk tallies them per budget).
ADD_PENDING = f"""
INSERT INTO job_counts ({_JOB_COUNT_COLUMNS})
VALUES (:campaign_id, :epochs, 'pending', :n, :cost, 0, 0.0, 0)
"""

# compact (PostgreSQL): fold the delta rows into one row per key in one statement each. Rows
# inserted meanwhile by other transactions are not in the statement's snapshot, so they are neither
# deleted nor counted twice.
COMPACT_JOB_COUNTS_POSTGRESQL = f"""
WITH gone AS (
    DELETE FROM job_counts RETURNING {_JOB_COUNT_COLUMNS}
)
INSERT INTO job_counts ({_JOB_COUNT_COLUMNS})
SELECT campaign_id, epochs, status, SUM(n), SUM(cost), SUM(unstarted), SUM(busy_seconds), SUM(attempts)
FROM gone
GROUP BY campaign_id, epochs, status
HAVING SUM(n) <> 0 OR SUM(cost) <> 0 OR SUM(unstarted) <> 0 OR SUM(busy_seconds) <> 0 OR SUM(attempts) <> 0
"""
_RESULT_COUNT_COLUMNS = "campaign_id, hour_start, n, total_time, final_training_time"
COMPACT_RESULT_COUNTS_POSTGRESQL = f"""
WITH gone AS (
    DELETE FROM result_counts RETURNING {_RESULT_COUNT_COLUMNS}
)
INSERT INTO result_counts ({_RESULT_COUNT_COLUMNS})
SELECT campaign_id, hour_start, SUM(n), SUM(total_time), SUM(final_training_time)
FROM gone
GROUP BY campaign_id, hour_start
HAVING SUM(n) <> 0 OR SUM(total_time) <> 0 OR SUM(final_training_time) <> 0
"""
# compact (SQLite): the same through a temporary table; the caller's write lock keeps them atomic.
COMPACT_JOB_COUNTS_SQLITE = (
    f"CREATE TEMP TABLE IF NOT EXISTS folded_counts ({_JOB_COUNT_COLUMNS})",
    "DELETE FROM temp.folded_counts",
    """INSERT INTO temp.folded_counts
       SELECT campaign_id, epochs, status, SUM(n), SUM(cost), SUM(unstarted), SUM(busy_seconds), SUM(attempts)
       FROM job_counts GROUP BY campaign_id, epochs, status
       HAVING SUM(n) <> 0 OR SUM(cost) <> 0 OR SUM(unstarted) <> 0 OR SUM(busy_seconds) <> 0
           OR SUM(attempts) <> 0""",
    "DELETE FROM job_counts",
    f"INSERT INTO job_counts ({_JOB_COUNT_COLUMNS}) SELECT {_JOB_COUNT_COLUMNS} FROM temp.folded_counts",
)
COMPACT_RESULT_COUNTS_SQLITE = (
    f"CREATE TEMP TABLE IF NOT EXISTS folded_results ({_RESULT_COUNT_COLUMNS})",
    "DELETE FROM temp.folded_results",
    """INSERT INTO temp.folded_results
       SELECT campaign_id, hour_start, SUM(n), SUM(total_time), SUM(final_training_time)
       FROM result_counts GROUP BY campaign_id, hour_start
       HAVING SUM(n) <> 0 OR SUM(total_time) <> 0 OR SUM(final_training_time) <> 0""",
    "DELETE FROM result_counts",
    f"INSERT INTO result_counts ({_RESULT_COUNT_COLUMNS})"
    f" SELECT {_RESULT_COUNT_COLUMNS} FROM temp.folded_results",
)

# recount: rebuild the aggregates from the rows themselves, keeping the lease seconds (they exist
# only as deltas). PostgreSQL locks out status changes and completions meanwhile; SQLite's write
# lock already does.
LOCK_JOBS_FOR_RECOUNT_POSTGRESQL = "LOCK TABLE jobs, results IN SHARE MODE"
BUSY_SECONDS_BY_BUDGET = """
SELECT campaign_id, epochs, SUM(busy_seconds) FROM job_counts GROUP BY campaign_id, epochs
HAVING SUM(busy_seconds) <> 0
"""
DELETE_JOB_COUNTS = "DELETE FROM job_counts"
DELETE_RESULT_COUNTS = "DELETE FROM result_counts"
# The buckets as the rows are now: what the triggers' deltas must sum to (tests compare the two).
JOB_BUCKETS = f"""
SELECT j.campaign_id, j.epochs, j.status, COUNT(*) AS n, SUM({_JOB_COST}) AS cost,
       SUM({_UNSTARTED}) AS unstarted, SUM(j.attempts) AS attempts
FROM jobs j LEFT JOIN cells cl ON cl.id = j.cell_id
GROUP BY j.campaign_id, j.epochs, j.status
"""
COUNT_JOBS_INTO_JOB_COUNTS = f"""
INSERT INTO job_counts ({_JOB_COUNT_COLUMNS})
SELECT campaign_id, epochs, status, n, cost, unstarted, 0.0, attempts FROM ({JOB_BUCKETS}) AS buckets
"""
KEEP_BUSY_SECONDS = f"""
INSERT INTO job_counts ({_JOB_COUNT_COLUMNS})
VALUES (:campaign_id, :epochs, 'running', 0, 0.0, 0, :seconds, 0)
"""
# {hour_start}: the UTC hour a result's created_at falls in, as the results trigger computes it.
RESULT_HOURS = """
SELECT campaign_id, hour_start, COUNT(*) AS n, COALESCE(SUM(total_time), 0) AS total_time,
       COALESCE(SUM(final_training_time), 0) AS final_training_time
FROM (SELECT campaign_id, {hour_start} AS hour_start, total_time, final_training_time FROM results) AS r
GROUP BY campaign_id, hour_start
"""
COUNT_RESULTS_INTO_RESULT_COUNTS = f"""
INSERT INTO result_counts ({_RESULT_COUNT_COLUMNS})
SELECT campaign_id, hour_start, n, total_time, final_training_time FROM ({RESULT_HOURS}) AS hours
"""
# The aggregates as the views see them: the deltas summed per key.
SUMMED_JOB_COUNTS = """
SELECT campaign_id, epochs, status, SUM(n) AS n, SUM(cost) AS cost, SUM(unstarted) AS unstarted,
       SUM(attempts) AS attempts
FROM job_counts
GROUP BY campaign_id, epochs, status
HAVING SUM(n) <> 0 OR SUM(cost) <> 0 OR SUM(unstarted) <> 0 OR SUM(attempts) <> 0
"""
SUMMED_RESULT_COUNTS = """
SELECT campaign_id, hour_start, SUM(n) AS n, SUM(total_time) AS total_time,
       SUM(final_training_time) AS final_training_time
FROM result_counts GROUP BY campaign_id, hour_start HAVING SUM(n) <> 0
"""

# --- the views ------------------------------------------------------------------------------------
CAMPAIGN_PROGRESS = "SELECT * FROM campaign_progress ORDER BY campaign_id"
# read_view: {view} and {order} come from fixed tables in db.views, never from a caller's string;
# {where} is empty or a campaign filter with bind parameters; {limit} empty or "LIMIT :limit".
READ_VIEW = "SELECT * FROM {view} {where} ORDER BY {order} {limit}"

# --- results --------------------------------------------------------------------------------------
CAMPAIGN_EXISTS = "SELECT 1 FROM campaigns WHERE name = :campaign"
NB101_RESULTS = "SELECT * FROM nb101_results {where} ORDER BY job_id"
