"""The queue's SQL, one named statement per operation, readable on its own.

Placeholders in braces are filled per database by :mod:`db.dialect` (``{now}``: the database's
clock in unix seconds; ``{new_token}``: a fresh random 128-bit hex lease token; ``{for_update}`` /
``{skip_locked}``: row locks, PostgreSQL only). Bind parameters are ``:name``. Where the two
databases need different statements (PostgreSQL writes several tables in one statement with
data-modifying CTEs; SQLite runs the follow-up statements in the same transaction), both are here,
suffixed ``_POSTGRESQL`` / ``_SQLITE``, and the dialect object names the one to use.

The lease: a claim writes ``lease_expires_at = now + :lease_ttl`` with the TTL of the driver that
claims; every heartbeat moves it to ``now + :lease_ttl`` again (the worker's TTL, or the lease's
own when none is given). The reaper expires a lease by that column alone, so drivers started with
different ``--lease-ttl`` never expire each other's healthy leases. Rows leased before the column
existed (``lease_expires_at IS NULL``) are judged by their last heartbeat and ``:legacy_ttl``.
"""

# --- claim -------------------------------------------------------------------------------------
# The claim statements below differ only in which jobs they pick; the lease they write, what they
# return and (PostgreSQL) the event and cells they add are these shared pieces, so that a grouped
# claim leases a job exactly as claim() does.

# The lease a claim writes on a job (the SET list of every claim's UPDATE).
_LEASE_COLUMNS = """
    status = 'running', attempts = attempts + 1,
    lease_owner = :owner, lease_token = {new_token}, lease_node = NULL,
    claimed_at = {now}, heartbeat_at = {now}, lease_expires_at = {now} + :lease_ttl,
    finished_at = NULL, progress_step = NULL, progress_epoch = NULL
"""

# The end of a PostgreSQL claim, after a CTE ``picked`` that locked the ids of the jobs to lease:
# lease them, log their claim events and read their cells' matrix and ops, in the same statement
# (one round trip).
_LEASE_PICKED_POSTGRESQL = (
    """, claimed AS (
    UPDATE jobs SET"""
    + _LEASE_COLUMNS
    + """    FROM picked WHERE jobs.id = picked.id
    RETURNING jobs.id, jobs.campaign_id, jobs.cell_id, jobs.epochs, jobs.repeat, jobs.seed,
              jobs.priority, jobs.attempts, jobs.max_attempts, jobs.lease_token,
              jobs.checkpoint_location, jobs.lease_owner, jobs.claimed_at
), logged AS (
    INSERT INTO job_events (job_id, attempt, kind, owner, status, at)
    SELECT id, attempts, 'claim', lease_owner, 'running', claimed_at FROM claimed
)
SELECT claimed.*, cells.hash AS cell_hash, cells.matrix, cells.ops
FROM claimed JOIN cells ON cells.id = claimed.cell_id
"""
)

# The end of a SQLite claim's UPDATE: the same columns as the PostgreSQL claim returns (less the
# cells' matrix and ops, read by the caller; the events are inserted by CLAIM_EVENTS next).
_CLAIMED_RETURNING_SQLITE = """
RETURNING id, campaign_id, cell_id, epochs, repeat, seed, priority, attempts, max_attempts,
          lease_token, checkpoint_location, lease_owner, claimed_at
"""

# claim_jobs (PostgreSQL): lock up to :n runnable pending jobs -- best priority first, then the
# campaign's order (id) -- skipping rows another claimer holds, and lease them in the same
# statement. The CTE applies LIMIT before the UPDATE (a join UPDATE can lock more rows than asked
# for); SKIP LOCKED lets concurrent claimers take disjoint rows without waiting for each other.
# {campaign_filter} is empty or "AND campaign_id = :campaign_id".
CLAIM_JOBS_POSTGRESQL = (
    """
WITH picked AS (
    SELECT id FROM jobs
    WHERE status = 'pending' AND not_before <= {now} {campaign_filter}
    ORDER BY priority DESC, id
    LIMIT :n
    FOR UPDATE SKIP LOCKED
)"""
    + _LEASE_PICKED_POSTGRESQL
)

