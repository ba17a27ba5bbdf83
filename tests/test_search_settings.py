"""The search algorithms' settings and distributions against the reference code's, checked against
independent computations (no synthetic table needed: these are fast).

- Validity: every one of the 2^21 raw edge patterns is classified with a bitwise reachability
  computation written here (not the API's pruning), under the notebook's rule (pruned graph <= 9
  edges) and the experiment scripts' rule (raw matrix <= 9 edges and input connected to output).
- Sampling and mutation: chi-square tests (scipy) of the edge-count distribution of random_spec
  and of the number of changed decisions per mutation against the exact distributions.
- BOHB: the KDE against a loop-by-loop transcription of statsmodels 0.9's gpke / aitchison_aitken
  / _normal_reference; the bracket sizes against HpBandSter's.
"""

from __future__ import annotations

import math
import random
import re
import types
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import chisquare

from farm.api import ModelSpec
from farm.search import make_algorithm
from farm.search.bohb import BOHB, CategoricalKDE, bracket_sizes
from farm.search.encoding import (
    CARDINALITIES,
    DIMENSIONS,
    EDGE_SPOTS,
    mutate_one_parameter,
    mutate_spec,
    random_spec,
    random_vector,
    reference_valid,
    spec_from_vector,
)
from farm.search.settings import all_settings

ROOT = Path(__file__).resolve().parents[1]
ROWS, COLS = np.triu_indices(7, 1)


def _all_edge_patterns() -> dict[str, np.ndarray]:
    """For each of the 2^21 raw upper triangles: raw edges, pruned edges, input->output path."""
    codes = np.arange(2**EDGE_SPOTS, dtype=np.int64)
    edge = {(int(u), int(v)): (codes >> k) & 1 for k, (u, v) in enumerate(zip(ROWS, COLS, strict=True))}
    forward = [np.ones_like(codes)] + [None] * 6
    for v in range(1, 7):
        forward[v] = np.zeros_like(codes)
        for u in range(v):
            forward[v] |= forward[u] & edge[(u, v)]
    backward = [None] * 6 + [np.ones_like(codes)]
    for u in range(5, -1, -1):
        backward[u] = np.zeros_like(codes)
        for v in range(u + 1, 7):
            backward[u] |= backward[v] & edge[(u, v)]
    kept = [forward[v] & backward[v] for v in range(7)]
    pruned = sum(edge[(u, v)] & kept[u] & kept[v] for (u, v) in edge)
    raw = sum(edge.values())
    return {"raw": raw, "pruned": pruned, "connected": forward[6].astype(bool)}


def _popcount(values: np.ndarray) -> np.ndarray:
    return sum((values >> k) & 1 for k in range(EDGE_SPOTS))


