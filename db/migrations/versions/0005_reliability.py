"""Unattended operation: imported campaigns, data fingerprints, error signatures, driver liveness,
node health.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30

- ``campaigns.source``: 'trained' (a campaign the farm trains) or 'imported' (a published table
  loaded by ``nasfarm import-nb101``; ``nasfarm run`` never trains it).
- ``campaigns.dataset`` and ``campaigns.data_fingerprint``: which data set a campaign trains on and
  the fingerprint of the copy it was created with (JSON: name, split sizes, SHA-256 of the files,
  whether it is synthetic); NULL fingerprint for campaigns created before this revision.
- ``jobs.error_signature``: a short, normalised key of the last error (``workers.faults``), so
  failures can be grouped; ``job_events.fault``: whose fault an attempt's end was (job,
  environment, unknown).
- ``drivers``: one liveness row per running ``nasfarm run``; a driver that finds another's row
  stale reaps that driver's leases at once instead of waiting for their TTL.
- ``node_health``: each driver's view of its nodes (healthy, unhealthy, drained), shown by the
  ``worker_health`` view and ``nasfarm status``.
- ``job_failures`` gains ``error_signature``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

NOW = {
    "postgresql": "CAST(EXTRACT(EPOCH FROM now()) AS double precision)",
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
}

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
JOIN campaigns c ON c.id = j.campaign_id
WHERE j.last_error IS NOT NULL
"""

OLD_JOB_FAILURES = """
CREATE VIEW job_failures AS
SELECT j.id AS job_id, c.name AS campaign, j.cell_hash, j.epochs, j.repeat, j.status, j.attempts,
       j.max_attempts, j.preemptions, j.last_error, j.not_before, j.finished_at
FROM jobs j
JOIN campaigns c ON c.id = j.campaign_id
WHERE j.last_error IS NOT NULL
"""

# One row per (driver, node) the driver has judged; a driver is alive while its liveness row is
# fresh (a few heartbeat intervals) and not stopped.
WORKER_HEALTH = """
CREATE VIEW worker_health AS
SELECT h.node,
       h.node_id,
       h.state,
       h.environment_faults,
       h.last_error,
       h.driver,
       CASE WHEN d.stopped_at IS NULL AND d.heartbeat_at > {now} - 3 * d.heartbeat_s - 5
            THEN 1 ELSE 0 END AS driver_alive,
       {now} - h.updated_at AS seconds_since_update
FROM node_health h
LEFT JOIN drivers d ON d.owner = h.driver
"""


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("source", sa.String(16), nullable=False, server_default="trained"))
        batch.add_column(sa.Column("dataset", sa.String(64), nullable=False, server_default="cifar10"))
        batch.add_column(sa.Column("data_fingerprint", sa.Text))
    op.add_column("jobs", sa.Column("error_signature", sa.String(200)))
    op.add_column("job_events", sa.Column("fault", sa.String(16)))
    op.create_table(
        "drivers",
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("host", sa.String(200), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("heartbeat_s", sa.Double, nullable=False),
        sa.Column("started_at", sa.Double, nullable=False),
        sa.Column("heartbeat_at", sa.Double, nullable=False),
        sa.Column("stopped_at", sa.Double),
        sa.PrimaryKeyConstraint("owner", name="pk_drivers"),
    )
    op.create_table(
        "node_health",
        sa.Column("driver", sa.String(200), nullable=False),
        sa.Column("node_id", sa.String(64), nullable=False),
        sa.Column("node", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("environment_faults", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("updated_at", sa.Double, nullable=False),
        sa.PrimaryKeyConstraint("driver", "node_id", name="pk_node_health"),
    )
    op.execute("DROP VIEW job_failures")
    op.execute(JOB_FAILURES)
    op.execute(WORKER_HEALTH.replace("{now}", NOW[dialect]))


def downgrade() -> None:
    op.execute("DROP VIEW worker_health")
    op.execute("DROP VIEW job_failures")
    op.execute(OLD_JOB_FAILURES)
    op.drop_table("node_health")
    op.drop_table("drivers")
    op.drop_column("job_events", "fault")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("error_signature")
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("data_fingerprint")
        batch.drop_column("dataset")
        batch.drop_column("source")
