"""Monitoring by SQL: the documented example queries on both databases, and the claim's plan."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from db.dialect import POSTGRESQL
from db.engine import make_engine
from db.migrate import upgrade
from db.queue import JobQueue
from db.results import example_queries, nb101_results
from db.views import read_view
from farm.config import SMOKE
from nasfarm.campaigns import create_campaign
from tests.fixtures_db import fake_result, random_cells

DOCS = Path(__file__).resolve().parents[1] / "docs" / "database.md"
README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_docs_show_exactly_the_tested_queries():
    queries = example_queries()
    assert list(queries) == ["progress", "stuck_jobs", "failures_by_error", "top_cells", "throughput_by_hour"]
    for page in (DOCS, README):
        text = page.read_text()
        for name, sql in queries.items():
            assert sql + ";" in text, f"{page.name} does not show the {name} query as tested"


@pytest.fixture
def scenario(db_engine):
    """Campaign 'demo': 4 cells x 108 epochs x 2 repeats. Cells 0-2 finished with known accuracies,
    cell 3: one job failed twice with the same error, one job running with an old heartbeat."""
    cells = random_cells(4, seed=11)
    create_campaign(db_engine, "demo", cells, epochs=(108,), repeats=2, profile=SMOKE.to_dict(),
                    order="as-given", max_attempts=2)
    create_campaign(db_engine, "idle", cells[:1], epochs=(4,), repeats=1, profile=SMOKE.to_dict())
    queue = JobQueue(db_engine, backoff_base=0)
    accuracy = {0: (0.91, 0.93), 1: (0.95, 0.94), 2: (0.80, 0.82)}  # per cell, per repeat
    for i in range(6):
        job = queue.claim(1, "trainer", campaigns=["demo"])[0]
        assert job.cell_hash == cells[i // 2].hash
        assert queue.complete(job.job_id, job.lease_token, fake_result(job, accuracy[i // 2][job.repeat]))
    for _ in range(2):
        job = queue.claim(1, "trainer", campaigns=["demo"])[0]
        assert queue.fail(job.job_id, job.lease_token, f"CUDA out of memory at step {_ * 7}", retryable=True,
                          signature="CUDA out of memory at step <n>")
    stuck = queue.claim(1, "gpu-worker-9", campaigns=["demo"])[0]
    queue.start_attempt(stuck.job_id, stuck.lease_token, node="node-2", resumed_from_epoch=0.0)
    queue.heartbeat(stuck.job_id, stuck.lease_token, step=100, epoch=12.5)
    with db_engine.begin() as conn:  # its last heartbeat was 10 minutes ago
        conn.execute(sa.text("UPDATE jobs SET heartbeat_at = heartbeat_at - 600 WHERE id = :id"),
                     {"id": stuck.job_id})
    return db_engine, cells, stuck


def _run(engine, name):
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(example_queries()[name])).mappings()]


def test_example_queries_answer_correctly(scenario):
    engine, cells, stuck = scenario
    progress = _run(engine, "progress")
    assert [r["campaign"] for r in progress] == ["demo", "idle"]
    demo = progress[0]
    assert (demo["total"], demo["pending"], demo["running"], demo["done"], demo["failed"]) == (8, 0, 1, 6, 1)
    assert float(demo["done_pct"]) == pytest.approx(75.0)
    assert demo["attempts"] == 6 + 2 + 1 and demo["done_last_hour"] == 6
    assert float(demo["gpu_hours"]) > 0
    # ETA: 1 job left (running) at 6 jobs/hour -> 1/6 hour
    assert float(demo["eta_hours"]) == pytest.approx(1 / 6)
    assert progress[1]["total"] == 1 and progress[1]["eta_hours"] is None

    stuck_rows = _run(engine, "stuck_jobs")
    assert len(stuck_rows) == 1
    row = stuck_rows[0]
    assert (row["owner"], row["node"], row["job_id"]) == ("gpu-worker-9", "node-2", stuck.job_id)
    assert row["epoch"] == 12.5
    assert 600 <= row["seconds_since_heartbeat"] < 700

    failures = _run(engine, "failures_by_error")
    assert failures == [{"error_signature": "CUDA out of memory at step <n>", "jobs": 1, "attempts": 2,
                         "example": "CUDA out of memory at step 7"}]

    top = _run(engine, "top_cells")
    assert [r["module_hash"] for r in top] == [cells[1].hash, cells[0].hash, cells[2].hash]
    assert float(top[0]["mean_validation_accuracy"]) == pytest.approx((0.95 + 0.94) / 2)
    assert [r["repeats"] for r in top] == [2, 2, 2]

    hours = _run(engine, "throughput_by_hour")
    assert len(hours) == 1 and hours[0]["campaign"] == "demo" and hours[0]["jobs_done"] == 6
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:00", hours[0]["hour"])
    assert float(hours[0]["training_hours"]) == pytest.approx(6 * 10.0 / 3600)


def test_nb101_results_are_in_nas_bench_shape(scenario):
    engine, cells, _ = scenario
    results = nb101_results(engine, "demo")
    assert len(results) == 6
    first = results[0]
    assert first["module_hash"] == cells[0].hash
    assert first["module_adjacency"] == cells[0].matrix.tolist()
    assert first["module_operations"] == list(cells[0].ops)
    assert first["epochs"] == 108 and first["final_test_accuracy"] == pytest.approx(0.91)
    assert [e["training_steps"] for e in first["evaluations"]] == [0, 1, 2]


def _plan(conn, statement: sa.TextClause, params: dict) -> str:
    compiled = statement.bindparams(**params).compile(
        dialect=conn.dialect, compile_kwargs={"literal_binds": True}
    )
    return "\n".join(r[0] for r in conn.execute(sa.text("EXPLAIN " + str(compiled))))


def test_claim_uses_the_pending_index_and_never_scans_jobs(pg_url):
    engine = make_engine(pg_url)
    upgrade(engine)
    create_campaign(engine, "small", random_cells(2, seed=3), epochs=(4,), repeats=1, profile=SMOKE.to_dict())
    with engine.begin() as conn:
        # 200,000 jobs of a second campaign, 99% of them done: the shape of a running farm.
        conn.execute(sa.text(
            "INSERT INTO campaigns (id, name, profile_name, profile, epochs, repeats, seed, job_order,"
            " max_attempts, created_at) VALUES (2, 'big', 'smoke', '{}', '[4]', 1, 0, 'as-given', 3, 0)"
        ))
        conn.execute(sa.text(
            "INSERT INTO cells (hash, matrix, ops, vertices, edges)"
            " SELECT md5(i::text), '[]', '[]', 0, 0 FROM generate_series(1, 200000) AS i"
        ))
        conn.execute(sa.text(
            "INSERT INTO jobs (campaign_id, cell_id, epochs, repeat, seed, status)"
            " SELECT 2, cl.id, 4, 0, i, CASE WHEN i % 100 = 0 THEN 'pending' ELSE 'done' END"
            " FROM generate_series(1, 200000) AS i JOIN cells cl ON cl.hash = md5(i::text)"
        ))
        conn.execute(sa.text("ANALYZE jobs"))
    unfiltered = POSTGRESQL.render(POSTGRESQL.claim_jobs, campaign_filter="")
    filtered = POSTGRESQL.render(POSTGRESQL.claim_jobs, campaign_filter="AND campaign_id = :campaign_id")
    with engine.begin() as conn:
        plan = _plan(conn, unfiltered, {"n": 4, "owner": "w", "lease_ttl": 60.0})
        assert "ix_jobs_claim" in plan and "Seq Scan on jobs" not in plan, plan
        plan = _plan(conn, filtered, {"n": 4, "owner": "w", "lease_ttl": 60.0, "campaign_id": 1})
        assert "ix_jobs_campaign_claim" in plan and "Seq Scan on jobs" not in plan, plan
        # The check can fail: without the partial indexes the planner scans the table.
        conn.execute(sa.text("DROP INDEX ix_jobs_claim"))
        conn.execute(sa.text("DROP INDEX ix_jobs_campaign_claim"))
        assert "Seq Scan on jobs" in _plan(conn, unfiltered, {"n": 4, "owner": "w", "lease_ttl": 60.0})
        conn.rollback()
    queue = JobQueue(engine)
    assert [j.campaign for j in queue.claim(2, "w", campaigns=["small"])] == ["small", "small"]
    engine.dispose()


def test_the_reaper_reads_only_the_running_jobs_index(pg_url):
    from db.statements import queue as q

    engine = make_engine(pg_url)
    upgrade(engine)
    with engine.begin() as conn:
        # 300,000 jobs, 0.1% of them running (some leased before lease_expires_at existed).
        conn.execute(sa.text(
            "INSERT INTO cells (hash, matrix, ops, vertices, edges)"
            " SELECT md5(i::text), '[]', '[]', 0, 0 FROM generate_series(1, 300000) AS i"
        ))
        conn.execute(sa.text(
            "INSERT INTO jobs (campaign_id, cell_id, epochs, repeat, seed, status, lease_token,"
            " heartbeat_at, lease_expires_at) SELECT 1, cl.id, 4, 0, i,"
            " CASE WHEN i % 1000 = 0 THEN 'running' ELSE 'done' END, md5(i::text), 1,"
            " CASE WHEN i % 2000 = 0 THEN NULL ELSE 5 END"
            " FROM generate_series(1, 300000) AS i JOIN cells cl ON cl.hash = md5(i::text)"
        ))
        conn.execute(sa.text("ANALYZE jobs"))
    expired = POSTGRESQL.render(q.FIND_EXPIRED_LEASES)
    with engine.begin() as conn:
        plan = _plan(conn, expired, {"legacy_ttl": 120.0, "batch": 1000})
        assert "ix_jobs_running_lease_expiry" in plan and "Seq Scan on jobs" not in plan, plan
        conn.execute(sa.text("DROP INDEX ix_jobs_running_lease_expiry"))  # the check can fail
        assert "Seq Scan on jobs" in _plan(conn, expired, {"legacy_ttl": 120.0, "batch": 1000})
        conn.rollback()
    assert JobQueue(engine).reap() == 300  # the running jobs: their leases expired long ago
    engine.dispose()


def _jobs_plan(engine, sql: str, params: dict) -> str:
    explain = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
    with engine.connect() as conn:
        return "\n".join(str(r[-1]) for r in conn.execute(sa.text(explain + sql), params))


def test_status_reads_never_walk_a_campaigns_jobs(db_engine):
    """What `nasfarm status` reads for one campaign: the counting views never touch the jobs, and
    the views of a few jobs start from their partial indexes (running jobs, jobs with an error),
    never from the campaign's 100,000 jobs (SQLite without statistics, as it runs)."""
    create_campaign(db_engine, "small", random_cells(2, seed=3), epochs=(4,), repeats=1,
                    profile=SMOKE.to_dict())
    postgres = db_engine.dialect.name == "postgresql"
    numbers = ("SELECT generate_series(1, 100000) AS i" if postgres else
               "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)"
               " SELECT i FROM n")
    with db_engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO campaigns (id, name, profile_name, profile, epochs, repeats, seed, job_order,"
            " max_attempts, created_at, enqueued_at)"
            " VALUES (2, 'big', 'smoke', '{}', '[4]', 1, 0, 'as-given', 3, 0, 0)"))
        conn.execute(sa.text(
            "INSERT INTO cells (hash, matrix, ops, vertices, edges)"
            f" SELECT 'h' || i, '[]', '[]', 0, 0 FROM ({numbers}) n"))
        conn.execute(sa.text(
            "INSERT INTO jobs (campaign_id, cell_id, epochs, repeat, seed, status, lease_node, last_error)"
            " SELECT 2, cl.id, 4, 0, i, CASE WHEN i % 1000 = 0 THEN 'running' ELSE 'pending' END,"
            " CASE WHEN i % 1000 = 0 THEN 'node' END, CASE WHEN i % 5000 = 0 THEN 'x' END"
            f" FROM ({numbers}) n JOIN cells cl ON cl.hash = 'h' || n.i"))
        if postgres:
            conn.execute(sa.text("ANALYZE"))
    few = {"active_workers": "ix_jobs_running_lease_expiry", "job_failures": "ix_jobs_with_error"}
    for view in ("active_workers", "job_failures", "campaign_progress", "campaign_eta", "hourly_throughput"):
        plan = _jobs_plan(db_engine, f"SELECT * FROM {view} WHERE campaign = :campaign", {"campaign": "big"})
        if view in few:
            assert few[view] in plan and "Seq Scan on jobs" not in plan, (view, plan)
            assert "uq_jobs" not in plan and "sqlite_autoindex_jobs" not in plan, (view, plan)
        else:
            assert not [line for line in plan.splitlines() if " jobs" in line or " j " in line], (view, plan)
    assert len(read_view(db_engine, "active_workers", ["big"])) == 100
    assert len(read_view(db_engine, "job_failures", ["big"])) == 20
