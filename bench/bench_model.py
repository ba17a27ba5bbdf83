"""How fast can we size cells? Closed form (farm.cost) vs the meta-device module vs a real build.

Prints cells/s for each way over distinct sampled cells, and ratios against the baseline that
peers use (build the real PyTorch network on the CPU, default init, sum the numels), all in this
process. Usage: python3 bench/bench_model.py [--closed-form N] [--meta N] [--baseline N]
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from farm import cost
from farm.config import NB101
from farm.model import Network, count_parameters, meta_parameter_count
from farm.space import sample_cells
from farm.spec import cell_from_labels


class timed:
    """Wall and CPU seconds of a block; on a shared machine the CPU rate is the steadier one."""

    def __init__(self, label: str, count: int):
        self.label, self.count = label, count

    def __enter__(self) -> timed:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self.wall
        cpu = time.process_time() - self.cpu
        self.rate = self.count / cpu
        print(f"{self.label:<46} {self.count:>6} cells  wall {self.count / wall:10,.0f}/s"
              f"  cpu {self.rate:10,.0f}/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--closed-form", type=int, default=50_000)
    parser.add_argument("--meta", type=int, default=500)
    parser.add_argument("--baseline", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)

    sample = sample_cells(max(args.closed_form, args.meta, args.baseline), seed=0)
    cells = [cell_from_labels(c.matrix, c.labels) for c in sample[: max(args.meta, args.baseline)]]
    print(f"load: {os.getloadavg()[0]:.2f} (1-min average), torch threads: 1")

    # Baseline: the usual way -- build the real network (CPU, default init) and count.
    with timed("baseline: real CPU build + numel sum", args.baseline) as baseline:
        for cell in cells[: args.baseline]:
            network = Network(cell, NB101, device="cpu")
            for module in network.modules():  # PyTorch's default init, as a peer's model does
                if isinstance(module, torch.nn.Conv2d):
                    torch.nn.Conv2d.reset_parameters(module)
            count_parameters(network)

    with timed("meta-device module + numel sum", args.meta) as meta:
        for cell in cells[: args.meta]:
            meta_parameter_count(cell, NB101)

    with timed("describe record (meta + closed form + flops)", args.meta) as describe:
        for cell in cells[: args.meta]:
            meta_parameter_count(cell, NB101)
            cost.trainable_parameters(cell, NB101)
            cost.forward_flops(cell, NB101)

    cost._matrix_terms.cache_clear()
    with timed("closed form, cost_from_labels", args.closed_form) as closed:
        for c in sample[: args.closed_form]:
            cost.cost_from_labels(c.matrix, c.labels, NB101)

    cost._matrix_terms.cache_clear()
    with timed("closed form, trainable_parameters(Cell)", args.meta) as cell_api:
        for cell in cells[: args.meta]:
            cost.trainable_parameters(cell, NB101)

    for label, t in [("meta", meta), ("describe", describe), ("closed form", closed),
                     ("Cell API", cell_api)]:
        print(f"ratio {label} / baseline (cpu rates): {t.rate / baseline.rate:10.1f}x")


if __name__ == "__main__":
    main()
