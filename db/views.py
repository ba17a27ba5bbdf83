"""The monitoring views (migrations 0002, 0003, 0005, 0007) and reading them.

Views, identical in meaning on PostgreSQL and SQLite. Those that count read the aggregates of
:mod:`db.counts` (O(campaigns x budgets) rows, never the jobs), so they answer in milliseconds
whatever the backlog:
- ``campaign_progress``: per campaign total, pending, running (jobs actually training), done,
  failed, cancelled, done_pct, attempts, gpu_seconds, done_last_hour, eta_seconds, claimed (leased
  ahead, not started). An imported campaign has no gpu_seconds or done_last_hour: it was not
  trained here.
- ``active_workers``: each job being trained: owner, node, job, campaign, epoch and step (the newer
  of the latest epoch metric and the heartbeat), seconds_since_heartbeat, seconds_running.
- ``job_failures``: jobs with an error: status, attempts, max_attempts, last_error.
- ``nb101_results``: one row per finished (cell, epochs, repeat), in NAS-Bench-101's shape.
- ``hourly_throughput``: finished jobs per trained campaign and UTC hour.
- ``campaign_eta``: remaining cost (cell FLOPs x epochs of pending and running jobs), the cost done
  in the last hour, and the ETA at that rate; ``seconds_per_cost`` calibrates a device (trained
  campaigns only).
"""

from __future__ import annotations

import sqlalchemy as sa

from db.counts import compact as compact_job_counts  # noqa: F401 (the reaper's and tests' name)
from db.counts import recount  # noqa: F401 (nasfarm db recount)
from db.dialect import dialect_of
from db.engine import read_connection
from db.errors import translating
from db.statements import monitoring as sql
from db.urls import redact

VIEW_NAMES = (
    "campaign_progress",
    "active_workers",
    "job_failures",
    "nb101_results",
    "hourly_throughput",
    "campaign_eta",  # migration 0003
    "worker_health",  # migration 0005
    "campaign_budgets",  # migration 0006: adaptive campaigns, one row per budget (db.promotions)
    "campaign_compute",  # migration 0006: adaptive campaigns' compute against the full grid
)


def campaign_progress(engine: sa.Engine, campaigns: list[str] | None = None) -> list[dict]:
    """Rows of the ``campaign_progress`` view (all campaigns, or the named ones), by campaign id."""
    with translating(redact(engine.url)), read_connection(engine) as conn:
        rows = [dict(r) for r in conn.execute(dialect_of(conn).render(sql.CAMPAIGN_PROGRESS)).mappings()]
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
    "worker_health": "driver_alive DESC, state, node",
    "campaign_budgets": "campaign, budget_index",
}


def read_view(
    engine: sa.Engine, view: str, campaigns: list[str] | None = None, *, limit: int | None = None
) -> list[dict]:
    """Rows of one of the documented views (``VIEW_NAMES``), optionally for some campaigns only."""
    if view not in VIEW_NAMES:
        raise ValueError(f"unknown view {view!r}")
    fragments = {"view": view, "order": _ORDERS.get(view, "campaign"), "where": "", "limit": ""}
    params: dict[str, object] = {}
    expanding: tuple[str, ...] = ()
    if campaigns:
        fragments["where"], params["campaigns"] = "WHERE campaign IN :campaigns", list(campaigns)
        expanding = ("campaigns",)
    if limit is not None:
        fragments["limit"], params["limit"] = "LIMIT :limit", int(limit)
    statement = dialect_of(engine).render(sql.READ_VIEW, expanding=expanding, **fragments)
    with translating(redact(engine.url)), read_connection(engine) as conn:
        return [dict(r) for r in conn.execute(statement, params).mappings()]
