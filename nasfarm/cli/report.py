"""``nasfarm report``: a campaign's plots (PNG) and one HTML page, read from the monitoring views."""

from __future__ import annotations

import click

from nasfarm.cli.dataopts import SYNTHETIC_NOTE, data_line, is_synthetic
from nasfarm.cli.db import db_errors, db_option, open_engine
from nasfarm.cli.errors import BadInput


@click.command("report")
@click.option("--campaign", required=True, metavar="NAME", help="The campaign to report on.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Directory for the PNGs and index.html (created if missing).")
@db_option
def report_cmd(campaign: str, out_dir: str, db_url: str | None) -> None:
    """Write progress, throughput and NAS-Bench-101's figures for the finished cells."""
    from db.campaigns import get_campaign
    from db.results import nb101_results
    from db.views import campaign_progress
    from farm.report import write_report

    with db_errors():
        engine = open_engine(db_url)
        progress = campaign_progress(engine, [campaign])
        if not progress:
            raise BadInput(f"unknown campaign {campaign!r}")
        results = nb101_results(engine, campaign)
        settings = get_campaign(engine, campaign)
    row = progress[0]
    summary = {key: row[key] for key in ("total", "pending", "running", "done", "failed", "cancelled")}
    summary["done %"] = f"{float(row['done_pct'] or 0):.2f}"
    summary["GPU hours"] = f"{float(row['gpu_seconds'] or 0) / 3600:.2f}"
    summary["data"] = data_line(settings)
    note = SYNTHETIC_NOTE if is_synthetic(settings) else None
    page = write_report(
        out_dir,
        campaign=campaign,
        progress=summary,
        results=results,
        finished_at=[float(r["created_at"]) for r in results],
        note=note,
    )
    click.echo(f"{len(results)} result(s) of {row['total']} job(s): {page}" + (f" ({note})" if note else ""))
