"""``nasfarm status``: where the campaigns stand (counts by status, done %, attempts, failures).

Reads the ``campaign_progress`` view, which sums per-campaign count deltas rather than the jobs
table, so it answers in milliseconds on millions of jobs.
"""

from __future__ import annotations

import json

import click

from farm.cli.db import db_errors, db_option, open_engine

COLUMNS = (
    ("campaign", "campaign", "{}"),
    ("total", "total", "{:,}"),
    ("pending", "pending", "{:,}"),
    ("running", "running", "{:,}"),
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
        for key in ("total", "pending", "running", "done", "failed", "cancelled", "attempts",
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


@click.command("status")
@click.option("--campaign", "campaigns", multiple=True, metavar="NAME", help="Only these campaigns.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per campaign.")
@db_option
def status_cmd(campaigns: tuple[str, ...], as_json: bool, db_url: str | None) -> None:
    """Where the campaigns stand: jobs by status, done %, attempts, failures, throughput, ETA."""
    with db_errors():
        rows = _rows(open_engine(db_url), campaigns)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
    elif not rows:
        click.echo("no campaigns yet: nasfarm campaign create NAME --cells ...")
    else:
        click.echo(format_table(rows))
