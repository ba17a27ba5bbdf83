"""TFRecord framing without TensorFlow: read and write, with the masked CRC32C checks.

A TFRecord file is a sequence of frames::

    uint64 length (little endian) | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)

CRC32C is the Castagnoli CRC (reflected polynomial 0x82F63B78, init and final xor 0xFFFFFFFF);
"masked" rotates it right by 15 bits and adds 0xA282EAD8 (mod 2**32) so that a CRC stored inside
data that is itself CRC'd does not cancel out.

The CRC runs in numpy: the CRC register is linear over GF(2), so the contribution of byte ``b``
followed by ``k`` more bytes is a fixed table entry ``POS[k][b]``; a message's CRC is the XOR of
one entry per byte, with the initial register XORed into the first four bytes. That turns the
byte loop into one fancy-indexing call per record (see bench/tfrecord_read.py for the speed).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

_POLY = 0x82F63B78
_MASK_DELTA = 0xA282EAD8
# Rows of the positional table; longer messages are processed in chunks of this many bytes.
_CHUNK = 4096


class TFRecordError(ValueError):
    """A TFRecord file that is truncated or fails a CRC check; the message says where."""


def _byte_table() -> np.ndarray:
    table = np.zeros(256, dtype=np.uint32)
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _POLY if crc & 1 else crc >> 1
        table[byte] = crc
    return table


_TABLE = _byte_table()
_TABLE_LIST = [int(x) for x in _TABLE]


def _positional_table(rows: int) -> np.ndarray:
    """POS[k][b] = CRC register contribution of byte b followed by k zero bytes."""
    pos = np.empty((rows, 256), dtype=np.uint32)
    pos[0] = _TABLE
    for k in range(1, rows):
        prev = pos[k - 1]
        pos[k] = _TABLE[prev & 0xFF] ^ (prev >> np.uint32(8))
    return pos


_POS = _positional_table(_CHUNK)
# Row index for the byte at position i of an m-byte chunk is m - 1 - i.
_DESCENDING = np.arange(_CHUNK - 1, -1, -1, dtype=np.intp)


def crc32c_reference(data: bytes, crc: int = 0) -> int:
    """Byte-at-a-time CRC32C; slow, kept as the independent check of :func:`crc32c`."""
    crc ^= 0xFFFFFFFF
    for byte in data:
        crc = _TABLE_LIST[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def crc32c(data: bytes | bytearray | memoryview) -> int:
    """CRC32C of ``data`` (crc32c(b"123456789") == 0xE3069283)."""
    view = np.frombuffer(data, dtype=np.uint8)
    n = view.size
    if n < 4:
        return crc32c_reference(bytes(view))
    state = 0xFFFFFFFF
    start = 0
    while start < n:
        size = min(_CHUNK, n - start)
        if size < 4:  # a tail too short to absorb the 4-byte register: finish byte by byte
            crc = state
            for byte in view[start:].tolist():
                crc = _TABLE_LIST[(crc ^ byte) & 0xFF] ^ (crc >> 8)
            return crc ^ 0xFFFFFFFF
        chunk = view[start : start + size]
        if state:
            # Feeding register r into a chunk equals XORing r's bytes into its first four bytes.
            chunk = chunk.copy()
            chunk[:4] ^= np.frombuffer(struct.pack("<I", state), dtype=np.uint8)
        rows = _DESCENDING[_CHUNK - size :]
        state = int(np.bitwise_xor.reduce(_POS[rows, chunk]))
        start += size
    return state ^ 0xFFFFFFFF


def mask_crc(crc: int) -> int:
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def masked_crc32c(data: bytes | bytearray | memoryview) -> int:
    return mask_crc(crc32c(data))


def encode_record(data: bytes) -> bytes:
    """One complete TFRecord frame around ``data``."""
    header = struct.pack("<Q", len(data))
    return (
        header
        + struct.pack("<I", masked_crc32c(header))
        + bytes(data)
        + struct.pack("<I", masked_crc32c(data))
    )


def write_records(path: str | os.PathLike[str], records: Iterable[bytes]) -> int:
    """Write ``records`` as a TFRecord file (atomically: temp file + rename); returns the count."""
    target = Path(path)
    temp = target.with_name(target.name + ".tmp")
    count = 0
    try:
        with open(temp, "wb") as handle:
            for data in records:
                handle.write(encode_record(data))
                count += 1
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)  # nothing half-written is left behind
        raise
    return count


def _open(source: str | os.PathLike[str] | BinaryIO) -> tuple[BinaryIO, str, bool]:
    if isinstance(source, str | os.PathLike):
        return open(source, "rb", buffering=1 << 20), os.fspath(source), True
    return source, getattr(source, "name", "<stream>"), False


def iter_records(
    source: str | os.PathLike[str] | BinaryIO, *, check_crc: bool = True
) -> Iterator[bytes]:
    """Yield the payload of every frame; a bad CRC or a truncated frame raises TFRecordError."""
    handle, name, owned = _open(source)
    try:
        index = 0
        offset = 0
        while True:
            header = handle.read(12)
            if not header:
                return
            where = f"{name}: record {index} at byte {offset}"
            if len(header) < 12:
                raise TFRecordError(f"{where}: truncated header ({len(header)} of 12 bytes)")
            length_bytes = header[:8]
            (length,) = struct.unpack("<Q", length_bytes)
            (length_crc,) = struct.unpack("<I", header[8:])
            if check_crc and masked_crc32c(length_bytes) != length_crc:
                raise TFRecordError(f"{where}: corrupt length field (CRC mismatch)")
            body = handle.read(length + 4)
            if len(body) < length + 4:
                raise TFRecordError(
                    f"{where}: truncated record ({len(body)} of {length + 4} bytes present)"
                )
            data = body[:length]
            if check_crc:
                (data_crc,) = struct.unpack("<I", body[length:])
                if masked_crc32c(data) != data_crc:
                    raise TFRecordError(f"{where}: corrupt data ({length} bytes, CRC mismatch)")
            yield data
            index += 1
            offset += 12 + length + 4
    finally:
        if owned:
            handle.close()
