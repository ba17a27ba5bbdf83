"""NAS-Bench-101 records in and out of the job database.

- :func:`campaign_records` streams a campaign's finished jobs as benchmark records (the source the
  CLI hands to ``farm.api.NASBench`` and to ``nasfarm export``);
- :func:`import_records` loads published records (e.g. ``nasbench_only108.tfrecord``) as a campaign
  of done jobs, so that SQL and ``nasfarm compare`` see both tables side by side.

Records come from ``farm.records`` (plain data, no torch/Ray). A record without a repeat index
(the published files keep it implicit) gets 0, 1, 2... in the order met, per (cell, budget).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import sqlalchemy as sa

from db.campaigns import create_campaign, get_campaign
from db.engine import redact
from db.errors import translating
from farm.nb101_proto import EvaluationData, ModelMetrics
from farm.records import BenchmarkRecord

_LABEL_OF_OP = {"conv3x3-bn-relu": 0, "conv1x1-bn-relu": 1, "maxpool3x3": 2}
_METRIC_COLUMNS = (
    "halfway_training_time", "halfway_train_accuracy", "halfway_validation_accuracy",
    "halfway_test_accuracy", "final_training_time", "final_train_accuracy",
    "final_validation_accuracy", "final_test_accuracy",
)


def campaign_records(engine: sa.Engine, campaign: str, *, batch: int = 10_000) -> Iterator[BenchmarkRecord]:
    """The campaign's results, ordered by (cell, budget, repeat), streamed from the server."""
    campaign_id = get_campaign(engine, campaign)["id"]  # UnknownCampaign for a bad name
    query = sa.text(
        "SELECT r.cell_hash, r.epochs, r.repeat, r.trainable_parameters, r.total_time, r.evaluations, "
        + ", ".join(f"r.{c}" for c in _METRIC_COLUMNS)
        + ", cl.matrix, cl.ops FROM results r JOIN cells cl ON cl.hash = r.cell_hash"
        " WHERE r.campaign_id = :c ORDER BY r.cell_hash, r.epochs, r.repeat"
    )
    with translating(redact(engine.url)), engine.connect() as conn:
        rows = conn.execution_options(stream_results=True, yield_per=batch).execute(query, {"c": campaign_id})
        for row in rows:
            yield _record_of_row(row)


def _record_of_row(row: Any) -> BenchmarkRecord:
    evaluations = json.loads(row.evaluations) if row.evaluations else []
    if evaluations:
        data = tuple(
            EvaluationData(
                current_epoch=_float(e.get("epochs", e.get("current_epoch"))),
                training_time=_float(e.get("training_time")),
                train_accuracy=_float(e.get("train_accuracy")),
                validation_accuracy=_float(e.get("validation_accuracy")),
                test_accuracy=_float(e.get("test_accuracy")),
                checkpoint_path=e.get("checkpoint_path"),
            )
            for e in evaluations
        )
    else:  # a flat result: rebuild halfway and final from the metric columns
        data = tuple(
            EvaluationData(
                current_epoch=row.epochs * fraction,
                training_time=getattr(row, f"{p}_training_time"),
                train_accuracy=getattr(row, f"{p}_train_accuracy"),
                validation_accuracy=getattr(row, f"{p}_validation_accuracy"),
                test_accuracy=getattr(row, f"{p}_test_accuracy"),
            )
            for p, fraction in (("halfway", 0.5), ("final", 1.0))
        )
    matrix = json.loads(row.matrix)
    params = row.trainable_parameters
    return BenchmarkRecord(
        module_hash=row.cell_hash,
        epochs=int(row.epochs),
        raw_adjacency="".join(str(int(x)) for r in matrix for x in r),
        raw_operations=",".join(json.loads(row.ops)),
        metrics=ModelMetrics(data, None if params is None else int(params), row.total_time),
        repeat=int(row.repeat),
    )


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


class _Cell(tuple):
    """(hash, matrix, labels) in the shape db.campaigns accepts for an enumerated cell."""

    __slots__ = ()

    @property
    def hash(self) -> str:
        return self[0]

    @property
    def matrix(self) -> list[list[int]]:
        return self[1]

    @property
    def labels(self) -> list[int]:
        return self[2]


def _cell_of(record: BenchmarkRecord) -> _Cell:
    raw = record.raw_adjacency
    size = int(round(len(raw) ** 0.5))
    matrix = [[int(raw[i * size + j]) for j in range(size)] for i in range(size)]
    ops = record.raw_operations.split(",")
    labels = [-1] + [_LABEL_OF_OP[op] for op in ops[1:-1]] + [-2]
    return _Cell((record.module_hash, matrix, labels))


