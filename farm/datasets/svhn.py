"""SVHN (the cropped 32x32 digits, "format 2") as its MATLAB files, read with ``scipy.io.loadmat``.

``train_32x32.mat`` (73,257 digits) and ``test_32x32.mat`` (26,032) each hold ``X``, uint8
``[32, 32, 3, N]``, and ``y``, ``[N, 1]`` with the digit's label 1..10 where 10 means the digit 0;
the label used here is the digit (10 -> 0), as torchvision maps it. ``extra_32x32.mat`` (531,131
easier digits) is not used. Splits: NAS-Bench-101's sizes (:func:`farm.datasets.base.holdout_splits`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from farm.datasets.base import Arrays, DataError, DataSet, check_images, holdout_splits
from farm.datasets.layouts import SVHN_TEST_FILE as TEST_FILE
from farm.datasets.layouts import SVHN_TRAIN_FILE as TRAIN_FILE

# Per-channel mean and standard deviation of the 73,257 training digits, RGB, 0-255 scale (the
# widely published (0.4377, 0.4438, 0.4728) and (0.1980, 0.2010, 0.1970) times 255).
SVHN_MEAN = (111.61, 113.17, 120.56)
SVHN_STD = (50.49, 51.26, 50.24)


def read_mat(path: Path) -> Arrays:
    """One SVHN .mat file -> (uint8 [N,32,32,3], int64 [N] digits 0..9), checked."""
    import scipy.io

    try:
        content = scipy.io.loadmat(str(path))
    except Exception as exc:  # not a MATLAB file, truncated, ...: the same user problem
        raise DataError(f"{path} is not an SVHN .mat file ({type(exc).__name__}: {exc})") from exc
    if "X" not in content or "y" not in content:
        found = sorted(k for k in content if not k.startswith("__"))
        raise DataError(f"{path}: missing 'X' or 'y' (variables: {found})")
    x = np.asarray(content["X"])
    y = np.asarray(content["y"])
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.dtype != np.uint8:
        raise DataError(f"{path}: 'X' must be uint8 [32, 32, 3, N], got {x.dtype} {list(x.shape)}")
    y = y.reshape(-1)
    if y.size and not np.all(np.equal(np.mod(y, 1), 0)):
        raise DataError(f"{path}: 'y' must hold integer labels 1..10")
    digits = y.astype(np.int64)
    if digits.size and (digits.min() < 1 or digits.max() > 10):
        raise DataError(f"{path}: 'y' must lie in 1..10 (10 is the digit 0)")
    digits[digits == 10] = 0
    images = np.ascontiguousarray(x.transpose(3, 0, 1, 2))
    check_images(str(path), images, digits, 10)
    return images, digits


class Svhn(DataSet):
    name = "svhn"
    title = "SVHN"
    classes = tuple(str(d) for d in range(10))
    mean = SVHN_MEAN
    std = SVHN_STD
    splits_doc = {
        "train": "40,000: the first 40,000 digits of train_32x32.mat, NAS-Bench-101's training-set "
                 "size (the same steps per epoch, so a budget costs what it costs on CIFAR-10)",
        "valid": "10,000: the last 10,000 digits of train_32x32.mat, held out (SVHN has no "
                 "validation file; the 23,257 in between are not used)",
        "test": "10,000: the first 10,000 of test_32x32.mat's 26,032, NAS-Bench-101's evaluation "
                "size (accuracies stay multiples of 1/9,984)",
        "train_eval": "10,000: the first 10,000 training digits, as data_batch_1 for CIFAR-10",
    }

    def data_files(self, root: Path) -> list[str]:
        return [TRAIN_FILE, TEST_FILE]

    def placement(self, root: Path) -> str:
        return ("Place SVHN offline by downloading train_32x32.mat and test_32x32.mat from "
                f"http://ufldl.stanford.edu/housenumbers/ so that '{root}/{TRAIN_FILE}' exists")

    def read(self, root: Path) -> dict[str, Arrays]:
        return holdout_splits(read_mat(root / TRAIN_FILE), read_mat(root / TEST_FILE))

    def download(self, root: Path) -> None:
        """torchvision's downloader (it checks each file's MD5)."""
        try:
            from torchvision.datasets import SVHN

            for split in ("train", "test"):
                SVHN(root=str(root), split=split, download=True)
        except Exception as exc:
            raise DataError(f"could not download SVHN into {root} ({type(exc).__name__}: {exc})") from exc

    def write_synthetic(self, root: Path, *, images: int, seed: int) -> list[str]:
        from farm.datasets.synthetic import write_svhn

        return write_svhn(root, images=images, seed=seed)
