"""``nasfarm status``: where the campaigns stand.

An overview table (counts by status, done %, attempts, GPU-hours, throughput, ETA), then per
campaign a progress bar, the last hour's jobs and GPU-hours, the ETA weighted by each remaining
job's cost, the live workers and the latest failures. It reads only the documented views
(``campaign_progress``, ``campaign_eta``, ``hourly_throughput``, ``active_workers``,
``job_failures``, ``worker_health``; for an adaptive campaign ``campaign_budgets`` and
``campaign_compute``), so what it shows is what SQL shows. The counting views read maintained
aggregates (db.counts), never the jobs, so status answers in milliseconds whatever the backlog.
"running" counts the jobs actually training; a job a driver claimed ahead and has not started is
"claimed". An imported campaign (published results) shows no training throughput.
"""

from __future__ import annotations

import json
import time
from typing import Any

import click

from nasfarm.cli.db import db_errors, db_option, open_engine

COLUMNS = (
    ("campaign", "campaign", "{}"),
    ("total", "total", "{:,}"),
    ("pending", "pending", "{:,}"),
    ("running", "running", "{:,}"),
    ("claimed", "claimed", "{:,}"),
    ("done", "done", "{:,}"),
    ("failed", "failed", "{:,}"),
    ("cancelled", "cancelled", "{:,}"),
    ("done %", "done_pct", "{:.2f}"),
    ("attempts", "attempts", "{:,}"),
    ("GPU h", "gpu_hours", "{:.2f}"),
    ("done/h", "done_last_hour", "{:,}"),
    ("ETA h", "eta_hours", "{:.1f}"),
)


def _rows(engine, campaigns: tuple[str, ...]) -> list[dict]:
    from db.errors import UnknownCampaign
    from db.views import campaign_progress

    rows = campaign_progress(engine, list(campaigns) if campaigns else None)
    missing = set(campaigns) - {row["campaign"] for row in rows}
    if missing:
        raise UnknownCampaign(f"unknown campaign {sorted(missing)[0]!r}")
    for row in rows:
        row["gpu_hours"] = float(row.pop("gpu_seconds") or 0.0) / 3600
        eta = row.pop("eta_seconds")
        row["eta_hours"] = None if eta is None else float(eta) / 3600
        row["done_pct"] = float(row["done_pct"] or 0.0)
        for key in ("total", "pending", "running", "claimed", "done", "failed", "cancelled", "attempts",
                    "done_last_hour"):
            row[key] = int(row[key] or 0)
    return rows


def format_table(rows: list[dict]) -> str:
    header = [title for title, _, _ in COLUMNS]
    body = [
        ["-" if row[key] is None else fmt.format(row[key]) for _, key, fmt in COLUMNS]
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    def render(line: list[str]) -> str:
        cells = [line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True)]
        return "  ".join(cells).rstrip()

    return "\n".join(render(line) for line in [header, *body])


BAR_WIDTH = 30
WORKERS_SHOWN = 20
FAILURES_SHOWN = 5


