"""Importing a published table is all or nothing, and an imported campaign is never trained."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from db.campaigns import get_campaign
from db.errors import UnknownCampaign
from db.nb101_io import campaign_records
from db.queue import JobQueue
from farm.config import NB101, SMOKE
from farm.records import RecordError
from nasfarm.campaigns import create_campaign, import_records
from scheduler.launch import plan_campaigns
from scheduler.preflight import campaign_problems
from tests.fixtures_db import fake_result, random_cells

PROFILE = {**NB101.to_dict(), "name": "nb101"}


def _records(engine, n_cells=4):
    """Benchmark records of a finished little campaign (2 budgets x 2 repeats)."""
    create_campaign(engine, "source", random_cells(n_cells, seed=5), epochs=(4, 12), repeats=2,
                    profile=SMOKE.to_dict(), order="as-given")
    queue = JobQueue(engine)
    while jobs := queue.claim(10, "w", campaigns=["source"]):
        for job in jobs:
            assert queue.complete(job.job_id, job.lease_token, fake_result(job))
    return list(campaign_records(engine, "source"))


def _count(engine, sql):
    with engine.connect() as conn:
        return conn.execute(sa.text(sql)).scalar_one()


def test_a_partial_file_leaves_no_job_to_train(db_engine):
    records = _records(db_engine)
    partial = [r for r in records if not (r.epochs == 12 and r.repeat == 1)]  # a repeat missing
    info = import_records(db_engine, lambda: iter(partial), "published", profile=PROFILE)
    assert info["results_added"] == len(partial) and info["jobs_added"] == len(partial)
    campaign = get_campaign(db_engine, "published")
    assert campaign["source"] == "imported" and campaign["epochs"] == [4, 12]
    counts = JobQueue(db_engine).counts(["published"])
    assert counts.get("done") == len(partial) and not counts.get("pending")
    again = import_records(db_engine, lambda: iter(partial), "published", profile=PROFILE)
    assert again["results_added"] == 0 and again["jobs_added"] == 0


def test_an_import_that_fails_in_its_second_pass_leaves_nothing(db_engine):
    records = _records(db_engine)
    campaigns_before = _count(db_engine, "SELECT COUNT(*) FROM campaigns")
    jobs_before = _count(db_engine, "SELECT COUNT(*) FROM jobs")
    passes = []

    def read():
        passes.append(1)
        for i, record in enumerate(records):
            if len(passes) == 2 and i == len(records) // 2:
                raise RecordError("truncated record at byte 123456")
            yield record

    with pytest.raises(RecordError):
        import_records(db_engine, read, "published", profile=PROFILE)
    assert len(passes) == 2
    with pytest.raises(UnknownCampaign):
        get_campaign(db_engine, "published")
    assert _count(db_engine, "SELECT COUNT(*) FROM campaigns") == campaigns_before
    assert _count(db_engine, "SELECT COUNT(*) FROM jobs") == jobs_before


def test_nasfarm_run_never_trains_an_imported_campaign(db_engine):
    records = _records(db_engine)
    import_records(db_engine, lambda: iter(records[:-1]), "published", profile=PROFILE)
    (plan,) = plan_campaigns(db_engine, ["published"])
    assert plan.source == "imported"
    (problem,) = campaign_problems([plan], sizes=None)
    assert "'published' holds imported results" in problem and "never trains" in problem
    assert plan_campaigns(db_engine, []) == []  # nothing to run: "source" is done, "published" imported
