"""``nasfarm campaign create|list|show``, ``nasfarm retry`` and ``nasfarm cancel``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from nasfarm.cli.adaptive import parse_promote, promote_cmd, promote_options
from nasfarm.cli.dataopts import (
    data_dir_option,
    data_line,
    dataset_option,
    download_option,
    fitted_classes,
    load_or_fail,
)
from nasfarm.cli.db import db_errors, db_option, open_engine
from nasfarm.cli.errors import BadInput

ORDERS = ("shuffled", "cheap-first", "as-given")


def parse_epochs(text: str) -> list[int]:
    try:
        epochs = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise BadInput(f"--epochs must be comma-separated integers, got {text!r}") from None
    if not epochs or any(e <= 0 for e in epochs) or len(set(epochs)) != len(epochs):
        raise BadInput(f"--epochs must be distinct positive integers, got {text!r}")
    return epochs


def load_cells(spec: str, seed: int) -> list:
    """The cells named by ``--cells``: ``all``, ``sample:N`` or a JSON-lines file."""
    if spec == "all":
        from farm.space import enumerate_cells

        return enumerate_cells(progress=sys.stderr.isatty())
    if spec.startswith("sample:"):
        try:
            n = int(spec.split(":", 1)[1])
        except ValueError:
            raise BadInput(f"--cells sample:N needs an integer N, got {spec!r}") from None
        if n < 1:
            raise BadInput(f"--cells sample:N needs N >= 1, got {n}")
        from farm.space import count_cells, sample_cells

        if n > count_cells():
            raise BadInput(f"--cells {spec}: the space has only {count_cells():,} cells")
        return sample_cells(n, seed)
    path = Path(spec)
    if not path.is_file():
        raise BadInput(f"--cells must be all, sample:N or a JSON-lines file; {spec!r} is none of them")
    return read_cells_file(path)


def read_cells_file(path: Path) -> list:
    """One cell per line: {"matrix": ..., "ops": [...]} (names or the raw strings of the dataset)
    or {"matrix": ..., "labels": [...]} (the enumerator's integer labels)."""
    from farm.spec import Cell, InvalidCellError, cell_from_labels

    cells = []
    with path.open() as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if "ops" in record:
                    cells.append(Cell.from_any(record["matrix"], record["ops"]))
                elif "labels" in record:
                    cells.append(cell_from_labels(record["matrix"], record["labels"]))
                else:
                    raise InvalidCellError('needs "matrix" and "ops" (or "labels")')
            except (json.JSONDecodeError, InvalidCellError, KeyError, TypeError, ValueError) as exc:
                raise BadInput(f"{path}:{number}: not a valid cell: {exc}") from None
    if not cells:
        raise BadInput(f"{path}: no cells")
    return cells


@click.group()
def campaign() -> None:
    """Create and inspect campaigns (cells x epoch budgets x repeats, one training profile)."""


CAMPAIGN_HELP = "The campaign (every command names it with --campaign)."
campaign.add_command(promote_cmd)


@campaign.command("create")
@click.option("--campaign", "name", required=True, metavar="NAME", help=CAMPAIGN_HELP)
@click.option("--cells", "cells_spec", required=True, metavar="all|sample:N|FILE.jsonl",
              help="The whole space, a seeded uniform sample, or cells from a JSON-lines file.")
@click.option("--epochs", default="4,12,36,108", show_default=True, help="Epoch budgets.")
@click.option("--repeats", default=3, show_default=True, type=click.IntRange(min=1))
@click.option("--profile", "profile_name", default="nb101", show_default=True,
              type=click.Choice(["nb101", "smoke"]), help="Training hyperparameters.")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Seeds the sample, the shuffle and the jobs' training seeds.")
@click.option("--order", default="shuffled", show_default=True, type=click.Choice(ORDERS),
              help="Claim order: seeded shuffle of cells, cheapest (FLOPs x epochs) first, or as given.")
@click.option("--max-attempts", default=3, show_default=True, type=click.IntRange(min=1),
              help="Attempts per job (crashes included) before it is failed.")
@promote_options
@dataset_option
@data_dir_option
@download_option(default=False)
@db_option
def create_cmd(
    name: str, cells_spec: str, epochs: str, repeats: int, profile_name: str, seed: int,
    order: str, max_attempts: int, promote_text: str | None, promote_mode: str, dataset: str,
    data_dir: Path | None, download: bool, db_url: str | None,
) -> None:
    """Create a campaign and enqueue every (cell, epochs, repeat) job (idempotent).

    The campaign records its data set and, when a copy is where the data set lives (or
    --download fetches one), that copy's fingerprint (split sizes, SHA-256 of the files, synthetic
    or not); every run then checks its own copy against it.
    """
    from farm.config import get_profile
    from farm.datasets import data_dir as resolve
    from farm.datasets import fit_config, get_dataset
    from nasfarm.campaigns import create_campaign

    budgets = parse_epochs(epochs)
    promote = parse_promote(promote_text, promote_mode)
    if promote is not None and (len(budgets) < 2 or budgets != sorted(budgets)):
        raise BadInput(f"--promote needs two or more --epochs from low to high, got {epochs!r}")
    entry = get_dataset(dataset)
    root = resolve(entry, data_dir)
    if entry.missing(root) and not download:
        fingerprint, classes = None, fitted_classes(entry)
        click.echo(f"nasfarm campaign create: no copy of {entry.name} in {root}: the campaign records "
                   "its data set but no fingerprint, so runs cannot check their copy against it (place "
                   "the data or pass --data-dir/--download to record one)", err=True)
    else:
        data = load_or_fail(dataset, root, download=download)
        fingerprint, classes = data.fingerprint, data.num_classes
    profile = fit_config(get_profile(profile_name), classes).to_dict()
    with db_errors():
        engine = open_engine(db_url)
        cells = load_cells(cells_spec, seed)
        result = create_campaign(
            engine, name, cells, epochs=budgets, repeats=repeats, profile=profile, seed=seed, order=order,
            progress=True, max_attempts=max_attempts, dataset=entry.name, data_fingerprint=fingerprint,
            promote=promote,
        )
    verb = "created:" if result["created"] else "exists:"
    click.echo(
        f"campaign {name!r} {verb} {result['jobs_added']:,} jobs added "
        f"({result['cells_added']:,} new cells; {len(cells):,} cells x {len(budgets)} budgets x "
        f"{repeats} repeats, profile {profile_name}, order {order}; data {data_line(result)})"
        + (f"; adaptive: {promote.describe()}, only the {budgets[0]}-epoch jobs enqueued" if promote else "")
    )


@campaign.command("list")
@db_option
def list_cmd(db_url: str | None) -> None:
    """Every campaign with its settings and progress."""
    from db.views import campaign_progress

    with db_errors():
        engine = open_engine(db_url)
        rows = campaign_progress(engine)
    if not rows:
        click.echo("no campaigns yet")
    for row in rows:
        click.echo(
            f"{row['campaign']}: {int(row['total']):,} jobs, {int(row['done']):,} done "
            f"({float(row['done_pct'] or 0):.2f}%), {int(row['failed']):,} failed"
        )


@campaign.command("show")
@click.option("--campaign", "name", required=True, metavar="NAME", help=CAMPAIGN_HELP)
@db_option
def show_cmd(name: str, db_url: str | None) -> None:
    """A campaign's settings and counts, as JSON."""
    from db.campaigns import get_campaign
    from db.queue import JobQueue

    with db_errors():
        engine = open_engine(db_url)
        info = get_campaign(engine, name)
        info["counts"] = JobQueue(engine).counts([name])
    click.echo(json.dumps(info, indent=2, sort_keys=True))


@click.command("retry")
@click.option("--campaign", "name", required=True, metavar="NAME", help=CAMPAIGN_HELP)
@click.option("--include-cancelled", is_flag=True, help="Also send cancelled jobs back.")
@db_option
def retry_cmd(name: str, include_cancelled: bool, db_url: str | None) -> None:
    """Send a campaign's failed jobs back to pending with a fresh attempt budget."""
    from db.queue import JobQueue

    with db_errors():
        n = JobQueue(open_engine(db_url)).retry(name, failed_only=not include_cancelled)
    click.echo(f"{n:,} jobs of {name!r} back to pending")


@click.command("cancel")
@click.option("--campaign", "name", default=None, metavar="NAME", help=CAMPAIGN_HELP)
@click.option("--job", "job_ids", multiple=True, type=int, metavar="ID", help="Cancel these jobs.")
@db_option
def cancel_cmd(name: str | None, job_ids: tuple[int, ...], db_url: str | None) -> None:
    """Cancel a campaign's unfinished jobs (--campaign NAME), or some jobs (--job ID ...). Running
    jobs stop at their next heartbeat."""
    from db.queue import JobQueue

    if (name is None) == (not job_ids):
        raise BadInput("give --campaign NAME or --job IDs (not both)")
    with db_errors():
        queue = JobQueue(open_engine(db_url))
        n = queue.cancel(name) if name is not None else queue.cancel(job_ids=list(job_ids))
    click.echo(f"{n:,} jobs cancelled")
