"""CIFAR-10 through the data-set registry is bit for bit what it was before the registry.

Every expected value below was computed on commit e6f786e (the last commit before farm.datasets:
farm/data.py was then CIFAR-10's own reader), with torch 2.14.1 on this project's 2-core CPU
machine, by the same code as :func:`_measure` run from a checkout of that commit
(``git archive e6f786e | tar -x`` then the script) with one torch thread. Nothing here is read
back from the code under test: if the registry changed one byte of CIFAR-10's files, splits,
augmentation, normalisation, parameter counts, initial weights or a training run, a digest moves.

Training digests depend on torch's CPU kernels, hence one thread (two threads sum some
convolutions in another order and give other, equally valid, last bits).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from farm.augment import augment, normalize
from farm.config import NB101, SMOKE
from farm.cost import trainable_parameters
from farm.datasets import fit_config, load_dataset, write_synthetic
from farm.model import build_network, meta_parameter_count
from farm.spec import Cell
from farm.train import TrainJob, train, train_fast
from farm.train.job import state_dict_digest

# Computed on e6f786e (see the module docstring).
FILES_E6F786E = {
    "batches.meta": "96f911b11389ceb9abc6895c952cbed2e403354ef7af797c0ee566b70a2a0911",
    "data_batch_1": "8e29bdd5b6d23ec3813d1261e62d06f280b70b7ad22af8f8c93115b620ff8d59",
    "data_batch_2": "b4e569a348aa98c081b8fd9f41f011786dcd86c5383b8ad368e7605e1676124d",
    "data_batch_3": "78cfa06e0e32b7dddd8ee61e15b6c3feb1bf3d7c34ec8fd7090c33f79bca260d",
    "data_batch_4": "fbd5b1f859eb86ede6c0b1bde89def62bb3d8d5041609ad81530b5ba6b481192",
    "data_batch_5": "dc0f4f4d1f85e3c31c25d7f71c7bb5e16df147d523305f21820261b53f06d454",
    "test_batch": "1ebb85e5b798a6bc456ef1585631b6a3fe00b90031d60564ea1fd3f57cf33ec7",
}
SPLITS_E6F786E = {
    "train": "95dc1a794f819a431da371372119722d057c9fa2d65b5d6775933d78fa0572b6",
    "valid": "03a307910e846c1c792d9f1b0984d6a496b96d8c50c09db2150f27a056d510eb",
    "test": "74e3ccc8ff439dddec4f2982bdae1802c55cd7ab58497201369b79f3de027d66",
    "train_eval": "977b440bfcd3d6690cd06ac9d0aed91e08a8ccda9f859acc10807aacf35da83b",
}
SIZES_E6F786E = {"train": 256, "valid": 64, "test": 64, "train_eval": 64}
AUGMENT_E6F786E = "530631dd3e32031c031777bf57ba36716263ed0ccd291e5224c8401a763bca14"
NORMALIZE_E6F786E = "778007709a44035045f2f2a9acfd607a195f7082d435b3ab38c81bb1a1418cbb"
PARAMS_E6F786E = {"io_nb101": 882570, "inception_nb101": 2694282, "io_meta": 882570, "inception_smoke": 3842}
INIT_E6F786E = "e47766a4eecad0a92f948627e77c5c35242defec2d6392afbd431d50e838e061"
TRAIN_WEIGHTS_E6F786E = "e0687dc1fbe897ab11585e9de1c1156e24cb4608f94aee0e532aacf5ba123300"
TRAIN_EVALUATIONS_E6F786E = [
    {"train_accuracy": 0.125, "validation_accuracy": 0.0625, "test_accuracy": 0.09375},
    {"train_accuracy": 0.15625, "validation_accuracy": 0.03125, "test_accuracy": 0.0625},
    {"train_accuracy": 0.1875, "validation_accuracy": 0.0625, "test_accuracy": 0.09375},
]
TRAIN_LOSSES_E6F786E = [2.736056327819824, 2.2194013595581055]

INCEPTION = Cell.from_any(
    [[0, 1, 1, 1, 0, 1, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 1, 0, 0],
     [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0]],
    ["input", "conv1x1-bn-relu", "conv3x3-bn-relu", "conv3x3-bn-relu", "conv3x3-bn-relu", "maxpool3x3",
     "output"],
)
INPUT_OUTPUT = Cell.from_any([[0, 1], [0, 0]], ["input", "output"])
TINY = replace(SMOKE, name="tiny", stem_channels=8, batch_size=16, bn_shard_size=8, train_images=64,
               eval_images=32)


def _sha(*tensors: torch.Tensor) -> str:
    digest = hashlib.sha256()
    for t in tensors:
        digest.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def cifar_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic("cifar10", tmp_path_factory.mktemp("cifar10-e6f786e"), images=64, seed=3)


def test_synthetic_cifar10_files_are_byte_identical(cifar_copy):
    folder = cifar_copy / "cifar-10-batches-py"
    written = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    assert written == FILES_E6F786E


def test_splits_augmentation_and_normalisation_are_identical(cifar_copy):
    splits = load_dataset("cifar10", cifar_copy)
    assert {name: _sha(*getattr(splits, name)) for name in SPLITS_E6F786E} == SPLITS_E6F786E
    assert splits.sizes() == SIZES_E6F786E
    # SPEC e.3's constants, the numbers training normalises CIFAR-10 with.
    assert splits.num_classes == 10
    assert (splits.mean, splits.std) == ((125.31, 122.95, 113.87), (62.99, 62.09, 66.70))
    generator = torch.Generator().manual_seed(5)
    assert _sha(augment(splits.train[0][:32], generator, splits.mean, splits.std)) == AUGMENT_E6F786E
    assert _sha(normalize(splits.valid[0][:32], splits.mean, splits.std)) == NORMALIZE_E6F786E


def test_parameter_counts_and_initial_weights_are_identical():
    assert fit_config(NB101, "cifar10") == NB101 and fit_config(SMOKE, "cifar10") == SMOKE
    nb101, smoke = fit_config(NB101, "cifar10"), fit_config(SMOKE, "cifar10")
    counts = {"io_nb101": trainable_parameters(INPUT_OUTPUT, nb101),
              "inception_nb101": trainable_parameters(INCEPTION, nb101),
              "io_meta": meta_parameter_count(INPUT_OUTPUT, nb101),
              "inception_smoke": trainable_parameters(INCEPTION, smoke)}
    assert counts == PARAMS_E6F786E
    network = build_network(INCEPTION, TINY, generator=torch.Generator().manual_seed(1))
    assert state_dict_digest(network.state_dict()) == INIT_E6F786E


def test_a_training_run_is_bit_identical(cifar_copy, one_torch_thread):
    splits = load_dataset("cifar10", cifar_copy)
    job = TrainJob(INCEPTION, 2, repeat=1, seed=4, config=fit_config(TINY, splits.num_classes))
    events: list[dict] = []
    result = train(job, splits, on_event=events.append)
    assert result.weights_sha256 == TRAIN_WEIGHTS_E6F786E
    accuracies = [{k: e[k] for k in TRAIN_EVALUATIONS_E6F786E[0]} for e in result.evaluations]
    assert accuracies == TRAIN_EVALUATIONS_E6F786E
    assert [e["loss"] for e in events if e["kind"] == "epoch"] == TRAIN_LOSSES_E6F786E
    # The graph-mode trainer (run eagerly on the CPU) now rounds its update as the eager one does.
    fast = train_fast(job, splits, device="cpu")
    assert fast.weights_sha256 == TRAIN_WEIGHTS_E6F786E
