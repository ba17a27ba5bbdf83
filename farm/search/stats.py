"""Is an algorithm's final regret lower than random search's, or within a margin of it?

The paper's findings on NAS-Bench-101 (section 5): regularized evolution, BOHB and SMAC end with
lower regret than random search; REINFORCE is only "slightly better". Two statements are tested
on the final regrets of independent runs (one value per run):

- *lower than RS*: one-sided Mann-Whitney U test (``scipy.stats.mannwhitneyu``, alternative
  "less": the algorithm's regrets tend to be smaller) at level ``ALPHA``;
- *within the margin of RS*: the bootstrap ``1 - ALPHA`` interval of the ratio of mean final
  regrets (algorithm / RS, runs resampled with replacement within each algorithm) lies inside
  ``[1 - MARGIN, 1 + MARGIN]``.

Both use the runs' final regrets only; the bootstrap is seeded, so a summary reproduces.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

ALPHA = 0.01
# "Barely better than RS": within +-50% of RS's mean final regret. Wide enough for REINFORCE's
# run-to-run spread at 100 runs, narrow enough to catch the learning rate 1.0 it had before
# (mean final regret 0.39 x RS's on the old synthetic table, issue 18).
MARGIN = 0.5
BOOTSTRAP_SAMPLES = 10_000
# What the paper found, per algorithm: "lower" than RS, or "within" the margin of RS.
PAPER_FINDINGS = {"re": "lower", "re_script": "lower", "bohb": "lower", "smac": "lower",
                  "reinforce": "within"}


@dataclass
class Comparison:
    algorithm: str
    baseline: str
    runs: int
    baseline_runs: int
    mean: float
    baseline_mean: float
    mann_whitney_u: float
    p_lower: float  # one-sided: the algorithm's final regret is stochastically smaller
    ratio: float  # mean / baseline mean
    ratio_low: float  # bootstrap 1 - alpha interval of the ratio
    ratio_high: float
    expected: str | None  # the paper's finding, if any
    holds: bool | None  # whether the expected finding holds here

    def line(self) -> str:
        finding = "" if self.expected is None else (
            f"; paper: {self.expected} RS -> {'holds' if self.holds else 'DOES NOT HOLD'}"
        )
        return (
            f"{self.algorithm:10s} vs {self.baseline}: mean {self.mean:.5f} vs {self.baseline_mean:.5f} "
            f"(n={self.runs}/{self.baseline_runs}), Mann-Whitney U={self.mann_whitney_u:.0f} one-sided "
            f"p={self.p_lower:.2e}, mean ratio {self.ratio:.3f} [{1 - ALPHA:.0%} CI {self.ratio_low:.3f}, "
            f"{self.ratio_high:.3f}]{finding}"
        )

    def as_dict(self) -> dict:
        return asdict(self)


def bootstrap_ratio(values: np.ndarray, baseline: np.ndarray, *, alpha: float = ALPHA,
                    samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(values) / mean(baseline)."""
    rng = np.random.default_rng(seed)
    a = rng.choice(values, size=(samples, len(values))).mean(axis=1)
    b = rng.choice(baseline, size=(samples, len(baseline))).mean(axis=1)
    ratios = a / np.maximum(b, 1e-300)
    return float(np.quantile(ratios, alpha / 2)), float(np.quantile(ratios, 1 - alpha / 2))


def compare(finals: Mapping[str, Sequence[float]], baseline: str = "rs", *, alpha: float = ALPHA,
            margin: float = MARGIN) -> list[Comparison]:
    """Every algorithm in ``finals`` (name -> final regret per run) against ``baseline``."""
    from scipy.stats import mannwhitneyu

    base = np.asarray(finals[baseline], dtype=float)
    out = []
    for name, values in finals.items():
        if name == baseline:
            continue
        values = np.asarray(values, dtype=float)
        test = mannwhitneyu(values, base, alternative="less")
        low, high = bootstrap_ratio(values, base, alpha=alpha)
        expected = PAPER_FINDINGS.get(name)
        if expected == "lower":
            holds: bool | None = bool(test.pvalue < alpha)
        elif expected == "within":
            holds = bool(1 - margin <= low and high <= 1 + margin)
        else:
            holds = None
        out.append(Comparison(name, baseline, len(values), len(base), float(values.mean()),
                              float(base.mean()), float(test.statistic), float(test.pvalue),
                              float(values.mean() / base.mean()), low, high, expected, holds))
    return out
