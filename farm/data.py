"""CIFAR-10 as callers have always asked for it; the data sets themselves live in :mod:`farm.datasets`.

A thin re-export kept so that ``from farm.data import load_cifar10`` (and the other names below)
goes on working: every function here is the registry's CIFAR-10 entry, with the same splits,
numbers and errors (tests/test_datasets_cifar10.py holds them to the values of the code before the
registry).
"""

from __future__ import annotations

from pathlib import Path

from farm.datasets import DataError, Splits, data_dir, get_dataset, load_dataset, write_synthetic
from farm.datasets.cifar import CIFAR10_PLACEMENT
from farm.datasets.layouts import (
    CIFAR10_CLASSES,
    CIFAR10_DIR,
    CIFAR10_FILES,
    CIFAR10_META_FILE,
    CIFAR10_TEST_FILE,
    CIFAR10_TRAIN_FILES,
    CIFAR10_VALID_FILE,
)

__all__ = [
    "BATCHES_DIR", "DataError", "CifarSplits", "LABEL_NAMES", "META_FILE", "NUM_CLASSES", "REQUIRED_FILES",
    "TEST_FILE", "TRAIN_FILES", "VALID_FILE", "HOW_TO_PLACE", "default_data_dir", "download_cifar10",
    "load_cifar10", "missing_files", "write_synthetic_cifar10",
]

BATCHES_DIR = CIFAR10_DIR
TRAIN_FILES = CIFAR10_TRAIN_FILES
VALID_FILE = CIFAR10_VALID_FILE
TEST_FILE = CIFAR10_TEST_FILE
META_FILE = CIFAR10_META_FILE
REQUIRED_FILES = CIFAR10_FILES
LABEL_NAMES = CIFAR10_CLASSES
NUM_CLASSES = len(LABEL_NAMES)
HOW_TO_PLACE = CIFAR10_PLACEMENT
CifarSplits = Splits  # the splits of any data set; the name callers know


def default_data_dir(dataset: str = "cifar10") -> Path:
    """Where ``dataset`` (CIFAR-10 unless named) is read from: NASFARM_DATA_DIR, else the per-user
    config, else ``<XDG cache or ~/.cache>/nasfarm/<name>`` (:mod:`farm.datasets.locations`)."""
    return data_dir(dataset)


def missing_files(data_dir: str | Path) -> list[str]:
    """CIFAR-10's batch files absent from ``<data_dir>/cifar-10-batches-py/``."""
    folder = Path(data_dir) / CIFAR10_DIR
    return [name for name in CIFAR10_FILES if not (folder / name).is_file()]


def download_cifar10(data_dir: str | Path) -> None:
    get_dataset("cifar10").download(Path(data_dir))


def load_cifar10(data_dir: str | Path | None = None, *, download: bool = False) -> Splits:
    """Read ``<data_dir>/cifar-10-batches-py/`` into NAS-Bench-101's four splits."""
    return load_dataset("cifar10", data_dir, download=download)


def write_synthetic_cifar10(out_dir: str | Path, *, images_per_batch: int = 256, seed: int = 0) -> Path:
    """Write the synthetic CIFAR-10 stand-in (marked synthetic) into ``out_dir``; returns out_dir."""
    return write_synthetic("cifar10", out_dir, images=images_per_batch, seed=seed)
