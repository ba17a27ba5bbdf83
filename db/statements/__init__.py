"""All the SQL of the job database, as named statements, one module per concern.

- :mod:`db.statements.queue`: claim, the lease holder's fenced writes, the reaper, retry/cancel,
  the queue's reads (the hot path, measured by bench/queue_ops.py);
- :mod:`db.statements.campaigns`: a campaign, its cells and its jobs written in one transaction
  (COPY on PostgreSQL, executemany on SQLite), and read back;
- :mod:`db.statements.monitoring`: the job-count bookkeeping, the views' reads, results, upkeep;
- :mod:`db.statements.records`: NAS-Bench-101 records in and out.

Statements are plain strings. Placeholders in braces (``{now}``, ``{new_token}``, ``{for_update}``,
``{skip_locked}``, and a few fixed fragments such as a filter) are filled for one database by
:meth:`db.dialect.Dialect.render`, which also holds every statement that differs between
PostgreSQL and SQLite. Bind parameters are ``:name``. The migrations under db/migrations keep their
own DDL: they are frozen history.
"""
