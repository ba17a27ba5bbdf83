"""Independent search runs in parallel worker processes, with a progress bar.

Workers are forked after the table is loaded, so each one shares it (copy-on-write) instead of
loading or unpickling ~400 MB. BLAS is limited to one thread per worker: the model-based
algorithms do many tiny matrix products, which thread hand-offs make several times slower.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Sequence

from farm.api import NASBench
from farm.procpool import pool_that_closes
from farm.search import make_algorithm
from farm.search.coverage import search_space
from farm.search.harness import RunResult, run_search

_SHARED: dict[str, object] = {}


def _limit_threads() -> None:
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1)
    except ImportError:  # without threadpoolctl the env vars still cover freshly started pools
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def _task(task: tuple[str, int, int]) -> RunResult:
    name, run, seed = task
    bench = _SHARED["bench"]
    return run_search(make_algorithm(name), bench, budget=_SHARED["budget"], epochs=_SHARED["epochs"],
                      seed=seed, run=run)


def run_many(
    bench: NASBench,
    algorithms: Sequence[str],
    *,
    runs: int,
    budget: float,
    epochs: int = 108,
    seed: int = 0,
    workers: int | None = None,
    progress: bool | None = None,
) -> list[RunResult]:
    """``runs`` independent runs of each algorithm; run i uses seed ``seed + i`` for every
    algorithm. Results come back sorted by (algorithm order, run)."""
    for name in algorithms:
        make_algorithm(name)  # fail early on a bad name
    tasks = [(name, run, seed + run) for run in range(runs) for name in algorithms]
    workers = max(1, min(workers or (os.cpu_count() or 1), len(tasks)))
    if "fork" not in multiprocessing.get_all_start_methods():
        workers = 1  # workers must inherit the loaded table; without fork, run here
    bench.table.mean(epochs, "final_test_accuracy")  # computed once, before forking
    search_space(bench, epochs)  # the covered cells too (and a sparse table's encodings)
    _SHARED.update(bench=bench, budget=float(budget), epochs=epochs)
    show = sys.stderr.isatty() if progress is None else progress
    bar = None
    if show:
        from tqdm import tqdm

        bar = tqdm(total=len(tasks), desc="search runs", unit="run")
    results: list[RunResult] = []
    try:
        if workers == 1:
            _limit_threads()
            for task in tasks:
                results.append(_task(task))
                if bar is not None:
                    bar.update(1)
        else:
            context = multiprocessing.get_context("fork")
            with pool_that_closes(context.Pool(workers, initializer=_limit_threads)) as pool:
                for result in pool.imap_unordered(_task, tasks, chunksize=1):
                    results.append(result)
                    if bar is not None:
                        bar.update(1)
    finally:
        _SHARED.clear()
        if bar is not None:
            bar.close()
    order = {name: i for i, name in enumerate(algorithms)}
    return sorted(results, key=lambda r: (order[r.algorithm], r.run))
