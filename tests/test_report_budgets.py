"""The report's rank correlation between budgets (farm.adaptive.budget_rank_correlations and its panel)."""

from __future__ import annotations

import pytest

from farm.adaptive import budget_rank_correlations
from farm.report import write_report


def _rows(values: dict[int, dict[str, list[float]]]) -> list[dict]:
    return [{"module_hash": h, "epochs": e, "repeat": r, "final_validation_accuracy": v,
             "final_test_accuracy": v, "final_training_time": 1.0, "trainable_parameters": 1000,
             "created_at": 0.0}
            for e, cells in values.items() for h, repeats in cells.items() for r, v in enumerate(repeats)]


def test_spearman_between_consecutive_budgets_over_the_cells_trained_at_both():
    # 4 epochs: a < b < c < d < e (means over two repeats); 12 epochs: only b, c, d, e (promoted),
    # ordered c < b < d < e; 36 epochs: d, e in the same order as at 12.
    values = {
        4: {"a": [0.1, 0.1], "b": [0.2, 0.2], "c": [0.25, 0.35], "d": [0.4, 0.4], "e": [0.5, 0.5]},
        12: {"b": [0.6], "c": [0.5], "d": [0.7], "e": [0.8]},
        36: {"d": [0.85], "e": [0.9]},
    }
    first, second = budget_rank_correlations(_rows(values))
    # ranks at 4 (b, c, d, e) = 1, 2, 3, 4; at 12 = 2, 1, 3, 4: sum d^2 = 2; 1 - 6 * 2 / (4 * 15) = 0.8
    assert (first.lower, first.higher, first.cells) == (4, 12, 4)
    assert first.spearman == pytest.approx(0.8)
    assert (second.lower, second.higher, second.cells, second.spearman) == (12, 36, 2, None)  # too few


def test_the_report_shows_the_correlation_panel(tmp_path):
    values = {4: {h: [i / 10] for i, h in enumerate("abcdef")},
              12: {h: [1 - i / 10] for i, h in enumerate("abcd")}}  # the order reversed
    page = write_report(tmp_path, campaign="ad", progress={"total": 10}, results=_rows(values),
                        finished_at=[0.0] * 10)
    html = page.read_text()
    assert "Rank correlation between budgets (Spearman 4-&gt;12: -1.000 over 4 cells)" in html
    assert (tmp_path / "budget_rank_correlation.png").stat().st_size > 1000
    single = write_report(tmp_path / "one", campaign="one", progress={"total": 1},
                          results=_rows({4: {"a": [0.5]}}), finished_at=[0.0])
    assert "Rank correlation" not in single.read_text()  # one budget: no panel
