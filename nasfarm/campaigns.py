"""Building a campaign: which cells, with which costs, in which order, with which training seeds.

This is composition, so it lives in the application layer: it takes cells from the domain (an
enumeration, a sample, a file, published records), prices them with ``farm.cost``, orders and
seeds their jobs (:mod:`nasfarm.enqueue`), and streams the rows to the database in committed
batches (:mod:`db.enqueue`): memory stays bounded whatever the campaign's size, an interrupted create
run again completes the campaign, and the campaign counts as whole (``nasfarm run`` takes it) only
once its last batch is in. Creating it again adds nothing; with more cells, only their jobs.

For a large campaign (the full space: 423,624 cells, 5,083,488 jobs) a helper process prices the
new cells and builds their rows, a few batches ahead of the one being written.
"""

from __future__ import annotations

import collections
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import sqlalchemy as sa

from db.campaigns import CampaignSettings, CellRow, JobRow, cell_row, get_campaign, open_campaign
from db.enqueue import CampaignStream, present_groups
from db.errors import CampaignConflict
from db.nb101_io import store_records
from farm.adaptive import PromotionRule
from farm.cost import cost_from_labels
from farm.records import BenchmarkRecord
from farm.spec import AVAILABLE_OPS, INPUT, OUTPUT
from nasfarm.enqueue import Plan, Progress, batches, job_seed

__all__ = ["create_campaign", "import_records", "job_seed"]

ORDERS = ("shuffled", "cheap-first", "as-given")
DEFAULT_EPOCHS = (4, 12, 36, 108)
# Above this many new cells, a helper process prices them and builds their rows.
PARALLEL_CELLS_ABOVE = 20_000
_CELL_CHUNK = 20_000
_LOOKAHEAD = 2  # chunks the helper prices ahead of the one being written


class CellSpec(NamedTuple):
    """A cell as a campaign needs it: hash, pruned matrix, labels (-1, op index..., -2)."""

    hash: str
    matrix: list[list[int]]
    labels: list[int]

    @property
    def ops(self) -> list[str]:
        return [INPUT] + [AVAILABLE_OPS[int(x)] for x in self.labels[1:-1]] + [OUTPUT]


def cell_spec(cell: Any) -> CellSpec:
    """Accept a ``farm.spec.Cell`` or a ``farm.space.EnumeratedCell`` (hash, matrix, labels)."""
    if isinstance(cell, tuple) and hasattr(cell, "labels"):  # EnumeratedCell: taken as it is
        return CellSpec(cell.hash, cell.matrix, cell.labels)
    if hasattr(cell, "labels") and hasattr(cell, "matrix") and hasattr(cell, "hash"):  # Cell
        matrix = cell.matrix.tolist() if hasattr(cell.matrix, "tolist") else cell.matrix
        return CellSpec(str(cell.hash), [[int(x) for x in row] for row in matrix], list(cell.labels))
    raise TypeError(f"not a cell: {cell!r}")


def priced_row(cell: CellSpec) -> CellRow:
    """The cell's stored row with its NAS-Bench-101 parameter count and FLOPs."""
    params, flops = cost_from_labels(cell.matrix, cell.labels)
    return cell_row(cell.hash, cell.matrix, cell.ops, trainable_parameters=int(params), flops=int(flops))


def _priced_rows(cells: Sequence[tuple[str, list[list[int]], list[int]]]) -> list[CellRow]:
    """Rows of a chunk of cells (run in the helper process, or in line), as :func:`priced_row`
    makes them. An enumeration's cells share their matrix and label lists (farm.space), so the
    stored JSON of each distinct list is made once per chunk (the lists live as long as it)."""
    matrices: dict[int, tuple[str, int, int]] = {}
    labelings: dict[int, str] = {}
    rows = []
    for cell_hash, matrix, labels in cells:
        params, flops = cost_from_labels(matrix, labels)
        shape = matrices.get(id(matrix))
        if shape is None:
            stored = cell_row("", matrix, (), trainable_parameters=None, flops=None)
            shape = matrices[id(matrix)] = (stored.matrix, stored.vertices, stored.edges)
        ops = labelings.get(id(labels))
        if ops is None:
            ops = labelings[id(labels)] = cell_row("", [], CellSpec("", [], labels).ops,
                                                   trainable_parameters=None, flops=None).ops
        rows.append(CellRow(cell_hash, shape[0], ops, shape[1], shape[2], int(params), int(flops)))
    return rows


