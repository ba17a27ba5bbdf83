"""Status tells the truth (issue 15, item 2), on both databases: "running" is the jobs actually
training, a job claimed ahead is "claimed"; epoch and step are live (the newer of the latest
epoch metric and the heartbeat); imported results are not training throughput."""

from __future__ import annotations

import json
import time

import sqlalchemy as sa
from click.testing import CliRunner

from db.nb101_io import campaign_records
from db.queue import JobQueue
from db.views import read_view
from farm.config import SMOKE
from nasfarm.campaigns import create_campaign, import_records
from nasfarm.cli import main
from tests.fixtures_db import fake_result, random_cells
from workers.heartbeat import LeaseKeeper

PROFILE = SMOKE.to_dict()


def _status(url: str, *names: str) -> list[dict]:
    args = ["status", "--json", "--db", url] + [a for n in names for a in ("--campaign", n)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.splitlines()]


def test_a_job_claimed_ahead_is_not_running(db_engine, db_url):
    create_campaign(db_engine, "c", random_cells(3, seed=1), epochs=(4,), repeats=1, profile=PROFILE)
    queue = JobQueue(db_engine)
    jobs = queue.claim(3, "driver")  # 2 workers, and one job buffered ahead for the next free one
    for i, job in enumerate(jobs[:2]):
        assert queue.start_attempt(job.job_id, job.lease_token, node=f"host/gpu{i}")
    (row,) = _status(db_url)
    assert (row["running"], row["claimed"], row["pending"]) == (2, 1, 0)
    assert sorted(w["job_id"] for w in row["workers"]) == sorted(j.job_id for j in jobs[:2])
    assert queue.counts(["c"])["running"] == 3  # the job status column still says running
    text = CliRunner().invoke(main, ["status", "--db", db_url]).output
    assert "workers: 2 training, 1 job(s) claimed ahead, not started" in text
    header, line = text.splitlines()[:2]
    assert header.split()[:5] == ["campaign", "total", "pending", "running", "claimed"]
    assert line.split()[:5] == ["c", "3", "0", "2", "1"]
    # the buffered job starts on the next free worker: it is running now
    assert queue.start_attempt(jobs[2].job_id, jobs[2].lease_token, node="host/gpu0")
    (row,) = _status(db_url)
    assert (row["running"], row["claimed"]) == (3, 0)


def _live(engine, job_id: int) -> tuple[float | None, int | None]:
    (worker,) = [w for w in read_view(engine, "active_workers") if w["job_id"] == job_id]
    return (None if worker["epoch"] is None else float(worker["epoch"]),
            None if worker["step"] is None else int(worker["step"]))


def test_epoch_and_step_are_the_newer_of_the_latest_metric_and_the_heartbeat(db_engine):
    create_campaign(db_engine, "c", random_cells(1, seed=2), epochs=(4,), repeats=1, profile=PROFILE)
    queue = JobQueue(db_engine)
    (job,) = queue.claim(1, "w")
    queue.start_attempt(job.job_id, job.lease_token, node="host/gpu0")
    assert _live(db_engine, job.job_id) == (None, None)
    # an epoch ends: its metric is newer than anything the heartbeat said (nothing yet)
    queue.record_metrics(job.job_id, job.lease_token, {"kind": "epoch", "epoch": 1.0, "step": 100})
    assert _live(db_engine, job.job_id) == (1.0, 100)
    queue.heartbeat(job.job_id, job.lease_token, step=150, epoch=1.5)  # mid-epoch
    assert _live(db_engine, job.job_id) == (1.5, 150)
    queue.record_metrics(job.job_id, job.lease_token, {"kind": "epoch", "epoch": 2.0, "step": 200})
    assert _live(db_engine, job.job_id) == (2.0, 200)
    # the lease keeper's heartbeat carries the step training noted last
    keeper = LeaseKeeper(queue, job.job_id, job.lease_token, interval_s=0.05).start()
    keeper.progress(250, 2.5)
    deadline = time.monotonic() + 10
    while _live(db_engine, job.job_id) != (2.5, 250) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _live(db_engine, job.job_id) == (2.5, 250)
    assert keeper.close()
    # a new lease starts from nothing: the last lease's metrics are not its progress (a released
    # job keeps its attempt number)
    queue.release(job.job_id, job.lease_token)
    (again,) = queue.claim(1, "w")
    queue.start_attempt(again.job_id, again.lease_token, node="host/gpu1")
    assert _live(db_engine, job.job_id) == (None, None)


def test_imported_results_are_not_training_throughput(db_engine, db_url):
    create_campaign(db_engine, "trained", random_cells(3, seed=3), epochs=(4, 12), repeats=1,
                    profile=PROFILE, order="as-given")
    queue = JobQueue(db_engine)
    while jobs := queue.claim(4, "w", campaigns=["trained"]):
        for job in jobs:
            queue.start_attempt(job.job_id, job.lease_token, node="n")
            assert queue.complete(job.job_id, job.lease_token, fake_result(job))
    records = list(campaign_records(db_engine, "trained"))
    import_records(db_engine, lambda: iter(records), "published", profile=PROFILE)

    progress = {r["campaign"]: r for r in read_view(db_engine, "campaign_progress")}
    assert progress["trained"]["done_last_hour"] == 6 and progress["trained"]["gpu_seconds"] > 0
    assert progress["published"]["done"] == 6
    assert progress["published"]["done_last_hour"] == 0 and progress["published"]["gpu_seconds"] == 0
    assert progress["published"]["eta_seconds"] is None
    hours = read_view(db_engine, "hourly_throughput")
    assert [(h["campaign"], h["jobs_done"]) for h in hours] == [("trained", 6)]
    eta = {r["campaign"]: r for r in read_view(db_engine, "campaign_eta")}
    assert eta["trained"]["done_cost_last_hour"] > 0 and eta["trained"]["seconds_per_cost"] > 0
    assert eta["published"]["done_cost"] == eta["trained"]["done_cost"]  # the same cells, all done
    assert eta["published"]["done_cost_last_hour"] == 0 and eta["published"]["seconds_per_cost"] is None

    rows = {r["campaign"]: r for r in _status(db_url)}
    assert rows["published"]["last_hour"]["jobs_done"] == 0 and rows["published"]["gpu_hours"] == 0
    assert rows["trained"]["last_hour"]["jobs_done"] == 6
    text = CliRunner().invoke(main, ["status", "--campaign", "published", "--db", db_url]).output
    assert "imported results (a published table): not trained here" in text and "this hour" not in text
    with db_engine.connect() as conn:  # the published results are stored nonetheless
        assert conn.execute(sa.text("SELECT COUNT(*) FROM results r JOIN campaigns c ON c.id ="
                                    " r.campaign_id WHERE c.name = 'published'")).scalar_one() == 6
