"""The job tables: cells, campaigns, jobs, job_events, results, job_metrics.

Revision ID: 0001
Revises:
Create Date: 2026-09-01

Frozen: later schema changes go in new revisions, never here. Must equal db/schema.py at this
revision (tests/test_db_migrate.py compares the migrated database with the metadata).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
PENDING = sa.text("status = 'pending'")
RUNNING = sa.text("status = 'running'")


def upgrade() -> None:
    op.create_table(
        "cells",
        sa.Column("hash", sa.String(32), nullable=False),
        sa.Column("matrix", sa.Text, nullable=False),
        sa.Column("ops", sa.Text, nullable=False),
        sa.Column("vertices", sa.SmallInteger, nullable=False),
        sa.Column("edges", sa.SmallInteger, nullable=False),
        sa.Column("trainable_parameters", sa.BigInteger),
        sa.Column("flops", sa.BigInteger),
        sa.PrimaryKeyConstraint("hash", name="pk_cells"),
    )
    op.create_table(
        "campaigns",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("profile_name", sa.String(64), nullable=False),
        sa.Column("profile", sa.Text, nullable=False),
        sa.Column("epochs", sa.Text, nullable=False),
        sa.Column("repeats", sa.Integer, nullable=False),
        sa.Column("seed", sa.BigInteger, nullable=False),
        sa.Column("job_order", sa.String(20), nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_campaigns"),
        sa.UniqueConstraint("name", name="uq_campaigns_name"),
    )
    op.create_table(
        "jobs",
        sa.Column("id", BigId, nullable=False),
        sa.Column("campaign_id", sa.Integer, nullable=False),
        sa.Column("cell_hash", sa.String(32), nullable=False),
        sa.Column("epochs", sa.SmallInteger, nullable=False),
        sa.Column("repeat", sa.SmallInteger, nullable=False),
        sa.Column("seed", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(10), server_default="pending", nullable=False),
        sa.Column("priority", sa.Integer, server_default="0", nullable=False),
        sa.Column("attempts", sa.Integer, server_default="0", nullable=False),
        sa.Column("max_attempts", sa.Integer, server_default="3", nullable=False),
        sa.Column("preemptions", sa.Integer, server_default="0", nullable=False),
        sa.Column("not_before", sa.Double, server_default="0", nullable=False),
        sa.Column("lease_owner", sa.String(200)),
        sa.Column("lease_token", sa.String(64)),
        sa.Column("lease_node", sa.String(200)),
        sa.Column("claimed_at", sa.Double),
        sa.Column("heartbeat_at", sa.Double),
        sa.Column("finished_at", sa.Double),
        sa.Column("progress_step", sa.BigInteger),
        sa.Column("progress_epoch", sa.Double),
        sa.Column("checkpoint_location", sa.Text),
        sa.Column("last_error", sa.Text),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
        sa.UniqueConstraint(
            "campaign_id", "cell_hash", "epochs", "repeat",
            name="uq_jobs_campaign_id_cell_hash_epochs_repeat",
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'done', 'failed', 'cancelled')", name="ck_jobs_status"
        ),
    )
    op.create_index(
        "ix_jobs_claim", "jobs", [sa.text("priority DESC"), "id"],
        postgresql_where=PENDING, sqlite_where=PENDING,
    )
    op.create_index(
        "ix_jobs_running_heartbeat", "jobs", ["heartbeat_at"],
        postgresql_where=RUNNING, sqlite_where=RUNNING,
    )
    op.create_index(
        "ix_jobs_campaign_claim", "jobs", ["campaign_id", sa.text("priority DESC"), "id"],
        postgresql_where=PENDING, sqlite_where=PENDING,
    )

    op.create_table(
        "job_events",
        sa.Column("id", BigId, nullable=False),
        sa.Column("job_id", sa.BigInteger, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(200)),
        sa.Column("node", sa.String(200)),
        sa.Column("resumed_from_epoch", sa.Double),
        sa.Column("status", sa.String(10)),
        sa.Column("error", sa.Text),
        sa.Column("at", sa.Double, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_job_events"),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name="fk_job_events_job_id_jobs"),
    )
    op.create_index("ix_job_events_job_id", "job_events", ["job_id"])

    op.create_table(
        "results",
        sa.Column("job_id", sa.BigInteger, nullable=False),
        sa.Column("campaign_id", sa.Integer, nullable=False),
        sa.Column("cell_hash", sa.String(32), nullable=False),
        sa.Column("epochs", sa.SmallInteger, nullable=False),
        sa.Column("repeat", sa.SmallInteger, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("trainable_parameters", sa.BigInteger),
        sa.Column("total_time", sa.Double),
        sa.Column("halfway_training_time", sa.Double),
        sa.Column("halfway_train_accuracy", sa.Double),
        sa.Column("halfway_validation_accuracy", sa.Double),
        sa.Column("halfway_test_accuracy", sa.Double),
        sa.Column("final_training_time", sa.Double),
        sa.Column("final_train_accuracy", sa.Double),
        sa.Column("final_validation_accuracy", sa.Double),
        sa.Column("final_test_accuracy", sa.Double),
        sa.Column("evaluations", sa.Text),
        sa.Column("resumed_from_step", sa.BigInteger),
        sa.Column("resumed_from_epoch", sa.Double),
        sa.Column("extra", sa.Text),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.PrimaryKeyConstraint("job_id", name="pk_results"),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name="fk_results_job_id_jobs"),
    )
    op.create_index("ix_results_campaign_id_cell_hash", "results", ["campaign_id", "cell_hash"])
    op.create_index("ix_results_created_at", "results", ["created_at"])

    op.create_table(
        "job_metrics",
        sa.Column("id", BigId, nullable=False),
        sa.Column("job_id", sa.BigInteger, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("epoch", sa.Double),
        sa.Column("step", sa.BigInteger),
        sa.Column("loss", sa.Double),
        sa.Column("train_accuracy", sa.Double),
        sa.Column("validation_accuracy", sa.Double),
        sa.Column("test_accuracy", sa.Double),
        sa.Column("training_time", sa.Double),
        sa.Column("at", sa.Double, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_job_metrics"),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name="fk_job_metrics_job_id_jobs"),
    )
    op.create_index("ix_job_metrics_job_id", "job_metrics", ["job_id"])


def downgrade() -> None:
    for table in ("job_metrics", "results", "job_events", "jobs", "campaigns", "cells"):
        op.drop_table(table)
