"""Adaptive campaigns in the database: the promotion decision, its record, and its guards, on SQLite
and PostgreSQL (``db_engine`` is parametrised over both; NASFARM_REQUIRE_POSTGRES=1 makes PostgreSQL
mandatory).

The expected promotions are computed here from the accuracies the tests give each job, with plain
Python (mean over repeats, sort by mean descending then hash, ceil(f x n) by integer arithmetic),
never read back from the code under test.
"""

from __future__ import annotations

import multiprocessing
from collections import defaultdict

import pytest
import sqlalchemy as sa

from db.errors import CampaignConflict
from db.queue import JobQueue
from db.views import read_view
from farm.adaptive import PromotionRule
from farm.config import SMOKE
from nasfarm.campaigns import create_campaign, job_seed
from tests.fixtures_db import fake_result, random_cells

BUDGETS = (4, 12, 36)


def _adaptive(engine, name: str, n_cells: int, *, repeats: int = 2, fraction: str = "25%",
              mode: str = "rounds", seed: int = 1, cells=None):
    cells = cells if cells is not None else random_cells(n_cells, seed=seed)
    create_campaign(engine, name, cells, epochs=BUDGETS, repeats=repeats, profile=SMOKE.to_dict(),
                    order="as-given", promote=PromotionRule.parse(fraction, mode))
    return [c.hash for c in cells]


def _accuracy(cell_hash: str, epochs: int, repeat: int) -> float:
    """Distinct-ish accuracies per (cell, budget, repeat), with deliberate ties between cells."""
    return round(0.5 + (int(cell_hash[:6], 16) % 7) / 20 + 0.01 * repeat + epochs / 1000, 6)


def _finish(queue: JobQueue, *, epochs: int, accuracy=_accuracy, fail: set[str] = frozenset(),
            only: set[str] | None = None) -> dict[tuple[str, int], float]:
    """Complete the pending jobs at ``epochs`` (failing those of cells in ``fail``, leaving those not
    in ``only``); returns (cell, repeat) -> accuracy stored."""
    stored = {}
    jobs = [j for j in queue.claim(10_000, "test-owner") if j.epochs == epochs]
    for job in jobs:
        if only is not None and job.cell_hash not in only:
            assert queue.release(job.job_id, job.lease_token)
            continue
        if job.cell_hash in fail:
            assert queue.fail(job.job_id, job.lease_token, "boom", retryable=False)
            continue
        value = accuracy(job.cell_hash, job.epochs, job.repeat)
        assert queue.complete(job.job_id, job.lease_token, fake_result(job, accuracy=value))
        stored[(job.cell_hash, job.repeat)] = value
    return stored


def _expected(stored: dict[tuple[str, int], float], numerator: int,
              denominator: int) -> tuple[list[str], int]:
    """(cells ranked best first, how many a round promotes), computed independently."""
    values = defaultdict(list)
    for (cell, _), value in stored.items():
        values[cell].append(value)
    means = {cell: sum(v) / len(v) for cell, v in values.items()}
    ranked = sorted(means, key=lambda h: (-means[h], h))
    n = len(ranked)
    return ranked, (n * numerator + denominator - 1) // denominator


def _rows(engine, sql: str, **params) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql), params)]


