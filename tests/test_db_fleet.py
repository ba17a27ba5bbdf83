"""The farm's records beside the jobs, on a real SQLite file and a real PostgreSQL database: a dead
driver's leases taken back at once, environment releases that charge nothing, error signatures and
fault kinds in the history, node health in the worker_health view."""

from __future__ import annotations

import time

import sqlalchemy as sa

from db.queue import JobQueue
from db.views import read_view
from farm.config import SMOKE
from nasfarm.campaigns import create_campaign
from tests.fixtures_db import random_cells


def _campaign(engine, name="fleet", n_cells=3):
    create_campaign(engine, name, random_cells(n_cells, seed=7), epochs=(4,), repeats=1,
                    profile=SMOKE.to_dict(), order="as-given")


def _job(engine, job_id):
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT * FROM jobs WHERE id = :i"), {"i": job_id}).mappings().one())


def test_a_dead_drivers_leases_come_back_at_once_and_unstarted_ones_uncharged(db_engine):
    _campaign(db_engine)
    queue = JobQueue(db_engine, backoff_base=1000)
    queue.register_driver("dead", heartbeat_s=0.05)
    started, prefetched = queue.claim(2, "dead", lease_ttl_s=3600)  # leases far from expiring
    assert queue.start_attempt(started.job_id, started.lease_token, node="host/abc/pid1")
    queue.register_driver("alive", heartbeat_s=60)
    assert queue.reap_dead_drivers("alive", grace_s=0) == 0  # "dead" is still fresh
    time.sleep(0.3)  # > 3 missed beats of 0.05 s
    assert queue.reap() == 0  # the TTL alone would wait an hour
    assert queue.reap_dead_drivers("alive", grace_s=0) == 2
    a, b = _job(db_engine, started.job_id), _job(db_engine, prefetched.job_id)
    assert (a["status"], a["attempts"], a["lease_token"]) == ("pending", 1, None)
    assert (b["status"], b["attempts"]) == ("pending", 0)
    assert "no attempt charged" in b["last_error"] and "driver dead is gone" in a["last_error"]
    assert b["not_before"] <= time.time() + 1  # an attempt never made waits for no backoff
    assert queue.reap_dead_drivers("alive", grace_s=0) == 0  # nothing left; its own never reaped
    mine = queue.claim(1, "alive", lease_ttl_s=3600)[0]
    queue.retire_driver("alive")
    queue.register_driver("third", heartbeat_s=60)
    assert queue.reap_dead_drivers("third", grace_s=0) == 1  # a driver that stopped holds nothing
    assert _job(db_engine, mine.job_id)["status"] == "pending"


def test_an_environment_release_charges_nothing_and_backs_off(db_engine):
    _campaign(db_engine, n_cells=1)
    queue = JobQueue(db_engine, backoff_base=100)
    job = queue.claim(1, "d")[0]
    assert queue.release(job.job_id, job.lease_token, reason="environment",
                         error="DataError: CIFAR-10 not found in /data", signature="DataError: <path>",
                         backoff=True)
    row = _job(db_engine, job.job_id)
    assert (row["status"], row["attempts"], row["preemptions"]) == ("pending", 0, 0)
    assert row["error_signature"] == "DataError: <path>" and row["not_before"] > time.time() + 30
    (event,) = [e for e in queue.history(job.job_id) if e["kind"] == "release"]
    assert event["fault"] == "environment" and "CIFAR-10 not found" in event["error"]
    assert not queue.release(job.job_id, job.lease_token, reason="environment", error="again")


def test_failures_record_signature_fault_and_node(db_engine):
    _campaign(db_engine, n_cells=2)
    queue = JobQueue(db_engine, backoff_base=0)
    first = queue.claim(1, "d")[0]
    assert queue.fail(first.job_id, first.lease_token, "KeyError: 'x'\n  File ...", retryable=True,
                      signature="KeyError: 'x'", fault="unknown", node="hostA/n1/pid3")
    again = queue.claim(1, "d")[0]
    assert again.job_id == first.job_id
    assert queue.fail(again.job_id, again.lease_token, "KeyError: 'x'", retryable=False,
                      signature="KeyError: 'x'", fault="unknown", node="hostB/n2/pid9")
    assert queue.failure_nodes(first.job_id) == {"hostA/n1/pid3", "hostB/n2/pid9"}
    (failure,) = read_view(db_engine, "job_failures")
    assert (failure["status"], failure["error_signature"]) == ("failed", "KeyError: 'x'")
    assert queue.failed_among([first.job_id]) == 1
    assert queue.failed_among([first.job_id + 1, first.job_id + 2]) == 0 and queue.failed_among([]) == 0


def test_node_health_shows_in_worker_health(db_engine):
    queue = JobQueue(db_engine)
    queue.register_driver("drv", heartbeat_s=5)
    queue.record_node_health("drv", "node-1", "host-1/node-1", "unhealthy", 1, "OSError: disk full")
    queue.record_node_health("drv", "node-1", "host-1/node-1", "drained", 3, "OSError: disk full")
    queue.record_node_health("drv", "node-2", "host-2/node-2", "healthy", 0, None)
    rows = {r["node"]: r for r in read_view(db_engine, "worker_health")}
    assert set(rows) == {"host-1/node-1", "host-2/node-2"}
    assert (rows["host-1/node-1"]["state"], rows["host-1/node-1"]["environment_faults"]) == ("drained", 3)
    assert rows["host-1/node-1"]["driver_alive"] == 1
    queue.retire_driver("drv")
    assert {r["driver_alive"] for r in read_view(db_engine, "worker_health")} == {0}


def test_record_event_is_fenced(db_engine):
    _campaign(db_engine, n_cells=1)
    queue = JobQueue(db_engine)
    job = queue.claim(1, "d")[0]
    assert queue.record_event(job.job_id, job.lease_token, "ckpt_quarantine", error="moved aside to X")
    assert not queue.record_event(job.job_id, "not-the-token", "ckpt_quarantine")
    kinds = [e["kind"] for e in queue.history(job.job_id)]
    assert kinds == ["claim", "ckpt_quarantine"]
