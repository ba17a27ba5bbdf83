"""Traces to CSV, and the paper-style plot: mean test regret vs simulated time, log-log, with
95% confidence bands of the mean (mean +- 1.96 standard errors over runs), explained in the legend."""

from __future__ import annotations

import csv
import os
import textwrap
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from farm.search.harness import RunResult

TRACE_COLUMNS = (
    "algorithm", "run", "seed", "time", "regret", "validation_accuracy", "test_accuracy", "queries",
    "module_hash",
)
SUMMARY_COLUMNS = ("algorithm", "time", "runs", "mean_regret", "ci_low", "ci_high")
# Regrets are plotted on a log axis: a run that found the optimum shows at this floor.
REGRET_FLOOR = 1e-5


def write_traces(results: Sequence[RunResult], path: str | os.PathLike[str]) -> int:
    """One row per incumbent change (and one at each run's end); returns the row count."""
    rows = 0
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(TRACE_COLUMNS)
        for result in results:
            for point in result.trace:
                writer.writerow([
                    result.algorithm, result.run, result.seed, f"{point.time:.6f}", f"{point.regret:.8f}",
                    f"{point.validation_accuracy:.8f}", f"{point.test_accuracy:.8f}", point.queries,
                    point.module_hash,
                ])
                rows += 1
    return rows


def time_grid(results: Sequence[RunResult], points: int = 200) -> np.ndarray:
    starts = [r.trace[0].time for r in results if r.trace]
    ends = [r.trace[-1].time for r in results if r.trace]
    low = max(min(starts), 1.0)
    return np.geomspace(low, max(ends), points)


def summarise(results: Sequence[RunResult], grid: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """Per algorithm: mean regret and its 95% band at each grid time, over the runs that have an
    incumbent by then."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for name in dict.fromkeys(r.algorithm for r in results):
        matrix = np.array([r.regret_at(grid) for r in results if r.algorithm == name])
        count = np.sum(~np.isnan(matrix), axis=0)
        with warnings.catch_warnings():  # grid times before any run's first incumbent: NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(matrix, axis=0)
            std = np.nanstd(matrix, axis=0, ddof=1) if len(matrix) > 1 else np.zeros_like(grid)
        half = 1.96 * np.nan_to_num(std) / np.sqrt(np.maximum(count, 1))
        out[name] = {"runs": count, "mean": mean, "low": mean - half, "high": mean + half}
    return out


def write_summary(summary: dict[str, dict[str, np.ndarray]], grid: np.ndarray, path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(SUMMARY_COLUMNS)
        for name, s in summary.items():
            for i, t in enumerate(grid):
                writer.writerow([name, f"{t:.3f}", int(s["runs"][i]), f"{s['mean'][i]:.8f}",
                                 f"{s['low'][i]:.8f}", f"{s['high'][i]:.8f}"])


# Distinct styles so that a line lying on another stays visible (drawn thinner, on top).
LINE_STYLES = ("-", "--", "-.", ":", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 1)), (0, (8, 2)))
MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def plot(summary: dict[str, dict[str, np.ndarray]], grid: np.ndarray, path, *, title: str,
         subtitle: str | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5), dpi=120)
    draw_regret(ax, summary, grid, title=title, subtitle=subtitle)
    fig.tight_layout()
    fig.savefig(Path(path))
    plt.close(fig)


def draw_regret(ax, summary: dict[str, dict[str, np.ndarray]], grid: np.ndarray, *, title: str,
                subtitle: str | None = None) -> None:
    """Mean regret per algorithm against simulated time (log-log), each with its shaded 95%
    confidence band of the mean (``summarise``); the legend says what the band is."""
    from matplotlib.patches import Patch

    from farm.figures import readable_log_axis

    handles = []
    for index, (name, s) in enumerate(summary.items()):
        mean = np.maximum(s["mean"], REGRET_FLOOR)
        style = LINE_STYLES[index % len(LINE_STYLES)]
        (line,) = ax.plot(grid, mean, linestyle=style, linewidth=2.2 - 0.25 * (index % 4), alpha=0.9,
                          marker=MARKERS[index % len(MARKERS)], markevery=(index * 7 % 25, 25), markersize=5,
                          zorder=10 + index, label=f"{name} ({int(np.nanmax(s['runs']))} runs)")
        ax.fill_between(grid, np.maximum(s["low"], REGRET_FLOOR), np.maximum(s["high"], REGRET_FLOOR),
                        color=line.get_color(), alpha=0.15, linewidth=0, zorder=1)
        handles.append(line)
    handles.append(Patch(facecolor="0.6", alpha=0.35,
                         label="shaded: 95% confidence interval\nof the mean (mean ± 1.96 SE over runs)"))
    ax.set_xscale("log")
    ax.set_yscale("log")
    readable_log_axis(ax.xaxis, ax.get_xlim())  # the limits: bands included, not just the means
    readable_log_axis(ax.yaxis, ax.get_ylim(), formatter=_regret_formatter())
    ax.set_xlabel("simulated training time spent (s)")
    ax.set_ylabel(f"test regret of the validation-selected cell\n(regret 0 drawn at {REGRET_FLOOR:g})")
    ax.set_title(title if subtitle is None else f"{title}\n{textwrap.fill(subtitle, 90)}", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(handles=handles, fontsize=8, loc="best")


def _regret_formatter():
    """Regrets read as plain decimals (0.002, 0.01), not 2m / 10m as an engineering formatter would."""
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda value, _: f"{value:.3g}")