def test_a_complete_budget_promotes_exactly_ceil_f_n_with_its_evidence(db_engine):
    hashes = _adaptive(db_engine, "ad", 10, repeats=2, fraction="25%")
    queue = JobQueue(db_engine, backoff_base=0)
    assert _rows(db_engine, "SELECT DISTINCT epochs FROM jobs") == [(4,)]  # the first budget only
    stored = _finish(queue, epochs=4)
    ranked, k = _expected(stored, 1, 4)
    assert len(ranked) == 10 and k == 3  # ceil(2.5)
    # the accuracies tie between cells (7 levels for 10 cells): the hash must break them
    assert len({round(sum(stored[(h, r)] for r in range(2)) / 2, 9) for h in hashes}) < 10

    done = queue.promote_ready_budgets(["ad"], decided_by="tester")
    decided = [(d.epochs, d.next_epochs, d.cells, d.cells_ranked, d.promoted, d.jobs_added)
               for d in done.rounds]
    assert decided == [(4, 12, 10, 10, 3, 6)]
    assert done.can_add_jobs and done.waiting == ["ad"]  # 12 epochs now runs

    promoted = _rows(db_engine, "SELECT cell_hash, cell_rank, cells_ranked, threshold,"
                                " mean_validation_accuracy, repeats_finished, kind, decided_by, next_epochs"
                                " FROM promotions ORDER BY cell_rank")
    means = {h: (stored[(h, 0)] + stored[(h, 1)]) / 2 for h in hashes}
    assert [p[0] for p in promoted] == ranked[:3]
    assert [p[1] for p in promoted] == [1, 2, 3]
    for cell, _, n, threshold, mean, repeats, kind, who, next_epochs in promoted:
        assert (n, repeats, kind, who, next_epochs) == (10, 2, "round", "tester", 12)
        assert mean == pytest.approx(means[cell]) and threshold == pytest.approx(means[ranked[2]])
    assert _rows(db_engine, "SELECT cells, cells_ranked, promoted, decided_by FROM promotion_rounds"
                            " WHERE epochs = 4") == [(10, 10, 3, "tester")]
    # every repeat of each promoted cell at 12 epochs, with the seed that repeat has everywhere
    next_jobs = _rows(db_engine, "SELECT cl.hash, j.repeat, j.seed, j.status FROM jobs j"
                                 " JOIN cells cl ON cl.id = j.cell_id WHERE j.epochs = 12"
                                 " ORDER BY cl.hash, j.repeat")
    assert next_jobs == sorted((h, r, job_seed(0, h, r), "pending") for h in ranked[:3] for r in range(2))
    assert queue.counts(["ad"])["pending"] == 6  # the new jobs are counted

    # Again: nothing more is decided or enqueued.
    again = queue.promote_ready_budgets(["ad"], decided_by="someone-else")
    assert (again.rounds, again.jobs_added) == ([], 0)
    assert _rows(db_engine, "SELECT COUNT(*) FROM promotions") == [(3,)]
    # and the database itself refuses a second promotion of a cell at a budget
    with pytest.raises(sa.exc.IntegrityError), db_engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO promotions (campaign_id, epochs, next_epochs, cell_hash, mean_validation_accuracy,"
            " repeats_finished, cell_rank, cells_ranked, threshold, kind, decided_at)"
            " SELECT campaign_id, epochs, next_epochs, cell_hash, 1.0, 2, 1, 10, 1.0, 'round', 0.0"
            " FROM promotions WHERE cell_rank = 1"))


def test_no_decision_until_every_job_of_the_budget_is_finished(db_engine):
    hashes = _adaptive(db_engine, "ad", 8)
    queue = JobQueue(db_engine, backoff_base=0)
    _finish(queue, epochs=4, only=set(hashes[:-1]))  # the last cell's jobs go back to pending
    done = queue.promote_ready_budgets(["ad"])
    assert done.rounds == [] and done.waiting == ["ad"] and done.can_add_jobs
    assert _rows(db_engine, "SELECT COUNT(*) FROM promotions") == [(0,)]
    assert _rows(db_engine, "SELECT COUNT(*) FROM jobs WHERE epochs > 4") == [(0,)]
    _finish(queue, epochs=4)
    assert [d.promoted for d in queue.promote_ready_budgets(["ad"]).rounds] == [2]  # ceil(8 / 4)


