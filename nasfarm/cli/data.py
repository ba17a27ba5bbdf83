"""``nasfarm data``: check a placed CIFAR-10 copy, or write the synthetic stand-in."""

from __future__ import annotations

import json
from pathlib import Path

import click

from nasfarm.cli.errors import BadInput


@click.group("data")
def data() -> None:
    """CIFAR-10 in its python-pickle layout (cifar-10-batches-py/)."""


@data.command("synthetic")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--images-per-batch", type=click.IntRange(min=1), default=256, show_default=True,
              help="Images in each of the 6 batch files.")
@click.option("--seed", type=int, default=0, show_default=True)
def synthetic_cmd(out_dir: Path, images_per_batch: int, seed: int) -> None:
    """Write a small learnable synthetic set in the exact CIFAR-10 layout to OUT_DIR."""
    from farm.data import write_synthetic_cifar10

    write_synthetic_cifar10(out_dir, images_per_batch=images_per_batch, seed=seed)
    click.echo(str(out_dir))


@data.command("check")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder holding cifar-10-batches-py/ (default: NASFARM_DATA_DIR or ~/.cache).")
@click.option("--download", is_flag=True, help="Download CIFAR-10 first if it is missing.")
def check_cmd(data_dir: Path | None, download: bool) -> None:
    """Read every batch file, check shapes and labels, and print the split sizes as JSON."""
    from farm.data import DataError, default_data_dir, load_cifar10

    folder = data_dir or default_data_dir()
    try:
        splits = load_cifar10(folder, download=download)
    except DataError as exc:
        raise BadInput(str(exc)) from exc
    counts = {
        name: [int((labels == c).sum()) for c in range(10)]
        for name, (_, labels) in (("train", splits.train), ("valid", splits.valid), ("test", splits.test))
    }
    click.echo(json.dumps({"data_dir": str(folder), "sizes": splits.sizes(), "class_counts": counts}))
