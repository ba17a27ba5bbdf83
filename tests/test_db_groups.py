"""JobQueue.claim_groups: the repeats of a cell claimed together, on SQLite and PostgreSQL."""

from __future__ import annotations

import multiprocessing
import re
import threading
import time

import pytest
import sqlalchemy as sa

from db.dialect import POSTGRESQL, SQLITE
from db.engine import make_engine
from db.errors import UnknownCampaign
from db.migrate import upgrade
from db.queue import JobQueue
from farm.config import SMOKE
from nasfarm.campaigns import create_campaign
from tests.fixtures_db import fake_result, random_cells
from tests.test_db_views import _plan  # EXPLAIN of a rendered statement

PROFILE = SMOKE.to_dict()
UNIQUE_INDEX = "uq_jobs_campaign_id_cell_id_epochs_repeat"


def _campaign(engine, name="c", n_cells=3, seed=0, **kwargs):
    cells = random_cells(n_cells, seed=seed)
    kwargs.setdefault("epochs", (4, 12))
    kwargs.setdefault("repeats", 3)
    kwargs.setdefault("order", "as-given")  # ids follow (cell, epochs, repeat)
    create_campaign(engine, name, cells, profile=PROFILE, **kwargs)
    return cells


def _rows(engine, sql, **params):
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql), params)]


def _key(job):
    return (job.campaign, job.cell_hash, job.epochs)


def test_groups_are_the_repeats_of_one_cell_each_an_ordinary_claim(db_engine):
    cells = _campaign(db_engine)  # 3 cells x epochs {4, 12} x 3 repeats = 18 jobs
    queue = JobQueue(db_engine)
    groups = queue.claim_groups(2, "gpu-0")
    assert [[j.job_id for j in g] for g in groups] == [[1, 2, 3], [4, 5, 6]]
    assert [(g[0].cell_hash, g[0].epochs) for g in groups] == [(cells[0].hash, 4), (cells[0].hash, 12)]
    for group in groups:
        assert len({_key(j) for j in group}) == 1
        assert [j.repeat for j in group] == [0, 1, 2]
        assert len({j.seed for j in group}) == 3  # different repeats train from different seeds
        for job in group:
            assert job.attempt == 1 and job.max_attempts == 3 and job.checkpoint_location is None
            assert job.matrix == cells[0].matrix.tolist() and job.ops == list(cells[0].ops)
            assert job.campaign == "c" and job.profile == PROFILE
            assert [(e["kind"], e["attempt"], e["owner"]) for e in queue.history(job.job_id)] == [
                ("claim", 1, "gpu-0")
            ]
    tokens = [j.lease_token for g in groups for j in g]
    assert len(set(tokens)) == 6 and all(re.fullmatch(r"[0-9a-f]{32}", t) for t in tokens)
    table = _rows(db_engine, "SELECT id, status, lease_owner, lease_token, attempts FROM jobs"
                             " WHERE status <> 'pending' ORDER BY id")
    assert table == [(j.job_id, "running", "gpu-0", j.lease_token, 1) for g in groups for j in g]
    assert queue.counts()["running"] == 6 and queue.counts()["pending"] == 12
    # the queue runs dry: fewer groups than asked, then none
    assert [len(g) for g in queue.claim_groups(10, "gpu-1")] == [3, 3, 3, 3]
    assert queue.claim_groups(1, "gpu-1") == []


def test_arguments(db_engine):
    _campaign(db_engine, n_cells=1, epochs=(4,))
    queue = JobQueue(db_engine)
    with pytest.raises(ValueError, match="max_group must be at least 1"):
        queue.claim_groups(1, "w", max_group=0)
    assert queue.claim_groups(0, "w") == [] and queue.claim_groups(-1, "w") == []
    assert queue.claim_groups(1, "w", campaigns=[]) == []
    with pytest.raises(UnknownCampaign, match="nope"):
        queue.claim_groups(1, "w", campaigns=["nope"])
    assert queue.counts()["running"] == 0


