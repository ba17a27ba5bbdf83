"""The NASBench-style API: the original's semantics (SPEC g) over a tfrecord in the published layout.

The fixture holds the README Inception cell (stored, as in the published data, under its canonical
representative) with the three published 108-epoch repeats of SPEC h -- the numbers the official
notebook and Google's unified_functional_hashing testdata show -- plus a cell whose campaign is
unfinished (2 of 3 repeats).
"""

from __future__ import annotations

import importlib.util
import random

import numpy as np
import pytest

from farm.api import CellNotFinishedError, ModelSpec, NASBench, OutOfDomainError
from farm.nb101_proto import EvaluationData, ModelMetrics
from farm.records import BenchmarkRecord, write_file

C3, C1, MP = "conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3"
INCEPTION_HASH = "28cfc7874f6d200472e1a9dcd8650aa0"
README_MATRIX = [
    [0, 1, 1, 1, 0, 1, 0],
    [0, 0, 0, 0, 0, 0, 1],
    [0, 0, 0, 0, 0, 0, 1],
    [0, 0, 0, 0, 1, 0, 0],
    [0, 0, 0, 0, 0, 0, 1],
    [0, 0, 0, 0, 0, 0, 1],
    [0, 0, 0, 0, 0, 0, 0],
]
README_OPS = ["input", C1, C3, C3, C3, MP, "output"]
CANONICAL_MATRIX = [
    [0, 1, 1, 1, 1, 0, 0],
    [0, 0, 0, 0, 0, 0, 1],
    [0, 0, 0, 0, 0, 0, 1],
    [0, 0, 0, 0, 0, 0, 1],
    [0, 0, 0, 0, 0, 1, 0],
    [0, 0, 0, 0, 0, 0, 1],
    [0, 0, 0, 0, 0, 0, 0],
]
CANONICAL_OPS = ["input", C3, C1, MP, C3, C3, "output"]
# SPEC h, 108 epochs: (final train, valid, test, time, halfway train, valid, test, time)
PUBLISHED_108 = [
    (1.0, 0.9376001358032227, 0.9311898946762085, 1155.85302734375,
     0.875901460647583, 0.825120210647583, 0.8106971383094788, 577.0859985351562),
    (1.0, 0.9378004670143127, 0.932692289352417, 1157.675048828125,
     0.8650841116905212, 0.8104968070983887, 0.796875, 577.8309936523438),
    (1.0, 0.9336938858032227, 0.9286859035491943, 1154.361083984375,
     0.8786057829856873, 0.8225160241127014, 0.8215144276618958, 575.739013671875),
]
RESNET_MATRIX = [[0, 1, 0, 1], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]]
RESNET_OPS = ["input", C3, C3, "output"]
RESNET_HASH = "b5fb4f6193360330b6ff6a52cbf0cad7"


def _raw(matrix: list[list[int]]) -> str:
    return "".join(str(x) for row in matrix for x in row)


def _record(module_hash, epochs, matrix, ops, params, values) -> BenchmarkRecord:
    ft, fv, fte, ftime, ht, hv, hte, htime = values
    evaluations = (
        EvaluationData(0.0, 0.0, 0.1, 0.1, 0.1),
        EvaluationData(epochs / 2, htime, ht, hv, hte),
        EvaluationData(float(epochs), ftime, ft, fv, fte),
    )
    return BenchmarkRecord(
        module_hash, epochs, _raw(matrix), ",".join(ops), ModelMetrics(evaluations, params, ftime + 60)
    )


def fixture_records() -> list[BenchmarkRecord]:
    records = [
        _record(INCEPTION_HASH, 108, CANONICAL_MATRIX, CANONICAL_OPS, 2694282, v) for v in PUBLISHED_108
    ]
    # Lower budgets: SPEC h gives final test accuracy and time; the other fields are placeholders.
    for epochs, tests, times in [
        (36, (0.91306, 0.91466, 0.90174), (397.8, 396.6, 396.6)),
        (12, (0.77414, 0.82171, 0.80679), (150.1, 146.2, 148.1)),
        (4, (0.51863, 0.52534, 0.55048), (71.7, 68.0, 68.1)),
    ]:
        for test, time in zip(tests, times, strict=True):
            values = (0.9, test + 0.005, test, time, 0.5, 0.5, 0.5, time / 2)
            records.append(_record(INCEPTION_HASH, epochs, CANONICAL_MATRIX, CANONICAL_OPS, 2694282, values))
    for repeat in range(2):  # unfinished: 2 of 3 repeats at 108, none at the other budgets
        values = (1.0, 0.92 + repeat / 100, 0.91, 800.0, 0.8, 0.8, 0.8, 400.0)
        records.append(_record(RESNET_HASH, 108, RESNET_MATRIX, RESNET_OPS, 5000000, values))
    return records


