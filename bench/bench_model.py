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


def rate(label: str, count: int, seconds: float) -> float:
    per_second = count / seconds
    print(f"{label:<48} {count:>7} cells {seconds:8.2f} s {per_second:12,.0f} cells/s")
    return per_second


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
    start = time.perf_counter()
    for cell in cells[: args.baseline]:
        with torch.device("cpu"):
            network = Network(cell, NB101)
            for module in network.modules():  # PyTorch's default init, as a peer's model does
                if isinstance(module, torch.nn.Conv2d):
                    torch.nn.Conv2d.reset_parameters(module)
        count_parameters(network)
    baseline = rate("baseline: real CPU build + numel sum", args.baseline, time.perf_counter() - start)

    start = time.perf_counter()
    for cell in cells[: args.meta]:
        meta_parameter_count(cell, NB101)
    meta = rate("meta-device module + numel sum", args.meta, time.perf_counter() - start)

    start = time.perf_counter()
    for cell in cells[: args.meta]:
        meta_parameter_count(cell, NB101)
        cost.trainable_parameters(cell, NB101)
        cost.forward_flops(cell, NB101)
    describe = rate("describe record (meta + closed form + flops)", args.meta,
                    time.perf_counter() - start)

    cost._network_cost.cache_clear()
    start = time.perf_counter()
    for c in sample[: args.closed_form]:
        cost.cost_from_labels(c.matrix, c.labels, NB101)
    closed = rate("closed form, cost_from_labels", args.closed_form, time.perf_counter() - start)

    cost._network_cost.cache_clear()
    start = time.perf_counter()
    for cell in cells[: args.meta]:
        cost.trainable_parameters(cell, NB101)
    cell_api = rate("closed form, trainable_parameters(Cell)", args.meta,
                    time.perf_counter() - start)

    print(f"ratio meta / baseline:        {meta / baseline:10.1f}x")
    print(f"ratio describe / baseline:    {describe / baseline:10.1f}x")
    print(f"ratio closed form / baseline: {closed / baseline:10.1f}x")
    print(f"ratio Cell API / baseline:    {cell_api / baseline:10.1f}x")


if __name__ == "__main__":
    main()
