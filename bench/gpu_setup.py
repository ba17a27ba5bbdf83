"""bench/gpu.py's setting: the cells, the timing helpers and the library's step fed by streams.

Imports only torch/numpy/stdlib and farm (the device machine has a bare checkout).
"""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass, replace

import torch

from farm.augment import TrainStream
from farm.config import NB101, SMOKE, TrainConfig
from farm.fused import build_fused_network
from farm.model import build_network
from farm.spec import cell_from_labels
from farm.train.step import EvalStep, StepMode, TrainStep, eval_batch_size, nb101_optimizer

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


def sync(device: torch.device) -> None:
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



def make_streams(setup: Setup, repeats: int, seed: int) -> list[TrainStream]:
    return [
        TrainStream(setup.train_images, setup.train_labels, setup.config.batch_size,
                    order_seed=seed * 10 + r, augment_seed=seed * 10 + r + 5)
        for r in range(repeats)
    ]


def model_for(cell, setup: Setup, repeats: int, channels_last: bool):
    generators = [torch.Generator().manual_seed(100 + r) for r in range(repeats)]
    if repeats == 1:
        model = build_network(cell, setup.config, generator=generators[0])
    else:
        model = build_fused_network(cell, setup.config, generators)
    if channels_last:
        return model.to(setup.device, memory_format=torch.channels_last).train()
    return model.to(setup.device).train()


class StreamStep:
    """The library's training step (:class:`farm.train.step.TrainStep`) fed by its repeats'
    streams, as ``farm.train.run.Run.train_step`` feeds it. ``mode="eager"``: farm.train's step, op
    by op; ``"graph"``: the whole step replayed as one CUDA graph (``use_graph=False``: the same
    body eagerly). ``autocast`` (bf16) and ``channels_last`` apply on CUDA only, as in the trainers."""

    def __init__(self, model, setup: Setup, streams: list[TrainStream], *, mode: StepMode,
                 autocast: bool = True, channels_last: bool = True, use_graph: bool = True,
                 total_epochs: int = 108) -> None:
        self.streams = streams
        self.loss_sum = torch.zeros(len(streams), device=setup.device, dtype=torch.float32)
        self.step = TrainStep(
            model, nb101_optimizer(model.parameters(), setup.config), repeats=len(streams),
            batch_size=setup.config.batch_size, total_steps=setup.config.total_steps(total_epochs),
            base_lr=setup.config.learning_rate, step=0, loss_sum=self.loss_sum,
            autocast_dtype=torch.bfloat16 if autocast and setup.cuda else None,
            channels_last=channels_last and setup.cuda, mode=mode, use_graph=use_graph,
        )

    def __call__(self) -> None:
        batches = [stream.next_batch() for stream in self.streams]
        self.step([images for images, _ in batches], [labels for _, labels in batches])


def time_steps(step, setup: Setup, steps: int | None) -> tuple[float, list[float], float]:
    """(median seconds per step, each window's seconds per step, warm-up seconds).

    Warm-up steps first (cuDNN autotuning, graph capture), untimed; then a short calibration run
    sizes the windows to ~``setup.window_seconds`` each unless ``steps`` is given.
    """
    t0 = time.perf_counter()
    for _ in range(setup.warmup):
        step()
    sync(setup.device)
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
    # The fast trainer's evaluation for graph modes, farm.train's (eager, the training batch) else.
    batch = eval_batch_size(setup.config.eval_images, setup.config.batch_size) if use_graph else (
        setup.config.batch_size)
    evaluator = EvalStep(model, repeats=repeats, batch_size=batch,
                         autocast_dtype=torch.bfloat16 if bf16 and setup.cuda else None,
                         channels_last=bf16 and setup.cuda, mode="graph" if use_graph else "eager")
    images, labels = setup.eval_images, setup.eval_labels
    model.eval()
    try:
        with torch.no_grad():
            for _ in range(3):  # warm-up, capture, one replay
                evaluator(images[:batch], labels[:batch])
            sync(setup.device)
            evaluator.reset()
            with Timer(setup.device) as timer:
                for start in range(0, images.shape[0], batch):
                    evaluator(images[start : start + batch], labels[start : start + batch])
    finally:
        model.train()
    return 3 * timer.seconds


def reset_memory(setup: Setup) -> None:
    gc.collect()
    if setup.cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(setup.device)


def peak_gib(setup: Setup) -> float | None:
    return torch.cuda.max_memory_allocated(setup.device) / 2**30 if setup.cuda else None


def make_setup(quick: bool, window_seconds: float) -> Setup:
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
        window_seconds=0.05 if quick else window_seconds,
        warmup=2 if quick else 6,
        train_images=train.to(device),
        train_labels=labels.to(device),
        eval_images=train[: config.eval_images].to(device),
        eval_labels=labels[: config.eval_images].to(device),
    )

