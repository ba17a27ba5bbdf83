#!/usr/bin/env python3
"""How fast the fast training path is on one GPU (issue 8): eager vs CUDA graph vs repeat fusion.

For four cells -- small (the 10th percentile of forward FLOPs over the 423,624-cell space), the
median cell (the 50th percentile), the Inception-like cell (SPEC b.3) and the largest (49,979,274
parameters, also the most FLOPs) -- and four ways of running the same training step:

    eager-fp32     farm.train's step (farm.train.step.TrainStep, mode "eager") without autocast,
                   NCHW fp32 (cuDNN's default TF32 convs)
    eager-bf16     farm.train's CUDA step: bf16 autocast + channels_last, launched op by op
    graph          the fast trainer's step (mode "graph"): the whole step replayed as one CUDA graph
    fused3-graph   the 3 repeats as one network (farm.fused), graph-replayed (figures per repeat)
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
checkout, no installed package. This file is the entry (the command line and the order of rows);
the rest lives beside it: ``gpu_setup`` (cells, timing, the library's step fed by streams),
``gpu_checks`` (correctness on the device), ``gpu_measure`` (rows, mix, compile), ``gpu_report``.
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
import datetime as dt  # noqa: E402
import json  # noqa: E402
import traceback  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402

from bench.gpu_checks import (  # noqa: E402
    check_graph_equals_eager,
    check_grouped_fusion_learns,
    check_trainers_learn,
)
from bench.gpu_measure import measure_compile, measure_mix, measure_row  # noqa: E402
from bench.gpu_report import card_name, output_path, render_markdown, render_table  # noqa: E402
from bench.gpu_setup import (  # noqa: E402
    CELLS,
    COMPILE_NEEDS_SECONDS,
    LAST_MODES,
    MODES,
    PEAK_BF16_TFLOPS,
    TPU_108_SECONDS,
    Budget,
    make_cell,
    make_setup,
)
from farm.config import SMOKE  # noqa: E402


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
    setup = make_setup(args.quick, args.window_seconds)
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
