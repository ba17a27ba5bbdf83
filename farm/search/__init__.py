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
    "re": ("farm.search.simple:RegularizedEvolution", "regularized evolution (P=50, S=10, rate 1.0)"),
    "reinforce": ("farm.search.simple:Reinforce", "REINFORCE, per-decision categorical controller"),
    "bohb": ("farm.search.bohb:BOHB", "BOHB: Hyperband over epoch budgets + TPE-style KDE (own code)"),
    "smac": ("farm.search.smac:SMAC", "SMAC-style BO: random forest + EI (scikit-learn forest)"),
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