def _shown(value) -> str:
    """How docs/search.md writes a setting's value."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@pytest.fixture(scope="module")
def patterns() -> dict[str, np.ndarray]:
    return _all_edge_patterns()


class AlwaysValid:
    """The API's validity (pruned graph in the space), as the notebook's nasbench.is_valid."""

    def __call__(self, spec: ModelSpec) -> bool:
        if not spec.valid_spec:
            return False
        return int(np.sum(spec.matrix)) <= 9


def test_valid_fractions_of_the_two_rules(patterns) -> None:
    notebook = patterns["connected"] & (patterns["pruned"] <= 9)
    scripts = patterns["connected"] & (patterns["raw"] <= 9)
    # The issue's figures: 74% of random encodings valid by the notebook's rule, 28% by the scripts'.
    assert notebook.mean() == pytest.approx(0.74, abs=0.01)
    assert scripts.mean() == pytest.approx(0.28, abs=0.01)
    # reference_valid agrees with the bitwise classification on a random sample of patterns.
    rng = np.random.default_rng(0)
    is_valid = AlwaysValid()
    for code in rng.integers(0, 2**EDGE_SPOTS, 400):
        vector = np.concatenate([(code >> np.arange(EDGE_SPOTS)) & 1, rng.integers(0, 3, 5)])
        assert reference_valid(vector, is_valid) == bool(scripts[code])


def test_random_spec_edge_counts_follow_the_notebook(patterns) -> None:
    """random_spec = fair coin per edge, redrawn until the pruned graph is valid: its raw edge count
    is Binomial(21, 1/2) restricted to valid patterns (all patterns equally likely)."""
    valid = patterns["connected"] & (patterns["pruned"] <= 9)
    expected = np.bincount(patterns["raw"][valid], minlength=EDGE_SPOTS + 1) / valid.sum()
    rng = random.Random(1)
    draws = 4000
    counts = np.bincount([int(random_spec(rng, AlwaysValid()).original_matrix.sum()) for _ in range(draws)],
                         minlength=EDGE_SPOTS + 1)
    keep = expected * draws >= 5  # chi-square needs expected counts >= 5: pool the tails
    observed = np.append(counts[keep], counts[~keep].sum())
    wanted = np.append(expected[keep], expected[~keep].sum()) * draws
    assert chisquare(observed, wanted).pvalue > 1e-3


def test_notebook_mutation_changes_as_many_decisions_as_the_notebook(patterns) -> None:
    """mutate_spec flips each edge with p 1/7 and changes each op with p 1/5, redrawn until valid:
    the number of changed decisions follows that law restricted to valid children."""
    parent_matrix = np.zeros((7, 7), dtype=int)
    for u, v in [(0, 1), (1, 2), (2, 3), (3, 6), (0, 4), (4, 6)]:
        parent_matrix[u, v] = 1
    ops = ["input", "conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3", "conv3x3-bn-relu", "conv3x3-bn-relu",
           "output"]
    parent = ModelSpec(parent_matrix, ops)
    parent_code = int(sum(parent_matrix[u, v] << k for k, (u, v) in enumerate(zip(ROWS, COLS, strict=True))))
    valid = patterns["connected"] & (patterns["pruned"] <= 9)
    # Exact law: edge flips pick a pattern (probability by Hamming distance), ops change independently.
    flips = _popcount(np.arange(2**EDGE_SPOTS, dtype=np.int64) ^ parent_code)
    edge_law = np.bincount(flips[valid], weights=((1 / 7) ** flips * (6 / 7) ** (21 - flips))[valid],
                           minlength=22)
    op_law = np.array([math.comb(5, k) * 0.2**k * 0.8 ** (5 - k) for k in range(6)])
    total = np.convolve(edge_law, op_law)
    total /= total.sum()
    rng = random.Random(2)
    draws = 3000
    changed = []
    for _ in range(draws):
        child = mutate_spec(parent, rng, AlwaysValid())
        changed.append(int((child.original_matrix != parent_matrix).sum())
                       + sum(a != b for a, b in zip(child.original_ops, parent.original_ops, strict=True)))
    counts = np.bincount(changed, minlength=len(total))[: len(total)]
    keep = total * draws >= 5
    observed = np.append(counts[keep], counts[~keep].sum())
    wanted = np.append(total[keep], total[~keep].sum()) * draws
    assert chisquare(observed, wanted).pvalue > 1e-3


def test_script_mutation_changes_exactly_one_uniformly_chosen_parameter() -> None:
    rng = np.random.default_rng(3)
    parent = rng.integers(0, CARDINALITIES)
    dims, new_op_values = [], []
    for _ in range(5200):
        child = mutate_one_parameter(parent, rng)
        changed = np.flatnonzero(child != parent)
        assert len(changed) == 1
        dims.append(int(changed[0]))
        if changed[0] == DIMENSIONS - 1:
            new_op_values.append(int(child[-1]))
    assert chisquare(np.bincount(dims, minlength=DIMENSIONS)).pvalue > 1e-3  # uniform over the 26
    others = np.bincount(new_op_values, minlength=3)
    assert others[parent[-1]] == 0 and chisquare(np.delete(others, parent[-1])).pvalue > 1e-3


def _statsmodels_pdf(data: np.ndarray, bandwidth: np.ndarray, x: np.ndarray) -> float:
    """statsmodels 0.9 KDEMultivariate.pdf for var_type 'u' * d, transcribed loop by loop:
    gpke's product over aitchison_aitken(h, Xi, x) with num_levels = np.unique(Xi).size, / nobs."""
    total = 0.0
    with np.errstate(divide="ignore"):
        for row in data:
            product = 1.0
            for d in range(data.shape[1]):
                levels = len(np.unique(data[:, d]))
                k = (1 - bandwidth[d]) if row[d] == x[d] else bandwidth[d] / np.float64(levels - 1)
                product *= k
            total += product
    return total / len(data)


def test_kde_matches_statsmodels_and_hpbandster() -> None:
    rng = np.random.default_rng(4)
    data = rng.integers(0, CARDINALITIES, size=(40, DIMENSIONS))
    data[:, 3] = 1  # one parameter on which every point agrees: statsmodels' kernel divides by zero
    kde = CategoricalKDE(data, min_bandwidth=0.3)
    n, d = data.shape
    normal_reference = 1.06 * data.std(axis=0) * n ** (-1.0 / (4 + d))
    assert np.allclose(kde.bandwidth, np.maximum(normal_reference, 0.3))
    candidates = rng.integers(0, CARDINALITIES, size=(30, DIMENSIONS))
    candidates[:15, 3] = 1
    candidates[15:, 3] = 0
    got = kde.pdf(candidates)
    for x, value in zip(candidates, got, strict=True):
        expected = _statsmodels_pdf(data, kde.bandwidth, x)
        if np.isinf(expected):
            assert np.isinf(value)
        else:
            assert value == pytest.approx(expected, rel=1e-9)
    assert np.isinf(got[15:]).all() and np.isfinite(got[:15]).all()