@pytest.fixture(scope="module")
def tfrecord_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("api") / "fixture.tfrecord"
    write_file(path, fixture_records())
    return path


@pytest.fixture
def bench(tfrecord_path) -> NASBench:
    return NASBench(tfrecord_path, seed=0)


def test_model_spec_prunes_and_hashes_like_the_original() -> None:
    # SPEC a.2 pruning example: 7 raw vertices, a 4-vertex chain after pruning.
    matrix = np.zeros((7, 7), dtype=int)
    for i, j in [(0, 1), (0, 2), (1, 3), (3, 6), (4, 5), (5, 6)]:
        matrix[i, j] = 1
    spec = ModelSpec(matrix, ["input", C3, MP, C1, C3, MP, "output"])
    assert spec.valid_spec
    assert spec.matrix.tolist() == [[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]]
    assert spec.ops == ["input", C3, C1, "output"]
    assert spec.original_matrix.tolist() == matrix.tolist()
    assert spec.hash_spec() == "96794a104891b22bf4f2abbdd7c3e90f"
    assert ModelSpec(README_MATRIX, README_OPS).hash_spec() == INCEPTION_HASH
    disconnected = ModelSpec([[0, 0], [0, 0]], ["input", "output"])
    assert not disconnected.valid_spec and disconnected.matrix is None
    assert not ModelSpec([[0]], ["input"]).valid_spec
    with pytest.raises(ValueError, match="square"):
        ModelSpec([[0, 1]], ["input", "output"])
    with pytest.raises(ValueError, match="length of ops"):
        ModelSpec([[0, 1], [0, 0]], ["input"])
    with pytest.raises(ValueError, match="upper triangular"):
        ModelSpec([[0, 1], [1, 0]], ["input", "output"])


def test_model_spec_pruning_agrees_with_farm_spec_on_random_graphs() -> None:
    from farm.spec import Cell, InvalidCellError, prune

    rng = random.Random(5)
    checked_cells = 0
    for _ in range(3000):
        n = rng.randint(1, 8)
        density = rng.random()
        matrix = np.array([[int(j > i and rng.random() < density) for j in range(n)] for i in range(n)])
        ops = (["input"] + [rng.choice([C3, C1, MP]) for _ in range(n - 2)] + ["output"])[:n]
        spec = ModelSpec(matrix, ops)
        keep = prune(matrix)
        assert spec.valid_spec == (keep is not None)
        if keep is not None:
            assert spec.matrix.tolist() == matrix[np.ix_(keep, keep)].tolist()
            assert spec.ops == [ops[i] for i in keep]
            if ops[0] == "input" and ops[-1] == "output":
                try:
                    cell = Cell.from_any(matrix, ops)
                except InvalidCellError:
                    continue
                assert spec.hash_spec() == cell.hash
                checked_cells += 1
    assert checked_cells > 500


def test_query_returns_canonical_representative_and_a_published_repeat(bench) -> None:
    data = bench.query(ModelSpec(README_MATRIX, README_OPS))
    assert data["module_adjacency"].tolist() == CANONICAL_MATRIX
    assert data["module_adjacency"].dtype == np.int8
    assert data["module_operations"] == CANONICAL_OPS
    assert data["trainable_parameters"] == 2694282
    keys = ("train_accuracy", "validation_accuracy", "test_accuracy", "training_time")
    sampled = tuple(data[k] for k in keys)
    assert sampled in [tuple(v[:4]) for v in PUBLISHED_108]


def test_query_samples_repeats_with_its_own_seeded_generator(tfrecord_path) -> None:
    spec = ModelSpec(README_MATRIX, README_OPS)
    random.seed(12345)
    global_state = random.getstate()
    first, second = NASBench(tfrecord_path, seed=7), NASBench(tfrecord_path, seed=7)
    runs = [[b.query(spec)["validation_accuracy"] for _ in range(60)] for b in (first, second)]
    assert runs[0] == runs[1]
    assert random.getstate() == global_state  # the global generator is never touched
    assert set(runs[0]) == {v[1] for v in PUBLISHED_108}  # every repeat gets drawn
    twin = first.with_seed(7)
    assert [twin.query(spec)["validation_accuracy"] for _ in range(60)] == runs[0]
    other = NASBench(tfrecord_path, seed=8)
    assert [other.query(spec)["validation_accuracy"] for _ in range(60)] != runs[0]


