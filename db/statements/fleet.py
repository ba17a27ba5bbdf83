"""The farm's own state beside the jobs: driver liveness, node health, what failed where.

Used by :mod:`db.queue_fleet`. Placeholders as in :mod:`db.statements` (``{now}``).
"""

# --- driver liveness -------------------------------------------------------------------------------
# register_driver: one row per running `nasfarm run` (its owner string is unique per process).
REGISTER_DRIVER = """
INSERT INTO drivers (owner, host, pid, heartbeat_s, started_at, heartbeat_at, stopped_at)
VALUES (:owner, :host, :pid, :heartbeat_s, {now}, {now}, NULL)
"""

BEAT_DRIVER = """
UPDATE drivers SET heartbeat_at = {now} WHERE owner = :owner AND stopped_at IS NULL
"""

RETIRE_DRIVER = """
UPDATE drivers SET stopped_at = {now} WHERE owner = :owner
"""

# dead_driver_leases: running jobs leased by a driver whose liveness row went stale (no heartbeat
# for :missed heartbeat intervals plus a grace) or that stopped without releasing them. Their
# leases cannot be renewed by anyone (a driver's workers die with it), so waiting for the lease TTL
# only delays the resume.
DEAD_DRIVER_LEASES = """
SELECT j.id, j.attempts, j.max_attempts, j.lease_token, j.lease_owner, j.lease_node
FROM jobs j
JOIN drivers d ON d.owner = j.lease_owner
WHERE j.status = 'running'
  AND (d.stopped_at IS NOT NULL OR d.heartbeat_at < {now} - :missed * d.heartbeat_s - :grace_s)
  AND j.lease_owner <> :me
LIMIT :batch
{for_update} {skip_locked}
"""

# reap_dead_lease: the same fence as the reaper's (still that lease, still running).
REAP_DEAD_LEASE = """
UPDATE jobs SET status = :status, not_before = {now} + :delay, last_error = :error,
    error_signature = :signature, attempts = attempts - :uncharge,
    finished_at = CASE WHEN :status = 'pending' THEN NULL ELSE {now} END,
    lease_token = NULL, lease_owner = NULL, heartbeat_at = NULL, lease_expires_at = NULL
WHERE id = :job_id AND lease_token = :token AND status = 'running'
"""

# --- node health -----------------------------------------------------------------------------------
DELETE_NODE_HEALTH = """
DELETE FROM node_health WHERE driver = :driver AND node_id = :node_id
"""

INSERT_NODE_HEALTH = """
INSERT INTO node_health (driver, node_id, node, state, environment_faults, last_error, updated_at)
VALUES (:driver, :node_id, :node, :state, :faults, :last_error, {now})
"""

# --- what failed where -----------------------------------------------------------------------------
# failure_nodes: the workers (host/node/pid labels) on which a job's attempts ended with an error
# no rule knows (fault 'unknown'): it is retried on another node, and failed once two disagree.
FAILURE_NODES = """
SELECT DISTINCT node FROM job_events
WHERE job_id = :job_id AND kind = 'end' AND fault = 'unknown' AND node IS NOT NULL
"""

FAILED_AMONG = """
SELECT COUNT(*) FROM jobs WHERE id IN :ids AND status = 'failed'
"""
