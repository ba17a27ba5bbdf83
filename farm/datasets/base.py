"""What every data set of the registry is: its splits in memory, its errors, and the entry's interface.

A data set entry (:class:`DataSet`) knows its files and how to fetch them, how to read them (the
real on-disk format), how to cut NAS-Bench-101's four splits out of them, its normalisation
statistics, its classes and its image size. Images stay uint8 ``[N, 32, 32, 3]`` (HWC, RGB) in
memory; augmentation and normalisation happen in batches on the training device (``farm.augment``)
with the statistics the loaded :class:`Splits` carries.

The split rule shared by the built-in sets that come as one training file and one test file
(CIFAR-100, SVHN) is CIFAR-10's, stated as sizes (:func:`holdout_splits`): NAS-Bench-101 trains on
40,000 images, validates on 10,000 held out from the training file, tests on 10,000 and measures
training accuracy on the first 10,000 training images. Keeping those sizes on every data set keeps
an epoch at 156.25 steps of 256 and every accuracy a multiple of 1/9,984, so a budget of E epochs
costs the same and means the same on every data set.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch is imported where tensors are made: the registry alone must not pay for it
    import torch

SPLITS = ("train", "valid", "test", "train_eval")
IMAGE_SIZE = 32  # the network's stem and the augmentation (32x32 crops of a 40x40 pad) assume it
# CIFAR-10's statistics (SPEC e.3: RGB, 0-255 scale): the defaults where no data set is named.
CIFAR10_MEAN = (125.31, 122.95, 113.87)
CIFAR10_STD = (62.99, 62.09, 66.70)

# NAS-Bench-101's split sizes (SPEC e.3), the most any built-in split rule takes.
NB101_TRAIN = 40_000
NB101_HOLDOUT = 10_000

Split = tuple["torch.Tensor", "torch.Tensor"]  # (uint8 [N,32,32,3] HWC images, int64 [N] labels)
Arrays = tuple[np.ndarray, np.ndarray]  # the same as numpy arrays, as the readers produce them


class DataError(Exception):
    """The data set is missing or malformed; the message says what, and how to place it."""


@dataclass
class Splits:
    """The four splits of one data set, with what training needs to know about them.

    ``mean``/``std`` (RGB, 0-255) normalise every batch; ``num_classes`` sizes the network's head;
    ``fingerprint`` identifies the copy that was read (:mod:`farm.datasets.fingerprint`). The
    defaults are CIFAR-10's, so code that builds splits by hand (tests, benches) keeps working.
    """

    train: Split
    valid: Split
    test: Split
    train_eval: Split
    dataset: str = "cifar10"
    num_classes: int = 10
    mean: tuple[float, float, float] = CIFAR10_MEAN
    std: tuple[float, float, float] = CIFAR10_STD
    fingerprint: dict[str, Any] | None = field(default=None, compare=False)

    def sizes(self) -> dict[str, int]:
        return {name: int(getattr(self, name)[1].numel()) for name in SPLITS}


def check_images(where: str, images: np.ndarray, labels: np.ndarray, num_classes: int) -> None:
    """Raise :class:`DataError` unless ``images`` is uint8 [N,32,32,3] with N labels in range."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 3):
        raise DataError(f"{where}: images must be uint8 [N, {IMAGE_SIZE}, {IMAGE_SIZE}, 3], "
                        f"got {images.dtype} {list(images.shape)}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise DataError(f"{where}: {labels.shape[0] if labels.ndim == 1 else list(labels.shape)} labels "
                        f"for {images.shape[0]} images")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{where}: labels must lie in 0..{num_classes - 1}")


