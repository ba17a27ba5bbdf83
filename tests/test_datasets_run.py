"""A run trains the data set its campaigns were created on, and that very copy: pre-flight refuses a
driver copy (or a mix of campaigns) that differs, a worker reading its node's copy reports one that
differs (the driver then drains that node), and the shipped payload carries the data set's head and
statistics to the workers."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from farm.config import SMOKE
from farm.datasets import fit_config, load_dataset, write_synthetic
from nasfarm.cli.dataopts import tfrecord_target
from nasfarm.cli.errors import BadInput
from scheduler.preflight import CampaignPlan, campaign_problems
from workers.actor import FarmWorker
from workers.data import expectation_payload, from_payload, to_payload

SIZES = {"train": 1024, "valid": 256, "test": 256, "train_eval": 256}


@pytest.fixture(scope="module")
def two_copies(tmp_path_factory):
    root = tmp_path_factory.mktemp("copies")
    return (write_synthetic("cifar100", root / "a", images=256, seed=0),
            write_synthetic("cifar100", root / "b", images=256, seed=1))


def _plan(name, fingerprint, dataset="cifar100"):
    config = fit_config(SMOKE, 100 if dataset == "cifar100" else 10)
    return CampaignPlan(name=name, config=config, epochs=(4,), dataset=dataset, fingerprint=fingerprint)


def test_pre_flight_compares_each_campaigns_fingerprint_with_the_loaded_copy(two_copies):
    a = load_dataset("cifar100", two_copies[0]).fingerprint
    b = load_dataset("cifar100", two_copies[1]).fingerprint
    assert campaign_problems([_plan("same", a)], SIZES, a) == []
    (problem,) = campaign_problems([_plan("other", a)], SIZES, b)
    assert problem.startswith("campaign 'other' was created on another copy of cifar100 than the driver's")
    assert f"cifar-100-python/train sha256 {a['files']['cifar-100-python/train'][:12]} vs " \
           f"{b['files']['cifar-100-python/train'][:12]}" in problem
    # Created before fingerprints (migration 0005) or without a copy at hand: not checked.
    assert campaign_problems([_plan("old", None)], SIZES, b) == []


def test_pre_flight_refuses_mixed_data_sets_and_campaigns_of_different_copies(two_copies):
    a = load_dataset("cifar100", two_copies[0]).fingerprint
    b = load_dataset("cifar100", two_copies[1]).fingerprint
    (mixed,) = campaign_problems([_plan("x", a), _plan("y", None, dataset="svhn")], None, None)
    assert "different data sets ('x': cifar100, 'y': svhn)" in mixed
    # --data-from nodes: no copy is read on the driver, but two campaigns' copies still disagree.
    (copies,) = campaign_problems([_plan("x", a), _plan("y", b)], None, None)
    assert "campaigns 'x' and 'y' were created on different copies of cifar100" in copies


def test_the_payload_carries_the_data_sets_head_statistics_and_fingerprint(two_copies):
    splits = load_dataset("cifar100", two_copies[0])
    shipped = from_payload(to_payload(splits))
    assert (shipped.dataset, shipped.num_classes, shipped.mean, shipped.std) == (
        "cifar100", 100, (129.30, 124.07, 112.43), (68.17, 65.39, 70.42))
    assert shipped.fingerprint == splits.fingerprint and shipped.sizes() == splits.sizes()
    # A payload of the old shape (splits only) is CIFAR-10's.
    old = {name: arrays for name, arrays in to_payload(splits).items() if name != "meta"}
    assert (from_payload(old).dataset, from_payload(old).num_classes) == ("cifar10", 10)


def test_a_node_whose_copy_differs_reports_it(two_copies):
    a = load_dataset("cifar100", two_copies[0]).fingerprint
    worker = SimpleNamespace(problems=[])
    settings = SimpleNamespace(data_from="nodes", node_data_dir=str(two_copies[1]))
    data = FarmWorker._load_data(worker, settings, expectation_payload("cifar100", a))
    assert data is not None and data.dataset == "cifar100"
    (problem,) = worker.problems
    assert problem.startswith("data set on this node differs from the campaigns'")
    assert "cifar-100-python/train sha256" in problem
    worker.problems.clear()
    settings.node_data_dir = str(two_copies[0])
    assert FarmWorker._load_data(worker, settings, expectation_payload("cifar100", a)) is not None
    assert worker.problems == []
    # A node without the data set: a problem of that node, not an exception.
    settings.node_data_dir = str(two_copies[0] / "missing")
    assert FarmWorker._load_data(worker, settings, expectation_payload("cifar100", a)) is None
    assert worker.problems and "CIFAR-100 not found" in worker.problems[0]


def test_tfrecord_names_a_data_set_that_is_not_cifar10():
    real = {"name": "c", "dataset": "svhn", "data_fingerprint": {"synthetic": False}}
    assert tfrecord_target(real, "out/nb.tfrecord", allow_synthetic=False) == (
        "out/nb.svhn.tfrecord", "out/nb.svhn.tfrecord.json")
    assert tfrecord_target(real, "out/nb_svhn.tfrecord", allow_synthetic=False)[0] == "out/nb_svhn.tfrecord"
    cifar = {"name": "c", "dataset": "cifar10", "data_fingerprint": {"synthetic": False}}
    assert tfrecord_target(cifar, "nb.tfrecord", allow_synthetic=False) == ("nb.tfrecord", None)
    unrecorded = {**cifar, "data_fingerprint": None}
    assert tfrecord_target(unrecorded, "nb.tfrecord", allow_synthetic=False)[1] is None
    synthetic = {**cifar, "data_fingerprint": {"synthetic": True}}
    with pytest.raises(BadInput, match="trained on synthetic data"):
        tfrecord_target(synthetic, "nb.tfrecord", allow_synthetic=False)
    allowed = tfrecord_target(synthetic, "nb.tfrecord", allow_synthetic=True)
    assert allowed == ("nb.tfrecord", "nb.tfrecord.json")
