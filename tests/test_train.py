"""The training loop on the smoke profile: learning, metrics, events, exact resume, typed failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from farm import checkpoint as ckpt
from farm.config import SMOKE
from farm.cost import trainable_parameters
from farm.spec import Cell
from farm.train import (
    BadInputError,
    CheckpointError,
    InjectedFault,
    NonFiniteLossError,
    OutOfMemoryError,
    Stopped,
    TrainingError,
    TrainJob,
    train,
)

REPO = Path(__file__).resolve().parents[1]
INCEPTION_MATRIX = [
    [0, 1, 1, 1, 0, 1, 0],
    [0, 0, 0, 0, 0, 0, 1],
    [0, 0, 0, 0, 0, 0, 1],
    [0, 0, 0, 0, 1, 0, 0],
    [0, 0, 0, 0, 0, 0, 1],
    [0, 0, 0, 0, 0, 0, 1],
    [0, 0, 0, 0, 0, 0, 0],
]
INCEPTION_OPS = ["input", "conv1x1-bn-relu", "conv3x3-bn-relu", "conv3x3-bn-relu", "conv3x3-bn-relu",
                 "maxpool3x3", "output"]
INCEPTION = Cell.from_any(INCEPTION_MATRIX, INCEPTION_OPS)
EPOCHS = 6  # smoke: 512 images / batch 32 = 16 steps per epoch, 96 steps in all
STEPS_PER_EPOCH = 16
NB101_METRICS = {
    "trainable_parameters", "total_time",
    "halfway_training_time", "halfway_train_accuracy", "halfway_validation_accuracy", "halfway_test_accuracy",
    "final_training_time", "final_train_accuracy", "final_validation_accuracy", "final_test_accuracy",
}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _without_times(result: dict) -> dict:
    """A result with every wall-time figure removed: what must be bit-identical across runs."""
    metrics = {k: v for k, v in result["metrics"].items() if "time" not in k}
    evaluations = [{k: v for k, v in e.items() if k != "training_time"} for e in result["evaluations"]]
    return {"metrics": metrics, "evaluations": evaluations, "weights": result["weights_sha256"]}


@pytest.fixture(scope="module")
def smoke_run(synthetic_cifar, tmp_path_factory):
    """One uninterrupted 6-epoch smoke run of the Inception-like cell, with its events."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    events: list[dict] = []
    path = tmp_path_factory.mktemp("smoke-run") / "job.ckpt"
    job = TrainJob(INCEPTION, EPOCHS, repeat=0, seed=0, config=SMOKE)
    try:
        result = train(job, synthetic_cifar, checkpoint_path=str(path), on_event=events.append)
    finally:
        torch.set_num_threads(previous)
    return job, result, events, path


def test_smoke_profile_learns_well_above_chance(smoke_run):
    _, result, _, _ = smoke_run
    start, _, final = result.evaluations
    assert start["validation_accuracy"] < 0.2  # chance is 0.1 for 10 classes
    assert final["validation_accuracy"] > 0.4
    assert final["test_accuracy"] > 0.4
    assert final["train_accuracy"] > 0.4