def test_failed_cells_are_not_ranked_and_cancelled_jobs_hold_the_round(db_engine):
    hashes = _adaptive(db_engine, "ad", 9, fraction="0.5")
    queue = JobQueue(db_engine, backoff_base=0)
    dead = hashes[0]
    stored = _finish(queue, epochs=4, fail={dead}, only=set(hashes[:-1]))
    # the last cell's two jobs: cancelled -> the round is held, nothing decided
    last_jobs = [r[0] for r in _rows(db_engine, "SELECT id FROM jobs WHERE cell_id ="
                                                " (SELECT id FROM cells WHERE hash = :h)", h=hashes[-1])]
    assert queue.cancel(job_ids=last_jobs) == 2
    held = queue.promote_ready_budgets(["ad"])
    assert held.rounds == [] and held.held == [("ad", 4, 2)] and not held.can_add_jobs
    assert queue.retry("ad", failed_only=False) == 4  # the dead cell's failed jobs come back too
    stored.update(_finish(queue, epochs=4, fail={dead}))
    ranked, k = _expected(stored, 1, 2)
    assert dead not in ranked and len(ranked) == 8 and k == 4
    decided = queue.promote_ready_budgets(["ad"]).rounds
    assert [(d.cells, d.cells_ranked, d.promoted) for d in decided] == [(9, 8, 4)]
    by_rank = _rows(db_engine, "SELECT cell_hash FROM promotions ORDER BY cell_rank")
    assert [r[0] for r in by_rank] == ranked[:4]


def test_later_budgets_and_the_end_of_the_campaign(db_engine):
    _adaptive(db_engine, "ad", 12, repeats=1, fraction="1/3")
    queue = JobQueue(db_engine, backoff_base=0)
    _finish(queue, epochs=4)
    assert [d.promoted for d in queue.promote_ready_budgets().rounds] == [4]
    stored = _finish(queue, epochs=12)
    ranked, k = _expected(stored, 1, 3)
    second = queue.promote_ready_budgets()
    assert [(d.epochs, d.cells_ranked, d.promoted) for d in second.rounds] == [(12, 4, 2)] and k == 2
    assert sorted(r[0] for r in _rows(db_engine, "SELECT cl.hash FROM jobs j JOIN cells cl"
                                                 " ON cl.id = j.cell_id WHERE j.epochs = 36")) \
        == sorted(ranked[:2])
    # every round is decided: 36 epochs runs, but no promotion can add a job any more
    last = queue.promote_ready_budgets()
    assert not last.can_add_jobs and queue.counts()["pending"] == 2
    _finish(queue, epochs=36)
    final = queue.promote_ready_budgets()  # the last budget promotes nowhere: the campaign is over
    assert (final.rounds, final.jobs_added, final.can_add_jobs) == ([], 0, False)
    assert _rows(db_engine, "SELECT epochs, COUNT(*) FROM jobs GROUP BY epochs ORDER BY epochs") \
        == [(4, 12), (12, 4), (36, 2)]


def test_the_same_results_always_give_the_same_decision(db_engine):
    """A campaign decided again from the same results (another campaign, the same cells) promotes
    the same cells with the same evidence: rounds depend on the results alone."""
    cells = random_cells(16, seed=5)
    decided = {}
    for name in ("first", "second"):
        _adaptive(db_engine, name, 0, cells=cells, fraction="25%")
        queue = JobQueue(db_engine, backoff_base=0)
        _finish(queue, epochs=4)
        queue.promote_ready_budgets([name])
        decided[name] = _rows(db_engine, "SELECT p.cell_hash, p.cell_rank, p.threshold FROM promotions p"
                                         " JOIN campaigns c ON c.id = p.campaign_id WHERE c.name = :n"
                                         " ORDER BY p.cell_rank", n=name)
    assert decided["first"] == decided["second"] and len(decided["first"]) == 4


def test_cells_join_an_adaptive_campaign_only_before_its_first_promotion(db_engine):
    cells = random_cells(6, seed=2)
    _adaptive(db_engine, "ad", 0, cells=cells[:4])
    _adaptive(db_engine, "ad", 0, cells=cells[:5])  # no decision yet: the fifth cell joins
    assert _rows(db_engine, "SELECT COUNT(DISTINCT cell_id) FROM jobs") == [(5,)]
    queue = JobQueue(db_engine, backoff_base=0)
    _finish(queue, epochs=4)
    queue.promote_ready_budgets(["ad"])
    with pytest.raises(CampaignConflict, match="recorded promotions"):
        _adaptive(db_engine, "ad", 0, cells=cells)
    _adaptive(db_engine, "ad", 0, cells=cells[:5])  # the same cells again: nothing to add, fine
    with pytest.raises(CampaignConflict, match="promote"):  # another fraction is another campaign
        _adaptive(db_engine, "ad", 0, cells=cells[:5], fraction="50%")


