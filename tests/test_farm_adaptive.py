"""An adaptive campaign end to end: real ``nasfarm run`` processes on a real Ray cluster and
PostgreSQL (tests/fixtures_farm.py), the smoke profile on synthetic CIFAR-format data.

The expected promotions are recomputed here from the results table (mean final validation accuracy
per cell over its repeats, best first, ties by hash, ceil(f x n)), independently of db.promotions.
"""

from __future__ import annotations

import signal
from collections import Counter, defaultdict

import pytest

from farm.adaptive import PromotionRule

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

FAST_RETRY = ("--retry-backoff", "0.5")
BUDGETS = (1, 2, 3)
CELLS, REPEATS = 6, 2


def _expected_promotions(farm, epochs: int) -> tuple[list[str], float]:
    """(the cells a round at ``epochs`` promotes, its threshold), from the stored results."""
    values = defaultdict(list)
    rows = farm.query("SELECT cell_hash, final_validation_accuracy FROM results WHERE epochs = :e", e=epochs)
    for row in rows:
        values[row["cell_hash"]].append(row["final_validation_accuracy"])
    means = {h: sum(v) / len(v) for h, v in values.items()}
    ranked = sorted(means, key=lambda h: (-means[h], h))
    k = -(-len(ranked) // 2)  # ceil(50% x n)
    return ranked[:k], means[ranked[k - 1]]


def test_an_adaptive_campaign_promotes_in_rounds_and_resumes_after_sigterm_without_deciding_again(farm):
    hashes = farm.create_campaign("adaptive", CELLS, epochs=BUDGETS, repeats=REPEATS,
                                  promote=PromotionRule.parse("50%"))
    run = farm.start_run("--campaign", "adaptive", *FAST_RETRY)
    # The first round is decided by the run itself; stop it while the promoted cells train.
    farm.wait(lambda: farm.query("SELECT id FROM jobs WHERE epochs = 2 AND status = 'running'"),
              timeout=300, what="a promoted cell's job running at 2 epochs")
    run.send_signal(signal.SIGTERM)
    first = farm.finish(run, timeout=90)
    assert first["returncode"] == 128 + signal.SIGTERM, first["stderr"][-3000:]
    round_one = farm.query("SELECT * FROM promotion_rounds WHERE epochs = 1")
    promoted_one = farm.query("SELECT * FROM promotions WHERE epochs = 1 ORDER BY cell_rank")
    assert round_one[0]["decided_by"] == first["owner"]
    assert {j["status"] for j in farm.jobs()} - {"done", "pending"} == set()  # released, not running

    second = farm.finish(farm.start_run("--campaign", "adaptive", *FAST_RETRY), timeout=300)
    assert second["returncode"] == 0, second["stderr"][-3000:]

    # The first run's decision stands as recorded; the second run decided the next round.
    assert farm.query("SELECT * FROM promotion_rounds WHERE epochs = 1") == round_one
    assert farm.query("SELECT * FROM promotions WHERE epochs = 1 ORDER BY cell_rank") == promoted_one
    rounds = {r["epochs"]: r for r in farm.query("SELECT * FROM promotion_rounds")}
    assert rounds[2]["decided_by"] == second["owner"] and rounds[3]["decided_at"] is None  # last budget
    # ... and both are what the results say, with their evidence.
    trained = {1: hashes}
    for epochs, next_epochs in ((1, 2), (2, 3)):
        cells, threshold = _expected_promotions(farm, epochs)
        recorded = farm.query("SELECT * FROM promotions WHERE epochs = :e ORDER BY cell_rank", e=epochs)
        assert [p["cell_hash"] for p in recorded] == cells
        assert {(p["next_epochs"], p["cells_ranked"], p["kind"]) for p in recorded} \
            == {(next_epochs, len(trained[epochs]), "round")}
        assert all(p["threshold"] == pytest.approx(threshold) for p in recorded)
        assert (rounds[epochs]["cells_ranked"], rounds[epochs]["promoted"]) \
            == (len(trained[epochs]), len(cells))
        trained[next_epochs] = cells
    assert [len(trained[e]) for e in BUDGETS] == [6, 3, 2]

    # No job enqueued twice: exactly every repeat of the trained cells at each budget, each done once.
    jobs = farm.jobs()
    assert sorted((j["cell_hash"], j["epochs"], j["repeat"]) for j in jobs) \
        == sorted((h, e, r) for e in BUDGETS for h in trained[e] for r in range(REPEATS))
    assert {j["status"] for j in jobs} == {"done"}
    assert sorted(r["job_id"] for r in farm.results()) == sorted(j["id"] for j in jobs)
    done_events = Counter(e["job_id"] for e in farm.events("end") if e["status"] == "done")
    assert set(done_events.values()) == {1}

    # The SQL view tells the same story.
    view = {r["epochs"]: r for r in farm.query("SELECT * FROM campaign_budgets WHERE campaign = 'adaptive'")}
    for epochs in BUDGETS:
        row = view[epochs]
        n = len(trained[epochs])
        assert (row["cells"], row["jobs"], row["done"], row["pending"], row["running"],
                row["cells_finished"]) == (n, REPEATS * n, REPEATS * n, 0, 0, n)
        if epochs < BUDGETS[-1]:
            assert (row["decided"], row["promoted"]) == (1, len(trained[epochs + 1]))
            assert row["threshold"] == pytest.approx(rounds[epochs]["threshold"])
    (compute,) = farm.query("SELECT * FROM campaign_compute WHERE campaign = 'adaptive'")
    flops = {r["hash"]: r["flops"] for r in farm.query("SELECT hash, flops FROM cells")}
    spent = sum(flops[h] * e * REPEATS for e in BUDGETS for h in trained[e])
    grid = sum(flops[h] * e * REPEATS for e in BUDGETS for h in hashes)
    assert compute["done_cost"] == pytest.approx(spent) and compute["grid_cost"] == pytest.approx(grid)
    assert compute["done_fraction_of_grid"] == pytest.approx(spent / grid)
