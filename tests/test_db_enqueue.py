"""Creating a campaign by streaming its jobs in committed batches: whole groups per batch, an
interrupted create completed by running it again (same jobs, same order), a campaign never claimed
before it is whole, a concurrent creator's jobs skipped, progress lines when not on a terminal."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

import nasfarm.enqueue
from db.campaigns import get_campaign
from db.enqueue import CampaignStream
from db.errors import IncompleteCampaign
from db.queue import JobQueue
from farm.config import SMOKE
from nasfarm.campaigns import create_campaign
from nasfarm.cli import main
from tests.fixtures_db import random_cells
from tests.test_db_aggregates import _same

PROFILE = SMOKE.to_dict()


def _jobs(engine, name):
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT cl.hash AS cell_hash, j.epochs, j.repeat, j.seed FROM jobs j"
            " JOIN campaigns c ON c.id = j.campaign_id JOIN cells cl ON cl.id = j.cell_id"
            " WHERE c.name = :n ORDER BY j.id"), {"n": name}).all()


class Interrupt(Exception):
    pass


def _interrupt_after(monkeypatch, batches: int) -> list[int]:
    """CampaignStream.write dies (as a killed process would) after ``batches`` commits; returns the
    list the jobs of every committed batch are appended to."""
    written: list[int] = []
    real = CampaignStream.write

    def write(self, batch, **kwargs):
        if len(written) == batches:
            raise Interrupt
        added = real(self, batch, **kwargs)
        written.append(added[1])
        return added

    monkeypatch.setattr(CampaignStream, "write", write)
    return written


@pytest.mark.parametrize("order", ["shuffled", "cheap-first"])
def test_an_interrupted_create_run_again_completes_the_campaign_in_order(db_engine, monkeypatch, order):
    cells = random_cells(9, seed=8)
    settings = {"epochs": (4, 12), "repeats": 3, "profile": PROFILE, "order": order, "seed": 3}
    monkeypatch.setattr(nasfarm.enqueue, "BATCH_JOBS", 12)  # 2 cells (shuffled) or 4 groups a batch
    create_campaign(db_engine, "reference", cells, **settings)  # uninterrupted
    written = _interrupt_after(monkeypatch, 3)
    with pytest.raises(Interrupt):
        create_campaign(db_engine, "c", cells, **settings)
    assert get_campaign(db_engine, "c")["enqueued_at"] is None
    partial = _jobs(db_engine, "c")
    assert 0 < len(partial) == sum(written) < 54
    groups: dict[tuple[str, int], int] = {}
    for cell_hash, epochs, _, _ in partial:
        groups[(cell_hash, epochs)] = groups.get((cell_hash, epochs), 0) + 1
    assert set(groups.values()) == {3}  # whole groups: every repeat of a cell at a budget, or none
    _same(db_engine)

    queue = JobQueue(db_engine)
    with pytest.raises(IncompleteCampaign, match="run the same `nasfarm campaign create` again"):
        queue.claim(1, "w", campaigns=["c"])
    assert {j.campaign for j in queue.claim(100, "w")} == {"reference"}  # unnamed: left out
    url = db_engine.url.render_as_string(hide_password=False)
    status = CliRunner().invoke(main, ["status", "--campaign", "c", "--db", url])
    assert status.exit_code == 0 and "creation incomplete" in status.output

    monkeypatch.undo()  # the process comes back: the same create, run again
    monkeypatch.setattr(nasfarm.enqueue, "BATCH_JOBS", 12)
    again = create_campaign(db_engine, "c", cells, **settings)
    assert not again["created"] and again["jobs_added"] == 54 - len(partial)
    assert again["enqueued_at"] is not None
    assert _jobs(db_engine, "c") == _jobs(db_engine, "reference")  # same jobs, same claim order
    assert [j.campaign for j in queue.claim(1, "w", campaigns=["c"])] == ["c"]
    _same(db_engine)
    assert create_campaign(db_engine, "c", cells, **settings)["jobs_added"] == 0  # idempotent


def test_batches_are_bounded_and_hold_whole_groups(db_engine, monkeypatch):
    monkeypatch.setattr(nasfarm.enqueue, "BATCH_JOBS", 10)
    sizes: list[int] = []
    real = CampaignStream.write

    def write(self, batch, **kwargs):
        groups = list(batch.groups())
        sizes.append(sum(len(seeds) for _, _, seeds in groups))
        assert all(len(seeds) == 2 for _, _, seeds in groups)  # both repeats of each group
        assert len({(h, e) for h, e, _ in groups}) == len(groups)
        return real(self, batch, **kwargs)

    monkeypatch.setattr(CampaignStream, "write", write)
    made = create_campaign(db_engine, "c", random_cells(7, seed=2), epochs=(4, 12, 36), repeats=2,
                           profile=PROFILE)
    assert made["jobs_added"] == 42 == sum(sizes) and max(sizes) <= 12 and len(sizes) >= 4


def test_jobs_another_creator_wrote_are_skipped_and_counted_once(db_engine, monkeypatch):
    cells = random_cells(5, seed=4)
    create_campaign(db_engine, "c", cells[:3], epochs=(4,), repeats=2, profile=PROFILE, order="as-given")
    # This creator looked before the other one committed: it believes none of the jobs exists.
    monkeypatch.setattr(nasfarm.enqueue.Plan, "mark_present", lambda self, groups: None)
    made = create_campaign(db_engine, "c", cells, epochs=(4,), repeats=2, profile=PROFILE, order="as-given")
    assert made["jobs_added"] == 4 and made["cells_added"] == 2  # the 2 new cells' jobs only
    assert len(_jobs(db_engine, "c")) == 10
    _same(db_engine)


def test_a_create_says_where_it_stands_line_by_line_off_a_terminal(db_engine, capsys):
    create_campaign(db_engine, "c", random_cells(4, seed=6), epochs=(4, 12), repeats=1, profile=PROFILE,
                    progress=True)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "campaign c: 4 cells (4 new), 8 jobs to enqueue"
    assert "campaign c: 8 of 8 jobs enqueued" in lines
    assert lines[-1].startswith("campaign c: 8 jobs and 4 cells added in ")


def test_cells_another_creator_stored_meanwhile_are_skipped(db_engine, monkeypatch):
    from db.campaigns import CampaignWriter

    cells = random_cells(5, seed=9)
    create_campaign(db_engine, "c", cells[:3], epochs=(4,), repeats=1, profile=PROFILE)
    # This creator looked before the other one committed its cells: it believes none is stored.
    monkeypatch.setattr(CampaignWriter, "stored_flops", lambda self, hashes: {})
    made = create_campaign(db_engine, "d", cells, epochs=(4,), repeats=1, profile=PROFILE)
    assert made["cells_added"] == 2 and made["jobs_added"] == 5
    with db_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM cells")).scalar_one() == 5
    _same(db_engine)
