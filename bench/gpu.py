#!/usr/bin/env python3
"""How fast the fast training path is on one GPU (issue 8): eager vs CUDA graph vs repeat fusion.

For four cells -- small (the 10th percentile of forward FLOPs over the 423,624-cell space), the
median cell (the 50th percentile), the Inception-like cell (SPEC b.3) and the largest (49,979,274
parameters, also the most FLOPs) -- and four ways of running the same training step:

    eager-fp32     farm.train's step without autocast, NCHW fp32 (cuDNN's default TF32 convs)
    eager-bf16     farm.train's CUDA step: bf16 autocast + channels_last, launched op by op
    graph          farm.fast.graph.TrainStep: the whole step replayed as one CUDA graph
    fused3-graph   the 3 repeats as one FusedNetwork, graph-replayed (figures per repeat)
    fused3-split-graph  the same with each grouped conv run as one conv per repeat

it measures the step time (CUDA events, warm-up excluded, median of repeated windows), images/s,
the extrapolated 108- and 4-epoch wall times (16,875 / 625 steps + 3 evaluations of 3 x 9,984
images, measured the same way), achieved TFLOP/s (training ~ 3x forward, 2 FLOP per multiply-add,
from farm.cost.forward_flops) and its fraction of the bf16 dense peak (989 TFLOP/s, the H100 SXM /
H200 datasheet figure), and peak memory. Then the whole-card throughput of a realistic mix of
cells (four cells at the 12.5/37.5/62.5/87.5th FLOP percentiles) with N = 1, 2, 4 concurrent jobs
(threads, one CUDA stream each), and -- if the budget allows -- what torch.compile costs and
saves for the median cell at 4 epochs.

Images are random uint8 of CIFAR's shape (timing does not depend on the pixels).

    PYTHONPATH=. python3 bench/gpu.py --out bench/results            # on the GPU, ~6 minutes
    python3 bench/gpu.py --quick --out /tmp/bench                     # CPU check of the script
    python3 bench/gpu.py --render-markdown bench/results/gpu-....json # the table for docs/gpu.md

Prints one table at the end and writes it as JSON to ``<out>/gpu-<card>-<date>.json``. Imports
only torch/numpy/stdlib and farm (no click, tqdm, Ray or SQL): the device machine has a bare
checkout, no installed package.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, Python puts bench/ first on sys.path, where sibling benches (bench/queue.py once)
# would shadow standard modules that torch imports. Use the repository root instead.
_BENCH_DIR = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH_DIR]
sys.path.insert(0, str(_BENCH_DIR.parent))

import argparse  # noqa: E402
import contextlib  # noqa: E402
import datetime as dt  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from dataclasses import dataclass, replace  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from farm.augment import TrainStream  # noqa: E402
from farm.config import NB101, SMOKE, TrainConfig  # noqa: E402
from farm.cost import forward_flops, trainable_parameters  # noqa: E402
from farm.fast.fused import build_fused_network, split_grouped_convs  # noqa: E402
from farm.fast.graph import EvalStep, TrainStep, eval_batch_size  # noqa: E402
from farm.fast.packing import jobs_per_gpu  # noqa: E402
from farm.model import build_network  # noqa: E402
from farm.optim import TFRMSprop, cosine_by_step_lr  # noqa: E402
from farm.spec import cell_from_labels  # noqa: E402

PEAK_BF16_TFLOPS = 989.0  # H100 SXM and H200 datasheet, dense bf16 (no sparsity)
# TPU v2 108-epoch training_time: the median over a 30,001-cell sample of the published data, and
# the Inception-like cell's published repeat mean (research note; SPEC h).
TPU_108_SECONDS = {"median": 1554.0, "inception": 1155.96}
EPOCH_BUDGETS = (108, 4)
EVALUATIONS_PER_RUN = 3  # epoch 0, halfway, final
# torch.compile of a whole NAS-Bench-101 network (forward + backward) takes tens of seconds to
# minutes: only start it with this much budget left.
COMPILE_NEEDS_SECONDS = 170.0

# Cells as (pruned matrix, labels), chosen by enumerating the whole space with farm.space and
# sorting by farm.cost.forward_flops (multiply-adds per image), ties by hash.
CELLS: dict[str, tuple[list[list[int]], list[int], str]] = {
    # 10th percentile of forward FLOPs: 251.0 M MACs, 1,664,778 parameters (02a76107...).
    "small": (
        [[0, 1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 1, 0, 1], [0, 0, 0, 1, 0, 1, 0], [0, 0, 0, 0, 0, 1, 0],
         [0, 0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0]],
        [-1, 1, 1, 1, 2, 2, -2], "02a76107c9f693d31eb6cb14a236e541"),
    # The median: 787.9 M MACs (the space's median forward FLOPs), 5,356,682 parameters.
    "median": (
        [[0, 1, 0, 0, 0, 0, 0], [0, 0, 1, 0, 0, 1, 0], [0, 0, 0, 1, 1, 0, 1], [0, 0, 0, 0, 1, 0, 0],
         [0, 0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0]],
        [-1, 0, 1, 2, 2, 0, -2], "3094d021b8417ca282d142d02f3b9cc0"),
    # SPEC b.3's README Inception-like cell: 402.0 M MACs, 2,694,282 parameters.
    "inception": (
        [[0, 1, 1, 1, 0, 1, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 1, 0, 0],
         [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0]],
        [-1, 1, 0, 0, 0, 2, -2], "28cfc7874f6d200472e1a9dcd8650aa0"),
    # The most parameters in the space (49,979,274) and the most FLOPs: 7,335.2 M MACs.
    "large": (
        [[0, 1, 1, 0, 1, 0, 1], [0, 0, 0, 0, 1, 0, 0], [0, 0, 0, 1, 0, 0, 0], [0, 0, 0, 0, 1, 0, 0],
         [0, 0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0]],
        [-1, 0, 0, 0, 0, 0, -2], "012534f1e7781c0ac3ef57bfcc4dff91"),
}
# A realistic mix: the cells at the 12.5/37.5/62.5/87.5th percentiles of forward FLOPs (the
# midpoints of four equal-count bins of the space), 275 M / 564 M / 960 M / 3,141 M MACs.
MIX: dict[str, tuple[list[list[int]], list[int], str]] = {
    "p12.5": (
        [[0, 1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 1, 0, 1], [0, 0, 0, 1, 0, 0, 0], [0, 0, 0, 0, 0, 1, 1],
         [0, 0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0]],
        [-1, 2, 2, 1, 0, 1, -2], "8797a6af32c75e9ad2cfc9a70a79a8d9"),
    "p37.5": (
        [[0, 1, 0, 0, 1, 0, 0], [0, 0, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1],
         [0, 0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0]],
        [-1, 0, 0, 1, 2, 0, -2], "2639a3027bb5c45b521e1ed98fa65adf"),
    "p62.5": (
        [[0, 1, 0, 0, 1, 1, 0], [0, 0, 1, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0, 0], [0, 0, 0, 0, 0, 1, 1],
         [0, 0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0]],
        [-1, 1, 1, 0, 0, 2, -2], "438d5af246fbad86983439d77d8edf84"),
    "p87.5": (
        [[0, 1, 0, 0, 0, 0, 1], [0, 0, 1, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0, 0], [0, 0, 0, 0, 1, 0, 0],
         [0, 0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0]],
        [-1, 0, 2, 1, 2, 0, -2], "90bae9630bfddf8242153c01a2871ad4"),
}
MODES = ("eager-bf16", "graph", "fused3-split-graph", "eager-fp32", "fused3-graph")
# Modes that crashed the CUDA context on a card (fused3-graph: cuDNN found no engine for grouped
# convs on an H200, then an illegal memory access). A dead context fails every later row, so
# these (and the grouped-fusion check) run last, after the mix and compile rows.
LAST_MODES = ("fused3-graph",)


def make_cell(entry: tuple[list[list[int]], list[int], str]):
    matrix, labels, expected = entry
    cell = cell_from_labels(matrix, labels)
    if cell.hash != expected:
        raise SystemExit(f"cell table is wrong: {cell.hash} != {expected}")
    return cell


class Budget:
    """Wall-clock budget: rows that would not fit are skipped with a note."""

    def __init__(self, seconds: float) -> None:
        self.start = time.perf_counter()
        self.deadline = self.start + seconds

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def used(self) -> float:
        return time.perf_counter() - self.start


@dataclass
class Setup:
    config: TrainConfig
    device: torch.device
    windows: int  # timed windows per row (median taken)
    window_seconds: float  # target length of one timed window
    warmup: int  # untimed steps first (graph modes capture at the 4th)
    train_images: torch.Tensor
    train_labels: torch.Tensor
    eval_images: torch.Tensor
    eval_labels: torch.Tensor

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Timer:
    """Elapsed seconds of enqueued work: CUDA events on a GPU, the wall clock on a CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __enter__(self) -> Timer:
        if self.device.type == "cuda":
            self.begin = torch.cuda.Event(enable_timing=True)
            self.end = torch.cuda.Event(enable_timing=True)
            self.begin.record()
        else:
            self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            self.end.record()
            self.end.synchronize()
            self.seconds = self.begin.elapsed_time(self.end) / 1000.0
        else:
            self.seconds = time.perf_counter() - self.t0