def test_hyperband_brackets_as_hpbandster() -> None:
    # hpbandster/optimizers/bohb.py with min_budget 4, max_budget 108, eta 3: four brackets.
    assert [bracket_sizes(s, 4, 3) for s in (3, 2, 1, 0)] == [[27, 9, 3, 1], [9, 3, 1], [6, 2], [4]]


def test_bohb_runs_the_brackets_in_order() -> None:
    """The first full Hyperband iteration of BOHB evaluates exactly the HpBandSter schedule."""
    calls: list[int] = []

    class Stop(Exception):
        pass

    class Counting(BOHB):
        def _evaluate(self, env, vector, budget):
            calls.append(budget)
            if len(calls) == 27 + 9 + 3 + 1 + 9 + 3 + 1 + 6 + 2 + 4:
                raise Stop
            return float(random.Random(len(calls)).random())

    class Env:  # a table with every cell: random proposals are the reference's draws
        budgets = [4, 12, 36, 108]
        np_rng = np.random.default_rng(5)
        space = types.SimpleNamespace(complete=True)

        def random_vector(self):
            return random_vector(self.np_rng)

    with pytest.raises(Stop):
        Counting().run(Env())
    expected = [4] * 27 + [12] * 9 + [36] * 3 + [108] + [12] * 9 + [36] * 3 + [108] + [36] * 6 + [108] * 2 \
        + [108] * 4
    assert calls == expected


def test_defaults_are_the_named_settings_and_the_docs_table_has_them() -> None:
    settings = all_settings()
    reinforce, bohb, smac = make_algorithm("reinforce"), make_algorithm("bohb"), make_algorithm("smac")
    re_notebook, re_script = make_algorithm("re"), make_algorithm("re_script")
    assert (reinforce.learning_rate, reinforce.momentum) == (settings["REINFORCE_LEARNING_RATE"].value,
                                                             settings["REINFORCE_MOMENTUM"].value)
    assert (bohb.min_bandwidth, bohb.random_fraction, bohb.num_samples, bohb.eta, bohb.top_n_percent) == (
        settings["BOHB_MIN_BANDWIDTH"].value, settings["BOHB_RANDOM_FRACTION"].value,
        settings["BOHB_NUM_SAMPLES"].value, settings["BOHB_ETA"].value, settings["BOHB_TOP_N_PERCENT"].value)
    assert bohb.min_points_in_model == DIMENSIONS + 1
    assert (smac.initial_design, smac.random_probability, smac.trees, smac.max_runs_per_config) == (
        settings["SMAC_INITIAL_DESIGN"].value, settings["SMAC_RANDOM_PROBABILITY"].value,
        settings["SMAC_TREES"].value, settings["SMAC_MAX_RUNS_PER_CONFIG"].value)
    assert (re_notebook.population_size, re_notebook.tournament_size) == (
        settings["RE_NOTEBOOK_POPULATION"].value, settings["RE_NOTEBOOK_TOURNAMENT"].value)
    assert (re_script.population_size, re_script.sample_size) == (
        settings["RE_SCRIPT_POPULATION"].value, settings["RE_SCRIPT_SAMPLE"].value)
    docs = (ROOT / "docs" / "search.md").read_text()
    table = [line for line in docs.splitlines() if line.startswith("| `")]
    for name, setting in settings.items():
        rows = [line for line in table if line.startswith(f"| `{name}`")]
        assert len(rows) == 1, f"docs/search.md's settings table lacks {name}"
        cells = [c.strip() for c in rows[0].strip("|").split("|")]
        assert re.sub(r"[`\s]", "", cells[1]).startswith(_shown(setting.value)), (name, cells[1])
        source_file = re.search(r"[\w./-]+\.(?:py|ipynb)", setting.source).group(0)
        assert source_file in rows[0], (name, source_file)
    assert "tuned on the synthetic" not in docs


def test_invalid_encodings_cost_nothing_and_score_error_one() -> None:
    from farm.search.encoding import objective

    class Env:
        queries = 0

        def is_valid(self, spec):
            return AlwaysValid()(spec)

        def query(self, spec, epochs=None):
            self.queries += 1
            return {"validation_accuracy": 0.9}

    env = Env()
    too_many_raw_edges = np.array([1] * 10 + [0] * 11 + [0] * 5)  # 10 raw edges: out by the scripts' rule
    assert spec_from_vector(too_many_raw_edges).valid_spec
    assert objective(env, too_many_raw_edges) == 1.0 and env.queries == 0
    disconnected = np.zeros(DIMENSIONS, dtype=int)
    assert objective(env, disconnected) == 1.0 and env.queries == 0
    chain = np.zeros(DIMENSIONS, dtype=int)
    chain[[0, 6, 11, 15, 18, 20]] = 1  # 0-1-2-3-4-5-6
    assert objective(env, chain) == pytest.approx(0.1) and env.queries == 1
