"""Pre-flight: everything a run needs, checked once before the first claim.

A run that cannot work must say so in seconds, with one line per problem, and change no job: the
alternative is a worker pool that claims, fails and marks jobs failed-for-good as fast as the
database allows. Checked here: the schema is current, every campaign exists and can be trained
(not an imported table), the run's campaigns share one data set, the data set is readable, is the
copy each campaign was created with (its fingerprint) and is large enough for every campaign's
profile, the device asked for exists in the cluster, the checkpoint storage takes a write, a read back and a
delete. Each worker repeats the node-local checks (device, storage, its data copy) when it starts
(:func:`workers.checks.node_problems`), because a cluster's nodes are not all alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from farm.config import TrainConfig


class PreflightFailed(Exception):
    """The run cannot start; ``problems`` has one line each. No job was changed."""

    def __init__(self, problems: Sequence[str]):
        super().__init__("; ".join(problems))
        self.problems = list(problems)


@dataclass(frozen=True)
class CampaignPlan:
    """What pre-flight needs to know of one campaign the run is about to work on."""

    name: str
    config: TrainConfig
    epochs: tuple[int, ...]
    source: str = "trained"  # "imported": a published table, never trained
    dataset: str = "cifar10"
    # The data copy it was created with (farm.datasets.fingerprint); None for campaigns created
    # before migration 0005 or without a copy at hand: then no copy is refused for it.
    fingerprint: dict[str, Any] | None = None


def data_problems(config: TrainConfig, sizes: Mapping[str, int], epochs: Sequence[int],
                  *, campaign: str) -> list[str]:
    """Why ``config`` cannot train on data of these split ``sizes`` (empty if it can)."""
    needed = {"train": config.train_images, "valid": config.eval_images,
              "test": config.eval_images, "train_eval": config.eval_images}
    problems = [
        f"campaign {campaign!r}: profile {config.name!r} needs {count:,} {split} images, "
        f"the data set has {sizes.get(split, 0):,}"
        for split, count in needed.items() if sizes.get(split, 0) < count
    ]
    short = sorted(e for e in epochs if config.total_steps(e) < 2)
    if short:
        problems.append(f"campaign {campaign!r}: {short} epoch(s) of profile {config.name!r} is fewer "
                        "than 2 training steps")
    return problems


def dataset_problems(plans: Sequence[CampaignPlan]) -> list[str]:
    """A run trains one data set (the driver ships one copy): campaigns of several are refused,
    and so (``--data-from nodes``, where no copy is read here) are campaigns created on different
    copies of it."""
    trained = [plan for plan in plans if plan.source != "imported"]
    names = sorted({plan.dataset for plan in trained})
    if len(names) > 1:
        listed = ", ".join(f"{plan.name!r}: {plan.dataset}" for plan in trained)
        return [f"the campaigns train on different data sets ({listed}); run each data set's "
                "campaigns separately (--campaign NAME)"]
    recorded = [plan for plan in trained if plan.fingerprint is not None]
    for plan in recorded[1:]:
        differ = _fingerprint_differences(recorded[0].fingerprint, plan.fingerprint)
        if differ:
            return [f"campaigns {recorded[0].name!r} and {plan.name!r} were created on different copies "
                    f"of {plan.dataset} ({'; '.join(differ)}); run them separately"]
    return []


def fingerprint_problems(plans: Sequence[CampaignPlan], loaded: Mapping[str, Any] | None,
                         *, where: str = "the driver's copy") -> list[str]:
    """A campaign whose recorded fingerprint differs from the loaded copy's, naming the parts
    (campaign's value vs this copy's). Campaigns without a recorded fingerprint are not checked."""
    if loaded is None:
        return []
    problems = []
    for plan in plans:
        if plan.source == "imported" or plan.fingerprint is None:
            continue
        differ = _fingerprint_differences(plan.fingerprint, dict(loaded))
        if differ:
            problems.append(f"campaign {plan.name!r} was created on another copy of {plan.dataset} than "
                            f"{where} (campaign's vs this copy's: {'; '.join(differ)}); place the copy "
                            "it was created with, or create a new campaign on this one")
    return problems


def _fingerprint_differences(expected: Mapping[str, Any], actual: Mapping[str, Any]) -> list[str]:
    from farm.datasets.fingerprint import differences

    return differences(dict(expected), dict(actual))


def campaign_problems(plans: Sequence[CampaignPlan], sizes: Mapping[str, int] | None,
                      fingerprint: Mapping[str, Any] | None = None) -> list[str]:
    """Every campaign's problems: imported, mixed data sets, another data copy, too little data."""
    mixed = dataset_problems(plans)
    problems = list(mixed)
    for plan in plans:
        if plan.source == "imported":
            problems.append(f"campaign {plan.name!r} holds imported results (a published table); "
                            "nasfarm never trains it")
            continue
        if sizes is not None:
            problems += data_problems(plan.config, sizes, plan.epochs, campaign=plan.name)
    if not mixed:  # with several data sets, every copy would differ from some campaign's
        problems += fingerprint_problems(plans, fingerprint)
    return problems
