"""What an adaptive campaign buys: recall of the best cells against the compute it spends.

On synthetic tables over the whole space (423,624 cells, 4/12/36/108 epochs, 3 repeats) whose
correlation between budgets is known -- ``farm.search.nb101_like`` (fitted to NAS-Bench-101's
budget correlations) and ``farm.search.synthetic`` (the default synthetic table) -- replay a
rounds-mode adaptive campaign (``farm.adaptive.successive_halving``: every cell at 4 epochs, the top
fraction f of each budget's cells by mean validation accuracy over their repeats promoted to the
next) and report, for f = 10/25/50%:

- recall: the fraction of the true top-1% cells (by mean validation accuracy at 108 epochs over the
  3 repeats, i.e. what the full grid would rank them by) that the campaign trains at 108 epochs;
  also by mean test accuracy at 108;
- compute: the campaign's cost (cell FLOPs x epochs x repeats, summed over the jobs it trains, as
  ``campaign_eta`` prices a job) as a fraction of the full grid's.

Before that, the replay is held to the database: on a sample of cells (``--check-cells``) the same
table's numbers are stored as results of a real adaptive campaign on SQLite and decided by
``JobQueue.promote_ready_budgets``; the cells it trains at each budget must be the replay's.

Usage: python3 bench/adaptive_campaigns.py [--tables nb101-like,synthetic] [--seed 0] [--check-cells 300]
"""

from __future__ import annotations

import os
import sys

# Run as a script, this folder comes first on sys.path; drop it (bench/ modules must not shadow).
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from farm.adaptive import PromotionRule, successive_halving  # noqa: E402

BUDGETS = (4, 12, 36, 108)
FRACTIONS = ("10%", "25%", "50%")
TOP = 0.01


def build_table(name: str, seed: int):
    if name == "nb101-like":
        from farm.search.nb101_like import nb101_like_table

        return nb101_like_table(seed)
    from farm.search.synthetic import synthetic_table

    return synthetic_table(seed)


def space_flops() -> dict[str, int]:
    """Forward FLOPs of every cell (farm.cost), the price a job pays per epoch."""
    from farm.cost import cost_from_labels
    from farm.space import enumerate_cells

    return {cell.hash: int(cost_from_labels(cell.matrix, cell.labels)[1]) for cell in enumerate_cells()}


def means_by_budget(table, rows: np.ndarray | None = None) -> dict[int, dict[str, float]]:
    rows = np.arange(len(table.hashes)) if rows is None else rows
    out = {}
    for budget in BUDGETS:
        values = table.mean(budget, "final_validation_accuracy")[rows]
        out[budget] = {table.hashes[i]: float(v) for i, v in zip(rows, values, strict=True)}
    return out


def spearman_between_budgets(table) -> list[tuple[int, int, float]]:
    from scipy.stats import spearmanr

    pairs = []
    for low, high in zip(BUDGETS, BUDGETS[1:], strict=False):
        a = table.mean(low, "final_validation_accuracy")
        b = table.mean(high, "final_validation_accuracy")
        pairs.append((low, high, float(spearmanr(a, b)[0])))
    return pairs


def measure(table, flops: dict[str, int]) -> list[dict]:
    means = means_by_budget(table)
    cells = table.hashes
    cost = np.array([flops[h] for h in cells], dtype=np.float64)
    index = {h: i for i, h in enumerate(cells)}
    grid = cost.sum() * sum(BUDGETS)  # x repeats on both sides: it cancels
    k = int(round(TOP * len(cells)))
    by = {}
    for key in ("final_validation_accuracy", "final_test_accuracy"):
        values = table.mean(108, key)
        order = sorted(range(len(cells)), key=lambda i: (-values[i], cells[i]))
        by[key] = {cells[i] for i in order[:k]}
    rows = []
    for text in FRACTIONS:
        rule = PromotionRule.parse(text)
        trained = successive_halving(means, BUDGETS, rule)
        spent = sum(cost[[index[h] for h in trained[b]]].sum() * b for b in BUDGETS)
        last = set(trained[108])
        rows.append({
            "fraction": text, "cells_at_108": len(last), "compute": spent / grid,
            "recall_validation": len(by["final_validation_accuracy"] & last) / k,
            "recall_test": len(by["final_test_accuracy"] & last) / k, "top": k,
        })
    return rows


