"""Starting a run: which campaigns, pre-flight, the Ray cluster, then the driver loop.

``run_campaigns`` is the one entry point (``nasfarm run`` and ``nasfarm demo`` call it). Nothing
here changes a job: every check that can fail does so before the driver makes its first claim.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from scheduler.cluster import connect
from scheduler.driver import Driver
from scheduler.options import RunOptions
from scheduler.pool import AUTO, alive_nodes, choose_shape, parse_gpus_per_job
from scheduler.preflight import CampaignPlan, PreflightFailed, campaign_problems
from scheduler.signals import StopRequest
from scheduler.summary import RunSummary
from workers import storage as ckpt_storage
from workers.checks import device_problems, storage_problems
from workers.contracts import TrainerName


class CampaignChoiceError(ValueError):
    """No campaign was named and the database leaves the choice ambiguous (or empty)."""


def plan_campaigns(engine: Any, names: Sequence[str], *, all_campaigns: bool = False) -> list[CampaignPlan]:
    """The campaigns a run would work on, with what pre-flight needs to know of each.

    Named campaigns must exist. With none named: the campaigns that have pending or running jobs
    and can be trained; more than one of them needs ``all_campaigns`` (a run that silently picks up
    every campaign in a shared database is how a forgotten experiment eats a cluster).
    """
    from db.campaigns import get_campaign
    from db.views import campaign_progress
    from farm.config import TrainConfig

    if names:
        rows = [get_campaign(engine, name) for name in names]  # UnknownCampaign for a typo
    else:
        busy = [r["campaign"] for r in campaign_progress(engine) if r["pending"] or r["running"]]
        rows = [row for row in (get_campaign(engine, n) for n in busy) if row.get("source") != "imported"]
        if len(rows) > 1 and not all_campaigns:
            listed = ", ".join(r["name"] for r in rows)
            raise CampaignChoiceError(
                f"{len(rows)} campaigns have jobs to run ({listed}): name one with --campaign NAME, "
                "or pass --all to work on all of them")
    return [CampaignPlan(name=r["name"], config=TrainConfig.from_dict(r["profile"]),
                         epochs=tuple(r["epochs"]), source=r.get("source", "trained")) for r in rows]


def run_campaigns(
    engine_url: str,
    campaigns: Sequence[str] = (),
    options: RunOptions | None = None,
    *,
    stop: StopRequest | None = None,
    on_progress: Callable[[dict[str, int]], None] | None = None,
    plans: Sequence[CampaignPlan] | None = None,
) -> RunSummary:
    """Work through ``campaigns`` on a Ray cluster until none of their jobs is pending or running
    (or for ever with ``follow=True``), then return what happened (``RunSummary.exit_code``).

    With no campaign named, see :func:`plan_campaigns`. Raises :class:`PreflightFailed` (one line
    per problem, no job changed) when the run cannot work. Installs SIGTERM/SIGINT handlers when
    called from the main thread; pass ``stop`` to control stopping yourself (``stop.request()``).
    """
    from db.engine import make_engine
    from db.migrate import require_current
    from db.queue import JobQueue

    opts = options or RunOptions()
    # An unknown trainer or an impossible shape fails here, before Ray starts.
    opts = replace(opts, trainer=TrainerName.parse(opts.trainer),
                   gpus_per_job=parse_gpus_per_job(opts.gpus_per_job))
    if opts.gpus_per_job != AUTO:
        choose_shape(1.0, opts.gpus_per_job, opts.cpus_per_job)
    engine = make_engine(engine_url)
    require_current(engine)  # SchemaOutdated: "run nasfarm db upgrade"
    if plans is None:
        plans = plan_campaigns(engine, campaigns, all_campaigns=opts.all_campaigns)
    names = [plan.name for plan in plans]
    if not names:
        return RunSummary(campaigns=[], owner="-", follow=opts.follow)  # nothing to run: no cluster

    payload, sizes, problems = _driver_data(opts)
    # A custom job runner (the farm benchmark's near-zero job) does not train with the profile.
    problems += campaign_problems(plans, sizes if opts.job_runner is None else None)
    storage_root = ckpt_storage.resolve_storage(opts.storage)
    problems += storage_problems(storage_root)
    if problems:
        raise PreflightFailed(problems)
    cluster = connect(opts.address)
    try:
        gpus = sum(node.resources.get("GPU", 0.0) for node in alive_nodes())
        problems = device_problems(opts.device, gpus > 0, where=f"the Ray cluster at {cluster.address}")
        if problems:
            raise PreflightFailed(problems)
        queue = JobQueue(engine, backoff_base=opts.retry_backoff_s)
        # After ray.init, which installs its own SIGTERM handler (exit at once) in the driver.
        with stop or StopRequest() as stopping:
            driver = Driver(queue, engine_url, names, opts, payload, stopping, on_progress,
                            storage_root=storage_root)
            driver.summary.cluster = cluster.address
            return driver.run()
    finally:
        # Disconnecting also ends this driver's actors (owned by it, not detached) and, for the
        # embedded default, the local cluster.
        cluster.disconnect()


def _driver_data(opts: RunOptions) -> tuple[dict[str, Any] | None, dict[str, int] | None, list[str]]:
    """The data set the driver ships to the workers (payload, split sizes), or (with
    ``data_from="nodes"``) nothing: each worker reads and checks its own node's copy."""
    from farm.data import DataError, default_data_dir, load_cifar10
    from workers.data import to_payload

    if opts.data_from == "nodes":
        return None, None, []
    where = opts.data_dir or default_data_dir()
    try:
        splits = load_cifar10(where)
    except DataError as exc:
        return None, None, [str(exc)]
    return to_payload(splits), splits.sizes(), []
