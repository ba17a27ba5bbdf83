"""The monitoring views (created by migrations 0002 and 0003) and the job-count bookkeeping behind them.

Views, identical in meaning on PostgreSQL and SQLite:
- ``campaign_progress``: per campaign total, pending, running, done, failed, cancelled, done_pct,
  gpu_seconds, done_last_hour, eta_seconds.
- ``active_workers``: owner, node, job, campaign, epoch, step, seconds_since_heartbeat, seconds_running.
- ``job_failures``: jobs with an error: status, attempts, max_attempts, last_error.
- ``nb101_results``: one row per finished (cell, epochs, repeat), in NAS-Bench-101's shape.
- ``hourly_throughput``: finished jobs per campaign and UTC hour.
- ``campaign_eta``: remaining cost (cell FLOPs x epochs of pending and running jobs), the cost done
  in the last hour, and the ETA at that rate; ``seconds_per_cost`` calibrates a device.
"""

from __future__ import annotations

import sqlalchemy as sa

from db.engine import read_connection, redact
from db.errors import translating

VIEW_NAMES = (
    "campaign_progress",
    "active_workers",
    "job_failures",
    "nb101_results",
    "hourly_throughput",
    "campaign_eta",  # migration 0003
)

# compact_job_counts (PostgreSQL): fold the delta rows into one row per (campaign, status) in one
# statement. Rows inserted meanwhile by other transactions are not in this statement's snapshot,
# so they are neither deleted nor counted twice.
_COMPACT_POSTGRESQL = """
WITH gone AS (
    DELETE FROM job_counts RETURNING campaign_id, status, n, busy_seconds, attempts
)
INSERT INTO job_counts (campaign_id, status, n, busy_seconds, attempts)
SELECT campaign_id, status, SUM(n), SUM(busy_seconds), SUM(attempts) FROM gone
GROUP BY campaign_id, status
HAVING SUM(n) <> 0 OR SUM(busy_seconds) <> 0 OR SUM(attempts) <> 0
"""
# compact_job_counts (SQLite): the same in three statements; the caller's write lock keeps them atomic.
_COMPACT_SQLITE = (
    """CREATE TEMP TABLE IF NOT EXISTS folded_counts (campaign_id, status, n, busy_seconds, attempts)""",
    """DELETE FROM temp.folded_counts""",
    """INSERT INTO temp.folded_counts
       SELECT campaign_id, status, SUM(n), SUM(busy_seconds), SUM(attempts)
       FROM job_counts GROUP BY campaign_id, status
       HAVING SUM(n) <> 0 OR SUM(busy_seconds) <> 0 OR SUM(attempts) <> 0""",
    """DELETE FROM job_counts""",
    """INSERT INTO job_counts (campaign_id, status, n, busy_seconds, attempts)
       SELECT campaign_id, status, n, busy_seconds, attempts FROM temp.folded_counts""",
)


def compact_job_counts(conn: sa.Connection, *, min_rows: int = 0) -> int:
    """Fold ``job_counts`` to one row per (campaign, status) if it has more than ``min_rows``
    rows; returns the rows it had."""
    rows = conn.execute(sa.text("SELECT COUNT(*) FROM job_counts")).scalar_one()
    if rows <= min_rows:
        return rows
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text(_COMPACT_POSTGRESQL))
    else:
        for statement in _COMPACT_SQLITE:
            conn.execute(sa.text(statement))
    return rows


def recount(engine: sa.Engine) -> None:
    """Rebuild ``job_counts`` from the jobs themselves (a repair; the GPU-seconds are kept)."""
    with translating(redact(engine.url)), engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("LOCK TABLE jobs IN SHARE MODE"))  # no status changes meanwhile
        busy = conn.execute(
            sa.text("SELECT campaign_id, SUM(busy_seconds) FROM job_counts GROUP BY campaign_id")
        ).all()
        conn.execute(sa.text("DELETE FROM job_counts"))
        conn.execute(
            sa.text(
                "INSERT INTO job_counts (campaign_id, status, n, busy_seconds, attempts)"
                " SELECT campaign_id, status, COUNT(*), 0.0, SUM(attempts) FROM jobs"
                " GROUP BY campaign_id, status"
            )
        )
        for campaign_id, seconds in busy:
            conn.execute(
                sa.text(
                    "INSERT INTO job_counts (campaign_id, status, n, busy_seconds)"
                    " VALUES (:c, 'running', 0, :s)"
                ),
                {"c": campaign_id, "s": float(seconds or 0.0)},
            )


def campaign_progress(engine: sa.Engine, campaigns: list[str] | None = None) -> list[dict]:
    """Rows of the ``campaign_progress`` view (all campaigns, or the named ones), by campaign id."""
    with translating(redact(engine.url)), read_connection(engine) as conn:
        statement = sa.text("SELECT * FROM campaign_progress ORDER BY campaign_id")
        rows = [dict(r) for r in conn.execute(statement).mappings()]
    if campaigns is not None:
        wanted = set(campaigns)
        rows = [r for r in rows if r["campaign"] in wanted]
    return rows


# Columns a view may be ordered by in read_view (never interpolate a caller's string into SQL).
_ORDERS = {
    "campaign_eta": "campaign",
    "active_workers": "campaign, seconds_since_heartbeat DESC",
    "job_failures": "COALESCE(finished_at, not_before) DESC, job_id DESC",
    "hourly_throughput": "hour DESC, campaign",
}


def read_view(
    engine: sa.Engine, view: str, campaigns: list[str] | None = None, *, limit: int | None = None
) -> list[dict]:
    """Rows of one of the documented views (``VIEW_NAMES``), optionally for some campaigns only."""
    if view not in VIEW_NAMES:
        raise ValueError(f"unknown view {view!r}")
    where, params = "", {}
    if campaigns:
        names = {f"c{i}": name for i, name in enumerate(campaigns)}
        where = " WHERE campaign IN (" + ", ".join(f":{k}" for k in names) + ")"
        params.update(names)
    sql = f"SELECT * FROM {view}{where} ORDER BY {_ORDERS.get(view, 'campaign')}"
    if limit is not None:
        sql += " LIMIT :limit"
        params["limit"] = int(limit)
    with translating(redact(engine.url)), read_connection(engine) as conn:
        return [dict(r) for r in conn.execute(sa.text(sql), params).mappings()]
