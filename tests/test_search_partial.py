"""`nasfarm search` on a table that covers only some cells: a pilot campaign in progress.

The campaign (both databases) has 300 cells at 4 and 12 epochs with 2 repeats; 250 cells have
12-epoch results, 50 of them only one of their two repeats, and 50 cells only 4-epoch results.
Expected numbers (coverage, which cells may be queried, which values a query may return, the
regret) are computed here from the results the test wrote, independently of the search code.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict

import numpy as np
import pytest
from click.testing import CliRunner

from db.queue import JobQueue
from farm.api import BenchmarkTable, NASBench
from farm.config import SMOKE
from farm.search import ALGORITHMS, make_algorithm, run_search
from farm.search.coverage import SPACE_CELLS, coverage_of, search_space
from farm.search.harness import SearchEnv
from nasfarm.campaigns import create_campaign
from nasfarm.cli import main
from tests.fixtures_db import fake_result, random_cells

CELLS, AT_12, ONE_REPEAT = 300, 250, 50


def _accuracy(cell_hash: str, repeat: int, epochs: int) -> float:
    """A fixed, cell-dependent accuracy, different per repeat and budget."""
    return 0.5 + 0.4 * int(cell_hash[:6], 16) / 16**6 + 0.01 * repeat + 0.001 * epochs


@pytest.fixture
def pilot(db_engine) -> dict:
    cells = random_cells(CELLS, seed=11)
    create_campaign(db_engine, "pilot", cells, epochs=[4, 12], repeats=2, profile=SMOKE.to_dict(),
                    order="as-given")
    at_12 = {c.hash for c in cells[:AT_12]}
    one_repeat = {c.hash for c in cells[AT_12 - ONE_REPEAT:AT_12]}
    queue = JobQueue(db_engine)
    values: dict[tuple[str, int], list[float]] = defaultdict(list)
    for job in queue.claim(10 * CELLS, "tester"):
        if job.epochs == 12 and (job.cell_hash not in at_12 or (job.cell_hash in one_repeat and job.repeat)):
            continue  # still running: the campaign is in progress
        accuracy = _accuracy(job.cell_hash, job.repeat, job.epochs)
        assert queue.complete(job.job_id, job.lease_token, fake_result(job, accuracy))
        values[(job.cell_hash, job.epochs)].append(accuracy)
    return {"at_12": at_12, "one_repeat": one_repeat, "values": values}


def test_search_runs_on_a_partial_campaign_through_the_cli(pilot, db_url, tmp_path, monkeypatch) -> None:
    queried: list[tuple[str, int, float]] = []
    query = SearchEnv.query

    def recording(self, spec, epochs=None):
        data = query(self, spec, epochs)
        queried.append((self.bench.hash_of(spec), self.epochs if epochs is None else epochs,
                        data["validation_accuracy"]))
        return data

    monkeypatch.setattr(SearchEnv, "query", recording)  # --workers 1: the runs stay in this process
    out = tmp_path / "search"
    result = CliRunner().invoke(main, [
        "search", "--algorithms", "rs,re,reinforce,bohb,smac", "--runs", "2", "--budget", "400",
        "--source", "db:pilot", "--db", db_url, "--workers", "1", "--out", str(out),
    ])
    assert result.exit_code == 0, result.output
    assert f"{AT_12:,} of {SPACE_CELLS:,} cells" in result.output and "budgets present 4, 12" in result.output

    values = pilot["values"]
    assert queried and {h for h, _, _ in queried} <= pilot["at_12"]  # never a cell the table lacks
    assert {e for _, e, _ in queried} == {4, 12}  # BOHB's lower budget covers every searched cell
    for cell_hash, epochs, validation in queried:  # only repeats that exist are sampled
        assert any(validation == pytest.approx(v) for v in values[(cell_hash, epochs)])
    # Cells with one of their two repeats were queried (at their one value, checked above).
    assert all(len(values[(h, 12)]) == 1 for h in pilot["one_repeat"])
    assert any(h in pilot["one_repeat"] and e == 12 for h, e, _ in queried)

    table = json.loads((out / "comparison.json").read_text())["table"]
    assert (table["cells"], table["epochs"], table["space_cells"]) == (AT_12, 12, SPACE_CELLS)
    assert table["cells_with_fewer_repeats"] == ONE_REPEAT and table["search_budgets"] == [4, 12]
    assert json.loads((out / "meta.json").read_text())["epochs"] == 12  # the default: the largest

    # Regret: best mean (over the repeats present) in the table minus the incumbent's mean.
    means = {h: float(np.mean(values[(h, 12)])) for h in pilot["at_12"]}
    best = max(means.values())
    with open(out / "traces.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["algorithm"] for r in rows} == {"rs", "re", "reinforce", "bohb", "smac"}
    for row in rows:
        assert float(row["regret"]) == pytest.approx(best - means[row["module_hash"]], abs=1e-7)
    assert (out / "regret.png").read_bytes()[:4] == b"\x89PNG"


def test_an_empty_table_is_one_clear_line(db_engine, db_url, tmp_path) -> None:
    create_campaign(db_engine, "empty", random_cells(3, seed=2), epochs=[4], repeats=1,
                    profile=SMOKE.to_dict())
    result = CliRunner().invoke(main, ["search", "--source", "db:empty", "--db", db_url, "--runs", "1",
                                       "--out", str(tmp_path / "s")])
    assert result.exit_code == 1 and "no finished results" in result.output
    assert len(result.output.strip().splitlines()) == 1


def _table(cells, counts: dict[int, list[int]]) -> BenchmarkTable:
    """A table of ``cells`` with counts[epochs][i] repeats of cell i (accuracy by hash)."""
    metrics = {}
    for epochs, per_cell in counts.items():
        m = np.full((len(cells), max(per_cell), 8), np.nan)
        for i, (cell, n) in enumerate(zip(cells, per_cell, strict=True)):
            m[i, :n, :] = _accuracy(cell.hash, 0, epochs)
            m[i, :n, 0] = m[i, :n, 4] = 100.0  # training times: a query costs 100 s
        metrics[epochs] = m
    return BenchmarkTable([c.hash for c in cells], [c.raw_adjacency for c in cells],
                          [c.raw_operations for c in cells], np.arange(len(cells)) + 1000, metrics)


def test_coverage_and_the_budgets_a_search_may_use() -> None:
    cells = random_cells(40, seed=5)
    counts = {4: [2] * 30 + [0] * 10, 12: [2] * 20 + [1] * 5 + [0] * 15, 36: [1] * 3 + [0] * 37}
    bench = NASBench(_table(cells, counts), seed=0)
    coverage = coverage_of(bench, 12)
    assert (coverage.cells, coverage.repeats, coverage.cells_with_fewer_repeats) == (25, 2, 5)
    assert coverage.table_budgets == (4, 12, 36) and coverage.budgets == (4, 12)
    assert coverage.mode == "sparse" and not coverage.complete
    assert "25 of 423,624 cells" in coverage.line()
    # A lower budget that misses one of the searched cells is not offered to BOHB.
    counts[4][0] = 0
    assert coverage_of(NASBench(_table(cells, counts), seed=0), 12).budgets == (12,)


def test_sparse_draws_are_uniform_over_the_table_and_every_algorithm_stays_inside() -> None:
    from scipy.stats import chisquare

    cells = random_cells(20, seed=9)
    bench = NASBench(_table(cells, {12: [1] * 20}), seed=0)
    space = search_space(bench, 12)
    rng = __import__("random").Random(3)
    draws = [bench.hash_of(space.uniform_spec(rng)) for _ in range(4000)]
    frequencies = [draws.count(c.hash) for c in cells]
    assert sum(frequencies) == 4000 and chisquare(frequencies).pvalue > 0.001
    vectors = space.uniform_vectors(np.random.default_rng(4), 500)
    assert all(space.accepts_vector(v) and bench.hash_of(_spec(v)) in space.hashes for v in vectors)

    hashes = {c.hash for c in cells}
    for name in ALGORITHMS:
        recorder = Recording(make_algorithm(name))
        result = run_search(recorder, bench, budget=2e4, epochs=12, seed=1)
        assert result.queries == len(recorder.specs) > 0, name
        assert {bench.hash_of(s) for s in recorder.specs} <= hashes, name
        assert result.time_spent <= 2e4 + 100, name


class Recording:
    """Wraps an algorithm and keeps every spec the harness charges."""

    def __init__(self, inner) -> None:
        self.inner, self.name = inner, inner.name
        self.specs: list = []

    def run(self, env) -> None:
        charged = env.query

        def query(spec, epochs=None):
            data = charged(spec, epochs)  # raises BudgetExhausted once spent: then not a query
            self.specs.append(spec)
            return data

        env.query = query
        self.inner.run(env)


def _spec(vector):
    from farm.search.encoding import spec_from_vector

    return spec_from_vector(vector)


@pytest.mark.parametrize("name", ["rs", "rs_script", "bohb", "smac"])
def test_a_settled_run_has_the_trace_it_would_have_had_without_stopping(name, monkeypatch) -> None:
    """Stopping once the incumbent holds the table's best validation sample changes nothing in the
    trace: the same run without the stop (ceiling out of reach) makes the same incumbent changes
    and ends at the same regret; only the queries after the best sample are saved."""
    cells = random_cells(30, seed=4)
    bench = NASBench(_table(cells, {4: [1] * 30, 12: [1] * 30}), seed=0)
    settled = run_search(make_algorithm(name), bench, budget=5e5, epochs=12, seed=2)
    space = search_space(bench, 12)
    monkeypatch.setattr(space, "best_validation", float("inf"))
    full = run_search(make_algorithm(name), bench, budget=5e5, epochs=12, seed=2)
    assert settled.settled and not full.settled
    assert settled.queries < full.queries and settled.time_spent < full.time_spent
    changes = [(p.time, p.regret, p.module_hash) for p in settled.trace[:-1]]
    assert changes == [(p.time, p.regret, p.module_hash) for p in full.trace[:-1]]
    assert settled.trace[-1].regret == full.trace[-1].regret == 0.0
    assert settled.trace[-1].time == 5e5  # closed at the budget, as if it had gone on
