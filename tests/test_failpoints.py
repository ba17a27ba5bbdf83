"""Failpoints (farm.failpoints): the grammar, filters and counts, off = nothing, and real faults
injected into a real training run (an exception, a failed checkpoint write, a process death)."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from farm import checkpoint as ckpt
from farm import failpoints
from farm.config import SMOKE
from farm.spec import Cell
from farm.train import InjectedFault, Stopped, TrainingError, TrainJob, train

REPO = Path(__file__).resolve().parents[1]
CELL = Cell.from_any([[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]],
                     ["input", "conv3x3-bn-relu", "maxpool3x3", "output"])
# 512 images / 32 = 16 steps per epoch; a checkpoint every 4 steps.
QUARTERS = replace(SMOKE, checkpoint_every_epochs=0.25)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- the grammar -----------------------------------------------------------------------------------


def test_a_spec_parses_into_rules_per_point():
    rules = failpoints.parse(
        " train.start=raise:cell=aa|bb,repeat=1 ; checkpoint.write=exit:after=3,times=1;"
        "train.step=raise:step=7,retryable=no"
    )
    (start,), (write,), (step,) = rules["train.start"], rules["checkpoint.write"], rules["train.step"]
    assert (start.action, start.filters) == ("raise", {"cell": {"aa", "bb"}, "repeat": {"1"}})
    assert (write.action, write.after, write.times, write.filters) == ("exit", 3, 1, {})
    assert step.filters == {"step": {"7"}} and not step.retryable and start.retryable
    assert failpoints.parse("") == {} and failpoints.parse(" ; ") == {}


@pytest.mark.parametrize("spec, complaint", [
    ("train.begin=raise", "unknown point 'train.begin'"),
    ("train.start", "unknown point"),
    ("train.start=crash", "unknown action 'crash'"),
    ("train.start=raise:cel=abc", "no option 'cel=abc'"),
    ("train.start=raise:cell", "not key=value"),
    ("train.step=raise:after=-1", "not a non-negative whole number"),
    ("train.step=raise:times=two", "not a non-negative whole number"),
    ("train.step=exit:retryable=no", "no option 'retryable=no'"),
    ("train.step=raise:retryable=maybe", "no option 'retryable=maybe'"),
])
def test_a_malformed_spec_is_a_clear_error_naming_the_variable(spec, complaint):
    with pytest.raises(failpoints.FailpointSpecError, match=complaint) as info:
        failpoints.parse(spec)
    assert str(info.value).startswith("NASFARM_FAILPOINTS: ")


def test_a_malformed_variable_stops_the_process_at_import():
    env = {**os.environ, "PYTHONPATH": str(REPO), "NASFARM_FAILPOINTS": "train.start=boom"}
    out = subprocess.run([sys.executable, "-c", "import farm.failpoints"], cwd=REPO, capture_output=True,
                         text=True, timeout=60, env=env)
    assert out.returncode != 0
    assert "FailpointSpecError: NASFARM_FAILPOINTS:" in out.stderr and "'boom'" in out.stderr


# -- firing ------------------------------------------------------------------------------------------


def test_filters_and_counts_decide_which_hits_fire(armed_failpoints):
    armed_failpoints("train.step=raise:cell=c1,after=2,times=2")
    fired = []
    for step in range(8):
        for cell in ("c1", "c2"):
            try:
                failpoints.hit("train.step", cell=cell, step=step)
            except InjectedFault as exc:
                fired.append((cell, step))
                assert "failpoint train.step (cell=c1, step=" in str(exc) and "NASFARM_FAILPOINTS" in str(exc)
    # c2 never matches; c1's first two hits pass, the next two fire, the rest pass again.
    assert fired == [("c1", 2), ("c1", 3)]


def test_off_means_no_effect_and_the_variable_is_read_once(armed_failpoints, monkeypatch):
    armed_failpoints("")
    assert failpoints.ENABLED is False
    failpoints.hit("train.start", cell="x", epochs=1, repeat=0)  # nothing happens
    # Set without reload: the process already read the variable, so nothing changes ...
    monkeypatch.setenv(failpoints.ENV, "train.start=raise")
    failpoints.hit("train.start", cell="x", epochs=1, repeat=0)
    assert failpoints.ENABLED is False
    # ... until it reads it again.
    failpoints.reload()
    assert failpoints.ENABLED is True
    with pytest.raises(InjectedFault):
        failpoints.hit("train.start", cell="x", epochs=1, repeat=0)


# -- in a real training run ----------------------------------------------------------------------------


def test_train_step_failpoint_fails_the_run_at_that_step(armed_failpoints, synthetic_cifar):
    armed_failpoints(f"train.step=raise:cell={CELL.hash},step=5")
    with pytest.raises(InjectedFault, match="step=5") as info:
        train(TrainJob(CELL, 1, config=SMOKE), synthetic_cifar)
    assert isinstance(info.value, TrainingError)


def test_a_failed_checkpoint_write_keeps_the_previous_checkpoint_resumable(
    armed_failpoints, synthetic_cifar, tmp_path
):
    job = TrainJob(CELL, 1, config=QUARTERS)
    uninterrupted = train(job, synthetic_cifar)
    path = str(tmp_path / "job.ckpt")
    armed_failpoints("checkpoint.write=raise:after=1")
    with pytest.raises(InjectedFault, match="checkpoint.write .*step=8"):
        train(job, synthetic_cifar, checkpoint_path=path)
    assert ckpt.load(path, job.identity())["step"] == 4  # the write that failed left the one before
    armed_failpoints("")
    resumed = train(job, synthetic_cifar, checkpoint_path=path)
    assert resumed.resumed_from_step == 4
    assert resumed.weights_sha256 == uninterrupted.weights_sha256


def test_exit_kills_the_process_like_kill_9(synthetic_cifar_dir, tmp_path):
    """``exit`` ends the process at once (status 137, no cleanup, no exception to catch): the run
    leaves the last checkpoint written before it, as a worker killed with kill -9 would."""
    path = tmp_path / "job.ckpt"
    code = textwrap.dedent(f"""
        from dataclasses import replace
        from farm.config import SMOKE
        from farm.data import load_cifar10
        from farm.spec import Cell
        from farm.train import TrainJob, train
        cell = Cell.from_any({CELL.matrix.tolist()}, {list(CELL.ops)})
        job = TrainJob(cell, 1, config=replace(SMOKE, checkpoint_every_epochs=0.25))
        try:
            train(job, load_cifar10({str(synthetic_cifar_dir)!r}), checkpoint_path={str(path)!r})
        finally:
            print("cleanup ran")
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
           "NASFARM_FAILPOINTS": "checkpoint.write=exit:step=12"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                         env=env)
    assert out.returncode == failpoints.EXIT_STATUS, out.stderr[-2000:]
    assert "cleanup ran" not in out.stdout
    job = TrainJob(CELL, 1, config=QUARTERS)
    assert ckpt.load(str(path), job.identity())["step"] == 8


def test_points_armed_for_another_cell_change_nothing(armed_failpoints, synthetic_cifar, tmp_path):
    armed_failpoints("train.step=raise:cell=0123;checkpoint.write=raise:cell=0123")
    job = TrainJob(CELL, 1, config=SMOKE)
    polls = itertools.count()
    path = str(tmp_path / "job.ckpt")
    with pytest.raises(Stopped) as info:
        train(job, synthetic_cifar, checkpoint_path=path, should_stop=lambda: next(polls) >= 3)
    assert info.value.checkpointed and ckpt.load(path, job.identity())["step"] == 3
