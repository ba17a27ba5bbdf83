"""CIFAR-10 reader, synthetic writer, batched augmentation and the shuffled stream."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from farm.augment import CIFAR_MEAN, CIFAR_STD, TrainStream, augment, normalize
from farm.data import REQUIRED_FILES, DataError, default_data_dir, load_cifar10, write_synthetic_cifar10

# ---- reader -------------------------------------------------------------------------------


def test_synthetic_set_reads_back_with_nb101_splits(synthetic_cifar):
    assert synthetic_cifar.sizes() == {"train": 1024, "valid": 256, "test": 256, "train_eval": 256}
    images, labels = synthetic_cifar.train
    assert images.dtype == torch.uint8 and tuple(images.shape) == (1024, 32, 32, 3)
    assert labels.dtype == torch.int64 and int(labels.min()) >= 0 and int(labels.max()) <= 9
    # train_eval is data_batch_1, i.e. the first quarter of train.
    assert torch.equal(synthetic_cifar.train_eval[0], images[:256])
    assert torch.equal(synthetic_cifar.train_eval[1], labels[:256])
    # Every class occurs in every split.
    for _, split_labels in (synthetic_cifar.train, synthetic_cifar.valid, synthetic_cifar.test):
        assert set(split_labels.tolist()) == set(range(10))


def _write_batch(folder: Path, name: str, data, labels) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / name).open("wb") as handle:
        pickle.dump({b"data": data, b"labels": labels}, handle, protocol=2)


def _placed_copy(tmp_path: Path, n: int = 4) -> Path:
    folder = tmp_path / "cifar-10-batches-py"
    for name in REQUIRED_FILES:
        _write_batch(folder, name, np.zeros((n, 3072), np.uint8), [1] * n)
    return folder


def test_rows_decode_channel_major_to_hwc(tmp_path):
    # The CIFAR-10 row layout: 1024 red bytes, then green, then blue, each row-major 32x32.
    folder = _placed_copy(tmp_path)
    row = np.zeros((1, 3072), np.uint8)
    row[0, 0 * 1024 + 2 * 32 + 5] = 200  # red at (y=2, x=5)
    row[0, 1 * 1024 + 31 * 32 + 0] = 100  # green at (y=31, x=0)
    row[0, 2 * 1024 + 0 * 32 + 31] = 50  # blue at (y=0, x=31)
    _write_batch(folder, "data_batch_1", row, [7])
    splits = load_cifar10(tmp_path)
    image = splits.train[0][0]
    assert image[2, 5].tolist() == [200, 0, 0]
    assert image[31, 0].tolist() == [0, 100, 0]
    assert image[0, 31].tolist() == [0, 0, 50]
    assert int(image.sum()) == 350
    assert splits.train[1][0] == 7


def test_missing_files_say_how_to_place_cifar(tmp_path):
    with pytest.raises(DataError, match="cifar-10-python.tar.gz") as info:
        load_cifar10(tmp_path)
    assert "data_batch_1" in str(info.value)
    folder = _placed_copy(tmp_path)
    (folder / "test_batch").unlink()
    with pytest.raises(DataError, match="missing: test_batch"):
        load_cifar10(tmp_path)


@pytest.mark.parametrize(
    ("data", "labels", "message"),
    [
        (np.zeros((4, 3000), np.uint8), [0] * 4, "shape"),
        (np.zeros((4, 3072), np.float32), [0] * 4, "uint8"),
        (np.zeros((4, 3072), np.uint8), [0] * 3, "3 labels for 4 images"),
        (np.zeros((4, 3072), np.uint8), [0, 1, 2, 10], "labels must lie in 0..9"),
    ],
)
def test_malformed_batches_are_rejected(tmp_path, data, labels, message):
    folder = _placed_copy(tmp_path)
    _write_batch(folder, "data_batch_3", data, labels)
    with pytest.raises(DataError, match=message):
        load_cifar10(tmp_path)


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_reader_never_runs_code_from_a_pickle(tmp_path):
    folder = _placed_copy(tmp_path)
    marker = tmp_path / "pwned"
    with (folder / "data_batch_2").open("wb") as handle:
        pickle.dump({b"data": _RunsCode(marker), b"labels": [0]}, handle, protocol=2)
    with pytest.raises(DataError, match="refusing to unpickle"):
        load_cifar10(tmp_path)
    assert not marker.exists()


def test_download_only_when_asked(tmp_path):
    # Without download=True nothing touches the network: the error comes at once.
    with pytest.raises(DataError, match="not found"):
        load_cifar10(tmp_path / "empty", download=False)


def test_default_data_dir_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("NASFARM_DATA_DIR", str(tmp_path / "here"))
    assert default_data_dir() == tmp_path / "here"
    monkeypatch.delenv("NASFARM_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_data_dir() == tmp_path / "cache" / "nasfarm" / "cifar10"


def test_synthetic_writer_is_deterministic_and_in_cifar_layout(tmp_path):
    a = write_synthetic_cifar10(tmp_path / "a", images_per_batch=16, seed=3)
    b = write_synthetic_cifar10(tmp_path / "b", images_per_batch=16, seed=3)
    names = sorted(p.name for p in (a / "cifar-10-batches-py").iterdir())
    assert names == sorted(
        ["batches.meta", "data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
         "test_batch"]
    )
    for name in names:
        folder_a, folder_b = a / "cifar-10-batches-py", b / "cifar-10-batches-py"
        assert (folder_a / name).read_bytes() == (folder_b / name).read_bytes()
    # The standard recipe for the real files reads ours too.
    with (a / "cifar-10-batches-py" / "data_batch_1").open("rb") as handle:
        entry = pickle.load(handle, encoding="bytes")
    assert entry[b"data"].shape == (16, 3072) and entry[b"data"].dtype == np.uint8
    assert len(entry[b"labels"]) == 16
    with (a / "cifar-10-batches-py" / "batches.meta").open("rb") as handle:
        meta = pickle.load(handle, encoding="bytes")
    assert meta[b"label_names"][0] == b"airplane" and len(meta[b"label_names"]) == 10


def test_synthetic_set_is_not_solved_by_colour_alone(synthetic_cifar):
    """Nearest class-mean colour beats chance (0.1) but stays weak: the texture carries the class."""
    images, labels = synthetic_cifar.train
    colours = images.float().mean(dim=(1, 2))  # [N, 3]
    centroids = torch.stack([colours[labels == c].mean(0) for c in range(10)])
    test_images, test_labels = synthetic_cifar.test
    test_colours = test_images.float().mean(dim=(1, 2))
    predicted = torch.cdist(test_colours, centroids).argmin(1)
    accuracy = (predicted == test_labels).float().mean().item()
    assert 0.12 < accuracy < 0.5


# ---- augmentation ----------------------------------------------------------------------------


def _reference_augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per-image slicing, written the obvious way (same random draws as farm.augment.augment)."""
    n = images.shape[0]
    offsets = torch.randint(0, 9, (2, n), generator=generator)
    flips = torch.randint(0, 2, (n,), generator=generator)
    mean = torch.tensor(CIFAR_MEAN).view(3, 1, 1)
    std = torch.tensor(CIFAR_STD).view(3, 1, 1)
    out = []
    for i in range(n):
        canvas = torch.zeros(3, 40, 40)
        canvas[:, 4:36, 4:36] = images[i].permute(2, 0, 1).float()
        y, x = int(offsets[0, i]), int(offsets[1, i])
        crop = canvas[:, y : y + 32, x : x + 32]
        if flips[i]:
            crop = torch.flip(crop, dims=[2])
        out.append((crop - mean) / std)
    return torch.stack(out)


