"""How fast are hashing and enumeration? Baselines are run in this process, for ratios.

1. Hash rate on one core over N sampled canonical 7-vertex cells (best of 3 passes):
   baseline = a literal transcription of SPEC b.2 (what the original's ``hash_module`` does),
   then ``module_hash`` (one cell per call) and ``hash_cells`` (one batch).
2. Enumeration up to 6 vertices: baseline = the original's algorithm as written (hash every
   labeled graph in order, first per hash wins) on one core, then ``enumerate_cells(6)`` on one
   core and on all cores.
3. The full space: wall and CPU time (this process + workers), peak RSS, counts and both SHA-256
   checksums of SPEC c.3.

Usage: python3 bench/space.py [--sample 20000] [--skip-full] [--skip-baseline-enumeration]
The 1-minute load average is printed with every section: the figures mean little under load.
"""

from __future__ import annotations

import os
import sys

# Run as a script, this folder comes first on sys.path, and its modules (bench/queue.py once did)
# would shadow the standard library's for multiprocessing: drop it.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse  # noqa: E402
import hashlib  # noqa: E402
import itertools  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402

from farm.hashing import hash_cells, module_hash  # noqa: E402
from farm.space import (  # noqa: E402
    counts_by_vertices,
    enumerate_cells,
    original_json_sha256,
    sample_cells,
    sorted_hashes_sha256,
)

SORTED_HASHES_SHA256 = "a7f10bf770c1b5b8a221e37824e42b3b1a237a5d21ccf545bbe8e23abd933403"
ORIGINAL_JSON_SHA256 = "b62900d1b8b3b850df432da5dce9e7a9248655bba8ada9f03e54cdcc6487a39a"


def literal_hash(matrix, labels) -> str:
    """SPEC b.2 word for word (degrees by sums, sorted in/out hashes, V rounds, str(sorted))."""
    n = len(matrix)
    md5 = lambda text: hashlib.md5(text.encode("utf-8")).hexdigest()  # noqa: E731
    out_degree = [sum(row) for row in matrix]
    in_degree = [sum(matrix[w][v] for w in range(n)) for v in range(n)]
    hashes = [md5(str((out_degree[v], in_degree[v], labels[v]))) for v in range(n)]
    for _ in range(n):
        hashes = [
            md5(
                "".join(sorted(hashes[w] for w in range(n) if matrix[w][v]))
                + "|"
                + "".join(sorted(hashes[w] for w in range(n) if matrix[v][w]))
                + "|"
                + hashes[v]
            )
            for v in range(n)
        ]
    return md5(str(sorted(hashes)))


