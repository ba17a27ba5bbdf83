"""One checkpoint per job: written atomically, checksummed, and tied to the job that wrote it.

File layout: a magic line, the SHA-256 of the payload in hex, a newline, then the payload (a
``torch.save`` of ``{"identity": ..., "state": ...}``). Reading verifies the magic and the checksum
before unpickling anything (and unpickles with ``weights_only=True``), then compares the recorded
job identity (cell hash, epochs, repeat, seed, config) with the caller's: a corrupt file or another
job's checkpoint raises :class:`CheckpointError` instead of being loaded.

Paths are local files or fsspec URIs (``s3://``, ``gs://``, ``memory://``...). Local writes go to a
temporary file in the same directory, are fsynced and renamed over the target, so a reader never
sees half a checkpoint even if the writer is killed mid-write.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import uuid
from pathlib import Path
from typing import Any

import torch

from farm.train_errors import CheckpointError

MAGIC = b"NASFARM-CHECKPOINT-1\n"
DIGEST_HEX = 64


def _canonical(identity: dict[str, Any]) -> str:
    return json.dumps(identity, sort_keys=True, separators=(",", ":"))


def _is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def _local(path: str) -> Path:
    return Path(path.removeprefix("file://"))


def encode(identity: dict[str, Any], state: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save({"identity": _canonical(identity), "state": state}, buffer)
    payload = buffer.getvalue()
    return MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload


def decode(blob: bytes, identity: dict[str, Any], *, where: str = "checkpoint") -> dict[str, Any]:
    """Check and unpack a checkpoint's bytes; returns its state."""
    header = len(MAGIC) + DIGEST_HEX + 1
    if len(blob) < header or not blob.startswith(MAGIC):
        raise CheckpointError(f"{where} is not a nasfarm checkpoint (bad header)")
    recorded = blob[len(MAGIC) : len(MAGIC) + DIGEST_HEX].decode("ascii", errors="replace")
    payload = blob[header:]
    actual = hashlib.sha256(payload).hexdigest()
    if recorded != actual:
        raise CheckpointError(
            f"{where} is corrupt: SHA-256 {actual[:12]}... does not match the recorded {recorded[:12]}..."
        )
    try:
        content = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as exc:  # checksum matched, so this is a writer bug or a foreign format
        raise CheckpointError(f"{where} could not be read ({type(exc).__name__}: {exc})") from exc
    mine, theirs = _canonical(identity), content.get("identity")
    if theirs != mine:
        ours = json.loads(mine)
        recorded_identity = json.loads(theirs) if isinstance(theirs, str) else {}
        differing = sorted(
            key for key in set(ours) | set(recorded_identity) if ours.get(key) != recorded_identity.get(key)
        )
        raise CheckpointError(
            f"{where} belongs to another job (differs in: {', '.join(differing) or 'format'}); "
            "refusing to resume from it"
        )
    return content["state"]


def exists(path: str) -> bool:
    if _is_local(path):
        return _local(path).exists()
    import fsspec

    fs, inner = fsspec.core.url_to_fs(path)
    return fs.exists(inner)


def save(path: str, identity: dict[str, Any], state: dict[str, Any]) -> None:
    """Write atomically: temp file + fsync + rename (local), temp object + move (fsspec)."""
    blob = encode(identity, state)
    if _is_local(path):
        target = _local(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            with temp.open("wb") as handle:
                handle.write(blob)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, target)
        finally:
            temp.unlink(missing_ok=True)
        # Make the rename itself durable, so a crash cannot resurrect the previous checkpoint.
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return
    import fsspec

    fs, inner = fsspec.core.url_to_fs(path)
    parent = inner.rsplit("/", 1)[0] if "/" in inner else ""
    if parent:
        fs.makedirs(parent, exist_ok=True)
    temp = f"{inner}.tmp-{uuid.uuid4().hex[:8]}"
    with fs.open(temp, "wb") as handle:
        handle.write(blob)
    fs.mv(temp, inner)


def load(path: str, identity: dict[str, Any]) -> dict[str, Any] | None:
    """The state saved at ``path`` for this job, or None when there is no checkpoint."""
    if _is_local(path):
        target = _local(path)
        if not target.exists():
            return None
        blob = target.read_bytes()
    else:
        import fsspec

        fs, inner = fsspec.core.url_to_fs(path)
        if not fs.exists(inner):
            return None
        with fs.open(inner, "rb") as handle:
            blob = handle.read()
    return decode(blob, identity, where=f"checkpoint {path}")


def remove(path: str) -> None:
    if _is_local(path):
        _local(path).unlink(missing_ok=True)
        return
    import fsspec

    fs, inner = fsspec.core.url_to_fs(path)
    if fs.exists(inner):
        fs.rm(inner)
