"""Enqueueing a campaign's jobs in committed batches (db.enqueue) and finishing its creation.

Placeholders as in :mod:`db.statements` (``{for_update}``: PostgreSQL's row lock).
"""

# Every transaction that inserts jobs into a campaign takes its row lock first (PostgreSQL; SQLite's
# single writer needs none): inserters of one campaign take turns, so each can count the rows it
# added by id (db.counts.counting_new_jobs), and two creators of it never write the same batch.
LOCK_CAMPAIGN = "SELECT id FROM campaigns WHERE id = :campaign_id {for_update}"

# The campaign's creation finished: every job of its first `campaign create` is stored. Runs
# refuse a campaign without it (db.queue_claims); later additions of cells leave it as it is.
SET_ENQUEUED = "UPDATE campaigns SET enqueued_at = :now WHERE id = :campaign_id AND enqueued_at IS NULL"

# The (cell, budget) groups a campaign has jobs for: jobs are written a whole group at a time (all
# repeats of a cell at a budget, in one transaction), so a group present is a group complete.
# Read once when a create resumes or adds cells (an index-only walk of the campaign's jobs; the
# cells' hashes joined to the distinct groups, not to every job).
PRESENT_GROUPS = """
SELECT cl.hash, g.epochs
FROM (SELECT DISTINCT cell_id, epochs FROM jobs WHERE campaign_id = :campaign_id) AS g
JOIN cells cl ON cl.id = g.cell_id
"""

# PostgreSQL: which of a batch's new cells another creator stored since this one looked (the cells
# lock is held; COPY must not meet a stored cell). :hashes is an array.
STORED_AMONG_POSTGRESQL = "SELECT hash FROM cells WHERE hash = ANY(:hashes)"
