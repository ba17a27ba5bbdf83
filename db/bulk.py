"""Bulk loading of a campaign's rows: COPY on PostgreSQL, executemany on SQLite.

The two loaders of each kind take the same arguments; :mod:`db.dialect` names the pair a database
uses, and :mod:`db.campaigns` / :mod:`db.enqueue` call them. Jobs arrive as an iterable (a
generator over a batch of the 5,083,488 jobs of the full space): COPY streams it to the server
through a file-like object without building one big string, executemany sends it in chunks.

A loader given a :class:`JobTally` counts the jobs it sends per budget with their cost as they
stream by (the monitoring aggregates' +N pending, db.counts): cheaper than counting them again
from the table. Such a load is a plain insert: a job that exists already fails it (unique
violation), and :mod:`db.enqueue` then redoes the batch with the conflict-skipping load.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Protocol

import sqlalchemy as sa

from db.statements import campaigns as sql

Progress = Callable[[int], None]
PLAIN_INSERT_JOBS_SQLITE = sql.PLAIN_INSERT_JOBS_SQLITE
# A job as the campaign writer hands it over: (cell hash, epochs, repeat, seed).
Job = tuple[str, int, int, int]
SQLITE_CHUNK = 50_000


class JobTally:
    """Jobs per budget and their cost (cell FLOPs x epochs; a cell without FLOPs costs 0), counted
    as a load streams them. ``flops``: hash -> FLOPs of every cell the jobs use, as stored."""

    def __init__(self, flops: Mapping[str, int | None]):
        self.flops = flops
        self.per_budget: dict[int, tuple[int, float]] = {}

    def counted(self, jobs: Iterable[Job]) -> Iterator[Job]:
        """``jobs``, counted as they pass (the counts are complete once the iterator is exhausted)."""
        flops = self.flops
        n: dict[int, int] = {}
        cost: dict[int, float] = {}
        for job in jobs:
            epochs = job[1]
            if epochs in n:
                n[epochs] += 1
                cost[epochs] += flops[job[0]] or 0
            else:
                n[epochs], cost[epochs] = 1, float(flops[job[0]] or 0)
            yield job
        for epochs, count in n.items():
            before_n, before_cost = self.per_budget.get(epochs, (0, 0.0))
            self.per_budget[epochs] = (before_n + count, before_cost + cost[epochs] * epochs)


class JobLoader(Protocol):
    def __call__(
        self, conn: sa.Connection, campaign_id: int, max_attempts: int,
        jobs: Iterable[Job], *, fresh: bool, on_progress: Progress, tally: JobTally | None = None,
    ) -> int: ...


class CellLoader(Protocol):
    def __call__(self, conn: sa.Connection, rows: Iterable[Sequence[object]]) -> int: ...


def _no_progress(_n: int) -> None:
    pass


# --- PostgreSQL ------------------------------------------------------------------------------------

def copy_jobs(
    conn: sa.Connection, campaign_id: int, max_attempts: int, jobs: Iterable[Job],
    *, fresh: bool, on_progress: Progress = _no_progress, tally: JobTally | None = None,
) -> int:
    """COPY the jobs ((cell hash, epochs, repeat, seed), in claim order) in; returns how many were
    added. ``fresh``: none of them exists (a new campaign, or jobs it cannot have yet): COPY
    straight into jobs; else through a staging table that skips those it has. ``tally``: count
    them (a plain COPY: fresh must hold)."""
    if tally is not None:
        if not fresh:
            raise ValueError("a tallied load is a plain insert: fresh jobs only")
        jobs = tally.counted(jobs)
    lines = _job_lines(campaign_id, max_attempts, jobs)
    if fresh:
        return _copy(conn, sql.COPY_JOBS, lines, on_progress)
    conn.execute(sa.text(sql.CREATE_STAGED_JOBS))
    _copy(conn, sql.COPY_STAGED_JOBS, lines, on_progress)
    return conn.execute(sa.text(sql.INSERT_STAGED_JOBS)).rowcount


def copy_cells(conn: sa.Connection, rows: Iterable[Sequence[object]]) -> int:
    """COPY cell rows in (they must be new: the caller holds the cells lock); returns how many."""
    return _copy(conn, sql.COPY_CELLS, _copy_lines(rows))


def _job_lines(campaign_id: int, max_attempts: int, jobs: Iterable[Job]) -> Iterator[str]:
    # The hot loop of a 5M-job enqueue: one f-string per job, no per-value dispatch.
    for cell_hash, epochs, repeat, seed in jobs:
        yield f"{campaign_id}\t{cell_hash}\t{epochs}\t{repeat}\t{seed}\t{max_attempts}\n"


def _copy_lines(rows: Iterable[Sequence[object]]) -> Iterator[str]:
    """COPY text format: tab-separated, \\N for NULL (our values hold no tabs or backslashes)."""
    for row in rows:
        yield "\t".join(r"\N" if v is None else str(v) for v in row) + "\n"


class _CopySource(io.RawIOBase):
    """A file-like object streaming COPY lines without building one big string."""

    def __init__(self, lines: Iterator[str], on_progress: Progress):
        self._lines = lines
        self._on_progress = on_progress
        self._buffer = b""
        self.count = 0

    def readable(self) -> bool:
        return True

    def _fill(self, size: int) -> None:
        parts = list(itertools.islice(self._lines, max(1, size // 64)))
        self.count += len(parts)
        self._on_progress(len(parts))
        self._buffer += "".join(parts).encode()

    def read(self, size: int = -1) -> bytes:
        size = size if size and size > 0 else 1 << 20
        if len(self._buffer) < size:
            self._fill(size)
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out


def _copy(
    conn: sa.Connection, statement: str, lines: Iterator[str], on_progress: Progress = _no_progress
) -> int:
    """Run a ``COPY ... FROM STDIN`` fed by ``lines``; returns how many lines were sent."""
    source = _CopySource(lines, on_progress)
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.copy_expert(statement, source, size=1 << 20)
    finally:
        cursor.close()
    return source.count


# --- SQLite ----------------------------------------------------------------------------------------

def executemany_jobs(
    conn: sa.Connection, campaign_id: int, max_attempts: int, jobs: Iterable[Job],
    *, fresh: bool, on_progress: Progress = _no_progress, tally: JobTally | None = None,
) -> int:
    """Insert the jobs in order, skipping those the campaign has; returns how many were added.
    (``fresh`` changes nothing here: ON CONFLICT DO NOTHING costs SQLite little.) ``tally``: count
    them, as a plain insert (a job that exists fails it)."""
    statement = sql.INSERT_JOBS_SQLITE
    if tally is not None:
        if not fresh:
            raise ValueError("a tallied load is a plain insert: fresh jobs only")
        jobs, statement = tally.counted(jobs), PLAIN_INSERT_JOBS_SQLITE
    rows = ((campaign_id, h, e, r, s, max_attempts) for h, e, r, s in jobs)
    return _executemany(conn, statement, rows, on_progress)


def executemany_cells(conn: sa.Connection, rows: Iterable[Sequence[object]]) -> int:
    """Insert cell rows, skipping stored ones; returns how many were added."""
    before = conn.execute(sa.text(sql.COUNT_CELLS)).scalar_one()
    _executemany(conn, sql.INSERT_CELLS_SQLITE, rows, _no_progress)
    return conn.execute(sa.text(sql.COUNT_CELLS)).scalar_one() - before


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