def holdout_splits(train: Arrays, test: Arrays) -> dict[str, Arrays]:
    """NAS-Bench-101's split sizes cut from one training file and one test file.

    valid = the LAST min(10,000, n/5) images of the training file (held out: never trained on);
    train = the FIRST min(40,000, n - valid); train_eval = the first min(10,000, train/4) of train
    (as data_batch_1 is for CIFAR-10); test = the first min(10,000, m) of the test file. On a real
    file that is 40,000 / 10,000 / 10,000 / 10,000; on a small synthetic file the same proportions.
    """
    images, labels = train
    n = images.shape[0]
    n_valid = min(NB101_HOLDOUT, n // 5)
    n_train = min(NB101_TRAIN, n - n_valid)
    n_eval = min(NB101_HOLDOUT, n_train // 4)
    n_test = min(NB101_HOLDOUT, test[0].shape[0])
    if n_valid < 1 or n_train < 1 or n_eval < 1 or n_test < 1:
        raise DataError(f"too few images to split: {n} training and {test[0].shape[0]} test images")
    return {
        "train": (images[:n_train], labels[:n_train]),
        "valid": (images[n - n_valid :], labels[n - n_valid :]),
        "test": (test[0][:n_test], test[1][:n_test]),
        "train_eval": (images[:n_eval], labels[:n_eval]),
    }


def as_tensors(arrays: dict[str, Arrays]) -> dict[str, Split]:
    """numpy splits -> contiguous torch tensors (uint8 images, int64 labels)."""
    import torch

    return {
        name: (torch.from_numpy(np.ascontiguousarray(images)),
               torch.from_numpy(np.ascontiguousarray(labels.astype(np.int64, copy=False))))
        for name, (images, labels) in arrays.items()
    }


class DataSet(ABC):
    """One entry of the registry. Subclasses are formats (CIFAR pickles, SVHN .mat, image
    folders); instances are data sets (CIFAR-10, CIFAR-100, SVHN, CINIC-10, a folder you bring).

    ``mean``/``std`` None: measured from the training split when it is read (a folder you bring).
    ``splits_doc``: each split's size with the reason for it, as docs/datasets.md states them.
    """

    name: str
    title: str
    classes: tuple[str, ...] | None
    mean: tuple[float, float, float] | None
    std: tuple[float, float, float] | None
    splits_doc: dict[str, str]
    image_size: int = IMAGE_SIZE
    # Where the data lives when nothing else says (a folder data set brought as folder:PATH).
    default_root: Path | None = None

    @property
    def num_classes(self) -> int:
        if self.classes is None:
            raise DataError(f"{self.name}: the classes are known once the data set is read")
        return len(self.classes)

    @abstractmethod
    def data_files(self, root: Path) -> list[str]:
        """The files this set reads, relative to ``root`` (what the fingerprint hashes)."""

    def missing(self, root: Path) -> list[str]:
        return [name for name in self.data_files(root) if not (root / name).is_file()]

    def file_digests(self, root: Path, digest: Callable[[Path], str]) -> dict[str, str]:
        """{file relative to root: SHA-256} of what this set reads (``digest`` hashes one file)."""
        return {name: digest(root / name) for name in self.data_files(root)}

    @abstractmethod
    def placement(self, root: Path) -> str:
        """One sentence: how to place the real files offline so that this set finds them in ``root``."""

    @abstractmethod
    def read(self, root: Path) -> dict[str, Arrays]:
        """The four splits as numpy arrays, checked (raises :class:`DataError`)."""

    def download(self, root: Path) -> None:
        """Fetch the real files into ``root`` (raises :class:`DataError`; the default: cannot)."""
        raise DataError(f"{self.title} has no downloader: {self.placement(root)}")

    @abstractmethod
    def write_synthetic(self, root: Path, *, images: int, seed: int) -> list[str]:
        """Write a small learnable stand-in in this set's exact on-disk format into ``root``;
        ``images`` per 10,000 of the real split sizes (256 -> 1,024 / 256 / 256 / 256). Returns
        the files written, relative to ``root``."""


def measured_statistics(images: np.ndarray) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Per-channel mean and standard deviation (population) of uint8 HWC images, 0-255 scale,
    rounded to 2 decimals as CIFAR-10's constants are (SPEC e.3)."""
    if images.shape[0] == 0:
        raise DataError("no training images to measure the normalisation statistics on")
    pixels = images.reshape(-1, 3).astype(np.float64)
    mean = pixels.mean(axis=0)
    std = pixels.std(axis=0)
    if np.any(std == 0):
        raise DataError("a colour channel is constant over the training images: cannot normalise")
    return (tuple(round(float(m), 2) for m in mean),  # type: ignore[return-value]
            tuple(round(float(s), 2) for s in std))


def class_balance(labels: Sequence[int] | np.ndarray, num_classes: int) -> list[int]:
    """Images per class (for ``nasfarm data check``)."""
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).tolist()
