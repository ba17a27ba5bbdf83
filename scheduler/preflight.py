"""Pre-flight: everything a run needs, checked once before the first claim.

A run that cannot work must say so in seconds, with one line per problem, and change no job: the
alternative is a worker pool that claims, fails and marks jobs failed-for-good as fast as the
database allows. Checked here: the schema is current, every campaign exists and can be trained
(not an imported table), the data set is readable and large enough for every campaign's profile,
the device asked for exists in the cluster, the checkpoint storage takes a write, a read back and a
delete. Each worker repeats the node-local checks (device, storage, its data copy) when it starts
(:func:`workers.checks.node_problems`), because a cluster's nodes are not all alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

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


def campaign_problems(plans: Sequence[CampaignPlan], sizes: Mapping[str, int] | None) -> list[str]:
    problems: list[str] = []
    for plan in plans:
        if plan.source == "imported":
            problems.append(f"campaign {plan.name!r} holds imported results (a published table); "
                            "nasfarm never trains it")
            continue
        if sizes is not None:
            problems += data_problems(plan.config, sizes, plan.epochs, campaign=plan.name)
    return problems
