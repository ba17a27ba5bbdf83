"""NAS algorithms on a benchmark table, and the paper's regret-vs-time comparison (section 5).

Every algorithm has the :class:`~farm.search.harness.SearchAlgorithm` shape: a ``name`` and
``run(env)`` that queries ``env`` until the budget is spent. ``make_algorithm(name)`` builds one
by its short name; the model-based ones are imported only when asked for (scikit-learn).
"""

from __future__ import annotations

import importlib

from farm.search.harness import BudgetExhausted, RunResult, SearchAlgorithm, SearchEnv, run_search

# short name -> ("module:class", what it is)
ALGORITHMS: dict[str, tuple[str, str]] = {
    "rs": ("farm.search.simple:RandomSearch", "random search (the notebook's random_spec)"),
    "rs_script": ("farm.search.simple:RandomSearchScript",
                  "random search as run_random_search.py (uniform encoding, invalid ones free)"),
    "re": ("farm.search.simple:RegularizedEvolution", "regularized evolution as the notebook (P=50, S=10)"),
    "re_script": ("farm.search.simple:RegularizedEvolutionScript",
                  "regularized evolution as run_regularized_evolution.py (P=100, S=10, one-parameter "
                  "mutations)"),
    "reinforce": ("farm.search.simple:Reinforce", "REINFORCE as run_rl.py (lr 0.1, baseline momentum 0.9)"),
    "bohb": ("farm.search.bohb:BOHB", "BOHB as HpBandSter with run_bohb.py's settings (own code)"),
    "smac": ("farm.search.smac:SMAC", "SMAC3 0.10 as run_smac.py (own code on a scikit-learn forest)"),
}


def make_algorithm(name: str) -> SearchAlgorithm:
    try:
        target = ALGORITHMS[name][0]
    except KeyError:
        raise ValueError(f"unknown algorithm {name!r}; choose from {', '.join(ALGORITHMS)}") from None
    module, attribute = target.split(":")
    return getattr(importlib.import_module(module), attribute)()


__all__ = [
    "ALGORITHMS",
    "BudgetExhausted",
    "RunResult",
    "SearchAlgorithm",
    "SearchEnv",
    "make_algorithm",
    "run_search",
]
