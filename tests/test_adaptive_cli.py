"""Adaptive campaigns on the command line: create --promote, campaign promote, status, show (SQLite)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from db.engine import make_engine
from db.queue import JobQueue
from farm.adaptive import PromotionRule, parse_fraction, rank_cells, successive_halving
from nasfarm.cli import main
from tests.fixtures_db import fake_result


@pytest.mark.parametrize("text, numerator, denominator", [
    ("25%", 1, 4), ("0.25", 1, 4), ("1/4", 1, 4), ("10%", 1, 10), ("100%", 1, 1), ("33.3%", 333, 1000),
])
def test_promote_fractions_parse_exactly(text, numerator, denominator):
    value = parse_fraction(text)
    assert (value.numerator, value.denominator) == (numerator, denominator)


@pytest.mark.parametrize("text", ["0", "0%", "150%", "1.5", "-0.2", "a quarter", "1/0", ""])
def test_bad_promote_fractions_are_refused(text):
    with pytest.raises(ValueError, match="promote fraction"):
        parse_fraction(text)


def test_ceil_is_exact_where_floating_point_is_not():
    assert 0.55 * 100 > 55  # 55.00000000000001: a float ceil would promote 56 of 100
    assert PromotionRule.parse("55%").promoted(100) == 55
    assert [PromotionRule.parse("25%").promoted(n) for n in (0, 1, 4, 5, 8, 9)] == [0, 1, 1, 2, 2, 3]
    assert [PromotionRule.parse("25%").promoted_so_far(n) for n in (3, 4, 7, 8)] == [0, 1, 1, 2]


def test_successive_halving_replays_rounds():
    means = {4: {"a": 0.5, "b": 0.7, "c": 0.7, "d": 0.1}, 12: {"b": 0.9, "c": 0.8}, 36: {"b": 0.95}}
    assert rank_cells(means[4]) == ["b", "c", "a", "d"]  # the tie between b and c: by hash
    trained = successive_halving(means, [4, 12, 36], PromotionRule.parse("50%"))
    assert trained == {4: ["a", "b", "c", "d"], 12: ["b", "c"], 36: ["b"]}


def test_adaptive_campaign_on_the_command_line(sqlite_url):
    runner = CliRunner()
    assert runner.invoke(main, ["db", "init", "--db", sqlite_url]).exit_code == 0
    created = runner.invoke(main, ["campaign", "create", "--campaign", "ad", "--cells", "sample:8",
                                   "--epochs", "4,12,36", "--repeats", "1", "--profile", "smoke",
                                   "--promote", "25%", "--db", sqlite_url])
    assert created.exit_code == 0, created.output
    assert "8 jobs added" in created.output and "top 25% per budget (rounds)" in created.output
    show = runner.invoke(main, ["campaign", "show", "--campaign", "ad", "--db", sqlite_url])
    shown = json.loads(show.output)
    assert shown["promote"] == {"numerator": 1, "denominator": 4, "fraction": 0.25, "mode": "rounds"}
    for bad, message in ((["--epochs", "4"], "two or more --epochs"), (["--epochs", "12,4"], "low to high"),
                         (["--promote", "2"], "at most 100%")):
        args = ["campaign", "create", "--campaign", "x", "--cells", "sample:2", "--promote", "0.5", *bad,
                "--db", sqlite_url]
        refused = runner.invoke(main, args)
        assert refused.exit_code == 2 and message in refused.output, refused.output

    waiting = runner.invoke(main, ["campaign", "promote", "--campaign", "ad", "--db", sqlite_url])
    assert waiting.exit_code == 0 and "nothing to promote now: a budget is still running" in waiting.output
    engine = make_engine(sqlite_url)
    queue = JobQueue(engine)
    for job in queue.claim(100, "test"):
        accuracy = 0.5 + int(job.cell_hash[:4], 16) / 2**17
        queue.complete(job.job_id, job.lease_token, fake_result(job, accuracy))
    promoted = runner.invoke(main, ["campaign", "promote", "--campaign", "ad", "--db", sqlite_url])
    assert promoted.exit_code == 0, promoted.output
    assert "4 epochs: promoted 2 of 8 ranked cells to 12 epochs" in promoted.output  # ceil(8 / 4)
    assert "2 jobs enqueued" in promoted.output
    with engine.connect() as conn:
        decided_by = conn.exec_driver_sql("SELECT decided_by FROM promotion_rounds WHERE epochs = 4").scalar()
    assert decided_by.startswith("cli:")

    status = runner.invoke(main, ["status", "--campaign", "ad", "--db", sqlite_url])
    assert status.exit_code == 0, status.output
    assert "adaptive: top 25% per budget (rounds)" in status.output
    assert "4 ep: 8/8 cells finished" in status.output and "promoted 2 of 8 to 12 ep" in status.output
    assert "12 ep: 0/2 cells finished, 2 pending" in status.output
    assert "of the full grid's done" in status.output
    plain = runner.invoke(main, ["campaign", "create", "--campaign", "plain", "--cells", "sample:2",
                                 "--epochs", "4", "--db", sqlite_url])
    assert plain.exit_code == 0
    not_adaptive = runner.invoke(main, ["campaign", "promote", "--campaign", "plain", "--db", sqlite_url])
    assert not_adaptive.exit_code == 2 and "is not adaptive" in not_adaptive.output
    assert "adaptive" not in runner.invoke(main, ["status", "--campaign", "plain", "--db", sqlite_url]).output
    engine.dispose()
