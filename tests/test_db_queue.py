"""The queue's state machine on a real SQLite file and a real PostgreSQL database (both params)."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import signal
import time

import pytest
import sqlalchemy as sa

from db.errors import UnknownCampaign
from db.queue import JobQueue, backoff_delay
from db.views import compact_job_counts
from farm.config import SMOKE
from nasfarm.campaigns import create_campaign, job_seed
from tests.fixtures_db import claim_and_hang, fake_result, random_cells

PROFILE = SMOKE.to_dict()


def _campaign(engine, name="c", n_cells=3, **kwargs):
    cells = random_cells(n_cells, seed=hash(name) % 1000)
    kwargs.setdefault("epochs", (4, 12))
    kwargs.setdefault("repeats", 2)
    kwargs.setdefault("order", "as-given")
    create_campaign(engine, name, cells, profile=PROFILE, **kwargs)
    return cells


def _rows(engine, sql, **params):
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql), params)]


def _db_now(engine) -> float:
    from db.dialect import dialect_of

    return _rows(engine, "SELECT " + dialect_of(engine).now)[0][0]


def test_claim_returns_jobs_in_campaign_order_with_everything_needed(db_engine):
    cells = _campaign(db_engine)
    queue = JobQueue(db_engine)
    jobs = queue.claim(5, "worker-1")
    assert [j.job_id for j in jobs] == [1, 2, 3, 4, 5]
    # as-given order: the first cell's (4, r0), (4, r1), (12, r0), (12, r1), then the second cell
    assert [(j.cell_hash, j.epochs, j.repeat) for j in jobs] == [
        (cells[0].hash, 4, 0), (cells[0].hash, 4, 1), (cells[0].hash, 12, 0), (cells[0].hash, 12, 1),
        (cells[1].hash, 4, 0),
    ]
    first = jobs[0]
    assert first.matrix == cells[0].matrix.tolist() and first.ops == list(cells[0].ops)
    assert first.campaign == "c" and first.profile == PROFILE
    assert first.attempt == 1 and first.max_attempts == 3 and first.checkpoint_location is None
    assert first.seed == job_seed(0, cells[0].hash, 0)
    tokens = {j.lease_token for j in jobs}
    assert len(tokens) == 5 and all(re.fullmatch(r"[0-9a-f]{32}", t) for t in tokens)
    assert queue.counts() == {"pending": 7, "running": 5, "done": 0, "failed": 0, "cancelled": 0}
    # a higher priority jumps the queue
    with db_engine.begin() as conn:
        conn.execute(sa.text("UPDATE jobs SET priority = 5 WHERE id = 12"))
    assert [j.job_id for j in queue.claim(2, "worker-2")] == [12, 6]


def test_claim_filters_by_campaign(db_engine):
    _campaign(db_engine, "a")
    _campaign(db_engine, "b")
    queue = JobQueue(db_engine)
    assert {j.campaign for j in queue.claim(20, "w", campaigns=["b"])} == {"b"}
    assert queue.counts(["b"])["running"] == 12 and queue.counts(["a"])["pending"] == 12
    assert queue.claim(5, "w", campaigns=[]) == []
    with pytest.raises(UnknownCampaign, match="nope"):
        queue.claim(1, "w", campaigns=["nope"])


def test_complete_stores_one_result_and_the_history(db_engine):
    _campaign(db_engine)
    queue = JobQueue(db_engine)
    job = queue.claim(1, "worker-1")[0]
    assert queue.start_attempt(job.job_id, job.lease_token, node="gpu-node-3", resumed_from_epoch=1.5)
    assert queue.heartbeat(job.job_id, job.lease_token, step=40, epoch=2.5)
    assert queue.record_metrics(job.job_id, job.lease_token, {"kind": "epoch", "epoch": 3.0, "step": 48,
                                                               "loss": 1.25, "training_time": 9.5})
    assert queue.set_checkpoint(job.job_id, job.lease_token, "/ckpt/job-1.pt")
    row = queue.job(job.job_id)
    assert (row["progress_step"], row["progress_epoch"], row["lease_node"]) == (40, 2.5, "gpu-node-3")
    produced = {**fake_result(job, 0.875), "weights_sha256": "ab" * 32, "extra": {"trainer": "fast"}}
    assert queue.complete(job.job_id, job.lease_token, produced)
    (extra,) = _rows(db_engine, "SELECT extra FROM results")[0]
    assert json.loads(extra) == {"weights_sha256": "ab" * 32, "trainer": "fast"}  # one flat object
    # the same lease completing again (an ambiguous commit retried) is fine and writes nothing
    assert queue.complete(job.job_id, job.lease_token, fake_result(job, 0.5))
    results = _rows(db_engine, "SELECT job_id, final_test_accuracy, attempt, evaluations FROM results")
    assert len(results) == 1 and results[0][:3] == (job.job_id, 0.875, 1)
    assert '"training_steps": 2' in results[0][3]
    metrics = _rows(db_engine, "SELECT kind, epoch, step, loss, attempt FROM job_metrics")
    assert metrics == [("epoch", 3.0, 48, 1.25, 1)]
    assert queue.job(job.job_id)["checkpoint_location"] == "/ckpt/job-1.pt"
    history = queue.history(job.job_id)
    assert [(e["kind"], e["status"], e["attempt"]) for e in history] == [
        ("claim", "running", 1), ("start", "running", 1), ("end", "done", 1)
    ]
    assert history[1]["node"] == "gpu-node-3" and history[1]["resumed_from_epoch"] == 1.5
    assert queue.counts()["done"] == 1


def test_a_reaped_lease_can_write_nothing(db_engine):
    _campaign(db_engine, n_cells=1, epochs=(4,), repeats=1)
    queue = JobQueue(db_engine, backoff_base=0)
    old = queue.claim(1, "slow-worker", lease_ttl_s=0.01)[0]
    assert queue.start_attempt(old.job_id, old.lease_token, node="n1")
    time.sleep(0.05)
    assert queue.reap() == 1
    token = old.lease_token
    assert not queue.heartbeat(old.job_id, token, step=1)
    assert not queue.complete(old.job_id, token, fake_result(old))
    assert not queue.fail(old.job_id, token, "late", retryable=True)
    assert not queue.release(old.job_id, token)
    assert not queue.record_metrics(old.job_id, token, {"kind": "epoch", "epoch": 1.0})
    assert not queue.set_checkpoint(old.job_id, token, "/elsewhere")
    assert not queue.start_attempt(old.job_id, token, node="n", resumed_from_epoch=0.0)
    new = queue.claim(1, "fresh-worker")[0]
    assert new.job_id == old.job_id and new.attempt == 2 and new.lease_token != token
    assert not queue.complete(old.job_id, token, fake_result(old))  # still fenced out
    assert queue.complete(new.job_id, new.lease_token, fake_result(new))
    assert _rows(db_engine, "SELECT job_id, attempt FROM results") == [(new.job_id, 2)]
    assert _rows(db_engine, "SELECT COUNT(*) FROM job_metrics") == [(0,)]
    kinds = [e["kind"] for e in queue.history(old.job_id)]
    assert kinds == ["claim", "start", "reap", "claim", "end"]


def test_a_lease_reaped_before_its_job_started_is_not_charged(db_engine):
    """Claimed ahead (a driver's prefetch) and never started: the reaper hands the attempt back."""
    _campaign(db_engine, n_cells=1, epochs=(4,), repeats=1)
    queue = JobQueue(db_engine, backoff_base=1000)  # a charged reap would also wait ~1000 s
    prefetched = queue.claim(1, "dead-driver", lease_ttl_s=0.01)[0]
    assert prefetched.attempt == 1
    time.sleep(0.05)
    assert queue.reap() == 1
    row = queue.job(prefetched.job_id)
    assert (row["status"], row["attempts"]) == ("pending", 0)
    assert "no attempt charged" in row["last_error"]
    again = queue.claim(1, "next-driver")[0]  # at once: no backoff for an attempt never made
    assert (again.job_id, again.attempt) == (prefetched.job_id, 1)


def test_fail_backs_off_then_fails_at_max_attempts(db_engine):
    _campaign(db_engine, n_cells=1, epochs=(4,), repeats=2, max_attempts=2)
    queue = JobQueue(db_engine, backoff_base=100, backoff_cap=1000)
    job = queue.claim(1, "w")[0]
    assert queue.fail(job.job_id, job.lease_token, "CUDA error: device-side assert", retryable=True)
    row = queue.job(job.job_id)
    assert row["status"] == "pending" and row["last_error"] == "CUDA error: device-side assert"
    assert 50 - 1 <= row["not_before"] - _db_now(db_engine) <= 100  # base * 2^0 with equal jitter
    # backing off: the other job is claimed, this one is not
    other = queue.claim(5, "w")
    assert [j.job_id for j in other] == [2]
    with db_engine.begin() as conn:
        conn.execute(sa.text("UPDATE jobs SET not_before = 0 WHERE id = :id"), {"id": job.job_id})
    again = queue.claim(1, "w")[0]
    assert again.job_id == job.job_id and again.attempt == 2
    assert queue.fail(again.job_id, again.lease_token, "NaN loss at step 7", retryable=True)
    row = queue.job(job.job_id)
    assert (row["status"], row["attempts"], row["last_error"]) == ("failed", 2, "NaN loss at step 7")
    # a non-retryable error fails at once, whatever attempts remain
    assert queue.fail(other[0].job_id, other[0].lease_token, "bad input", retryable=False)
    assert queue.job(other[0].job_id)["status"] == "failed"
    assert queue.counts() == {"pending": 0, "running": 0, "done": 0, "failed": 2, "cancelled": 0}


def test_backoff_is_capped_exponential_with_jitter():
    import random

    rng = random.Random(1)
    for attempt, full in ((1, 10), (2, 20), (3, 40), (4, 80), (9, 100)):
        draws = [backoff_delay(attempt, 10, 100, rng) for _ in range(200)]
        assert full / 2 <= min(draws) and max(draws) <= full
        assert max(draws) - min(draws) > full / 4  # jitter actually spreads them
    assert backoff_delay(3, 0, 100, rng) == 0


def test_release_charges_no_attempt(db_engine):
    _campaign(db_engine, n_cells=1, epochs=(4,), repeats=1)
    queue = JobQueue(db_engine, backoff_base=1000)
    job = queue.claim(1, "w")[0]
    assert queue.set_checkpoint(job.job_id, job.lease_token, "/ckpt/1")
    assert queue.release(job.job_id, job.lease_token, reason="SIGTERM: node draining")
    row = queue.job(job.job_id)
    assert (row["status"], row["attempts"], row["preemptions"]) == ("pending", 0, 1)
    again = queue.claim(1, "w2")[0]  # claimable at once: no backoff
    assert again.attempt == 1 and again.checkpoint_location == "/ckpt/1"
    release = queue.history(job.job_id)[1]
    assert (release["kind"], release["error"]) == ("release", "SIGTERM: node draining")


def test_reaper_takes_back_a_killed_worker_job_and_fails_it_at_max_attempts(db_engine, db_url):
    _campaign(db_engine, n_cells=1, epochs=(4,), repeats=1, max_attempts=2)
    queue = JobQueue(db_engine, backoff_base=0.4, backoff_cap=0.4)
    context = multiprocessing.get_context("spawn")
    ttl = 0.5
    for attempt in (1, 2):
        ready = context.Queue()
        worker = context.Process(target=claim_and_hang, args=(db_url, f"doomed-{attempt}", ready, ttl))
        worker.start()
        try:
            assert ready.get(timeout=60) == 1
            os.kill(worker.pid, signal.SIGKILL)
            worker.join(timeout=30)
            assert worker.exitcode == -signal.SIGKILL
        finally:
            if worker.is_alive():
                worker.kill()
        assert queue.reap() == 0  # the lease has not expired yet
        time.sleep(ttl + 0.1)
        assert queue.reap() == 1
        row = queue.job(1)
        assert row["attempts"] == attempt and row["lease_token"] is None
        if attempt == 1:
            assert row["status"] == "pending"
            assert 0.2 - 0.05 <= row["not_before"] - _db_now(db_engine) <= 0.4
            time.sleep(0.45)
    assert row["status"] == "failed"
    assert row["last_error"] == "lease expired: no heartbeat from doomed-2 for 0.5 s (attempt 2 of 2)"
    kinds = [(e["kind"], e["owner"], e["status"]) for e in queue.history(1)]
    assert kinds == [
        ("claim", "doomed-1", "running"), ("start", "doomed-1", "running"), ("reap", "doomed-1", "pending"),
        ("claim", "doomed-2", "running"), ("start", "doomed-2", "running"), ("reap", "doomed-2", "failed"),
    ]


def test_cancel_stops_running_jobs_and_retry_brings_jobs_back(db_engine):
    _campaign(db_engine, n_cells=2, epochs=(4,), repeats=2)
    queue = JobQueue(db_engine, backoff_base=0)
    running = queue.claim(1, "w")[0]
    failed = queue.claim(1, "w")[0]
    queue.fail(failed.job_id, failed.lease_token, "boom", retryable=False)
    assert queue.cancel("c") == 3  # the running job and the two pending ones
    assert not queue.heartbeat(running.job_id, running.lease_token)
    assert not queue.complete(running.job_id, running.lease_token, fake_result(running))
    assert queue.counts() == {"pending": 0, "running": 0, "done": 0, "failed": 1, "cancelled": 3}
    assert queue.retry("c") == 1
    assert queue.job(failed.job_id)["attempts"] == 0
    assert queue.retry("c", failed_only=False) == 3
    assert queue.counts() == {"pending": 4, "running": 0, "done": 0, "failed": 0, "cancelled": 0}
    job = queue.claim(1, "w")[0]
    assert queue.cancel(job_ids=[job.job_id]) == 1 and queue.job(job.job_id)["status"] == "cancelled"
    with pytest.raises(UnknownCampaign):
        queue.retry("nope")
    with pytest.raises(UnknownCampaign):
        queue.cancel("nope")


def test_counts_agree_with_the_jobs_table(db_engine):
    _campaign(db_engine, n_cells=5, epochs=(4, 12), repeats=3)  # 30 jobs
    queue = JobQueue(db_engine, backoff_base=0)
    jobs = queue.claim(12, "w")
    for job in jobs[:4]:
        queue.complete(job.job_id, job.lease_token, fake_result(job))
    for job in jobs[4:6]:
        queue.fail(job.job_id, job.lease_token, "x", retryable=False)
    for job in jobs[6:8]:
        queue.release(job.job_id, job.lease_token)
    queue.cancel(job_ids=[jobs[8].job_id, 30])

    def truth():
        counts = dict.fromkeys(("pending", "running", "done", "failed", "cancelled"), 0)
        counts.update(dict(_rows(db_engine, "SELECT status, COUNT(*) FROM jobs GROUP BY status")))
        return counts

    assert queue.counts() == truth() == {"pending": 19, "running": 3, "done": 4, "failed": 2, "cancelled": 2}
    progress = _rows(db_engine, "SELECT attempts, total FROM campaign_progress")
    assert progress == _rows(db_engine, "SELECT SUM(attempts), COUNT(*) FROM jobs")
    with db_engine.begin() as conn:  # what the reaper does once the deltas pile up
        assert compact_job_counts(conn) > 5
    # one row per (campaign, epochs, status): 2 budgets x 5 statuses at most
    folded = _rows(db_engine, "SELECT COUNT(*) FROM job_counts")[0][0]
    keys = _rows(db_engine, "SELECT COUNT(*) FROM"
                            " (SELECT DISTINCT campaign_id, epochs, status FROM job_counts) k")
    assert folded == keys[0][0] <= 2 * 5
    assert queue.counts() == truth()
    assert _rows(db_engine, "SELECT attempts FROM campaign_progress") == [(10,)]


def test_a_short_lease_ttl_never_reaps_a_longer_ones_healthy_leases_yet_reaps_an_expired_one(db_engine):
    """Two drivers on one campaign, started with --lease-ttl 0.5 and 4. The long one heartbeats its
    healthy leases at its TTL/4 (every second: twice the short TTL of silence between beats); the
    short one reaps at its TTL/4. Only the lease whose own expiry passed -- its worker died -- is
    reaped, and not before that expiry."""
    _campaign(db_engine, n_cells=2, epochs=(4,), repeats=2)  # 4 jobs
    short_ttl, long_ttl = 0.5, 4.0
    short_driver = JobQueue(db_engine, backoff_base=0)
    long_driver = JobQueue(db_engine, backoff_base=0)
    healthy = long_driver.claim(2, "driver-long", lease_ttl_s=long_ttl)
    (abandoned,) = long_driver.claim(1, "driver-long", lease_ttl_s=long_ttl)  # never heartbeats again
    (own,) = short_driver.claim(1, "driver-short", lease_ttl_s=short_ttl)
    for job, ttl in ((healthy[0], long_ttl), (own, short_ttl)):  # the lease carries its owner's TTL
        row = short_driver.job(job.job_id)
        assert row["lease_expires_at"] - row["heartbeat_at"] == pytest.approx(ttl, abs=1e-3)

    started = time.monotonic()
    next_long_beat = started + long_ttl / 4
    reaped = []
    while time.monotonic() - started < long_ttl + 1.5:
        if time.monotonic() >= next_long_beat:
            for job in healthy:
                assert long_driver.heartbeat(job.job_id, job.lease_token, step=1, lease_ttl_s=long_ttl)
            next_long_beat = time.monotonic() + long_ttl / 4
        reaped.append(short_driver.reap())
        time.sleep(short_ttl / 4)

    # The short driver's own lease (never renewed) and the abandoned one expired; nothing else.
    assert sum(reaped) == 2
    for job in healthy:
        row = short_driver.job(job.job_id)
        assert (row["status"], row["lease_token"], row["lease_owner"]) == ("running", job.lease_token,
                                                                           "driver-long")
    row = short_driver.job(abandoned.job_id)
    assert (row["status"], row["lease_token"]) == ("pending", None)
    assert row["last_error"].startswith("lease expired: no heartbeat from driver-long for 4 s")
    claim, reap = short_driver.history(abandoned.job_id)
    assert (claim["kind"], reap["kind"]) == ("claim", "reap")
    assert reap["at"] - claim["at"] >= long_ttl  # on the database's clock: not before it expired
    assert [e["kind"] for e in short_driver.history(own.job_id)] == ["claim", "reap"]
    assert not long_driver.heartbeat(abandoned.job_id, abandoned.lease_token, lease_ttl_s=long_ttl)


def test_writes_that_prove_the_lease_alive_renew_it_for_its_own_ttl(db_engine):
    _campaign(db_engine, n_cells=1, epochs=(4,), repeats=1)
    queue = JobQueue(db_engine)
    (job,) = queue.claim(1, "w", lease_ttl_s=30.0)

    def ttl():
        row = queue.job(job.job_id)
        return row["lease_expires_at"] - row["heartbeat_at"]

    before = queue.job(job.job_id)["lease_expires_at"]
    time.sleep(0.05)
    assert queue.start_attempt(job.job_id, job.lease_token, node="n", resumed_from_epoch=0.0)
    assert ttl() == pytest.approx(30.0, abs=1e-3) and queue.job(job.job_id)["lease_expires_at"] > before
    assert queue.set_checkpoint(job.job_id, job.lease_token, "/ckpt")
    assert ttl() == pytest.approx(30.0, abs=1e-3)
    assert queue.heartbeat(job.job_id, job.lease_token)  # no TTL named: the lease keeps its own
    assert ttl() == pytest.approx(30.0, abs=1e-3)
    assert queue.heartbeat(job.job_id, job.lease_token, lease_ttl_s=600.0)  # the owner's TTL wins
    assert ttl() == pytest.approx(600.0, abs=1e-3)
    assert queue.complete(job.job_id, job.lease_token, fake_result(job))
    assert queue.job(job.job_id)["lease_expires_at"] is None