# claim_jobs (SQLite): the same selection and lease. There are no row locks: the caller holds the
# database's single write lock (BEGIN IMMEDIATE, see db.engine) for this short transaction, so no
# two claimers can pick the same row. The claim events are inserted by CLAIM_EVENTS next.
CLAIM_JOBS_SQLITE = (
    "\nUPDATE jobs SET"
    + _LEASE_COLUMNS
    + """WHERE id IN (
    SELECT id FROM jobs
    WHERE status = 'pending' AND not_before <= {now} {campaign_filter}
    ORDER BY priority DESC, id
    LIMIT :n
)"""
    + _CLAIMED_RETURNING_SQLITE
)

# claim_group: one group of jobs of the same (campaign, cell, epochs) -- the repeats of a cell,
# which the farm can train together as one fused network. The lead is the job claim_jobs would
# take next (same order, same {campaign_filter}); the siblings are the other runnable pending jobs
# of its (campaign_id, cell_id, epochs), found through the unique index on
# (campaign_id, cell_id, epochs, repeat). The lead sorts first so that LIMIT :max_group always
# keeps it; the rest follow by repeat. MATERIALIZED: the lead is picked (and locked) once, never
# re-run as the inner side of a join.
# PostgreSQL locks both with SKIP LOCKED: a sibling another claimer holds is left to it, never
# waited for. The lead is already locked by this statement when the siblings are read, which
# does not skip it (a row lock never conflicts with its own transaction); the siblings' FOR UPDATE
# locks only jobs rows (a CTE has none). SQLite has no row locks: the caller holds the write lock.
_PICK_GROUP = """
WITH lead AS MATERIALIZED (
    SELECT id, campaign_id, cell_id, epochs FROM jobs
    WHERE status = 'pending' AND not_before <= {now} {campaign_filter}
    ORDER BY priority DESC, id
    LIMIT 1
    {for_update} {skip_locked}
), picked AS (
    SELECT sibling.id FROM lead JOIN jobs AS sibling
        ON sibling.campaign_id = lead.campaign_id AND sibling.cell_id = lead.cell_id
       AND sibling.epochs = lead.epochs
    WHERE sibling.status = 'pending' AND sibling.not_before <= {now}
    ORDER BY sibling.id = lead.id DESC, sibling.repeat
    LIMIT :max_group
    {for_update} {skip_locked}
)"""

# claim_group (PostgreSQL): the group picked and leased, its events logged and its cells read, in
# one statement like claim_jobs: every job gets its own lease token and claim event.
CLAIM_GROUP_POSTGRESQL = _PICK_GROUP + _LEASE_PICKED_POSTGRESQL

# claim_group (SQLite): the group picked and leased in one UPDATE; events by CLAIM_EVENTS next.
CLAIM_GROUP_SQLITE = (
    _PICK_GROUP
    + "\nUPDATE jobs SET"
    + _LEASE_COLUMNS
    + "WHERE id IN (SELECT id FROM picked)"
    + _CLAIMED_RETURNING_SQLITE
)

CLAIM_EVENTS = """
INSERT INTO job_events (job_id, attempt, kind, owner, status, at)
VALUES (:job_id, :attempt, 'claim', :owner, 'running', :at)
"""

# --- fenced writes by the lease holder -----------------------------------------------------------
# On PostgreSQL the single-statement operations run outside an explicit transaction (each
# statement is its own transaction: no BEGIN/COMMIT round trips); see db.queue_core._statements.
# Every statement below matches (id, lease_token, status = 'running'): a worker whose lease was
# reaped, released or cancelled matches no row, changes nothing, and is told so (rowcount 0).

# A write by the lease holder that proves it alive renews the lease for the TTL it has (the
# difference of the two columns; in an UPDATE every right-hand side reads the row's old values).
_RENEW_LEASE = "lease_expires_at = {now} + (lease_expires_at - heartbeat_at), heartbeat_at = {now}"

