"""The fast path (farm.train's graph mode, repeat fusion) computes what the faithful trainer computes.

- Repeat fusion: a fused network of R=3 repeats starts from each repeat's own build_network
  weights, and its forward equals the three plain networks'; in float64 a fused run equals the three
  separate runs to rounding (weights, optimizer slots and loss at a mid-run checkpoint, then every
  metric after resuming).
- The graph-captured step function, run eagerly on the CPU in float64, equals farm.train's step
  (the same pieces: build_network, TFRMSprop with a host float LR, TrainStream) to rounding.
- train_fast keeps farm.train's contract: same events, evaluation points and metric names, same
  checkpoint format (each resumes the other's checkpoint), stop/resume bit-identical.

All on the CPU with a tiny profile (4-16 channels, 64 training images): seconds, not minutes.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from farm.augment import TrainStream
from farm.config import SMOKE
from farm.cost import forward_flops
from farm.fused import SplitGroupConv2d, build_fused_network, split_grouped_convs, split_state_dict
from farm.model import Network, build_network
from farm.optim import TFRMSprop, cosine_by_step_lr
from farm.packing import PackingRule, gpu_fraction, jobs_per_gpu, jobs_per_gpu_for_cell
from farm.spec import Cell
from farm.train import BadInputError, InjectedFault, Stopped, TrainJob, train, train_fast, train_repeats_fused
from farm.train.step import TrainStep, fuse_inputs

REPO = Path(__file__).resolve().parents[1]

# SPEC b.3's Inception-like cell: a projection from the input, a truncating interior edge
# (3 -> 4), a max-pool and a 4-way concatenation -- every layout path of the fused network.
INCEPTION = Cell.from_any(
    [[0, 1, 1, 1, 0, 1, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 1, 0, 0],
     [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0]],
    ["input", "conv1x1-bn-relu", "conv3x3-bn-relu", "conv3x3-bn-relu", "conv3x3-bn-relu", "maxpool3x3",
     "output"],
)
# SPEC d.3's channel-truncation example: interior edges between vertices of unequal width.
TRUNCATION = Cell.from_any(
    [[0, 1, 0, 0, 0], [0, 0, 1, 0, 1], [0, 0, 0, 1, 1], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]],
    ["input", "conv3x3-bn-relu", "conv1x1-bn-relu", "conv3x3-bn-relu", "output"],
)
# The tiny profile: 3 stacks of 1 module at 8/16/32 channels (widths at which the truncation
# cell's vertices get 3/3/2, 6/5/5 and 11/11/10 channels, so its interior edges truncate),
# batches of 16 in two BN shards, 4 steps per epoch, 32 images per evaluation split.
TINY = replace(SMOKE, name="tiny", stem_channels=8, batch_size=16, bn_shard_size=8, train_images=64,
               eval_images=32)


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def _generators(seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


# -- repeat fusion: structure ------------------------------------------------------------------


def _fused(cell, split_convs):
    fused = build_fused_network(cell, TINY, _generators((1, 2, 3)))
    return split_grouped_convs(fused) if split_convs else fused


@pytest.mark.parametrize("split_convs", [False, True], ids=["grouped", "split-convs"])
@pytest.mark.parametrize("cell", [INCEPTION, TRUNCATION], ids=["inception", "truncation"])
def test_fused_network_is_three_plain_networks(cell, split_convs):
    plains = [build_network(cell, TINY, generator=g).double() for g in _generators((1, 2, 3))]
    fused = _fused(cell, split_convs).double()
    assert any(isinstance(m, SplitGroupConv2d) for m in fused.modules()) == split_convs
    # Same names in the same order, and each repeat starts from its own generator's weights.
    assert list(fused.state_dict()) == list(Network(cell, TINY, device="meta").state_dict())
    for r, part in enumerate(split_state_dict(fused.state_dict(), 3)):
        for name, tensor in plains[r].state_dict().items():
            assert torch.equal(part[name], tensor), name
    inputs = [torch.randn(16, 3, 32, 32, dtype=torch.float64, generator=g) for g in _generators((7, 8, 9))]
    for channels_last in (False, True):
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        fused_copy = _fused(cell, split_convs).double().to(memory_format=fmt)
        logits = fused_copy(fuse_inputs(inputs).contiguous(memory_format=fmt))
        assert logits.shape == (16, 3, TINY.num_labels)
        for r in range(3):
            expected = build_network(cell, TINY, generator=_generators((r + 1,))[0]).double()(inputs[r])
            torch.testing.assert_close(logits[:, r], expected, rtol=1e-12, atol=1e-12)
        # The train-mode forward moved each repeat's BN running statistics as the plain one's.
        if not channels_last:
            for r in range(3):
                plains[r](inputs[r])
            for r, part in enumerate(split_state_dict(fused_copy.state_dict(), 3)):
                for name, tensor in plains[r].state_dict().items():
                    torch.testing.assert_close(part[name].double(), tensor.double(), rtol=1e-12, atol=1e-12)


def test_fused_network_rejects_zero_repeats():
    with pytest.raises(ValueError, match="repeats"):
        Network(INCEPTION, TINY, repeats=0)


# -- the graph step vs farm.train's step ---------------------------------------------------------


def _farm_train_step(model, optimizer, stream, step, total):
    """farm.train's step, written out piece for piece (float lr set on the host every step)."""
    for group in optimizer.param_groups:
        group["lr"] = cosine_by_step_lr(step, total, TINY.learning_rate)
    images, labels = stream.next_batch()
    logits = model(images.double())
    loss = F.cross_entropy(logits, labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def _optimizer(model):
    return TFRMSprop(model.parameters(), lr=0.0, decay=TINY.rms_decay, momentum=TINY.momentum,
                     epsilon=TINY.rms_epsilon, weight_decay=TINY.weight_decay)


def _stream(data, seed):
    return TrainStream(data.train[0][: TINY.train_images], data.train[1][: TINY.train_images],
                       TINY.batch_size, order_seed=seed, augment_seed=seed + 1)


@pytest.mark.parametrize("mode", ["graph", "eager"])
def test_graph_step_equals_farm_train_step_in_float64(synthetic_cifar, mode):
    """The graph body (run eagerly here) equals farm.train's step to rounding; the eager mode IS
    farm.train's step, to the bit."""
    total = TINY.total_steps(2)
    reference = build_network(INCEPTION, TINY, generator=torch.Generator().manual_seed(5)).double()
    model = build_network(INCEPTION, TINY, generator=torch.Generator().manual_seed(5)).double()
    reference_optimizer, optimizer = _optimizer(reference), _optimizer(model)
    reference_stream, stream = _stream(synthetic_cifar, 11), _stream(synthetic_cifar, 11)
    loss_sum = torch.zeros(1, dtype=torch.float64)
    step = TrainStep(model, optimizer, repeats=1, batch_size=TINY.batch_size, total_steps=total,
                     base_lr=TINY.learning_rate, step=0, loss_sum=loss_sum, mode=mode, use_graph=False)
    reference_loss = torch.zeros((), dtype=torch.float64)
    for k in range(5):  # the zero-LR first update, then four cosine-scheduled ones
        reference_loss += _farm_train_step(reference, reference_optimizer, reference_stream, k, total)
        images, labels = stream.next_batch()
        step([images], [labels])
    assert int(step.step) == 5
    last_lr = step.lr if mode == "graph" else optimizer.param_groups[0]["lr"]
    assert abs(float(last_lr) - cosine_by_step_lr(4, total, TINY.learning_rate)) < 1e-15
    actual_state = model.state_dict()
    if mode == "eager":
        assert all(torch.equal(actual_state[k], v) for k, v in reference.state_dict().items())
        assert torch.equal(loss_sum[0], reference_loss)
    for name, expected in reference.state_dict().items():
        torch.testing.assert_close(actual_state[name], expected, rtol=1e-10, atol=1e-12, msg=name)
    for p, q in zip(reference.parameters(), model.parameters(), strict=True):
        for slot in ("ms", "mom"):
            torch.testing.assert_close(optimizer.state[q][slot], reference_optimizer.state[p][slot],
                                       rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(loss_sum[0], reference_loss, rtol=1e-12, atol=0)
    # And the weights really moved (a step that did nothing would also "match").
    initial = build_network(INCEPTION, TINY, generator=torch.Generator().manual_seed(5)).double()
    pairs = zip(initial.parameters(), model.parameters(), strict=True)
    moved = max((a - b).abs().max().item() for a, b in pairs)
    assert moved > 1e-3


# -- whole runs ------------------------------------------------------------------------------------


def _stop_at(step: int):
    counter = itertools.count()
    return lambda: next(counter) >= step


def _jobs(cell=INCEPTION, epochs=2, config=TINY):
    return [TrainJob(cell, epochs, repeat=r, seed=3, config=config) for r in range(3)]


def _accuracies(evaluations):
    return [(e["epochs"], e["training_steps"], e["train_accuracy"], e["validation_accuracy"],
             e["test_accuracy"]) for e in evaluations]


def _evaluation_accuracies(result):
    return _accuracies(result.evaluations)


def test_fused_run_equals_three_separate_runs_in_float64(synthetic_cifar, tmp_path):
    """Stop both at step 6 of 8 (after the halfway evaluation), compare the checkpoints, resume."""
    from farm import checkpoint as ckpt

    jobs = _jobs()
    fused_paths = [str(tmp_path / f"fused{r}.ckpt") for r in range(3)]
    alone_paths = [str(tmp_path / f"alone{r}.ckpt") for r in range(3)]
    with pytest.raises(Stopped) as stopped:
        train_repeats_fused(jobs, synthetic_cifar, device="cpu", checkpoint_paths=fused_paths,
                            should_stop=_stop_at(6), dtype=torch.float64)
    assert stopped.value.step == 6 and stopped.value.checkpointed
    for job, path in zip(jobs, alone_paths, strict=True):
        with pytest.raises(Stopped):
            train_fast(job, synthetic_cifar, device="cpu", checkpoint_path=path, should_stop=_stop_at(6),
                       dtype=torch.float64)
    for job, fused_path, alone_path in zip(jobs, fused_paths, alone_paths, strict=True):
        fused, alone = ckpt.load(fused_path, job.identity()), ckpt.load(alone_path, job.identity())
        assert fused["step"] == alone["step"] == 6
        assert _accuracies(fused["evaluations"]) == _accuracies(alone["evaluations"])
        for name, tensor in alone["model"].items():
            torch.testing.assert_close(fused["model"][name], tensor, rtol=1e-9, atol=1e-12, msg=name)
        for index, slots in alone["optimizer"]["state"].items():
            for slot, tensor in slots.items():
                torch.testing.assert_close(fused["optimizer"]["state"][index][slot], tensor,
                                           rtol=1e-9, atol=1e-14)
        torch.testing.assert_close(fused["loss_sum"], alone["loss_sum"], rtol=1e-6, atol=0)
        assert fused["stream"]["position"] == alone["stream"]["position"]
    # The repeats really differ (own init, data order and augmentation).
    first, second = (ckpt.load(p, j.identity()) for p, j in zip(fused_paths[:2], jobs[:2], strict=True))
    assert not torch.equal(first["model"]["stem.conv.weight"], second["model"]["stem.conv.weight"])

    fused_results = train_repeats_fused(jobs, synthetic_cifar, device="cpu", checkpoint_paths=fused_paths,
                                        dtype=torch.float64)
    alone_results = [train_fast(job, synthetic_cifar, device="cpu", checkpoint_path=path, dtype=torch.float64)
                     for job, path in zip(jobs, alone_paths, strict=True)]
    for fused, alone in zip(fused_results, alone_results, strict=True):
        assert fused.resumed_from_step == alone.resumed_from_step == 6
        assert _evaluation_accuracies(fused) == _evaluation_accuracies(alone)
        assert fused.metrics.keys() == alone.metrics.keys()
        assert fused.metrics["trainable_parameters"] == alone.metrics["trainable_parameters"]
        assert fused.extra == {"trainer": "fast", "cuda_graphs": False, "fused_repeats": 3}
        assert alone.extra == {"trainer": "fast", "cuda_graphs": False}


def test_fused_run_with_split_convs_equals_the_grouped_one(synthetic_cifar, tmp_path):
    from farm import checkpoint as ckpt

    jobs = _jobs()
    saved = {}
    for split_convs in (False, True):
        paths = [str(tmp_path / f"{split_convs}-{r}.ckpt") for r in range(3)]
        with pytest.raises(Stopped):
            train_repeats_fused(jobs, synthetic_cifar, device="cpu", checkpoint_paths=paths,
                                should_stop=_stop_at(6), dtype=torch.float64, split_convs=split_convs)
        saved[split_convs] = [ckpt.load(path, job.identity()) for path, job in zip(paths, jobs, strict=True)]
    for grouped, split in zip(saved[False], saved[True], strict=True):
        assert _accuracies(grouped["evaluations"]) == _accuracies(split["evaluations"])
        for name, tensor in grouped["model"].items():
            torch.testing.assert_close(split["model"][name], tensor, rtol=1e-9, atol=1e-12, msg=name)


def test_train_fast_keeps_farm_train_contract(synthetic_cifar):
    job = TrainJob(INCEPTION, 2, repeat=1, seed=4, config=TINY)
    slow_events, fast_events = [], []
    slow = train(job, synthetic_cifar, on_event=slow_events.append)
    fast = train_fast(job, synthetic_cifar, device="cpu", on_event=fast_events.append)

    def shape(events):
        return [(e["kind"], e["step"], e["epoch"], sorted(e)) for e in events]

    assert shape(fast_events) == shape(slow_events)
    assert fast.metrics.keys() == slow.metrics.keys()
    assert fast.metrics["trainable_parameters"] == slow.metrics["trainable_parameters"]
    assert [e["training_steps"] for e in fast.evaluations] == [0, 4, 8]
    # The zero-LR first update changes no weight in either: identical epoch-0 accuracies.
    assert _evaluation_accuracies(fast)[0] == _evaluation_accuracies(slow)[0]
    # Later the two differ only by float32 rounding (the device-LR update rounds differently):
    # epoch losses agree closely.
    slow_losses = [e["loss"] for e in slow_events if e["kind"] == "epoch"]
    fast_losses = [e["loss"] for e in fast_events if e["kind"] == "epoch"]
    assert fast_losses == pytest.approx(slow_losses, rel=1e-4)


def test_checkpoints_resume_across_trainers_and_bit_identically(synthetic_cifar, tmp_path):
    job = TrainJob(TRUNCATION, 2, repeat=0, seed=9, config=TINY)
    uninterrupted = train_fast(job, synthetic_cifar, device="cpu")
    # train_fast stopped at step 3 and resumed by train_fast: the very same final weights.
    path = str(tmp_path / "fast.ckpt")
    with pytest.raises(Stopped):
        train_fast(job, synthetic_cifar, device="cpu", checkpoint_path=path, should_stop=_stop_at(3))
    resumed = train_fast(job, synthetic_cifar, device="cpu", checkpoint_path=path)
    assert resumed.resumed_from_step == 3
    assert resumed.weights_sha256 == uninterrupted.weights_sha256
    assert _evaluation_accuracies(resumed) == _evaluation_accuracies(uninterrupted)
    # A finished checkpoint returns the stored result without training.
    again = train_fast(job, synthetic_cifar, device="cpu", checkpoint_path=path)
    assert again.weights_sha256 == uninterrupted.weights_sha256 and again.resumed_from_step == 8
    # farm.train resumes train_fast's checkpoint, and train_fast resumes farm.train's.
    orders = ((train_fast, train, "fast-then-train"), (train, train_fast, "train-then-fast"))
    for first, second, name in orders:
        path = str(tmp_path / f"{name}.ckpt")
        kwargs = {"device": "cpu"}
        with pytest.raises(Stopped):
            first(job, synthetic_cifar, checkpoint_path=path, should_stop=_stop_at(5), **kwargs)
        result = second(job, synthetic_cifar, checkpoint_path=path, **kwargs)
        assert result.resumed_from_step == 5, name
        assert [e["training_steps"] for e in result.evaluations] == [0, 4, 8], name


def test_fused_resume_is_bit_identical_and_splits_per_job(synthetic_cifar, tmp_path):
    jobs = _jobs(cell=TRUNCATION, epochs=1)
    uninterrupted = train_repeats_fused(jobs, synthetic_cifar, device="cpu")
    paths = [str(tmp_path / f"r{r}.ckpt") for r in range(3)]
    events: list[list[dict]] = [[], [], []]
    with pytest.raises(Stopped):
        train_repeats_fused(jobs, synthetic_cifar, device="cpu", checkpoint_paths=paths,
                            on_events=[e.append for e in events], should_stop=_stop_at(2))
    assert [sorted({e["kind"] for e in job_events}) for job_events in events] == [
        ["checkpoint", "evaluation"]] * 3
    resumed = train_repeats_fused(jobs, synthetic_cifar, device="cpu", checkpoint_paths=paths)
    assert [r.weights_sha256 for r in resumed] == [r.weights_sha256 for r in uninterrupted]
    assert len({r.weights_sha256 for r in resumed}) == 3
    # Checkpoints that disagree (one job's is gone) resume job by job instead.
    os.remove(paths[1])
    fallback = train_repeats_fused(jobs, synthetic_cifar, device="cpu", checkpoint_paths=paths)
    assert [r.resumed_from_step for r in fallback] == [4, 0, 4]  # 0 and 2 finished, 1 from scratch
    assert "fused_repeats" not in fallback[1].extra
    assert fallback[0].weights_sha256 == uninterrupted[0].weights_sha256


def test_fused_inputs_are_checked(synthetic_cifar, armed_failpoints):
    jobs = _jobs()
    with pytest.raises(BadInputError, match="share cell"):
        train_repeats_fused([jobs[0], TrainJob(TRUNCATION, 2, repeat=1, config=TINY)], synthetic_cifar,
                            device="cpu")
    with pytest.raises(BadInputError, match="differ in"):
        train_repeats_fused([jobs[0], jobs[0]], synthetic_cifar, device="cpu")
    with pytest.raises(BadInputError, match="checkpoint paths"):
        train_repeats_fused(jobs, synthetic_cifar, device="cpu", checkpoint_paths=["a"])
    with pytest.raises(BadInputError, match="no jobs"):
        train_repeats_fused([], synthetic_cifar, device="cpu")
    # A failpoint armed for the cell fails a fused group and a single fast job alike, before training.
    armed_failpoints(f"train.start=raise:cell={INCEPTION.hash},repeat=0")
    with pytest.raises(InjectedFault, match="failpoint train.start .*repeat=0"):
        train_repeats_fused(jobs, synthetic_cifar, device="cpu")
    with pytest.raises(InjectedFault, match="failpoint train.start"):
        train_fast(jobs[0], synthetic_cifar, device="cpu")


# -- packing ---------------------------------------------------------------------------------------


def test_packing_rule_follows_cell_cost():
    median = Cell.from_any(  # the space's median forward FLOPs (bench/gpu.py says how it was found)
        [[0, 1, 0, 0, 0, 0, 0], [0, 0, 1, 0, 0, 1, 0], [0, 0, 0, 1, 1, 0, 1], [0, 0, 0, 0, 1, 0, 0],
         [0, 0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0]],
        ["input", "conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3", "maxpool3x3", "conv3x3-bn-relu",
         "output"],
    )
    assert forward_flops(median) == 787_878_912  # 0.788 GMAC, the research note's median
    assert forward_flops(INCEPTION) < forward_flops(median)
    assert jobs_per_gpu_for_cell(median) == 2
    assert 400e6 < forward_flops(INCEPTION) < 403e6  # 402.0 M MACs (docs/model.md)
    assert jobs_per_gpu_for_cell(INCEPTION) == 2
    assert forward_flops(INCEPTION, SMOKE) < 400_000_000 and jobs_per_gpu_for_cell(INCEPTION, SMOKE) == 4
    # Three fused repeats are three times the work of one.
    assert jobs_per_gpu_for_cell(median, repeats=3) == 1
    assert gpu_fraction(forward_flops(median)) == 0.5
    work = [10**k for k in range(6, 11)]
    counts = [jobs_per_gpu(w) for w in work]
    assert counts == sorted(counts, reverse=True) and counts[0] == 4 and counts[-1] == 1
    assert jobs_per_gpu(0) == 4
    with pytest.raises(ValueError):
        PackingRule(steps=((2, 1), (1, 4)))
    with pytest.raises(ValueError):
        jobs_per_gpu(100, repeats=0)


def test_evaluation_batch_divides_the_split():
    from farm.train.step import eval_batch_size

    # 9,984 = 39 x 256 images per split (SPEC f.2): 13 forwards of 768, no short last batch.
    assert eval_batch_size(9_984, 256) == 768 and 9_984 % 768 == 0
    assert eval_batch_size(TINY.eval_images, TINY.batch_size) == 32
    assert eval_batch_size(100, 32) == 32  # nothing divides: the training batch (a short last one)


# -- the bench script --------------------------------------------------------------------------------

_BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys
    BLOCKED = {"click", "tqdm", "ray", "sqlalchemy", "psycopg2", "alembic", "db", "workers", "scheduler"}
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is not available on the device machine")
    sys.meta_path.insert(0, Block())
    """
)


def test_fast_path_and_bench_import_without_farm_services():
    """The device machine has torch and a bare checkout: nothing on the bench's path may need the
    CLI, progress bars, Ray or SQL."""
    code = _BLOCKER + textwrap.dedent(
        """
        import importlib.util, sys, farm.train, farm.packing
        spec = importlib.util.spec_from_file_location("bench_gpu", "bench/gpu.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["bench_gpu"] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
        print("ok", len(module.CELLS))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["ok", "4"]


def test_bench_quick_mode_writes_its_table(tmp_path):
    out = subprocess.run(
        [sys.executable, "bench/gpu.py", "--quick", "--out", str(tmp_path), "--cells", "inception",
         "--modes", "graph,fused3-graph,fused3-split-graph", "--no-mix"],
        cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    import json

    (written,) = tmp_path.glob("gpu-cpu-*-quick.json")
    result = json.loads(written.read_text())
    rows = {(r["cell"], r["mode"]): r for r in result["rows"]}
    assert set(rows) == {("inception", "graph"), ("inception", "fused3-graph"),
                         ("inception", "fused3-split-graph"), ("check", "graph == eager"),
                         ("check", "trainers learn"), ("check", "grouped fusion learns")}
    assert all("error" not in row for row in rows.values()), rows
    # On the CPU the "graph" is the same Python run eagerly: bit-identical to the eager step.
    check = rows["check", "graph == eager"]
    for numerics in ("deterministic", "default"):
        assert check[numerics]["graph_vs_eager_rel"] == [0.0] * check["steps"]
        assert check[numerics]["eager_vs_eager_rel"] == [0.0] * check["steps"]
        assert check[numerics]["weight_move_rel"] > 0  # the weights moved: the check compares something
    assert check["ok"] is True
    graph, fused = rows["inception", "graph"], rows["inception", "fused3-graph"]
    assert fused["ms_per_repeat_step"] == pytest.approx(fused["ms_per_step"] / 3)
    assert graph["forward_macs"] == forward_flops(INCEPTION, result_config(result))
    assert "inception" in out.stdout and "fused3-graph" in out.stdout


def result_config(result):
    from farm.config import TrainConfig

    return TrainConfig.from_dict(result["config"])
