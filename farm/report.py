"""A campaign's report: the plots a researcher would otherwise make by hand, as PNG plus one HTML page.

Pure presentation over plain rows, so it is testable without a database: the CLI reads the rows from
the monitoring views (``nb101_results``, ``campaign_progress``) and the completion times.
"""

from __future__ import annotations

import html
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402

BUDGET_COLOURS = {4: "tab:blue", 12: "tab:orange", 36: "tab:green", 108: "tab:red"}


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_progress(finished_at: Sequence[float], total_jobs: int, path: Path) -> Path:
    """Cumulative finished jobs over wall-clock hours since the first completion."""
    fig, ax = plt.subplots(figsize=(6, 4))
    times = sorted(finished_at)
    if times:
        start = times[0]
        hours = [(t - start) / 3600 for t in times]
        ax.step(hours, range(1, len(times) + 1), where="post", label="done")
        ax.axhline(total_jobs, color="grey", linestyle="--", label=f"total ({total_jobs:,})")
        ax.legend()
    ax.set_xlabel("hours since first result")
    ax.set_ylabel("jobs done")
    ax.set_title("Campaign progress")
    return _save(fig, path)


def plot_throughput(finished_at: Sequence[float], path: Path, *, bins: int = 24) -> Path:
    """Jobs finished per hour, in equal bins over the campaign's span."""
    fig, ax = plt.subplots(figsize=(6, 4))
    times = sorted(finished_at)
    if len(times) >= 2:
        start, end = times[0], times[-1]
        span = max(end - start, 1e-9)
        n = max(1, min(bins, len(times)))
        counts = [0] * n
        for t in times:
            counts[min(n - 1, int((t - start) / span * n))] += 1
        width_hours = span / n / 3600
        centres = [(i + 0.5) * width_hours for i in range(n)]
        ax.bar(centres, [c / width_hours for c in counts], width=width_hours * 0.9)
    ax.set_xlabel("hours since first result")
    ax.set_ylabel("jobs per hour")
    ax.set_title("Throughput")
    return _save(fig, path)


def _by_budget(results: Sequence[Mapping[str, Any]], key: str) -> dict[int, list[tuple[float, float]]]:
    points: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for row in results:
        params, value = row.get("trainable_parameters"), row.get(key)
        if params and value is not None and not (isinstance(value, float) and math.isnan(value)):
            points[int(row["epochs"])].append((float(params), float(value)))
    return points


def plot_metric_vs_parameters(
    results: Sequence[Mapping[str, Any]], key: str, ylabel: str, title: str, path: Path
) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    for epochs, points in sorted(_by_budget(results, key).items()):
        xs, ys = zip(*points, strict=True)
        ax.scatter(xs, ys, s=12, alpha=0.7, label=f"{epochs} epochs",
                   color=BUDGET_COLOURS.get(epochs))
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels collide
    ax.set_xlabel("trainable parameters")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if ax.collections:
        ax.legend()
    return _save(fig, path)


