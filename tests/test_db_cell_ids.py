"""Jobs refer to cells by id (migration 0008): what the upgrade keeps, how ids are given, what it saves."""

from __future__ import annotations

import sqlalchemy as sa

from db.engine import make_engine
from db.migrate import head_revision, upgrade
from db.queue import JobQueue
from farm.config import SMOKE
from nasfarm.campaigns import create_campaign
from tests.fixtures_db import random_cells

PROFILE = SMOKE.to_dict()
METRICS = {name: 0.5 for name in ("total_time", "halfway_training_time", "halfway_train_accuracy",
                                  "halfway_validation_accuracy", "halfway_test_accuracy",
                                  "final_training_time", "final_train_accuracy",
                                  "final_validation_accuracy", "final_test_accuracy")}


def _rows(engine, sql: str, **params):
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).all()


def test_the_upgrade_keeps_every_job_its_cell_its_lease_and_the_counts(db_url):
    """A farm at 0007 (jobs naming cells by hash, some claimed, done and failed; one job whose
    cell was never stored) upgraded to 0008: the same jobs with the same cells, leases and
    results, the same aggregates, and a queue that carries on."""
    engine = make_engine(db_url)
    upgrade(engine, "0007")
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO campaigns (name, profile_name, profile, epochs, repeats, seed, job_order,"
            " max_attempts, created_at, enqueued_at) VALUES ('old', 'smoke', '{}', '[4, 12]', 2, 0,"
            " 'as-given', 3, 0, 0)"))
        for i, cell in enumerate("bca"):  # stored out of hash order: ids follow the store order
            conn.execute(sa.text(
                "INSERT INTO cells (hash, matrix, ops, vertices, edges, flops)"
                " VALUES (:h, '[[0,1],[0,0]]', '[\"input\",\"output\"]', 2, 1, :f)"),
                {"h": cell * 32, "f": 10 + i})
        jobs = [(cell * 32, epochs, repeat) for cell in "abc" for epochs in (4, 12) for repeat in (0, 1)]
        jobs.append(("f" * 32, 4, 0))  # its cell was never stored
        for cell_hash, epochs, repeat in jobs:
            conn.execute(sa.text(
                "INSERT INTO jobs (campaign_id, cell_hash, epochs, repeat, seed) VALUES (1, :h, :e, :r, 7)"),
                {"h": cell_hash, "e": epochs, "r": repeat})
        # As a 0007 farm left them: jobs 1-4 leased (3 started), then 1 done, 2 failed.
        conn.execute(sa.text(
            "UPDATE jobs SET status = 'running', attempts = 1, lease_owner = 'old-driver',"
            " lease_token = 't' || CAST(id AS VARCHAR(8)), claimed_at = 1, heartbeat_at = 1,"
            " lease_expires_at = 1e12, lease_node = CASE WHEN id = 3 THEN 'n' END WHERE id <= 4"))
        conn.execute(sa.text("UPDATE jobs SET status = 'done', finished_at = 2 WHERE id = 1"))
        conn.execute(sa.text(
            "INSERT INTO results (job_id, campaign_id, cell_hash, epochs, repeat, attempt, created_at)"
            " VALUES (1, 1, :h, 4, 0, 1, 2)"), {"h": "a" * 32})
        conn.execute(sa.text("UPDATE jobs SET status = 'failed', last_error = 'RuntimeError: x',"
                             " error_signature = 'x', finished_at = 2 WHERE id = 2"))
    before = _rows(engine, "SELECT id, cell_hash, epochs, repeat, seed, status, attempts, lease_token"
                           " FROM jobs ORDER BY id")
    buckets = "SELECT epochs, status, SUM(n), SUM(cost) FROM job_counts GROUP BY epochs, status" \
              " HAVING SUM(n) <> 0 ORDER BY epochs, status"
    counts = _rows(engine, buckets)

    assert upgrade(engine) == head_revision()
    after = _rows(engine, "SELECT j.id, cl.hash, j.epochs, j.repeat, j.seed, j.status, j.attempts,"
                          " j.lease_token FROM jobs j JOIN cells cl ON cl.id = j.cell_id ORDER BY j.id")
    assert after == before
    assert _rows(engine, buckets) == counts
    assert _rows(engine, "SELECT id, hash FROM cells ORDER BY id") == [
        (1, "b" * 32), (2, "c" * 32), (3, "a" * 32), (4, "f" * 32)]
    assert _rows(engine, "SELECT matrix, ops FROM cells WHERE hash = :h", h="f" * 32) == [("[]", "[]")]
    assert _rows(engine, "SELECT job_id, cell_hash FROM results") == [(1, "a" * 32)]
    assert _rows(engine, "SELECT job_id, cell_hash FROM job_failures") == [(2, "a" * 32)]
    # The queue carries on: a lease from before completes (its result names the cell), and the
    # next claims read their cells.
    queue = JobQueue(engine, backoff_base=0)
    assert queue.complete(3, "t3", {"metrics": METRICS, "evaluations": []})
    result = _rows(engine, "SELECT cell_hash, epochs, repeat FROM results WHERE job_id = 3")
    assert result == [("a" * 32, 12, 0)]
    more = queue.claim(3, "new-driver")
    assert [(j.job_id, j.cell_hash, j.matrix) for j in more] == [
        (i, "b" * 32, [[0, 1], [0, 0]]) for i in (5, 6, 7)]
    engine.dispose()


