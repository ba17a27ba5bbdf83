"""Synthetic stand-ins in each real on-disk format: learnable, not trivial, and marked as synthetic.

Every writer produces the exact layout its reader expects (CIFAR-10 and CIFAR-100 pickles, SVHN
MATLAB files, a folder of PNGs), so the real reading code runs in CI and in a demo without the
real files. Images: per class a base colour and a flip-symmetric texture (stripes or rings), under
colour jitter and pixel noise. ``images`` scales every file against the real sizes per 10,000
(256 -> a 1,024 / 256 / 256 / 256 split), which the smoke profile (512 training, 256 evaluation
images) fits.

:func:`write_marker` records what was written in ``NASFARM-SYNTHETIC.json`` beside the data (the
data set's root), with each file's SHA-256, so that a copy is known as synthetic wherever it is
placed -- and stops being so if its files are replaced by real ones.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from farm.datasets.layouts import (
    CIFAR10_CLASSES,
    CIFAR10_DIR,
    CIFAR10_META_FILE,
    CIFAR10_TEST_FILE,
    CIFAR10_TRAIN_FILES,
    CIFAR10_VALID_FILE,
    CIFAR100_CLASSES,
    CIFAR100_COARSE_CLASSES,
    CIFAR100_DIR,
    CIFAR100_META_FILE,
    IMAGE_BYTES,
    SVHN_TEST_FILE,
    SVHN_TRAIN_FILE,
)

MARKER = "NASFARM-SYNTHETIC.json"

# Difficulty knobs (0-255 scale). Class colours overlap heavily (the jitter is wider than their
# spread), so colour alone is a weak cue (a nearest-mean-colour classifier gets ~28% on the
# CIFAR-10 stand-in with seed 0) and a model must find the texture under the pixel noise: the smoke
# profile reaches ~60-73% validation accuracy in 6 epochs there. Learnable, not trivial.
SYNTHETIC_COLOUR_RANGE = (90.0, 165.0)
SYNTHETIC_COLOUR_JITTER = 35.0
SYNTHETIC_TEXTURE_AMPLITUDE = (25.0, 45.0)
SYNTHETIC_PIXEL_NOISE = 30.0


def _class_patterns(rng: np.random.Generator, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per class: a base colour and a flip-symmetric texture (stripes or rings of some frequency).

    Frequencies cycle below 16 cycles per image (the 32-pixel Nyquist limit) for large class
    counts; for the first ten classes they are 2..5, as the CIFAR-10 stand-in has always drawn them.
    """
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32)
    colours = rng.uniform(*SYNTHETIC_COLOUR_RANGE, size=(num_classes, 3)).astype(np.float32)
    textures = np.empty((num_classes, 32, 32), dtype=np.float32)
    for c in range(num_classes):
        kind, freq = c % 3, 2 + (c // 3) % 14
        if kind == 0:  # horizontal stripes: unchanged by a horizontal flip
            textures[c] = np.sin(2 * np.pi * freq * yy / 32)
        elif kind == 1:  # vertical stripes, symmetric about the centre column
            textures[c] = np.cos(2 * np.pi * freq * (xx - 15.5) / 32)
        else:  # rings around the centre
            textures[c] = np.cos(2 * np.pi * freq * np.hypot(xx - 15.5, yy - 15.5) / 32)
    return colours, textures


def _images(rng: np.random.Generator, colours: np.ndarray, textures: np.ndarray,
            n: int) -> tuple[np.ndarray, np.ndarray]:
    """n images (uint8 HWC) with their labels."""
    labels = rng.integers(0, colours.shape[0], size=n)
    colour = colours[labels] + rng.normal(0, SYNTHETIC_COLOUR_JITTER, size=(n, 3))
    amplitude = rng.uniform(*SYNTHETIC_TEXTURE_AMPLITUDE, size=(n, 1, 1))
    shift = rng.integers(-3, 4, size=(n, 2))
    texture = np.stack(
        [np.roll(textures[y], tuple(s), axis=(0, 1)) for y, s in zip(labels, shift, strict=True)]
    )
    images = colour[:, None, None, :] + (amplitude * texture)[..., None]
    images = images + rng.normal(0, SYNTHETIC_PIXEL_NOISE, size=images.shape)
    return np.clip(np.rint(images), 0, 255).astype(np.uint8), labels


def _rows(hwc: np.ndarray) -> np.ndarray:
    """uint8 HWC images -> CIFAR's channel-major rows."""
    return np.ascontiguousarray(hwc.transpose(0, 3, 1, 2).reshape(hwc.shape[0], IMAGE_BYTES))


def _check_size(images: int) -> None:
    if images < 1:
        raise ValueError("images must be at least 1")


def _dump(path: Path, entry: dict[bytes, Any]) -> None:
    with path.open("wb") as handle:
        pickle.dump(entry, handle, protocol=2)


def write_cifar10(out_dir: str | Path, *, images_per_batch: int = 256, seed: int = 0) -> list[str]:
    """``<out_dir>/cifar-10-batches-py/*``: 6 batch files of ``images_per_batch`` and batches.meta."""
    _check_size(images_per_batch)
    folder = Path(out_dir) / CIFAR10_DIR
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    colours, textures = _class_patterns(rng, len(CIFAR10_CLASSES))
    names = [*CIFAR10_TRAIN_FILES, CIFAR10_VALID_FILE, CIFAR10_TEST_FILE]
    for name in names:
        hwc, labels = _images(rng, colours, textures, images_per_batch)
        testing = name == CIFAR10_TEST_FILE
        batch_label = "testing batch 1 of 1" if testing else f"training batch {name[-1]} of 5"
        _dump(folder / name, {
            b"batch_label": batch_label.encode(),
            b"labels": [int(x) for x in labels],
            b"data": _rows(hwc),
            b"filenames": [f"synthetic_{name}_{i:05d}.png".encode() for i in range(images_per_batch)],
        })
    _dump(folder / CIFAR10_META_FILE, {
        b"label_names": [name.encode() for name in CIFAR10_CLASSES],
        b"num_cases_per_batch": images_per_batch,
        b"num_vis": IMAGE_BYTES,
    })
    return [f"{CIFAR10_DIR}/{name}" for name in [*names, CIFAR10_META_FILE]]


def write_cifar100(out_dir: str | Path, *, images: int = 256, seed: int = 0) -> list[str]:
    """``<out_dir>/cifar-100-python/{train,test,meta}``: 5x``images`` training and ``images`` test
    images with fine (100) and coarse (20) labels, in CIFAR-100's pickle layout."""
    _check_size(images)
    folder = Path(out_dir) / CIFAR100_DIR
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    colours, textures = _class_patterns(rng, CIFAR100_CLASSES)
    per_coarse = CIFAR100_CLASSES // CIFAR100_COARSE_CLASSES
    for name, count in (("train", 5 * images), ("test", images)):
        hwc, fine = _images(rng, colours, textures, count)
        _dump(folder / name, {
            b"filenames": [f"synthetic_{name}_{i:05d}.png".encode() for i in range(count)],
            b"batch_label": f"{'training' if name == 'train' else 'testing'} batch 1 of 1".encode(),
            b"fine_labels": [int(x) for x in fine],
            b"coarse_labels": [int(x) // per_coarse for x in fine],
            b"data": _rows(hwc),
        })
    _dump(folder / CIFAR100_META_FILE, {
        b"fine_label_names": [f"class{i:02d}".encode() for i in range(CIFAR100_CLASSES)],
        b"coarse_label_names": [f"superclass{i:02d}".encode() for i in range(CIFAR100_COARSE_CLASSES)],
    })
    return [f"{CIFAR100_DIR}/{name}" for name in ("train", "test", CIFAR100_META_FILE)]


def write_svhn(out_dir: str | Path, *, images: int = 256, seed: int = 0) -> list[str]:
    """``<out_dir>/{train,test}_32x32.mat`` in SVHN's MATLAB layout: ``X`` uint8 [32,32,3,N],
    ``y`` [N,1] with 10 for the digit 0."""
    import scipy.io

    _check_size(images)
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    colours, textures = _class_patterns(rng, 10)
    for name, count in ((SVHN_TRAIN_FILE, 5 * images), (SVHN_TEST_FILE, images)):
        hwc, digits = _images(rng, colours, textures, count)
        y = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(-1, 1)
        scipy.io.savemat(str(root / name), {"X": np.ascontiguousarray(hwc.transpose(1, 2, 3, 0)), "y": y})
    return [SVHN_TRAIN_FILE, SVHN_TEST_FILE]


def write_image_folder(out_dir: str | Path, *, classes: Sequence[str], images: int = 256,
                       seed: int = 0) -> list[str]:
    """``<out_dir>/{train,valid,test}/<class>/<n>.png``: 4x``images`` training, ``images`` valid
    and ``images`` test PNGs (32x32 RGB)."""
    from PIL import Image

    _check_size(images)
    root = Path(out_dir)
    rng = np.random.default_rng(seed)
    colours, textures = _class_patterns(rng, len(classes))
    written = []
    for split, count in (("train", 4 * images), ("valid", images), ("test", images)):
        hwc, labels = _images(rng, colours, textures, count)
        for name in classes:
            (root / split / name).mkdir(parents=True, exist_ok=True)
        for i, (image, label) in enumerate(zip(hwc, labels, strict=True)):
            relative = f"{split}/{classes[int(label)]}/{split}_{i:05d}.png"
            Image.fromarray(image, mode="RGB").save(root / relative)
            written.append(relative)
    return written


def write_marker(root: str | Path, dataset: str, digests: dict[str, str], **settings: Any) -> Path:
    """Record in ``root/NASFARM-SYNTHETIC.json`` that ``dataset`` there is synthetic, with the
    digests of its files (one marker per root; it names every synthetic set written there)."""
    path = Path(root) / MARKER
    content = read_marker(path.parent) or {"written_by": "nasfarm data synthetic", "datasets": {}}
    content["datasets"][dataset] = {"files": dict(sorted(digests.items())), **settings}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(content, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def read_marker(root: str | Path) -> dict[str, Any] | None:
    """The marker's content, or None (absent or unreadable: then nothing is known synthetic)."""
    try:
        content = json.loads((Path(root) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return content if isinstance(content, dict) and isinstance(content.get("datasets"), dict) else None
