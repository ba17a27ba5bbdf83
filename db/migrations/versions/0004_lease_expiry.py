"""The lease carries its expiry: ``jobs.lease_expires_at``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30

Until 0003 the reaper expired a lease whose last heartbeat was older than the reaping driver's own
``--lease-ttl``: a driver started with a shorter TTL reaped another driver's healthy leases between
their heartbeats. From now on a claim writes ``lease_expires_at = now + TTL`` with the TTL of the
driver that claims, every heartbeat writes it again, and the reaper goes by that column alone.

Leases running while the database is upgraded keep ``lease_expires_at`` NULL: the reaper judges
them by their last heartbeat and its own TTL, as before, until their next heartbeat by a current
worker writes the column (or the job ends). The reaper's index moves from the heartbeat time to the
expiry (both partial: running jobs only).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

RUNNING = sa.text("status = 'running'")


def upgrade() -> None:
    # A nullable column without a default: a catalog change on both databases, no table rewrite.
    op.add_column("jobs", sa.Column("lease_expires_at", sa.Double))
    op.drop_index("ix_jobs_running_heartbeat", "jobs")
    op.create_index(
        "ix_jobs_running_lease_expiry", "jobs", ["lease_expires_at"],
        postgresql_where=RUNNING, sqlite_where=RUNNING,
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_running_lease_expiry", "jobs")
    op.create_index(
        "ix_jobs_running_heartbeat", "jobs", ["heartbeat_at"],
        postgresql_where=RUNNING, sqlite_where=RUNNING,
    )
    op.drop_column("jobs", "lease_expires_at")
