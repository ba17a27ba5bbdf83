"""Enumeration and sampling of the cell space, against the original's published counts and
checksums (SPEC c.3), a literal re-run of its algorithm (SPEC c.2), and networkx isomorphism."""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import networkx as nx
import pytest
from click.testing import CliRunner

from farm.hashing import hash_cells, module_hash
from farm.space import (
    EnumeratedCell,
    count_cells,
    counts_by_vertices,
    enumerate_cells,
    original_json_sha256,
    sample_cells,
    sorted_hashes_sha256,
)
from farm.spec import Cell, cell_from_labels
from nasfarm.cli import main

# SPEC c.3: unique hashes per vertex count, per edge count, and the checksums.
UNIQUE_BY_VERTICES = {2: 1, 3: 6, 4: 84, 5: 2441, 6: 62010, 7: 359082}
UNIQUE_BY_EDGES = {1: 1, 2: 3, 3: 12, 4: 60, 5: 339, 6: 2134, 7: 13984, 8: 78822, 9: 328269}
SORTED_HASHES_SHA256 = "a7f10bf770c1b5b8a221e37824e42b3b1a237a5d21ccf545bbe8e23abd933403"
ORIGINAL_JSON_SHA256 = "b62900d1b8b3b850df432da5dce9e7a9248655bba8ada9f03e54cdcc6487a39a"


