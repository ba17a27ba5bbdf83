"""Campaigns: the campaign row, its cells and its jobs, written (db.campaigns in one transaction,
db.enqueue in committed batches), and read back.

Bulk rows go in with COPY on PostgreSQL (streamed, no per-row round trip) and with executemany on
SQLite; :mod:`db.bulk` runs them and :mod:`db.dialect` picks which. The executemany statements use
the driver's own ``?`` parameters (they go straight to the sqlite3 cursor: 50,000 rows a call).
"""

# Jobs name their cell by cells.id; cells are written with the ids their writer assigns (db.bulk).
JOB_COLUMNS = "campaign_id, cell_id, epochs, repeat, seed, max_attempts"
CELL_COLUMNS = "id, hash, matrix, ops, vertices, edges, trainable_parameters, flops"

# insert_campaign: ON CONFLICT DO NOTHING: a concurrent creator of the same name waits on the
# unique index, then finds the row (CAMPAIGN) instead of failing.
INSERT_CAMPAIGN = """
INSERT INTO campaigns (name, profile_name, profile, epochs, repeats, seed, job_order, max_attempts,
                       source, dataset, data_fingerprint, promote_numerator, promote_denominator,
                       promote_mode, created_at)
VALUES (:name, :profile_name, :profile, :epochs, :repeats, :seed, :job_order, :max_attempts,
        :source, :dataset, :data_fingerprint, :promote_numerator, :promote_denominator,
        :promote_mode, :created_at)
ON CONFLICT (name) DO NOTHING
"""
CAMPAIGN = "SELECT * FROM campaigns WHERE name = :name"

# PostgreSQL: one creator at a time stores cells, so the new ones can be COPYed straight in (any
# constant key; released at commit). SQLite's single writer needs no lock.
LOCK_CELLS_POSTGRESQL = "SELECT pg_advisory_xact_lock(7310102)"

# The cells a campaign already has jobs for (a campaign is created whole: such a cell has all).
CELLS_WITH_JOBS = """
SELECT cl.hash FROM (SELECT DISTINCT cell_id FROM jobs WHERE campaign_id = :campaign_id) AS j
JOIN cells cl ON cl.id = j.cell_id
"""
# hash, id and flops of stored cells: a few by name (:hashes expanding), or the whole table when the
# list would be huge (cheaper than sending a 400k-entry IN list).
STORED_CELLS = "SELECT hash, id, flops FROM cells WHERE hash IN :hashes"
ALL_STORED_CELLS = "SELECT hash, id, flops FROM cells"
COUNT_CELLS = "SELECT COUNT(*) FROM cells"
# The first id a writer gives the cells it stores (it holds the cells lock: PostgreSQL's advisory
# lock, SQLite's write lock), numbering them in the order it stores them.
NEXT_CELL_ID = "SELECT COALESCE(MAX(id), 0) + 1 FROM cells"
# PostgreSQL: after cells were stored with their writer's ids, the id column's own sequence moves
# past them (a cell stored without an id, by hand, then gets a free one).
SYNC_CELL_ID_SEQUENCE_POSTGRESQL = (
    "SELECT setval(pg_get_serial_sequence('cells', 'id'), (SELECT MAX(id) FROM cells))"
)


# --- PostgreSQL: COPY ------------------------------------------------------------------------------
# A campaign created in this transaction has no jobs: COPY straight into jobs. One that exists
# gets its new jobs through a staging table, so that jobs it has already are skipped, in order.
COPY_JOBS = f"COPY jobs ({JOB_COLUMNS}) FROM STDIN"
CREATE_STAGED_JOBS = """
CREATE TEMP TABLE new_jobs (position bigserial, campaign_id int, cell_id int, epochs smallint,
                            repeat smallint, seed bigint, max_attempts int) ON COMMIT DROP
"""
COPY_STAGED_JOBS = f"COPY new_jobs ({JOB_COLUMNS}) FROM STDIN"
INSERT_STAGED_JOBS = f"""
INSERT INTO jobs ({JOB_COLUMNS}) SELECT {JOB_COLUMNS} FROM new_jobs ORDER BY position
ON CONFLICT DO NOTHING
"""
COPY_CELLS = f"COPY cells ({CELL_COLUMNS}) FROM STDIN"

# --- SQLite: executemany ---------------------------------------------------------------------------
INSERT_JOBS_SQLITE = f"INSERT INTO jobs ({JOB_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
# A tallied load (db.bulk.JobTally) must fail on a job that exists: its count would be wrong otherwise.
PLAIN_INSERT_JOBS_SQLITE = f"INSERT INTO jobs ({JOB_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
INSERT_CELLS_SQLITE = f"""
INSERT INTO cells ({CELL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING
"""
