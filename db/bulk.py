"""Bulk loading of a campaign's rows: COPY on PostgreSQL, executemany on SQLite.

The loaders of each kind take the same arguments; :mod:`db.dialect` names the ones a database uses,
and :mod:`db.campaigns` / :mod:`db.enqueue` call them. Rows arrive as iterables (a generator over a
batch of the 5,083,488 jobs of the full space): COPY streams them to the server through a file-like
object without building one big string, executemany sends them in chunks.

A job names its cell by id (``cells.id``); the loaders take jobs by cell hash and a mapping from
hash to id (:class:`db.cell_ids.CellIds`). The cell loaders number the cells they store from the
table's next free id, in the order given, and return the ids (:class:`StoredCells`): the caller
holds the cells lock, so the numbers are its own.

Two shapes of jobs:

- *jobs*, one (cell hash, epochs, repeat, seed) each (:func:`copy_jobs`, :func:`executemany_jobs`),
  written plainly or skipping those the campaign has (``fresh=False``);
- *groups*, every repeat of one cell at one budget: (cell hash, epochs, seeds), repeat r with
  seeds[r] (:func:`copy_groups`, :func:`executemany_groups`): the streaming create's fast path. The
  hot loop then does its bookkeeping once per group, and the loader counts the jobs it sends per
  budget with their cost (a :class:`GroupTally`, the monitoring aggregates' +N pending, db.counts):
  cheaper than counting them again from the table. A group load is a plain insert: a job that exists
  fails it (unique violation), and :mod:`db.enqueue` then writes that batch again as jobs, skipping
  those that exist.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import NamedTuple, Protocol

import sqlalchemy as sa

from db.cell_ids import CellIds
from db.statements import campaigns as sql

Progress = Callable[[int], None]
# A job as the campaign writer hands it over: (cell hash, epochs, repeat, seed).
Job = tuple[str, int, int, int]
# Every repeat of a cell at a budget: (cell hash, epochs, seed of repeat 0, 1, ...).
Group = tuple[str, int, Sequence[int]]
SQLITE_CHUNK = 50_000


class GroupTally:
    """Jobs per budget and their cost (cell FLOPs x epochs; a cell without FLOPs costs 0), counted
    as a group load streams them. ``flops``: hash -> FLOPs of every cell the groups use, as stored."""

    def __init__(self, flops: Mapping[str, int | None]):
        self.flops = flops
        self.jobs: dict[int, int] = {}
        self.flops_sum: dict[int, float] = {}  # per budget: FLOPs summed over its jobs

    def add(self, cell_hash: str, epochs: int, n: int) -> None:
        if epochs in self.jobs:
            self.jobs[epochs] += n
            self.flops_sum[epochs] += (self.flops[cell_hash] or 0) * n
        else:
            self.jobs[epochs] = n
            self.flops_sum[epochs] = float((self.flops[cell_hash] or 0) * n)

    @property
    def per_budget(self) -> dict[int, tuple[int, float]]:
        """epochs -> (jobs, their cost)."""
        return {e: (n, self.flops_sum[e] * e) for e, n in self.jobs.items()}


class StoredCells(NamedTuple):
    """What a cell load did: ``ids``, hash -> id of every cell given (those another writer stored
    first included); ``added``, how many it stored."""

    ids: dict[str, int]
    added: int


class JobLoader(Protocol):
    def __call__(
        self, conn: sa.Connection, campaign_id: int, max_attempts: int,
        jobs: Iterable[Job], *, cell_ids: Mapping[str, int], fresh: bool, on_progress: Progress,
    ) -> int: ...


class GroupLoader(Protocol):
    def __call__(
        self, conn: sa.Connection, campaign_id: int, max_attempts: int,
        groups: Iterable[Group], tally: GroupTally, *, cell_ids: Mapping[str, int], on_progress: Progress,
    ) -> int: ...


class CellLoader(Protocol):
    def __call__(self, conn: sa.Connection, rows: Iterable[Sequence[object]]) -> StoredCells: ...


def _no_progress(_n: int) -> None:
    pass


def jobs_of(groups: Iterable[Group]) -> Iterator[Job]:
    """The jobs of groups, one by one."""
    for cell_hash, epochs, seeds in groups:
        for repeat, seed in enumerate(seeds):
            yield cell_hash, epochs, repeat, seed


# --- PostgreSQL ------------------------------------------------------------------------------------

def copy_jobs(
    conn: sa.Connection, campaign_id: int, max_attempts: int, jobs: Iterable[Job],
    *, cell_ids: Mapping[str, int], fresh: bool, on_progress: Progress = _no_progress,
) -> int:
    """COPY the jobs ((cell hash, epochs, repeat, seed), in claim order) in; returns how many were
    added. ``fresh``: none of them exists (a campaign created in this transaction): COPY straight
    into jobs; else through a staging table that skips those it has."""
    lines = (f"{campaign_id}\t{cell_ids[h]}\t{e}\t{r}\t{s}\t{max_attempts}\n" for h, e, r, s in jobs)
    if fresh:
        return _copy(conn, sql.COPY_JOBS, lines, on_progress)
    conn.execute(sa.text(sql.CREATE_STAGED_JOBS))
    _copy(conn, sql.COPY_STAGED_JOBS, lines, on_progress)
    return conn.execute(sa.text(sql.INSERT_STAGED_JOBS)).rowcount


def copy_groups(
    conn: sa.Connection, campaign_id: int, max_attempts: int, groups: Iterable[Group], tally: GroupTally,
    *, cell_ids: Mapping[str, int], on_progress: Progress = _no_progress,
) -> int:
    """COPY the groups' jobs (none may exist) straight into jobs, counting them in ``tally``;
    returns how many."""
    lines = _group_lines(campaign_id, max_attempts, groups, tally, cell_ids)
    return _copy(conn, sql.COPY_JOBS, lines, on_progress)


def _group_lines(
    campaign_id: int, max_attempts: int, groups: Iterable[Group], tally: GroupTally,
    cell_ids: Mapping[str, int],
) -> Iterator[str]:
    # The hot loop of a 5M-job enqueue: per group one count, one lookup and one join; per job one
    # f-string.
    add = tally.add
    for cell_hash, epochs, seeds in groups:
        add(cell_hash, epochs, len(seeds))
        head = f"{campaign_id}\t{cell_ids[cell_hash]}\t{epochs}\t"
        yield "".join([f"{head}{repeat}\t{seed}\t{max_attempts}\n" for repeat, seed in enumerate(seeds)])


def copy_cells(conn: sa.Connection, rows: Iterable[Sequence[object]]) -> StoredCells:
    """COPY cell rows in (they must be new: the caller holds the cells lock), numbered from the
    next free id; moves the id sequence past them."""
    ids: dict[str, int] = {}
    numbered = _numbered(conn, rows, ids)
    added = _copy(conn, sql.COPY_CELLS, _copy_lines(numbered))
    if added:
        conn.execute(sa.text(sql.SYNC_CELL_ID_SEQUENCE_POSTGRESQL))
    return StoredCells(ids, added)


def _numbered(
    conn: sa.Connection, rows: Iterable[Sequence[object]], ids: dict[str, int]
) -> Iterator[tuple[object, ...]]:
    """Cell rows with an id in front, from the table's next free one (read now, before a COPY
    takes the connection); notes hash -> id in ``ids``."""
    next_id = int(conn.execute(sa.text(sql.NEXT_CELL_ID)).scalar_one())
    return _numbering(rows, next_id, ids)


def _numbering(
    rows: Iterable[Sequence[object]], next_id: int, ids: dict[str, int]
) -> Iterator[tuple[object, ...]]:
    for offset, row in enumerate(rows):
        ids[str(row[0])] = next_id + offset
        yield (next_id + offset, *row)


def _copy_lines(rows: Iterable[Sequence[object]]) -> Iterator[str]:
    """COPY text format: tab-separated, \\N for NULL (our values hold no tabs or backslashes)."""
    for row in rows:
        yield "\t".join(r"\N" if v is None else str(v) for v in row) + "\n"


class _CopySource(io.RawIOBase):
    """A file-like object streaming COPY text (items of one or more lines) without building one big
    string; counts the lines it sends."""

    def __init__(self, items: Iterator[str], on_progress: Progress):
        self._items = items
        self._on_progress = on_progress
        self._buffer = b""
        self.count = 0

    def readable(self) -> bool:
        return True

    def _fill(self, size: int) -> None:
        data = "".join(itertools.islice(self._items, max(1, size // 128))).encode()
        lines = data.count(b"\n")
        self.count += lines
        self._on_progress(lines)
        self._buffer += data

    def read(self, size: int = -1) -> bytes:
        size = size if size and size > 0 else 1 << 20
        if len(self._buffer) < size:
            self._fill(size)
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out


def _copy(
    conn: sa.Connection, statement: str, items: Iterator[str], on_progress: Progress = _no_progress
) -> int:
    """Run a ``COPY ... FROM STDIN`` fed by ``items``; returns how many lines were sent."""
    source = _CopySource(items, on_progress)
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.copy_expert(statement, source, size=1 << 20)
    finally:
        cursor.close()
    return source.count


# --- SQLite ----------------------------------------------------------------------------------------

def executemany_jobs(
    conn: sa.Connection, campaign_id: int, max_attempts: int, jobs: Iterable[Job],
    *, cell_ids: Mapping[str, int], fresh: bool, on_progress: Progress = _no_progress,
) -> int:
    """Insert the jobs in order, skipping those the campaign has; returns how many were added.
    (``fresh`` changes nothing here: ON CONFLICT DO NOTHING costs SQLite little.)"""
    rows = ((campaign_id, cell_ids[h], e, r, s, max_attempts) for h, e, r, s in jobs)
    return _executemany(conn, sql.INSERT_JOBS_SQLITE, rows, on_progress)


def executemany_groups(
    conn: sa.Connection, campaign_id: int, max_attempts: int, groups: Iterable[Group], tally: GroupTally,
    *, cell_ids: Mapping[str, int], on_progress: Progress = _no_progress,
) -> int:
    """Insert the groups' jobs (none may exist: a plain insert) in order, counting them in
    ``tally``; returns how many."""
    def rows() -> Iterator[tuple]:
        add = tally.add
        for cell_hash, epochs, seeds in groups:
            add(cell_hash, epochs, len(seeds))
            cell_id = cell_ids[cell_hash]
            for repeat, seed in enumerate(seeds):
                yield campaign_id, cell_id, epochs, repeat, seed, max_attempts

    return _executemany(conn, sql.PLAIN_INSERT_JOBS_SQLITE, rows(), on_progress)


def executemany_cells(conn: sa.Connection, rows: Iterable[Sequence[object]]) -> StoredCells:
    """Insert cell rows numbered from the next free id, skipping stored ones (whose ids are then
    read back)."""
    ids: dict[str, int] = {}
    before = conn.execute(sa.text(sql.COUNT_CELLS)).scalar_one()
    _executemany(conn, sql.INSERT_CELLS_SQLITE, _numbered(conn, rows, ids), _no_progress)
    added = conn.execute(sa.text(sql.COUNT_CELLS)).scalar_one() - before
    if added != len(ids):  # some were stored already, under ids of their own
        stored = CellIds()
        stored.resolve(conn, ids)
        ids = stored.ids
    return StoredCells(ids, added)


def _executemany(
    conn: sa.Connection, statement: str, rows: Iterable[Sequence[object]], on_progress: Progress
) -> int:
    added = 0
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        iterator = iter(rows)
        while chunk := list(itertools.islice(iterator, SQLITE_CHUNK)):
            cursor.executemany(statement, chunk)
            added += cursor.rowcount
            on_progress(len(chunk))
    finally:
        cursor.close()
    return added
