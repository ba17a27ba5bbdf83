"""``nasfarm run``: work through campaigns on a Ray cluster (the embedded local one by default)."""

from __future__ import annotations

import json
import logging
import sys

import click

from nasfarm.cli.errors import BadInput
from workers.contracts import TrainerName


@click.command("run")
@click.option("--campaign", "campaigns", multiple=True, metavar="NAME",
              help="Campaign to work on (repeatable); default: the one campaign with jobs to run.")
@click.option("--all", "all_campaigns", is_flag=True,
              help="With no --campaign: work on every campaign with jobs to run (default: refuse if "
                   "there is more than one).")
@click.option("--db", "db_url", default=None, metavar="URL",
              help="Database URL (default: $NASFARM_DB, else sqlite:///nasfarm.db).")
@click.option("--address", default=None, metavar="auto|HOST:PORT|ray://HOST:10001",
              help="Ray cluster to join; default: start a local one for this run.")
@click.option("--gpus-per-job", default="1", show_default=True, metavar="N|auto",
              help="GPUs per job; a fraction packs jobs on a card (0.5 = two per GPU); "
                   "auto: each job's share of a card from its cell's FLOPs (up to 4 small cells "
                   "per GPU, a large one alone; docs/gpu.md); "
                   "0 or a cluster without GPUs: CPU workers.")
@click.option("--cpus-per-job", type=click.FloatRange(min=0, min_open=True), default=None,
              help="CPUs per job (default 1); on a cluster without GPUs, one worker per this many CPUs.")
@click.option("--max-workers", type=click.IntRange(min=1), default=None,
              help="Cap the worker pool (default: every slot of the cluster).")
@click.option("--storage", default=None, metavar="PATH|URI",
              help="Checkpoint root: a path shared by all nodes or an fsspec URI such as s3://bucket/x "
                   "(default: $NASFARM_STORAGE, else ~/.cache/nasfarm/checkpoints).")
@click.option("--data-dir", default=None, type=click.Path(file_okay=False),
              help="Directory holding cifar-10-batches-py/ (default: $NASFARM_DATA_DIR or the cache).")
@click.option("--data-from", type=click.Choice(["driver", "nodes"]), default="driver", show_default=True,
              help="driver: this process reads the data set and ships it to every node; nodes: each "
                   "worker reads its own node's copy at --data-dir (a node whose copy is bad is drained).")
@click.option("--lease-ttl", type=click.FloatRange(min=1.0), default=120.0, show_default=True,
              help="Seconds without a heartbeat after which a job's lease expires.")
@click.option("--retry-backoff", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="Seconds before a failed or crashed job may run again (doubling per attempt).")
@click.option("--follow", is_flag=True, help="Keep waiting for new jobs instead of exiting when done.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Training device; auto = CUDA on GPU workers.")
@click.option("--prefetch", type=click.IntRange(min=0), default=1, show_default=True,
              help="Jobs claimed ahead of the idle workers, so no worker waits for the database.")
