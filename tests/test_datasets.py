"""The data-set registry: each real on-disk format read by its real reader (from a synthetic copy
written in that format), the splits, the head, normalisation, fingerprints, where data lives."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from farm.config import NB101, SMOKE
from farm.cost import trainable_parameters
from farm.datasets import (
    REGISTRY,
    DataError,
    data_dir,
    differences,
    fit_config,
    get_dataset,
    load_dataset,
    write_synthetic,
)
from farm.datasets.base import holdout_splits
from farm.datasets.fingerprint import file_sha256
from farm.datasets.locations import config_path, remember
from farm.model import meta_parameter_count
from farm.spec import Cell
from farm.train import BadInputError, TrainJob, train

INPUT_OUTPUT = Cell.from_any([[0, 1], [0, 0]], ["input", "output"])


# ---- the formats, read by the real readers ------------------------------------------------------


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_synthetic_set_reads_back_with_nb101_split_proportions(synthetic_sets, name):
    splits = load_dataset(name, synthetic_sets[name])
    assert splits.dataset == name
    # 256 images per 10,000 of the real sizes: 40,000 / 10,000 / 10,000 / 10,000 scaled.
    assert splits.sizes() == {"train": 1024, "valid": 256, "test": 256, "train_eval": 256}
    classes = {"cifar100": 100}.get(name, 10)
    assert splits.num_classes == classes
    for split in ("train", "valid", "test", "train_eval"):
        images, labels = getattr(splits, split)
        assert images.dtype == torch.uint8 and tuple(images.shape[1:]) == (32, 32, 3)
        assert labels.dtype == torch.int64 and int(labels.min()) >= 0 and int(labels.max()) < classes
    assert torch.equal(splits.train_eval[0], splits.train[0][:256])
    assert splits.fingerprint["synthetic"] is True


def test_cifar100_reads_fine_labels_and_checks_coarse_ones(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rows = np.zeros((10, 3072), np.uint8)
    rows[3, 0] = 255  # red at (0, 0) of image 3
    fine = list(range(90, 100))
    entry = {b"data": rows, b"fine_labels": fine, b"coarse_labels": [f // 5 for f in fine]}
    for name in ("train", "test"):
        with (folder / name).open("wb") as handle:
            pickle.dump(entry, handle, protocol=2)
    splits = load_dataset("cifar100", tmp_path)
    # 10 training images: the last 2 validate, the first 8 train (the n/5 holdout rule).
    assert splits.train[1].tolist() == fine[:8] and splits.valid[1].tolist() == fine[8:]
    assert splits.train[0][3, 0, 0].tolist() == [255, 0, 0]
    entry[b"coarse_labels"] = [25] * 10
    with (folder / "train").open("wb") as handle:
        pickle.dump(entry, handle, protocol=2)
    with pytest.raises(DataError, match="coarse_labels must lie in 0..19"):
        load_dataset("cifar100", tmp_path)


def test_svhn_mat_layout_and_the_label_10_is_the_digit_0(tmp_path):
    x = np.zeros((32, 32, 3, 10), np.uint8)
    x[5, 7, 2, 4] = 200  # blue at row 5, column 7 of digit 4
    y = np.array([[10], [1], [2], [3], [4], [5], [6], [7], [8], [9]], np.uint8)
    scipy.io.savemat(str(tmp_path / "train_32x32.mat"), {"X": x, "y": y})
    scipy.io.savemat(str(tmp_path / "test_32x32.mat"), {"X": x[..., :3], "y": y[:3]})
    splits = load_dataset("svhn", tmp_path)
    assert splits.train[1].tolist() == list(range(8)) and splits.valid[1].tolist() == [8, 9]
    assert splits.test[1].tolist() == [0, 1, 2]
    assert splits.train[0][4, 5, 7].tolist() == [0, 0, 200]
    scipy.io.savemat(str(tmp_path / "test_32x32.mat"), {"X": x[..., :3], "y": np.array([[0], [1], [11]])})
    with pytest.raises(DataError, match="1..10"):
        load_dataset("svhn", tmp_path)


def test_holdout_splits_give_nas_bench_101_sizes_on_real_sized_files():
    # The real files' sizes (CIFAR-100: 50,000 + 10,000; SVHN: 73,257 + 26,032), without pixels.
    for n_train, n_test in ((50_000, 10_000), (73_257, 26_032)):
        train = (np.zeros((n_train, 1, 1, 1), np.uint8), np.arange(n_train))
        test = (np.zeros((n_test, 1, 1, 1), np.uint8), np.arange(n_test))
        splits = holdout_splits(train, test)
        assert {k: len(v[1]) for k, v in splits.items()} == {
            "train": 40_000, "valid": 10_000, "test": 10_000, "train_eval": 10_000}
        assert splits["valid"][1][0] == n_train - 10_000  # the last 10,000: never trained on
        assert splits["train"][1][-1] == 39_999


def _png_folder(root: Path, files: dict[str, np.ndarray]) -> None:
    from PIL import Image

    for relative, pixels in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(root / relative)


def test_a_folder_you_bring_orders_images_by_path_digest_and_measures_its_statistics(tmp_path):
    import hashlib

    grey = np.full((32, 32, 3), 100, np.uint8)
    files = {f"{split}/{cls}/{i}.png": grey + (40 if cls == "b" else 0)
             for split in ("train", "valid", "test") for cls in ("a", "b") for i in range(4)}
    _png_folder(tmp_path, files)
    splits = load_dataset(f"folder:{tmp_path}")
    assert splits.num_classes == 2 and splits.sizes()["train"] == 8 and splits.sizes()["train_eval"] == 2
    expected = sorted((f"{cls}/{i}.png" for cls in ("a", "b") for i in range(4)),
                      key=lambda rel: hashlib.sha256(rel.encode()).hexdigest())
    assert splits.train[1].tolist() == [0 if rel.startswith("a/") else 1 for rel in expected]
    # Half the pixels at 100, half at 140: mean 120, population std 20, in every channel.
    assert splits.mean == (120.0, 120.0, 120.0) and splits.std == (20.0, 20.0, 20.0)
    assert splits.fingerprint["synthetic"] is False and set(splits.fingerprint["files"]) == {
        "train/", "valid/", "test/"}


def test_a_folder_refuses_other_sizes_and_unknown_classes(tmp_path):
    grey = np.zeros((32, 32, 3), np.uint8)
    files = {f"{split}/a/0.png": grey for split in ("train", "valid", "test")}
    _png_folder(tmp_path, {**files, "train/b/0.png": np.zeros((28, 28, 3), np.uint8)})
    with pytest.raises(DataError, match="28x28 pixels"):
        load_dataset(f"folder:{tmp_path}")
    (tmp_path / "train" / "b" / "0.png").unlink()
    _png_folder(tmp_path, {"test/zebra/0.png": grey})
    with pytest.raises(DataError, match="'zebra' is not among"):
        load_dataset(f"folder:{tmp_path}")


def test_missing_data_names_the_synthetic_command_and_the_exact_placement(tmp_path):
    for name, placed in (("cifar100", "cifar-100-python/train"), ("svhn", "train_32x32.mat"),
                         ("cinic10", "train/<class>/<image>.png")):
        with pytest.raises(DataError) as info:
            load_dataset(name, tmp_path / "none")
        message = str(info.value)
        assert f"nasfarm data synthetic --dataset {name} {tmp_path / 'none'}" in message
        assert f"'{tmp_path / 'none'}/{placed}' exists" in message
    with pytest.raises(DataError, match="unknown data set 'mnist'"):
        get_dataset("mnist")


# ---- the head, the hash, normalisation ----------------------------------------------------------


def test_the_head_follows_the_classes_and_the_hash_does_not():
    # NAS-Bench-101's input->output cell: a 512 -> 10 dense layer; with 100 classes 90 more rows
    # of 512 weights and 90 more biases: 882,570 + 90 * 513 = 928,740.
    assert trainable_parameters(INPUT_OUTPUT, fit_config(NB101, "cifar10")) == 882_570
    assert trainable_parameters(INPUT_OUTPUT, fit_config(NB101, "cifar100")) == 882_570 + 90 * 513
    assert meta_parameter_count(INPUT_OUTPUT, fit_config(NB101, "cifar100")) == 928_740
    assert fit_config(SMOKE, "svhn") is SMOKE  # 10 classes: the very profile
    assert Cell.from_any("0100", "input,output").hash == INPUT_OUTPUT.hash  # no data set in the hash


def test_training_uses_the_data_sets_head_and_statistics(synthetic_sets, one_torch_thread, monkeypatch):
    splits = load_dataset("cifar100", synthetic_sets["cifar100"])
    tiny = fit_config(SMOKE, splits.num_classes)
    seen = []
    import farm.augment as augment_module

    real = augment_module.augment

    def spy(images, generator, mean=augment_module.CIFAR_MEAN, std=augment_module.CIFAR_STD):
        seen.append((tuple(mean), tuple(std)))
        return real(images, generator, mean, std)

    monkeypatch.setattr(augment_module, "augment", spy)
    result = train(TrainJob(INPUT_OUTPUT, 1, config=tiny), splits)
    assert result.metrics["trainable_parameters"] == trainable_parameters(INPUT_OUTPUT, tiny)
    assert seen and set(seen) == {((129.30, 124.07, 112.43), (68.17, 65.39, 70.42))}
    with pytest.raises(BadInputError, match="10-way head but data set 'cifar100' has 100 classes"):
        train(TrainJob(INPUT_OUTPUT, 1, config=SMOKE), splits)


# ---- fingerprints and the synthetic marker ------------------------------------------------------


def test_fingerprint_names_set_sizes_and_file_digests_and_sees_a_changed_byte(tmp_path):
    root = write_synthetic("svhn", tmp_path / "svhn", images=32)
    first = load_dataset("svhn", root).fingerprint
    assert first["dataset"] == "svhn" and first["synthetic"] is True
    import hashlib

    on_disk = hashlib.sha256((root / "train_32x32.mat").read_bytes()).hexdigest()
    assert first["files"]["train_32x32.mat"] == on_disk
    moved = tmp_path / "elsewhere"
    root.rename(moved)
    assert load_dataset("svhn", moved).fingerprint == first  # where it lies does not matter
    # Real files placed over the synthetic ones: no longer synthetic, and the digests say so.
    scipy.io.savemat(str(moved / "test_32x32.mat"),
                     {"X": np.zeros((32, 32, 3, 40), np.uint8), "y": np.ones((40, 1), np.uint8)})
    second = load_dataset("svhn", moved).fingerprint
    assert second["synthetic"] is False
    found = differences(first, second)
    assert any(part.startswith("test_32x32.mat sha256 ") for part in found)
    assert "synthetic vs not synthetic" in found
    assert differences(first, first) == []


def test_file_digests_are_cached_by_path_size_and_mtime(tmp_path, monkeypatch):
    path = tmp_path / "f"
    path.write_bytes(b"a" * 10)
    opened = []
    real_open = Path.open

    def counting_open(self, mode="r", *args, **kwargs):
        if mode == "rb":  # reads (writing the file opens it too)
            opened.append(self)
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", counting_open)
    first = file_sha256(path)
    assert file_sha256(path) == first and len(opened) == 1
    path.write_bytes(b"b" * 11)
    assert file_sha256(path) != first and len(opened) == 2


# ---- where data lives ---------------------------------------------------------------------------


def test_data_dir_precedence_flag_env_config_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("NASFARM_DATA_DIR", raising=False)
    assert data_dir("cifar100") == tmp_path / "cache" / "nasfarm" / "cifar100"
    assert remember("cifar100", tmp_path / "mine") == config_path() == tmp_path / "config/nasfarm/config.json"
    assert json.loads(config_path().read_text()) == {"data_dirs": {"cifar100": str(tmp_path / "mine")}}
    assert data_dir("cifar100") == tmp_path / "mine"
    assert data_dir("svhn") == tmp_path / "cache" / "nasfarm" / "svhn"  # recorded per data set
    monkeypatch.setenv("NASFARM_DATA_DIR", str(tmp_path / "env"))
    assert data_dir("cifar100") == tmp_path / "env"
    assert data_dir("cifar100", tmp_path / "flag") == tmp_path / "flag"
    assert data_dir(f"folder:{tmp_path / 'pngs'}") == (tmp_path / "pngs").resolve()  # names its place