def test_budget_counters(bench) -> None:
    spec = ModelSpec(README_MATRIX, README_OPS)
    times = [bench.query(spec)["training_time"] for _ in range(5)]
    times += [bench.query(spec, epochs=36)["training_time"]]
    spent, epochs = bench.get_budget_counters()
    assert spent == pytest.approx(sum(times), rel=1e-12)
    assert epochs == 5 * 108 + 36
    bench.reset_budget_counters()
    assert bench.get_budget_counters() == (0.0, 0)


def test_stop_halfway_uses_halfway_metrics_and_half_the_epochs(bench) -> None:
    spec = ModelSpec(README_MATRIX, README_OPS)
    data = bench.query(spec, stop_halfway=True)
    halfway = {v[7]: v[4:7] for v in PUBLISHED_108}
    assert data["training_time"] in halfway
    assert (data["train_accuracy"], data["validation_accuracy"], data["test_accuracy"]) == halfway[
        data["training_time"]
    ]
    assert bench.get_budget_counters() == (data["training_time"], 54)


@pytest.mark.parametrize(
    "matrix, ops",
    [
        ([[0, 0], [0, 0]], ["input", "output"]),  # disconnected
        (np.eye(8, k=1, dtype=int), ["input"] + [C3] * 6 + ["output"]),  # 8 vertices
        (np.triu(np.ones((6, 6), dtype=int), 1), ["input", C3, C3, C3, C3, "output"]),  # 15 edges
        ([[0, 1, 0], [0, 0, 1], [0, 0, 0]], ["input", "conv5x5", "output"]),
        ([[0, 1, 0], [0, 0, 1], [0, 0, 0]], ["output", C3, "input"]),
    ],
)
def test_out_of_domain_specs(bench, matrix, ops) -> None:
    spec = ModelSpec(matrix, ops)
    assert not bench.is_valid(spec)
    with pytest.raises(OutOfDomainError):
        bench.query(spec)
    with pytest.raises(OutOfDomainError):
        bench.get_metrics_from_spec(spec)
    assert bench.get_budget_counters() == (0.0, 0)


def test_unknown_epochs_is_out_of_domain(bench) -> None:
    assert bench.valid_epochs == {4, 12, 36, 108}
    with pytest.raises(OutOfDomainError, match="epochs"):
        bench.query(ModelSpec(README_MATRIX, README_OPS), epochs=100)


def test_unfinished_and_absent_cells_raise_a_clear_error(bench) -> None:
    resnet = ModelSpec(RESNET_MATRIX, RESNET_OPS)
    assert bench.is_valid(resnet)
    with pytest.raises(CellNotFinishedError, match="2 of 3 repeats at 108 epochs") as info:
        bench.query(resnet)
    assert isinstance(info.value, KeyError)
    with pytest.raises(CellNotFinishedError, match="0 of 3 repeats at 36 epochs"):
        bench.query(resnet, epochs=36)
    absent = ModelSpec([[0, 1], [0, 0]], ["input", "output"])
    assert bench.is_valid(absent)
    with pytest.raises(CellNotFinishedError, match="043721b9c7fe8c5fad811d47d83132ec"):
        bench.query(absent)
    assert bench.get_budget_counters() == (0.0, 0)


def test_metrics_by_hash_and_spec_are_copies_in_file_order(bench) -> None:
    fixed, computed = bench.get_metrics_from_hash(INCEPTION_HASH)
    assert fixed["trainable_parameters"] == 2694282
    assert sorted(computed) == [4, 12, 36, 108]
    assert [r["final_validation_accuracy"] for r in computed[108]] == [v[1] for v in PUBLISHED_108]
    assert [r["halfway_training_time"] for r in computed[108]] == [v[7] for v in PUBLISHED_108]
    assert set(computed[108][0]) == {
        f"{p}_{k}" for p in ("halfway", "final")
        for k in ("training_time", "train_accuracy", "validation_accuracy", "test_accuracy")
    }
    computed[108][0]["final_test_accuracy"] = -1.0
    fixed["module_adjacency"][0, 1] = 0
    assert _as_lists(bench.get_metrics_from_spec(ModelSpec(README_MATRIX, README_OPS))) == _as_lists(
        bench.get_metrics_from_hash(INCEPTION_HASH)
    )
    again_fixed, again = bench.get_metrics_from_hash(INCEPTION_HASH)
    assert again[108][0]["final_test_accuracy"] == PUBLISHED_108[0][2]
    assert again_fixed["module_adjacency"].tolist() == CANONICAL_MATRIX
    assert sorted(bench.hash_iterator()) == sorted([INCEPTION_HASH, RESNET_HASH])
    assert bench.get_budget_counters() == (0.0, 0)
    assert bench.fixed_statistics[INCEPTION_HASH]["module_operations"] == CANONICAL_OPS
    assert len(bench.computed_statistics[RESNET_HASH][108]) == 2