def test_async_mode_promotes_as_results_arrive_and_tops_up_at_the_end(db_engine):
    hashes = _adaptive(db_engine, "asha", 8, repeats=2, fraction="25%", mode="async")
    queue = JobQueue(db_engine, backoff_base=0)
    first = set(hashes[:4])
    stored = _finish(queue, epochs=4, only=first)
    early = queue.promote_ready_budgets(["asha"], decided_by="early")
    ranked, _ = _expected(stored, 1, 4)
    # floor(4 / 4) = 1 of the 4 finished cells, with every repeat, while the others still wait
    assert (early.promoted_early, early.jobs_added, early.rounds) == (1, 2, [])
    assert _rows(db_engine, "SELECT cell_hash, kind, cells_ranked FROM promotions") \
        == [(ranked[0], "async", 4)]
    assert _rows(db_engine, "SELECT COUNT(*) FROM jobs WHERE epochs = 12 AND cell_id ="
                            " (SELECT id FROM cells WHERE hash = :h)", h=ranked[0]) \
        == [(2,)]
    # nothing new finished: the next pass does nothing (and says the campaign may still promote)
    assert queue.promote_ready_budgets(["asha"]).can_add_jobs
    stored.update(_finish(queue, epochs=4))
    final = queue.promote_ready_budgets(["asha"], decided_by="final")
    everyone, k = _expected(stored, 1, 4)
    assert k == 2
    promoted = dict(_rows(db_engine, "SELECT cell_hash, kind FROM promotions WHERE epochs = 4"))
    assert set(everyone[:2]) <= set(promoted) and promoted[ranked[0]] == "async"
    assert [(d.cells_ranked, d.promoted) for d in final.rounds] == [(8, len(promoted))]
    assert _rows(db_engine, "SELECT COUNT(*) FROM jobs WHERE epochs = 12") == [(2 * len(promoted),)]


def test_the_budget_view_and_compute_against_the_full_grid(db_engine):
    hashes = _adaptive(db_engine, "ad", 8, repeats=2, fraction="25%")
    queue = JobQueue(db_engine, backoff_base=0)
    stored = _finish(queue, epochs=4, only=set(hashes[:6]))
    ranked, _ = _expected(stored, 1, 4)
    flops = dict(_rows(db_engine, "SELECT hash, flops FROM cells"))
    budgets = {r["epochs"]: r for r in read_view(db_engine, "campaign_budgets", ["ad"])}
    assert sorted(budgets) == list(BUDGETS)
    b4 = budgets[4]
    assert (b4["cells"], b4["jobs"], b4["pending"], b4["done"], b4["cells_finished"], b4["cells_ranked"],
            b4["promoted"], b4["decided"]) == (8, 16, 4, 12, 6, 6, 0, 0)
    means = {h: (stored[(h, 0)] + stored[(h, 1)]) / 2 for h in hashes[:6]}
    assert b4["threshold"] == pytest.approx(means[ranked[1]])  # ceil(6 / 4) = 2nd best so far
    assert budgets[12]["cells"] == 0 and budgets[12]["threshold"] is None
    grid = {e: sum(flops[h] for h in hashes) * 2 * e for e in BUDGETS}
    for epochs in BUDGETS:
        assert float(budgets[epochs]["grid_cost"]) == pytest.approx(grid[epochs])
    assert float(b4["done_cost"]) == pytest.approx(sum(flops[h] * 4 for h, _ in stored))

    _finish(queue, epochs=4)
    queue.promote_ready_budgets(["ad"])
    promoted = [r[0] for r in _rows(db_engine, "SELECT cell_hash FROM promotions")]
    budgets = {r["epochs"]: r for r in read_view(db_engine, "campaign_budgets", ["ad"])}
    assert (budgets[4]["decided"], budgets[4]["promoted"], budgets[12]["cells"], budgets[12]["pending"]) \
        == (1, 2, 2, 4)
    (compute,) = read_view(db_engine, "campaign_compute", ["ad"])
    done = sum(flops[h] for h in hashes) * 2 * 4
    enqueued = done + sum(flops[h] for h in promoted) * 2 * 12
    assert float(compute["done_cost"]) == pytest.approx(done)
    assert float(compute["enqueued_cost"]) == pytest.approx(enqueued)
    assert float(compute["grid_cost"]) == pytest.approx(sum(grid.values()))
    assert compute["done_fraction_of_grid"] == pytest.approx(done / sum(grid.values()))
    assert (compute["cells"], compute["cells_at_last_budget"]) == (8, 0)


