"""Cell hashes to cell ids, for the writers of jobs.

Above the database a cell is its hash; a job row names it by ``cells.id`` (4 bytes instead of 32,
5 million times in a full campaign: migration 0008). A writer learns the ids of the cells it
stores from the loader that stored them (:mod:`db.bulk` assigns them), and reads the ids of cells
stored before; a stored cell's id never changes, so what was read stays true.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping

import sqlalchemy as sa

from db.statements import campaigns as sql

# Above this many unknown hashes, reading the whole cells table (423,624 rows at most for the
# NAS-Bench-101 space) is cheaper than sending them in IN lists.
_READ_ALL_ABOVE = 20_000
_IN_LIST = 5_000  # hashes per IN list (SQLite allows 32,766 parameters)


class CellIds:
    """hash -> id of stored cells, learned or read, kept for the writer's lifetime."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def learn(self, ids: Mapping[str, int]) -> None:
        """Note the ids of cells stored (and committed, or in the caller's transaction)."""
        self.ids.update(ids)

    def resolve(self, conn: sa.Connection, hashes: Iterable[str]) -> None:
        """Read the ids of those ``hashes`` not known yet; raises ValueError if one is not stored
        (jobs are written after their cells, always)."""
        unknown = {h for h in hashes if h not in self.ids}
        if not unknown:
            return
        if len(unknown) > _READ_ALL_ABOVE:
            rows = conn.execute(sa.text(sql.ALL_STORED_CELLS))
            self.ids.update((h, int(i)) for h, i, _flops in rows if h in unknown)
        else:
            statement = sa.text(sql.STORED_CELLS).bindparams(sa.bindparam("hashes", expanding=True))
            chunks = iter(sorted(unknown))
            while chunk := list(itertools.islice(chunks, _IN_LIST)):
                rows = conn.execute(statement, {"hashes": chunk})
                self.ids.update((h, int(i)) for h, i, _flops in rows)
        missing = [h for h in unknown if h not in self.ids]
        if missing:
            raise ValueError(f"{len(missing)} cell(s) not stored, e.g. {sorted(missing)[0]}: "
                             "store a job's cell before the job")

    def resolving(
        self, conn: sa.Connection, jobs: Iterable[tuple], *, chunk: int = 50_000
    ) -> Iterator[tuple]:
        """``jobs`` (the cell's hash first), passed on once the ids of each chunk's cells are known."""
        iterator = iter(jobs)
        while batch := list(itertools.islice(iterator, chunk)):
            self.resolve(conn, (job[0] for job in batch))
            yield from batch