def test_a_group_holds_only_the_runnable_pending_repeats_and_at_most_max_group(db_engine):
    # cell 0: jobs 1-5 (repeats 0-4), cell 1: jobs 6-10
    _campaign(db_engine, n_cells=2, epochs=(4,), repeats=5)
    queue = JobQueue(db_engine, backoff_base=1000, backoff_cap=1000)
    done, backing_off, running = queue.claim(3, "someone-else")  # repeats 0, 1, 2 of cell 0
    assert queue.complete(done.job_id, done.lease_token, fake_result(done))
    assert queue.fail(backing_off.job_id, backing_off.lease_token, "CUDA error", retryable=True)
    assert queue.job(backing_off.job_id)["status"] == "pending"  # but not before ~500-1000 s
    # cell 0 has repeats 3 and 4 left runnable; cell 1 has 5, of which max_group=3 go together
    groups = queue.claim_groups(3, "w", max_group=3)
    assert [[j.job_id for j in g] for g in groups] == [[4, 5], [6, 7, 8], [9, 10]]
    assert queue.job(running.job_id)["lease_owner"] == "someone-else"
    assert queue.claim_groups(1, "w") == []


def test_the_lead_is_always_in_its_group(db_engine):
    _campaign(db_engine, n_cells=2, epochs=(4,), repeats=5)  # cell 0: jobs 1-5, cell 1: 6-10
    with db_engine.begin() as conn:  # the last repeat of cell 1 jumps the queue
        conn.execute(sa.text("UPDATE jobs SET priority = 5 WHERE id = 10"))
    queue = JobQueue(db_engine)
    (group,) = queue.claim_groups(1, "w", max_group=3)
    assert [(j.job_id, j.repeat) for j in group] == [(6, 0), (7, 1), (10, 4)]
    (group,) = queue.claim_groups(1, "w", max_group=2)  # then the queue's order again
    assert [j.job_id for j in group] == [1, 2]


def test_each_job_of_a_group_lives_on_its_own(db_engine):
    _campaign(db_engine, n_cells=1, epochs=(4,))
    queue = JobQueue(db_engine, backoff_base=0)
    first, second, third = queue.claim_groups(1, "w")[0]
    for job in (first, second, third):
        assert queue.start_attempt(job.job_id, job.lease_token, node="n", resumed_from_epoch=0.0)
        assert queue.heartbeat(job.job_id, job.lease_token, step=3, epoch=0.5)
    assert not queue.heartbeat(second.job_id, first.lease_token)  # a token fences its own job only
    assert queue.complete(first.job_id, first.lease_token, fake_result(first))
    assert queue.fail(second.job_id, second.lease_token, "NaN loss", retryable=True)
    assert queue.release(third.job_id, third.lease_token, reason="SIGTERM")
    statuses = _rows(db_engine, "SELECT id, status, attempts FROM jobs ORDER BY id")
    assert statuses == [
        (first.job_id, "done", 1), (second.job_id, "pending", 1), (third.job_id, "pending", 0)
    ]
    # the two left come back together, each with its own attempt count
    (again,) = queue.claim_groups(1, "w2", lease_ttl_s=0.01)
    assert [(j.job_id, j.attempt) for j in again] == [(second.job_id, 2), (third.job_id, 1)]
    assert not queue.heartbeat(second.job_id, second.lease_token)  # the old lease is gone
    time.sleep(0.05)
    assert queue.reap() == 2  # the reaper takes them back one by one
    assert [e["kind"] for e in queue.history(second.job_id)] == ["claim", "start", "end", "claim", "reap"]


def test_max_group_one_claims_what_claim_would(db_engine):
    _campaign(db_engine, "a", n_cells=3, seed=1, repeats=2)  # jobs 1-12
    _campaign(db_engine, "b", n_cells=3, seed=2, repeats=2)  # jobs 13-24
    with db_engine.begin() as conn:
        conn.execute(sa.text("UPDATE jobs SET priority = 5 WHERE id IN (7, 20)"))
        conn.execute(sa.text("UPDATE jobs SET priority = 2 WHERE id IN (3, 16)"))
    queue = JobQueue(db_engine)
    for n, campaigns in ((5, None), (9, ["b", "a"]), (30, ["a"])):
        expected = queue.claim(n, "w", campaigns=campaigns)
        for job in expected:  # hand them back untouched (release restores pending, no backoff)
            assert queue.release(job.job_id, job.lease_token)
        groups = queue.claim_groups(n, "w", campaigns=campaigns, max_group=1)
        assert all(len(g) == 1 for g in groups)
        assert [g[0].job_id for g in groups] == [j.job_id for j in expected]
        assert [_key(g[0]) + (g[0].repeat,) for g in groups] == [_key(j) + (j.repeat,) for j in expected]
        for (job,) in groups:
            assert queue.release(job.job_id, job.lease_token)


