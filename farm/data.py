"""CIFAR-10 in its python-pickle layout: our own reader, a torchvision download, a synthetic writer.

The splits are NAS-Bench-101's (SPEC e.3): train = data_batch_1..4 (40,000 images), valid =
data_batch_5, test = test_batch, and train_eval = data_batch_1 (training accuracy is measured on the
first training file only). Images stay uint8 HWC here; augmentation and normalisation happen in
batches on the training device (``farm.augment``).

The reader never trusts the pickles further than it must: unpickling is restricted to the numpy
classes that the CIFAR-10 files contain, and every shape, dtype and label is checked.
"""

from __future__ import annotations

import io
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

BATCHES_DIR = "cifar-10-batches-py"
TRAIN_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4")
VALID_FILE = "data_batch_5"
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
REQUIRED_FILES = (*TRAIN_FILES, VALID_FILE, TEST_FILE)
LABEL_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
NUM_CLASSES = len(LABEL_NAMES)
IMAGE_BYTES = 3 * 32 * 32

HOW_TO_PLACE = (
    "Place CIFAR-10 offline by unpacking cifar-10-python.tar.gz "
    "(https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz) so that "
    "'{root}/cifar-10-batches-py/data_batch_1' exists, or let nasfarm download it "
    "(nasfarm data check --download), or point --data-dir / NASFARM_DATA_DIR at a placed copy."
)


class DataError(Exception):
    """The dataset is missing or malformed; the message says what and how to place CIFAR-10."""


Split = tuple[torch.Tensor, torch.Tensor]  # (uint8 [N,32,32,3] HWC images, int64 [N] labels)


@dataclass
class CifarSplits:
    train: Split
    valid: Split
    test: Split
    train_eval: Split

    def sizes(self) -> dict[str, int]:
        names = ("train", "valid", "test", "train_eval")
        return {name: int(getattr(self, name)[1].numel()) for name in names}