def literal_original(max_vertices: int, max_edges: int) -> list[tuple[str, list, list]]:
    """SPEC c.2 as written: every labeled full DAG in bit, then label order; first per hash wins.

    Written independently of farm.space (own matrix decoding and full-DAG test); it shares only
    the hash function, which tests/test_hashing.py checks on its own.
    """
    first: dict[str, tuple[list, list]] = {}
    for n in range(2, max_vertices + 1):
        labeled = []
        for bits in range(2 ** (n * (n - 1) // 2)):
            matrix = [[0] * n for _ in range(n)]
            bit = 0
            for y in range(1, n):
                for x in range(y):
                    matrix[x][y] = bits >> bit & 1
                    bit += 1
            rows_ok = all(any(matrix[v]) for v in range(n - 1))
            cols_ok = all(any(matrix[w][v] for w in range(n)) for v in range(1, n))
            if not (rows_ok and cols_ok) or sum(map(sum, matrix)) > max_edges:
                continue
            for interior in itertools.product(range(3), repeat=n - 2):
                labeled.append((matrix, [-1, *interior, -2]))
        for (matrix, labels), digest in zip(labeled, hash_cells(labeled), strict=True):
            first.setdefault(digest, (matrix, labels))  # dicts keep insertion order
    return [(digest, m, labels) for digest, (m, labels) in first.items()]


def as_tuples(cells: list[EnumeratedCell]) -> list[tuple[str, list, list]]:
    return [(c.hash, c.matrix, c.labels) for c in cells]


@pytest.fixture(scope="module")
def space6() -> list[EnumeratedCell]:
    return enumerate_cells(6)  # large enough to go through the worker processes


@pytest.fixture(scope="module")
def full_space() -> list[EnumeratedCell]:
    return enumerate_cells()


def test_up_to_six_vertices_matches_the_original_run(space6):
    assert counts_by_vertices(space6) == {v: UNIQUE_BY_VERTICES[v] for v in range(2, 7)}
    assert len(space6) == 64_542 == len({c.hash for c in space6})
    assert as_tuples(space6) == literal_original(6, 9)  # same cells, same representatives, same order
    assert enumerate_cells(6, workers=1) == space6  # one process gives the same list


def test_worker_processes_end_under_a_caller_that_handles_sigterm():
    """A caller with a Python SIGTERM handler (a Ray driver has one) must not hang the pool.

    Forked pool workers inherit such a handler and survive the SIGTERM that ``with Pool``
    sends on exit; the enumeration then never returned (a CI run stalled here for 600 s).
    """
    script = (
        "import signal\n"
        "signal.signal(signal.SIGTERM, lambda *_: None)\n"
        "from farm.space import enumerate_cells\n"
        "print(len(enumerate_cells(6, workers=2)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["64542"]


def test_enumeration_runs_the_callers_main_once_from_a_script_or_a_pipe(tmp_path):
    """Forkserver workers re-import the caller's ``__main__``. A script without a main guard then
    ran its top-level code again in every worker, and code piped to ``python3 -`` (whose
    ``__file__`` is ``'<stdin>'``) made every worker die at start while the pool replaced it for
    ever (found running a snippet this way)."""
    script = ("print('top-level code ran')\n"
              "from farm.space import enumerate_cells\n"
              "print(len(enumerate_cells(6, workers=2)))\n")
    path = tmp_path / "unguarded.py"
    path.write_text(script)
    for command, stdin in (([sys.executable, str(path)], None), ([sys.executable, "-"], script)):
        done = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.splitlines() == ["top-level code ran", "64542"]


def test_mutating_a_result_does_not_spoil_later_ones():
    first = enumerate_cells(4)
    first[5].labels[1] = 99  # shared within `first`, but never with another result
    first[5].matrix[0][1] = 7
    assert as_tuples(enumerate_cells(4)) == literal_original(4, 9)


def test_progress_bar_does_not_change_the_result(capsys):
    assert enumerate_cells(4, progress=True) == enumerate_cells(4)


def test_a_space_beyond_the_verified_limits_is_still_exact():
    """Above 9 edges the representatives are deduplicated by hash: still the original's output."""
    assert as_tuples(enumerate_cells(5, 10, workers=1)) == literal_original(5, 10)


def test_full_space_counts_and_checksums(full_space):
    assert counts_by_vertices(full_space) == UNIQUE_BY_VERTICES
    assert len(full_space) == 423_624
    edges = Counter(sum(map(sum, c.matrix)) for c in full_space)
    assert dict(sorted(edges.items())) == UNIQUE_BY_EDGES
    assert sorted_hashes_sha256(full_space) == SORTED_HASHES_SHA256
    # The original enumerator's JSON file, byte for byte: proves the canonical representatives.
    assert original_json_sha256(full_space) == ORIGINAL_JSON_SHA256
    assert count_cells() == 423_624


def test_full_space_representatives_are_valid_pruned_cells(full_space):
    rng = random.Random(11)
    for cell in rng.sample(full_space, 300):
        built = cell_from_labels(cell.matrix, cell.labels)
        assert built.matrix.tolist() == cell.matrix  # nothing to prune
        assert built.hash == cell.hash == module_hash(cell.matrix, cell.labels)


def test_smaller_edge_limits_give_the_matching_part_of_the_space(full_space):
    few_edges = [c for c in full_space if sum(map(sum, c.matrix)) <= 5]
    assert as_tuples(enumerate_cells(7, 5)) == as_tuples(few_edges)


def _graph(matrix: list[list[int]], labels: list[int]) -> nx.DiGraph:
    graph = nx.DiGraph()
    for v, label in enumerate(labels):
        graph.add_node(v, label=label)
    graph.add_edges_from((i, j) for i, row in enumerate(matrix) for j, x in enumerate(row) if x)
    return graph


def _same_label(a: dict, b: dict) -> bool:
    return a["label"] == b["label"]


def _invariant(cell: EnumeratedCell) -> tuple:
    """Isomorphism invariants (counts of vertices, edges and (out, in, label) triples)."""
    n = len(cell.labels)
    triples = sorted(
        (sum(cell.matrix[v]), sum(cell.matrix[w][v] for w in range(n)), cell.labels[v]) for v in range(n)
    )
    return (n, tuple(triples))


def test_equal_hash_iff_isomorphic_labeled_dag(full_space):
    """Independent of the hash: networkx's VF2 with labels as node attributes."""
    by_hash = {c.hash: c for c in full_space}
    rng = random.Random(2019)
    # Equal hash => isomorphic: random labeled graphs of the raw space vs their representative.
    matrices_by_size = defaultdict(list)
    for c in full_space:
        matrices_by_size[len(c.labels)].append(c.matrix)
    for _ in range(1500):
        n = rng.choice([5, 6, 7, 7, 7])
        matrix = rng.choice(matrices_by_size[n])
        labels = [-1] + [rng.randrange(3) for _ in range(n - 2)] + [-2]
        perm = [0, *rng.sample(range(1, n - 1), n - 2), n - 1]  # scramble the interior too
        moved = [[matrix[perm.index(i)][perm.index(j)] for j in range(n)] for i in range(n)]
        representative = by_hash[module_hash(moved, labels)]
        assert nx.is_isomorphic(
            _graph(moved, labels),
            _graph(representative.matrix, representative.labels),
            node_match=_same_label,
        )
    # Different hashes => not isomorphic: every pair of sampled representatives whose invariants
    # agree (pairs whose invariants differ cannot be isomorphic).
    buckets = defaultdict(list)
    for cell in rng.sample(full_space, 4000):
        buckets[_invariant(cell)].append(cell)
    pairs = [p for bucket in buckets.values() for p in itertools.combinations(bucket, 2)]
    assert len(pairs) > 50
    for a, b in pairs:
        assert a.hash != b.hash
        assert not nx.is_isomorphic(
            _graph(a.matrix, a.labels), _graph(b.matrix, b.labels), node_match=_same_label
        )


def test_small_space_exhaustively_non_isomorphic():
    cells = enumerate_cells(5)
    buckets = defaultdict(list)
    for cell in cells:
        buckets[_invariant(cell)].append(cell)
    checked = 0
    for bucket in buckets.values():
        for a, b in itertools.combinations(bucket, 2):
            checked += 1
            assert not nx.is_isomorphic(
                _graph(a.matrix, a.labels), _graph(b.matrix, b.labels), node_match=_same_label
            )
    assert checked > 1000


def test_sample_cells_is_a_deterministic_uniform_sample():
    small = enumerate_cells(5)
    sample = sample_cells(500, 3, max_vertices=5)
    assert sample == sample_cells(500, 3, max_vertices=5)
    assert sample != sample_cells(500, 4, max_vertices=5)
    assert len({c.hash for c in sample}) == 500
    index = {c.hash: c for c in small}
    for cell in sample:
        assert (cell.matrix, cell.labels) == (index[cell.hash].matrix, index[cell.hash].labels)
    # The whole population, and no more.
    assert sorted(c.hash for c in sample_cells(91, 0, max_vertices=4)) == sorted(
        c.hash for c in enumerate_cells(4)
    )
    with pytest.raises(ValueError, match="cannot sample 92 cells from a space of 91"):
        sample_cells(92, 0, max_vertices=4)
    # Uniform over cells: the share of 7-vertex cells is 359,082 / 423,624 = 0.8476.
    big = sample_cells(20_000, 1)
    share = sum(len(c.labels) == 7 for c in big) / len(big)
    sigma = (0.8476 * 0.1524 / len(big)) ** 0.5
    assert abs(share - 359_082 / 423_624) < 5 * sigma
    assert [module_hash(c.matrix, c.labels) for c in big[:200]] == [c.hash for c in big[:200]]


def test_sampling_beyond_the_verified_limits():
    sample = sample_cells(50, 0, max_vertices=5, max_edges=10)
    population = {c.hash for c in enumerate_cells(5, 10, workers=1)}
    assert len({c.hash for c in sample}) == 50 and {c.hash for c in sample} <= population


def test_limits_are_checked():
    with pytest.raises(ValueError, match="max_vertices"):
        enumerate_cells(8)
    with pytest.raises(ValueError, match="max_edges"):
        enumerate_cells(7, -1)
    assert enumerate_cells(1) == []
    assert enumerate_cells(7, 0) == []


# --- the command line ---------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """The real console entry point in a fresh interpreter."""
    code = "import sys; from nasfarm.cli import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)


def test_cli_hash_prints_the_hash():
    result = run_cli("space", "hash", "--matrix", "[[0,1],[0,0]]", "--ops", "input,output")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "043721b9c7fe8c5fad811d47d83132ec\n"
    args = ["space", "hash", "--matrix", "010001000", "--ops", "input,maxpool3x3,output"]
    raw = CliRunner().invoke(main, args)
    assert raw.exit_code == 0
    assert raw.output.strip() == module_hash([[0, 1, 0], [0, 0, 1], [0, 0, 0]], [-1, 2, -2])
    as_json = CliRunner().invoke(
        main, ["space", "hash", "--json", "--matrix", "[[0,1,1],[0,0,0],[0,0,0]]", "--ops", "input,x,output"]
    )
    assert json.loads(as_json.output) == {
        "hash": "043721b9c7fe8c5fad811d47d83132ec",
        "matrix": [[0, 1], [0, 0]],
        "ops": ["input", "output"],
        "vertices": 2,
        "edges": 1,
    }


@pytest.mark.parametrize(
    "matrix, ops, fragment",
    [
        ("[[0,1],[0,0]]", "input,conv9x9,output", "3 ops given for a 2x2 matrix"),
        ("[[0,1,0],[0,0,1],[0,0,0]]", "input,conv9x9,output", "unknown op 'conv9x9'"),
        ("[[0,1],[1,0]]", "input,output", "strictly upper triangular"),
        ("[[0,1],[0,0]", "input,output", "not valid JSON"),
        ("[[0,0],[0,0]]", "input,output", "no path from input to output"),
    ],
)
def test_cli_hash_rejects_invalid_cells_with_one_line(matrix, ops, fragment):
    result = run_cli("space", "hash", "--matrix", matrix, "--ops", ops)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: invalid cell:") and fragment in lines[0]


def test_cli_enumerate_writes_json_lines_and_counts(tmp_path):
    out = tmp_path / "f.jsonl"
    result = run_cli("space", "enumerate", "--max-vertices", "5", "--out", str(out))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 2532
    assert all(list(r) == ["hash", "matrix", "ops", "vertices", "edges"] for r in records)
    for r in records[::25]:
        cell = Cell.from_any(r["matrix"], r["ops"])
        assert cell.hash == r["hash"] and cell.num_vertices == r["vertices"] and cell.num_edges == r["edges"]
    assert [r["hash"] for r in records] == [c.hash for c in enumerate_cells(5)]
    for vertices, count in [(2, "1"), (3, "6"), (4, "84"), (5, "2,441")]:
        assert any(line.split()[:2] == [str(vertices), count] for line in result.stdout.splitlines())
    assert "2,532" in result.stdout


def test_cli_enumerate_original_format_and_stdout(tmp_path):
    runner = CliRunner()
    original = tmp_path / "generated_graphs.json"
    args = ["space", "enumerate", "--max-vertices", "5", "--format", "original", "--out", str(original)]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    expected = json.dumps({c.hash: [c.matrix, c.labels] for c in enumerate_cells(5)}, sort_keys=True)
    assert original.read_text() == expected
    streamed = run_cli("space", "enumerate", "--max-vertices", "4")
    assert streamed.returncode == 0
    assert len(streamed.stdout.splitlines()) == 91  # data only on stdout
    assert "91" in streamed.stderr  # the counts on stderr
    bad = run_cli("space", "enumerate", "--max-vertices", "9")
    assert bad.returncode == 2 and "max-vertices" in bad.stderr


def test_sorted_hash_checksum_matches_a_direct_computation(space6):
    direct = hashlib.sha256("\n".join(sorted(c.hash for c in space6)).encode()).hexdigest()
    assert sorted_hashes_sha256(space6) == direct



def test_the_enumerate_command_leaves_no_process_behind(tmp_path):
    """`nasfarm space enumerate` hashes in worker processes under a forkserver: when the command
    exits, none of them (nor the forkserver) may outlive it. The command leads a session of its
    own (session id = its pid); once it has exited, no process may be left in that session."""
    out = tmp_path / "cells.jsonl"
    command = [sys.executable, "-m", "nasfarm", "space", "enumerate", "--max-vertices", "6",
               "--workers", "2", "--out", str(out)]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)
    _, stderr = child.communicate(timeout=240)
    assert child.returncode == 0, stderr[-3000:]
    assert sum(1 for _ in out.open()) == 64_542
    # A forkserver notices its parent's exit on its own, a moment later: give the session up to
    # 10 s to empty (what the issue saw were workers still there long after the command).
    deadline = time.monotonic() + 10
    while (left := _processes_in_session(child.pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == [], f"processes left behind: {left}"


def _processes_in_session(session: int) -> list[str]:
    """Command lines of the live processes whose session id is ``session`` (Linux /proc)."""
    left = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:  # ended meanwhile
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, pgrp, session
        if int(fields[3]) == session and fields[0] != "Z":
            left.append(cmdline)
    return left


@pytest.fixture(scope="module", autouse=True)
def _no_space_cache():
    """This module tests the hashing path (worker processes, the pool's shutdown, progress): with
    a warm cache on the developer's machine those tests would pass without hashing at all. The
    cache has its own tests (tests/test_space_cache.py). Module scope, so that the module's
    space fixtures are computed under it too."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NASFARM_SPACE_CACHE", "off")
        yield