def _streams(setup: Setup, repeats: int, seed: int) -> list[TrainStream]:
    return [
        TrainStream(setup.train_images, setup.train_labels, setup.config.batch_size,
                    order_seed=seed * 10 + r, augment_seed=seed * 10 + r + 5)
        for r in range(repeats)
    ]


def _model(cell, setup: Setup, repeats: int, channels_last: bool):
    generators = [torch.Generator().manual_seed(100 + r) for r in range(repeats)]
    if repeats == 1:
        model = build_network(cell, setup.config, generator=generators[0])
    else:
        model = build_fused_network(cell, setup.config, generators)
    if channels_last:
        return model.to(setup.device, memory_format=torch.channels_last).train()
    return model.to(setup.device).train()


def _optimizer(model, config: TrainConfig) -> TFRMSprop:
    return TFRMSprop(model.parameters(), lr=0.0, decay=config.rms_decay, momentum=config.momentum,
                     epsilon=config.rms_epsilon, weight_decay=config.weight_decay)


class EagerStep:
    """farm.train's step, op by op (fp32 NCHW, or bf16 autocast + channels_last)."""

    def __init__(self, model, setup: Setup, stream: TrainStream, *, bf16: bool) -> None:
        self.model = model
        self.optimizer = _optimizer(model, setup.config)
        self.stream = stream
        self.bf16 = bf16 and setup.cuda
        self.device = setup.device
        self.total = setup.config.total_steps(108)
        self.base_lr = setup.config.learning_rate
        self.step = 0
        self.loss_sum = torch.zeros((), device=setup.device)

    def __call__(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = cosine_by_step_lr(self.step, self.total, self.base_lr)
        images, labels = self.stream.next_batch()
        if self.bf16:
            images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                logits = self.model(images)
        else:
            logits = self.model(images)
        loss = F.cross_entropy(logits.float(), labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.loss_sum += loss.detach()
        self.step += 1


class GraphStep:
    """farm.fast's step (graph-replayed on a GPU) fed by its repeats' streams."""

    def __init__(self, model, setup: Setup, streams: list[TrainStream], *, use_graph: bool = True) -> None:
        self.streams = streams
        self.step = TrainStep(
            model, _optimizer(model, setup.config), repeats=len(streams), batch_size=setup.config.batch_size,
            total_steps=setup.config.total_steps(108), base_lr=setup.config.learning_rate, step=0,
            loss_sum=torch.zeros(len(streams), device=setup.device),
            autocast_dtype=torch.bfloat16 if setup.cuda else None, channels_last=setup.cuda,
            use_graph=use_graph,
        )

    def __call__(self) -> None:
        batches = [stream.next_batch() for stream in self.streams]
        self.step([b[0] for b in batches], [b[1] for b in batches])


def time_steps(step, setup: Setup, steps: int | None) -> tuple[float, list[float], float]:
    """(median seconds per step, each window's seconds per step, warm-up seconds).

    Warm-up steps first (cuDNN autotuning, graph capture), untimed; then a short calibration run
    sizes the windows to ~``setup.window_seconds`` each unless ``steps`` is given.
    """
    t0 = time.perf_counter()
    for _ in range(setup.warmup):
        step()
    _sync(setup.device)
    warmup_seconds = time.perf_counter() - t0
    if steps is None:
        with Timer(setup.device) as calibration:
            for _ in range(3):
                step()
        rough = calibration.seconds / 3
        steps = int(max(5, min(200, setup.window_seconds / max(rough, 1e-5))))
    windows = []
    for _ in range(setup.windows):
        with Timer(setup.device) as timer:
            for _ in range(steps):
                step()
        windows.append(timer.seconds / steps)
    return statistics.median(windows), windows, warmup_seconds


def time_evaluation(model, setup: Setup, repeats: int, *, bf16: bool, use_graph: bool) -> float:
    """Seconds of one evaluation (3 splits x eval_images): one split timed, warm-up excluded.

    The three splits have the same shapes, so one split's time x 3 is the evaluation's.
    """
    # The fast trainer's evaluation batch for graph modes, farm.train's (the training batch) eagerly.
    batch = eval_batch_size(setup.config.eval_images, setup.config.batch_size) if use_graph else (
        setup.config.batch_size)
    evaluator = EvalStep(model, repeats=repeats, batch_size=batch,
                         autocast_dtype=torch.bfloat16 if bf16 and setup.cuda else None,
                         channels_last=bf16 and setup.cuda, use_graph=use_graph)
    images, labels = setup.eval_images, setup.eval_labels
    model.eval()
    try:
        with torch.no_grad():
            for _ in range(3):  # warm-up, capture, one replay
                evaluator(images[:batch], labels[:batch])
            _sync(setup.device)
            evaluator.reset()
            with Timer(setup.device) as timer:
                for start in range(0, images.shape[0], batch):
                    evaluator(images[start : start + batch], labels[start : start + batch])
    finally:
        model.train()
    return 3 * timer.seconds


def _reset_memory(setup: Setup) -> None:
    gc.collect()
    if setup.cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(setup.device)


def _peak_gib(setup: Setup) -> float | None:
    return torch.cuda.max_memory_allocated(setup.device) / 2**30 if setup.cuda else None


def measure_row(name: str, cell, mode: str, setup: Setup, steps: int | None) -> dict[str, Any]:
    _reset_memory(setup)
    config = setup.config
    t0 = time.perf_counter()
    repeats = 3 if mode.startswith("fused3") else 1
    bf16 = mode != "eager-fp32"
    model = _model(cell, setup, repeats, channels_last=bf16 and setup.cuda)
    if mode == "fused3-split-graph":
        split_grouped_convs(model)
    streams = _streams(setup, repeats, seed=len(name))
    if mode.startswith("eager"):
        step = EagerStep(model, setup, streams[0], bf16=bf16)
    else:
        step = GraphStep(model, setup, streams)
    build_seconds = time.perf_counter() - t0
    per_step, windows, warmup_seconds = time_steps(step, setup, steps)
    evaluation = time_evaluation(model, setup, repeats, bf16=bf16, use_graph=not mode.startswith("eager"))
    macs = forward_flops(cell, config)
    per_repeat_step = per_step / repeats
    per_repeat_eval = evaluation / repeats
    row: dict[str, Any] = {
        "cell": name,
        "hash": cell.hash,
        "mode": mode,
        "repeats": repeats,
        "forward_macs": macs,
        "trainable_parameters": trainable_parameters(cell, config),
        "ms_per_step": per_step * 1e3,
        "ms_per_repeat_step": per_repeat_step * 1e3,
        "window_ms": [w * 1e3 for w in windows],
        "images_per_s": config.batch_size / per_repeat_step,
        "evaluation_s_per_repeat": per_repeat_eval,
        "tflops": 6 * macs * config.batch_size / per_repeat_step / 1e12,
        "build_s": build_seconds,
        "warmup_s": warmup_seconds,
        "peak_gib": _peak_gib(setup),
    }
    row["fraction_of_bf16_peak"] = row["tflops"] / PEAK_BF16_TFLOPS
    for epochs in EPOCH_BUDGETS:
        row[f"run_{epochs}ep_s"] = (
            config.total_steps(epochs) * per_repeat_step + EVALUATIONS_PER_RUN * per_repeat_eval
        )
    if name in TPU_108_SECONDS and config == NB101:  # only the real network compares
        row["tpu_108ep_s"] = TPU_108_SECONDS[name]
        row["speedup_vs_tpu_108ep"] = TPU_108_SECONDS[name] / row["run_108ep_s"]
    del step, model, streams
    return row


# -- correctness on the device (before any timing) -------------------------------------------------


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
    model = _model(cell, setup, 1, channels_last=setup.cuda)
    stream = _streams(setup, 1, seed=7)[0]
    loss_sum = torch.zeros(1, device=setup.device)
    config = setup.config
    step = TrainStep(model, _optimizer(model, config), repeats=1, batch_size=config.batch_size,
                     total_steps=config.total_steps(4), base_lr=config.learning_rate, step=0,
                     loss_sum=loss_sum, channels_last=setup.cuda, use_graph=use_graph)
    states, losses = [], []
    for _ in range(steps):
        images, labels = stream.next_batch()
        step([images], [labels])
        _sync(setup.device)  # outside the step: the graph itself never syncs
        states.append({k: v.detach().float().cpu() for k, v in model.named_parameters()})
        losses.append(float(loss_sum[0]))
        loss_sum.zero_()
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
    initial = dict(_model(cell, setup, 1, channels_last=False).cpu().named_parameters())
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
    from farm.fast.trainer import train_fast, train_repeats_fused
    from farm.train import TrainJob, train

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
    from farm.fast.trainer import train_repeats_fused
    from farm.train import TrainJob

    jobs = [TrainJob(make_cell(CELLS["inception"]), epochs, repeat=r, config=config) for r in range(3)]
    t0 = time.perf_counter()
    fused = train_repeats_fused(jobs, _synthetic_data(), device=str(setup.device))
    accuracies = [r.metrics["final_validation_accuracy"] for r in fused]
    return {"cell": "check", "mode": "grouped fusion learns", "train_repeats_fused": accuracies,
            "seconds": time.perf_counter() - t0,
            "ok": min(accuracies) > 1.5 / config.num_labels if judge else None}


# -- whole-card throughput -----------------------------------------------------------------------


def run_concurrently(jobs: list[GraphStep], steps: int, setup: Setup) -> float:
    """Wall seconds for every job to take ``steps`` steps at once (a thread and a stream each)."""
    _sync(setup.device)
    barrier = threading.Barrier(len(jobs) + 1)
    errors: list[BaseException] = []

    def work(job: GraphStep) -> None:
        try:
            context = torch.cuda.stream(torch.cuda.Stream(setup.device)) if setup.cuda else _null()
            with context:
                barrier.wait()
                for _ in range(steps):
                    job()
                _sync(setup.device)
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    barrier.wait()
    t0 = time.perf_counter()
    for thread in threads:
        thread.join()
    _sync(setup.device)
    if errors:
        raise errors[0]
    return time.perf_counter() - t0


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def measure_mix(setup: Setup, budget: Budget, steps: int, counts: tuple[int, ...]) -> list[dict[str, Any]]:
    _reset_memory(setup)
    cells = {name: make_cell(entry) for name, entry in MIX.items()}
    jobs = []
    for i, (name, cell) in enumerate(cells.items()):
        model = _model(cell, setup, 1, channels_last=setup.cuda)
        job = GraphStep(model, setup, _streams(setup, 1, seed=50 + i))
        for _ in range(setup.warmup):  # capture now, in this thread
            job()
        jobs.append((name, job))
    _sync(setup.device)
    rows = []
    alone = {name: run_concurrently([job], steps, setup) for name, job in jobs}
    serial = sum(alone.values())
    images = len(jobs) * steps * setup.config.batch_size
    for n in counts:
        if n == 1:
            wall = serial
        else:
            if budget.left() < serial * 1.5:
                rows.append({"cell": "mix", "mode": f"N={n}", "skipped": "budget"})
                continue
            groups = [jobs[i : i + n] for i in range(0, len(jobs), n)]
            wall = sum(run_concurrently([job for _, job in group], steps, setup) for group in groups)
        rows.append({
            "cell": "mix", "mode": f"N={n} jobs/GPU", "jobs": len(jobs), "steps_per_job": steps,
            "wall_s": wall, "images_per_s": images / wall, "speedup_vs_N1": serial / wall,
            "alone_s": alone, "cells": {name: cells[name].hash for name in cells},
            "rule_jobs_per_gpu": {name: jobs_per_gpu(forward_flops(cells[name], setup.config))
                                  for name in cells},
            "peak_gib": _peak_gib(setup),
        })
    return rows


# -- torch.compile ----------------------------------------------------------------------------------


def measure_compile(setup: Setup, graph_row: dict[str, Any] | None) -> dict[str, Any]:
    """Compile cost and compiled step time of the median cell (bf16 + channels_last, eager step)."""
    _reset_memory(setup)
    cell = make_cell(CELLS["median"])
    model = _model(cell, setup, 1, channels_last=setup.cuda)
    step = EagerStep(model, setup, _streams(setup, 1, seed=77)[0], bf16=True)
    step.model = torch.compile(model)
    t0 = time.perf_counter()
    step()  # compiles forward and backward
    step()
    _sync(setup.device)
    compile_s = time.perf_counter() - t0
    per_step, _, _ = time_steps(step, setup, None)
    row: dict[str, Any] = {"cell": "median", "mode": "compiled-eager-bf16", "compile_s": compile_s,
                           "ms_per_step": per_step * 1e3, "images_per_s": setup.config.batch_size / per_step}
    if graph_row is not None and "ms_per_step" in graph_row:
        steps4 = setup.config.total_steps(4)
        row["run_4ep_train_s_compiled"] = compile_s + steps4 * per_step
        row["run_4ep_train_s_graph"] = steps4 * graph_row["ms_per_step"] / 1e3
        row["pays_off_at_4ep"] = row["run_4ep_train_s_compiled"] < row["run_4ep_train_s_graph"]
    return row


# -- output ---------------------------------------------------------------------------------------


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _rounded(value: Any) -> Any:
    """Floats to 6 significant digits, through nested lists and dicts (for the printed table)."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def render_table(rows: list[dict[str, Any]]) -> str:
    header = (f"{'cell':<10} {'mode':<20} {'ms/step':>8} {'img/s':>8} {'108ep min':>9} {'4ep s':>7} "
              f"{'TFLOP/s':>8} {'%peak':>6} {'GiB':>6}  note")
    lines = [header, "-" * len(header)]
    for row in rows:
        if "skipped" in row or "error" in row:
            lines.append(f"{row['cell']:<10} {row['mode']:<20} {row.get('skipped') or row.get('error')}")
            continue
        if row["cell"] == "check":
            details = {k: _rounded(v) for k, v in row.items() if k not in ("cell", "mode", "seconds", "what")}
            lines.append(f"{'check':<10} {row['mode']:<20} {json.dumps(details)}")
            continue
        note = ""
        if "speedup_vs_tpu_108ep" in row:
            note = f"{row['speedup_vs_tpu_108ep']:.1f}x TPU v2 ({row['tpu_108ep_s']:.0f} s)"
        if "speedup_vs_N1" in row:
            note = f"{row['speedup_vs_N1']:.2f}x N=1 throughput"
        if "compile_s" in row:
            note = f"compile {row['compile_s']:.0f} s; pays off at 4 ep: {row.get('pays_off_at_4ep', '?')}"
        ms = row.get("ms_per_repeat_step", row.get("ms_per_step"))
        lines.append(
            f"{row['cell']:<10} {row['mode']:<20} {_fmt(ms, '8.2f')} {_fmt(row.get('images_per_s'), '8.0f')} "
            f"{_fmt(row['run_108ep_s'] / 60 if 'run_108ep_s' in row else None, '9.2f')} "
            f"{_fmt(row.get('run_4ep_s'), '7.1f')} {_fmt(row.get('tflops'), '8.1f')} "
            f"{_fmt(row['fraction_of_bf16_peak'] * 100 if 'fraction_of_bf16_peak' in row else None, '6.1f')} "
            f"{_fmt(row.get('peak_gib'), '6.2f')}  {note}"
        )
    return "\n".join(lines)


def _check_detail(key: str, value: Any) -> str:
    if isinstance(value, float):
        return f"{key} {value:.3g}"
    if isinstance(value, dict) and "graph_vs_eager_rel" in value:  # graph == eager, one numerics
        return (f"{key}: graph vs eager {value['graph_vs_eager_rel'][-1]:.3g}, eager vs eager "
                f"{value['eager_vs_eager_rel'][-1]:.3g}, weights moved {value['weight_move_rel']:.3g} "
                f"(worst {value['graph_worst_parameter']})")
    return f"{key} {value}"


def render_markdown(result: dict[str, Any]) -> str:
    """The results as the markdown table docs/gpu.md and the README carry (no GPU needed)."""
    lines = [
        f"Measured on {result['card']}, torch {result['torch']} (CUDA {result['cuda']}), "
        f"{result['date_utc'][:10]}; `bench/gpu.py`, random images, batch {result['config']['batch_size']}.",
        "",
        "| cell | mode | ms/step (per repeat) | images/s | 108 epochs | 4 epochs | TFLOP/s | % of bf16 peak "
        "| peak GiB | vs TPU v2 (108 ep) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in result["rows"]:
        if "skipped" in row or "error" in row:
            lines.append(f"| {row['cell']} | {row['mode']} | {row.get('skipped') or row.get('error')} "
                         "| | | | | | | |")
            continue
        if row["cell"] == "check":
            details = ", ".join(_check_detail(k, v) for k, v in row.items()
                                if k not in ("cell", "mode", "seconds", "what"))
            lines.append(f"| check | {row['mode']} | {details} | | | | | | | |")
            continue
        if row["cell"] == "mix":
            lines.append(f"| mix of 4 | {row['mode']} | | {row['images_per_s']:.0f} | | | | | "
                         f"{_fmt(row.get('peak_gib'), '.1f')} | {row['speedup_vs_N1']:.2f}x N=1 |")
            continue
        if "compile_s" in row:
            lines.append(f"| {row['cell']} | {row['mode']} (compile {row['compile_s']:.0f} s) | "
                         f"{row['ms_per_step']:.2f} | {row['images_per_s']:.0f} | | | | | | "
                         f"pays off at 4 ep: {row.get('pays_off_at_4ep', '?')} |")
            continue
        versus = ""
        if "tpu_108ep_s" in row:
            versus = f"{row['speedup_vs_tpu_108ep']:.1f}x ({row['tpu_108ep_s']:.0f} s)"
        lines.append(
            f"| {row['cell']} | {row['mode']} | {row['ms_per_repeat_step']:.2f} | "
            f"{row['images_per_s']:.0f} | "
            f"{row['run_108ep_s'] / 60:.1f} min | {row['run_4ep_s']:.0f} s | {row['tflops']:.1f} | "
            f"{row['fraction_of_bf16_peak'] * 100:.1f} | {_fmt(row.get('peak_gib'), '.1f')} | {versus} |"
        )
    return "\n".join(lines)


def card_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def output_path(out: Path, card: str, quick: bool) -> Path:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", card).strip("-") or "unknown"
    # timezone.utc, not 3.11's dt.UTC: the device machine's Python version is not ours to choose.
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")  # noqa: UP017
    stem = f"gpu-{slug}-{date}" + ("-quick" if quick else "")
    path = out / f"{stem}.json"
    n = 2
    while path.exists():
        path = out / f"{stem}-{n}.json"
        n += 1
    return path


def make_setup(args: argparse.Namespace) -> Setup:
    quick = args.quick
    device = torch.device("cpu" if quick or not torch.cuda.is_available() else "cuda")
    if device.type == "cpu" and not quick:
        raise SystemExit("no CUDA device here: run with --quick for a CPU check of the script")
    # Quick: the smoke network at batch 8 -- every code path, seconds of CPU.
    config = NB101
    if quick:
        config = replace(SMOKE, batch_size=8, bn_shard_size=4, train_images=64, eval_images=16)
    generator = torch.Generator(device="cpu").manual_seed(0)
    train = torch.randint(0, 256, (config.train_images, 32, 32, 3), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, config.num_labels, (config.train_images,), generator=generator)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return Setup(
        config=config,
        device=device,
        windows=2 if quick else 3,
        window_seconds=0.05 if quick else args.window_seconds,
        warmup=2 if quick else 6,
        train_images=train.to(device),
        train_labels=labels.to(device),
        eval_images=train[: config.eval_images].to(device),
        eval_labels=labels[: config.eval_images].to(device),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="directory for the JSON")
    parser.add_argument("--quick", action="store_true", help="tiny config on the CPU (checks the script)")
    parser.add_argument("--budget-seconds", type=float, default=360.0,
                        help="stop starting new rows after this many seconds (default 360)")
    parser.add_argument("--cells", default=",".join(CELLS), help="subset of " + ",".join(CELLS))
    parser.add_argument("--modes", default=",".join(MODES), help="subset of " + ",".join(MODES))
    parser.add_argument("--steps", type=int, default=None, help="steps per timed window (default: ~1 s)")
    parser.add_argument("--window-seconds", type=float, default=1.0, help="target length of a timed window")
    parser.add_argument("--mix-steps", type=int, default=None, help="steps per job in the mix (default 60)")
    parser.add_argument("--no-mix", action="store_true")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--no-checks", action="store_true", help="skip the on-device correctness checks")
    parser.add_argument("--render-markdown", type=Path, metavar="JSON",
                        help="print a results file as a markdown table and exit (no GPU needed)")
    args = parser.parse_args(argv)
    if args.render_markdown is not None:
        print(render_markdown(json.loads(args.render_markdown.read_text())))
        return 0

    if args.quick:
        torch.set_num_threads(1)  # small CPU convs run faster on one thread than two fighting
        args.budget_seconds = min(args.budget_seconds, 50.0)
    budget = Budget(args.budget_seconds)
    setup = make_setup(args)
    print(f"device: {card_name(setup.device)}, torch {torch.__version__}, config {setup.config.name}, "
          f"budget {args.budget_seconds:.0f} s", flush=True)
    cells = [c for c in args.cells.split(",") if c]
    modes = [m for m in args.modes.split(",") if m]
    unknown = [c for c in cells if c not in CELLS] + [m for m in modes if m not in MODES]
    if unknown:
        parser.error(f"unknown cell or mode: {', '.join(unknown)}")
    if not setup.cuda:
        modes = [m for m in modes if m != "eager-bf16"]  # bf16 autocast is the CUDA path only
    # The large cell costs ~10x a median one: it needs more budget left to be worth starting.
    needs = {"large": 45.0} if setup.cuda else {}
    reserve = 0.0 if args.no_mix else 40.0 if setup.cuda else 2.0

    card = card_name(setup.device)
    args.out.mkdir(parents=True, exist_ok=True)
    path = output_path(args.out, card, args.quick)
    rows: list[dict[str, Any]] = []

    def save() -> None:
        """Rewrite the JSON after every row: a run cut short still leaves its rows."""
        result = {
            "card": card,
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if setup.cuda else None,
            "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),  # noqa: UP017
            "config": setup.config.to_dict(),
            "quick": args.quick,
            "peak_bf16_tflops_assumed": PEAK_BF16_TFLOPS,
            "tpu_108ep_s": TPU_108_SECONDS,
            "method": "CUDA-event timing of windows of steps after warm-up, median of 3 windows; eval "
                      "cost = one timed split x 3 splits x 3 evaluations per run; random uint8 images",
            "budget_seconds": args.budget_seconds,
            "used_seconds": budget.used(),
            "rows": rows,
        }
        path.write_text(json.dumps(result, indent=1) + "\n")

    def attempt(cell: str, mode: str, measure) -> list[dict[str, Any]]:
        try:
            result = measure()
            return result if isinstance(result, list) else [result]
        except Exception as exc:  # record and go on: one failing row must not lose the others
            traceback.print_exc()
            message = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:300]}"
            if setup.cuda:
                torch.cuda.empty_cache()
            return [{"cell": cell, "mode": mode, "error": message}]

    if not args.no_checks:
        rows.extend(attempt("check", "graph == eager", lambda: check_graph_equals_eager(setup)))
        # On the GPU the smoke profile for 4 epochs (it learns); --quick only exercises the code.
        learn_config = setup.config if args.quick else SMOKE
        rows.extend(attempt("check", "trainers learn",
                            lambda: check_trainers_learn(setup, 1 if args.quick else 4, learn_config,
                                                         judge=not args.quick)))
        print(render_table(rows[-2:]), flush=True)
        save()

    def measure_rows(pairs: list[tuple[str, str]], reserve: float) -> None:
        for name, mode in pairs:
            if budget.left() < needs.get(name, 15.0 if setup.cuda else 1.0) + reserve:
                new = [{"cell": name, "mode": mode, "skipped": "budget"}]
            else:
                cell = make_cell(CELLS[name])

                def measure(c=cell, n=name, m=mode):
                    return measure_row(n, c, m, setup, args.steps)

                new = attempt(name, mode, measure)
            rows.extend(new)
            save()
            print(render_table(new).splitlines()[-1], flush=True)

    order = [(name, mode) for name in ["median", "inception", "small", "large"] if name in cells
             for mode in modes]
    measure_rows([pair for pair in order if pair[1] not in LAST_MODES], reserve)

    if not args.no_mix:
        mix_steps = args.mix_steps or (2 if args.quick else 60)
        if budget.left() < (4.0 if not setup.cuda else 30.0):
            rows.append({"cell": "mix", "mode": "N=1,2,4", "skipped": "budget"})
        else:
            rows.extend(attempt("mix", "N=1,2,4", lambda: measure_mix(setup, budget, mix_steps, (1, 2, 4))))
        save()

    if not args.no_compile and not args.quick:
        graph_row = next((r for r in rows if r.get("cell") == "median" and r.get("mode") == "graph"), None)
        if budget.left() < COMPILE_NEEDS_SECONDS:
            rows.append({"cell": "median", "mode": "compiled-eager-bf16",
                         "skipped": f"budget (< {COMPILE_NEEDS_SECONDS:.0f} s left)"})
        else:
            rows.extend(attempt("median", "compiled-eager-bf16", lambda: measure_compile(setup, graph_row)))
        save()

    if not args.no_checks:
        rows.extend(attempt("check", "grouped fusion learns",
                            lambda: check_grouped_fusion_learns(setup, 1 if args.quick else 4, learn_config,
                                                                judge=not args.quick)))
        save()
    measure_rows([pair for pair in order if pair[1] in LAST_MODES], 0.0)

    print()
    print(f"{card} | torch {torch.__version__} | {budget.used():.0f} s | bf16 peak assumed "
          f"{PEAK_BF16_TFLOPS:.0f} TFLOP/s (H100/H200 datasheet) | per-repeat figures for fused rows")
    print(render_table(rows))
    save()
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
