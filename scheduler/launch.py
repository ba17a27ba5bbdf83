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
                         epochs=tuple(r["epochs"]), source=r.get("source", "trained"),
                         dataset=r.get("dataset") or "cifar10", fingerprint=r.get("data_fingerprint"))
            for r in rows]


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

    payload, sizes, problems, fingerprint = _driver_data(opts, plans)
    # A custom job runner (the farm benchmark's near-zero job) does not train with the profile.
    problems += campaign_problems(plans, sizes if opts.job_runner is None else None, fingerprint)
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


def _driver_data(opts: RunOptions, plans: Sequence[CampaignPlan]
                 ) -> tuple[dict[str, Any] | None, dict[str, int] | None, list[str], dict[str, Any] | None]:
    """The campaigns' data set as the driver ships it to the workers: (payload, split sizes,
    problems, the copy's fingerprint). With ``data_from="nodes"`` each worker reads and checks its
    own node's copy: the payload is then only what that copy must be (data set and fingerprint)."""
    from farm.datasets import DataError, load_dataset
    from workers.data import expectation_payload, to_payload

    trained = [plan for plan in plans if plan.source != "imported"]
    datasets = {plan.dataset for plan in trained}
    if len(datasets) > 1:
        return None, None, [], None  # campaign_problems names the mix
    dataset = datasets.pop() if datasets else "cifar10"
    if opts.data_from == "nodes":
        recorded = next((plan.fingerprint for plan in trained if plan.fingerprint is not None), None)
        return expectation_payload(dataset, recorded), None, [], None
    try:
        splits = load_dataset(dataset, opts.data_dir)
    except DataError as exc:
        return None, None, [str(exc)], None
    return to_payload(splits), splits.sizes(), [], splits.fingerprint
