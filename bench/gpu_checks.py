"""bench/gpu.py's correctness checks on the device, run before any timing."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import torch

from bench.gpu_setup import CELLS, Setup, StreamStep, make_cell, make_streams, model_for, sync
from farm.config import TrainConfig


@contextlib.contextmanager
def cudnn_numerics(deterministic: bool):
    """Deterministic: cuDNN's deterministic kernels, no autotuning, no TF32 -- two eager runs of
    the same step then agree to the bit, so any graph-vs-eager difference is the graph's. Else
    the defaults the trainers run with (autotuned kernels, TF32 convolutions)."""
    backends = torch.backends
    saved = (backends.cudnn.deterministic, backends.cudnn.benchmark, backends.cudnn.allow_tf32,
             backends.cuda.matmul.allow_tf32)
    if deterministic:
        backends.cudnn.deterministic, backends.cudnn.benchmark = True, False
        backends.cudnn.allow_tf32 = backends.cuda.matmul.allow_tf32 = False
    else:
        backends.cudnn.deterministic, backends.cudnn.benchmark = False, True
    try:
        yield
    finally:
        (backends.cudnn.deterministic, backends.cudnn.benchmark, backends.cudnn.allow_tf32,
         backends.cuda.matmul.allow_tf32) = saved


def _trajectory(cell, setup: Setup, steps: int, use_graph: bool) -> tuple[list[dict], list[float]]:
    """The parameters (on the host) and the loss after each of ``steps`` fp32 TrainStep updates."""
    model = model_for(cell, setup, 1, channels_last=setup.cuda)
    step = StreamStep(model, setup, make_streams(setup, 1, seed=7), mode="graph", autocast=False,
                      use_graph=use_graph, total_epochs=4)
    states, losses = [], []
    for _ in range(steps):
        step()
        sync(setup.device)  # outside the step: the graph itself never syncs
        states.append({k: v.detach().float().cpu() for k, v in model.named_parameters()})
        losses.append(float(step.loss_sum[0]))
        step.loss_sum.zero_()
    del model, step
    return states, losses


def _divergence(reference: list[dict], other: list[dict], scale: float) -> tuple[list[float], str]:
    """Per step, the largest weight difference relative to ``scale``; and the parameter that
    differs most after the last step."""
    per_step = [max((a[k] - b[k]).abs().max().item() for k in a) / scale
                for a, b in zip(reference, other, strict=True)]
    last_ref, last_other = reference[-1], other[-1]
    worst = max(last_ref, key=lambda k: (last_ref[k] - last_other[k]).abs().max().item())
    return per_step, worst


def check_graph_equals_eager(setup: Setup, steps: int = 8) -> dict[str, Any]:
    """The replayed graph computes what the same step run eagerly computes (fp32, no autocast).

    Same initial weights and batches, ``steps`` updates of the Inception-like cell, run three
    times (eager, eager again, graph) under two numerics: deterministic cuDNN without TF32, where
    two eager runs agree to the bit, and the trainers' defaults (autotuned, TF32), where they do
    not. Per step it records the largest weight difference relative to the largest weight, and
    names the parameter that differs most. "ok" asks the graph to differ from eager, under
    deterministic numerics, by no more than 1e-4 of how far the weights moved, or -- if the
    dynamics amplify even the last bit -- by no more than eager differs from eager under the
    defaults. A graph that replayed stale inputs, a frozen LR or no update at all differs by about
    the whole move from the first replayed step on.
    """
    cell = make_cell(CELLS["inception"])
    initial = dict(model_for(cell, setup, 1, channels_last=False).cpu().named_parameters())
    row: dict[str, Any] = {"cell": "check", "mode": "graph == eager", "steps": steps}
    for numerics in ("deterministic", "default"):
        with cudnn_numerics(deterministic=numerics == "deterministic"):
            eager, eager_losses = _trajectory(cell, setup, steps, use_graph=False)
            again, _ = _trajectory(cell, setup, steps, use_graph=False)
            graph, graph_losses = _trajectory(cell, setup, steps, use_graph=True)
        scale = max(t.abs().max().item() for t in eager[-1].values())
        moved = max((eager[-1][k] - initial[k].detach()).abs().max().item() for k in initial) / scale
        eager_diff, _ = _divergence(eager, again, scale)
        graph_diff, worst = _divergence(eager, graph, scale)
        row[numerics] = {
            "weight_move_rel": moved,
            "eager_vs_eager_rel": eager_diff,
            "graph_vs_eager_rel": graph_diff,
            "graph_worst_parameter": worst,
            "loss_eager": eager_losses,
            "loss_graph": graph_losses,
        }
    deterministic, default = row["deterministic"], row["default"]
    allowed = max(1e-4 * deterministic["weight_move_rel"], default["eager_vs_eager_rel"][-1])
    row["ok"] = deterministic["graph_vs_eager_rel"][-1] <= allowed
    return row


def _synthetic_data():
    import tempfile

    from farm.data import load_cifar10, write_synthetic_cifar10

    with tempfile.TemporaryDirectory() as root:
        return load_cifar10(write_synthetic_cifar10(root, images_per_batch=256))


def check_trainers_learn(setup: Setup, epochs: int, config: TrainConfig, *, judge: bool) -> dict[str, Any]:
    """farm.train, train_fast and train_repeats_fused (split convs: see LAST_MODES for the grouped
    ones) on the synthetic set: the fast trainers run end to end on this device and learn like the
    faithful one."""
    from farm.train import TrainJob, train, train_fast, train_repeats_fused

    cell = make_cell(CELLS["inception"])
    data = _synthetic_data()
    device = str(setup.device)
    jobs = [TrainJob(cell, epochs, repeat=r, config=config) for r in range(3)]
    what = f"{config.name} profile, {epochs} epochs, synthetic data: final validation accuracy"
    result: dict[str, Any] = {"cell": "check", "mode": "trainers learn", "what": what}
    t0 = time.perf_counter()
    result["farm_train"] = train(jobs[0], data, device=device).metrics["final_validation_accuracy"]
    t1 = time.perf_counter()
    result["train_fast"] = train_fast(jobs[0], data, device=device).metrics["final_validation_accuracy"]
    t2 = time.perf_counter()
    fused = train_repeats_fused(jobs, data, device=device, split_convs=True)
    t3 = time.perf_counter()
    result["train_repeats_fused"] = [r.metrics["final_validation_accuracy"] for r in fused]
    result["seconds"] = {"farm_train": t1 - t0, "train_fast": t2 - t1, "fused_3": t3 - t2}
    chance = 1.0 / config.num_labels
    # Judged only where the profile can learn (not --quick's few steps): 1.5x chance or better.
    result["ok"] = min(result["train_fast"], *result["train_repeats_fused"]) > 1.5 * chance if judge else None
    return result


def check_grouped_fusion_learns(
    setup: Setup, epochs: int, config: TrainConfig, *, judge: bool
) -> dict[str, Any]:
    """train_repeats_fused with grouped convs (the kernels that failed on an H200) end to end."""
    from farm.train import TrainJob, train_repeats_fused

    jobs = [TrainJob(make_cell(CELLS["inception"]), epochs, repeat=r, config=config) for r in range(3)]
    t0 = time.perf_counter()
    fused = train_repeats_fused(jobs, _synthetic_data(), device=str(setup.device))
    accuracies = [r.metrics["final_validation_accuracy"] for r in fused]
    return {"cell": "check", "mode": "grouped fusion learns", "train_repeats_fused": accuracies,
            "seconds": time.perf_counter() - t0,
            "ok": min(accuracies) > 1.5 / config.num_labels if judge else None}