def test_campaigns_are_served_in_the_order_given(db_engine):
    _campaign(db_engine, "a", n_cells=1, seed=1, epochs=(4,))
    _campaign(db_engine, "b", n_cells=1, seed=2, epochs=(4,))
    queue = JobQueue(db_engine)
    groups = queue.claim_groups(3, "w", campaigns=["b", "a"])
    assert [(g[0].campaign, len(g)) for g in groups] == [("b", 3), ("a", 3)]


def test_siblings_locked_by_another_claimer_are_skipped_not_waited_for(pg_url):
    engine = make_engine(pg_url)
    upgrade(engine)
    _campaign(engine, n_cells=1, epochs=(4,))  # jobs 1-3
    queue = JobQueue(engine)
    with engine.connect() as other:  # a claimer in the middle of its statement holds job 2
        other.execute(sa.text("SELECT id FROM jobs WHERE id = 2 FOR UPDATE"))
        groups: list = []
        claimer = threading.Thread(target=lambda: groups.append(queue.claim_groups(1, "w")))
        claimer.start()
        claimer.join(timeout=20)
        assert not claimer.is_alive(), "claim_groups waited for a locked sibling"
        other.rollback()
    assert [[j.job_id for j in g] for g in groups[0]] == [[1, 3]]
    assert [[j.job_id for j in g] for g in queue.claim_groups(1, "w")] == [[2]]
    engine.dispose()


# --- concurrency ------------------------------------------------------------------------------

def group_claimer(url: str, owner: str, ready, start, out) -> None:
    """Process body: claim groups until the queue is dry; report every group's jobs."""
    from db.errors import DatabaseUnavailable

    engine = make_engine(url)
    queue = JobQueue(engine)
    # Connect before the start (a fenced write to no job changes nothing): 300 jobs are claimed
    # in well under a second, so a process still connecting would find the queue drained.
    queue.heartbeat(0, "no-such-lease")
    ready.put(owner)
    start.wait()
    groups: list[list[tuple]] = []
    while True:
        try:
            claimed = queue.claim_groups(2, owner, max_group=3)
        except DatabaseUnavailable:  # SQLite busy beyond the timeout: try again
            continue
        if not claimed:
            break
        groups += [[(j.job_id, j.lease_token, j.cell_hash, j.epochs, j.repeat) for j in g] for g in claimed]
        # A claimer dispatches what it claimed before it claims again: without this pause one
        # process on a loaded machine could drain all 300 jobs before the others are scheduled.
        time.sleep(0.005)
    out.put((owner, groups))
    engine.dispose()


