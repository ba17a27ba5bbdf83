"""The data-set registry: CIFAR-10 (NAS-Bench-101's), CIFAR-100, SVHN, CINIC-10 and folders you bring.

``get_dataset(name)`` gives an entry (:class:`DataSet`: files, downloader, reader, splits,
normalisation, classes, image size); ``load_dataset(name, data_dir)`` reads a copy into
:class:`Splits` (the four splits, the statistics training normalises with, the class count and the
copy's fingerprint). ``folder:PATH`` names a folder of class folders of 32x32 PNGs anywhere.
:func:`fit_config` gives a training profile the data set's head (its number of classes); nothing
else of a profile depends on the data set, and a cell's hash never does.

Adding a data set of 32x32 images in class folders is one :class:`ImageFolder` entry in
``REGISTRY`` below (CINIC-10 is the worked example; docs/datasets.md walks through it).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from farm.config import TrainConfig
from farm.datasets.base import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    IMAGE_SIZE,
    SPLITS,
    DataError,
    DataSet,
    Split,
    Splits,
    as_tensors,
    measured_statistics,
)
from farm.datasets.cifar import Cifar10, Cifar100
from farm.datasets.fingerprint import differences, fingerprint
from farm.datasets.folder import ImageFolder, folder_dataset
from farm.datasets.locations import locate, remember
from farm.datasets.svhn import Svhn
from farm.datasets.synthetic import write_marker

__all__ = [
    "CIFAR10_MEAN", "CIFAR10_STD", "DEFAULT_DATASET", "IMAGE_SIZE", "REGISTRY", "SPLITS", "DataError",
    "DataSet", "ImageFolder", "Split", "Splits", "data_dir", "differences", "fingerprint", "fit_config",
    "get_dataset", "load_dataset", "offline_help", "write_synthetic",
]

DEFAULT_DATASET = "cifar10"

# CINIC-10 (https://github.com/BayesWatch/cinic-10): CIFAR-10's classes, 270,000 32x32 PNGs (CIFAR-10
# plus downsampled ImageNet) in train/ valid/ test/ class folders of 90,000 each. The example of a
# folder data set: this entry is all it takes. Statistics: the authors' published mean and std
# (0.47889522, 0.47227842, 0.43047404) and (0.24205776, 0.23828046, 0.25874835), times 255.
CINIC10 = ImageFolder(
    name="cinic10",
    title="CINIC-10",
    classes=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    mean=(122.12, 120.43, 109.77),
    std=(61.72, 60.76, 65.98),
    url="https://datashare.ed.ac.uk/bitstream/handle/10283/3192/CINIC-10.tar.gz",
    about="https://github.com/BayesWatch/cinic-10",
)

REGISTRY: dict[str, DataSet] = {entry.name: entry for entry in (Cifar10(), Cifar100(), Svhn(), CINIC10)}


def get_dataset(name: str) -> DataSet:
    """The registry entry ``name``, or ``folder:PATH`` for a folder data set you bring."""
    if name.startswith("folder:"):
        path = name.split(":", 1)[1]
        if not path:
            raise DataError("folder: needs a path, e.g. folder:/data/my-set")
        return folder_dataset(path)
    try:
        return REGISTRY[name]
    except KeyError:
        raise DataError(f"unknown data set {name!r}; choose one of {', '.join(REGISTRY)} "
                        "or folder:PATH") from None


def data_dir(dataset: DataSet | str, flag: str | Path | None = None) -> Path:
    """Where ``dataset`` is read from (see :mod:`farm.datasets.locations` for the precedence)."""
    entry = get_dataset(dataset) if isinstance(dataset, str) else dataset
    return locate(entry.name, flag, own_root=entry.default_root)[0]


def offline_help(dataset: DataSet, root: Path) -> str:
    """What to do when the data set is not at ``root`` and cannot be downloaded."""
    return (f"To try nasfarm without it, `nasfarm data synthetic --dataset {dataset.name} {root}` "
            f"writes a small synthetic stand-in (marked as synthetic). {dataset.placement(root)}, "
            f"then pass --data-dir {root} or set NASFARM_DATA_DIR (`nasfarm data check --dataset "
            f"{dataset.name} --data-dir {root}` remembers the place).")


def load_dataset(dataset: DataSet | str = DEFAULT_DATASET, data_dir: str | Path | None = None, *,
                 download: bool = False) -> Splits:
    """Read a copy of ``dataset`` (from ``data_dir``, else where it lives) into :class:`Splits`.

    ``download``: fetch it first when files are missing (torchvision's downloaders); a successful
    download is remembered in the per-user config. Raises :class:`DataError` naming what is wrong
    and how to place the files (or write a synthetic stand-in).
    """
    entry = get_dataset(dataset) if isinstance(dataset, str) else dataset
    root = locate(entry.name, data_dir, own_root=entry.default_root)[0]
    missing = entry.missing(root)
    if missing and download:
        try:
            entry.download(root)
        except DataError as exc:
            raise DataError(f"{exc}. {offline_help(entry, root)}") from exc
        missing = entry.missing(root)
        if not missing:
            remember(entry.name, root)
    if missing:
        where, names = _missing_phrase(root, missing)
        raise DataError(
            f"{entry.title} not found in {where} (missing: {', '.join(names)}). "
            + ("" if download else "Let nasfarm download it (--download), or place it. ")
            + offline_help(entry, root)
        )
    arrays = entry.read(root)
    images, _ = arrays["train"]
    if entry.mean is not None and entry.std is not None:
        mean, std = entry.mean, entry.std
    else:
        mean, std = measured_statistics(images)
    num_classes = entry.num_classes if entry.classes is not None else len(entry.class_folders(root))
    tensors = as_tensors(arrays)
    sizes = {name: int(tensors[name][1].numel()) for name in SPLITS}
    return Splits(**tensors, dataset=entry.name, num_classes=num_classes, mean=tuple(mean),
                  std=tuple(std), fingerprint=fingerprint(entry, root, sizes))


def _missing_phrase(root: Path, missing: list[str]) -> tuple[Path, list[str]]:
    """(folder, names): the missing files named within the one folder they share, if they do
    (CIFAR-10: '<root>/cifar-10-batches-py' missing 'test_batch')."""
    parents = {str(Path(name).parent) for name in missing}
    if len(parents) == 1 and "." not in parents:
        folder = parents.pop()
        return root / folder, [Path(name).name for name in missing]
    return root, missing


def write_synthetic(dataset: DataSet | str, out_dir: str | Path, *, images: int = 256,
                    seed: int = 0) -> Path:
    """Write ``dataset``'s synthetic stand-in into ``out_dir`` and mark it synthetic; returns out_dir."""
    from farm.datasets.fingerprint import file_sha256

    entry = get_dataset(dataset) if isinstance(dataset, str) else dataset
    root = Path(out_dir)
    entry.write_synthetic(root, images=images, seed=seed)
    write_marker(root, entry.name, entry.file_digests(root, file_sha256), images=images, seed=seed)
    return root


def fit_config(config: TrainConfig, dataset: DataSet | str | int) -> TrainConfig:
    """``config`` with the head of ``dataset`` (an entry, a name or a class count).

    Only ``num_labels`` changes: CIFAR-10 gives back an equal config, so its campaigns, checkpoints
    and results are exactly what they were.
    """
    if isinstance(dataset, int):
        classes = dataset
    else:
        classes = (get_dataset(dataset) if isinstance(dataset, str) else dataset).num_classes
    return config if config.num_labels == classes else replace(config, num_labels=classes)


def describe_entry(entry: DataSet) -> dict[str, Any]:
    """A registry entry as plain data (``nasfarm data list``, docs)."""
    return {"name": entry.name, "title": entry.title,
            "classes": entry.num_classes if entry.classes is not None else None,
            "image_size": entry.image_size, "mean": entry.mean, "std": entry.std,
            "splits": dict(entry.splits_doc)}