def test_ids_follow_the_order_cells_are_stored_in_and_survive_other_writers(db_engine):
    cells = random_cells(8, seed=3)
    create_campaign(db_engine, "a", cells[:5], profile=PROFILE, epochs=(4,), repeats=1, order="as-given")
    ids = dict(_rows(db_engine, "SELECT hash, id FROM cells"))
    assert [ids[c.hash] for c in cells[:5]] == [1, 2, 3, 4, 5]
    # A cell stored by hand, without an id, takes a free one (PostgreSQL: the id sequence was moved
    # past the ids the campaign's writer gave).
    with db_engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO cells (hash, matrix, ops, vertices, edges)"
                             " VALUES (:h, '[]', '[]', 0, 0)"), {"h": "e" * 32})
    assert _rows(db_engine, "SELECT id FROM cells WHERE hash = :h", h="e" * 32) == [(6,)]
    # A second campaign shares the stored cells (their ids unchanged) and numbers the new ones next.
    create_campaign(db_engine, "b", cells[3:], profile=PROFILE, epochs=(4,), repeats=1, order="as-given")
    ids = dict(_rows(db_engine, "SELECT hash, id FROM cells"))
    assert [ids[c.hash] for c in cells] == [1, 2, 3, 4, 5, 7, 8, 9]
    jobs = _rows(db_engine, "SELECT c.name, cl.hash FROM jobs j JOIN campaigns c ON c.id = j.campaign_id"
                            " JOIN cells cl ON cl.id = j.cell_id ORDER BY j.id")
    assert jobs == [("a", c.hash) for c in cells[:5]] + [("b", c.hash) for c in cells[3:]]


def test_a_sqlite_job_and_its_index_entries_take_under_100_bytes(tmp_path):
    """Before 0008 a SQLite job took ~190 bytes (jobs 78, unique index 53, claim indexes 31, plus
    the cells' share), 64 of them the cell's hash twice. Counted from the file's pages (dbstat)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'size.db'}")
    upgrade(engine)
    create_campaign(engine, "c", random_cells(2000, seed=5), profile=PROFILE, epochs=(4, 12, 36, 108),
                    repeats=3)
    sizes = dict(_rows(engine, "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"))
    jobs = _rows(engine, "SELECT COUNT(*) FROM jobs")[0][0]
    assert jobs == 24_000
    per_job = sum(size for name, size in sizes.items()
                  if name == "jobs" or name.startswith(("ix_jobs_", "sqlite_autoindex_jobs"))) / jobs
    assert per_job < 100, sizes
    engine.dispose()
