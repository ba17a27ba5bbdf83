"""A data set copy's fingerprint: which set, its split sizes, the SHA-256 of every file read, synthetic.

A campaign records the fingerprint of the copy it was created with; a run compares the copy it
loads (and, with ``--data-from nodes``, each node's copy) and refuses one that differs, naming the
parts that differ. Two copies with the same fingerprint hold the same bytes; where they lie does
not matter (file names are relative to the data set's root).

Hashing is cheap but not free (CIFAR-10's six files are 180 MB: a fraction of a second), so each
file is hashed once per process and remembered by (path, size, modification time).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from farm.datasets.base import DataSet
from farm.datasets.synthetic import read_marker

_CHUNK = 1 << 20
_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """SHA-256 of one file, cached in-process by (resolved path, size, mtime)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    cached = _DIGESTS.get(key)
    if cached is None:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while block := handle.read(_CHUNK):
                digest.update(block)
        cached = _DIGESTS[key] = digest.hexdigest()
    return cached


def is_synthetic(root: Path, files: dict[str, str]) -> bool:
    """True when ``root``'s marker records a synthetic set with exactly these file digests
    (whatever name it is read under now: the bytes are what is synthetic)."""
    marker = read_marker(root) or {}
    return any(isinstance(entry, dict) and entry.get("files") == files
               for entry in marker.get("datasets", {}).values())


def fingerprint(dataset: DataSet, root: Path, sizes: dict[str, int]) -> dict[str, Any]:
    """The fingerprint of the copy of ``dataset`` at ``root`` whose splits have ``sizes``."""
    files = dataset.file_digests(root, file_sha256)
    return {
        "dataset": dataset.name,
        "sizes": dict(sizes),
        "files": dict(sorted(files.items())),
        "synthetic": is_synthetic(root, files),
    }


def differences(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """The parts in which two fingerprints differ, one phrase each (empty: the same copy)."""
    found = []
    if expected.get("dataset") != actual.get("dataset"):
        found.append(f"data set {expected.get('dataset')!r} vs {actual.get('dataset')!r}")
    sizes_a, sizes_b = expected.get("sizes") or {}, actual.get("sizes") or {}
    for split in sorted(set(sizes_a) | set(sizes_b)):
        if sizes_a.get(split) != sizes_b.get(split):
            found.append(f"{split} size {sizes_a.get(split)} vs {sizes_b.get(split)}")
    files_a, files_b = expected.get("files") or {}, actual.get("files") or {}
    for name in sorted(set(files_a) | set(files_b)):
        a, b = files_a.get(name), files_b.get(name)
        if a != b:
            found.append(f"{name} sha256 {a[:12] if a else 'absent'} vs {b[:12] if b else 'absent'}")
    if bool(expected.get("synthetic")) != bool(actual.get("synthetic")):
        def word(fp: dict[str, Any]) -> str:
            return "synthetic" if fp.get("synthetic") else "not synthetic"

        found.append(f"{word(expected)} vs {word(actual)}")
    return found


def describe(fp: dict[str, Any] | None) -> str:
    """A short human line for status and reports."""
    if not fp:
        return "not recorded"
    sizes = fp.get("sizes") or {}
    shown = "/".join(f"{sizes[s]:,}" for s in ("train", "valid", "test") if s in sizes)
    return f"{fp.get('dataset')} {shown}" + (" (synthetic data)" if fp.get("synthetic") else "")