class _NewCellRows:
    """The rows of the cells new to the database, in the order given: built here as they are
    taken, or (many cells) by a helper process, at most ``_LOOKAHEAD`` chunks ahead of the one taken,
    so they never pile up in memory."""

    def __init__(self, cells: list[CellSpec]):
        self._cells = cells
        self._pool = None
        if len(cells) > PARALLEL_CELLS_ABOVE:
            try:
                import multiprocessing
                from concurrent.futures import ProcessPoolExecutor

                from farm.procpool import without_the_callers_main

                # spawn, not fork: a forked child would share this process's database sockets. The
                # child starts (at the first submit) without the caller's __main__, which it would
                # otherwise run again: a script without a main guard would create its campaign twice.
                with without_the_callers_main():
                    self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
                    self._submit = self._pool.submit  # the first submit starts the child (see above)
                    self._first = self._submit(_priced_rows, self._chunk(0))
            except OSError:  # no processes here: build them in line
                self.close()

    def _chunk(self, start: int) -> list[tuple[str, list[list[int]], list[int]]]:
        return [(c.hash, c.matrix, c.labels) for c in self._cells[start : start + _CELL_CHUNK]]

    def rows(self) -> Iterator[CellRow]:
        if self._pool is None:
            for start in range(0, len(self._cells), _CELL_CHUNK):
                yield from _priced_rows(self._cells[start : start + _CELL_CHUNK])
            return
        starts = range(0, len(self._cells), _CELL_CHUNK)
        pending = collections.deque([self._first])
        for k, _start in enumerate(starts):
            for ahead in starts[k + len(pending) : k + 1 + _LOOKAHEAD]:
                pending.append(self._submit(_priced_rows, self._chunk(ahead)))
            yield from pending.popleft().result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


def create_campaign(
    engine: sa.Engine,
    name: str,
    cells: Iterable[Any],
    *,
    epochs: Iterable[int] = DEFAULT_EPOCHS,
    repeats: int = 3,
    profile: dict[str, Any],
    seed: int = 0,
    order: str = "shuffled",
    progress: bool = False,
    max_attempts: int = 3,
    dataset: str = "cifar10",
    data_fingerprint: dict[str, Any] | None = None,
    promote: PromotionRule | None = None,
) -> dict[str, Any]:
    """Create (or complete) campaign ``name`` and enqueue its jobs; returns the campaign as a dict
    plus ``created`` (bool), ``cells_added``, ``jobs_added`` and ``seconds`` (timings).

    ``promote`` makes it adaptive (successive halving, :mod:`db.promotions`): only the first
    budget's jobs are enqueued here; each later budget's jobs are enqueued as cells are promoted.
    Cells can be added to an adaptive campaign until its first promotion is recorded.

    ``dataset`` names the data set its jobs train on (``profile`` must carry its head:
    ``farm.datasets.fit_config``); ``data_fingerprint`` identifies the copy it is created with
    (``Splits.fingerprint``), which every run then checks its own copy against.

    Raises :class:`db.errors.CampaignConflict` when ``name`` exists with other settings.
    """
    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r}; choose one of {', '.join(ORDERS)}")
    if data_fingerprint is not None and data_fingerprint.get("dataset") != dataset:
        raise ValueError(f"the data fingerprint is of {data_fingerprint.get('dataset')!r}, "
                         f"the campaign's data set is {dataset!r}")
    budgets = [int(e) for e in epochs]
    settings = CampaignSettings(profile=profile, epochs=tuple(budgets), repeats=repeats, seed=seed,
                                order=order, max_attempts=max_attempts, dataset=dataset,
                                data_fingerprint=data_fingerprint, promote=promote)
    specs = _unique_specs(cells)  # the first occurrence of a cell fixes the as-given order
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    report = Progress(name, progress)
    with open_campaign(engine, name, settings, whole=False) as writer:  # the row, committed at once
        campaign, created = writer.campaign, writer.created
        flops = writer.stored_flops([spec.hash for spec in specs])
    enqueued = budgets[:1] if settings.first_budget_only() else budgets
    plan = Plan(specs, enqueued, repeats, order, seed)
    if not created:  # a resumed create, or more cells: the groups it has are skipped
        plan.mark_present(present_groups(engine, campaign["id"]))
    missing = plan.cells_missing()
    if missing and not created and settings.first_budget_only():
        with open_campaign(engine, name, settings, whole=False) as writer:
            if writer.promotions_decided():
                raise CampaignConflict(
                    f"adaptive campaign {name!r} has recorded promotions: {len(missing):,} new cell(s) "
                    "would never be ranked with the cells they compete with; create another campaign")
    # The new cells in the order their jobs come (cheap-first: all of them, before any job).
    source = plan.cells if order == "cheap-first" else [plan.cells[i] for i in missing]
    new = _NewCellRows([spec for spec in source if spec.hash not in flops])
    total = plan.jobs_missing()
    seconds["prepare"] = time.perf_counter() - clock
    report.stage(f"{len(specs):,} cells ({len(new._cells):,} new), {total:,} jobs to enqueue")
    stream = CampaignStream(engine, campaign, cell_ids=writer.cell_ids)  # the stored cells' ids
    try:
        report.start(total)
        for batch in batches(plan, new.rows(), flops):
            stream.write(batch, on_progress=report.advance)
    finally:
        new.close()
        report.close()
    seconds["enqueue"] = time.perf_counter() - clock - seconds["prepare"]
    if stream.finish() or campaign.get("enqueued_at") is None:
        campaign = get_campaign(engine, name)
    seconds["total"] = time.perf_counter() - clock
    report.stage(f"{stream.jobs_added:,} jobs and {stream.cells_added:,} cells added "
                 f"in {seconds['total']:.1f} s")
    return {
        **campaign,
        "created": created,
        "cells_added": stream.cells_added,
        "jobs_added": stream.jobs_added,
        # where the time went: prepare (known cells and groups, the order), enqueue (cells and
        # jobs, with whatever pricing the helper did not hide), total
        "seconds": seconds,
    }


