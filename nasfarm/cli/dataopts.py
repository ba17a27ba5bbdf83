"""The data-set options, spelled one way on every command that reads a data set.

``--dataset NAME`` (default cifar10; a registry name or ``folder:PATH``), ``--data-dir DIR`` (the
directory of that data set; else NASFARM_DATA_DIR, the per-user config, the cache default) and
``--download/--no-download`` (fetch missing files with torchvision's downloaders). Also the one
line ``status`` and ``report`` show about a campaign's data.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from nasfarm.cli.errors import BadInput

DATASET_HELP = "Data set: cifar10, cifar100, svhn, cinic10, or folder:PATH (32x32 PNGs in class folders)."
DATA_DIR_HELP = ("Directory of that data set (default: NASFARM_DATA_DIR, else where `nasfarm data` "
                 "last recorded it, else ~/.cache/nasfarm/NAME).")


def _check_dataset(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from farm.datasets import DataError, get_dataset

    try:
        return get_dataset(value).name
    except DataError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


def dataset_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--dataset", default="cifar10", show_default=True, callback=_check_dataset,
                        metavar="NAME", help=DATASET_HELP)(command)


def data_dir_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                        help=DATA_DIR_HELP)(command)


def download_option(default: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option("--download/--no-download", default=default, show_default=True,
                        help="Download the data set with torchvision when files are missing.")


def load_or_fail(dataset: str, data_dir: Path | None, *, download: bool,
                 error: type[click.ClickException] = BadInput):
    """The data set's splits, or one clear line (``error``) saying what is missing and what to do."""
    from farm.datasets import DataError, load_dataset

    try:
        return load_dataset(dataset, data_dir, download=download)
    except DataError as exc:
        raise error(str(exc)) from None


def fitted_classes(entry: Any) -> int:
    """The data set's number of classes (a folder set without its folder: one clear line)."""
    from farm.datasets import DataError

    try:
        return int(entry.num_classes)
    except DataError as exc:
        raise BadInput(str(exc)) from None


def data_line(campaign: dict[str, Any]) -> str:
    """One line about a campaign's data: its set, split sizes, and "synthetic data" when it is."""
    from farm.datasets.fingerprint import describe

    fp = campaign.get("data_fingerprint")
    return describe(fp) if fp else f"{campaign.get('dataset') or 'cifar10'} (fingerprint not recorded)"


SYNTHETIC_NOTE = ("synthetic data: this campaign trained on a stand-in written by `nasfarm data synthetic`, "
                  "not on the real data set")


def is_synthetic(campaign: dict[str, Any]) -> bool:
    return bool((campaign.get("data_fingerprint") or {}).get("synthetic"))


def tfrecord_target(
    campaign: dict[str, Any], out_path: str, *, allow_synthetic: bool
) -> tuple[str, str | None]:
    """(file to write, sidecar JSON or None) for a tfrecord export of ``campaign``.

    NAS-Bench-101's format has no data-set field. A synthetic-data campaign is refused unless
    ``allow_synthetic`` (its records would pass for NAS-Bench-101's); one on another data set than
    CIFAR-10 gets the data set's name in the file name (``x.tfrecord`` -> ``x.cifar100.tfrecord``)
    and, like an allowed synthetic one, a sidecar ``<file>.json`` naming data set and fingerprint.
    """
    synthetic = is_synthetic(campaign)
    if synthetic and not allow_synthetic:
        raise BadInput(f"campaign {campaign['name']!r} trained on synthetic data; a tfrecord would pass for "
                       "NAS-Bench-101's results. Pass --allow-synthetic to write it anyway (with a sidecar "
                       "JSON saying so), or export jsonl/parquet")
    dataset = str(campaign.get("dataset") or "cifar10")
    if dataset == "cifar10" and not synthetic:
        return out_path, None
    path = Path(out_path)
    # folder:/data/my-set -> "folder-my-set": a file name part, not a path
    label = f"folder-{Path(dataset[7:]).name}" if dataset.startswith("folder:") else dataset
    if dataset != "cifar10" and label not in path.name:
        path = path.with_name(f"{path.stem}.{label}{path.suffix}")
    return str(path), f"{path}.json"
