"""How many training jobs share one GPU, from the cell's forward FLOPs.

A NAS-Bench-101 step on one GPU is a few milliseconds of many small kernels. Even with the step
replayed as a CUDA graph, a small cell's kernels (8x8 images, ~100 channels per vertex in the last
stack) cannot occupy all of an H100's 132 SMs, and the time between steps (data augmentation,
epoch-end and evaluation syncs) leaves the card idle. Running several jobs at once on separate CUDA
streams or processes (Ray fractional GPUs; CUDA MPS where the host allows it) fills those gaps;
for a large cell a second job only competes for the same SMs and memory bandwidth.

The rule is a step function of the work of one job per image, ``forward_flops`` (multiply-adds,
:func:`farm.cost.forward_flops`) times the repeats it trains at once (a repeat-fused job does R
times the work per step):

    work < 0.40 GMAC  -> 4 jobs per GPU    (the smallest 22% of the 423,624 cells)
    work < 1.20 GMAC  -> 2 jobs per GPU    (the next 48%; the median cell is 0.79 GMAC)
    otherwise         -> 1 job per GPU     (the largest 30%)

The thresholds are starting points chosen from the roofline arithmetic in the research notes (a
median cell's step is ~5 ms of GPU work at the memory roof, the size below which per-step gaps
become a large fraction); ``bench/gpu.py`` measures whole-card throughput for N = 1, 2, 4 jobs per
GPU and is how to recalibrate them for a card (``PackingRule``); it also reports each cell's peak
memory, which bounds the count on smaller cards.
"""

from __future__ import annotations

from dataclasses import dataclass

from farm.config import NB101, TrainConfig
from farm.cost import forward_flops
from farm.spec import Cell


@dataclass(frozen=True)
class PackingRule:
    """``(upper bound of work in MACs per image, jobs per GPU)`` steps, ascending; work at or
    above the last bound gets ``default_jobs``."""

    steps: tuple[tuple[int, int], ...] = ((400_000_000, 4), (1_200_000_000, 2))
    default_jobs: int = 1

    def __post_init__(self) -> None:
        bounds = [bound for bound, _ in self.steps]
        if bounds != sorted(bounds) or any(jobs < 1 for _, jobs in self.steps) or self.default_jobs < 1:
            raise ValueError("packing steps must ascend in work and give >= 1 job per GPU")

    @property
    def max_jobs_per_gpu(self) -> int:
        """The most jobs the rule ever puts on one GPU (the worker actors per GPU it needs)."""
        return max([jobs for _, jobs in self.steps] + [self.default_jobs])

    def jobs_per_gpu(self, work: int) -> int:
        for bound, jobs in self.steps:
            if work < bound:
                return jobs
        return self.default_jobs


DEFAULT_RULE = PackingRule()


def jobs_per_gpu(forward_macs: int, *, repeats: int = 1, rule: PackingRule = DEFAULT_RULE) -> int:
    """Concurrent jobs per GPU for a job of ``repeats`` fused repeats of a cell with
    ``forward_macs`` multiply-adds per image."""
    if forward_macs < 0 or repeats < 1:
        raise ValueError(f"need forward_macs >= 0 and repeats >= 1, got {forward_macs}, {repeats}")
    return rule.jobs_per_gpu(forward_macs * repeats)


def gpu_fraction(forward_macs: int, *, repeats: int = 1, rule: PackingRule = DEFAULT_RULE) -> float:
    """The Ray ``num_gpus`` of one such job: 1 / jobs per GPU (1.0, 0.5 or 0.25 by default)."""
    return 1.0 / jobs_per_gpu(forward_macs, repeats=repeats, rule=rule)


def jobs_per_gpu_for_cell(
    cell: Cell, config: TrainConfig = NB101, *, repeats: int = 1, rule: PackingRule = DEFAULT_RULE
) -> int:
    """:func:`jobs_per_gpu` from a cell (FLOPs from :func:`farm.cost.forward_flops`)."""
    return jobs_per_gpu(forward_flops(cell, config), repeats=repeats, rule=rule)
