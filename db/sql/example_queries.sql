-- Monitoring a campaign with plain SQL: these run unchanged on PostgreSQL and SQLite
-- (psql "$NASFARM_DB" or sqlite3 nasfarm.db). docs/database.md shows them, and
-- tests/test_db_views.py runs them on both databases, so the documentation cannot go stale.

-- name: progress
-- Where each campaign stands, with its throughput over the last hour and the ETA at that rate.
SELECT campaign, total, pending, running, done, failed, done_pct, attempts,
       gpu_seconds / 3600 AS gpu_hours, done_last_hour, eta_seconds / 3600 AS eta_hours
FROM campaign_progress
ORDER BY campaign;

-- name: stuck_jobs
-- Leased jobs whose worker has not sent a heartbeat for 5 minutes (the reaper will take them
-- back once the lease TTL passes).
SELECT owner, node, job_id, campaign, epochs, epoch, seconds_since_heartbeat
FROM active_workers
WHERE seconds_since_heartbeat > 300
ORDER BY seconds_since_heartbeat DESC;

-- name: failures_by_error
-- Why jobs failed for good, by error signature (the exception and its message with numbers, hashes
-- and paths normalised), most frequent first, with one full error text as an example.
SELECT error_signature, COUNT(*) AS jobs, MAX(attempts) AS attempts, MIN(last_error) AS example
FROM job_failures
WHERE status = 'failed'
GROUP BY error_signature
ORDER BY jobs DESC, error_signature;

-- name: top_cells
-- The best cells so far at 108 epochs: mean final validation accuracy over the finished repeats.
SELECT module_hash, COUNT(*) AS repeats,
       AVG(final_validation_accuracy) AS mean_validation_accuracy,
       AVG(final_test_accuracy) AS mean_test_accuracy
FROM nb101_results
WHERE epochs = 108
GROUP BY module_hash
ORDER BY mean_validation_accuracy DESC, module_hash
LIMIT 10;

-- name: throughput_by_hour
-- Finished jobs per hour (UTC) over the last day, with the training time they took.
SELECT hour, campaign, jobs_done, training_seconds / 3600 AS training_hours
FROM hourly_throughput
ORDER BY hour DESC, campaign
LIMIT 24;