def test_metrics_follow_the_nas_bench_101_protocol(smoke_run):
    _, result, _, _ = smoke_run
    assert set(result.metrics) == NB101_METRICS
    assert result.metrics["trainable_parameters"] == trainable_parameters(INCEPTION, SMOKE)
    # Evaluations after the zero-LR first step (recorded as epoch 0, step 0), halfway and final.
    assert [(e["epochs"], e["training_steps"]) for e in result.evaluations] == [
        (0.0, 0), (EPOCHS / 2, EPOCHS // 2 * STEPS_PER_EPOCH), (float(EPOCHS), EPOCHS * STEPS_PER_EPOCH)
    ]
    times = [e["training_time"] for e in result.evaluations]
    assert times[0] == 0.0 and 0 < times[1] < times[2] <= result.metrics["total_time"]
    assert result.metrics["halfway_validation_accuracy"] == result.evaluations[1]["validation_accuracy"]
    assert result.metrics["final_test_accuracy"] == result.evaluations[2]["test_accuracy"]
    # Accuracies are counts over the first eval_images of each split.
    for entry in result.evaluations:
        for key in ("train_accuracy", "validation_accuracy", "test_accuracy"):
            assert (entry[key] * SMOKE.eval_images).is_integer()
    as_json = json.loads(json.dumps(result.to_dict()))
    assert as_json["metrics"] == result.metrics and as_json["resumed_from_step"] == 0


def test_events_per_epoch_evaluation_and_checkpoint(smoke_run):
    _, _, events, path = smoke_run
    epochs = [e for e in events if e["kind"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [float(k) for k in range(1, EPOCHS + 1)]
    assert [e["step"] for e in epochs] == [k * STEPS_PER_EPOCH for k in range(1, EPOCHS + 1)]
    assert all(e["loss"] > 0 for e in epochs) and epochs[-1]["loss"] < epochs[0]["loss"]
    evaluations = [e for e in events if e["kind"] == "evaluation"]
    assert [e["epoch"] for e in evaluations] == [0.0, EPOCHS / 2, float(EPOCHS)]
    assert {"train_accuracy", "validation_accuracy", "test_accuracy", "training_time"} <= set(evaluations[0])
    checkpoints = [e for e in events if e["kind"] == "checkpoint"]
    # After every epoch boundary but the last, then the final result.
    assert [e["step"] for e in checkpoints] == [k * STEPS_PER_EPOCH for k in range(1, EPOCHS + 1)]
    assert all(e["path"] == str(path) for e in checkpoints)


def test_a_finished_checkpoint_returns_the_result_without_training(smoke_run, synthetic_cifar):
    job, result, _, path = smoke_run
    events: list[dict] = []
    again = train(job, synthetic_cifar, checkpoint_path=str(path), on_event=events.append)
    assert again.metrics == result.metrics and again.weights_sha256 == result.weights_sha256
    assert again.resumed_from_step == EPOCHS * STEPS_PER_EPOCH and not events


def test_kill_9_mid_epoch_then_resume_is_bit_identical(smoke_run, tmp_path, synthetic_cifar_dir):
    job, uninterrupted, _, _ = smoke_run
    checkpoint_dir = tmp_path / "ckpt"
    command = [
        sys.executable, "-c", "from nasfarm.cli import main; main()", "train",
        "--matrix", json.dumps(INCEPTION_MATRIX), "--ops", ",".join(INCEPTION_OPS),
        "--epochs", str(EPOCHS), "--profile", "smoke", "--data-dir", str(synthetic_cifar_dir),
        "--checkpoint-dir", str(checkpoint_dir), "--threads", "1", "--no-download",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    checkpoint_file = checkpoint_dir / job.checkpoint_name()

    victim = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not checkpoint_file.exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    assert victim.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    state = ckpt.load(str(checkpoint_file), job.identity())
    assert state is not None and not state["complete"]
    killed_at = state["step"]
    assert 0 < killed_at < EPOCHS * STEPS_PER_EPOCH and killed_at % STEPS_PER_EPOCH == 0

    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    output = json.loads(resumed.stdout)
    assert output["resumed_from_step"] >= killed_at > 0
    assert _without_times(output) == _without_times(uninterrupted.to_dict())


def test_should_stop_checkpoints_and_resume_matches(smoke_run, synthetic_cifar):
    job, uninterrupted, _, _ = smoke_run
    path = "memory://nasfarm-test/stop.ckpt"  # an fsspec URI: the store is not only local files
    ckpt.remove(path)
    calls = {"n": 0}

    def stop_after_40_steps() -> bool:
        calls["n"] += 1
        return calls["n"] > 40

    with pytest.raises(Stopped) as info:
        train(job, synthetic_cifar, checkpoint_path=path, should_stop=stop_after_40_steps)
    assert info.value.checkpointed and info.value.step == 40
    assert info.value.epoch == pytest.approx(40 / STEPS_PER_EPOCH)
    resumed = train(job, synthetic_cifar, checkpoint_path=path)
    assert resumed.resumed_from_step == 40 and resumed.resumed_from_epoch == pytest.approx(2.5)
    assert _without_times(resumed.to_dict()) == _without_times(uninterrupted.to_dict())
    ckpt.remove(path)


def test_repeats_and_seeds_draw_different_runs(smoke_run, synthetic_cifar):
    # Reproducibility of one job is shown by the resume tests (a separate process reproduces the
    # uninterrupted run bit for bit); here: other (seed, repeat) -> other init, order, augmentation.
    _, repeat0, _, _ = smoke_run
    for other in (TrainJob(INCEPTION, 1, repeat=1, config=SMOKE),
                  TrainJob(INCEPTION, 1, seed=1, config=SMOKE)):
        result = train(other, synthetic_cifar)
        # The epoch-0 evaluation follows the zero-LR step, whatever the budget: it shows the init.
        assert result.evaluations[0] != repeat0.evaluations[0]
        assert result.weights_sha256 != repeat0.weights_sha256


@pytest.fixture
def stopped_checkpoint(synthetic_cifar, tmp_path):
    job = TrainJob(INCEPTION, 1, repeat=0, seed=3, config=SMOKE)
    path = tmp_path / "job.ckpt"
    polls = iter(range(1000))
    with pytest.raises(Stopped) as info:
        train(job, synthetic_cifar, checkpoint_path=str(path), should_stop=lambda: next(polls) >= 3)
    assert info.value.step == 3 and path.exists()
    return job, path


def test_corrupt_checkpoint_is_refused(stopped_checkpoint, synthetic_cifar):
    job, path = stopped_checkpoint
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="corrupt") as info:
        train(job, synthetic_cifar, checkpoint_path=str(path))
    assert not info.value.retryable
    path.write_bytes(bytes(blob[: len(blob) // 3]))  # truncated
    with pytest.raises(CheckpointError):
        train(job, synthetic_cifar, checkpoint_path=str(path))
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a nasfarm checkpoint"):
        train(job, synthetic_cifar, checkpoint_path=str(path))


def test_another_jobs_checkpoint_is_refused(stopped_checkpoint, synthetic_cifar):
    job, path = stopped_checkpoint
    for other, field in (
        (replace(job, repeat=1), "repeat"),
        (replace(job, seed=4), "seed"),
        (replace(job, epochs=2), "epochs"),
        (replace(job, config=replace(SMOKE, learning_rate=0.1)), "config"),
        (replace(job, cell=Cell.from_any([[0, 1, 0], [0, 0, 1], [0, 0, 0]],
                                         ["input", "conv3x3-bn-relu", "output"])), "cell_hash"),
    ):
        with pytest.raises(CheckpointError, match=f"another job.*{field}"):
            train(other, synthetic_cifar, checkpoint_path=str(path))


def test_checkpoint_writes_are_atomic_and_leave_no_temporaries(tmp_path):
    identity = {"job": 1}
    path = tmp_path / "sub" / "x.ckpt"
    ckpt.save(str(path), identity, {"w": torch.arange(5)})
    ckpt.save(str(path), identity, {"w": torch.arange(6)})
    assert [p.name for p in path.parent.iterdir()] == ["x.ckpt"]
    assert torch.equal(ckpt.load(str(path), identity)["w"], torch.arange(6))
    assert ckpt.load(str(tmp_path / "absent.ckpt"), identity) is None


def test_non_finite_loss_is_typed_and_never_checkpointed(synthetic_cifar, tmp_path):
    exploding = replace(SMOKE, learning_rate=1e30)
    path = tmp_path / "nan.ckpt"
    with pytest.raises(NonFiniteLossError) as info:
        train(TrainJob(INCEPTION, 1, config=exploding), synthetic_cifar, checkpoint_path=str(path))
    assert info.value.retryable
    assert not path.exists()


def test_bad_input_is_typed_and_not_retryable(synthetic_cifar):
    with pytest.raises(BadInputError, match="positive integer") as info:
        train(TrainJob(INCEPTION, 0, config=SMOKE), synthetic_cifar)
    assert not info.value.retryable
    with pytest.raises(BadInputError, match="needs 2000 train images"):
        train(TrainJob(INCEPTION, 1, config=replace(SMOKE, train_images=2000)), synthetic_cifar)
    with pytest.raises(BadInputError, match="device"):
        train(TrainJob(INCEPTION, 1, config=SMOKE), synthetic_cifar, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(BadInputError, match="CUDA is not available"):
            train(TrainJob(INCEPTION, 1, config=SMOKE), synthetic_cifar, device="cuda")


def test_a_cell_armed_at_train_start_fails_every_time(armed_failpoints, synthetic_cifar):
    armed_failpoints(f"train.start=raise:cell=deadbeef|{INCEPTION.hash}")
    for _ in range(2):
        with pytest.raises(InjectedFault, match=f"failpoint train.start .*cell={INCEPTION.hash}") as info:
            train(TrainJob(INCEPTION, 1, config=SMOKE), synthetic_cifar)
        assert isinstance(info.value, TrainingError)  # typed: the worker records and classifies it
        assert info.value.retryable  # as a crash: the farm retries it within max_attempts
    armed_failpoints(f"train.start=raise:cell={INCEPTION.hash},retryable=no")
    with pytest.raises(InjectedFault) as info:
        train(TrainJob(INCEPTION, 1, config=SMOKE), synthetic_cifar)
    assert not info.value.retryable


@pytest.mark.skipif(
    Path("/proc/sys/vm/overcommit_memory").read_text().strip() == "1"
    if Path("/proc/sys/vm/overcommit_memory").exists() else True,
    reason="needs a kernel that refuses impossible allocations (overcommit_memory 0 or 2)",
)
def test_out_of_memory_is_typed_and_retryable(synthetic_cifar):
    # 2^19 stem channels ask the real allocator for terabytes: it refuses at once.
    huge = replace(SMOKE, stem_channels=1 << 19)
    with pytest.raises(OutOfMemoryError) as info:
        train(TrainJob(INCEPTION, 1, config=huge), synthetic_cifar)
    assert info.value.retryable


def test_cli_reports_user_mistakes_in_one_line(tmp_path, synthetic_cifar_dir):
    from nasfarm.cli import main

    runner = CliRunner()
    bad_matrix = runner.invoke(main, ["train", "--matrix", "[[0,1],[1,0]]", "--ops", "input,output",
                                      "--data-dir", str(synthetic_cifar_dir)])
    assert bad_matrix.exit_code == 2 and "upper triangular" in bad_matrix.output
    no_data = runner.invoke(main, ["train", "--matrix", "[[0,1],[0,0]]", "--ops", "input,output",
                                   "--profile", "smoke", "--data-dir", str(tmp_path), "--no-download"])
    assert no_data.exit_code == 2 and "cifar-10-python.tar.gz" in no_data.output
    assert "Traceback" not in no_data.output
    too_small = runner.invoke(main, ["train", "--matrix", "[[0,1],[0,0]]", "--ops", "input,output",
                                     "--data-dir", str(synthetic_cifar_dir), "--no-download"])
    assert too_small.exit_code == 2 and "needs 40000 train images" in too_small.output


def test_cpu_training_bench_drives_the_production_loop_object():
    """bench/train_cpu.py steps farm.train's run object directly: a change to that object must
    keep the bench running (a refactor once broke it unnoticed)."""
    out = subprocess.run(
        [sys.executable, "bench/train_cpu.py", "--steps", "2", "--warmup", "1", "--batch-size", "16",
         "--workers", "0", "--threads", "1", "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["timed_steps"] == 2
    assert result["ours_images_per_s"] > 0 and result["baseline_images_per_s"] > 0