def import_records(
    engine: sa.Engine,
    read: Callable[[], Iterable[BenchmarkRecord]],
    campaign: str = "published",
    *,
    profile: dict[str, Any],
    progress: bool = False,
    chunk: int = 20_000,
) -> dict[str, Any]:
    """Load records as campaign ``campaign`` of done jobs; idempotent (re-import adds nothing).

    ``read`` is called twice (cells and budgets first, then the results), so a multi-GB file is
    streamed rather than held in memory. Returns the campaign dict plus ``results_added``.
    """
    cells: dict[str, _Cell] = {}
    epochs: set[int] = set()
    repeats: dict[tuple[str, int], int] = {}
    for record in read():
        if record.module_hash not in cells:
            cells[record.module_hash] = _cell_of(record)
        epochs.add(int(record.epochs))
        key = (record.module_hash, int(record.epochs))
        repeats[key] = repeats.get(key, 0) + 1
    if not cells:
        raise ValueError("no records to import")
    info = create_campaign(
        engine, campaign, cells.values(), epochs=sorted(epochs), repeats=max(repeats.values()),
        profile=profile, order="as-given", progress=progress, max_attempts=1,
    )
    columns = ("cell_hash", "epochs", "repeat", "trainable_parameters", "total_time", "evaluations",
               *_METRIC_COLUMNS)
    seen: dict[tuple[str, int], int] = {}
    added = 0
    with translating(redact(engine.url)), engine.begin() as conn:
        conn.execute(sa.text(
            "CREATE TEMPORARY TABLE nb101_import (cell_hash VARCHAR(32), epochs SMALLINT, repeat SMALLINT,"
            " trainable_parameters BIGINT, total_time DOUBLE PRECISION, evaluations TEXT, "
            + ", ".join(f"{c} DOUBLE PRECISION" for c in _METRIC_COLUMNS) + ")"
        ))
        insert = sa.text(
            f"INSERT INTO nb101_import ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})"
        )
        rows: list[dict[str, Any]] = []
        for record in read():
            key = (record.module_hash, int(record.epochs))
            repeat = record.repeat if record.repeat is not None else seen.get(key, 0)
            seen[key] = seen.get(key, 0) + 1
            rows.append(_import_row(record, repeat))
            if len(rows) >= chunk:
                conn.execute(insert, rows)
                rows.clear()
        if rows:
            conn.execute(insert, rows)
        now = time.time()
        added = conn.execute(sa.text(
            f"INSERT INTO results (job_id, campaign_id, attempt, created_at, {', '.join(columns)})"
            f" SELECT j.id, j.campaign_id, 1, :now, {', '.join('s.' + c for c in columns)}"
            " FROM nb101_import s JOIN jobs j ON j.campaign_id = :c AND j.cell_hash = s.cell_hash"
            " AND j.epochs = s.epochs AND j.repeat = s.repeat"
            " WHERE NOT EXISTS (SELECT 1 FROM results r WHERE r.job_id = j.id)"
        ), {"c": info["id"], "now": now}).rowcount
        # The status trigger keeps job_counts right; attempts = 1 records the published run.
        conn.execute(sa.text(
            "UPDATE jobs SET status = 'done', attempts = 1, finished_at = :now"
            " WHERE campaign_id = :c AND status <> 'done'"
            " AND EXISTS (SELECT 1 FROM results r WHERE r.job_id = jobs.id)"
        ), {"c": info["id"], "now": now})
        conn.execute(sa.text("DROP TABLE nb101_import"))
    return {**info, "results_added": added}


def _import_row(record: BenchmarkRecord, repeat: int) -> dict[str, Any]:
    metrics = record.nb101_metrics()
    evaluations = [
        {
            "epochs": e.current_epoch, "training_time": e.training_time, "train_accuracy": e.train_accuracy,
            "validation_accuracy": e.validation_accuracy, "test_accuracy": e.test_accuracy,
            **({"checkpoint_path": e.checkpoint_path} if e.checkpoint_path is not None else {}),
        }
        for e in record.metrics.evaluation_data
    ]
    return {
        "cell_hash": record.module_hash, "epochs": int(record.epochs), "repeat": int(repeat),
        "trainable_parameters": record.metrics.trainable_parameters, "total_time": record.metrics.total_time,
        "evaluations": json.dumps(evaluations), **metrics,
    }
