"""The monitoring aggregates (db.counts) against a full recount of the jobs and results, after
random sequences of every transition the farm makes, on both databases; the views they feed
against queries on the jobs themselves."""

from __future__ import annotations

import random

import pytest
import sqlalchemy as sa

from db.counts import aggregated, compact, recounted
from db.migrate import upgrade
from db.nb101_io import campaign_records
from db.queue import JobQueue
from farm.adaptive import PromotionRule
from farm.config import SMOKE
from nasfarm.campaigns import create_campaign, import_records
from tests.fixtures_db import fake_result, random_cells

PROFILE = SMOKE.to_dict()


def _same(engine) -> None:
    """The deltas summed equal the recount: counts exactly, costs and seconds to rounding."""
    with engine.connect() as conn:
        (jobs, results), (true_jobs, true_results) = aggregated(conn), recounted(conn)
    assert set(jobs) == set(true_jobs)
    for key, (n, cost, unstarted, attempts) in true_jobs.items():
        got = jobs[key]
        assert (got[0], got[2], got[3]) == (n, unstarted, attempts), key
        assert got[1] == pytest.approx(cost, rel=1e-9), key
    assert set(results) == set(true_results)
    for key, (n, total, final) in true_results.items():
        assert results[key][0] == n and results[key][1:] == pytest.approx((total, final), rel=1e-9), key


def _rows(engine, sql: str, **params) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql), params)]


def _views_agree_with_the_jobs(engine) -> None:
    """campaign_progress and campaign_eta (from the aggregates) against the jobs themselves."""
    progress = {r[0]: r[1:] for r in _rows(engine, (
        "SELECT campaign, total, pending, running, claimed, done, failed, cancelled, attempts"
        " FROM campaign_progress"))}
    truth = {r[0]: r[1:] for r in _rows(engine, """
        SELECT c.name, COUNT(j.id),
               SUM(CASE WHEN j.status = 'pending' THEN 1 ELSE 0 END),
               SUM(CASE WHEN j.status = 'running' AND j.lease_node IS NOT NULL THEN 1 ELSE 0 END),
               SUM(CASE WHEN j.status = 'running' AND j.lease_node IS NULL THEN 1 ELSE 0 END),
               SUM(CASE WHEN j.status = 'done' THEN 1 ELSE 0 END),
               SUM(CASE WHEN j.status = 'failed' THEN 1 ELSE 0 END),
               SUM(CASE WHEN j.status = 'cancelled' THEN 1 ELSE 0 END),
               SUM(j.attempts)
        FROM campaigns c JOIN jobs j ON j.campaign_id = c.id GROUP BY c.name""")}
    assert {k: tuple(int(x) for x in v) for k, v in progress.items()} == \
        {k: tuple(int(x or 0) for x in v) for k, v in truth.items()}
    eta = {r[0]: r[1:] for r in _rows(engine, "SELECT campaign, remaining_jobs, remaining_cost, done_cost"
                                              " FROM campaign_eta")}
    scanned = {r[0]: r[1:] for r in _rows(engine, """
        SELECT c.name,
               SUM(CASE WHEN j.status IN ('pending', 'running') THEN 1 ELSE 0 END),
               SUM(CASE WHEN j.status IN ('pending', 'running') THEN cl.flops * j.epochs ELSE 0 END),
               SUM(CASE WHEN j.status = 'done' THEN cl.flops * j.epochs ELSE 0 END)
        FROM campaigns c JOIN jobs j ON j.campaign_id = c.id JOIN cells cl ON cl.id = j.cell_id
        GROUP BY c.name""")}
    for name, (jobs, remaining, done) in scanned.items():
        assert int(eta[name][0]) == int(jobs)
        assert float(eta[name][1]) == pytest.approx(float(remaining), rel=1e-9)
        assert float(eta[name][2]) == pytest.approx(float(done), rel=1e-9)


