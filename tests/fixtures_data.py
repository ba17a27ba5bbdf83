"""Data fixtures: a small learnable synthetic CIFAR-10, written once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

# 256 images per batch file: 1,024 train / 256 valid / 256 test images, enough for the smoke
# profile (512 training images, 256 evaluation images per split).
SYNTHETIC_IMAGES_PER_BATCH = 256


@pytest.fixture(scope="session")
def synthetic_cifar_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from farm.data import write_synthetic_cifar10

    return write_synthetic_cifar10(
        tmp_path_factory.mktemp("synthetic-cifar10"), images_per_batch=SYNTHETIC_IMAGES_PER_BATCH, seed=0
    )


@pytest.fixture(scope="session")
def synthetic_cifar(synthetic_cifar_dir: Path):
    """The synthetic set read through the real loader (farm.data.load_cifar10)."""
    from farm.data import load_cifar10

    return load_cifar10(synthetic_cifar_dir)


@pytest.fixture
def one_torch_thread():
    """Run torch on one CPU thread: on a shared 2-core machine, two OpenMP threads that wait on
    each other's barriers run small convolutions ~5-10x slower than one thread."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