def test_a_plain_campaign_is_never_touched(db_engine):
    create_campaign(db_engine, "plain", random_cells(3, seed=4), epochs=(4, 12), repeats=1,
                    profile=SMOKE.to_dict())
    queue = JobQueue(db_engine, backoff_base=0)
    for job in queue.claim(100, "o"):
        queue.complete(job.job_id, job.lease_token, fake_result(job))
    result = queue.promote_ready_budgets()
    assert (result.rounds, result.jobs_added, result.can_add_jobs) == ([], 0, False)
    assert read_view(db_engine, "campaign_budgets") == []


# --- two deciders at once ----------------------------------------------------------------------------

def decide(url: str, name: str, owner: str, start, out) -> None:
    """Process body: at the signal, decide what the campaign can promote; report what it did."""
    from db.engine import make_engine

    engine = make_engine(url)
    queue = JobQueue(engine)
    start.wait()
    rounds, added = [], 0
    for _ in range(3):
        result = queue.promote_ready_budgets([name], decided_by=owner)
        rounds += [(d.epochs, d.promoted) for d in result.rounds]
        added += result.jobs_added
    out.put((owner, rounds, added))
    engine.dispose()


@pytest.mark.parametrize("deciders", [2, 6])
def test_concurrent_deciders_promote_once(db_engine, db_url, deciders):
    hashes = _adaptive(db_engine, "race", 300, repeats=1, fraction="25%", seed=9)
    queue = JobQueue(db_engine, backoff_base=0)
    stored = _finish(queue, epochs=4)
    ranked, k = _expected(stored, 1, 4)
    assert k == 75 and len(hashes) == 300

    context = multiprocessing.get_context("spawn")
    start, out = context.Event(), context.Queue()
    processes = [context.Process(target=decide, args=(db_url, "race", f"decider-{i}", start, out))
                 for i in range(deciders)]
    for process in processes:
        process.start()
    start.set()  # all decide at the same moment
    reports = [out.get(timeout=300) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0

    decisions = [(owner, rounds) for owner, rounds, _ in reports if rounds]
    assert len(decisions) == 1 and decisions[0][1] == [(4, 75)]  # one decider decided, once
    assert sum(added for _, _, added in reports) == 75
    winner = decisions[0][0]
    assert _rows(db_engine, "SELECT decided_by, promoted FROM promotion_rounds WHERE epochs = 4") \
        == [(winner, 75)]
    assert _rows(db_engine, "SELECT COUNT(*), COUNT(DISTINCT cell_hash), MIN(decided_by), MAX(decided_by)"
                            " FROM promotions") == [(75, 75, winner, winner)]
    assert sorted(r[0] for r in _rows(db_engine, "SELECT cell_hash FROM promotions")) == sorted(ranked[:75])
    assert _rows(db_engine, "SELECT COUNT(*), COUNT(DISTINCT cell_id) FROM jobs WHERE epochs = 12") \
        == [(75, 75)]
    assert queue.counts(["race"]) == {"pending": 75, "running": 0, "done": 300, "failed": 0, "cancelled": 0}