# start_attempt (PostgreSQL): the worker began (or resumed) training on a node; logged in the
# same statement.
START_ATTEMPT_POSTGRESQL = """
WITH started AS (
    UPDATE jobs SET lease_node = :node, """ + _RENEW_LEASE + """
    WHERE id = :job_id AND lease_token = :token AND status = 'running'
    RETURNING id, attempts, lease_owner, heartbeat_at
)
INSERT INTO job_events (job_id, attempt, kind, owner, node, resumed_from_epoch, status, at)
SELECT id, attempts, 'start', lease_owner, :node, :resumed_from_epoch, 'running', heartbeat_at
FROM started
RETURNING attempt AS attempts, owner AS lease_owner
"""

# start_attempt (SQLite): the same; the event is inserted by INSERT_EVENT next.
START_ATTEMPT_SQLITE = """
UPDATE jobs SET lease_node = :node, """ + _RENEW_LEASE + """
WHERE id = :job_id AND lease_token = :token AND status = 'running'
RETURNING attempts, lease_owner
"""

# heartbeat: the lease is alive until now + :lease_ttl (the heartbeating worker's TTL; NULL keeps
# the lease's own); record progress (NULL keeps the previous value). Not logged.
HEARTBEAT = """
UPDATE jobs SET heartbeat_at = {now},
    lease_expires_at = {now} + COALESCE(:lease_ttl, lease_expires_at - heartbeat_at),
    progress_step = COALESCE(:step, progress_step),
    progress_epoch = COALESCE(:epoch, progress_epoch)
WHERE id = :job_id AND lease_token = :token AND status = 'running'
"""

# set_checkpoint: where the job's checkpoint lives (kept across attempts for resume).
SET_CHECKPOINT = """
UPDATE jobs SET checkpoint_location = :location, """ + _RENEW_LEASE + """
WHERE id = :job_id AND lease_token = :token AND status = 'running'
"""

# record_metric: one per-epoch / per-evaluation row, written only while the lease holds.
RECORD_METRIC = """
INSERT INTO job_metrics (job_id, attempt, kind, epoch, step, loss, train_accuracy,
                         validation_accuracy, test_accuracy, training_time, at)
SELECT id, attempts, :kind, :epoch, :step, :loss, :train_accuracy,
       :validation_accuracy, :test_accuracy, :training_time, {now}
FROM jobs
WHERE id = :job_id AND lease_token = :token AND status = 'running'
"""

# complete_job: done, in the transaction that stores the result (INSERT_RESULT). The token stays
# on the row so that a repeated complete() by the same lease (after an ambiguous commit) is
# recognised by COMPLETED_BY rather than reported as a lost lease. (SQLite; the result row and
# the event are inserted next, in the same transaction.)
COMPLETE_JOB_SQLITE = """
UPDATE jobs SET status = 'done', finished_at = {now}, heartbeat_at = {now}, lease_expires_at = NULL,
    last_error = NULL
WHERE id = :job_id AND lease_token = :token AND status = 'running'
RETURNING campaign_id, (SELECT cl.hash FROM cells cl WHERE cl.id = jobs.cell_id) AS cell_hash,
          epochs, repeat, attempts, lease_owner, lease_node, finished_at
"""

# complete_job (PostgreSQL): the done status, the result row and the end event in one statement
# (one round trip, one durable commit).
COMPLETE_JOB_POSTGRESQL = """
WITH finished AS (
    UPDATE jobs SET status = 'done', finished_at = {now}, heartbeat_at = {now},
        lease_expires_at = NULL, last_error = NULL
    WHERE id = :job_id AND lease_token = :token AND status = 'running'
    RETURNING id, campaign_id, (SELECT cl.hash FROM cells cl WHERE cl.id = jobs.cell_id) AS cell_hash,
              epochs, repeat, attempts, lease_owner, lease_node, finished_at
), stored AS (
    INSERT INTO results (job_id, campaign_id, cell_hash, epochs, repeat, attempt,
        trainable_parameters, total_time,
        halfway_training_time, halfway_train_accuracy, halfway_validation_accuracy,
        halfway_test_accuracy,
        final_training_time, final_train_accuracy, final_validation_accuracy, final_test_accuracy,
        evaluations, resumed_from_step, resumed_from_epoch, extra, created_at)
    SELECT id, campaign_id, cell_hash, epochs, repeat, attempts,
        :trainable_parameters, :total_time,
        :halfway_training_time, :halfway_train_accuracy, :halfway_validation_accuracy,
        :halfway_test_accuracy,
        :final_training_time, :final_train_accuracy, :final_validation_accuracy,
        :final_test_accuracy,
        :evaluations, :resumed_from_step, :resumed_from_epoch, :extra, finished_at
    FROM finished
    RETURNING job_id
), logged AS (
    INSERT INTO job_events (job_id, attempt, kind, owner, node, status, at)
    SELECT id, attempts, 'end', lease_owner, lease_node, 'done', finished_at FROM finished
)
SELECT job_id FROM stored
"""