def default_data_dir() -> Path:
    """NASFARM_DATA_DIR, else <XDG cache or ~/.cache>/nasfarm/cifar10."""
    explicit = os.environ.get("NASFARM_DATA_DIR")
    if explicit:
        return Path(explicit).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "nasfarm" / "cifar10"


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays, nothing that could run code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        # Protocol-2 pickles written by Python 3 (our synthetic set) encode bytes through it.
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 batch file -> (uint8 [N,32,32,3], int64 [N]), checked."""
    root = path.parent.parent
    if not path.is_file():
        raise DataError(f"missing CIFAR-10 file {path}. " + HOW_TO_PLACE.format(root=root))
    try:
        with path.open("rb") as handle:
            # The files were pickled by Python 2: keys are bytes under encoding="bytes".
            entry = _NumpyOnlyUnpickler(io.BytesIO(handle.read()), encoding="bytes").load()
    except Exception as exc:  # any unreadable pickle is the same user problem
        raise DataError(
            f"{path} is not a CIFAR-10 python batch ({type(exc).__name__}: {exc}). "
            + HOW_TO_PLACE.format(root=root)
        ) from exc
    if not isinstance(entry, dict):
        raise DataError(f"{path}: expected a dict, found {type(entry).__name__}")
    entry = {k.decode() if isinstance(k, bytes) else k: v for k, v in entry.items()}
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
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DataError(f"{path}: labels must lie in 0..{NUM_CLASSES - 1}")
    # Channel-major bytes R(1024) G(1024) B(1024) -> [N, 32, 32, 3], as the original decodes them.
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int64)


def _split(parts: list[tuple[np.ndarray, np.ndarray]]) -> Split:
    images = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
    labels = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
    return torch.from_numpy(images), torch.from_numpy(labels)


def missing_files(data_dir: str | Path) -> list[str]:
    folder = Path(data_dir) / BATCHES_DIR
    return [name for name in REQUIRED_FILES if not (folder / name).is_file()]


def download_cifar10(data_dir: str | Path) -> None:
    """Download and unpack CIFAR-10 with torchvision (it verifies the archive's MD5)."""
    try:
        from torchvision.datasets import CIFAR10

        CIFAR10(root=str(data_dir), train=True, download=True)
    except Exception as exc:  # network down, checksum mismatch, disk full: all the same to the user
        raise DataError(
            f"could not download CIFAR-10 into {data_dir} ({type(exc).__name__}: {exc}). "
            + HOW_TO_PLACE.format(root=data_dir)
        ) from exc


def load_cifar10(data_dir: str | Path, *, download: bool = False) -> CifarSplits:
    """Read ``<data_dir>/cifar-10-batches-py/`` into NAS-Bench-101's four splits."""
    data_dir = Path(data_dir).expanduser()
    missing = missing_files(data_dir)
    if missing and download:
        download_cifar10(data_dir)
        missing = missing_files(data_dir)
    if missing:
        raise DataError(
            f"CIFAR-10 not found in {data_dir / BATCHES_DIR} (missing: {', '.join(missing)}). "
            + HOW_TO_PLACE.format(root=data_dir)
        )
    folder = data_dir / BATCHES_DIR
    train_parts = [_read_batch(folder / name) for name in TRAIN_FILES]
    train = _split(train_parts)
    return CifarSplits(
        train=train,
        valid=_split([_read_batch(folder / VALID_FILE)]),
        test=_split([_read_batch(folder / TEST_FILE)]),
        # data_batch_1 is the first quarter of train; share its memory instead of a copy.
        train_eval=(train[0][: len(train_parts[0][1])], train[1][: len(train_parts[0][1])]),
    )


# ---------------------------------------------------------------------------------------------
# Synthetic data: learnable, not trivial, in the exact CIFAR-10 layout.


# Difficulty knobs of the synthetic set (0-255 scale). Class colours overlap heavily (the jitter
# is wider than their spread), so colour alone is a weak cue (a nearest-mean-colour classifier gets
# ~28% with seed 0) and a model must find the texture under the pixel noise: the smoke profile
# reaches ~60-73% validation accuracy in 6 epochs. Learnable, not trivial.
SYNTHETIC_COLOUR_RANGE = (90.0, 165.0)
SYNTHETIC_COLOUR_JITTER = 35.0
SYNTHETIC_TEXTURE_AMPLITUDE = (25.0, 45.0)
SYNTHETIC_PIXEL_NOISE = 30.0


def _class_patterns(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per class: a base colour and a flip-symmetric texture (stripes or rings of some frequency)."""
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32)
    colours = rng.uniform(*SYNTHETIC_COLOUR_RANGE, size=(NUM_CLASSES, 3)).astype(np.float32)
    textures = np.empty((NUM_CLASSES, 32, 32), dtype=np.float32)
    for c in range(NUM_CLASSES):
        kind, freq = c % 3, 2 + c // 3
        if kind == 0:  # horizontal stripes: unchanged by a horizontal flip
            textures[c] = np.sin(2 * np.pi * freq * yy / 32)
        elif kind == 1:  # vertical stripes, symmetric about the centre column
            textures[c] = np.cos(2 * np.pi * freq * (xx - 15.5) / 32)
        else:  # rings around the centre
            textures[c] = np.cos(2 * np.pi * freq * np.hypot(xx - 15.5, yy - 15.5) / 32)
    return colours, textures


def _synthetic_batch(
    rng: np.random.Generator, colours: np.ndarray, textures: np.ndarray, n: int
) -> tuple[np.ndarray, list[int]]:
    labels = rng.integers(0, NUM_CLASSES, size=n)
    colour = colours[labels] + rng.normal(0, SYNTHETIC_COLOUR_JITTER, size=(n, 3))
    amplitude = rng.uniform(*SYNTHETIC_TEXTURE_AMPLITUDE, size=(n, 1, 1))
    shift = rng.integers(-3, 4, size=(n, 2))
    texture = np.stack(
        [np.roll(textures[y], tuple(s), axis=(0, 1)) for y, s in zip(labels, shift, strict=True)]
    )
    images = colour[:, None, None, :] + (amplitude * texture)[..., None]
    images = images + rng.normal(0, SYNTHETIC_PIXEL_NOISE, size=images.shape)
    hwc = np.clip(np.rint(images), 0, 255).astype(np.uint8)
    data = hwc.transpose(0, 3, 1, 2).reshape(n, IMAGE_BYTES)  # back to channel-major rows
    return np.ascontiguousarray(data), [int(x) for x in labels]


def write_synthetic_cifar10(out_dir: str | Path, *, images_per_batch: int = 256, seed: int = 0) -> Path:
    """Write a small learnable dataset as ``<out_dir>/cifar-10-batches-py/*``; returns out_dir."""
    if images_per_batch < 1:
        raise ValueError("images_per_batch must be at least 1")
    out_dir = Path(out_dir)
    folder = out_dir / BATCHES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    colours, textures = _class_patterns(rng)
    names = [*TRAIN_FILES, VALID_FILE, TEST_FILE]
    for name in names:
        data, labels = _synthetic_batch(rng, colours, textures, images_per_batch)
        batch_label = "testing batch 1 of 1" if name == TEST_FILE else f"training batch {name[-1]} of 5"
        entry = {
            b"batch_label": batch_label.encode(),
            b"labels": labels,
            b"data": data,
            b"filenames": [f"synthetic_{name}_{i:05d}.png".encode() for i in range(images_per_batch)],
        }
        with (folder / name).open("wb") as handle:
            pickle.dump(entry, handle, protocol=2)
    meta = {
        b"label_names": [name.encode() for name in LABEL_NAMES],
        b"num_cases_per_batch": images_per_batch,
        b"num_vis": IMAGE_BYTES,
    }
    with (folder / META_FILE).open("wb") as handle:
        pickle.dump(meta, handle, protocol=2)
    return out_dir
