"""On-disk cache of the enumeration's hashes, so only the first enumeration on a machine hashes.

``enumerate_cells`` spends almost all its time hashing the 423,624 class representatives; the
classes themselves (``all_matrix_classes``) are cheap to rebuild. So the cache holds only the
hashes, in class order, as 16-byte digests (6.8 MB for the full space) behind a fixed header::

    magic (16 bytes) | format version, max_vertices, max_edges (u32 each) | count (u64)
    | SHA-256 of the digests (32 bytes) | count x 16-byte digests

No pickle: a cache file is data and can never run code. A file is used only after it is verified
(header fields, exact length, the digests' SHA-256, a spot check of hashes recomputed with the
current hash function and, for the original space, the published checksum of SPEC c.3); anything
else is ignored, recomputed and rewritten. Only spaces where distinct classes have distinct hashes
(``_verified_space``) are cached: the only ones whose result is the class list plus its hashes.

Where: ``$NASFARM_SPACE_CACHE`` (a directory; ``off`` or ``0`` disables the cache), else
``$XDG_CACHE_HOME/nasfarm/space`` (``~/.cache/nasfarm/space``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from farm.datasets.locations import cache_dir
from farm.hashing import hash_cells

# The k-th cell of the enumeration, as (matrix, labels): farm.space hands it in (this module does
# not import farm.space, which uses it).
CellAt = Callable[[int], tuple[list[list[int]], list[int]]]

ENV_SPACE_CACHE = "NASFARM_SPACE_CACHE"
_DISABLED = ("off", "0")

# "\r\n" as in PNG's signature: a file mangled by a text-mode copy fails the magic.
_MAGIC = b"NASFARM-HASHES\r\n"
_VERSION = 1
_HEADER = struct.Struct("<16sIIIQ32s")
_DIGEST_BYTES = 16  # an MD5 module hash: 32 hex characters

# SPEC c.3 gives two SHA-256 of the sorted hash list: a7f10bf7... joins the hashes with "\n" and
# no trailing newline, 53e1438d... is the same text with a trailing newline. farm.space's
# sorted_hashes_sha256 (and tests/test_space.py) use the former; running it on a fresh full
# enumeration gives a7f10bf7..., so that is the one a cache of the original space must match.
PUBLISHED_SORTED_HASHES_SHA256 = {
    (7, 9): "a7f10bf770c1b5b8a221e37824e42b3b1a237a5d21ccf545bbe8e23abd933403",
}

# Hashes recomputed on every load: catches a cache written by another version of the hash
# function or of the class enumeration (the blob's own SHA-256 only catches damage). ~30 ms.
_SPOT_CHECKS = 512


def cache_file(max_vertices: int, max_edges: int) -> Path | None:
    """Where the hashes of this space are cached; None when the cache is off. The caller caches
    only spaces whose classes have distinct hashes (``farm.space._verified_space``)."""
    setting = os.environ.get(ENV_SPACE_CACHE, "").strip()
    if setting.lower() in _DISABLED:
        return None
    root = Path(setting).expanduser() if setting else cache_dir("space")
    return root / f"hashes-v{max_vertices}-e{max_edges}.bin"


def load(max_vertices: int, max_edges: int, count: int, cell_at: CellAt) -> list[str] | None:
    """The hex hashes of the ``count`` class-starting labelings, in class order, or None when there
    is no valid cache for exactly these (missing, unreadable, damaged, stale: never an error).
    ``cell_at(k)``: the k-th of them, for the spot check."""
    path = cache_file(max_vertices, max_edges)
    if path is None:
        return None
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if len(data) != _HEADER.size + count * _DIGEST_BYTES:  # also catches truncation
        return None
    magic, version, vertices, edges, stored_count, blob_sha = _HEADER.unpack_from(data)
    if (magic, version, vertices, edges, stored_count) != (_MAGIC, _VERSION, max_vertices, max_edges, count):
        return None
    blob = memoryview(data)[_HEADER.size :]
    if hashlib.sha256(blob).digest() != blob_sha:
        return None
    published = PUBLISHED_SORTED_HASHES_SHA256.get((max_vertices, max_edges))
    if published is not None and _sorted_hashes_sha256(blob) != published:
        return None
    text = blob.hex()
    hashes = [text[i : i + 32] for i in range(0, len(text), 32)]
    if not _spot_check(count, cell_at, hashes):
        return None
    return hashes


def store(max_vertices: int, max_edges: int, hashes: list[str]) -> Path | None:
    """Write the cache atomically; returns its path, or None when off or the place is unwritable
    (the cache only saves time: failing to write it must not fail an enumeration)."""
    path = cache_file(max_vertices, max_edges)
    if path is None:
        return None
    try:
        blob = bytes.fromhex("".join(hashes))
    except ValueError:
        blob = b""
    if len(blob) != len(hashes) * _DIGEST_BYTES:
        return None  # not 32-hex-character hashes: nothing this format can hold
    header = _HEADER.pack(
        _MAGIC, _VERSION, max_vertices, max_edges, len(hashes), hashlib.sha256(blob).digest()
    )
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # A unique temporary name in the same directory, then an atomic rename: a concurrent
        # enumeration reads either the old file or a complete new one, and two writers simply
        # replace each other's identical content. No fsync: a file cut short by a crash fails
        # verification and is rewritten.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as out:
            out.write(header)
            out.write(blob)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide a shared $NASFARM_SPACE_CACHE from others
        os.replace(tmp, path)
        tmp = None
    except OSError:
        return None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return path


def _sorted_hashes_sha256(blob: memoryview) -> str:
    """farm.space.sorted_hashes_sha256 computed on the digests (~0.2 s instead of ~0.5 s).

    Sorting the digests as big-endian integers sorts their lowercase hex the same way."""
    words = np.frombuffer(blob, dtype=">u8").reshape(-1, 2)
    ordered = words[np.lexsort((words[:, 1], words[:, 0]))].tobytes()
    lines = np.full((len(words), 33), ord("\n"), dtype=np.uint8)
    lines[:, :32] = np.frombuffer(ordered.hex().encode("ascii"), dtype=np.uint8).reshape(-1, 32)
    return hashlib.sha256(lines.tobytes()[:-1]).hexdigest()  # no trailing newline


def _spot_check(total: int, cell_at: CellAt, hashes: list[str]) -> bool:
    """Recompute a fixed sample of hashes (the first cells, then spread over the space)."""
    rng = random.Random(f"space-cache-{total}")
    picks = sorted(set(range(min(total, 64))) | set(rng.sample(range(total), min(total, _SPOT_CHECKS))))
    return hash_cells([cell_at(index) for index in picks]) == [hashes[index] for index in picks]