COMPLETED_BY = """
SELECT 1 FROM jobs WHERE id = :job_id AND lease_token = :token AND status = 'done'
"""

# insert_result: the job's one result row (the primary key on job_id forbids a second).
INSERT_RESULT = """
INSERT INTO results (job_id, campaign_id, cell_hash, epochs, repeat, attempt,
    trainable_parameters, total_time,
    halfway_training_time, halfway_train_accuracy, halfway_validation_accuracy,
    halfway_test_accuracy,
    final_training_time, final_train_accuracy, final_validation_accuracy, final_test_accuracy,
    evaluations, resumed_from_step, resumed_from_epoch, extra, created_at)
VALUES (:job_id, :campaign_id, :cell_hash, :epochs, :repeat, :attempt,
    :trainable_parameters, :total_time,
    :halfway_training_time, :halfway_train_accuracy, :halfway_validation_accuracy,
    :halfway_test_accuracy,
    :final_training_time, :final_train_accuracy, :final_validation_accuracy, :final_test_accuracy,
    :evaluations, :resumed_from_step, :resumed_from_epoch, :extra, :created_at)
"""

# lock_lease: read the attempt counters of a job we hold (fail() decides retry vs failed on them).
LOCK_LEASE = """
SELECT attempts, max_attempts, lease_owner, lease_node FROM jobs
WHERE id = :job_id AND lease_token = :token AND status = 'running'
{for_update}
"""

# end_attempt: the lease ends without a result -- back to pending (after :delay seconds) or failed.
END_ATTEMPT = """
UPDATE jobs SET status = :status, not_before = {now} + :delay, last_error = :error,
    error_signature = :signature,
    finished_at = CASE WHEN :status = 'pending' THEN NULL ELSE {now} END,
    lease_token = NULL, lease_owner = NULL, heartbeat_at = NULL, lease_expires_at = NULL
WHERE id = :job_id AND lease_token = :token AND status = 'running'
"""

# release_with_error: the node (not the job) was at fault, or the job's checkpoint was unusable and
# moved aside: pending after :delay, the claim's attempt handed back, the error kept for people.
RELEASE_WITH_ERROR = """
UPDATE jobs SET status = 'pending', not_before = {now} + :delay, attempts = attempts - 1,
    last_error = :error, error_signature = :signature,
    lease_token = NULL, lease_owner = NULL, heartbeat_at = NULL, lease_expires_at = NULL
WHERE id = :job_id AND lease_token = :token AND status = 'running'
"""

# release_job: preempted (SIGTERM, drain): pending at once, the claim's attempt handed back.
RELEASE_JOB = """
UPDATE jobs SET status = 'pending', not_before = 0, attempts = attempts - 1,
    preemptions = preemptions + 1,
    lease_token = NULL, lease_owner = NULL, heartbeat_at = NULL, lease_expires_at = NULL
WHERE id = :job_id AND lease_token = :token AND status = 'running'
"""

# --- the reaper ----------------------------------------------------------------------------------
# A lease has expired when its expiry has passed -- whoever reaps, whatever their own TTL. A lease
# written before lease_expires_at existed has none: it expires :legacy_ttl after its last heartbeat.
_EXPIRED = """(lease_expires_at < {now}
       OR (lease_expires_at IS NULL AND heartbeat_at < {now} - :legacy_ttl))"""

