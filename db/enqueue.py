"""Streaming a campaign's jobs into the database in committed batches: bounded memory, resumable.

How "a campaign exists whole" and "an interrupted create, run again, completes it" fit:

1. The campaign row is written first, in a transaction of its own (``db.campaigns.open_campaign``
   with ``whole=False``): ``enqueued_at`` is NULL while its jobs stream in.
2. Each batch is one transaction: the batch's new cells, then a whole number of **groups** -- all
   the repeats of one cell at one budget -- and the monitoring aggregates' counts of those jobs.
   A group is therefore in the database entirely or not at all, whatever interrupts the create.
3. ``enqueued_at`` is set when the last batch is in: the campaign is whole. Until then ``nasfarm
   run`` refuses it (``db.errors.IncompleteCampaign``, from the claim), and ``nasfarm status`` says
   it is being created.

Running the same create again finds the groups present (:func:`present_groups`, one index-only
walk of the campaign's jobs) and streams the others, in the same order: job ids, which the claim
follows, keep the campaign's order across the interruption. Creating a campaign again with more
cells is the same operation (the new cells' groups are the missing ones). Memory is bounded by one
batch: the groups of a batch are a generator the caller can replay (:class:`Batch`).

On PostgreSQL a batch COPYs its new cells and its jobs straight into their tables and counts the
jobs as they stream (the fast path, :func:`db.bulk.copy_groups`); if another creator stored one of
those cells or wrote one of those jobs meanwhile (a unique violation), the batch is rolled back and
written again skipping what exists, the new jobs counted from the table. SQLite does the same with
executemany.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from db import bulk
from db.campaigns import CellRow
from db.cell_ids import CellIds
from db.counts import add_pending, counting_new_jobs
from db.dialect import dialect_of
from db.errors import translating
from db.statements import enqueue as sql
from db.urls import redact

# A load this large changes the table's shape: PostgreSQL's statistics are refreshed at once (a
# smaller one waits for autovacuum: ANALYZE costs ~0.5 s, a fifth of a 120,000-job create).
ANALYZE_ABOVE_JOBS = 1_000_000


@dataclass(frozen=True)
class Batch:
    """One transaction's worth of a campaign: cells to store, then whole groups of jobs.

    ``cells``: rows of cells the jobs use that were not stored when the create looked (stored ones
    are skipped). ``groups``: called for the groups -- (cell hash, epochs, the seed of each repeat)
    -- in claim order (called again if the batch must be written again). ``flops``: FLOPs of every
    cell the groups use, as stored."""

    cells: Sequence[CellRow]
    groups: Callable[[], Iterable[bulk.Group]]
    flops: Mapping[str, int | None]


def present_groups(engine: sa.Engine, campaign_id: int) -> Iterator[tuple[str, int]]:
    """The (cell hash, epochs) groups the campaign has jobs for, streamed from the server."""
    statement = dialect_of(engine).render(sql.PRESENT_GROUPS)
    with translating(redact(engine.url)), engine.connect() as conn:
        rows = conn.execution_options(stream_results=True, yield_per=50_000).execute(
            statement, {"campaign_id": campaign_id})
        for cell_hash, epochs in rows:
            yield cell_hash, int(epochs)


class CampaignStream:
    """Writes batches of one campaign (the row exists), each committed on its own."""

    def __init__(self, engine: sa.Engine, campaign: dict[str, Any], cell_ids: CellIds | None = None):
        self.engine = engine
        self.dialect = dialect_of(engine)
        self.campaign_id = int(campaign["id"])
        self.max_attempts = int(campaign["max_attempts"])
        self.cells_added = 0
        self.jobs_added = 0
        # hash -> id of the cells stored (committed): the caller's, then those the batches store
        self.cell_ids = cell_ids if cell_ids is not None else CellIds()

    def write(self, batch: Batch, *, on_progress: Callable[[int], None] | None = None) -> tuple[int, int]:
        """Commit one batch; returns (cells added, jobs added)."""
        with translating(redact(self.engine.url)):
            try:
                added = self._write(batch, tallied=True, on_progress=on_progress)
            except Exception as exc:  # noqa: BLE001 -- only a unique violation is handled
                if not _unique_violation(exc):
                    raise
                # Another creator stored some of these cells, or wrote some of these jobs (this
                # campaign's): skip those, count ours.
                added = self._write(batch, tallied=False, on_progress=None)
        self.cells_added += added[0]
        self.jobs_added += added[1]
        return added

    def _write(
        self, batch: Batch, *, tallied: bool, on_progress: Callable[[int], None] | None
    ) -> tuple[int, int]:
        dialect, campaign_id, ids = self.dialect, self.campaign_id, self.cell_ids
        learned: list[str] = []  # ids this transaction assigned: void if it rolls back
        try:
            with self.engine.begin() as conn:
                conn.execute(dialect.render(sql.LOCK_CAMPAIGN), {"campaign_id": campaign_id})
                dialect.run(conn, dialect.lock_cells)
                cells = batch.cells if tallied else self._still_new(conn, batch.cells)
                cells_added = 0
                if cells:
                    stored = dialect.load_cells(conn, cells)
                    learned = list(stored.ids)
                    ids.learn(stored.ids)
                    cells_added = stored.added
                ids.resolve(conn, batch.flops)  # the cells stored before, by this creator or another
                if tallied:
                    tally = bulk.GroupTally(batch.flops)
                    jobs_added = dialect.load_groups(
                        conn, campaign_id, self.max_attempts, batch.groups(), tally,
                        cell_ids=ids.ids, on_progress=on_progress or _ignore)
                    add_pending(conn, campaign_id, tally.per_budget)
                else:
                    with counting_new_jobs(conn, campaign_id):
                        jobs = bulk.jobs_of(batch.groups())
                        jobs_added = dialect.load_jobs(conn, campaign_id, self.max_attempts, jobs,
                                                       cell_ids=ids.ids, fresh=False, on_progress=_ignore)
        except BaseException:
            for cell_hash in learned:
                ids.ids.pop(cell_hash, None)
            raise
        return cells_added, jobs_added

    def _still_new(self, conn: sa.Connection, rows: Sequence[CellRow]) -> Sequence[CellRow]:
        """PostgreSQL's COPY must not meet a stored cell: drop those another creator stored since
        the caller looked (this transaction holds the cells lock). SQLite skips them itself."""
        if self.dialect.name != "postgresql" or not rows:
            return rows
        stored = {h for (h,) in conn.execute(self.dialect.render(sql.STORED_AMONG_POSTGRESQL),
                                             {"hashes": [row.hash for row in rows]})}
        return [row for row in rows if row.hash not in stored] if stored else rows

    def finish(self) -> bool:
        """The campaign is whole: set ``enqueued_at`` (once); True if this call set it. After many
        jobs, PostgreSQL's statistics are refreshed at once (not at autovacuum's next pass): the
        monitoring views' plans depend on them."""
        with translating(redact(self.engine.url)), self.engine.begin() as conn:
            finished = conn.execute(self.dialect.render(sql.SET_ENQUEUED),
                                    {"campaign_id": self.campaign_id, "now": time.time()}).rowcount == 1
            if self.jobs_added >= ANALYZE_ABOVE_JOBS:
                self.dialect.run(conn, self.dialect.analyze_after_load)
        return finished


def _unique_violation(exc: BaseException) -> bool:
    """A duplicate key from either driver (raised by the raw cursors of db.bulk, or wrapped)."""
    orig = getattr(exc, "orig", exc)
    if getattr(orig, "pgcode", None) == "23505":
        return True
    return type(orig).__name__ == "IntegrityError" and "UNIQUE constraint failed" in str(orig)


def _ignore(_n: int) -> None:
    pass
