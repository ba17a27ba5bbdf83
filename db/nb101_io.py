"""NAS-Bench-101 records in and out of the job database.

- :func:`campaign_records` streams a campaign's finished jobs as benchmark records (the source the
  CLI hands to ``farm.api.NASBench`` and to ``nasfarm export``);
- :func:`store_records` stores published records (e.g. ``nasbench_only108.tfrecord``) as the results
  of a campaign's jobs and marks them done, so that SQL and ``nasfarm compare`` see both tables
  side by side (``nasfarm.campaigns.import_records`` creates that campaign in the same transaction).

Records come from ``farm.records`` (plain data, no torch/Ray). A record without a repeat index
(the published files keep it implicit) gets 0, 1, 2... in the order met, per (cell, budget).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from typing import Any

import sqlalchemy as sa

from db.campaigns import get_campaign
from db.dialect import dialect_of
from db.errors import translating
from db.statements import records as sql
from db.urls import redact
from farm.nb101_proto import EvaluationData, ModelMetrics
from farm.records import BenchmarkRecord


def campaign_records(engine: sa.Engine, campaign: str, *, batch: int = 10_000) -> Iterator[BenchmarkRecord]:
    """The campaign's results, ordered by (cell, budget, repeat), streamed from the server; each
    record carries the campaign's data set."""
    settings = get_campaign(engine, campaign)  # UnknownCampaign for a bad name
    campaign_id, dataset = settings["id"], settings.get("dataset") or "cifar10"
    query = dialect_of(engine).render(sql.CAMPAIGN_RECORDS)
    with translating(redact(engine.url)), engine.connect() as conn:
        rows = conn.execution_options(stream_results=True, yield_per=batch).execute(
            query, {"campaign_id": campaign_id}
        )
        for row in rows:
            yield _record_of_row(row, dataset)


def _record_of_row(row: Any, dataset: str | None = None) -> BenchmarkRecord:
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
        dataset=dataset,
    )


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def store_records(
    conn: sa.Connection, campaign_id: int, records: Iterable[BenchmarkRecord], *, chunk: int = 20_000
) -> int:
    """Store ``records`` as the results of campaign ``campaign_id``'s matching jobs and mark those
    jobs done, on ``conn`` -- inside the transaction that created the campaign and its jobs
    (:func:`db.campaigns.open_campaign`), so an import that fails half-way leaves nothing. A job
    with a result already is skipped (re-importing adds nothing). Streams the records in chunks.
    Returns how many results were added."""
    dialect = dialect_of(conn)
    insert = dialect.render(sql.INSERT_IMPORT_ROW)
    seen: dict[tuple[str, int], int] = {}
    conn.execute(dialect.render(sql.CREATE_IMPORT_TABLE))
    rows: list[dict[str, Any]] = []
    for record in records:
        key = (record.module_hash, int(record.epochs))
        repeat = record.repeat if record.repeat is not None else seen.get(key, 0)
        seen[key] = seen.get(key, 0) + 1
        rows.append(_import_row(record, repeat))
        if len(rows) >= chunk:
            conn.execute(insert, rows)
            rows.clear()
    if rows:
        conn.execute(insert, rows)
    params = {"campaign_id": campaign_id, "now": time.time()}
    added = conn.execute(dialect.render(sql.STORE_IMPORTED_RESULTS), params).rowcount
    conn.execute(dialect.render(sql.MARK_IMPORTED_DONE), params)
    conn.execute(dialect.render(sql.DROP_IMPORT_TABLE))
    return added


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