def _hours(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _bar(done: int, failed: int, total: int) -> str:
    if total <= 0:
        return "[" + " " * BAR_WIDTH + "]"
    filled = round(BAR_WIDTH * done / total)
    bad = min(BAR_WIDTH - filled, round(BAR_WIDTH * failed / total))
    return "[" + "#" * filled + "x" * bad + "." * (BAR_WIDTH - filled - bad) + "]"


def _details(engine, rows: list[dict]) -> dict[str, dict[str, Any]]:
    """Per campaign: cost ETA, last hour's throughput, live workers, latest failures (from views)."""
    from db.campaigns import get_campaign
    from db.views import read_view
    from nasfarm.cli.adaptive import budget_lines
    from nasfarm.cli.dataopts import data_line

    names = [row["campaign"] for row in rows]
    details: dict[str, dict[str, Any]] = {
        name: {"eta": {}, "last_hour": {"jobs_done": 0, "gpu_hours": 0.0}, "workers": [], "failures": []}
        for name in names
    }
    for eta in read_view(engine, "campaign_eta", names):
        details[eta.pop("campaign")]["eta"] = eta
    now_hour = time.strftime("%Y-%m-%d %H:00", time.gmtime())
    for hour in read_view(engine, "hourly_throughput", names):
        if hour["hour"] == now_hour:
            details[hour["campaign"]]["last_hour"] = {
                "jobs_done": int(hour["jobs_done"]),
                "gpu_hours": float(hour["training_seconds"] or 0.0) / 3600,
            }
    for worker in read_view(engine, "active_workers", names):
        details[worker["campaign"]]["workers"].append(worker)
    # Node health is the farm's, not a campaign's: the nodes judged by drivers that are alive now.
    nodes = [n for n in read_view(engine, "worker_health") if n["driver_alive"]]
    for name in names:
        details[name]["nodes"] = nodes
        details[name]["failures"] = read_view(engine, "job_failures", [name], limit=FAILURES_SHOWN)
        campaign = get_campaign(engine, name)
        details[name]["data"] = data_line(campaign)  # says "synthetic data" when so
        details[name]["source"] = campaign.get("source", "trained")
        details[name]["enqueued"] = campaign.get("enqueued_at") is not None
        details[name]["is_adaptive"] = campaign.get("promote") is not None
    # adaptive campaigns: their budgets (campaign_budgets reads jobs: only for those campaigns)
    adaptive = [name for name in names if details[name].pop("is_adaptive")]
    for name, lines in (budget_lines(engine, adaptive) if adaptive else {}).items():
        details[name]["adaptive"] = lines
    return details


def _render_campaign(row: dict, detail: dict[str, Any]) -> str:
    eta = detail["eta"]
    lines = [
        f"{row['campaign']}  {_bar(row['done'], row['failed'], row['total'])}  {row['done_pct']:.1f}%"
        f"  ({row['done']:,} of {row['total']:,} jobs)",
        f"  data: {detail.get('data', '-')}",
    ]
    if not detail.get("enqueued", True):
        lines.append("  creation incomplete: its jobs are still being enqueued, or the create was "
                     "interrupted (run the same `nasfarm campaign create` again to complete it)")
    if detail.get("source") == "imported":
        lines.append("  imported results (a published table): not trained here, no throughput or ETA")
    else:
        lines += [
            f"  this hour: {detail['last_hour']['jobs_done']:,} jobs, "
            f"{detail['last_hour']['gpu_hours']:.2f} GPU-hours of training;"
            f" last 60 min: {row['done_last_hour']:,} jobs",
            f"  ETA {_hours(eta.get('eta_seconds'))} weighted by cost (cell FLOPs x epochs of the "
            f"{int(eta.get('remaining_jobs') or 0):,} remaining jobs at the last hour's rate);"
            f" {_hours(None if row['eta_hours'] is None else row['eta_hours'] * 3600)} by job count",
        ]
    lines += detail.get("adaptive", [])
    workers = detail["workers"]
    ahead = f", {row['claimed']:,} job(s) claimed ahead, not started" if row.get("claimed") else ""
    lines.append(f"  workers: {len(workers)} training{ahead}")
    for w in workers[:WORKERS_SHOWN]:
        epoch = "-" if w["epoch"] is None else f"{float(w['epoch']):.2f}"
        step = "-" if w["step"] is None else f"{int(w['step']):,}"
        beat = "-" if w["seconds_since_heartbeat"] is None else f"{float(w['seconds_since_heartbeat']):.0f}s"
        lines.append(
            f"    {str(w['node'] or w['owner'])[:48]:<48} job {w['job_id']:<8} {w['cell_hash'][:8]}"
            f" {w['epochs']:>3}ep  epoch {epoch:>6}  step {step:>7}  heartbeat {beat} ago"
        )
    if len(workers) > WORKERS_SHOWN:
        lines.append(f"    ... {len(workers) - WORKERS_SHOWN} more (SELECT * FROM active_workers)")
    sick = [n for n in detail.get("nodes", []) if n["state"] != "healthy"]
    if detail.get("nodes"):
        lines.append(f"  nodes: {len(detail['nodes'])} judged by live drivers, "
                     f"{len(sick)} unhealthy or drained")
    for n in sick:
        error = " ".join(str(n["last_error"] or "").split())[:70]
        lines.append(f"    {str(n['node'])[:40]:<40} {n['state']:<9} {n['environment_faults']} environment "
                     f"fault(s): {error}")
    if detail["failures"]:
        lines.append("  latest failures:")
        for f in detail["failures"]:
            error = " ".join(str(f.get("error_signature") or f["last_error"]).split())[:90]
            lines.append(
                f"    job {f['job_id']} ({f['status']}, attempt {f['attempts']}/{f['max_attempts']}): {error}"
            )
    return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, float | int | str | bool) or value is None:
        return value
    return float(value)  # Decimal from PostgreSQL numeric arithmetic


def _snapshot(db_url: str | None, campaigns: tuple[str, ...]) -> tuple[list[dict], dict]:
    with db_errors():
        engine = open_engine(db_url)
        rows = _rows(engine, campaigns)
        return rows, _details(engine, rows)


@click.command("status")
@click.option("--campaign", "campaigns", multiple=True, metavar="NAME", help="Only these campaigns.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per campaign.")
@click.option("--watch", is_flag=True, help="Refresh every --interval seconds until interrupted.")
@click.option("--interval", type=click.FloatRange(min=0.5), default=5.0, show_default=True)
@db_option
def status_cmd(
    campaigns: tuple[str, ...], as_json: bool, watch: bool, interval: float, db_url: str | None
) -> None:
    """Where the campaigns stand: counts, progress, throughput, ETA, live workers, failures."""
    while True:
        rows, details = _snapshot(db_url, campaigns)
        if as_json:
            for row in rows:
                click.echo(json.dumps(_jsonable({**row, **details[row["campaign"]]})))
        elif not rows:
            click.echo("no campaigns yet: nasfarm campaign create --campaign NAME --cells ...")
        else:
            if watch:
                click.clear()
            click.echo(format_table(rows))
            for row in rows:
                click.echo("")
                click.echo(_render_campaign(row, details[row["campaign"]]))
        if not watch:
            return
        try:
            time.sleep(interval)
        except KeyboardInterrupt:
            return