def test_batched_augmentation_matches_per_image_reference(synthetic_cifar):
    images = synthetic_cifar.train[0][:64]
    ours = augment(images, torch.Generator().manual_seed(5))
    reference = _reference_augment(images, torch.Generator().manual_seed(5))
    assert ours.shape == (64, 3, 32, 32) and ours.dtype == torch.float32
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-6)


def test_padding_happens_before_normalisation():
    # All-white images: every output pixel is either white or a pad pixel, and pads are -mean/std.
    images = torch.full((512, 32, 32, 3), 255, dtype=torch.uint8)
    out = augment(images, torch.Generator().manual_seed(0))
    for c in range(3):
        white = (255 - CIFAR_MEAN[c]) / CIFAR_STD[c]
        pad = -CIFAR_MEAN[c] / CIFAR_STD[c]
        values = out[:, c]
        is_white = torch.isclose(values, torch.tensor(white))
        is_pad = torch.isclose(values, torch.tensor(pad))
        assert bool((is_white | is_pad).all())
        assert is_pad.any() and is_white.any()
    # Crops with offset (4, 4) and no flip are the image itself; 1/81 of crops, so some appear.
    assert bool((out == out[:, :, :1, :1]).flatten(1).all(1).any())


def test_crop_offsets_and_flips_cover_their_range():
    # Pixel value 4 * (column + 1): an output pixel tells which padded column it came from (pads are 0).
    values = (torch.arange(32) + 1) * 4
    images = values.to(torch.uint8).view(1, 1, 32, 1).expand(2000, 32, 32, 3).contiguous()
    out = augment(images, torch.Generator().manual_seed(1))
    source = ((out[:, 0, 16] * CIFAR_STD[0] + CIFAR_MEAN[0]).round().long() // 4) - 1  # [N, 32]
    flipped = source[:, 20] < source[:, 10]
    assert 0.45 < flipped.float().mean().item() < 0.55
    # Output column 16 comes from padded column 16 + dx (no flip) or 15 + dx (flip); image column
    # = padded column - 4.
    dx = torch.where(flipped, source[:, 16] + 4 - 15, source[:, 16] + 4 - 16)
    assert sorted(set(dx.tolist())) == list(range(9))
    counts = torch.bincount(dx, minlength=9).float() / dx.numel()
    assert bool(((counts > 0.07) & (counts < 0.16)).all())  # uniform over 9 offsets (1/9 = 0.111)


def test_normalize_uses_the_tf_constants():
    pixel = torch.tensor([[[[125, 123, 114]]]], dtype=torch.uint8).expand(1, 32, 32, 3)
    out = normalize(pixel)
    expected = [(125 - 125.31) / 62.99, (123 - 122.95) / 62.09, (114 - 113.87) / 66.70]
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor(expected), rtol=0, atol=1e-6)


