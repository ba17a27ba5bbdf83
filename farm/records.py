"""Benchmark records: one trained (cell, epoch budget, repeat), in the forms the data travels in.

- The published form (SPEC f.4): a TFRecord whose payload is the JSON list
  ``[module_hash, epochs, raw_adjacency, raw_operations, base64(ModelMetrics proto)]``.
  The original NAS-Bench-101 API can load a file we write this way.
- A flat row (JSON lines or Parquet) with NAS-Bench-101's metric names, for pandas:
  ``module_hash, epochs, repeat, raw_adjacency, raw_operations, trainable_parameters, total_time``
  and ``{start,halfway,final}_{epoch,training_time,train_accuracy,validation_accuracy,
  test_accuracy,checkpoint_path}``, and ``dataset`` (the data set the cell was trained on). The flat
  form needs the usual three evaluations.

The published tfrecord form has no data-set field: a record read from one has ``dataset`` None
(NAS-Bench-101's own files are CIFAR-10) unless a sidecar ``<file>.json`` written by ``nasfarm
export`` names the data set.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from farm import tfrecord
from farm.nb101_proto import (
    EvaluationData,
    ModelMetrics,
    ProtoDecodeError,
    decode_model_metrics,
    encode_model_metrics,
)

FORMATS = ("tfrecord", "jsonl", "parquet")
# Evaluation order inside a record (SPEC f.4): step 0, halfway, final.
EVALUATION_PREFIXES = ("start", "halfway", "final")
_EVALUATION_COLUMNS = (
    ("epoch", "current_epoch"),
    ("training_time", "training_time"),
    ("train_accuracy", "train_accuracy"),
    ("validation_accuracy", "validation_accuracy"),
    ("test_accuracy", "test_accuracy"),
    ("checkpoint_path", "checkpoint_path"),
)


class RecordError(ValueError):
    """A record that cannot be parsed; the message says which and why."""


@dataclass(frozen=True)
class BenchmarkRecord:
    module_hash: str
    epochs: int
    raw_adjacency: str
    raw_operations: str
    metrics: ModelMetrics
    # Position among the records of the same (hash, epochs); the published files leave it
    # implicit in file order, so it is None when read from a tfrecord.
    repeat: int | None = None
    # The data set it was trained on (farm.datasets name); None where the source does not say.
    dataset: str | None = None

    # -- the published form -------------------------------------------------------------
    def to_json_list(self) -> list[Any]:
        raw_metrics = base64.b64encode(encode_model_metrics(self.metrics)).decode("ascii")
        return [self.module_hash, int(self.epochs), self.raw_adjacency, self.raw_operations, raw_metrics]

    def to_tfrecord_payload(self) -> bytes:
        return json.dumps(self.to_json_list()).encode("utf-8")

    @classmethod
    def from_json_list(cls, data: Any, repeat: int | None = None) -> BenchmarkRecord:
        if not isinstance(data, list) or len(data) != 5:
            raise RecordError("a NAS-Bench-101 record is a JSON list of 5 elements")
        module_hash, epochs, adjacency, operations, raw_metrics = data
        try:
            metrics = decode_model_metrics(base64.b64decode(raw_metrics, validate=True))
        except (ProtoDecodeError, ValueError, TypeError) as exc:
            raise RecordError(f"record {module_hash}: bad ModelMetrics ({exc})") from exc
        return cls(str(module_hash), int(epochs), str(adjacency), str(operations), metrics, repeat)

    @classmethod
    def from_tfrecord_payload(cls, payload: bytes) -> BenchmarkRecord:
        try:
            data = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RecordError(f"record payload is not JSON ({exc})") from exc
        return cls.from_json_list(data)

    # -- the flat form -------------------------------------------------------------------
    def to_row(self) -> dict[str, Any]:
        evaluations = self.metrics.evaluation_data
        if len(evaluations) != len(EVALUATION_PREFIXES):
            raise RecordError(
                f"record {self.module_hash}/{self.epochs}: {len(evaluations)} evaluations; "
                "the flat form needs exactly 3 (start, halfway, final)"
            )
        row: dict[str, Any] = {
            "module_hash": self.module_hash,
            "epochs": int(self.epochs),
            "repeat": self.repeat,
            "raw_adjacency": self.raw_adjacency,
            "raw_operations": self.raw_operations,
            "trainable_parameters": self.metrics.trainable_parameters,
            "total_time": self.metrics.total_time,
        }
        for prefix, evaluation in zip(EVALUATION_PREFIXES, evaluations, strict=True):
            for column, attribute in _EVALUATION_COLUMNS:
                row[f"{prefix}_{column}"] = getattr(evaluation, attribute)
        row["dataset"] = self.dataset
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> BenchmarkRecord:
        try:
            evaluations = tuple(
                EvaluationData(
                    **{
                        attribute: _none_or(row.get(f"{prefix}_{column}"), column)
                        for column, attribute in _EVALUATION_COLUMNS
                    }
                )
                for prefix in EVALUATION_PREFIXES
            )
            params = row.get("trainable_parameters")
            metrics = ModelMetrics(
                evaluations,
                None if params is None else int(params),
                _none_or(row.get("total_time"), "total_time"),
            )
            repeat = row.get("repeat")
            dataset = row.get("dataset")  # absent from files written before data sets existed
            return cls(
                str(row["module_hash"]),
                int(row["epochs"]),
                str(row["raw_adjacency"]),
                str(row["raw_operations"]),
                metrics,
                None if repeat is None else int(repeat),
                None if dataset is None else str(dataset),
            )
        except KeyError as exc:
            raise RecordError(f"row lacks column {exc.args[0]!r}") from exc

    # -- from a training result ----------------------------------------------------------
    @classmethod
    def from_train_result(
        cls,
        *,
        module_hash: str,
        epochs: int,
        raw_adjacency: str,
        raw_operations: str,
        result: Mapping[str, Any],
        repeat: int | None = None,
    ) -> BenchmarkRecord:
        """From ``TrainResult.to_dict()`` (keys ``metrics`` and ``evaluations``)."""
        metrics = result["metrics"]
        evaluations = tuple(
            EvaluationData(
                current_epoch=float(e["epochs"]),
                training_time=float(e["training_time"]),
                train_accuracy=float(e["train_accuracy"]),
                validation_accuracy=float(e["validation_accuracy"]),
                test_accuracy=float(e["test_accuracy"]),
                checkpoint_path=e.get("checkpoint_path"),
            )
            for e in result["evaluations"]
        )
        return cls(
            module_hash,
            int(epochs),
            raw_adjacency,
            raw_operations,
            ModelMetrics(evaluations, int(metrics["trainable_parameters"]), float(metrics["total_time"])),
            repeat,
        )

    def nb101_metrics(self) -> dict[str, float]:
        """The eight per-repeat numbers the NAS-Bench-101 API keeps (halfway and final)."""
        evaluations = self.metrics.evaluation_data
        if len(evaluations) < 2:
            raise RecordError(f"record {self.module_hash}/{self.epochs} has no halfway/final evaluation")
        out = {}
        for prefix, evaluation in (("halfway", evaluations[-2]), ("final", evaluations[-1])):
            out[f"{prefix}_training_time"] = evaluation.training_time
            out[f"{prefix}_train_accuracy"] = evaluation.train_accuracy
            out[f"{prefix}_validation_accuracy"] = evaluation.validation_accuracy
            out[f"{prefix}_test_accuracy"] = evaluation.test_accuracy
        return out


def _none_or(value: Any, column: str) -> Any:
    """Parquet and pandas give NaN/None for missing values; keep None, convert the rest."""
    if value is None:
        return None
    if column == "checkpoint_path":
        return str(value)
    number = float(value)
    return None if number != number else number  # NaN -> absent


# -- files -------------------------------------------------------------------------------

def detect_format(path: str | os.PathLike[str]) -> str:
    name = os.fspath(path).lower()
    if name.endswith((".tfrecord", ".tfrecords")):
        return "tfrecord"
    if name.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    raise RecordError(
        f"cannot tell the format of {os.fspath(path)!r}: use .tfrecord, .jsonl[.gz] or .parquet"
    )


def iter_file(path: str | os.PathLike[str], *, check_crc: bool = True) -> Iterator[BenchmarkRecord]:
    """Records of a tfrecord, JSON-lines or Parquet file (format from the extension)."""
    kind = detect_format(path)
    if kind == "tfrecord":
        dataset = sidecar_dataset(path)
        for index, payload in enumerate(tfrecord.iter_records(path, check_crc=check_crc)):
            try:
                record = BenchmarkRecord.from_tfrecord_payload(payload)
            except RecordError as exc:
                raise RecordError(f"{os.fspath(path)}: record {index}: {exc}") from exc
            yield record if dataset is None else replace(record, dataset=dataset)
    elif kind == "jsonl":
        opener = gzip.open if os.fspath(path).endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as handle:
            for line_number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    yield BenchmarkRecord.from_row(json.loads(line))
                except (json.JSONDecodeError, RecordError, ValueError, TypeError) as exc:
                    raise RecordError(f"{os.fspath(path)}: line {line_number}: {exc}") from exc
    else:
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=65536):
            for row in batch.to_pylist():
                yield BenchmarkRecord.from_row(row)


def sidecar_dataset(path: str | os.PathLike[str]) -> str | None:
    """The data set named by a tfrecord's sidecar ``<file>.json`` (``nasfarm export``), if any."""
    sidecar = Path(f"{os.fspath(path)}.json")
    if not sidecar.is_file():
        return None
    try:
        dataset = json.loads(sidecar.read_text()).get("dataset")
    except (OSError, ValueError, AttributeError) as exc:
        raise RecordError(f"{sidecar}: not the JSON sidecar of a nasfarm export ({exc})") from exc
    return None if dataset is None else str(dataset)


