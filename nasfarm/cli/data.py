"""``nasfarm data``: the data sets -- list them, check a placed copy, write a synthetic stand-in.

``check`` and ``synthetic`` record where the data set lives in the per-user config
(``$XDG_CONFIG_HOME/nasfarm/config.json``), so that later commands find it without ``--data-dir``.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from nasfarm.cli.dataopts import data_dir_option, dataset_option, download_option, load_or_fail


@click.group("data")
def data() -> None:
    """Data sets: CIFAR-10 (NAS-Bench-101's), CIFAR-100, SVHN, CINIC-10, folder:PATH."""


@data.command("list")
def list_cmd() -> None:
    """The registry: each data set's classes, normalisation and splits (sizes and reasons), as JSON."""
    from farm.datasets import REGISTRY, describe_entry

    for entry in REGISTRY.values():
        click.echo(json.dumps(describe_entry(entry)))


@data.command("synthetic")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@dataset_option
@click.option("--images", "--images-per-batch", "images", type=click.IntRange(min=1), default=256,
              show_default=True,
              help="Images per 10,000 of the real split sizes (CIFAR-10: images in each batch file).")
@click.option("--seed", type=int, default=0, show_default=True)
def synthetic_cmd(out_dir: Path, dataset: str, images: int, seed: int) -> None:
    """Write a small learnable synthetic stand-in, in the data set's real file format, to OUT_DIR.

    It is marked as synthetic (NASFARM-SYNTHETIC.json beside the files): campaigns on it say so,
    and `nasfarm export --format tfrecord` refuses them unless --allow-synthetic.
    """
    from farm.datasets import get_dataset, write_synthetic
    from farm.datasets.locations import remember

    entry = get_dataset(dataset)
    write_synthetic(entry, out_dir, images=images, seed=seed)
    config = remember(entry.name, out_dir)
    click.echo(str(out_dir))
    if config is not None:
        click.echo(f"recorded in {config}: {entry.name} (synthetic) lives in {out_dir.resolve()}", err=True)


@data.command("check")
@dataset_option
@data_dir_option
@download_option(default=False)
def check_cmd(dataset: str, data_dir: Path | None, download: bool) -> None:
    """Read every file, check shapes and labels, print split sizes, class counts and the copy's
    fingerprint as JSON; with --data-dir, remember where the data set lives."""
    from farm.datasets import data_dir as resolve
    from farm.datasets import get_dataset
    from farm.datasets.base import class_balance
    from farm.datasets.locations import remember

    entry = get_dataset(dataset)
    root = resolve(entry, data_dir)
    splits = load_or_fail(dataset, root, download=download)
    config = remember(entry.name, root) if data_dir is not None and entry.default_root is None else None
    counts = {
        name: class_balance(getattr(splits, name)[1].numpy(), splits.num_classes)
        for name in ("train", "valid", "test")
    }
    click.echo(json.dumps({
        "dataset": splits.dataset, "data_dir": str(root), "sizes": splits.sizes(),
        "classes": splits.num_classes, "mean": list(splits.mean), "std": list(splits.std),
        "class_counts": counts, "fingerprint": splits.fingerprint,
    }))
    if config is not None:
        click.echo(f"recorded in {config}: {entry.name} lives in {Path(root).resolve()}", err=True)
