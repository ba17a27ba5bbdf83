"""``nasfarm demo``: the main job on the embedded default (SQLite + a local Ray), end to end.

Samples a few cells, enqueues their 4-epoch jobs, trains them on a local Ray cluster, and prints the
results in NAS-Bench-101's shape with the SQL to look at them. Without a GPU it says so and uses the
``smoke`` profile (tiny network, data subset) so that it ends in minutes on a laptop.
"""

from __future__ import annotations

import click

from nasfarm.cli.dataopts import data_dir_option, data_line, dataset_option, download_option

DEFAULT_CAMPAIGN = "demo"


class DemoError(click.ClickException):
    exit_code = 2


def _pick_profile(requested: str) -> tuple[str, str]:
    """(profile name, device) for the request; 'auto' means nb101 on a GPU, smoke otherwise."""
    import torch

    has_gpu = torch.cuda.is_available()
    if requested == "auto":
        if has_gpu:
            return "nb101", "cuda"
        click.echo(
            "No GPU found: using the 'smoke' profile (8-channel stem, 1 module per stack, 512 training"
            " images) so the demo ends in minutes. Pass --profile nb101 for the real network.",
            err=True,
        )
        return "smoke", "cpu"
    return requested, "cuda" if has_gpu else "cpu"


def _ensure_data(dataset: str, data_dir: str | None, download: bool):
    """The data set's splits, read and checked once (downloaded first if allowed and missing)."""
    from farm.datasets import DataError, get_dataset, load_dataset, offline_help
    from farm.datasets import data_dir as resolve

    entry = get_dataset(dataset)
    root = resolve(entry, data_dir)
    if entry.missing(root):
        if not download:
            raise DemoError(
                f"{entry.title} is not in {root} and --no-download (--offline) forbids downloading it. "
                + offline_help(entry, root)
            )
        click.echo(f"Downloading {entry.title} into {root} ...", err=True)
    try:
        return root, load_dataset(entry, root, download=download)  # reads and checks every file once
    except DataError as exc:
        raise DemoError(str(exc)) from exc


def _results_table(rows: list[dict]) -> str:
    header = (
        f"{'module_hash':<34}{'ep':>4}{'rep':>4}{'params':>11}"
        f"{'train':>8}{'valid':>8}{'test':>8}{'time s':>9}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row['module_hash']:<34}{row['epochs']:>4}{row['repeat']:>4}"
            f"{row['trainable_parameters']:>11,}{row['final_train_accuracy']:>8.3f}"
            f"{row['final_validation_accuracy']:>8.3f}{row['final_test_accuracy']:>8.3f}"
            f"{row['final_training_time']:>9.1f}"
        )
    return "\n".join(lines)


def _refuse_another_sample(engine, campaign: str, cells: int, epochs: int, repeats: int) -> None:
    """An existing demo campaign is resumed as it is; asking it for another number of cells would
    otherwise be silently ignored (or, for more cells, grow the campaign)."""
    from db.campaigns import get_campaign
    from db.errors import UnknownCampaign
    from db.queue import JobQueue

    try:
        existing = get_campaign(engine, campaign)
    except UnknownCampaign:
        return
    jobs = sum(JobQueue(engine).counts([campaign]).values())
    per_cell = max(len(existing["epochs"]) * existing["repeats"], 1)
    has = jobs // per_cell
    if has != cells or existing["epochs"] != [epochs] or existing["repeats"] != repeats:
        raise DemoError(
            f"campaign {campaign!r} exists with {has} cell(s) x {existing['epochs']} epochs x "
            f"{existing['repeats']} repeat(s); this demo asks for {cells} x [{epochs}] x {repeats}. "
            f"Resume it with the same options, or name a new one: --campaign demo-{cells}")


@click.command("demo")
@click.option("--db", "db_url", default=None, metavar="URL",
              help="Database URL (default: $NASFARM_DB, else sqlite:///nasfarm.db).")
