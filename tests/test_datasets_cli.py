"""The data-set command line, through the real console script: a synthetic set per format, a demo
campaign on it end to end (local Ray), what the campaign remembers (data set, fingerprint,
synthetic), the refusals (another copy at pre-flight, mixed data sets, tfrecord of synthetic
data), and where the data lives once `nasfarm data` has been told.

Every command runs with its own XDG_CONFIG_HOME / XDG_CACHE_HOME and without NASFARM_DATA_DIR, so
nothing here reads or writes the user's config or cache.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from nasfarm.cli import main

EXIT_PREFLIGHT = 3  # scheduler.summary: the run refused to start, nothing was claimed


def _nasfarm() -> list[str]:
    """The installed console script (as users run it); ``python -m nasfarm`` where it is not on PATH."""
    script = shutil.which("nasfarm")
    return [script] if script else [sys.executable, "-m", "nasfarm"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if k != "NASFARM_DATA_DIR"}
    environ.update(XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_CACHE_HOME=str(tmp_path / "cache"),
                   NASFARM_DB=f"sqlite:///{tmp_path / 'farm.db'}")
    return environ


def run(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*_nasfarm(), *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["cifar100", "svhn", "cinic10"])
def test_synthetic_set_then_demo_end_to_end(tmp_path, env, dataset):
    data = tmp_path / f"synthetic-{dataset}"
    written = run(env, "data", "synthetic", "--dataset", dataset, str(data))
    assert written.returncode == 0, written.stderr
    demo = run(env, "demo", "--offline", "--dataset", dataset, "--data-dir", str(data), "--cells", "2",
               timeout=480)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "complete: True" in demo.stdout and "2 result(s) in the campaign" in demo.stdout
    classes = {"cifar100": 100}.get(dataset, 10)
    shown = json.loads(run(env, "campaign", "show", "--campaign", "demo").stdout)
    assert shown["dataset"] == dataset and shown["profile"]["num_labels"] == classes
    fingerprint = shown["data_fingerprint"]
    assert fingerprint["synthetic"] is True and fingerprint["dataset"] == dataset
    assert fingerprint["sizes"] == {"train": 1024, "valid": 256, "test": 256, "train_eval": 256}
    status = run(env, "status", "--campaign", "demo")
    assert f"data: {dataset} 1,024/256/256 (synthetic data)" in status.stdout
    report = run(env, "report", "--campaign", "demo", "--out", str(tmp_path / "report"))
    assert report.returncode == 0 and "synthetic data" in report.stdout
    assert "synthetic data" in (tmp_path / "report" / "index.html").read_text()
    # NAS-Bench-101's format refuses synthetic results unless asked; then the data set is in the
    # file name (it is not CIFAR-10) and in a sidecar, since the format has no field for it.
    refused = run(env, "export", "--campaign", "demo", "--out", str(tmp_path / "nb.tfrecord"))
    assert refused.returncode == 2 and "--allow-synthetic" in refused.stderr
    assert not (tmp_path / "nb.tfrecord").exists() and not (tmp_path / f"nb.{dataset}.tfrecord").exists()
    allowed = run(env, "export", "--campaign", "demo", "--out", str(tmp_path / "nb.tfrecord"),
                  "--allow-synthetic")
    assert allowed.returncode == 0, allowed.stderr
    sidecar = json.loads((tmp_path / f"nb.{dataset}.tfrecord.json").read_text())
    assert (sidecar["dataset"], sidecar["data_fingerprint"], sidecar["records"]) == (dataset, fingerprint, 2)
    assert (tmp_path / f"nb.{dataset}.tfrecord").stat().st_size > 0
    # jsonl is not NAS-Bench-101's format: written without a flag.
    assert run(env, "export", "--campaign", "demo", "--out", str(tmp_path / "r.jsonl")).returncode == 0


def test_data_synthetic_and_check_remember_where_the_data_lives(tmp_path, env):
    data = tmp_path / "svhn-here"
    assert run(env, "data", "synthetic", "--dataset", "svhn", "--images", "16", str(data)).returncode == 0
    config = json.loads((tmp_path / "config" / "nasfarm" / "config.json").read_text())
    assert config["data_dirs"]["svhn"] == str(data.resolve())
    checked = run(env, "data", "check", "--dataset", "svhn")  # no --data-dir: the recorded place
    assert checked.returncode == 0, checked.stderr
    report = json.loads(checked.stdout)
    assert report["data_dir"] == str(data.resolve()) and report["fingerprint"]["synthetic"] is True
    assert report["sizes"]["train"] == 64 and report["classes"] == 10
    # data check --data-dir records a new place; the flag beats the config, the env beats the config.
    other = tmp_path / "svhn-there"
    assert run(env, "data", "synthetic", "--dataset", "svhn", "--images", "8", str(other)).returncode == 0
    (tmp_path / "config" / "nasfarm" / "config.json").unlink()
    assert run(env, "data", "check", "--dataset", "svhn", "--data-dir", str(other)).returncode == 0
    assert json.loads((tmp_path / "config/nasfarm/config.json").read_text())["data_dirs"]["svhn"] == str(
        other.resolve())
    env_first = run({**env, "NASFARM_DATA_DIR": str(data)}, "data", "check", "--dataset", "svhn")
    assert json.loads(env_first.stdout)["sizes"]["train"] == 64


def test_offline_error_names_the_synthetic_command_and_the_placement(tmp_path, env):
    missing = tmp_path / "nothing"
    demo = run(env, "demo", "--no-download", "--dataset", "cifar100", "--data-dir", str(missing))
    assert demo.returncode == 2 and "Traceback" not in demo.stderr
    assert f"nasfarm data synthetic --dataset cifar100 {missing}" in demo.stderr
    assert f"'{missing}/cifar-100-python/train' exists" in demo.stderr
    assert not (tmp_path / "farm.db").exists()  # nothing was created before the data check failed


def test_space_describe_follows_the_data_sets_head_not_its_hash():
    runner = CliRunner()
    counts = {}
    for dataset in ("cifar10", "cifar100"):
        result = runner.invoke(main, ["space", "describe", "--dataset", dataset, "--matrix", "0100",
                                      "--ops", "input,output"])
        assert result.exit_code == 0, result.output
        counts[dataset] = json.loads(result.output)
    assert counts["cifar10"]["trainable_parameters"] == 882_570
    assert counts["cifar100"]["trainable_parameters"] == 928_740
    assert counts["cifar10"]["hash"] == counts["cifar100"]["hash"]


def _campaign(env: dict[str, str], name: str, dataset: str, data: Path | None) -> None:
    args = ["campaign", "create", "--campaign", name, "--cells", "sample:2", "--epochs", "4",
            "--repeats", "1",
            "--profile", "smoke", "--dataset", dataset]
    created = run(env, *args, *(["--data-dir", str(data)] if data else []))
    assert created.returncode == 0, created.stderr


def test_a_run_refuses_another_copy_of_the_data_at_pre_flight(tmp_path, env):
    first, second = tmp_path / "a", tmp_path / "b"
    for root, seed in ((first, "0"), (second, "1")):
        assert run(env, "data", "synthetic", "--dataset", "cifar100", "--images", "128", "--seed", seed,
                   str(root)).returncode == 0
    assert run(env, "db", "init").returncode == 0
    _campaign(env, "c", "cifar100", first)
    refused = run(env, "run", "--campaign", "c", "--data-dir", str(second), "--device", "cpu")
    assert refused.returncode == EXIT_PREFLIGHT, refused.stdout + refused.stderr
    problem = refused.stderr
    assert "campaign 'c' was created on another copy of cifar100" in problem
    assert "cifar-100-python/train sha256" in problem and "cifar-100-python/test sha256" in problem
    # Campaigns of two data sets are never one run (the driver ships one copy).
    _campaign(env, "s", "svhn", None)  # no copy at hand: data set recorded, fingerprint not
    assert json.loads(run(env, "campaign", "show", "--campaign", "s").stdout)["data_fingerprint"] is None
    mixed = run(env, "run", "--campaign", "c", "--campaign", "s", "--data-dir", str(first), "--device", "cpu")
    assert mixed.returncode == EXIT_PREFLIGHT
    assert "train on different data sets ('c': cifar100, 's': svhn)" in mixed.stderr
