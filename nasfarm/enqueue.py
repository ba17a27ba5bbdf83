"""A campaign's jobs as a stream of batches: which groups, in which order, with which seeds.

A *group* is every repeat of one cell at one budget; :mod:`db.enqueue` commits whole groups, so an
interrupted create leaves whole groups, and running it again streams the missing ones in the same
order (:class:`Plan` is a function of the cells and settings alone). Orders:

- shuffled: cells in a seeded random order, each cell's budgets and repeats together, so that any
  prefix of the finished jobs is an unbiased sample of the cells;
- as-given: the cells' order, each cell's jobs together;
- cheap-first: by cost (cell FLOPs x epochs), then the cell's position, then its budget; a group's
  repeats together. It needs every cell's FLOPs before the first job: the new cells are stored
  first, in batches of their own.

Memory stays bounded: the plan holds the cells (the caller's list) and one small mark per cell and
budget; a batch's jobs are generated when it is written.
"""

from __future__ import annotations

import heapq
import random
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from db.bulk import Group
from db.campaigns import CellRow
from db.enqueue import Batch

_SEED_MODULUS = 2**31
# Jobs per batch (one transaction each): large enough that COPY runs at full speed, small enough
# that an interrupted create loses little and a batch's rows never weigh much.
BATCH_JOBS = 250_000


def job_seed(campaign_seed: int, cell_hash: str, repeat: int) -> int:
    """The training seed of a job: fixed by (campaign seed, cell, repeat).

    The same repeat of a cell starts from the same seed at every epoch budget, so budgets differ
    only in their length; different repeats and cells get unrelated seeds.
    """
    return (int(cell_hash[:8], 16) + 1_000_003 * repeat + 2_654_435_761 * campaign_seed) % _SEED_MODULUS


class Plan:
    """The groups of a campaign in claim order; ``cells`` are CellSpec-like (``.hash``)."""

    def __init__(self, cells: Sequence[Any], budgets: Sequence[int], repeats: int, order: str, seed: int):
        self.cells = list(cells)
        if order == "shuffled":
            random.Random(seed).shuffle(self.cells)
        self.budgets = [int(e) for e in budgets]
        self.repeats = repeats
        self.order = order
        self.seed = seed
        self._present: dict[int, bytearray] | None = None  # budget -> 1 per cell position present

    def mark_present(self, groups: Iterable[tuple[str, int]]) -> None:
        """Note the groups the campaign has already (streamed from the database)."""
        position = {cell.hash: i for i, cell in enumerate(self.cells)}
        present = {e: bytearray(len(self.cells)) for e in self.budgets}
        for cell_hash, epochs in groups:
            i = position.get(cell_hash)
            if i is not None and epochs in present:
                present[epochs][i] = 1
        self._present = present

    def missing(self, i: int, epochs: int) -> bool:
        return self._present is None or not self._present[epochs][i]

    def cells_missing(self) -> list[int]:
        """Positions of the cells with at least one group missing."""
        return [i for i in range(len(self.cells)) if any(self.missing(i, e) for e in self.budgets)]

    def jobs_missing(self) -> int:
        if self._present is None:
            return len(self.cells) * len(self.budgets) * self.repeats
        missing = sum(len(marks) - sum(marks) for marks in self._present.values())
        return missing * self.repeats

    def _seeds(self, cell_hash: str) -> tuple[int, ...]:
        return tuple(job_seed(self.seed, cell_hash, r) for r in range(self.repeats))

    def cell_major_groups(self, start: int, stop: int) -> Iterator[Group]:
        """(hash, epochs, seeds) of the missing groups of cells[start:stop], in order."""
        fresh = self._present is None
        for i in range(start, stop):
            cell_hash = self.cells[i].hash
            seeds = self._seeds(cell_hash)  # the same at every budget
            for epochs in self.budgets:
                if fresh or self.missing(i, epochs):
                    yield cell_hash, epochs, seeds

    def cheap_first_groups(self, flops: Mapping[str, int | None]) -> Iterator[tuple[int, int]]:
        """(cell position, epochs) of the missing groups by (cost, position, budget)."""
        by_flops = sorted(range(len(self.cells)), key=lambda i: (flops.get(self.cells[i].hash) or 0, i))

        def budget(b: int, epochs: int) -> Iterator[tuple[int, int, int, int]]:
            for i in by_flops:
                if self.missing(i, epochs):
                    yield (flops.get(self.cells[i].hash) or 0) * epochs, i, b, epochs

        for _cost, i, _b, epochs in heapq.merge(*(budget(b, e) for b, e in enumerate(self.budgets))):
            yield i, epochs

    def groups_at(self, groups: Sequence[tuple[int, int]]) -> Iterator[Group]:
        """(hash, epochs, seeds) of groups given as (cell position, epochs)."""
        for i, epochs in groups:
            cell_hash = self.cells[i].hash
            yield cell_hash, epochs, self._seeds(cell_hash)