@pytest.mark.parametrize("db_url, processes", [("postgresql", 4), ("sqlite", 3)], indirect=["db_url"])
def test_concurrent_group_claimers_claim_every_job_exactly_once(db_engine, db_url, processes):
    _campaign(db_engine, "race", n_cells=100, seed=7, epochs=(4,))  # 300 jobs
    all_ids = {r[0] for r in _rows(db_engine, "SELECT id FROM jobs")}
    assert len(all_ids) == 300

    context = multiprocessing.get_context("spawn")
    ready, start, out = context.Queue(), context.Event(), context.Queue()
    workers = [
        context.Process(target=group_claimer, args=(db_url, f"claimer-{i}", ready, start, out))
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    for _ in workers:
        ready.get(timeout=120)
    start.set()  # all claim at the same moment
    reports = dict(out.get(timeout=120) for _ in workers)
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0

    assert sum(1 for owner_groups in reports.values() if owner_groups) >= 2  # the work was shared
    groups = [group for owner_groups in reports.values() for group in owner_groups]
    claimed = [job[0] for group in groups for job in group]
    assert len(claimed) == len(set(claimed)) == len(all_ids)  # nobody claimed a job twice
    assert set(claimed) == all_ids  # and none was left behind
    for group in groups:
        assert 1 <= len(group) <= 3
        assert len({(cell_hash, epochs) for _, _, cell_hash, epochs, _ in group}) == 1
        assert [repeat for *_, repeat in group] == sorted({repeat for *_, repeat in group})
    leases = {(job[0], job[1]) for group in groups for job in group}
    owners = {job_id: owner for owner, og in reports.items() for group in og for job_id, *_ in group}
    table = _rows(db_engine, "SELECT id, lease_token, lease_owner, status, attempts FROM jobs")
    assert {(i, token) for i, token, *_ in table} == leases  # every lease is the one reported
    assert all(status == "running" and attempts == 1 and owners[i] == owner
               for i, _, owner, status, attempts in table)
    events = _rows(db_engine, "SELECT kind, COUNT(*), COUNT(DISTINCT job_id) FROM job_events GROUP BY kind")
    assert events == [("claim", 300, 300)]  # one claim event per job


# --- the plan -------------------------------------------------------------------------------------

def _sibling_scan(plan: str) -> tuple[str, str]:
    """The plan's line reading ``jobs sibling`` and its condition (the line below it)."""
    lines = plan.splitlines()
    (at,) = [i for i, line in enumerate(lines) if "on jobs sibling" in line]
    return lines[at], lines[at + 1] if at + 1 < len(lines) else ""


def test_sqlite_finds_the_siblings_through_the_unique_index(sqlite_url):
    engine = make_engine(sqlite_url)
    upgrade(engine)
    _campaign(engine, n_cells=20)
    statement = SQLITE.render(SQLITE.claim_group, campaign_filter="")
    with engine.connect() as conn:
        plan = [r[3] for r in conn.execute(sa.text("EXPLAIN QUERY PLAN " + statement.text),
                                           {"owner": "w", "max_group": 3, "lease_ttl": 60.0})]
    # the UNIQUE constraint's index (SQLite names it itself), searched on the cell's three columns
    assert ("SEARCH sibling USING INDEX sqlite_autoindex_jobs_1"
            " (campaign_id=? AND cell_id=? AND epochs=?)") in plan, plan
    engine.dispose()


def test_the_siblings_are_found_through_the_unique_index(pg_url):
    engine = make_engine(pg_url)
    upgrade(engine)
    _campaign(engine, "small", n_cells=2, epochs=(4,))
    with engine.begin() as conn:
        # A second campaign of 60,000 cells x 3 repeats, 99% of them done: a running farm.
        conn.execute(sa.text(
            "INSERT INTO campaigns (id, name, profile_name, profile, epochs, repeats, seed, job_order,"
            " max_attempts, created_at) SELECT 2, 'big', profile_name, profile, epochs, repeats, seed,"
            " job_order, max_attempts, created_at FROM campaigns WHERE name = 'small'"
        ))
        conn.execute(sa.text(
            "INSERT INTO cells (hash, matrix, ops, vertices, edges)"
            " SELECT md5(i::text), '[]', '[]', 0, 0 FROM generate_series(1, 60000) AS i"
        ))
        conn.execute(sa.text(
            "INSERT INTO jobs (campaign_id, cell_id, epochs, repeat, seed, status)"
            " SELECT 2, cl.id, 4, r, i, CASE WHEN i % 100 = 0 THEN 'pending' ELSE 'done' END"
            " FROM generate_series(1, 60000) AS i JOIN cells cl ON cl.hash = md5(i::text),"
            " generate_series(0, 2) AS r"
        ))
        conn.execute(sa.text("ANALYZE jobs"))
    statements = [
        (POSTGRESQL.render(POSTGRESQL.claim_group, campaign_filter=""), {}),
        (POSTGRESQL.render(POSTGRESQL.claim_group, campaign_filter="AND campaign_id = :campaign_id"),
         {"campaign_id": 2}),
    ]
    with engine.begin() as conn:
        for statement, extra in statements:
            plan = _plan(conn, statement, {"owner": "w", "max_group": 3, "lease_ttl": 60.0, **extra})
            scan, condition = _sibling_scan(plan)
            assert f"Index Scan using {UNIQUE_INDEX} on jobs sibling" in scan, plan
            # looked up by all three columns of the lead's cell (casts and brackets aside)
            by_cell = "campaign_id = lead.campaign_id AND cell_id = lead.cell_id AND epochs = lead.epochs"
            assert by_cell in re.sub(r"::text|[()]", "", condition), plan
            assert "Seq Scan on jobs" not in plan, plan
        # The check can fail: without the unique index the siblings are searched for among all
        # the campaign's pending jobs (its claim index, filtered), not looked up by cell.
        conn.execute(sa.text(f"ALTER TABLE jobs DROP CONSTRAINT {UNIQUE_INDEX}"))
        plan = _plan(conn, statements[0][0], {"owner": "w", "max_group": 3, "lease_ttl": 60.0})
        scan, condition = _sibling_scan(plan)
        assert UNIQUE_INDEX not in scan and "cell_id" not in condition, plan
        conn.rollback()
    queue = JobQueue(engine)
    assert [[j.repeat for j in g] for g in queue.claim_groups(2, "w", campaigns=["small"])] == [
        [0, 1, 2], [0, 1, 2]
    ]
    engine.dispose()
