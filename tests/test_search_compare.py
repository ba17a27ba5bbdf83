"""The paper's findings (section 5) on the synthetic table, with the reference settings: regularized
evolution, BOHB and SMAC end with lower regret than random search; REINFORCE ends within the stated
margin of it. With the settings nasfarm had before (REINFORCE learning rate 1.0, BOHB's minimum
bandwidth 1e-3) the REINFORCE check fails (issue 18: 0.39 x RS's regret).

Tests: one-sided Mann-Whitney U at 1% for "lower"; the bootstrap 99% interval of the ratio of mean
final regrets inside [0.5, 1.5] for "within" (farm.search.stats). 20 runs of each at 2e6 simulated
seconds: about 90 CPU seconds, plus the table.
"""

from __future__ import annotations

import pytest

from farm.api import NASBench
from farm.search.runner import run_many
from farm.search.simple import Reinforce
from farm.search.stats import ALPHA, compare
from farm.search.synthetic import cell_features, synthetic_table


@pytest.fixture(scope="module")
def bench() -> NASBench:
    return NASBench(synthetic_table(0, features=cell_features()), seed=0)


@pytest.mark.slow
def test_the_papers_findings_hold_with_the_reference_settings(bench) -> None:
    names = ["rs", "re", "reinforce", "bohb", "smac"]
    results = run_many(bench, names, runs=20, budget=2e6, seed=2000, workers=2, progress=False)
    finals = {n: [r.trace[-1].regret for r in results if r.algorithm == n] for n in names}
    by_name = {c.algorithm: c for c in compare(finals)}
    for name in ("re", "bohb", "smac"):
        assert by_name[name].p_lower < ALPHA, by_name[name].line()
    assert by_name["reinforce"].holds, by_name["reinforce"].line()


@pytest.mark.slow
def test_reinforce_at_the_old_learning_rate_is_caught(bench) -> None:
    """The check that REINFORCE stays within RS's margin fails for learning rate 1.0."""
    from farm.search import run_search

    rs = [run_search(_named("rs"), bench, budget=2e6, seed=3000 + i).trace[-1].regret for i in range(20)]
    fast = [run_search(Reinforce(learning_rate=1.0, momentum=0.95), bench, budget=2e6, seed=3000 + i)
            .trace[-1].regret for i in range(20)]
    (comparison,) = compare({"rs": rs, "reinforce": fast})
    assert not comparison.holds, comparison.line()


def _named(name: str):
    from farm.search import make_algorithm

    return make_algorithm(name)