def _unique_specs(cells: Iterable[Any]) -> list[CellSpec]:
    specs: list[CellSpec] = []
    seen: set[str] = set()
    for cell in cells:
        spec = cell_spec(cell)
        if spec.hash not in seen:
            seen.add(spec.hash)
            specs.append(spec)
    return specs


@contextmanager
def _progress_bar(total: int, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A tqdm bar on stderr while the jobs stream (or nothing); yields its ``update``."""
    if not (enabled and total):
        yield lambda _n: None
        return
    from tqdm import tqdm

    bar = tqdm(total=total, unit="job", unit_scale=True, desc="enqueue", file=sys.stderr)
    try:
        yield bar.update
    finally:
        bar.close()


# --- published NAS-Bench-101 tables -----------------------------------------------------------------

_LABEL_OF_OP = {op: label for label, op in enumerate(AVAILABLE_OPS)}


def record_cell(record: BenchmarkRecord) -> CellSpec:
    """The cell of a NAS-Bench-101 record (raw adjacency string, comma-separated op names)."""
    raw = record.raw_adjacency
    size = int(round(len(raw) ** 0.5))
    matrix = [[int(raw[i * size + j]) for j in range(size)] for i in range(size)]
    ops = record.raw_operations.split(",")
    labels = [-1] + [_LABEL_OF_OP[op] for op in ops[1:-1]] + [-2]
    return CellSpec(record.module_hash, matrix, labels)


def import_records(
    engine: sa.Engine,
    read: Callable[[], Iterable[BenchmarkRecord]],
    campaign: str = "published",
    *,
    profile: dict[str, Any],
    progress: bool = False,
    chunk: int = 20_000,
) -> dict[str, Any]:
    """Load records as campaign ``campaign`` (source 'imported') of done jobs, all or nothing.

    ``read`` is called twice, so a multi-GB file is streamed rather than held in memory: the first
    pass reads and checks every record (cells, budgets, repeats); the second stores them, in the
    one transaction that also creates the campaign, its cells and its jobs. A file that turns out
    bad in either pass leaves nothing behind. Jobs are made only for the (cell, budget, repeat)s the
    file has, so every job of an imported campaign is done: a file lacking some repeats or budgets
    leaves no pending job to train (``nasfarm run`` never trains an imported campaign anyway).
    The campaign's data set is the records' (CIFAR-10 for records that name none, as NAS-Bench-101's
    own); records of two data sets are refused. Re-importing adds nothing. Returns the campaign dict
    plus ``results_added``.
    """
    cells: dict[str, CellSpec] = {}
    seen: dict[tuple[str, int], int] = {}
    runs: set[tuple[str, int, int]] = set()  # (cell, budget, repeat), numbered as store_records does
    datasets: set[str] = set()  # records without one are NAS-Bench-101's: CIFAR-10
    for record in read():
        datasets.add(record.dataset or "cifar10")
        if record.module_hash not in cells:
            cells[record.module_hash] = record_cell(record)
        key = (record.module_hash, int(record.epochs))
        runs.add((*key, record.repeat if record.repeat is not None else seen.get(key, 0)))
        seen[key] = seen.get(key, 0) + 1
    if not cells:
        raise ValueError("no records to import")
    if len(datasets) > 1:
        raise ValueError(f"records of {len(datasets)} data sets ({', '.join(sorted(datasets))}): "
                         "import each data set as its own campaign")
    budgets = sorted({epochs for _, epochs, _ in runs})
    settings = CampaignSettings(profile=profile, epochs=tuple(budgets),
                                repeats=max(r for _, _, r in runs) + 1, seed=0, order="as-given",
                                max_attempts=1, source="imported", dataset=datasets.pop())
    specs = list(cells.values())
    with open_campaign(engine, campaign, settings) as writer:
        flops = writer.stored_flops(cells.keys())
        new = _NewCellRows([spec for spec in specs if spec.hash not in flops])
        try:
            cells_added = writer.add_cells(new.rows())  # first: their FLOPs price the jobs' counts
            present = writer.cells_with_jobs()
            jobs = (JobRow(h, e, r, job_seed(0, h, r)) for h, e, r in sorted(runs) if h not in present)
            with _progress_bar(len(runs), progress and sys.stderr.isatty()) as advance:
                jobs_added = writer.add_jobs(jobs, on_progress=advance)
        finally:
            new.close()
        added = store_records(writer.conn, writer.campaign["id"], read(), chunk=chunk)
    return {**writer.campaign, "created": writer.created, "cells_added": cells_added,
            "jobs_added": jobs_added, "results_added": added}
