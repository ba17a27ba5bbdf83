"""CIFAR-10 and CIFAR-100 in their python-pickle layouts: our own reader, torchvision's downloaders.

CIFAR-10 (``cifar-10-batches-py/``) keeps NAS-Bench-101's file-based splits (SPEC e.3): train =
data_batch_1..4 (40,000), valid = data_batch_5 (10,000), test = test_batch (10,000), train_eval =
data_batch_1. CIFAR-100 (``cifar-100-python/``) has one training file of 50,000 and one test file
of 10,000 and gets the same sizes (:func:`farm.datasets.base.holdout_splits`: the last 10,000
training images validate). Its label is the fine label (100 classes); the coarse label (20
superclasses) is checked but not used.

The reader never trusts the pickles further than it must: unpickling is restricted to the numpy
classes that the CIFAR files contain, and every shape, dtype and label is checked.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

from farm.datasets.base import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    Arrays,
    DataError,
    DataSet,
    check_images,
    holdout_splits,
)
from farm.datasets.layouts import (
    CIFAR10_CLASSES,
    CIFAR10_DIR,
    CIFAR10_FILES,
    CIFAR10_TEST_FILE,
    CIFAR10_TRAIN_FILES,
    CIFAR10_VALID_FILE,
    CIFAR100_CLASSES,
    CIFAR100_COARSE_CLASSES,
    CIFAR100_DIR,
    CIFAR100_FILES,
    IMAGE_BYTES,
)

CIFAR10_PLACEMENT = (
    "Place CIFAR-10 offline by unpacking cifar-10-python.tar.gz "
    "(https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz) so that "
    "'{root}/cifar-10-batches-py/data_batch_1' exists"
)

# Per-channel mean and standard deviation of all pixels of the 50,000 training images, RGB, 0-255
# scale -- the convention of CIFAR-10's constants (SPEC e.3). The widely published values
# (0.50707516, 0.48654887, 0.44091784) and (0.26733429, 0.25643846, 0.27615047) times 255.
CIFAR100_MEAN = (129.30, 124.07, 112.43)
CIFAR100_STD = (68.17, 65.39, 70.42)
CIFAR100_PLACEMENT = (
    "Place CIFAR-100 offline by unpacking cifar-100-python.tar.gz "
    "(https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz) so that "
    "'{root}/cifar-100-python/train' exists"
)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays, nothing that could run code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        # Protocol-2 pickles written by Python 3 (our synthetic sets) encode bytes through it.
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")


def read_pickle(path: Path, title: str, placement: str) -> dict[str, object]:
    """One CIFAR pickle (written by Python 2: bytes keys) -> a dict with str keys."""
    if not path.is_file():
        raise DataError(f"missing {title} file {path}. {placement}.")
    try:
        with path.open("rb") as handle:
            entry = _NumpyOnlyUnpickler(io.BytesIO(handle.read()), encoding="bytes").load()
    except Exception as exc:  # any unreadable pickle is the same user problem
        raise DataError(
            f"{path} is not a {title} python batch ({type(exc).__name__}: {exc}). {placement}."
        ) from exc
    if not isinstance(entry, dict):
        raise DataError(f"{path}: expected a dict, found {type(entry).__name__}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in entry.items()}


def decode_rows(path: Path, data: object) -> np.ndarray:
    """Channel-major rows R(1024) G(1024) B(1024) -> uint8 [N, 32, 32, 3], as the original decodes them."""
    rows = np.asarray(data)
    if rows.dtype != np.uint8 or rows.ndim != 2 or rows.shape[1] != IMAGE_BYTES:
        raise DataError(
            f"{path}: 'data' must be uint8 of shape [N, {IMAGE_BYTES}], got {rows.dtype} {rows.shape}"
        )
    return np.ascontiguousarray(rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def _labels(path: Path, entry: dict[str, object], key: str, count: int, num_classes: int) -> np.ndarray:
    if key not in entry:
        raise DataError(f"{path}: missing '{key}' (keys: {sorted(entry)})")
    labels = np.asarray(entry[key])
    if labels.ndim != 1 or labels.shape[0] != count:
        raise DataError(f"{path}: {labels.shape[0] if labels.ndim == 1 else labels.shape} {key} "
                        f"for {count} images")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{path}: {key} must lie in 0..{num_classes - 1}")
    return labels.astype(np.int64)


def _torchvision_download(kind: str, root: Path, title: str, placement: str) -> None:
    """Download and unpack with torchvision's downloader (it verifies the archive's MD5)."""
    try:
        from torchvision import datasets

        getattr(datasets, kind)(root=str(root), train=True, download=True)
    except Exception as exc:  # network down, checksum mismatch, disk full: all the same to the user
        raise DataError(
            f"could not download {title} into {root} ({type(exc).__name__}: {exc})"
        ) from exc


class Cifar10(DataSet):
    name = "cifar10"
    title = "CIFAR-10"
    classes = CIFAR10_CLASSES
    mean = CIFAR10_MEAN
    std = CIFAR10_STD
    splits_doc = {
        "train": "40,000: data_batch_1..4, NAS-Bench-101's training set (SPEC e.3)",
        "valid": "10,000: data_batch_5, held out from training as NAS-Bench-101's validation set",
        "test": "10,000: test_batch, the official test set",
        "train_eval": "10,000: data_batch_1, where NAS-Bench-101 measures training accuracy",
    }

    def data_files(self, root: Path) -> list[str]:
        return [f"{CIFAR10_DIR}/{name}" for name in CIFAR10_FILES]

    def placement(self, root: Path) -> str:
        return CIFAR10_PLACEMENT.format(root=root)

    def _read_batch(self, path: Path) -> Arrays:
        entry = read_pickle(path, self.title, self.placement(path.parent.parent))
        if "data" not in entry or "labels" not in entry:
            raise DataError(f"{path}: missing 'data' or 'labels' (keys: {sorted(entry)})")
        data = np.asarray(entry["data"])
        labels = np.asarray(entry["labels"])
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != IMAGE_BYTES:
            raise DataError(
                f"{path}: 'data' must be uint8 of shape [N, {IMAGE_BYTES}], got {data.dtype} {data.shape}"
            )
        if labels.ndim != 1 or labels.shape[0] != data.shape[0]:
            raise DataError(
                f"{path}: {labels.shape[0] if labels.ndim == 1 else labels.shape} labels "
                f"for {data.shape[0]} images"
            )
        if labels.size and (labels.min() < 0 or labels.max() >= len(CIFAR10_CLASSES)):
            raise DataError(f"{path}: labels must lie in 0..{len(CIFAR10_CLASSES) - 1}")
        return decode_rows(path, data), labels.astype(np.int64)

    def read(self, root: Path) -> dict[str, Arrays]:
        folder = root / CIFAR10_DIR
        parts = [self._read_batch(folder / name) for name in CIFAR10_TRAIN_FILES]
        train = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
        first = len(parts[0][1])
        return {
            "train": train,
            "valid": self._read_batch(folder / CIFAR10_VALID_FILE),
            "test": self._read_batch(folder / CIFAR10_TEST_FILE),
            # data_batch_1 is the first quarter of train: a view, not a copy.
            "train_eval": (train[0][:first], train[1][:first]),
        }

    def download(self, root: Path) -> None:
        _torchvision_download("CIFAR10", root, self.title, self.placement(root))

    def write_synthetic(self, root: Path, *, images: int, seed: int) -> list[str]:
        from farm.datasets.synthetic import write_cifar10

        return write_cifar10(root, images_per_batch=images, seed=seed)


class Cifar100(DataSet):
    name = "cifar100"
    title = "CIFAR-100"
    # The names live in the meta file; only their count matters here.
    classes = tuple(f"class{i:02d}" for i in range(CIFAR100_CLASSES))
    mean = CIFAR100_MEAN
    std = CIFAR100_STD
    splits_doc = {
        "train": "40,000: the first 40,000 images of 'train', NAS-Bench-101's training-set size "
                 "(an epoch stays 156.25 steps of 256, so a budget costs what it costs on CIFAR-10)",
        "valid": "10,000: the last 10,000 images of 'train', held out (CIFAR-10's data_batch_5 "
                 "plays this part; CIFAR-100 has no separate validation file)",
        "test": "10,000: 'test', the official test set",
        "train_eval": "10,000: the first 10,000 training images, as data_batch_1 for CIFAR-10",
    }

    def data_files(self, root: Path) -> list[str]:
        return [f"{CIFAR100_DIR}/{name}" for name in CIFAR100_FILES]

    def placement(self, root: Path) -> str:
        return CIFAR100_PLACEMENT.format(root=root)

    def _read_file(self, path: Path) -> Arrays:
        entry = read_pickle(path, self.title, self.placement(path.parent.parent))
        if "data" not in entry:
            raise DataError(f"{path}: missing 'data' (keys: {sorted(entry)})")
        images = decode_rows(path, entry["data"])
        fine = _labels(path, entry, "fine_labels", images.shape[0], CIFAR100_CLASSES)
        _labels(path, entry, "coarse_labels", images.shape[0], CIFAR100_COARSE_CLASSES)
        check_images(str(path), images, fine, CIFAR100_CLASSES)
        return images, fine

    def read(self, root: Path) -> dict[str, Arrays]:
        folder = root / CIFAR100_DIR
        return holdout_splits(self._read_file(folder / "train"), self._read_file(folder / "test"))

    def download(self, root: Path) -> None:
        _torchvision_download("CIFAR100", root, self.title, self.placement(root))

    def write_synthetic(self, root: Path, *, images: int, seed: int) -> list[str]:
        from farm.datasets.synthetic import write_cifar100

        return write_cifar100(root, images=images, seed=seed)
