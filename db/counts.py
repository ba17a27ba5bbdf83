"""The aggregates the monitoring views read instead of the jobs: their bookkeeping.

``job_counts`` holds signed deltas per (campaign, epochs, status): the number of jobs, their cost
(cell FLOPs x epochs), how many running ones are leased but not started, the seconds jobs held a
lease and their attempts. ``result_counts`` holds deltas of finished jobs per (campaign, UTC hour)
with the training time their results report. Who writes them:

- the triggers on ``jobs`` (every change of a job's status, start or attempts) and on ``results``
  (every result stored), created by migrations 0002 and 0007, on both databases;
- whoever INSERTS jobs, because counting inserts in a trigger would cost the 5M-row bulk load a
  trigger call (SQLite) or a transition table (PostgreSQL) per row: the bulk loader counts its rows
  per budget as it streams them (:func:`add_pending`, tallied by :mod:`db.bulk`); any other
  inserter wraps its INSERT in :func:`counting_new_jobs`, which counts the rows it added from the
  table (by id, inside the inserter's transaction, while it holds the campaign's lock).

:func:`compact` folds the deltas (the reaper calls it), :func:`recount` rebuilds both tables from
the rows, and :func:`aggregated` / :func:`recounted` are the two sides a check compares.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import sqlalchemy as sa

from db.dialect import dialect_of
from db.errors import translating
from db.statements import monitoring as sql
from db.urls import redact


@contextmanager
def counting_new_jobs(conn: sa.Connection, campaign_id: int) -> Iterator[None]:
    """Count the jobs the statements inside the block insert into ``campaign_id`` (in the buckets
    they are inserted in). The caller's transaction must hold the campaign's lock (PostgreSQL:
    ``db.statements.enqueue.LOCK_CAMPAIGN``; SQLite: any write transaction), and must count before it
    changes the new jobs, whose cells must be stored (their FLOPs price the jobs)."""
    dialect = dialect_of(conn)
    after_id = conn.execute(dialect.render(sql.MAX_JOB_ID)).scalar_one()
    yield
    conn.execute(dialect.render(sql.COUNT_NEW_JOBS), {"campaign_id": campaign_id, "after_id": after_id})


def add_pending(conn: sa.Connection, campaign_id: int, per_budget: Mapping[int, tuple[int, float]]) -> None:
    """Count jobs a bulk load inserted as pending: epochs -> (jobs, their cost)."""
    statement = dialect_of(conn).render(sql.ADD_PENDING)
    for epochs, (n, cost) in sorted(per_budget.items()):
        if n:
            conn.execute(statement, {"campaign_id": campaign_id, "epochs": epochs, "n": n, "cost": cost})


def compact(conn: sa.Connection, *, min_rows: int = 0) -> int:
    """Fold ``job_counts`` to one row per (campaign, epochs, status) and ``result_counts`` to one row
    per (campaign, hour), each if it has more than ``min_rows`` rows; returns the rows
    ``job_counts`` had."""
    dialect = dialect_of(conn)
    rows = conn.execute(dialect.render(sql.COUNT_JOB_COUNT_ROWS)).scalar_one()
    if rows > min_rows:
        dialect.run(conn, dialect.compact_job_counts)
    if conn.execute(dialect.render(sql.COUNT_RESULT_COUNT_ROWS)).scalar_one() > min_rows:
        dialect.run(conn, dialect.compact_result_counts)
    return rows


def recount(engine: sa.Engine) -> None:
    """Rebuild both aggregates from the jobs and results themselves (a repair); the lease seconds,
    which exist only as deltas, are kept."""
    dialect = dialect_of(engine)
    with translating(redact(engine.url)), engine.begin() as conn:
        dialect.run(conn, dialect.lock_jobs_for_recount)  # no status change or result meanwhile
        busy = conn.execute(dialect.render(sql.BUSY_SECONDS_BY_BUDGET)).all()
        conn.execute(dialect.render(sql.DELETE_JOB_COUNTS))
        conn.execute(dialect.render(sql.COUNT_JOBS_INTO_JOB_COUNTS))
        for campaign_id, epochs, seconds in busy:
            conn.execute(dialect.render(sql.KEEP_BUSY_SECONDS),
                         {"campaign_id": campaign_id, "epochs": epochs, "seconds": float(seconds)})
        conn.execute(dialect.render(sql.DELETE_RESULT_COUNTS))
        conn.execute(dialect.render(sql.COUNT_RESULTS_INTO_RESULT_COUNTS))


Buckets = dict[tuple, tuple]


def aggregated(conn: sa.Connection) -> tuple[Buckets, Buckets]:
    """What the views read: the deltas summed per (campaign, epochs, status) -> (n, cost,
    unstarted, attempts), and per (campaign, hour) -> (n, total_time, final_training_time)."""
    dialect = dialect_of(conn)
    jobs = {(c, int(e), s): (int(n), float(cost), int(u), int(a))
            for c, e, s, n, cost, u, a in conn.execute(dialect.render(sql.SUMMED_JOB_COUNTS))}
    results = {(c, float(h)): (int(n), float(t), float(f))
               for c, h, n, t, f in conn.execute(dialect.render(sql.SUMMED_RESULT_COUNTS))}
    return jobs, results


def recounted(conn: sa.Connection) -> tuple[Buckets, Buckets]:
    """The same, counted from the jobs and results themselves (a full scan: for checks)."""
    dialect = dialect_of(conn)
    jobs = {(c, int(e), s): (int(n), float(cost or 0), int(u), int(a or 0))
            for c, e, s, n, cost, u, a in conn.execute(dialect.render(sql.JOB_BUCKETS))}
    results = {(c, float(h)): (int(n), float(t), float(f))
               for c, h, n, t, f in conn.execute(dialect.render(sql.RESULT_HOURS))}
    return jobs, results