def write_file(
    path: str | os.PathLike[str], records: Iterable[BenchmarkRecord], *, fmt: str | None = None
) -> int:
    """Write records in ``fmt`` (default: from the extension), atomically; returns the count."""
    kind = fmt or detect_format(path)
    target = Path(path)
    if kind == "tfrecord":
        return tfrecord.write_records(target, (r.to_tfrecord_payload() for r in records))
    if kind not in ("jsonl", "parquet"):
        raise RecordError(f"unknown format {kind!r}; choose one of {', '.join(FORMATS)}")
    temp = target.with_name(target.name + ".tmp")
    try:
        count = _write_rows(kind, target, temp, records)
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)  # nothing half-written is left behind
        raise
    return count


def _write_rows(kind: str, target: Path, temp: Path, records: Iterable[BenchmarkRecord]) -> int:
    count = 0
    if kind == "jsonl":
        opener = gzip.open if target.name.endswith(".gz") else open
        with opener(temp, "wt", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record.to_row()) + "\n")
                count += 1
    elif kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = [record.to_row() for record in records]
        count = len(rows)
        schema = pa.schema(_parquet_fields())
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), temp)
    return count


def _parquet_fields() -> list[Any]:
    import pyarrow as pa

    fields = [
        pa.field("module_hash", pa.string()),
        pa.field("epochs", pa.int32()),
        pa.field("repeat", pa.int32()),
        pa.field("raw_adjacency", pa.string()),
        pa.field("raw_operations", pa.string()),
        pa.field("trainable_parameters", pa.int64()),
        pa.field("total_time", pa.float64()),
    ]
    for prefix in EVALUATION_PREFIXES:
        for column, _ in _EVALUATION_COLUMNS:
            kind = pa.string() if column == "checkpoint_path" else pa.float64()
            fields.append(pa.field(f"{prefix}_{column}", kind))
    fields.append(pa.field("dataset", pa.string()))
    return fields