# find_expired_leases: running jobs whose lease has expired (partial index on running jobs'
# lease_expires_at), with the TTL their lease had. PostgreSQL locks them, skipping any another
# reaper holds.
FIND_EXPIRED_LEASES = """
SELECT id, attempts, max_attempts, lease_token, lease_owner, lease_node,
       COALESCE(lease_expires_at - heartbeat_at, :legacy_ttl) AS ttl
FROM jobs
WHERE status = 'running' AND """ + _EXPIRED + """
LIMIT :batch
{for_update} {skip_locked}
"""

# reap_job: expire one lease -- only if it is still the same lease and still expired (a heartbeat
# that arrived since FIND_EXPIRED_LEASES keeps the job).
REAP_JOB = """
UPDATE jobs SET status = :status, not_before = {now} + :delay, last_error = :error,
    attempts = attempts - :uncharge,
    finished_at = CASE WHEN :status = 'pending' THEN NULL ELSE {now} END,
    lease_token = NULL, lease_owner = NULL, heartbeat_at = NULL, lease_expires_at = NULL
WHERE id = :job_id AND lease_token = :token AND status = 'running'
  AND """ + _EXPIRED + """
"""

INSERT_EVENT = """
INSERT INTO job_events (job_id, attempt, kind, owner, node, resumed_from_epoch, status, error, fault, at)
VALUES (:job_id, :attempt, :kind, :owner, :node, :resumed_from_epoch, :status, :error, :fault, {now})
"""

# --- campaign-wide operations --------------------------------------------------------------------
# retry_events / retry_jobs: failed (and with :include_cancelled, cancelled) jobs of a campaign
# back to pending with a fresh attempt budget; the history keeps the earlier attempts.
RETRY_EVENTS = """
INSERT INTO job_events (job_id, attempt, kind, status, error, at)
SELECT id, attempts, 'retry', 'pending', last_error, {now} FROM jobs
WHERE campaign_id = :campaign_id AND status IN :statuses
"""
RETRY_JOBS = """
UPDATE jobs SET status = 'pending', attempts = 0, not_before = 0, finished_at = NULL
WHERE campaign_id = :campaign_id AND status IN :statuses
"""

# cancel: unfinished jobs stop being claimable; running ones lose their lease (their next
# heartbeat returns False). Only running jobs get an event: they end an attempt.
CANCEL_EVENTS = """
INSERT INTO job_events (job_id, attempt, kind, owner, node, status, at)
SELECT id, attempts, 'cancel', lease_owner, lease_node, 'cancelled', {now} FROM jobs
WHERE status = 'running' AND {selection}
"""
CANCEL_JOBS = """
UPDATE jobs SET status = 'cancelled', finished_at = {now},
    lease_token = NULL, lease_owner = NULL, heartbeat_at = NULL, lease_expires_at = NULL
WHERE status IN ('pending', 'running') AND {selection}
"""

# count_by_status: jobs by status, summed from the job_counts deltas (see db.views).
COUNT_BY_STATUS = """
SELECT status, SUM(n) AS n FROM job_counts {where} GROUP BY status
"""


# --- reads -----------------------------------------------------------------------------------------
# :names, :ids and :hashes are expanding (lists).
CAMPAIGN_IDS = "SELECT id, name FROM campaigns WHERE name IN :names"
CAMPAIGN_PROFILES = "SELECT id, name, profile FROM campaigns WHERE id IN :ids"
# Campaigns whose creation has not finished enqueueing their jobs (db.enqueue): never claimed from.
UNFINISHED_CAMPAIGNS = "SELECT id FROM campaigns WHERE enqueued_at IS NULL"
UNFINISHED_AMONG = "SELECT id, name FROM campaigns WHERE id IN :ids AND enqueued_at IS NULL ORDER BY id"
CELLS = "SELECT id, hash, matrix, ops FROM cells WHERE id IN :ids"
JOB = "SELECT * FROM jobs WHERE id = :id"
JOB_HISTORY = "SELECT * FROM job_events WHERE job_id = :id ORDER BY id"
