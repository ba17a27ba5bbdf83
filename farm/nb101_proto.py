"""The ``nasbench.ModelMetrics`` proto2 messages, encoded and decoded by hand (SPEC f.4).

No protobuf dependency: the two messages are small and fixed::

    message ModelMetrics {                     message EvaluationData {
      repeated EvaluationData evaluation_data = 1;  optional double current_epoch = 1;
      optional int32 trainable_parameters = 2;      optional double training_time = 2;
      optional double total_time = 3;               optional double train_accuracy = 3;
    }                                               optional double validation_accuracy = 4;
                                                    optional double test_accuracy = 5;
                                                    optional string checkpoint_path = 6;
                                                  }

Wire format: each field is a varint key ``(number << 3) | wire_type``; doubles are wire type 1
(8 bytes little endian), int32 is a varint (negative values as 10-byte two's complement), strings
and sub-messages are wire type 2 (varint length + bytes). Fields are written in field-number order,
as protobuf's serializer does, so our bytes match a real encoder's. Unknown fields are skipped on
decode, as proto2 parsers do. Absent optional fields decode as None.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


class ProtoDecodeError(ValueError):
    """Bytes that are not a valid ModelMetrics message."""


@dataclass(frozen=True)
class EvaluationData:
    current_epoch: float | None = None
    training_time: float | None = None
    train_accuracy: float | None = None
    validation_accuracy: float | None = None
    test_accuracy: float | None = None
    checkpoint_path: str | None = None


@dataclass(frozen=True)
class ModelMetrics:
    evaluation_data: tuple[EvaluationData, ...] = ()
    trainable_parameters: int | None = None
    total_time: float | None = None


_EVALUATION_DOUBLES = (
    (1, "current_epoch"),
    (2, "training_time"),
    (3, "train_accuracy"),
    (4, "validation_accuracy"),
    (5, "test_accuracy"),
)


def encode_varint(value: int) -> bytes:
    if value < 0:
        value &= (1 << 64) - 1  # int32/int64 negatives: 64-bit two's complement, 10 bytes
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _key(number: int, wire_type: int) -> bytes:
    return encode_varint((number << 3) | wire_type)


def _double(number: int, value: float) -> bytes:
    return _key(number, _FIXED64) + struct.pack("<d", float(value))


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _key(number, _LENGTH) + encode_varint(len(payload)) + payload


def encode_evaluation_data(data: EvaluationData) -> bytes:
    parts = [
        _double(number, getattr(data, name))
        for number, name in _EVALUATION_DOUBLES
        if getattr(data, name) is not None
    ]
    if data.checkpoint_path is not None:
        parts.append(_length_delimited(6, data.checkpoint_path.encode("utf-8")))
    return b"".join(parts)


def encode_model_metrics(metrics: ModelMetrics) -> bytes:
    parts = [_length_delimited(1, encode_evaluation_data(e)) for e in metrics.evaluation_data]
    if metrics.trainable_parameters is not None:
        value = int(metrics.trainable_parameters)
        if not -(2**31) <= value < 2**31:
            raise ValueError(f"trainable_parameters {value} does not fit an int32")
        parts.append(_key(2, _VARINT) + encode_varint(value))
    if metrics.total_time is not None:
        parts.append(_double(3, metrics.total_time))
    return b"".join(parts)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise ProtoDecodeError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ProtoDecodeError("varint longer than 10 bytes")


def _fields(buf: bytes):
    """Yield (field number, wire type, value) where value is int, float bytes or payload bytes."""
    pos = 0
    end = len(buf)
    while pos < end:
        key, pos = _read_varint(buf, pos)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise ProtoDecodeError("field number 0")
        if wire_type == _VARINT:
            value, pos = _read_varint(buf, pos)
        elif wire_type == _FIXED64:
            if pos + 8 > end:
                raise ProtoDecodeError(f"truncated 64-bit field {number}")
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire_type == _LENGTH:
            size, pos = _read_varint(buf, pos)
            if pos + size > end:
                raise ProtoDecodeError(f"truncated length-delimited field {number}")
            value, pos = buf[pos : pos + size], pos + size
        elif wire_type == _FIXED32:
            if pos + 4 > end:
                raise ProtoDecodeError(f"truncated 32-bit field {number}")
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ProtoDecodeError(f"unsupported wire type {wire_type} (field {number})")
        yield number, wire_type, value


def _expect(number: int, wire_type: int, wanted: int, message: str) -> None:
    if wire_type != wanted:
        raise ProtoDecodeError(f"{message} field {number} has wire type {wire_type}, expected {wanted}")


def decode_evaluation_data(buf: bytes) -> EvaluationData:
    names = dict(_EVALUATION_DOUBLES)
    values: dict[str, object] = {}
    for number, wire_type, value in _fields(buf):
        if number in names:
            _expect(number, wire_type, _FIXED64, "EvaluationData")
            values[names[number]] = struct.unpack("<d", value)[0]
        elif number == 6:
            _expect(number, wire_type, _LENGTH, "EvaluationData")
            try:
                values["checkpoint_path"] = bytes(value).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ProtoDecodeError("checkpoint_path is not UTF-8") from exc
        # unknown fields are skipped (proto2 semantics)
    return EvaluationData(**values)


def decode_model_metrics(buf: bytes) -> ModelMetrics:
    evaluations: list[EvaluationData] = []
    params: int | None = None
    total: float | None = None
    for number, wire_type, value in _fields(bytes(buf)):
        if number == 1:
            _expect(number, wire_type, _LENGTH, "ModelMetrics")
            evaluations.append(decode_evaluation_data(value))
        elif number == 2:
            _expect(number, wire_type, _VARINT, "ModelMetrics")
            value &= 0xFFFFFFFF  # int32: keep the low 32 bits, then sign-extend
            params = value - (1 << 32) if value >= 1 << 31 else value
        elif number == 3:
            _expect(number, wire_type, _FIXED64, "ModelMetrics")
            total = struct.unpack("<d", value)[0]
    return ModelMetrics(tuple(evaluations), params, total)
