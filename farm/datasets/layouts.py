"""The real on-disk layouts: folder and file names, classes. Shared by the readers (cifar, svhn)
and the synthetic writers, which must produce exactly what the readers read."""

from __future__ import annotations

IMAGE_BYTES = 3 * 32 * 32  # one CIFAR row: R(1024) G(1024) B(1024)

CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_TRAIN_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4")
CIFAR10_VALID_FILE = "data_batch_5"
CIFAR10_TEST_FILE = "test_batch"
CIFAR10_META_FILE = "batches.meta"
CIFAR10_FILES = (*CIFAR10_TRAIN_FILES, CIFAR10_VALID_FILE, CIFAR10_TEST_FILE)
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)

CIFAR100_DIR = "cifar-100-python"
CIFAR100_FILES = ("train", "test")
CIFAR100_META_FILE = "meta"
CIFAR100_CLASSES = 100
CIFAR100_COARSE_CLASSES = 20

SVHN_TRAIN_FILE = "train_32x32.mat"
SVHN_TEST_FILE = "test_32x32.mat"
