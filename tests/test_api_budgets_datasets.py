"""The benchmark API over adaptive and non-CIFAR-10 tables: "not trained at this budget" is its own
exception, and a table knows its data set (database campaigns, jsonl/parquet columns, tfrecord
sidecars), refusing to mix data sets."""

from __future__ import annotations

import importlib.util
import json

import pytest
from click.testing import CliRunner

from farm.api import (
    CellNotFinishedError,
    DatasetMismatchError,
    ModelSpec,
    NASBench,
    NotTrainedAtBudgetError,
)
from farm.nb101_proto import EvaluationData, ModelMetrics
from farm.records import BenchmarkRecord, iter_file, write_file

C3 = "conv3x3-bn-relu"
CHAIN = ([[0, 1, 0], [0, 0, 1], [0, 0, 0]], ["input", C3, "output"])
SKIP = ([[0, 1], [0, 0]], ["input", "output"])


def _record(spec, epochs: int, repeat: int, accuracy: float, dataset: str | None = None) -> BenchmarkRecord:
    from farm.spec import Cell

    matrix, ops = spec
    cell = Cell.from_any(matrix, ops)
    evaluations = (EvaluationData(0.0, 0.0, 0.1, 0.1, 0.1),
                   EvaluationData(epochs / 2, 5.0, accuracy - 0.1, accuracy - 0.1, accuracy - 0.1),
                   EvaluationData(float(epochs), 10.0, accuracy, accuracy, accuracy - 0.01))
    raw = "".join(str(x) for row in cell.matrix.tolist() for x in row)
    return BenchmarkRecord(cell.hash, epochs, raw, ",".join(cell.ops), ModelMetrics(evaluations, 1000, 11.0),
                           repeat, dataset)


def _adaptive_records(dataset: str | None = None) -> list[BenchmarkRecord]:
    """Two cells at 4 epochs; only CHAIN promoted to 12 (both with 2 repeats)."""
    return ([_record(spec, 4, r, 0.5 + 0.1 * i + 0.01 * r, dataset) for i, spec in enumerate((CHAIN, SKIP))
             for r in range(2)]
            + [_record(CHAIN, 12, r, 0.8 + 0.01 * r, dataset) for r in range(2)])


def test_a_cell_not_promoted_is_not_trained_at_that_budget():
    bench = NASBench(_adaptive_records(), seed=0)
    chain, skip = ModelSpec(*CHAIN), ModelSpec(*SKIP)
    assert bench.query(chain, epochs=12)["validation_accuracy"] in (0.8, 0.81)
    untrained = r"0 of 2 repeats at 12 epochs.*not trained at this budget \(it has results at 4 epochs"
    with pytest.raises(NotTrainedAtBudgetError, match=untrained):
        bench.query(skip, epochs=12)
    assert issubclass(NotTrainedAtBudgetError, CellNotFinishedError)  # code catching the older one still does
    assert bench.get_budget_counters() == (pytest.approx(10.0), 12)  # the refused query charged nothing
    # a cell with some repeats at the budget is unfinished, not untrained
    partial = NASBench(_adaptive_records()[:-1], seed=0)
    with pytest.raises(CellNotFinishedError, match="1 of 2 repeats at 12") as info:
        partial.query(chain, epochs=12)
    assert not isinstance(info.value, NotTrainedAtBudgetError)
    _, computed = bench.get_metrics_from_hash(skip.hash_spec())
    assert sorted(computed) == [4]  # no made-up 12-epoch entry


def test_exports_and_tables_carry_their_data_set(tmp_path):
    records = _adaptive_records("cifar100")
    suffixes = [".jsonl", ".jsonl.gz"] + ([".parquet"] if importlib.util.find_spec("pyarrow") else [])
    for suffix in suffixes:
        path = tmp_path / f"t{suffix}"
        write_file(path, records)
        assert {r.dataset for r in iter_file(path)} == {"cifar100"}
        assert NASBench(path).dataset == "cifar100"
        assert NASBench(path, dataset="cifar100").dataset == "cifar100"
        with pytest.raises(DatasetMismatchError, match="results on cifar100, not svhn"):
            NASBench(path, dataset="svhn")
    row = json.loads((tmp_path / "t.jsonl").read_text().splitlines()[0])
    assert row["dataset"] == "cifar100"

    # tfrecord has no data-set field: the sidecar nasfarm export writes says it; without one it is CIFAR-10
    path = tmp_path / "t.cifar100.tfrecord"
    write_file(path, records)
    assert {r.dataset for r in iter_file(path)} == {None} and NASBench(path).dataset == "cifar10"
    (tmp_path / "t.cifar100.tfrecord.json").write_text(json.dumps({"dataset": "cifar100"}))
    assert {r.dataset for r in iter_file(path)} == {"cifar100"} and NASBench(path).dataset == "cifar100"

    with pytest.raises(DatasetMismatchError, match="2 data sets"):
        NASBench(_adaptive_records("cifar100") + _adaptive_records("svhn"))
    with pytest.raises(DatasetMismatchError, match="cifar10, cifar100"):  # unlabelled records are CIFAR-10's
        NASBench(_adaptive_records() + _adaptive_records("cifar100"))


def test_a_campaigns_records_views_and_exports_name_its_data_set(db_engine, tmp_path):
    from db.nb101_io import campaign_records
    from db.queue import JobQueue
    from db.results import nb101_results
    from farm.config import SMOKE
    from farm.datasets import fit_config, get_dataset
    from nasfarm.campaigns import create_campaign
    from nasfarm.cli import main
    from tests.fixtures_db import fake_result, random_cells

    profile = fit_config(SMOKE, get_dataset("cifar100").num_classes).to_dict()
    create_campaign(db_engine, "c100", random_cells(3, seed=8), epochs=(4,), repeats=1, profile=profile,
                    dataset="cifar100")
    queue = JobQueue(db_engine)
    for job in queue.claim(10, "test"):
        queue.complete(job.job_id, job.lease_token, fake_result(job))
    assert {r.dataset for r in campaign_records(db_engine, "c100")} == {"cifar100"}
    assert {r["dataset"] for r in nb101_results(db_engine, "c100")} == {"cifar100"}
    bench = NASBench(campaign_records(db_engine, "c100"), dataset="cifar100")
    assert bench.dataset == "cifar100" and len(bench.table) == 3
    with pytest.raises(DatasetMismatchError):
        NASBench(campaign_records(db_engine, "c100"), dataset="cifar10")

    url = db_engine.url.render_as_string(hide_password=False)
    out = tmp_path / "c100.jsonl"
    exported = CliRunner().invoke(main, ["export", "--campaign", "c100", "--out", str(out), "--db", url])
    assert exported.exit_code == 0, exported.output
    assert {json.loads(line)["dataset"] for line in out.read_text().splitlines()} == {"cifar100"}
    target = str(tmp_path / "c.tfrecord")
    tfrecord = CliRunner().invoke(main, ["export", "--campaign", "c100", "--out", target, "--db", url])
    assert tfrecord.exit_code == 0, tfrecord.output
    assert NASBench(tmp_path / "c.cifar100.tfrecord").dataset == "cifar100"  # through its sidecar

    # imported back, the table is a cifar100 campaign again
    imported = CliRunner().invoke(main, ["import-nb101", str(out), "--campaign", "back", "--db", url])
    assert imported.exit_code == 0, imported.output
    assert {r["dataset"] for r in nb101_results(db_engine, "back")} == {"cifar100"}
