"""Adaptive campaigns (successive halving over the search space): the promotion rule, pure.

Every cell is trained at the first epoch budget; a cell is trained at the next budget only once it
ranks in the top fraction ``f`` of the cells at the current one (mean final validation accuracy over
its finished repeats, ties broken by hash). In rounds, when a budget is complete, exactly
``ceil(f x n)`` of its ``n`` ranked cells are promoted. The database makes and records the decision
(``db.promotions``, the same arithmetic in SQL); this module is the rule itself, which the bench
(bench/adaptive_campaigns.py) replays on whole synthetic tables and the tests hold the database to.

The fraction is kept exact (a ratio of integers): ``ceil(0.55 x 100)`` in floating point is 56, and a
decision must not depend on such rounding. ``parse_fraction`` takes ``25%``, ``0.25`` or ``1/4``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

PROMOTE_MODES = ("rounds", "async")
# A fraction is stored as numerator/denominator; this bounds the denominator (0.001% resolution).
MAX_DENOMINATOR = 100_000


@dataclass(frozen=True)
class PromotionRule:
    """The top fraction ``numerator/denominator`` of a budget's cells goes on to the next budget."""

    numerator: int
    denominator: int
    mode: str = "rounds"  # or "async": ASHA-style, promote as results arrive (db.promotions)

    def __post_init__(self) -> None:
        if not 0 < self.numerator <= self.denominator:
            raise ValueError(f"a promote fraction must be in (0, 1], got {self.numerator}/{self.denominator}")
        if self.mode not in PROMOTE_MODES:
            raise ValueError(f"unknown promote mode {self.mode!r}; choose one of {', '.join(PROMOTE_MODES)}")

    @classmethod
    def parse(cls, text: str, mode: str = "rounds") -> PromotionRule:
        fraction = parse_fraction(text)
        return cls(fraction.numerator, fraction.denominator, mode)

    @property
    def fraction(self) -> float:
        return self.numerator / self.denominator

    def promoted(self, ranked: int) -> int:
        """How many of ``ranked`` cells a complete budget promotes: ceil(f x n), exactly."""
        return -(-ranked * self.numerator // self.denominator)

    def promoted_so_far(self, finished: int) -> int:
        """ASHA: how many of the ``finished`` cells may be promoted before the budget completes
        (floor(f x n): the top 1/eta of what has finished)."""
        return finished * self.numerator // self.denominator

    def describe(self) -> str:
        percent = 100 * Fraction(self.numerator, self.denominator)
        shown = f"{float(percent):g}%"
        return f"top {shown} per budget ({self.mode})"


def parse_fraction(text: str) -> Fraction:
    """``25%``, ``0.25`` or ``1/4`` -> Fraction(1, 4); must be in (0, 1]."""
    raw = str(text).strip()
    try:
        value = Fraction(raw[:-1].strip()) / 100 if raw.endswith("%") else Fraction(raw)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"a promote fraction is a percentage (25%), a decimal (0.25) or a ratio (1/4); "
                         f"got {text!r}") from None
    if not 0 < value <= 1:
        raise ValueError(f"a promote fraction must be more than 0 and at most 100%, got {text!r}")
    if value.denominator > MAX_DENOMINATOR:
        raise ValueError(f"a promote fraction needs at most {MAX_DENOMINATOR:,} as denominator, got {text!r}")
    return value


def rank_cells(means: Mapping[str, float]) -> list[str]:
    """Cells best first: mean validation accuracy descending, ties broken by hash (ascending)."""
    return sorted(means, key=lambda h: (-means[h], h))


def successive_halving(
    means_by_budget: Mapping[int, Mapping[str, float]], budgets: Sequence[int], rule: PromotionRule
) -> dict[int, list[str]]:
    """The cells trained at each budget of a rounds-mode campaign, replayed on known results.

    ``means_by_budget[b][h]`` is cell h's mean validation accuracy at budget b (a cell absent from
    it had no finished repeat there: it is trained, but not ranked). Returns budget -> cells trained.
    """
    trained: dict[int, list[str]] = {}
    cells = list(means_by_budget.get(budgets[0], {}))
    for index, budget in enumerate(budgets):
        trained[budget] = cells
        if index + 1 == len(budgets):
            break
        at = means_by_budget.get(budget, {})
        ranked = rank_cells({h: at[h] for h in cells if h in at})
        cells = ranked[: rule.promoted(len(ranked))]
    return trained


@dataclass(frozen=True)
class BudgetCorrelation:
    """Spearman's rank correlation of mean validation accuracy between two budgets."""

    lower: int
    higher: int
    cells: int  # cells with a mean at both budgets
    spearman: float | None  # None: fewer than 3 cells, or a constant ranking


def budget_rank_correlations(results: Iterable[Mapping[str, Any]]) -> list[BudgetCorrelation]:
    """Between consecutive budgets, over the cells trained (with a finished repeat) at both.

    ``results`` are rows with ``module_hash``, ``epochs`` and ``final_validation_accuracy`` (the
    ``nb101_results`` view); a cell's value at a budget is the mean over its repeats. This is the
    figure NAS-Bench-101's paper shows for its budgets, and what an adaptive campaign bets on.
    """
    from scipy.stats import spearmanr

    sums: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in results:
        value = row.get("final_validation_accuracy")
        if value is not None:
            sums[int(row["epochs"])][str(row["module_hash"])].append(float(value))
    means = {b: {h: sum(v) / len(v) for h, v in cells.items()} for b, cells in sums.items()}
    budgets = sorted(means)
    out = []
    for lower, higher in zip(budgets, budgets[1:], strict=False):
        common = sorted(set(means[lower]) & set(means[higher]))
        rho = None
        if len(common) >= 3:
            value = float(spearmanr([means[lower][h] for h in common], [means[higher][h] for h in common])[0])
            rho = None if value != value else value  # NaN: a constant ranking
        out.append(BudgetCorrelation(lower, higher, len(common), rho))
    return out
