"""The on-disk cache of the enumeration's hashes (farm.space_cache): same result with or without it,
damaged or stale files are ignored and rewritten, an unwritable place or ``off`` never breaks an
enumeration. Every test points NASFARM_SPACE_CACHE at its own tmp_path: the developer's cache is
never read or written here."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

import farm.space
from farm import space_cache
from farm.space import (
    EnumeratedCell,
    all_matrix_classes,
    enumerate_cells,
    sorted_hashes_sha256,
)

V6 = 64_542  # cells with at most 6 vertices (SPEC c.3)


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "space-cache"
    monkeypatch.setenv(space_cache.ENV_SPACE_CACHE, str(root))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # the default place, if ever used
    return root


@pytest.fixture(scope="module")
def reference6() -> list[EnumeratedCell]:
    return enumerate_cells(6, cache=False)


@pytest.fixture
def hashing_calls(monkeypatch) -> list[int]:
    """Counts the calls to the hashing path (and still hashes)."""
    calls: list[int] = []
    real = farm.space._hashed_classes

    def counting(classes, workers, tick):
        calls.append(len(classes))
        return real(classes, workers, tick)

    monkeypatch.setattr(farm.space, "_hashed_classes", counting)
    return calls


def as_tuples(cells: list[EnumeratedCell]) -> list[tuple[str, list, list]]:
    return [(c.hash, c.matrix, c.labels) for c in cells]


def sharing(cells: list[EnumeratedCell]) -> list[tuple[int, int]]:
    """Which cells share their matrix and labels lists: first index holding the same object."""
    first: dict[int, int] = {}
    return [
        (first.setdefault(id(c.matrix), i), first.setdefault(id(c.labels), i)) for i, c in enumerate(cells)
    ]


def no_hashing(monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("hashed although the cache is valid")

    monkeypatch.setattr(farm.space, "_hashed_classes", fail)


def load(max_vertices: int, max_edges: int) -> list[str] | None:
    """What enumerate_cells gets from the cache for this space (None: no valid cache)."""
    classes = all_matrix_classes(max_vertices, max_edges)
    total = sum(len(mc.codes) for mc in classes)
    return space_cache.load(max_vertices, max_edges, total, farm.space._cell_at(classes))


def cache_is_valid(max_vertices: int = 6, max_edges: int = 9) -> bool:
    return load(max_vertices, max_edges) is not None


def test_a_cached_result_is_the_computed_one_and_skips_hashing(reference6, cache_dir, monkeypatch):
    cold = enumerate_cells(6)
    assert (cache_dir / "hashes-v6-e9.bin").stat().st_size == space_cache._HEADER.size + 16 * V6
    no_hashing(monkeypatch)
    warm = enumerate_cells(6)
    assert as_tuples(warm) == as_tuples(cold) == as_tuples(reference6)
    assert warm == reference6 and len(warm) == V6
    # The same sharing within a result, nothing shared between results.
    assert sharing(warm) == sharing(reference6)
    objects = {id(x) for c in cold for x in (c.matrix, c.labels)}
    assert objects.isdisjoint(id(x) for c in warm for x in (c.matrix, c.labels))
    assert enumerate_cells(6, progress=True) == reference6


def test_the_progress_bar_and_cache_false_with_a_warm_cache(reference6, hashing_calls):
    enumerate_cells(6)
    assert enumerate_cells(6, progress=True) == reference6
    assert len(hashing_calls) == 1
    assert enumerate_cells(6, cache=False) == reference6  # cache=False always hashes
    assert len(hashing_calls) == 2


def _flip_a_digest_byte(data: bytes) -> bytes:
    i = space_cache._HEADER.size + 16 * 1000 + 3
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]


def _header_with(data: bytes, **fields) -> bytes:
    names = ("magic", "version", "max_vertices", "max_edges", "count", "sha")
    values = dict(zip(names, space_cache._HEADER.unpack_from(data), strict=True)) | fields
    return space_cache._HEADER.pack(*(values[n] for n in names)) + data[space_cache._HEADER.size :]


def _other_hash_function(data: bytes) -> bytes:
    """Every digest changed (as if written by another hash implementation), checksums redone."""
    blob = data[space_cache._HEADER.size :]
    blob = b"".join(blob[i : i + 16][::-1] for i in range(0, len(blob), 16))
    return _header_with(data, sha=hashlib.sha256(blob).digest())[: space_cache._HEADER.size] + blob


DAMAGE = {
    "flipped byte": _flip_a_digest_byte,
    "truncated": lambda data: data[: len(data) // 2],
    "truncated header": lambda data: data[:20],
    "one digest too many": lambda data: data + bytes(16),
    "empty": lambda data: b"",
    "wrong magic": lambda data: _header_with(data, magic=b"NOT-NASFARM-HASH"),
    "wrong version": lambda data: _header_with(data, version=99),
    "wrong max_edges": lambda data: _header_with(data, max_edges=8),
    "wrong count": lambda data: _header_with(data, count=space_cache._HEADER.unpack_from(data)[4] - 1),
    "wrong sha": lambda data: _header_with(data, sha=bytes(32)),
    "stale hashes, consistent file": _other_hash_function,
}


@pytest.mark.parametrize("damage", list(DAMAGE), ids=list(DAMAGE))
def test_a_damaged_or_stale_file_is_ignored_recomputed_and_rewritten(damage, cache_dir, hashing_calls):
    # 5 vertices (2,532 cells): the checks do not depend on the size, and this runs 11 times.
    reference = enumerate_cells(5, cache=False)
    assert enumerate_cells(5) == reference
    path = cache_dir / "hashes-v5-e9.bin"
    good = path.read_bytes()
    path.write_bytes(DAMAGE[damage](good))
    assert not cache_is_valid(5)
    assert enumerate_cells(5) == reference
    assert len(hashing_calls) == 3  # reference, first cached call, recomputation
    assert path.read_bytes() == good  # rewritten, valid
    assert cache_is_valid(5)
    assert enumerate_cells(5) == reference
    assert len(hashing_calls) == 3


def test_a_directory_in_place_of_the_file_is_ignored(reference6, cache_dir):
    (cache_dir / "hashes-v6-e9.bin").mkdir(parents=True)
    assert enumerate_cells(6) == reference6


def test_the_original_space_is_checked_against_the_published_checksum(cache_dir, monkeypatch):
    cells = enumerate_cells()
    assert sorted_hashes_sha256(cells) == space_cache.PUBLISHED_SORTED_HASHES_SHA256[(7, 9)]
    assert load(7, 9) == [c.hash for c in cells]
    # One digest changed (outside the spot checks' first cells) in an otherwise consistent file:
    # only the published checksum can tell.
    path = cache_dir / "hashes-v7-e9.bin"
    data = bytearray(path.read_bytes())
    blob = data[space_cache._HEADER.size :]
    blob[16 * 200_001] ^= 0xFF
    header = space_cache._HEADER.unpack_from(data)
    path.write_bytes(space_cache._HEADER.pack(*header[:5], hashlib.sha256(blob).digest()) + blob)
    monkeypatch.setattr(space_cache, "_spot_check", lambda total, cell_at, hashes: True)
    assert load(7, 9) is None


def test_an_unwritable_place_still_gives_the_result(reference6, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv(space_cache.ENV_SPACE_CACHE, str(blocker / "cache"))
    assert enumerate_cells(6) == reference6
    assert blocker.read_text() == "not a directory"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_directory_still_gives_the_result(reference6, cache_dir):
    cache_dir.mkdir()
    cache_dir.chmod(0o555)
    try:
        assert enumerate_cells(6) == reference6
        assert list(cache_dir.iterdir()) == []
    finally:
        cache_dir.chmod(0o755)


def test_a_failed_write_leaves_no_temporary_file(reference6, cache_dir, monkeypatch):
    def refuse(src, dst):
        raise PermissionError(13, "Permission denied", str(dst))

    monkeypatch.setattr(space_cache.os, "replace", refuse)
    assert enumerate_cells(6) == reference6
    assert list(cache_dir.iterdir()) == []


@pytest.mark.parametrize("setting", ["off", "0", "OFF"])
def test_off_never_reads_or_writes(setting, reference6, tmp_path, monkeypatch, hashing_calls):
    monkeypatch.delenv(space_cache.ENV_SPACE_CACHE)
    enumerate_cells(6)  # a valid cache in the default place ($XDG_CACHE_HOME/nasfarm/space)
    default = tmp_path / "xdg" / "nasfarm" / "space" / "hashes-v6-e9.bin"
    written = default.read_bytes()
    assert len(hashing_calls) == 1

    monkeypatch.setenv(space_cache.ENV_SPACE_CACHE, setting)

    def no_io(*args, **kwargs):
        raise AssertionError("the cache was used although it is off")

    monkeypatch.setattr(space_cache.Path, "read_bytes", no_io)
    monkeypatch.setattr(space_cache.tempfile, "mkstemp", no_io)
    assert space_cache.cache_file(6, 9) is None
    assert enumerate_cells(6) == reference6
    assert len(hashing_calls) == 2  # hashed, the valid file notwithstanding
    monkeypatch.undo()
    assert default.read_bytes() == written
    assert list(tmp_path.glob("**/*.bin")) == [default]


def test_spaces_beyond_the_verified_limits_are_not_cached(cache_dir):
    enumerate_cells(5, 10, workers=1)
    assert not cache_dir.exists()


def test_mutating_a_cached_result_does_not_spoil_later_ones(reference6, monkeypatch):
    enumerate_cells(6)
    no_hashing(monkeypatch)
    first = enumerate_cells(6)
    first[5].labels[1] = 99
    first[5].matrix[0][1] = 7
    first[7] = first[7]._replace(hash="0" * 32)
    assert enumerate_cells(6) == reference6


def test_tiny_spaces_round_trip(cache_dir):
    for max_vertices in (1, 2, 3):
        computed = enumerate_cells(max_vertices, cache=False)
        assert enumerate_cells(max_vertices) == computed
        assert cache_is_valid(max_vertices, 9)
        assert enumerate_cells(max_vertices) == computed


def test_two_processes_enumerating_at_once_leave_a_valid_cache(reference6, cache_dir):
    script = "from farm.space import enumerate_cells\nprint(len(enumerate_cells(6, workers=1)))\n"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    for child in children:
        out, err = child.communicate(timeout=240)
        assert child.returncode == 0, err[-3000:]
        assert out.split() == [str(V6)]
    assert [p.name for p in cache_dir.iterdir()] == ["hashes-v6-e9.bin"]  # no temporary file left
    assert cache_is_valid()
    assert enumerate_cells(6) == reference6