def plot_accuracy_by_budget(results: Sequence[Mapping[str, Any]], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    groups = _by_budget(results, "final_test_accuracy")
    budgets = sorted(groups)
    if budgets:
        ax.boxplot([[y for _, y in groups[b]] for b in budgets], tick_labels=[str(b) for b in budgets])
    ax.set_xlabel("epoch budget")
    ax.set_ylabel("final test accuracy")
    ax.set_title("Accuracy by epoch budget")
    return _save(fig, path)


def write_report(
    out_dir: str | Path,
    *,
    campaign: str,
    progress: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    finished_at: Sequence[float],
    note: str | None = None,
) -> Path:
    """Write the PNGs and ``index.html`` into ``out_dir``; return the HTML page's path. ``note``:
    a line shown under the title (e.g. that the campaign trained on synthetic data)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    total = int(progress.get("total") or 0)
    figures = [
        ("Progress", plot_progress(finished_at, total, out / "progress.png")),
        ("Throughput", plot_throughput(finished_at, out / "throughput.png")),
        ("Test accuracy vs parameters", plot_metric_vs_parameters(
            results, "final_test_accuracy", "final test accuracy", "Accuracy vs parameters",
            out / "accuracy_vs_parameters.png")),
        ("Training time vs parameters", plot_metric_vs_parameters(
            results, "final_training_time", "training time (s)", "Training time vs parameters",
            out / "training_time_vs_parameters.png")),
        ("Accuracy by epoch budget", plot_accuracy_by_budget(results, out / "accuracy_by_budget.png")),
    ]
    correlation = plot_budget_rank_correlation(results, out / "budget_rank_correlation.png")
    if correlation is not None:  # two budgets or more with cells in common
        figures.append(correlation)
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in progress.items()
    )
    best = sorted(
        (r for r in results if r.get("final_validation_accuracy") is not None),
        key=lambda r: -float(r["final_validation_accuracy"]),
    )[:10]
    best_rows = "".join(
        "<tr>" + "".join(
            f"<td>{html.escape(str(r.get(k)))}</td>"
            for k in ("module_hash", "epochs", "repeat", "trainable_parameters",
                      "final_validation_accuracy", "final_test_accuracy", "final_training_time")
        ) + "</tr>"
        for r in best
    )
    images = "".join(
        f'<figure><img src="{p.name}" alt="{html.escape(t)}">'
        f"<figcaption>{html.escape(t)}</figcaption></figure>"
        for t, p in figures
    )
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>nasfarm report: {html.escape(campaign)}</title>
<style>body{{font-family:sans-serif;margin:2em}} figure{{display:inline-block;margin:1em}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:2px 8px;text-align:left}}</style>
</head><body>
<h1>Campaign {html.escape(campaign)}</h1>
{f'<p><strong>{html.escape(note)}</strong></p>' if note else ''}
<h2>Progress</h2><table>{rows}</table>
<h2>Figures</h2>{images}
<h2>Best cells by final validation accuracy</h2>
<table><tr><th>hash</th><th>epochs</th><th>repeat</th><th>parameters</th><th>validation</th>
<th>test</th><th>training time (s)</th></tr>{best_rows}</table>
</body></html>
"""
    index = out / "index.html"
    index.write_text(page)
    return index


def plot_budget_rank_correlation(
    results: Sequence[Mapping[str, Any]], path: Path
) -> tuple[str, Path] | None:
    """Mean validation accuracy at each budget against the next one, over the cells trained at both,
    with Spearman's rank correlation (NAS-Bench-101's paper shows it for its budgets; an adaptive
    campaign's promotions bet on it). Returns (caption, PNG) or None with fewer than two budgets."""
    from farm.adaptive import budget_rank_correlations

    pairs = [c for c in budget_rank_correlations(results) if c.cells]
    if not pairs:
        return None
    means: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in results:
        if row.get("final_validation_accuracy") is not None:
            means[int(row["epochs"])][str(row["module_hash"])].append(float(row["final_validation_accuracy"]))
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.2 * len(pairs), 4), squeeze=False)
    for ax, pair in zip(axes[0], pairs, strict=True):
        low, high = means[pair.lower], means[pair.higher]
        common = sorted(set(low) & set(high))
        ax.scatter([sum(low[h]) / len(low[h]) for h in common], [sum(high[h]) / len(high[h]) for h in common],
                   s=8, alpha=0.6, color=BUDGET_COLOURS.get(pair.higher, "tab:purple"))
        rho = "n/a" if pair.spearman is None else f"{pair.spearman:.3f}"
        ax.set_title(f"{pair.lower} -> {pair.higher} epochs: Spearman {rho} ({pair.cells} cells)", fontsize=9)
        ax.set_xlabel(f"mean validation accuracy, {pair.lower} epochs")
        ax.set_ylabel(f"mean validation accuracy, {pair.higher} epochs")
    summary = "; ".join(f"{c.lower}->{c.higher}: {'n/a' if c.spearman is None else f'{c.spearman:.3f}'}"
                        f" over {c.cells} cells" for c in pairs)
    return f"Rank correlation between budgets (Spearman {summary})", _save(fig, path)
