"""Everything that differs between PostgreSQL and SQLite, in one object per database.

The rest of db/ is written once: it asks the connection's :class:`Dialect` for a statement, a
clause or a loader, never tests the database's name. The differences, and why they exist:

- the clock and the lease token (``{now}``, ``{new_token}``): each database's own functions;
- row locks (``FOR UPDATE SKIP LOCKED``): PostgreSQL's concurrent claimers and reapers take
  disjoint rows without waiting; SQLite has one writer at a time (``BEGIN IMMEDIATE``, db.engine),
  so its statements need no locks;
- single statements: PostgreSQL sends each on an autocommit connection (one round trip, no
  BEGIN/COMMIT) with ``SET LOCAL synchronous_commit TO OFF`` unless it must be durable; SQLite
  wraps them in one short write transaction;
- compound writes: PostgreSQL's data-modifying CTEs lease a job and log its event (and return its
  cell, or store its result) in one statement; SQLite runs the follow-up statements in the same
  transaction;
- locks that serialise whole operations (cells of concurrent campaign creations, migrations, the
  recount): PostgreSQL advisory/table locks; SQLite's single writer already serialises them;
- bulk loading: COPY vs executemany (:mod:`db.bulk`);
- the UTC hour of a time (``{hour_start}``, the results trigger's bucket) and how the aggregates
  are compacted (:mod:`db.counts`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa

from db import bulk
from db.statements import campaigns as campaign_sql
from db.statements import monitoring as monitoring_sql
from db.statements import queue as queue_sql


@dataclass(frozen=True, eq=False)
class Dialect:
    name: str
    # placeholders filled in every statement
    now: str  # the database's clock, unix seconds (double precision)
    new_token: str  # a fresh random 128-bit lease token, hex
    row_locks: bool  # {for_update} / {skip_locked} become FOR UPDATE / SKIP LOCKED
    # how single statements run (db.queue_core)
    autocommit_statements: bool
    async_commit: str  # makes the current transaction's commit not wait for the disk; "" = none
    compound_writes: bool  # claim / start / complete statements also log events, store results
    claim_jobs: str
    claim_group: str
    start_attempt: str
    complete_job: str
    # statements run at the start of an operation's transaction to serialise it with its peers
    lock_cells: tuple[str, ...]
    lock_migrations: tuple[str, ...]
    lock_jobs_for_recount: tuple[str, ...]
    compact_job_counts: tuple[str, ...]
    compact_result_counts: tuple[str, ...]
    # after a bulk load of many jobs, so that the planner knows the table's new shape at once
    analyze_after_load: tuple[str, ...]
    hour_start: str  # the start of the UTC hour of results.created_at (unix seconds)
    # bulk loading (db.bulk)
    load_jobs: bulk.JobLoader
    load_groups: bulk.GroupLoader
    load_cells: bulk.CellLoader
    _rendered: dict[tuple, sa.TextClause] = field(default_factory=dict, repr=False)

    def render(
        self, template: str, *, expanding: tuple[str, ...] = (), async_commit: bool = False, **fragments: str
    ) -> sa.TextClause:
        """``template`` with its placeholders filled for this database (cached: the queue renders a
        statement per call). ``fragments`` fill extra placeholders with fixed SQL (a filter, never a
        value); ``expanding`` names the bind parameters that take a list (``IN :names``);
        ``async_commit`` prefixes :attr:`async_commit` (for a statement sent on its own)."""
        key = (template, expanding, async_commit, tuple(sorted(fragments.items())))
        statement = self._rendered.get(key)
        if statement is None:
            snippets = {
                "now": self.now,
                "new_token": self.new_token,
                "for_update": "FOR UPDATE" if self.row_locks else "",
                "skip_locked": "SKIP LOCKED" if self.row_locks else "",
                "hour_start": self.hour_start,
                **fragments,
            }
            text = template.format(**snippets)
            if async_commit and self.async_commit:
                text = f"{self.async_commit};\n{text}"
            statement = sa.text(text)
            if expanding:
                statement = statement.bindparams(*(sa.bindparam(name, expanding=True) for name in expanding))
            self._rendered[key] = statement
        return statement

    def run(self, conn: sa.Connection, statements: tuple[str, ...]) -> None:
        """Run fixed statements (a lock, a compaction) in order on ``conn``."""
        for statement in statements:
            conn.execute(self.render(statement))


POSTGRESQL = Dialect(
    name="postgresql",
    now="CAST(EXTRACT(EPOCH FROM now()) AS double precision)",
    new_token="replace(CAST(gen_random_uuid() AS text), '-', '')",
    row_locks=True,
    autocommit_statements=True,
    async_commit="SET LOCAL synchronous_commit TO OFF",
    compound_writes=True,
    claim_jobs=queue_sql.CLAIM_JOBS_POSTGRESQL,
    claim_group=queue_sql.CLAIM_GROUP_POSTGRESQL,
    start_attempt=queue_sql.START_ATTEMPT_POSTGRESQL,
    complete_job=queue_sql.COMPLETE_JOB_POSTGRESQL,
    lock_cells=(campaign_sql.LOCK_CELLS_POSTGRESQL,),
    lock_migrations=(monitoring_sql.LOCK_MIGRATIONS_POSTGRESQL,),
    lock_jobs_for_recount=(monitoring_sql.LOCK_JOBS_FOR_RECOUNT_POSTGRESQL,),
    compact_job_counts=(monitoring_sql.COMPACT_JOB_COUNTS_POSTGRESQL,),
    compact_result_counts=(monitoring_sql.COMPACT_RESULT_COUNTS_POSTGRESQL,),
    analyze_after_load=("ANALYZE jobs", "ANALYZE cells"),
    hour_start="floor(created_at / 3600) * 3600",
    load_jobs=bulk.copy_jobs,
    load_groups=bulk.copy_groups,
    load_cells=bulk.copy_cells,
)

SQLITE = Dialect(
    name="sqlite",
    now="((julianday('now') - 2440587.5) * 86400.0)",
    new_token="lower(hex(randomblob(16)))",
    row_locks=False,
    autocommit_statements=False,
    async_commit="",
    compound_writes=False,
    claim_jobs=queue_sql.CLAIM_JOBS_SQLITE,
    claim_group=queue_sql.CLAIM_GROUP_SQLITE,
    start_attempt=queue_sql.START_ATTEMPT_SQLITE,
    complete_job=queue_sql.COMPLETE_JOB_SQLITE,
    lock_cells=(),
    lock_migrations=(),
    lock_jobs_for_recount=(),
    compact_job_counts=monitoring_sql.COMPACT_JOB_COUNTS_SQLITE,
    compact_result_counts=monitoring_sql.COMPACT_RESULT_COUNTS_SQLITE,
    # SQLite's ANALYZE reads every row (5M: tens of seconds); its views are written not to need it
    analyze_after_load=(),
    hour_start="CAST(created_at / 3600 AS INTEGER) * 3600.0",
    load_jobs=bulk.executemany_jobs,
    load_groups=bulk.executemany_groups,
    load_cells=bulk.executemany_cells,
)

DIALECTS = {dialect.name: dialect for dialect in (POSTGRESQL, SQLITE)}


def dialect_of(bind: sa.Engine | sa.Connection) -> Dialect:
    """The dialect of an engine or connection (db.engine accepts only these two databases)."""
    return DIALECTS[bind.dialect.name]
