"""Many real processes claim and complete one campaign at once: every job done exactly once."""

from __future__ import annotations

import multiprocessing

import pytest
import sqlalchemy as sa

from farm.config import SMOKE
from nasfarm.campaigns import create_campaign
from tests.fixtures_db import drain_worker, random_cells

# 417 cells x 4 budgets x 3 repeats = 5,004 jobs.
N_CELLS = 417


@pytest.mark.parametrize("db_url, processes", [("postgresql", 8), ("sqlite", 4)], indirect=["db_url"])
def test_concurrent_workers_complete_every_job_exactly_once(db_engine, db_url, processes):
    create_campaign(db_engine, "race", random_cells(N_CELLS, seed=7), profile=SMOKE.to_dict())
    with db_engine.connect() as conn:
        all_ids = {r[0] for r in conn.execute(sa.text("SELECT id FROM jobs"))}
    assert len(all_ids) == N_CELLS * 12

    context = multiprocessing.get_context("spawn")
    start, out = context.Event(), context.Queue()
    workers = [
        context.Process(target=drain_worker, args=(db_url, f"worker-{i}", 3, start, out))
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    start.set()  # all claim at the same moment
    reports = [out.get(timeout=300) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0

    completed = [job_id for _, done, _ in reports for job_id in done]
    assert [lost for _, _, lost in reports] == [[]] * processes  # nobody lost a lease
    assert len(completed) == len(set(completed)) == len(all_ids)  # no job done twice
    assert set(completed) == all_ids  # no job lost
    assert sum(1 for _, done, _ in reports if done) >= 2  # the work really was shared
    with db_engine.connect() as conn:
        q = lambda sql: conn.execute(sa.text(sql)).all()  # noqa: E731
        assert q("SELECT status, COUNT(*) FROM jobs GROUP BY status") == [("done", len(all_ids))]
        assert q("SELECT COUNT(*), COUNT(DISTINCT job_id) FROM results") == [(len(all_ids), len(all_ids))]
        assert q("SELECT MAX(attempts) FROM jobs") == [(1,)]
        # exactly one claim and one end event per job
        assert q(
            "SELECT kind, COUNT(*), COUNT(DISTINCT job_id) FROM job_events GROUP BY kind ORDER BY kind"
        ) == [("claim", len(all_ids), len(all_ids)), ("end", len(all_ids), len(all_ids))]
        assert q("SELECT total, done, attempts FROM campaign_progress") == [
            (len(all_ids), len(all_ids), len(all_ids))
        ]