def literal_enumeration(max_vertices: int, max_edges: int = 9) -> dict[str, tuple]:
    """SPEC c.2 word for word, one core."""
    found: dict[str, tuple] = {}
    for n in range(2, max_vertices + 1):
        for bits in range(2 ** (n * (n - 1) // 2)):
            matrix = [[0] * n for _ in range(n)]
            for y in range(1, n):
                for x in range(y):
                    matrix[x][y] = bits >> (y * (y - 1) // 2 + x) & 1
            if any(not any(matrix[v]) for v in range(n - 1)):
                continue
            if any(not any(matrix[w][v] for w in range(n)) for v in range(1, n)):
                continue
            if sum(map(sum, matrix)) > max_edges:
                continue
            for interior in itertools.product(range(3), repeat=n - 2):
                labels = [-1, *interior, -2]
                found.setdefault(literal_hash(matrix, labels), (matrix, labels))
    return found


def load() -> str:
    return f"load {os.getloadavg()[0]:.2f}"


def best_of(passes: int, work) -> tuple[float, float]:
    """(best wall seconds, best CPU seconds) of ``passes`` runs."""
    wall = cpu = float("inf")
    for _ in range(passes):
        w, c = time.perf_counter(), time.process_time()
        work()
        wall, cpu = min(wall, time.perf_counter() - w), min(cpu, time.process_time() - c)
    return wall, cpu


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def hash_rates(sample_size: int) -> None:
    cells = [c for c in sample_cells(sample_size, seed=0) if len(c.labels) == 7]
    pairs = [(c.matrix, c.labels) for c in cells]
    expected = [c.hash for c in cells]
    assert [literal_hash(m, lab) for m, lab in pairs[:500]] == expected[:500]
    assert hash_cells(pairs) == expected
    print(f"\n1. hash rate, {len(cells):,} canonical 7-vertex cells, one core, best of 3 ({load()})")
    # Ratios use CPU time: on a shared machine the wall time swings with the others' load.
    baseline = None
    for name, work in [
        ("baseline: literal SPEC b.2", lambda: [literal_hash(m, lab) for m, lab in pairs]),
        ("module_hash, one call per cell", lambda: [module_hash(m, lab) for m, lab in pairs]),
        ("hash_cells, one batch", lambda: hash_cells(pairs)),
    ]:
        wall, cpu = best_of(3, work)
        per_cpu_second = len(cells) / cpu
        baseline = baseline or per_cpu_second
        print(
            f"   {name:<34} {len(cells) / wall:>10,.0f} cells/s (wall)  {per_cpu_second:>10,.0f} /CPU-s"
            f"  x{per_cpu_second / baseline:5.1f} (CPU)"
        )
    print(f"   ({load()} after)")


def enumeration_up_to_six(skip_baseline: bool) -> None:
    print(f"\n2. enumeration up to 6 vertices (64,542 cells; 128,509 labeled graphs) ({load()})")
    baseline = None
    if not skip_baseline:
        wall, cpu = best_of(1, lambda: literal_enumeration(6))
        baseline = cpu
        print(f"   {'baseline: literal SPEC c.2, one core':<40} {wall:7.2f} s wall {cpu:7.2f} s CPU")
    wall, cpu = best_of(3, lambda: enumerate_cells(6, workers=1))
    ratio = f"  x{baseline / cpu:5.1f} (CPU)" if baseline else ""
    print(f"   {'enumerate_cells(6), one core':<40} {wall:7.2f} s wall {cpu:7.2f} s CPU{ratio}")
    wall, _ = best_of(3, lambda: enumerate_cells(6))
    print(f"   {'enumerate_cells(6), all cores':<40} {wall:7.2f} s wall")
    print(f"   ({load()} after)")


def full_space() -> None:
    print(f"\n3. full space, all cores ({load()}, {len(os.sched_getaffinity(0))} CPUs)")
    wall, cpu, child = time.perf_counter(), time.process_time(), children_cpu()
    cells = enumerate_cells()
    wall, cpu, child = time.perf_counter() - wall, time.process_time() - cpu, children_cpu() - child
    print(f"   enumerate_cells(): {wall:.2f} s wall, {cpu:.2f} s CPU here + {child:.2f} s CPU in workers")
    print(f"   per wall second: {1_293_208 / wall:,.0f} labeled graphs, {len(cells) / wall:,.0f} cells")
    print(f"   counts: {counts_by_vertices(cells)} total {len(cells):,}")
    sorted_ok = sorted_hashes_sha256(cells) == SORTED_HASHES_SHA256
    json_ok = original_json_sha256(cells) == ORIGINAL_JSON_SHA256
    verdict = {True: "OK", False: "MISMATCH"}
    print(f"   SHA-256: sorted hashes {verdict[sorted_ok]}, original JSON file {verdict[json_ok]}")
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"   peak RSS: {own:,.0f} MiB this process, {workers:,.0f} MiB largest worker")
    print(f"   ({load()} after)")


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--sample", type=int, default=20_000)
    parser.add_argument("--skip-full", action="store_true")
    parser.add_argument("--skip-baseline-enumeration", action="store_true")
    args = parser.parse_args()
    hash_rates(args.sample)
    enumeration_up_to_six(args.skip_baseline_enumeration)
    if not args.skip_full:
        full_space()


if __name__ == "__main__":
    main()
