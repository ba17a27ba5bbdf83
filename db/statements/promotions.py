"""Adaptive campaigns (db.promotions): budgets' rounds, the ranking, promotions, the next budget's jobs.

A cell's rank at a budget: its mean final validation accuracy over its finished repeats, best first,
ties broken by hash (``ROW_NUMBER() OVER (ORDER BY mean DESC, cell_hash)``, the same in both
databases). A decision ranks the cells once, into a temporary table, so that the count, the
threshold and the promotions it records all come from one snapshot of the results.
"""

# --- the cheap look before any decision -----------------------------------------------------------
ADAPTIVE_CAMPAIGNS = """
SELECT id, name, promote_numerator, promote_denominator, promote_mode
FROM campaigns WHERE promote_denominator IS NOT NULL {where} ORDER BY id
"""
# Per campaign: jobs pending or running, and jobs finished (done, failed, cancelled), from the
# job_counts deltas (milliseconds on millions of jobs).
JOB_TOTALS = """
SELECT campaign_id,
       SUM(CASE WHEN status IN ('pending', 'running') THEN n ELSE 0 END) AS active,
       SUM(CASE WHEN status IN ('done', 'failed', 'cancelled') THEN n ELSE 0 END) AS finished
FROM job_counts WHERE campaign_id IN :campaign_ids GROUP BY campaign_id
"""
ROUNDS_OF = """
SELECT campaign_id, epochs, budget_index, next_epochs, decided_at
FROM promotion_rounds WHERE campaign_id IN :campaign_ids ORDER BY campaign_id, budget_index
"""

# --- creating an adaptive campaign -----------------------------------------------------------------
INSERT_ROUND = """
INSERT INTO promotion_rounds (campaign_id, epochs, budget_index, next_epochs)
VALUES (:campaign_id, :epochs, :budget_index, :next_epochs)
ON CONFLICT DO NOTHING
"""
ANY_DECISION = """
SELECT 1 FROM promotion_rounds WHERE campaign_id = :campaign_id AND decided_at IS NOT NULL
UNION ALL
SELECT 1 FROM promotions WHERE campaign_id = :campaign_id
"""

# --- one campaign's decisions, in one transaction ------------------------------------------------------
# Deciders of one campaign take turns (PostgreSQL: the campaign's row lock, held to commit; SQLite's
# single writer already serialises them), and each then reads the rounds afresh.
LOCK_CAMPAIGN = "SELECT id FROM campaigns WHERE id = :campaign_id {for_update}"
BUDGET_JOBS = """
SELECT status, COUNT(*) AS n FROM jobs
WHERE campaign_id = :campaign_id AND epochs = :epochs GROUP BY status
"""
DROP_CANDIDATES = "DROP TABLE IF EXISTS promotion_candidates"
# The finished cells of a budget (no job pending, running or cancelled there) that have a finished
# repeat, ranked. A cell whose repeats all failed has no mean: it is not ranked, never promoted.
RANK_CANDIDATES = """
CREATE TEMPORARY TABLE promotion_candidates AS
WITH cell_jobs AS (
    SELECT cl.hash AS cell_hash, j.unfinished
    FROM (
        SELECT cell_id,
               MAX(CASE WHEN status IN ('pending', 'running', 'cancelled') THEN 1 ELSE 0 END) AS unfinished
        FROM jobs
        WHERE campaign_id = :campaign_id AND epochs = :epochs
        GROUP BY cell_id
    ) AS j
    JOIN cells cl ON cl.id = j.cell_id
), means AS (
    SELECT cell_hash, AVG(final_validation_accuracy) AS mean, COUNT(*) AS repeats
    FROM results
    WHERE campaign_id = :campaign_id AND epochs = :epochs AND final_validation_accuracy IS NOT NULL
    GROUP BY cell_hash
)
SELECT m.cell_hash, m.mean, m.repeats,
       ROW_NUMBER() OVER (ORDER BY m.mean DESC, m.cell_hash) AS cell_rank
FROM means m
JOIN cell_jobs j ON j.cell_hash = m.cell_hash
WHERE j.unfinished = 0
"""
COUNT_CANDIDATES = "SELECT COUNT(*) FROM promotion_candidates"
CANDIDATE_AT_RANK = "SELECT mean FROM promotion_candidates WHERE cell_rank = :cell_rank"
# A cell promoted before (async) keeps its first record: ON CONFLICT DO NOTHING on the unique
# (campaign, budget, cell).
INSERT_PROMOTIONS = """
INSERT INTO promotions (campaign_id, epochs, next_epochs, cell_hash, mean_validation_accuracy,
                        repeats_finished, cell_rank, cells_ranked, threshold, kind, decided_at, decided_by)
SELECT :campaign_id, :epochs, :next_epochs, cell_hash, mean, repeats, cell_rank, :cells_ranked, :threshold,
       :kind, {now}, :decided_by
FROM promotion_candidates
WHERE cell_rank <= :promote
ORDER BY cell_rank
ON CONFLICT DO NOTHING
"""
# The round's compare-and-set: only the decider that finds it undecided writes it.
DECIDE_ROUND = """
UPDATE promotion_rounds
SET decided_at = {now}, decided_by = :decided_by, cells = :cells, cells_ranked = :cells_ranked,
    promoted = (SELECT COUNT(*) FROM promotions p
                WHERE p.campaign_id = :campaign_id AND p.epochs = :epochs),
    threshold = :threshold
WHERE campaign_id = :campaign_id AND epochs = :epochs AND decided_at IS NULL
"""
ROUND_PROMOTED = "SELECT promoted FROM promotion_rounds WHERE campaign_id = :campaign_id AND epochs = :epochs"
COUNT_BUDGET_CELLS = """
SELECT COUNT(DISTINCT cell_id) FROM jobs WHERE campaign_id = :campaign_id AND epochs = :epochs
"""
# The promoted cells' jobs at the next budget: every repeat, with the seed that repeat has at every
# budget (the cell's job at this budget carries it), best cells first in the claim order. The
# unique (campaign, cell, epochs, repeat) makes it idempotent.
ENQUEUE_PROMOTED = """
INSERT INTO jobs (campaign_id, cell_id, epochs, repeat, seed, max_attempts, priority)
SELECT j.campaign_id, j.cell_id, p.next_epochs, j.repeat, j.seed, j.max_attempts, :priority
FROM promotions p
JOIN cells cl ON cl.hash = p.cell_hash
JOIN jobs j ON j.campaign_id = p.campaign_id AND j.cell_id = cl.id AND j.epochs = p.epochs
WHERE p.campaign_id = :campaign_id AND p.epochs = :epochs
ORDER BY p.cell_rank, j.repeat
ON CONFLICT DO NOTHING
"""

# --- reading the decisions back -----------------------------------------------------------------------
PROMOTIONS_OF = """
SELECT p.epochs, p.next_epochs, p.cell_hash, p.mean_validation_accuracy, p.repeats_finished, p.cell_rank,
       p.cells_ranked, p.threshold, p.kind, p.decided_at, p.decided_by
FROM promotions p WHERE p.campaign_id = :campaign_id
ORDER BY p.epochs, p.cell_rank
"""
ROUNDS_OF_CAMPAIGN = """
SELECT epochs, budget_index, next_epochs, decided_at, decided_by, cells, cells_ranked, promoted, threshold
FROM promotion_rounds WHERE campaign_id = :campaign_id ORDER BY budget_index
"""
