"""TFRecord framing, CRC32C and the ModelMetrics proto, against the published wire formats."""

from __future__ import annotations

import base64
import importlib.util
import json
import struct

import pytest

from farm.nb101_proto import (
    EvaluationData,
    ModelMetrics,
    ProtoDecodeError,
    decode_model_metrics,
    encode_model_metrics,
)
from farm.records import BenchmarkRecord, RecordError, iter_file
from farm.tfrecord import (
    TFRecordError,
    crc32c,
    crc32c_reference,
    iter_records,
    masked_crc32c,
    write_records,
)

# CRC-32C check values: the common "123456789" check, and RFC 3720 appendix B.4.
CRC_VECTORS = [
    (b"123456789", 0xE3069283),
    (bytes(32), 0x8A9136AA),
    (b"\xff" * 32, 0x62A8AB43),
    (bytes(range(32)), 0x46DD794E),
    (bytes(range(31, -1, -1)), 0x113FDB5C),
    (b"", 0x00000000),
]


def tf_mask(crc: int) -> int:
    """TensorFlow's crc32c::Mask, written out from its definition."""
    rotated = ((crc >> 15) | (crc << 17)) & 0xFFFFFFFF
    return (rotated + 0xA282EAD8) & 0xFFFFFFFF


@pytest.mark.parametrize(("data", "expected"), CRC_VECTORS)
def test_crc32c_known_vectors(data: bytes, expected: int) -> None:
    assert crc32c(data) == expected
    assert crc32c_reference(data) == expected


def test_vectorised_crc_matches_bytewise_on_all_lengths_around_chunk_edges() -> None:
    rng = __import__("random").Random(7)
    for n in [*range(0, 70), 4091, 4095, 4096, 4097, 4099, 4100, 8192, 8195, 20_000]:
        data = bytes(rng.getrandbits(8) for _ in range(n))
        assert crc32c(data) == crc32c_reference(data), n


def test_masked_crc_of_check_string() -> None:
    assert masked_crc32c(b"123456789") == tf_mask(0xE3069283)


def _frame(payload: bytes) -> bytes:
    """A TFRecord frame assembled from the format definition, independent of farm.tfrecord."""
    header = struct.pack("<Q", len(payload))
    return (
        header
        + struct.pack("<I", tf_mask(crc32c_reference(header)))
        + payload
        + struct.pack("<I", tf_mask(crc32c_reference(payload)))
    )


def test_reads_hand_built_frames(tmp_path) -> None:
    path = tmp_path / "hand.tfrecord"
    path.write_bytes(_frame(b"123456789") + _frame(b"") + _frame(b"x" * 5000))
    assert list(iter_records(path)) == [b"123456789", b"", b"x" * 5000]
    # The frame of the check string, byte for byte: length 9, its masked CRC, data, data CRC.
    frame = _frame(b"123456789")
    assert frame[:8] == bytes([9, 0, 0, 0, 0, 0, 0, 0])
    assert frame[-4:] == struct.pack("<I", tf_mask(0xE3069283))


def test_writer_produces_the_same_bytes(tmp_path) -> None:
    path = tmp_path / "w.tfrecord"
    assert write_records(path, [b"123456789", b"abc"]) == 2
    assert path.read_bytes() == _frame(b"123456789") + _frame(b"abc")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: b[:3], "truncated header"),
        (lambda b: b[:-2], "truncated record"),
        (lambda b: b[:14] + bytes([b[14] ^ 1]) + b[15:], "corrupt data"),
        (lambda b: b[:-1] + bytes([b[-1] ^ 0x80]), "corrupt data"),
        (lambda b: bytes([b[0] ^ 2]) + b[1:], "corrupt length"),
    ],
)
def test_corrupt_records_are_rejected_with_position(tmp_path, damage, message) -> None:
    good = _frame(b"first record")
    path = tmp_path / "bad.tfrecord"
    path.write_bytes(good + damage(_frame(b"123456789")))
    records = iter_records(path)
    assert next(records) == b"first record"
    with pytest.raises(TFRecordError, match=message) as info:
        next(records)
    assert f"record 1 at byte {len(good)}" in str(info.value)


# -- the proto --------------------------------------------------------------------------------

