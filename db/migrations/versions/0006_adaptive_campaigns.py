"""Adaptive campaigns (successive halving) and the data set in nb101_results.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

- ``campaigns.promote_numerator`` / ``promote_denominator`` / ``promote_mode``: an adaptive
  campaign promotes the top numerator/denominator of a budget's cells to the next budget, in
  'rounds' or 'async' mode; NULL for a campaign that trains every cell at every budget.
- ``promotion_rounds``: one row per budget of an adaptive campaign; its round's decision (when, by
  whom, n, how many promoted, the threshold) is written once.
- ``promotions``: each promoted cell with its evidence; unique on (campaign, budget, cell).
- ``campaign_budgets`` (view): each budget's state: jobs by status, cells finished, ranked,
  promoted, the current promotion threshold, and its compute (done, enqueued, and what the full
  grid would cost at that budget: cell FLOPs x epochs, as ``campaign_eta``).
- ``campaign_compute`` (view): the same compute per adaptive campaign, against the full grid.
- ``nb101_results`` gains ``dataset`` (the campaign's data set).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# A budget's state. A cell is *finished* at a budget when none of its jobs there is pending, running
# or cancelled (a cancelled job holds the round: db.promotions); it is *ranked* when it has a
# finished repeat. The threshold is the recorded one once the round is decided, else the mean of
# the ceil(f x n)-th best of the n cells ranked so far (what the round would promote down to if the
# budget ended now). Costs are cell FLOPs x epochs summed over jobs (repeats count); grid_cost is
# the cost of every cell of the campaign (those of its first budget) at this budget.
CAMPAIGN_BUDGETS = """
CREATE VIEW campaign_budgets AS
WITH adaptive_jobs AS (
    SELECT j.campaign_id, j.epochs, j.cell_hash, j.status, CAST(cl.flops AS DOUBLE PRECISION) AS flops
    FROM jobs j
    JOIN promotion_rounds pr ON pr.campaign_id = j.campaign_id AND pr.epochs = j.epochs
    JOIN cells cl ON cl.hash = j.cell_hash
), job_state AS (
    SELECT campaign_id, epochs,
           COUNT(DISTINCT cell_hash) AS cells,
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
    SELECT campaign_id, epochs, cell_hash,
           MAX(CASE WHEN status IN ('pending', 'running', 'cancelled') THEN 1 ELSE 0 END) AS unfinished
    FROM adaptive_jobs
    GROUP BY campaign_id, epochs, cell_hash
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

# Per adaptive campaign: compute done and enqueued against the full grid's (every cell at every
# budget), and how many cells reached the last budget.
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

NB101_RESULTS = """
CREATE VIEW nb101_results AS
SELECT c.name AS campaign,
       c.dataset,
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

OLD_NB101_RESULTS = """
CREATE VIEW nb101_results AS
SELECT c.name AS campaign, r.cell_hash AS module_hash, cl.matrix AS module_adjacency,
       cl.ops AS module_operations, r.epochs, r.repeat, r.trainable_parameters, r.total_time,
       r.halfway_training_time, r.halfway_train_accuracy, r.halfway_validation_accuracy,
       r.halfway_test_accuracy, r.final_training_time, r.final_train_accuracy,
       r.final_validation_accuracy, r.final_test_accuracy, r.evaluations, r.job_id, r.created_at
FROM results r
JOIN cells cl ON cl.hash = r.cell_hash
JOIN campaigns c ON c.id = r.campaign_id
"""


def upgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("promote_numerator", sa.Integer))
        batch.add_column(sa.Column("promote_denominator", sa.Integer))
        batch.add_column(sa.Column("promote_mode", sa.String(16)))
    op.create_table(
        "promotion_rounds",
        sa.Column("campaign_id", sa.Integer, nullable=False),
        sa.Column("epochs", sa.SmallInteger, nullable=False),
        sa.Column("budget_index", sa.SmallInteger, nullable=False),
        sa.Column("next_epochs", sa.SmallInteger),
        sa.Column("decided_at", sa.Double),
        sa.Column("decided_by", sa.String(200)),
        sa.Column("cells", sa.Integer),
        sa.Column("cells_ranked", sa.Integer),
        sa.Column("promoted", sa.Integer),
        sa.Column("threshold", sa.Double),
        sa.PrimaryKeyConstraint("campaign_id", "epochs", name="pk_promotion_rounds"),
    )
    op.create_table(
        "promotions",
        sa.Column("id", BigId, nullable=False),
        sa.Column("campaign_id", sa.Integer, nullable=False),
        sa.Column("epochs", sa.SmallInteger, nullable=False),
        sa.Column("next_epochs", sa.SmallInteger, nullable=False),
        sa.Column("cell_hash", sa.String(32), nullable=False),
        sa.Column("mean_validation_accuracy", sa.Double, nullable=False),
        sa.Column("repeats_finished", sa.Integer, nullable=False),
        sa.Column("cell_rank", sa.Integer, nullable=False),
        sa.Column("cells_ranked", sa.Integer, nullable=False),
        sa.Column("threshold", sa.Double, nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("decided_at", sa.Double, nullable=False),
        sa.Column("decided_by", sa.String(200)),
        sa.PrimaryKeyConstraint("id", name="pk_promotions"),
        sa.UniqueConstraint("campaign_id", "epochs", "cell_hash",
                            name="uq_promotions_campaign_id_epochs_cell_hash"),
    )
    op.execute(CAMPAIGN_BUDGETS)
    op.execute(CAMPAIGN_COMPUTE)
    op.execute("DROP VIEW nb101_results")
    op.execute(NB101_RESULTS)


def downgrade() -> None:
    op.execute("DROP VIEW nb101_results")
    op.execute(OLD_NB101_RESULTS)
    op.execute("DROP VIEW campaign_compute")
    op.execute("DROP VIEW campaign_budgets")
    op.drop_table("promotions")
    op.drop_table("promotion_rounds")
    # Plain ALTER TABLE ... DROP COLUMN (SQLite >= 3.35): a batch copy of campaigns would break the
    # views that read it.
    for column in ("promote_mode", "promote_denominator", "promote_numerator"):
        op.drop_column("campaigns", column)