def check_against_database(table, cells: int, seed: int) -> float:
    """Store ``cells`` sampled cells' numbers as a real adaptive campaign's results (SQLite) and let
    the database decide; its trained cells must be the replay's. Returns the seconds it took."""
    from db.engine import make_engine
    from db.migrate import upgrade
    from db.queue import JobQueue
    from farm.api import METRIC_KEYS
    from farm.config import SMOKE
    from farm.space import enumerate_cells
    from nasfarm.campaigns import create_campaign

    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(table.hashes), size=cells, replace=False))
    chosen = {table.hashes[i] for i in rows}
    specs = [c for c in enumerate_cells() if c.hash in chosen]
    row_of = {table.hashes[i]: i for i in rows}
    metric = {b: table.metrics[b] for b in BUDGETS}
    keys = list(METRIC_KEYS)
    with tempfile.TemporaryDirectory() as folder:
        engine = make_engine(f"sqlite:///{folder}/check.db")
        upgrade(engine)
        for text in FRACTIONS:
            name = f"check-{text.rstrip('%')}"
            create_campaign(engine, name, specs, epochs=BUDGETS, repeats=3, profile=SMOKE.to_dict(),
                            order="as-given", promote=PromotionRule.parse(text))
            queue = JobQueue(engine, backoff_base=0)
            while True:
                jobs = queue.claim(100_000, "bench", campaigns=[name])
                if not jobs:
                    if not queue.promote_ready_budgets([name]).jobs_added:
                        break
                    continue
                for job in jobs:
                    numbers = metric[job.epochs][row_of[job.cell_hash], job.repeat]
                    values = dict(zip(keys, numbers, strict=True))
                    result = {"metrics": {"trainable_parameters": 1, **values,
                                          "total_time": values["final_training_time"]}, "evaluations": []}
                    assert queue.complete(job.job_id, job.lease_token, result)
            expected = successive_halving(means_by_budget(table, rows), BUDGETS, PromotionRule.parse(text))
            with engine.connect() as conn:
                for budget in BUDGETS:
                    got = {h for (h,) in conn.exec_driver_sql(
                        "SELECT DISTINCT cl.hash FROM jobs j JOIN campaigns c ON c.id = j.campaign_id "
                        "JOIN cells cl ON cl.id = j.cell_id "
                        f"WHERE c.name = '{name}' AND j.epochs = {budget}")}
                    if got != set(expected[budget]):
                        raise SystemExit(f"database and replay differ at {budget} epochs for {text}: "
                                         f"{len(got)} vs {len(expected[budget])} cells")
        engine.dispose()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", default="nb101-like,synthetic")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check-cells", type=int, default=300, help="0: skip the database check")
    args = parser.parse_args()
    clock = time.perf_counter()
    flops = space_flops()
    print(f"FLOPs of {len(flops):,} cells in {time.perf_counter() - clock:.1f} s; 1-min load "
          f"{os.getloadavg()[0]:.1f}")
    for name in args.tables.split(","):
        clock = time.perf_counter()
        table = build_table(name, args.seed)
        print(f"\n{name} table (seed {args.seed}): {len(table.hashes):,} cells, built in "
              f"{time.perf_counter() - clock:.1f} s")
        print("Spearman of mean validation accuracy between budgets: "
              + ", ".join(f"{a}->{b} {rho:.3f}" for a, b, rho in spearman_between_budgets(table)))
        if args.check_cells:
            seconds = check_against_database(table, args.check_cells, args.seed)
            print(f"database check: {args.check_cells} cells x {len(FRACTIONS)} fractions decided by "
                  f"promote_ready_budgets on SQLite = the replay at every budget ({seconds:.1f} s)")
        rows = measure(table, flops)
        print("\n| promote | cells at 108 | compute (of the full grid) | recall of top 1% by validation "
              "| by test |\n|---|---|---|---|---|")
        for row in rows:
            print(f"| {row['fraction']} | {row['cells_at_108']:,} | {100 * row['compute']:.2f}% | "
                  f"{100 * row['recall_validation']:.1f}% | {100 * row['recall_test']:.1f}% |")
        print(f"(top 1% = {rows[0]['top']:,} cells)")


if __name__ == "__main__":
    main()
