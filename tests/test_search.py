"""The NAS algorithm comparison on a deterministic synthetic table over the real enumerated space.

Every one of the 423,624 enumerated cells is in the table (so every valid spec an algorithm makes
can be answered); accuracy is a fixed function of the cell, training time follows farm.cost's
parameter count. Building it takes ~30-60 s on 2 cores, once per session.
"""

from __future__ import annotations

import collections
import csv
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from farm.api import NASBench
from farm.search import ALGORITHMS, make_algorithm, run_search
from farm.search.runner import run_many
from farm.search.synthetic import cell_features, synthetic_table


@pytest.fixture(scope="module")
def bench() -> NASBench:
    table = synthetic_table(0, features=cell_features())
    assert len(table) == 423_624  # the whole space: every valid spec has an answer
    return NASBench(table, seed=0)


class Recording:
    """Wraps an algorithm and logs every query the harness charges."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.name = inner.name
        self.log: list[tuple[int, float]] = []
        self.specs: list = []

    def run(self, env) -> None:
        charged = env.query

        def query(spec, epochs=None):
            data = charged(spec, epochs)
            self.log.append((env.epochs if epochs is None else epochs, data["training_time"]))
            self.specs.append(spec)
            return data

        env.query = query
        self.inner.run(env)


def test_synthetic_table_is_deterministic_and_shaped_like_nasbench(bench) -> None:
    again = synthetic_table(0, features=cell_features())
    for epochs in (4, 12, 36, 108):
        assert np.array_equal(bench.table.metrics[epochs], again.metrics[epochs])
    assert bench.valid_epochs == {4, 12, 36, 108}
    fixed, computed = bench.get_metrics_from_hash("28cfc7874f6d200472e1a9dcd8650aa0")
    assert fixed["trainable_parameters"] == 2_694_282  # farm.cost, the published count
    # Time is affine in parameters, ~1150 s at 108 epochs for the Inception cell (published 1156).
    assert 1100 < np.mean([r["final_training_time"] for r in computed[108]]) < 1200
    assert len(computed[108]) == 3
    means = bench.table.mean(108, "final_validation_accuracy")
    assert np.sum(means > np.nanmax(means) - 0.005) < 50  # a real optimum, not a plateau


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_each_algorithm_improves_on_its_start(bench, name) -> None:
    results = [run_search(make_algorithm(name), bench, budget=1e6, seed=s) for s in range(4)]
    first = np.mean([r.trace[0].regret for r in results])
    final = np.mean([r.trace[-1].regret for r in results])
    assert final < first, (name, first, final)
    for r in results:  # the incumbent's validation accuracy only ever rises
        validations = [p.validation_accuracy for p in r.trace]
        assert validations == sorted(validations)


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_budget_accounting_matches_the_queries(bench, name) -> None:
    budget = 4e5
    recorder = Recording(make_algorithm(name))
    result = run_search(recorder, bench, budget=budget, seed=3)
    times = [t for _, t in recorder.log]
    assert result.queries == len(recorder.log)
    assert result.time_spent == pytest.approx(math.fsum(times), rel=1e-9)
    assert result.epochs_spent == sum(e for e, _ in recorder.log)
    assert math.fsum(times[:-1]) < budget <= math.fsum(times)  # the last query crossed the budget
    if name == "bohb":  # multi-fidelity: it also buys cheaper, shorter budgets
        assert {e for e, _ in recorder.log} > {108}
    else:
        assert {e for e, _ in recorder.log} == {108}


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_runs_reproduce_by_seed(bench, name) -> None:
    def trace(seed: int):
        result = run_search(make_algorithm(name), bench, budget=3e5, seed=seed)
        return [(p.time, p.regret, p.module_hash) for p in result.trace], result.queries

    assert trace(11) == trace(11)
    assert trace(11) != trace(12)


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_each_algorithm_queries_only_cells_its_reference_accepts(bench, name) -> None:
    """The notebook's rs/re redraw until the pruned graph is valid, so they also query raw matrices
    with more than 9 edges; the script-based methods never query one (nas_cifar10.py's rule)."""
    recorder = Recording(make_algorithm(name))
    run_search(recorder, bench, budget=1e6, seed=4)
    raw_edges = [int(np.sum(spec.original_matrix)) for spec in recorder.specs]
    if name in ("rs", "re"):
        assert max(raw_edges) > 9
    else:
        assert max(raw_edges) <= 9


def test_smac_pays_for_running_a_configuration_again(bench) -> None:
    """Non-deterministic SMAC: the incumbent is run again (up to 4 times) and challengers are raced on
    its runs, each run a new query charged its training time."""
    recorder = Recording(make_algorithm("smac"))
    result = run_search(recorder, bench, budget=1e6, seed=5)
    runs = collections.Counter(bench.hash_of(spec) for spec in recorder.specs)
    assert max(runs.values()) >= 4
    assert sum(runs.values()) == result.queries > len(runs)
    assert result.time_spent == pytest.approx(math.fsum(t for _, t in recorder.log), rel=1e-9)


def test_regularized_evolution_beats_random_search_over_100_runs(bench) -> None:
    results = run_many(bench, ["rs", "re"], runs=100, budget=1e6, seed=1000, workers=2, progress=False)
    final = {name: [r.trace[-1].regret for r in results if r.algorithm == name] for name in ("rs", "re")}
    assert len(final["rs"]) == len(final["re"]) == 100
    assert np.mean(final["re"]) < np.mean(final["rs"]), {k: np.mean(v) for k, v in final.items()}
    # Same seeds, same runs in a different process layout: parallelism does not change results.
    serial = run_search(make_algorithm("re"), bench, budget=1e6, seed=1000 + 7)
    assert [p.regret for p in serial.trace] == [p.regret for p in results[100 + 7].trace]


def test_search_command_writes_traces_and_plot(bench, tmp_path) -> None:
    from nasfarm.cli import main

    out = tmp_path / "out"
    result = CliRunner().invoke(main, [
        "search", "--algorithms", ",".join(ALGORITHMS), "--runs", "2", "--budget", "2e5",
        "--source", "synthetic", "--workers", "2", "--out", str(out),
    ])
    assert result.exit_code == 0, result.output
    with open(out / "traces.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["algorithm"] for r in rows} == set(ALGORITHMS)
    assert {(r["algorithm"], r["run"]) for r in rows} == {(a, str(i)) for a in ALGORITHMS for i in range(2)}
    assert (out / "regret.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(out / "summary.csv") as handle:
        assert {r["algorithm"] for r in csv.DictReader(handle)} == set(ALGORITHMS)
    comparison = json.loads((out / "comparison.json").read_text())
    assert comparison["table"]["cells"] == 423_624 and comparison["table"]["mode"] == "complete"
    comparison = comparison["comparisons"]
    assert {c["algorithm"] for c in comparison} == set(ALGORITHMS) - {"rs"}
    assert "Mann-Whitney U" in result.output and all(0 <= c["p_lower"] <= 1 for c in comparison)
    assert "423,624 of 423,624 cells" in result.output

    bad = CliRunner().invoke(main, ["search", "--algorithms", "rs,nope", "--source", "synthetic",
                                    "--out", str(out)])
    assert bad.exit_code == 2 and "nope" in bad.output


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_a_dense_partial_table_is_searched_inside_with_the_reference_draws(bench, name) -> None:
    """60% of the cells, some with 2 of their 3 repeats: every query is a cell of that table, no
    draw needs the uniform fallback (dense tables redraw the reference's draws), and queries of
    cells with fewer repeats return one of the repeats they have."""
    from farm.api import BenchmarkTable
    from farm.search.coverage import coverage_of

    full = bench.table
    rng = np.random.default_rng(8)
    rows = np.sort(rng.choice(len(full), int(0.6 * len(full)), replace=False))
    metrics = {e: full.metrics[e][rows].copy() for e in full.metrics}
    fewer = rng.random(len(rows)) < 0.2
    for m in metrics.values():
        m[fewer, 2] = np.nan
    table = BenchmarkTable([full.hashes[i] for i in rows], [full.raw_adjacency[i] for i in rows],
                           [full.raw_operations[i] for i in rows], full.trainable_parameters[rows], metrics)
    partial = NASBench(table, seed=0, name="60%")
    coverage = coverage_of(partial, 108)
    assert coverage.mode == "dense" and coverage.cells == len(rows)
    assert coverage.cells_with_fewer_repeats == int(fewer.sum())
    recorder = Recording(make_algorithm(name))
    result = run_search(recorder, partial, budget=4e5, seed=6)
    hashes = [partial.hash_of(spec) for spec in recorder.specs]
    assert result.queries == len(hashes) > 0 and set(hashes) <= set(table.hashes)
    assert result.fallbacks == 0
    two = {table.hashes[i] for i in np.flatnonzero(fewer)}
    assert any(h in two for h in hashes)
    for h, (epochs, time) in zip(hashes, recorder.log, strict=True):
        finals = table.metrics[epochs][table.index[h], :, 4]  # final_training_time of each repeat
        assert any(time == pytest.approx(f) for f in finals[np.isfinite(finals)])  # a repeat it has