@pytest.mark.parametrize("suffix", [".tfrecord", ".jsonl", ".parquet"])
def test_round_trip_write_read_gives_identical_metrics(tmp_path, suffix) -> None:
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    records = fixture_records()
    from_records = NASBench(records)
    path = tmp_path / f"export{suffix}"
    write_file(path, records)
    from_file = NASBench(path)
    for module_hash in from_records.hash_iterator():
        assert _as_lists(from_file.get_metrics_from_hash(module_hash)) == _as_lists(
            from_records.get_metrics_from_hash(module_hash)
        )


def _as_lists(metrics):
    fixed, computed = metrics
    return {**fixed, "module_adjacency": fixed["module_adjacency"].tolist()}, computed


# -- database campaigns: export, import of a published-layout file, compare ---------------------

def _complete_all_but_one(engine, campaign: str) -> dict[tuple[str, int, int], dict]:
    """Finish every job of ``campaign`` except one (distinct numbers per job); returns what was
    stored, keyed by (hash, epochs, repeat)."""
    from db.queue import JobQueue
    from farm.cost import trainable_parameters
    from farm.spec import Cell

    queue = JobQueue(engine)
    jobs = queue.claim(1000, "test-owner")
    stored = {}
    for job in jobs[:-1]:
        accuracy = 0.5 + 0.4 * (int(job.cell_hash[:6], 16) % 997) / 997 + 0.001 * job.repeat
        params = trainable_parameters(Cell.from_any(job.matrix, job.ops))
        evaluations = [
            {"epochs": e, "training_steps": s, "training_time": t, "train_accuracy": a + 0.01,
             "validation_accuracy": a, "test_accuracy": a - 0.01}
            for e, s, t, a in ((0.0, 0, 0.0, 0.1), (job.epochs / 2, 5, 3.5 * job.epochs, accuracy - 0.1),
                               (float(job.epochs), 10, 7.25 * job.epochs + job.repeat, accuracy))
        ]
        metrics = {"trainable_parameters": params, "total_time": 8.0 * job.epochs}
        for prefix, e in (("halfway", evaluations[1]), ("final", evaluations[2])):
            for key in ("training_time", "train_accuracy", "validation_accuracy", "test_accuracy"):
                metrics[f"{prefix}_{key}"] = e[key]
        assert queue.complete(job.job_id, job.lease_token, {"metrics": metrics, "evaluations": evaluations})
        stored[(job.cell_hash, job.epochs, job.repeat)] = metrics
    unfinished = jobs[-1]
    return stored, (unfinished.cell_hash, unfinished.epochs)