# ---- the stream ------------------------------------------------------------------------------


def _index_stream(n: int, batch: int, order_seed: int = 1) -> TrainStream:
    images = torch.zeros((n, 32, 32, 3), dtype=torch.uint8)
    return TrainStream(images, torch.arange(n), batch, order_seed=order_seed, augment_seed=2)


def test_batches_cross_epoch_boundaries_and_every_epoch_is_a_permutation():
    stream = _index_stream(10, 4)
    seen = torch.cat([stream.next_batch()[1] for _ in range(5)])  # 20 indices = exactly 2 epochs
    first, second = seen[:10], seen[10:]
    assert sorted(first.tolist()) == list(range(10))
    assert sorted(second.tolist()) == list(range(10))
    assert not torch.equal(first, second)  # reshuffled, not repeated
    assert stream.epoch == 1 and stream.position == 10
    # 156.25 steps per epoch at NAS-Bench-101 sizes: nothing is dropped at epoch ends.
    stream = _index_stream(40, 16)
    seen = torch.cat([stream.next_batch()[1] for _ in range(5)])
    assert sorted(seen.tolist()) == sorted(list(range(40)) * 2)


def test_stream_order_depends_on_its_seed():
    a = torch.cat([_index_stream(100, 10, order_seed=1).next_batch()[1] for _ in range(3)])
    b = torch.cat([_index_stream(100, 10, order_seed=2).next_batch()[1] for _ in range(3)])
    assert not torch.equal(a, b)


def test_stream_state_round_trip_continues_identically(synthetic_cifar):
    images, labels = synthetic_cifar.train
    stream = TrainStream(images[:100], labels[:100], 32, order_seed=7, augment_seed=8)
    for _ in range(3):  # 96 images: the next batch crosses into epoch 1
        stream.next_batch()
    state = stream.state_dict()
    expected = [stream.next_batch() for _ in range(4)]
    other = TrainStream(images[:100], labels[:100], 32, order_seed=99, augment_seed=98)
    other.load_state_dict(state)
    for (x, y), (x2, y2) in zip(expected, (other.next_batch() for _ in range(4)), strict=True):
        assert torch.equal(x, x2) and torch.equal(y, y2)
    with pytest.raises(ValueError, match="100 images"):
        TrainStream(images[:50], labels[:50], 32, order_seed=1, augment_seed=1).load_state_dict(state)
