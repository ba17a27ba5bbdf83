"""The job database's tables (SQLAlchemy Core), the same on PostgreSQL and SQLite.

Conventions that keep both databases identical in meaning:
- Times are unix seconds (UTC) in double-precision columns named ``*_at``. Both databases compute
  "now" themselves (see :mod:`db.statements`), so workers with skewed clocks cannot expire each
  other's leases, and the monitoring views do plain arithmetic on them.
- JSON is stored as text (``matrix``, ``ops``, ``profile``, ``evaluations``): readable from any SQL
  client, and SQLite's ``json_*`` / PostgreSQL's ``::json`` both parse it.

The DDL itself is applied by the Alembic migrations in ``db/migrations``; a test checks that the
migrated database equals these definitions.
"""

from __future__ import annotations

import sqlalchemy as sa

from farm.metrics import RUN_METRICS

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only auto-assigns ids to INTEGER PRIMARY KEY columns (the rowid), not BIGINT ones.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")



def per_database(index: sa.Index, database: str) -> sa.Index:
    """Mark ``index`` as one database's form of an index (the other has its own, same name): only
    that database creates it, and the schema test compares each database with its own forms."""
    index.info["database"] = database
    return index.ddl_if(dialect=database)


JOB_STATUSES = ("pending", "running", "done", "failed", "cancelled")

cells = sa.Table(
    "cells",
    metadata,
    # Jobs refer to a cell by this id, not by its 32-character hash: the reference is paid 5 million
    # times in a full campaign (in the row and in the unique index; migration 0008). Writers assign
    # ids in the order they store cells (db.bulk), so a new campaign's unique index grows in order.
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("hash", sa.String(32), nullable=False, unique=True),
    sa.Column("matrix", sa.Text, nullable=False),  # JSON: the pruned V x V adjacency matrix
    sa.Column("ops", sa.Text, nullable=False),  # JSON: V op names, "input" ... "output"
    sa.Column("vertices", sa.SmallInteger, nullable=False),
    sa.Column("edges", sa.SmallInteger, nullable=False),
    sa.Column("trainable_parameters", sa.BigInteger),  # NULL when not computed (no farm.cost)
    sa.Column("flops", sa.BigInteger),  # multiply-adds per 32x32 image
)

campaigns = sa.Table(
    "campaigns",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("profile_name", sa.String(64), nullable=False),
    sa.Column("profile", sa.Text, nullable=False),  # JSON: TrainConfig.to_dict()
    sa.Column("epochs", sa.Text, nullable=False),  # JSON list of epoch budgets
    sa.Column("repeats", sa.Integer, nullable=False),
    sa.Column("seed", sa.BigInteger, nullable=False),
    sa.Column("job_order", sa.String(20), nullable=False),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    # When its creation finished enqueueing its jobs; NULL while `campaign create` streams them, or
    # after an interrupted create (running it again completes the campaign). Migration 0007.
    sa.Column("enqueued_at", sa.Double),
    # 'trained', or 'imported' (a published table: nasfarm run never trains it). Migration 0005.
    sa.Column("source", sa.String(16), nullable=False, server_default="trained"),
    sa.Column("dataset", sa.String(64), nullable=False, server_default="cifar10"),
    sa.Column("data_fingerprint", sa.Text),  # JSON: name, split sizes, file SHA-256s, synthetic
    # Adaptive campaigns (successive halving, migration 0006): the top promote_numerator /
    # promote_denominator of a budget's cells go on to the next budget, in 'rounds' or 'async'
    # (ASHA-style) mode. NULL for a campaign that trains every cell at every budget.
    sa.Column("promote_numerator", sa.Integer),
    sa.Column("promote_denominator", sa.Integer),
    sa.Column("promote_mode", sa.String(16)),
)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    # No foreign keys on campaign_id / cell_id: a per-row FK check costs ~50% of the bulk enqueue
    # (5M rows), and both are written only by the campaign's writers, after the campaign and its
    # cells are stored; nothing ever deletes a campaign or a cell. cell_id is cells.id (0008).
    sa.Column("campaign_id", sa.Integer, nullable=False),
    sa.Column("cell_id", sa.Integer, nullable=False),
    sa.Column("epochs", sa.SmallInteger, nullable=False),
    sa.Column("repeat", sa.SmallInteger, nullable=False),
    sa.Column("seed", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(10), nullable=False, server_default="pending"),
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    # attempts counts claims (a crash is an attempt); release() gives the claim back.
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("max_attempts", sa.Integer, nullable=False, server_default="3"),
    sa.Column("preemptions", sa.Integer, nullable=False, server_default="0"),
    sa.Column("not_before", sa.Double, nullable=False, server_default="0"),  # backoff
    sa.Column("lease_owner", sa.String(200)),
    sa.Column("lease_token", sa.String(64)),  # random per claim: the fence for every write
    sa.Column("lease_node", sa.String(200)),
    sa.Column("claimed_at", sa.Double),
    sa.Column("heartbeat_at", sa.Double),
    # When the lease lapses unless renewed: claim and heartbeat write now + the owner's TTL, and
    # the reaper goes by this alone (migration 0004; NULL on leases written before it).
    sa.Column("lease_expires_at", sa.Double),
    sa.Column("finished_at", sa.Double),
    sa.Column("progress_step", sa.BigInteger),
    sa.Column("progress_epoch", sa.Double),
    sa.Column("checkpoint_location", sa.Text),
    sa.Column("last_error", sa.Text),
    sa.Column("error_signature", sa.String(200)),  # workers.faults.error_signature (0005)
    sa.UniqueConstraint("campaign_id", "cell_id", "epochs", "repeat"),
    sa.CheckConstraint(
        "status IN ('pending', 'running', 'done', 'failed', 'cancelled')", name="status"
    ),
)
# The claim reads this partial index in order and stops after n rows: it holds only pending jobs,
# so its size is the backlog, not the table (done jobs leave it). PostgreSQL needs the id in the
# key to read jobs in the claim's order (priority, then id). A SQLite index ends with the rowid
# (jobs.id) already and its planner reads ORDER BY priority DESC, id from it: naming id again would
# store it twice, 5 million times over (~46 MB of a full campaign's two claim indexes).
_pending = {"postgresql_where": jobs.c.status == "pending", "sqlite_where": jobs.c.status == "pending"}
per_database(sa.Index("ix_jobs_claim", jobs.c.priority.desc(), jobs.c.id, **_pending), "postgresql")
per_database(sa.Index("ix_jobs_claim", jobs.c.priority.desc(), **_pending), "sqlite")
# The reaper looks only at running jobs, by their leases' expiry.
sa.Index(
    "ix_jobs_running_lease_expiry",
    jobs.c.lease_expires_at,
    postgresql_where=jobs.c.status == "running",
    sqlite_where=jobs.c.status == "running",
)
# The claim restricted to one campaign: without it, claiming from a campaign queued behind another
# campaign's 5M pending jobs would walk all of them in ix_jobs_claim. (No (campaign_id, status)
# index: counts come from job_counts, and retry/cancel are rare bulk operations.)
per_database(sa.Index("ix_jobs_campaign_claim", jobs.c.campaign_id, jobs.c.priority.desc(), jobs.c.id,
                      **_pending), "postgresql")
