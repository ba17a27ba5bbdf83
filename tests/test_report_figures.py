"""The report's and the search's figures read at a glance, and cells are drawn as the paper draws them.

Figures are checked on their Axes after drawing (tick labels, units, counts, legend), against
numbers set up here: parameter ranges, time spans, job counts, and a confidence band computed here
with numpy.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from farm import report  # noqa: E402
from farm.draw import cell_layout, draw_cell  # noqa: E402
from farm.figures import time_unit  # noqa: E402
from farm.search.harness import RunResult, TracePoint  # noqa: E402
from farm.search.report import draw_regret, summarise  # noqa: E402

INCEPTION = ("28cfc7874f6d200472e1a9dcd8650aa0",
             [[0, 1, 1, 1, 0, 1, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 1, 0, 0],
              [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0]],
             ["input", "conv1x1-bn-relu", "conv3x3-bn-relu", "conv3x3-bn-relu", "conv3x3-bn-relu",
              "maxpool3x3", "output"])


@pytest.fixture
def ax():
    fig, axes = plt.subplots(figsize=(6, 4))
    yield axes
    plt.close(fig)


def _labels(axis) -> list[tuple[float, str]]:
    """(position, text) of every tick label drawn inside the axis' view."""
    axis.figure.canvas.draw()
    low, high = sorted(axis.get_view_interval())
    return [(tick.get_loc(), tick.label1.get_text()) for tick in axis.get_major_ticks()
            if low <= tick.get_loc() <= high and tick.label1.get_visible() and tick.label1.get_text()]


def _number(text: str) -> float:
    """'1.2M' / '800k' / '0.5' / '−3' as a float."""
    text = text.replace("\N{MINUS SIGN}", "-").strip()
    scale = {"k": 1e3, "M": 1e6, "G": 1e9}.get(text[-1:], 1.0)
    return float(text[:-1] if scale != 1.0 else text) * scale


def _rows(params: list[float], epochs: int = 108) -> list[dict]:
    return [{"trainable_parameters": p, "epochs": epochs, "final_test_accuracy": 0.9 + i * 1e-3,
             "final_training_time": 400.0 + 10 * i, "final_validation_accuracy": 0.9 + i * 1e-3}
            for i, p in enumerate(params)]


@pytest.mark.parametrize("low,high", [(1.1e6, 1.9e6), (2.50e5, 2.61e5), (3e5, 9e5), (227_274, 49_979_274)])
def test_parameter_axis_has_numbers_whatever_the_range(ax, low, high) -> None:
    params = list(np.linspace(low, high, 12))
    report.draw_metric_vs_parameters(ax, _rows(params), "final_test_accuracy", "accuracy", "t")
    x_labels = _labels(ax.xaxis)
    assert len(x_labels) >= 2, x_labels
    for position, text in x_labels:  # each label is the number at its tick
        assert _number(text) == pytest.approx(position, rel=0.05), (text, position)
    assert len(_labels(ax.yaxis)) >= 2


@pytest.mark.parametrize("span,unit", [(5.0, "seconds"), (30 * 60.0, "minutes"), (5 * 3600.0, "hours"),
                                       (3 * 86400.0, "days")])
def test_time_axes_use_the_unit_of_the_span(ax, span, unit) -> None:
    times = [1000.0 + span * f for f in (0.0, 0.3, 0.5, 1.0)]
    report.draw_progress(ax, times, 10)
    assert f"({unit})" in ax.get_xlabel()
    size = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}[unit]
    assert time_unit(span)[0] == size
    assert ax.get_xlim()[1] == pytest.approx(span / size * 1.02, rel=0.05)
    assert all(_number(t) == pytest.approx(p) for p, t in _labels(ax.xaxis))


def test_job_counts_are_whole_numbers(ax) -> None:
    report.draw_progress(ax, [0.0, 1.0, 2.5], 4)
    ticks = [p for p, _ in _labels(ax.yaxis)]
    assert len(ticks) >= 2 and all(float(p).is_integer() for p in ticks)


def test_throughput_of_three_jobs_is_counted_not_extrapolated(ax) -> None:
    report.draw_throughput(ax, [100.0, 101.0, 103.0])
    heights = [bar.get_height() for bar in ax.patches]
    assert sum(heights) == 3 and max(heights) <= 3
    assert "hour" not in ax.get_ylabel() and "hour" not in ax.get_title()
    assert "3 jobs in 3 s" in ax.get_title()
    assert all(float(p).is_integer() for p, _ in _labels(ax.yaxis))

    ax.clear()
    hours = [3600.0 * h for h in np.linspace(0, 10, 50)]
    report.draw_throughput(ax, hours)
    assert sum(bar.get_height() for bar in ax.patches) == 50
    assert "per hour" in ax.get_title()  # ten hours covered: a rate per hour is honest there


def test_empty_campaign_says_no_results_yet(tmp_path) -> None:
    for draw in (lambda a: report.draw_progress(a, [], 0), lambda a: report.draw_throughput(a, []),
                 lambda a: report.draw_metric_vs_parameters(a, [], "final_test_accuracy", "acc", "t"),
                 lambda a: report.draw_accuracy_by_budget(a, [])):
        fig, axes = plt.subplots()
        draw(axes)
        assert any(t.get_text() == "no results yet" for t in axes.texts)
        plt.close(fig)
    page = report.write_report(tmp_path / "r", campaign="c", progress={"total": 0}, results=[],
                               finished_at=[])
    assert (tmp_path / "r" / "best_cells.png").exists() and page.exists()


def _run(name: str, run: int, regrets: list[float]) -> RunResult:
    trace = [TracePoint(10.0 * (i + 1), r, 0.9, 0.9, i + 1, "h") for i, r in enumerate(regrets)]
    return RunResult(name, run, run, 100.0, 108, 100.0, 108, len(regrets), 0.0, trace)