@click.option("--keep-checkpoints", is_flag=True, help="Keep each job's checkpoint after its result.")
@click.option("--trainer", type=click.Choice([t.value for t in TrainerName]),
              default=TrainerName.FAITHFUL.value, show_default=True,
              help="faithful: farm.train, op by op. fast: farm.fast's whole step as one CUDA-graph "
                   "replay (same results, checkpoints and events). fused: fast, with the repeats "
                   "of a cell claimed together and trained as one repeat-grouped network. fast and "
                   "fused are not yet verified on a GPU, see docs/gpu.md.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.option("-v", "--verbose", count=True, help="More log lines (-v: workers and pool; -vv: debug).")
def run_cmd(
    campaigns: tuple[str, ...],
    db_url: str | None,
    address: str | None,
    gpus_per_job: str,
    cpus_per_job: float | None,
    max_workers: int | None,
    storage: str | None,
    data_dir: str | None,
    lease_ttl: float,
    retry_backoff: float,
    follow: bool,
    device: str,
    prefetch: int,
    keep_checkpoints: bool,
    trainer: str,
    all_campaigns: bool,
    data_from: str,
    as_json: bool,
    verbose: int,
) -> None:
    """Work through campaigns on a Ray cluster until no job is pending or running.

    Each worker trains one job at a time, checkpointing every epoch; a crashed worker or a lost
    node costs the job one attempt and it resumes elsewhere from its checkpoint. SIGTERM or
    Ctrl-C: running jobs checkpoint and go back to pending (no attempt charged), then the command
    exits; a second signal exits at once.

    Exit status: 0 every job this run handled is done; 1 some failed for good (or work was left);
    2 bad input; 3 pre-flight failed (nothing claimed); 4 stopped by the circuit breaker; 5 no
    healthy worker left (nodes drained); 130/143 stopped by SIGINT/SIGTERM (jobs released).
    """
    _configure_logging(verbose)
    from db.engine import make_engine, resolve_url
    from db.errors import BadDatabaseURL, DatabaseError, UnknownCampaign
    from farm.data import DataError
    from scheduler.cluster import ClusterError
    from scheduler.driver import FarmError
    from scheduler.launch import CampaignChoiceError, plan_campaigns, run_campaigns
    from scheduler.options import RunOptions
    from scheduler.pool import PoolConfigError
    from scheduler.preflight import PreflightFailed
    from scheduler.summary import EXIT_PREFLIGHT

    url = resolve_url(db_url)
    options = RunOptions(
        address=address, gpus_per_job=gpus_per_job, cpus_per_job=cpus_per_job,
        max_workers=max_workers, storage=storage, data_dir=data_dir, lease_ttl_s=lease_ttl,
        retry_backoff_s=retry_backoff, follow=follow, device=device, prefetch=prefetch,
        keep_checkpoints=keep_checkpoints, trainer=TrainerName(trainer),
        all_campaigns=all_campaigns, data_from=data_from,
    )
    try:
        _check_schema(url)
        plans = plan_campaigns(make_engine(url), list(campaigns), all_campaigns=all_campaigns)
        if plans:
            click.echo(f"nasfarm run: working on {', '.join(p.name for p in plans)}", err=True)
        else:
            click.echo("nasfarm run: no campaign has jobs to run", err=True)
        summary = run_campaigns(url, [p.name for p in plans], options, plans=plans)
    except PreflightFailed as exc:
        for problem in exc.problems:
            click.echo(f"nasfarm run: pre-flight: {problem}", err=True)
        click.echo("nasfarm run: nothing was claimed; fix the above and run again", err=True)
        sys.exit(EXIT_PREFLIGHT)
    except (UnknownCampaign, BadDatabaseURL, PoolConfigError, CampaignChoiceError) as exc:
        raise BadInput(str(exc)) from None
    except (DatabaseError, DataError, ClusterError, FarmError) as exc:
        raise click.ClickException(str(exc)) from None

    if as_json:
        click.echo(json.dumps(summary.to_dict(), sort_keys=True))
    else:
        click.echo(_describe(summary))
    sys.exit(summary.exit_code)


def _check_schema(url: str) -> None:
    """A clear 'run nasfarm db upgrade' before Ray starts, when the schema is missing or old
    (and no empty SQLite file left behind for a mistyped --db)."""
    from db.engine import make_engine, require_existing
    from db.migrate import require_current

    require_existing(url)
    engine = make_engine(url)
    try:
        require_current(engine)
    finally:
        engine.dispose()


def _describe(summary) -> str:
    gap50, gap99 = summary.idle_gap_percentile(50), summary.idle_gap_percentile(99)
    lines = [
        f"nasfarm run: {summary.done} done, {summary.failed} failed attempt(s), "
        f"{summary.released} released, {summary.lost} lost lease(s), "
        f"{summary.worker_deaths} worker death(s) in {summary.elapsed_s:.1f} s "
        f"({summary.workers_started} worker(s) started)",
    ]
    if gap50 is not None:
        lines.append(f"idle gap between jobs: p50 {gap50 * 1000:.0f} ms, p99 {gap99 * 1000:.0f} ms")
    counts = ", ".join(f"{status} {n}" for status, n in sorted(summary.counts.items()))
    scope = ", ".join(summary.campaigns) or "all campaigns"
    lines.append(f"{scope}: {counts or 'no jobs'}")
    if summary.environment_faults:
        lines.append(f"{summary.environment_faults} job(s) released for environment faults (no attempt "
                     "charged)" + (f"; drained: {', '.join(summary.drained_nodes)}" if summary.drained_nodes
                                   else ""))
    if summary.stop_reason:
        lines.append(summary.stop_reason)
    if summary.handled_failed:
        lines.append(f"{summary.handled_failed} job(s) handled by this run failed for good: "
                     "nasfarm status shows why; nasfarm retry --campaign NAME sends them back")
    if summary.interrupted and summary.abandoned:
        lines.append(f"stopped by {summary.interrupted}: {summary.abandoned} job(s) did not release in "
                     "time; their leases expire and the next run resumes them")
    elif summary.interrupted:
        lines.append(f"stopped by {summary.interrupted}: running jobs were checkpointed and released")
    elif not summary.complete:
        lines.append("jobs remain pending or running (held by another driver or backing off)")
    return "\n".join(lines)


def _configure_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="nasfarm: %(message)s", stream=sys.stderr)
    for name in ("nasfarm.run", "scheduler", "workers"):
        logging.getLogger(name).setLevel(level)
    logging.getLogger("alembic").setLevel(logging.WARNING)