def batches(
    plan: Plan, new_rows: Iterator[CellRow], flops: dict[str, int | None], *, batch_jobs: int | None = None
) -> Iterator[Batch]:
    """The plan's batches of about ``batch_jobs`` jobs (default :data:`BATCH_JOBS`). ``new_rows``:
    rows of the plan's cells that are not stored, in the plan's cell order (cheap-first: the
    caller's order), priced lazily; ``flops`` holds the stored cells' FLOPs and gains the new ones'."""
    batch_jobs = batch_jobs or BATCH_JOBS
    if plan.order == "cheap-first":
        yield from _cheap_first_batches(plan, new_rows, flops, batch_jobs)
        return
    per_batch = max(1, batch_jobs // max(1, len(plan.budgets) * plan.repeats))
    rows = _peekable(new_rows)
    for start in range(0, len(plan.cells), per_batch):
        stop = min(start + per_batch, len(plan.cells))
        chunk = [cell.hash for cell in plan.cells[start:stop]]
        wanted = {h for h in chunk if h not in flops}
        cells = rows.take_while(lambda row, wanted=wanted: row.hash in wanted)
        flops.update((row.hash, row.flops) for row in cells)
        if not cells and not any(plan.missing(i, e) for i in range(start, stop) for e in plan.budgets):
            continue
        yield Batch(cells, lambda start=start, stop=stop: plan.cell_major_groups(start, stop),
                    {h: flops[h] for h in chunk})


def _cheap_first_batches(
    plan: Plan, new_rows: Iterator[CellRow], flops: dict[str, int | None], batch_jobs: int
) -> Iterator[Batch]:
    chunk: list[CellRow] = []
    for row in new_rows:  # every cell stored (and priced) before the first job
        chunk.append(row)
        flops[row.hash] = row.flops
        if len(chunk) >= batch_jobs // 10:
            yield Batch(chunk, lambda: (), {})
            chunk = []
    if chunk:
        yield Batch(chunk, lambda: (), {})
    groups: list[tuple[int, int]] = []
    for group in plan.cheap_first_groups(flops):
        groups.append(group)
        if len(groups) * plan.repeats >= batch_jobs:
            yield _group_batch(plan, groups, flops)
            groups = []
    if groups:
        yield _group_batch(plan, groups, flops)


def _group_batch(plan: Plan, groups: list[tuple[int, int]], flops: Mapping[str, int | None]) -> Batch:
    used = {plan.cells[i].hash for i, _ in groups}
    return Batch((), lambda: plan.groups_at(groups), {h: flops[h] for h in used})


class _peekable:
    """An iterator whose next item can be looked at before it is taken."""

    _EMPTY = object()

    def __init__(self, items: Iterator[CellRow]):
        self._items = items
        self._next: Any = self._EMPTY

    def take_while(self, wanted: Callable[[CellRow], bool]) -> list[CellRow]:
        taken = []
        while True:
            if self._next is self._EMPTY:
                self._next = next(self._items, None)
            if self._next is None or not wanted(self._next):
                return taken
            taken.append(self._next)
            self._next = self._EMPTY


class Progress:
    """Where a create stands: a bar on a terminal, else a line per stage (and per tenth of the
    jobs) on stderr; nothing when disabled."""

    def __init__(self, name: str, enabled: bool):
        self.name = name
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self._bar: Any = None
        self._total = 0
        self._done = 0
        self._tenth = 0

    def stage(self, text: str) -> None:
        if self.enabled and self._bar is None:
            print(f"campaign {self.name}: {text}", file=sys.stderr, flush=True)

    def start(self, total: int) -> None:
        self._total = total
        if self.tty and total:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="job", unit_scale=True, desc="enqueue", file=sys.stderr)

    def advance(self, n: int) -> None:
        self._done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.enabled and self._total and self._done * 10 // self._total > self._tenth:
            self._tenth = self._done * 10 // self._total
            self.stage(f"{self._done:,} of {self._total:,} jobs enqueued")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
