"""`nasfarm search`: run NAS algorithms on a benchmark table and compare them (paper section 5)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click


def load_bench(source: str, db_url: str | None, seed: int):
    """A NASBench from 'synthetic[:SEED]', 'nb101-like[:SEED]', 'db:CAMPAIGN' or a record file."""
    from farm.api import NASBench
    from farm.records import RecordError
    from farm.tfrecord import TFRecordError

    if source == "synthetic" or source.startswith("synthetic:"):
        from farm.search.synthetic import synthetic_table

        table_seed = int(source.split(":", 1)[1]) if ":" in source else 0
        click.echo(f"building the synthetic table over the enumerated space (seed {table_seed})...", err=True)
        return NASBench(synthetic_table(table_seed), seed=seed, name=f"synthetic:{table_seed}")
    if source == "nb101-like" or source.startswith("nb101-like:"):
        from farm.search.nb101_like import nb101_like_table

        table_seed = int(source.split(":", 1)[1]) if ":" in source else 0
        click.echo(f"building the NAS-Bench-101-fitted table (seed {table_seed})...", err=True)
        return NASBench(nb101_like_table(table_seed), seed=seed, name=f"nb101-like:{table_seed}")
    if source.startswith("db:"):
        from db.nb101_io import campaign_records
        from nasfarm.cli.db import db_errors, open_engine

        campaign = source[3:]
        with db_errors():
            engine = open_engine(db_url)
            return NASBench(campaign_records(engine, campaign), seed=seed, name=f"campaign {campaign}")
    path = Path(source)
    if not path.exists():
        raise click.BadParameter(
            f"{source}: no such file (or use db:CAMPAIGN / synthetic)", param_hint="--source"
        )
    try:
        return NASBench(path, seed=seed, progress=sys.stderr.isatty())
    except (RecordError, TFRecordError) as exc:
        raise click.ClickException(str(exc)) from exc


@click.command("search")
@click.option("--algorithms", default="rs,re,reinforce,bohb,smac", show_default=True,
              help="Comma-separated: rs, rs_script, re, re_script, reinforce, bohb, smac.")
@click.option("--runs", type=click.IntRange(1), default=500, show_default=True, help="Runs per algorithm.")
@click.option("--budget", type=click.FloatRange(min=0, min_open=True), default=5e6, show_default=True,
              help="Simulated training seconds per run.")
@click.option("--source", required=True,
              help="A .tfrecord/.jsonl[.gz]/.parquet file, db:CAMPAIGN, synthetic[:SEED] or "
                   "nb101-like[:SEED].")
@click.option("--db", "db_url", envvar="NASFARM_DB", metavar="URL", default=None,
              help="Database URL for db: sources (default: $NASFARM_DB).")
@click.option("--epochs", type=int, default=None,
              help="The full training budget (default: the table's largest).")
@click.option("--workers", type=click.IntRange(1), default=None, help="Processes (default: all CPUs).")
@click.option("--seed", type=int, default=0, show_default=True, help="Run i uses seed SEED+i.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Output folder.")
def search_cmd(algorithms, runs, budget, source, db_url, epochs, workers, seed, out_dir) -> None:
    """Run each algorithm RUNS times; write traces.csv, runs.csv, summary.csv, comparison.json and
    regret.png, and test each algorithm's final regret against random search's.

    The table may cover only some cells (a pilot, a campaign in progress, a public subset): the
    algorithms then search the cells it covers, and the regret is relative to its best cell."""
    from farm.api import CellNotFinishedError, OutOfDomainError
    from farm.search import ALGORITHMS
    from farm.search.coverage import coverage_of
    from farm.search.report import plot, summarise, time_grid, write_summary, write_traces
    from farm.search.runner import run_many

    names = [a.strip() for a in algorithms.split(",") if a.strip()]
    unknown = [a for a in names if a not in ALGORITHMS]
    if unknown or not names:
        raise click.BadParameter(f"unknown {unknown}; choose from {', '.join(ALGORITHMS)}",
                                 param_hint="--algorithms")
    bench = load_bench(source, db_url, seed)
    if not bench.valid_epochs:
        raise click.ClickException(f"{bench.name} has no finished results to search")
    if epochs is None:
        epochs = max(bench.valid_epochs)
    if epochs not in bench.valid_epochs:
        raise click.BadParameter(f"the table has budgets {sorted(bench.valid_epochs)}", param_hint="--epochs")
    coverage = coverage_of(bench, epochs)
    click.echo(coverage.line())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        results = run_many(bench, names, runs=runs, budget=budget, epochs=epochs, seed=seed, workers=workers)
    except OutOfDomainError as exc:
        raise click.ClickException(str(exc)) from exc
    except CellNotFinishedError as exc:  # the algorithms only query covered cells: a bug if seen
        raise click.ClickException(f"{exc} (a search queried a cell outside the table)") from exc
    wall = time.perf_counter() - start
    write_traces(results, out / "traces.csv")
    with open(out / "runs.csv", "w") as handle:
        handle.write("algorithm,run,seed,queries,time_spent,epochs_spent,final_regret,wall_seconds,"
                     "fallbacks,settled\n")
        for r in results:
            final = r.trace[-1].regret if r.trace else float("nan")
            handle.write(f"{r.algorithm},{r.run},{r.seed},{r.queries},{r.time_spent:.3f},{r.epochs_spent},"
                         f"{final:.8f},{r.wall_seconds:.3f},{r.fallbacks},{int(r.settled)}\n")
    grid = time_grid(results)
    summary = summarise(results, grid)
    write_summary(summary, grid, out / "summary.csv")
    plot(summary, grid, out / "regret.png",
         title=f"{bench.name}: {runs} runs, budget {budget:.3g} s, {epochs} epochs",
         subtitle=_coverage_caption(coverage))
    finals: dict[str, list[float]] = {}
    for name in names:
        finals[name] = [r.trace[-1].regret for r in results if r.algorithm == name and r.trace]
        mean = sum(finals[name]) / len(finals[name]) if finals[name] else float("nan")
        click.echo(f"{name:10s} mean final test regret {mean:.5f} over {len(finals[name])} runs")
    comparisons = _compare_to_random_search(finals)
    (out / "comparison.json").write_text(json.dumps(
        {"table": coverage.as_dict(), "comparisons": [c.as_dict() for c in comparisons]}, indent=2))
    (out / "meta.json").write_text(json.dumps({
        "source": bench.name, "table": coverage.as_dict(), "algorithms": names, "runs": runs,
        "budget": budget, "epochs": epochs,
        "fallbacks": {k: sum(r.fallbacks for r in results if r.algorithm == k) for k in names},
        "settled_runs": {k: sum(r.settled for r in results if r.algorithm == k) for k in names},
        "seed": seed, "workers": workers, "wall_seconds": round(wall, 2),
        "mean_final_regret": {k: (sum(v) / len(v) if v else None) for k, v in finals.items()},
    }, indent=2))
    click.echo(f"{len(results)} runs in {wall:.1f} s; wrote traces.csv, summary.csv, runs.csv, "
               f"comparison.json, regret.png in {out}")


def _coverage_caption(coverage) -> str:
    """One line under the regret plot's title: what part of the space the table covers."""
    from farm.search.coverage import share_text

    if coverage.complete:
        return f"table covers all {coverage.space_cells:,} cells; regret vs its best cell"
    return (f"table covers {coverage.cells:,} of {coverage.space_cells:,} cells "
            f"({share_text(coverage.fraction)}), budgets {', '.join(map(str, coverage.table_budgets))}; "
            "searched those cells only, regret vs "
            "the best cell in the table")


def _compare_to_random_search(finals: dict[str, list[float]]) -> list:
    """Print and return each algorithm's test against random search (farm.search.stats)."""
    from farm.search.stats import ALPHA, MARGIN, compare

    if "rs" not in finals or len(finals) < 2 or min(len(v) for v in finals.values()) < 2:
        return []
    if max(finals["rs"]) <= 0.0:  # a small table: every RS run ended on its best cell
        click.echo("Final regret vs random search: not tested, every rs run found the table's best cell "
                   "(regret 0; a ratio to it is undefined). A larger table or a smaller --budget "
                   "separates them.")
        return []
    click.echo(f"Final regret vs random search: one-sided Mann-Whitney U (lower than RS at p < {ALPHA}); "
               f"bootstrap {1 - ALPHA:.0%} interval of the mean ratio (within RS's margin: inside "
               f"[{1 - MARGIN:.2f}, {1 + MARGIN:.2f}])")
    comparisons = compare(finals)
    for comparison in comparisons:
        click.echo("  " + comparison.line())
    return comparisons