def test_regret_band_is_explained_and_overlapping_lines_stay_visible(ax) -> None:
    finals = {"rs": [0.05, 0.07, 0.02, 0.04], "re": [0.05, 0.07, 0.02, 0.04]}  # identical: overlap
    results = [_run(name, i, [0.1, v]) for name, values in finals.items() for i, v in enumerate(values)]
    grid = np.array([15.0, 25.0])
    summary = summarise(results, grid)
    values = np.array(finals["rs"])
    half = 1.96 * values.std(ddof=1) / np.sqrt(len(values))  # the band: 95% CI of the mean
    assert summary["rs"]["low"][1] == pytest.approx(values.mean() - half)
    assert summary["rs"]["high"][1] == pytest.approx(values.mean() + half)
    draw_regret(ax, summary, grid, title="t")
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("95% confidence interval" in t and "of the mean" in t and "1.96" in t for t in texts)
    lines = [line for line in ax.get_lines() if line.get_label() in ("rs (4 runs)", "re (4 runs)")]
    assert len(lines) == 2
    assert lines[0].get_linestyle() != lines[1].get_linestyle()
    assert lines[0].get_marker() != lines[1].get_marker()
    assert lines[0].get_zorder() != lines[1].get_zorder()


def test_cell_is_drawn_top_down_with_every_op_and_edge(ax) -> None:
    _, matrix, ops = INCEPTION
    positions = cell_layout(matrix)
    ys = {v: y for v, (_, y) in positions.items()}
    assert all(ys[0] > ys[v] > ys[6] for v in range(1, 6))  # input on top, output at the bottom
    edges = [(u, v) for u in range(7) for v in range(7) if matrix[u][v]]
    assert all(ys[u] > ys[v] for u, v in edges)  # every edge points down
    draw_cell(ax, matrix, ops)
    assert sorted(t.get_text() for t in ax.texts) == sorted(ops)
    assert len(ax.patches) == len(edges)


def test_best_cells_are_the_top_six_by_mean_validation_at_the_largest_budget(tmp_path) -> None:
    rng = np.random.default_rng(0)
    _, matrix, ops = INCEPTION
    rows = []
    for cell in range(10):
        for repeat in range(3):
            for epochs in (4, 12):
                rows.append({"module_hash": f"{cell:032x}", "epochs": epochs, "repeat": repeat,
                             "module_adjacency": matrix, "module_operations": ops,
                             "trainable_parameters": 1000, "final_validation_accuracy": float(rng.random()),
                             "final_test_accuracy": 0.5})
    means = {f"{c:032x}": np.mean([r["final_validation_accuracy"] for r in rows
                                   if r["module_hash"] == f"{c:032x}" and r["epochs"] == 12])
             for c in range(10)}
    expected = sorted(means, key=lambda h: -means[h])[:6]
    best = report.best_cells(rows)
    assert [c["module_hash"] for c in best] == expected
    assert all(c["epochs"] == 12 and c["repeats"] == 3 for c in best)
    assert best[0]["mean_validation"] == pytest.approx(means[expected[0]])
    path = report.plot_best_cells(rows, tmp_path / "best.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_space_show_draws_a_hash_as_png_and_svg(tmp_path) -> None:
    from nasfarm.cli import main

    cell_hash, _, ops = INCEPTION
    for suffix in ("png", "svg"):
        out = tmp_path / "sub" / f"cell.{suffix}"
        result = CliRunner().invoke(main, ["space", "show", cell_hash, "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert cell_hash in result.output
    assert (tmp_path / "sub" / "cell.png").read_bytes()[:4] == b"\x89PNG"
    svg = (tmp_path / "sub" / "cell.svg").read_text()
    assert "<svg" in svg and all(op in svg for op in ops) and "2,694,282 parameters" in svg
    missing = CliRunner().invoke(main, ["space", "show", "0" * 32, "--out", str(tmp_path / "x.png")])
    assert missing.exit_code == 2 and "is not the hash of any of the 423,624 cells" in missing.output
    assert not (tmp_path / "x.png").exists()


def _nasfarm(*args: str) -> subprocess.CompletedProcess:
    """The installed console script (the same entry point a user runs)."""
    script = Path(sys.executable).parent / "nasfarm"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "nasfarm.cli"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=120)


def test_space_show_console_script_matrix_ops_and_bad_hash(tmp_path) -> None:
    for suffix in ("png", "svg"):
        out = tmp_path / f"skip.{suffix}"
        done = _nasfarm("space", "show", "--matrix", "[[0,1,1],[0,0,1],[0,0,0]]",
                        "--ops", "input,conv3x3-bn-relu,output", "--out", str(out))
        assert done.returncode == 0, done.stderr
        assert out.stat().st_size > 1000
    assert "conv3x3-bn-relu" in (tmp_path / "skip.svg").read_text()
    bad = _nasfarm("space", "show", "not-a-hash", "--out", str(tmp_path / "bad.png"))
    assert bad.returncode == 2
    assert len(bad.stderr.strip().splitlines()) == 1 and re.search(r"not a cell hash", bad.stderr)
    both = _nasfarm("space", "show", INCEPTION[0], "--matrix", "0100", "--ops", "input,output",
                    "--out", str(tmp_path / "b.png"))
    assert both.returncode == 2 and len(both.stderr.strip().splitlines()) == 1
    suffix = _nasfarm("space", "show", "--matrix", "0100", "--ops", "input,output", "--out",
                      str(tmp_path / "b.jpg"))
    assert suffix.returncode == 2 and ".png or .svg" in suffix.stderr