@dataset_option
@data_dir_option
@download_option(default=True)
@click.option("--offline", is_flag=True, hidden=True, help="The same as --no-download.")
@click.option("--campaign", default=DEFAULT_CAMPAIGN, show_default=True)
@click.option("--cells", type=click.IntRange(min=1), default=4, show_default=True,
              help="Cells sampled uniformly from the 423,624.")
@click.option("--epochs", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--repeats", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--profile", type=click.Choice(["auto", "nb101", "smoke"]), default="auto", show_default=True,
              help="auto: nb101 on a GPU, smoke on CPU.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--storage", default=None, metavar="PATH|URI", help="Checkpoint root (see nasfarm run).")
def demo_cmd(
    db_url: str | None,
    dataset: str,
    data_dir: str | None,
    download: bool,
    offline: bool,
    campaign: str,
    cells: int,
    epochs: int,
    repeats: int,
    profile: str,
    seed: int,
    storage: str | None,
) -> None:
    """The main job: sample cells, train them on a local Ray cluster, print the results."""
    from db.engine import make_engine, redact
    from db.errors import DatabaseError
    from db.migrate import upgrade
    from db.results import nb101_results
    from farm.config import get_profile
    from farm.datasets import fit_config
    from farm.space import sample_cells
    from farm.spec import cell_from_labels
    from nasfarm.campaigns import create_campaign
    from scheduler.launch import run_campaigns
    from scheduler.options import RunOptions
    from scheduler.preflight import PreflightFailed
    from scheduler.summary import EXIT_PREFLIGHT

    profile_name, device = _pick_profile(profile)
    path, data = _ensure_data(dataset, data_dir, download and not offline)
    try:
        engine = make_engine(db_url)
        upgrade(engine)
        url = engine.url.render_as_string(hide_password=False)
        picked = [cell_from_labels(c.matrix, c.labels) for c in sample_cells(cells, seed)]
        _refuse_another_sample(engine, campaign, cells, epochs, repeats)
        summary = create_campaign(
            engine, campaign, picked, epochs=[epochs], repeats=repeats,
            profile=fit_config(get_profile(profile_name), data.num_classes).to_dict(), seed=seed,
            order="as-given", dataset=data.dataset, data_fingerprint=data.fingerprint,
        )
    except DatabaseError as exc:
        raise DemoError(str(exc)) from exc
    click.echo(
        f"Campaign '{campaign}' on {redact(engine.url)}: {len(picked)} cells x {epochs} epochs x "
        f"{repeats} repeat(s), profile {profile_name}, device {device}, data {data_line(summary)}"
        + ("" if summary.get("created") else " (already created: resuming)"),
        err=True,
    )
    try:
        run = run_campaigns(url, [campaign], RunOptions(
            data_dir=str(path), storage=storage, device=device, gpus_per_job=1.0 if device == "cuda" else 0.0,
        ))
    except PreflightFailed as exc:
        for problem in exc.problems:
            click.echo(f"nasfarm demo: pre-flight: {problem}", err=True)
        raise SystemExit(EXIT_PREFLIGHT) from None
    rows = nb101_results(engine, campaign)
    click.echo(_results_table(rows))
    click.echo(
        f"\n{run.done} job(s) trained in this run, {len(rows)} result(s) in the campaign; "
        f"complete: {run.complete}."
    )
    sqlite_file = engine.url.database if engine.url.get_backend_name() == "sqlite" else None
    client = f"sqlite3 {sqlite_file}" if sqlite_file else 'psql "$NASFARM_DB"'
    click.echo(
        "Look at them with SQL, e.g.:\n"
        f"  {client} \"SELECT * FROM campaign_progress\"\n"
        f"  {client} \"SELECT module_hash, epochs, final_test_accuracy FROM nb101_results"
        f" WHERE campaign = '{campaign}'\"\n"
        f"or: nasfarm status --campaign {campaign}"
    )
    if run.stop_reason:
        click.echo(run.stop_reason, err=True)
    if run.exit_code:
        raise SystemExit(run.exit_code)
