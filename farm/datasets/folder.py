"""Image folders: ``ROOT/{train,valid,test}/<class>/*.png``, 32x32 images read with PIL.

The layout of CINIC-10 and of most hand-made sets (torchvision's ImageFolder, one folder per split).
Classes are the sub-folders of ``train/`` in sorted order (label = position); ``valid/`` and
``test/`` may lack a class but not add one. Within a split the images are ordered by the SHA-256 of
their path relative to the split (``<class>/<file>``): a fixed, class-mixed order that does not
depend on the file system's listing or on where the folder is, so that "the first N" (a profile
that trains on fewer images than the split has, the evaluation's first 9,984, train_eval) is a
fair sample of every class and the same on every machine.

Splits: the folders, whole; train_eval = the first min(10,000, train/4) training images in that
order (CIFAR-10's data_batch_1 plays this part). A profile uses the first ``train_images`` of train
and the first ``eval_images`` of each evaluation split (nb101: 40,000 and 9,984).

Images must be 32x32; any PIL mode is converted to RGB. The fingerprint hashes, per split, the list
of (relative path, SHA-256 of the file): one digest per split instead of one per image.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from farm.datasets.base import IMAGE_SIZE, NB101_HOLDOUT, Arrays, DataError, DataSet, check_images

SPLIT_FOLDERS = ("train", "valid", "test")
EXTENSIONS = (".png",)


def _order_key(relative: str) -> str:
    return hashlib.sha256(relative.encode()).hexdigest()


class ImageFolder(DataSet):
    """A data set of 32x32 PNGs in class folders (a registered one, or ``folder:PATH``).

    ``classes``/``mean``/``std`` None: the sub-folders of train/ and the statistics measured on the
    training images. ``url``: an archive that unpacks into ``train/ valid/ test/`` (None: placed by
    hand).
    """

    def __init__(self, *, name: str, title: str, classes: tuple[str, ...] | None = None,
                 mean: tuple[float, float, float] | None = None,
                 std: tuple[float, float, float] | None = None, url: str | None = None,
                 md5: str | None = None, about: str = "", default_root: Path | None = None) -> None:
        self.name = name
        self.title = title
        self.classes = classes
        self.mean = mean
        self.std = std
        self.url = url
        self.md5 = md5
        self.about = about
        self.default_root = default_root
        self.splits_doc = {
            "train": "the train/ folder, whole (a profile trains on its first train_images)",
            "valid": "the valid/ folder, whole (evaluated on its first eval_images)",
            "test": "the test/ folder, whole (evaluated on its first eval_images)",
            "train_eval": "the first min(10,000, train/4) training images, as data_batch_1 for CIFAR-10",
        }

    @property
    def num_classes(self) -> int:
        if self.classes is not None:
            return len(self.classes)
        if self.default_root is None:
            raise DataError(f"{self.name}: the classes are known once the data set is placed")
        return len(self.class_folders(self.default_root))

    def class_folders(self, root: Path) -> list[str]:
        train = root / "train"
        if not train.is_dir():
            raise DataError(f"{self.title}: no train/ folder in {root}. {self.placement(root)}.")
        found = sorted(p.name for p in train.iterdir() if p.is_dir())
        if not found:
            raise DataError(f"{train} has no class folders. {self.placement(root)}.")
        if self.classes is not None and found != sorted(self.classes):
            raise DataError(f"{train}: class folders {found} are not {self.title}'s {sorted(self.classes)}")
        return found

    def data_files(self, root: Path) -> list[str]:
        return [f"{split}/" for split in SPLIT_FOLDERS]

    def missing(self, root: Path) -> list[str]:
        return [f"{split}/" for split in SPLIT_FOLDERS if not (root / split).is_dir()]

    def placement(self, root: Path) -> str:
        source = f" from {self.url}" if self.url else ""
        return (f"Place {self.title}{source} so that '{root}/train/<class>/<image>.png' exists "
                "(and valid/ and test/ beside train/)")

    def images_of(self, root: Path, split: str) -> list[tuple[str, int]]:
        """(path relative to the split folder, label) of every image of ``split``, in read order."""
        classes = self.class_folders(root)
        label_of = {name: i for i, name in enumerate(classes)}
        folder = root / split
        listed = []
        for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
            if class_dir.name not in label_of:
                raise DataError(f"{class_dir}: class {class_dir.name!r} is not among train/'s {classes}")
            listed += [(f"{class_dir.name}/{f.name}", label_of[class_dir.name])
                       for f in class_dir.iterdir() if f.is_file() and f.suffix.lower() in EXTENSIONS]
        if not listed:
            raise DataError(f"{folder}: no {'/'.join(EXTENSIONS)} images in its class folders")
        return sorted(listed, key=lambda item: _order_key(item[0]))

    def _read_split(self, root: Path, split: str) -> Arrays:
        from PIL import Image

        listed = self.images_of(root, split)
        images = np.empty((len(listed), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
        for i, (relative, _) in enumerate(listed):
            path = root / split / relative
            try:
                with Image.open(path) as image:
                    rgb = np.asarray(image.convert("RGB"))
            except Exception as exc:  # a broken or non-image file: name it
                raise DataError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from exc
            if rgb.shape != (IMAGE_SIZE, IMAGE_SIZE, 3):
                raise DataError(f"{path}: {rgb.shape[1]}x{rgb.shape[0]} pixels; this network takes "
                                f"{IMAGE_SIZE}x{IMAGE_SIZE} images (resize them first)")
            images[i] = rgb
        labels = np.array([label for _, label in listed], dtype=np.int64)
        check_images(str(root / split), images, labels, len(self.class_folders(root)))
        return images, labels

    def read(self, root: Path) -> dict[str, Arrays]:
        arrays = {split: self._read_split(root, split) for split in SPLIT_FOLDERS}
        images, labels = arrays["train"]
        n_eval = min(NB101_HOLDOUT, max(1, images.shape[0] // 4))
        arrays["train_eval"] = (images[:n_eval], labels[:n_eval])
        return arrays

    def file_digests(self, root: Path, digest: Callable[[Path], str]) -> dict[str, str]:
        manifests = {}
        for split in SPLIT_FOLDERS:
            listed = self.images_of(root, split)
            lines = "".join(f"{rel}\t{digest(root / split / rel)}\n" for rel, _ in listed)
            manifests[f"{split}/"] = hashlib.sha256(lines.encode()).hexdigest()
        return manifests

    def download(self, root: Path) -> None:
        if self.url is None:
            super().download(root)
        try:
            from torchvision.datasets.utils import download_and_extract_archive

            download_and_extract_archive(self.url, download_root=str(root), md5=self.md5)
        except Exception as exc:
            raise DataError(f"could not download {self.title} into {root} "
                            f"({type(exc).__name__}: {exc}). {self.placement(root)}.") from exc

    def write_synthetic(self, root: Path, *, images: int, seed: int) -> list[str]:
        from farm.datasets.synthetic import write_image_folder

        return write_image_folder(root, classes=self.classes or tuple(f"class{i}" for i in range(10)),
                                  images=images, seed=seed)


def folder_dataset(path: str | Path) -> ImageFolder:
    """``folder:PATH``: a folder data set a user brings, read where it lies (``--data-dir``
    overrides); classes from its train/ folder, normalisation measured on its training images."""
    root = Path(path).expanduser().resolve()
    return ImageFolder(name=f"folder:{root}", title=f"the image folder {root}", default_root=root)