def test_campaign_export_import_and_compare(db_engine, tmp_path) -> None:
    from click.testing import CliRunner

    from db.nb101_io import campaign_records
    from farm.config import SMOKE
    from nasfarm.campaigns import create_campaign
    from nasfarm.cli import main
    from tests.fixtures_db import random_cells

    url = db_engine.url.render_as_string(hide_password=False)
    create_campaign(db_engine, "ours", random_cells(5, seed=3), epochs=(4, 12), repeats=2,
                    profile=SMOKE.to_dict(), order="as-given")
    stored, (open_hash, open_epochs) = _complete_all_but_one(db_engine, "ours")

    # The API over the campaign itself: finished cells answer, the unfinished one says so.
    bench = NASBench(campaign_records(db_engine, "ours"), seed=0, num_repeats=2)
    with pytest.raises(CellNotFinishedError, match=f"{open_hash} has 1 of 2 repeats at {open_epochs}"):
        fixed, _ = bench.get_metrics_from_hash(open_hash)
        bench.query(ModelSpec(fixed["module_adjacency"], fixed["module_operations"]), epochs=open_epochs)

    runner = CliRunner()
    suffixes = [".tfrecord", ".jsonl"] + ([".parquet"] if importlib.util.find_spec("pyarrow") else [])
    for suffix in suffixes:
        path = tmp_path / f"ours{suffix}"
        result = runner.invoke(main, ["export", "--campaign", "ours", "--out", str(path), "--db", url])
        assert result.exit_code == 0, result.output
        assert f"exported {len(stored)} records" in result.output
        exported = NASBench(path, num_repeats=2)
        for (module_hash, epochs, repeat), metrics in stored.items():
            fixed, computed = exported.get_metrics_from_hash(module_hash)
            assert fixed["trainable_parameters"] == metrics["trainable_parameters"]
            assert computed[epochs][repeat] == {k: metrics[k] for k in computed[epochs][repeat]}

    imported = runner.invoke(main, ["import-nb101", str(tmp_path / "ours.tfrecord"), "--db", url])
    assert imported.exit_code == 0, imported.output
    assert f"{len(stored)} results added" in imported.output
    again = runner.invoke(main, ["import-nb101", str(tmp_path / "ours.tfrecord"), "--db", url])
    assert again.exit_code == 0 and "0 results added" in again.output

    out = tmp_path / "cmp"
    compared = runner.invoke(main, ["compare", "--campaign", "ours", "--against", "published",
                                    "--out", str(out), "--db", url])
    assert compared.exit_code == 0, compared.output
    summary = __import__("json").loads((out / "summary.json").read_text())
    assert summary["parameter_agreement"] == 1.0
    assert summary["cells_common"] == 5
    for stats in summary["budgets"].values():
        assert stats["final_validation_accuracy"]["mean_abs_difference"] == 0.0
        assert stats["spearman_validation"] == pytest.approx(1.0)
    assert (out / "final_validation_accuracy.png").exists()

    missing = runner.invoke(main, ["export", "--campaign", "nope", "--out", str(tmp_path / "x.jsonl"),
                                   "--db", url])
    assert missing.exit_code == 2 and "nope" in missing.output


def test_api_answers_for_a_finished_smoke_campaign(sqlite_url, synthetic_cifar, one_torch_thread, tmp_path):
    """A real (tiny) campaign: cells trained by farm.train on synthetic CIFAR, completed through the
    job queue; the API over the campaign and over its tfrecord export return the trained numbers."""
    from db.engine import make_engine
    from db.migrate import upgrade
    from db.nb101_io import campaign_records
    from db.queue import JobQueue
    from farm.config import SMOKE, TrainConfig
    from farm.cost import trainable_parameters
    from farm.records import write_file as write_records
    from farm.spec import Cell
    from farm.train import TrainJob, train
    from nasfarm.campaigns import create_campaign

    engine = make_engine(sqlite_url)
    upgrade(engine)
    cells = [
        Cell.from_any([[0, 1, 0], [0, 0, 1], [0, 0, 0]], ["input", C3, "output"]),
        Cell.from_any(RESNET_MATRIX, ["input", C1, MP, "output"]),
    ]
    create_campaign(engine, "smoke", cells, epochs=(2,), repeats=1, profile=SMOKE.to_dict())
    queue = JobQueue(engine)
    trained = {}
    for job in queue.claim(10, "test"):
        cell = Cell.from_any(job.matrix, job.ops)
        result = train(TrainJob(cell, job.epochs, job.repeat, job.seed, TrainConfig.from_dict(job.profile)),
                       synthetic_cifar)
        assert queue.complete(job.job_id, job.lease_token, result.to_dict())
        trained[cell.hash] = (cell, result.metrics)
    assert len(trained) == 2

    path = tmp_path / "smoke.tfrecord"
    write_records(path, campaign_records(engine, "smoke"))
    for bench in (NASBench(campaign_records(engine, "smoke"), seed=1), NASBench(path, seed=1)):
        assert bench.valid_epochs == {2} and bench.config["num_repeats"] == 1
        for cell, metrics in trained.values():
            spec = ModelSpec(cell.matrix, list(cell.ops))
            final, halfway = bench.query(spec, epochs=2), bench.query(spec, epochs=2, stop_halfway=True)
            assert final["module_adjacency"].tolist() == cell.matrix.tolist()
            assert final["trainable_parameters"] == trainable_parameters(cell, SMOKE)
            for key in ("training_time", "train_accuracy", "validation_accuracy", "test_accuracy"):
                assert final[key] == metrics[f"final_{key}"]
                assert halfway[key] == metrics[f"halfway_{key}"]
        assert bench.get_budget_counters()[1] == 2 * (2 + 1)