# ModelMetrics { evaluation_data { current_epoch: 108 training_time: 0.5 checkpoint_path: "ab" }
#                trainable_parameters: 2694282  total_time: 2.0 }, encoded by hand:
#   0a 16            field 1, wire type 2, 22 bytes (9 + 9 + 4)
#     09 <108.0 LE>  field 1 double: 108.0 = 0x405B000000000000
#     11 <0.5 LE>    field 2 double: 0.5 = 0x3FE0000000000000
#     32 02 61 62    field 6 string "ab"
#   10 8a b9 a4 01   field 2 varint 2694282 (0x291C8A: 0x0A|0x80, 0x39|0x80, 0x24|0x80, 0x01)
#   19 <2.0 LE>      field 3 double: 2.0 = 0x4000000000000000
HAND_BUILT = bytes.fromhex(
    "0a16"
    "09" "0000000000005b40"
    "11" "000000000000e03f"
    "32026162"
    "108ab9a401"
    "19" "0000000000000040"
)
HAND_BUILT_MESSAGE = ModelMetrics(
    (EvaluationData(current_epoch=108.0, training_time=0.5, checkpoint_path="ab"),),
    trainable_parameters=2694282,
    total_time=2.0,
)


def test_proto_encodes_to_hand_built_bytes() -> None:
    assert encode_model_metrics(HAND_BUILT_MESSAGE) == HAND_BUILT


def test_proto_decodes_hand_built_bytes() -> None:
    assert decode_model_metrics(HAND_BUILT) == HAND_BUILT_MESSAGE


def test_proto_skips_unknown_fields_and_handles_negative_int32() -> None:
    unknown = bytes.fromhex("2801") + bytes.fromhex("3d00000000") + bytes.fromhex("4203616263")
    negative = bytes.fromhex("10ffffffffffffffffff01")  # -1 as a 10-byte varint
    message = decode_model_metrics(unknown + negative)
    assert message.trainable_parameters == -1
    assert encode_model_metrics(ModelMetrics((), -1, None)) == negative


@pytest.mark.parametrize("bad", [HAND_BUILT[:-3], HAND_BUILT[:5], bytes.fromhex("0a05090000"), b"\x0b"])
def test_proto_rejects_truncated_or_malformed(bad: bytes) -> None:
    with pytest.raises(ProtoDecodeError):
        decode_model_metrics(bad)


def test_published_record_round_trip(tmp_path) -> None:
    """A record in the published layout: JSON list with base64 proto inside a TFRecord frame."""
    payload = json.dumps(
        [
            "28cfc7874f6d200472e1a9dcd8650aa0",
            108,
            "0111100" "0000001" "0000001" "0000001" "0000010" "0000001" "0000000",
            "input,conv3x3-bn-relu,conv1x1-bn-relu,maxpool3x3,conv3x3-bn-relu,conv3x3-bn-relu,output",
            base64.b64encode(HAND_BUILT).decode(),
        ]
    ).encode()
    path = tmp_path / "one.tfrecord"
    path.write_bytes(_frame(payload))
    (record,) = iter_file(path)
    assert record.module_hash == "28cfc7874f6d200472e1a9dcd8650aa0"
    assert record.epochs == 108
    assert record.metrics == HAND_BUILT_MESSAGE
    assert record.to_tfrecord_payload() == payload

    bad = tmp_path / "bad.tfrecord"
    bad.write_bytes(_frame(b'["x", 108, "01", "a,b", "!!notbase64"]'))
    with pytest.raises(RecordError, match="record 0"):
        list(iter_file(bad))


def test_records_round_trip_through_every_format(tmp_path) -> None:
    from farm.records import write_file

    evaluations = tuple(
        EvaluationData(float(e), t, 0.1 * i, 0.2 * i, 0.3 * i, None if i < 2 else f"ckpt-{i}")
        for i, (e, t) in enumerate([(0.0, 0.0), (54.0, 577.0859985351562), (108.0, 1155.85302734375)])
    )
    records = [
        BenchmarkRecord("a" * 32, 108, "0100", "input,output", ModelMetrics(evaluations, 882570, 1200.5), r)
        for r in range(3)
    ]
    names = ["x.tfrecord", "x.jsonl", "x.jsonl.gz"]
    if importlib.util.find_spec("pyarrow") is not None:  # the optional [parquet] extra
        names.append("x.parquet")
    for name in names:
        path = tmp_path / name
        assert write_file(path, records) == 3
        back = list(iter_file(path))
        if name.endswith("tfrecord"):  # the published layout has no repeat column
            back = [BenchmarkRecord(**{**r.__dict__, "repeat": i}) for i, r in enumerate(back)]
        assert back == records, name