class Farm:
    """A little farm on one database, driven by random transitions."""

    def __init__(self, engine, rng: random.Random):
        self.engine = engine
        self.rng = rng
        self.queue = JobQueue(engine, backoff_base=0)
        self.leases: list[tuple[int, str, bool, str]] = []  # job, token, started, owner
        self.imports = 0
        cells = random_cells(10, seed=rng.randrange(1000))
        create_campaign(engine, "a", cells[:6], epochs=(4, 12), repeats=2, profile=PROFILE)
        create_campaign(engine, "b", cells[3:], epochs=(4, 36, 108), repeats=1, profile=PROFILE,
                        order="cheap-first", max_attempts=2)
        create_campaign(engine, "adaptive", cells[:4], epochs=(4, 12), repeats=1, profile=PROFILE,
                        promote=PromotionRule(1, 2))
        self.queue.register_driver("driver-x", heartbeat_s=1.0)

    def _pick(self, *, started: bool | None = None):
        choices = [lease for lease in self.leases if started is None or lease[2] == started]
        if not choices:
            return None
        lease = self.rng.choice(choices)
        self.leases.remove(lease)
        return lease

    # --- the transitions -------------------------------------------------------------------------
    def claim(self):
        owner = self.rng.choice(["w1", "w2", "driver-x"])
        campaigns = self.rng.choice([None, ["a"], ["b"], ["adaptive"]])
        if self.rng.random() < 0.3:
            groups = self.queue.claim_groups(2, owner, campaigns=campaigns, max_group=2)
            jobs = [job for group in groups for job in group]
        else:
            jobs = self.queue.claim(self.rng.randint(1, 3), owner, campaigns=campaigns)
        self.leases += [(job.job_id, job.lease_token, False, owner) for job in jobs]

    def start(self):
        if lease := self._pick(started=False):
            self.queue.start_attempt(lease[0], lease[1], node=f"node-{lease[0] % 3}")
            self.queue.heartbeat(lease[0], lease[1], step=5, epoch=0.5)
            self.leases.append((lease[0], lease[1], True, lease[3]))

    def complete(self):
        if lease := self._pick(started=True):
            job = self.queue.job(lease[0])
            result = fake_result(type("J", (), {"job_id": lease[0], "epochs": job["epochs"]}),
                                 accuracy=self.rng.random())
            assert self.queue.complete(lease[0], lease[1], result)

    def fail(self):
        if lease := self._pick(started=True):
            self.queue.fail(lease[0], lease[1], "boom", retryable=self.rng.random() < 0.5, signature="boom")

    def release(self):
        if lease := self._pick():
            if self.rng.random() < 0.5:
                self.queue.release(lease[0], lease[1])
            else:  # an environment fault: the node's, not the job's (uncharged, backs off)
                self.queue.release(lease[0], lease[1], reason="environment", error="disk full",
                                   signature="disk full", backoff=True)

    def reap(self):
        if lease := self._pick():
            with self.engine.begin() as conn:  # its worker died: the lease ran out
                conn.execute(sa.text("UPDATE jobs SET lease_expires_at = lease_expires_at - 1000"
                                     " WHERE id = :id"), {"id": lease[0]})
            self.queue.reap()

    def reap_dead_driver(self):
        mine = [lease for lease in self.leases if lease[3] == "driver-x"]
        if not mine:
            return
        with self.engine.begin() as conn:  # the driver was killed: its liveness row went stale
            conn.execute(sa.text("UPDATE drivers SET heartbeat_at = heartbeat_at - 1000"
                                 " WHERE owner = 'driver-x'"))
        self.queue.reap_dead_drivers("w1")
        self.leases = [lease for lease in self.leases if lease[3] != "driver-x"]
        self.queue.retire_driver("driver-x")
        with self.engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM drivers WHERE owner = 'driver-x'"))
        self.queue.register_driver("driver-x", heartbeat_s=1.0)

    def retry(self):
        self.queue.retry(self.rng.choice(["a", "b"]), failed_only=self.rng.random() < 0.5)

    def cancel(self):
        ids = [r[0] for r in _rows(self.engine, "SELECT id FROM jobs WHERE status IN ('pending', 'running')")]
        if ids:
            chosen = self.rng.sample(ids, min(len(ids), self.rng.randint(1, 3)))
            self.queue.cancel(job_ids=chosen)
            self.leases = [lease for lease in self.leases if lease[0] not in chosen]

    def import_table(self):
        records = list(campaign_records(self.engine, "a"))
        if records:
            self.imports += 1
            sample = self.rng.sample(records, max(1, len(records) // 2))
            import_records(self.engine, lambda: iter(sample), f"published-{self.imports}", profile=PROFILE)

    def promote(self):
        self.queue.promote_ready_budgets(["adaptive"], decided_by="test")

    def compact(self):
        with self.engine.begin() as conn:
            compact(conn)

    def step(self) -> str:
        ops = [(self.claim, 6), (self.start, 5), (self.complete, 5), (self.fail, 2), (self.release, 2),
               (self.reap, 1), (self.reap_dead_driver, 1), (self.retry, 1), (self.cancel, 1),
               (self.import_table, 0.5), (self.promote, 1), (self.compact, 1)]
        op = self.rng.choices([o for o, _ in ops], weights=[w for _, w in ops])[0]
        op()
        return op.__name__


@pytest.mark.parametrize("seed", [0, 1])
def test_the_aggregates_equal_a_recount_after_random_transitions(db_engine, seed):
    farm = Farm(db_engine, random.Random(seed))
    _same(db_engine)
    done = set()
    for i in range(120):
        done.add(farm.step())
        if i % 40 == 39:
            _same(db_engine)
            _views_agree_with_the_jobs(db_engine)
    # every kind of transition happened (the test would prove less otherwise)
    assert done >= {"claim", "start", "complete", "fail", "release", "reap", "reap_dead_driver", "retry",
                    "cancel", "promote", "compact"}, done
    farm.import_table()
    farm.queue.cancel("b")  # a whole campaign at once: one statement, many jobs
    # the adaptive campaign's first budget finished: its round promotes cells (inserted jobs)
    farm.leases = [lease for lease in farm.leases if farm.queue.job(lease[0])["status"] == "running"]
    for job_id, token, _, _ in farm.leases:
        farm.queue.release(job_id, token)
    farm.queue.retry("adaptive", failed_only=False)
    while jobs := farm.queue.claim(5, "w1", campaigns=["adaptive"]):
        for job in jobs:
            farm.queue.start_attempt(job.job_id, job.lease_token, node="n")
            assert farm.queue.complete(job.job_id, job.lease_token, fake_result(job))
        if farm.queue.promote_ready_budgets(["adaptive"]).jobs_added:
            break
    assert _rows(db_engine, "SELECT COUNT(*) FROM jobs j JOIN campaigns c ON c.id = j.campaign_id"
                            " WHERE c.name = 'adaptive' AND j.epochs = 12")[0][0] > 0
    _same(db_engine)
    _views_agree_with_the_jobs(db_engine)
    assert _rows(db_engine, "SELECT COUNT(*) FROM results")[0][0] > 0


def test_a_recount_rebuilds_what_the_deltas_lost(db_engine):
    from db.counts import recount

    Farm(db_engine, random.Random(5)).claim()
    with db_engine.begin() as conn:  # the aggregates damaged behind the triggers' back
        conn.execute(sa.text("DELETE FROM job_counts WHERE status = 'pending'"))
        conn.execute(sa.text("DELETE FROM result_counts"))
    with pytest.raises(AssertionError):
        _same(db_engine)
    recount(db_engine)
    _same(db_engine)


def test_the_upgrade_to_0007_counts_what_a_0006_database_holds(db_url):
    from db.engine import make_engine

    engine = make_engine(db_url)
    upgrade(engine, "0006")
    with engine.begin() as conn:  # rows as a 0006 farm left them
        conn.execute(sa.text(
            "INSERT INTO campaigns (name, profile_name, profile, epochs, repeats, seed, job_order,"
            " max_attempts, created_at) VALUES ('old', 'smoke', '{}', '[4, 12]', 1, 0, 'as-given', 3, 0)"))
        conn.execute(sa.text(
            "INSERT INTO cells (hash, matrix, ops, vertices, edges, flops) VALUES"
            " ('a', '[]', '[]', 2, 1, 100), ('b', '[]', '[]', 2, 1, 300)"))
        conn.execute(sa.text(
            "INSERT INTO jobs (campaign_id, cell_hash, epochs, repeat, seed, status, attempts, lease_node)"
            " VALUES"
            " (1, 'a', 4, 0, 1, 'pending', 0, NULL), (1, 'a', 12, 0, 1, 'running', 1, 'node'),"
            " (1, 'b', 4, 0, 2, 'running', 1, NULL), (1, 'b', 12, 0, 2, 'done', 2, 'node')"))
        conn.execute(sa.text(
            "INSERT INTO results (job_id, campaign_id, cell_hash, epochs, repeat, attempt, total_time,"
            " final_training_time, created_at) VALUES (4, 1, 'b', 12, 0, 2, 10.0, 8.0, 7200.5)"))
        conn.execute(sa.text("INSERT INTO job_counts (campaign_id, status, n, busy_seconds) VALUES"
                             " (1, 'done', 0, 42.0)"))  # 42 lease seconds, kept per campaign only
    upgrade(engine)
    _same(engine)
    assert _rows(engine, "SELECT running, claimed, pending, done, gpu_seconds FROM campaign_progress") == \
        [(1, 1, 1, 1, 42.0)]
    assert _rows(engine, "SELECT remaining_jobs, remaining_cost, done_cost FROM campaign_eta") == \
        [(3, 100 * 4 + 100 * 12 + 300 * 4, 300 * 12)]
    assert _rows(engine, "SELECT hour, jobs_done, training_seconds FROM hourly_throughput") == \
        [("1970-01-01 02:00", 1, 10.0)]
    assert _rows(engine, "SELECT enqueued_at FROM campaigns") == [(0.0,)]
    engine.dispose()
