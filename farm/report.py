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

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402

from farm.figures import (  # noqa: E402
    bin_width,
    duration_text,
    integer_axis,
    no_data,
    readable_log_axis,
    time_unit,
    width_text,
)

BUDGET_COLOURS = {4: "tab:blue", 12: "tab:orange", 36: "tab:green", 108: "tab:red"}


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_progress(finished_at: Sequence[float], total_jobs: int, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    draw_progress(ax, finished_at, total_jobs)
    return _save(fig, path)


def draw_progress(ax: Any, finished_at: Sequence[float], total_jobs: int) -> None:
    """Cumulative finished jobs over wall-clock time since the first completion, in the unit that
    fits the span; whole-number job counts."""
    times = sorted(finished_at)
    ax.set_title("Campaign progress")
    if not times:
        no_data(ax)
        return
    start = times[0]
    size, name, _ = time_unit(times[-1] - start)
    elapsed = [(t - start) / size for t in times]
    ax.step([0.0, *elapsed], [0, *range(1, len(times) + 1)], where="post", label="done", zorder=3)
    ax.axhline(total_jobs, color="grey", linestyle="--", label=f"total ({total_jobs:,})")
    ax.set_xlim(0, max(elapsed[-1], 1.0) * 1.02)
    ax.set_ylim(0, max(total_jobs, len(times)) * 1.05 + 0.5)
    integer_axis(ax.yaxis)
    ax.legend(loc="lower right")
    ax.set_xlabel(f"time since the first result ({name})")
    ax.set_ylabel("jobs done")


def plot_throughput(finished_at: Sequence[float], path: Path, *, max_bins: int = 12) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    draw_throughput(ax, finished_at, max_bins=max_bins)
    return _save(fig, path)


def draw_throughput(ax: Any, finished_at: Sequence[float], *, max_bins: int = 12) -> None:
    """Jobs finished in each bin of a round width (1 s ... 1 week, at most ``max_bins`` bins): counts,
    not rates extrapolated to an hour the campaign never ran."""
    times = sorted(finished_at)
    if not times:
        ax.set_title("Throughput")
        no_data(ax)
        return
    start, span = times[0], times[-1] - times[0]
    width = bin_width(span, max_bins)
    bins = int(span // width) + 1
    counts = [0] * bins
    for t in times:
        counts[min(bins - 1, int((t - start) // width))] += 1
    size, name, _ = time_unit(max(span, width))
    ax.bar([(i + 0.5) * width / size for i in range(bins)], counts, width=0.9 * width / size)
    integer_axis(ax.yaxis)
    ax.set_xlim(0, bins * width / size)
    ax.set_xlabel(f"time since the first result ({name})")
    ax.set_ylabel(f"jobs finished per {width_text(width)}")
    rate = f"; {len(times) / (span / 3600):,.1f} jobs per hour" if span >= 3600 else ""
    ax.set_title(f"Throughput: {len(times):,} jobs in {duration_text(span)}{rate}")


def _by_budget(results: Sequence[Mapping[str, Any]], key: str) -> dict[int, list[tuple[float, float]]]:
    points: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for row in results:
        params, value = row.get("trainable_parameters"), row.get(key)
        if params and value is not None and not (isinstance(value, float) and math.isnan(value)):
            points[int(row["epochs"])].append((float(params), float(value)))
    return points


def plot_metric_vs_parameters(
    results: Sequence[Mapping[str, Any]], key: str, ylabel: str, title: str, path: Path,
    *, time_axis: bool = False,
) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    draw_metric_vs_parameters(ax, results, key, ylabel, title, time_axis=time_axis)
    return _save(fig, path)


def draw_metric_vs_parameters(
    ax: Any, results: Sequence[Mapping[str, Any]], key: str, ylabel: str, title: str,
    *, time_axis: bool = False,
) -> None:
    """One point per finished job against its trainable parameters (log axis with labelled ticks
    whatever the range). ``time_axis``: the metric is seconds, shown in the unit that fits."""
    ax.set_title(title)
    groups = _by_budget(results, key)
    if not groups:
        no_data(ax)
        return
    values = [y for points in groups.values() for _, y in points]
    size, unit = (time_unit(max(values))[:2]) if time_axis else (1.0, "")
    for epochs, points in sorted(groups.items()):
        xs, ys = zip(*points, strict=True)
        ax.scatter(xs, [y / size for y in ys], s=12, alpha=0.7, label=f"{epochs} epochs",
                   color=BUDGET_COLOURS.get(epochs))
    ax.set_xscale("log")
    readable_log_axis(ax.xaxis, [x for points in groups.values() for x, _ in points])
    ax.set_xlabel("trainable parameters")
    ax.set_ylabel(f"{ylabel} ({unit})" if time_axis else ylabel)
    ax.legend()


def plot_accuracy_by_budget(results: Sequence[Mapping[str, Any]], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    draw_accuracy_by_budget(ax, results)
    return _save(fig, path)


def draw_accuracy_by_budget(ax: Any, results: Sequence[Mapping[str, Any]]) -> None:
    ax.set_title("Accuracy by epoch budget")
    groups = _by_budget(results, "final_test_accuracy")
    budgets = sorted(groups)
    if not budgets:
        no_data(ax)
        return
    ax.boxplot([[y for _, y in groups[b]] for b in budgets], tick_labels=[str(b) for b in budgets])
    ax.set_xlabel("epoch budget")
    ax.set_ylabel("final test accuracy")


def best_cells(results: Sequence[Mapping[str, Any]], top: int = 6) -> list[dict[str, Any]]:
    """The ``top`` cells by mean final validation accuracy over their repeats at the largest budget
    any result has: hash, matrix, ops, parameters, repeats, mean validation and test accuracy."""
    finished = [r for r in results if r.get("final_validation_accuracy") is not None
                and r.get("module_adjacency") is not None]
    if not finished:
        return []
    largest = max(int(r["epochs"]) for r in finished)
    cells: dict[str, dict[str, Any]] = {}
    for row in finished:
        if int(row["epochs"]) != largest:
            continue
        cell = cells.setdefault(row["module_hash"], {
            "module_hash": row["module_hash"], "epochs": largest, "matrix": row["module_adjacency"],
            "ops": list(row["module_operations"]), "trainable_parameters": row.get("trainable_parameters"),
            "validation": [], "test": [],
        })
        cell["validation"].append(float(row["final_validation_accuracy"]))
        if row.get("final_test_accuracy") is not None:
            cell["test"].append(float(row["final_test_accuracy"]))
    ranked = []
    for cell in cells.values():
        cell["repeats"] = len(cell["validation"])
        cell["mean_validation"] = sum(cell.pop("validation")) / cell["repeats"]
        tests = cell.pop("test")
        cell["mean_test"] = sum(tests) / len(tests) if tests else None
        ranked.append(cell)
    ranked.sort(key=lambda c: (-c["mean_validation"], c["module_hash"]))
    return ranked[:top]


def plot_best_cells(results: Sequence[Mapping[str, Any]], path: Path, *, top: int = 6) -> Path:
    """The best cells drawn as NAS-Bench-101's paper draws them (farm.draw), ranked by mean
    validation accuracy at the largest budget."""
    from farm.draw import draw_cell

    cells = best_cells(results, top)
    columns = max(1, min(3, len(cells)))
    rows = max(1, math.ceil(len(cells) / columns))
    height = 4.4 * rows + 0.5
    fig, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, height), squeeze=False)
    # Laid out before drawing: farm.draw measures the boxes in the axes' final size.
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.95 / height, wspace=0.05,
                        hspace=0.55 / 4.4 * rows)
    if not cells:
        axes[0][0].set_title("Best cells")
        no_data(axes[0][0])
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path
    fig.suptitle(f"Best {len(cells)} cells by mean validation accuracy at {cells[0]['epochs']} epochs")
    for index, ax in enumerate(axes.flat):
        if index >= len(cells):
            ax.set_axis_off()
            continue
        cell = cells[index]
        test = f", test {cell['mean_test']:.4f}" if cell["mean_test"] is not None else ""
        params = cell["trainable_parameters"]
        draw_cell(ax, cell["matrix"], short_ops(cell["ops"]), fontsize=8.0, title=(
            f"#{index + 1} {cell['module_hash'][:12]}  validation {cell['mean_validation']:.4f}{test}\n"
            f"{'' if params is None else f'{int(params):,} parameters, '}{cell['repeats']} repeat(s)"))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def coverage_line(results: Sequence[Mapping[str, Any]]) -> str:
    """Which cells the results cover, per budget, against the whole space (what ``nasfarm search``
    on this campaign will search)."""
    from farm.search.coverage import SPACE_CELLS, share_text

    cells: dict[int, set[str]] = defaultdict(set)
    for row in results:
        cells[int(row["epochs"])].add(str(row["module_hash"]))
    if not cells:
        return f"No cell has results yet (the space has {SPACE_CELLS:,})."
    parts = ", ".join(f"{len(cells[e]):,} at {e} epochs ({share_text(len(cells[e]) / SPACE_CELLS)})"
                      for e in sorted(cells))
    return f"Cells with results: {parts}, of the {SPACE_CELLS:,} in the space."


def short_ops(ops: Sequence[str]) -> list[str]:
    """The paper's figure labels: conv3x3, conv1x1, maxpool3x3 (each conv is conv-bn-relu)."""
    return [op.replace("-bn-relu", "") for op in ops]


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
            results, "final_training_time", "training time", "Training time vs parameters",
            out / "training_time_vs_parameters.png", time_axis=True)),
        ("Accuracy by epoch budget", plot_accuracy_by_budget(results, out / "accuracy_by_budget.png")),
        ("Best cells (convNxN = conv-bn-relu)", plot_best_cells(results, out / "best_cells.png")),
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
<p>{html.escape(coverage_line(results))}</p>
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