per_database(sa.Index("ix_jobs_campaign_claim", jobs.c.campaign_id, jobs.c.priority.desc(), **_pending),
             "sqlite")
# The job_failures view: only jobs with an error (few), never the whole table.
sa.Index(
    "ix_jobs_with_error",
    jobs.c.id,
    postgresql_where=jobs.c.last_error.isnot(None),
    sqlite_where=jobs.c.last_error.isnot(None),
)

# Signed deltas of the number of jobs per (campaign, epochs, status), their cost (cell FLOPs x
# epochs), how many of the running ones are leased but not started (claimed ahead), the seconds jobs
# spent leased and their attempts: +N pending when jobs are inserted (their inserter counts them:
# db.counts), -1/+1 per change of a job's bucket from the triggers on jobs (migrations 0002,
# 0007). Summed per campaign and budget they answer every monitoring view without reading the jobs;
# db.views.compact_job_counts folds the rows. Append-only so that concurrent workers never wait on
# a shared counter row.
job_counts = sa.Table(
    "job_counts",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("campaign_id", sa.Integer, nullable=False),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("n", sa.BigInteger, nullable=False),
    sa.Column("busy_seconds", sa.Double, nullable=False, server_default="0"),
    sa.Column("attempts", sa.BigInteger, nullable=False, server_default="0"),
    # epochs 0: lease seconds recorded before migration 0007 (kept per campaign only)
    sa.Column("epochs", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Column("cost", sa.Double, nullable=False, server_default="0"),
    sa.Column("unstarted", sa.BigInteger, nullable=False, server_default="0"),
    sa.Index("ix_job_counts_campaign_id_status", "campaign_id", "status"),
)

# Signed deltas of finished jobs per (campaign, UTC hour): their number and the training time their
# results report (total_time, final_training_time), appended by triggers on results (migration
# 0007); hourly_throughput and campaign_eta's calibration read these instead of every result.
result_counts = sa.Table(
    "result_counts",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("campaign_id", sa.Integer, nullable=False),
    sa.Column("hour_start", sa.Double, nullable=False),  # unix seconds of the UTC hour's start
    sa.Column("n", sa.BigInteger, nullable=False),
    sa.Column("total_time", sa.Double, nullable=False, server_default="0"),
    sa.Column("final_training_time", sa.Double, nullable=False, server_default="0"),
)

# Append-only history: one row per claim, start, end (done/failed/reaped/released/cancelled), retry.
job_events = sa.Table(
    "job_events",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("job_id", sa.BigInteger, sa.ForeignKey("jobs.id"), nullable=False, index=True),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("owner", sa.String(200)),
    sa.Column("node", sa.String(200)),
    sa.Column("resumed_from_epoch", sa.Double),
    sa.Column("status", sa.String(10)),  # the job's status after the event
    sa.Column("error", sa.Text),
    sa.Column("at", sa.Double, nullable=False),
    sa.Column("fault", sa.String(16)),  # an attempt's end: job | environment | unknown (0005)
)

results = sa.Table(
    "results",
    metadata,
    # One result per job: the primary key makes a second completion impossible.
    sa.Column("job_id", sa.BigInteger, sa.ForeignKey("jobs.id"), primary_key=True),
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
    sa.Column("evaluations", sa.Text),  # JSON list: step 0, halfway, final
    sa.Column("resumed_from_step", sa.BigInteger),
    sa.Column("resumed_from_epoch", sa.Double),
    sa.Column("extra", sa.Text),  # JSON: weights_sha256 and TrainResult.extra (trainer, ...)
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Index("ix_results_campaign_id_cell_hash", "campaign_id", "cell_hash"),
    # "The last hour" of one campaign: never the rows an import wrote at the same time (0007).
    sa.Index("ix_results_campaign_id_created_at", "campaign_id", "created_at"),
)

# The per-epoch / per-evaluation stream of a job (every attempt; ``attempt`` tells them apart).
job_metrics = sa.Table(
    "job_metrics",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("job_id", sa.BigInteger, sa.ForeignKey("jobs.id"), nullable=False, index=True),
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
)

# One liveness row per running driver (nasfarm run): heartbeat every heartbeat_s; stale rows let
# another driver reap that driver's leases at once (migration 0005).
drivers = sa.Table(
    "drivers",
    metadata,
    sa.Column("owner", sa.String(200), primary_key=True),
    sa.Column("host", sa.String(200), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("heartbeat_s", sa.Double, nullable=False),
    sa.Column("started_at", sa.Double, nullable=False),
    sa.Column("heartbeat_at", sa.Double, nullable=False),
    sa.Column("stopped_at", sa.Double),
)

# Each driver's judgement of its nodes (scheduler.health): healthy, unhealthy or drained.
node_health = sa.Table(
    "node_health",
    metadata,
    sa.Column("driver", sa.String(200), primary_key=True),
    sa.Column("node_id", sa.String(64), primary_key=True),
    sa.Column("node", sa.String(200), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("environment_faults", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("updated_at", sa.Double, nullable=False),
)

# Adaptive campaigns (db.promotions): one row per budget of an adaptive campaign, written when the
# campaign is created; the decision of its round fills the rest, once, by the one transaction that
# finds decided_at NULL (an UPDATE ... WHERE decided_at IS NULL: a second decider changes nothing).
promotion_rounds = sa.Table(
    "promotion_rounds",
    metadata,
    sa.Column("campaign_id", sa.Integer, primary_key=True),
    sa.Column("epochs", sa.SmallInteger, primary_key=True),
    sa.Column("budget_index", sa.SmallInteger, nullable=False),
    sa.Column("next_epochs", sa.SmallInteger),  # NULL for the last budget: nothing to promote to
    sa.Column("decided_at", sa.Double),  # NULL until the round is decided
    sa.Column("decided_by", sa.String(200)),  # a driver's owner, or cli:HOST:PID
    sa.Column("cells", sa.Integer),  # cells with jobs at this budget
    sa.Column("cells_ranked", sa.Integer),  # n: of those, the cells with a finished repeat
    sa.Column("promoted", sa.Integer),  # ceil(f x n) (async mode: plus those promoted early)
    sa.Column("threshold", sa.Double),  # mean validation accuracy of the ceil(f x n)-th cell
)

# Each promotion of a cell from one budget to the next, with its evidence; the unique constraint
# makes a second promotion of a cell at a budget impossible, whoever decides it.
promotions = sa.Table(
    "promotions",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("campaign_id", sa.Integer, nullable=False),
    sa.Column("epochs", sa.SmallInteger, nullable=False),  # the budget the evidence is from
    sa.Column("next_epochs", sa.SmallInteger, nullable=False),  # the budget it was promoted to
    sa.Column("cell_hash", sa.String(32), nullable=False),
    sa.Column("mean_validation_accuracy", sa.Double, nullable=False),  # over its finished repeats
    sa.Column("repeats_finished", sa.Integer, nullable=False),
    sa.Column("cell_rank", sa.Integer, nullable=False),  # 1 = best; ties broken by hash
    sa.Column("cells_ranked", sa.Integer, nullable=False),  # n when decided
    sa.Column("threshold", sa.Double, nullable=False),  # the last promoted cell's mean when decided
    sa.Column("kind", sa.String(8), nullable=False),  # 'round', or 'async' (before the budget completed)
    sa.Column("decided_at", sa.Double, nullable=False),
    sa.Column("decided_by", sa.String(200)),
    sa.UniqueConstraint("campaign_id", "epochs", "cell_hash"),
)

RESULT_METRICS = RUN_METRICS  # the results table's metric columns
