"""`nasfarm status` and `nasfarm report` on a campaign with done, running, failed and pending jobs,
on both databases. Expected numbers are computed here from farm.cost, independently of the views."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

from db.queue import JobQueue
from farm.config import SMOKE
from farm.cost import forward_flops
from nasfarm.campaigns import create_campaign
from nasfarm.cli import main
from tests.fixtures_db import fake_result, random_cells


def _mixed_campaign(engine) -> dict:
    """12 jobs: 3 done, 1 failed for good, 2 running (with heartbeats), 6 pending."""
    cells = random_cells(6, seed=7)
    create_campaign(engine, "mix", cells, epochs=[4, 12], repeats=1, profile=SMOKE.to_dict(),
                    order="as-given")
    queue = JobQueue(engine)
    claimed = queue.claim(6, "tester")
    done, failed, running = claimed[:3], claimed[3], claimed[4:]
    for i, job in enumerate(done):
        assert queue.complete(job.job_id, job.lease_token, fake_result(job, accuracy=0.5 + 0.1 * i))
    assert queue.fail(failed.job_id, failed.lease_token, "TrainingError: poison cell", retryable=False)
    for i, job in enumerate(running):
        assert queue.start_attempt(job.job_id, job.lease_token, node=f"hostA/gpu{i}", resumed_from_epoch=0.0)
        assert queue.heartbeat(job.job_id, job.lease_token, step=10, epoch=1.5)
    flops = {c.hash: forward_flops(c) for c in cells}
    cost = {job.job_id: flops[job.cell_hash] * job.epochs for job in claimed}
    all_jobs_cost = sum(flops[c.hash] * e for c in cells for e in (4, 12))
    done_cost = sum(cost[j.job_id] for j in done)
    return {
        "running": running,
        "failed": failed,
        "remaining_cost": all_jobs_cost - done_cost - cost[failed.job_id],
        "done_cost": done_cost,
    }


def test_status_shows_counts_eta_workers_and_failures(db_engine, db_url):
    expected = _mixed_campaign(db_engine)
    runner = CliRunner()
    result = runner.invoke(main, ["status", "--json", "--db", db_url])
    assert result.exit_code == 0, result.output
    (row,) = [json.loads(line) for line in result.output.splitlines()]
    assert (row["total"], row["done"], row["failed"], row["running"], row["pending"]) == (12, 3, 1, 2, 6)
    assert row["eta"]["remaining_jobs"] == 8
    assert np.isclose(row["eta"]["remaining_cost"], expected["remaining_cost"])
    assert np.isclose(row["eta"]["done_cost_last_hour"], expected["done_cost"])
    assert np.isclose(row["eta"]["eta_seconds"], expected["remaining_cost"] * 3600 / expected["done_cost"])
    assert row["last_hour"]["jobs_done"] == 3
    assert sorted(w["node"] for w in row["workers"]) == ["hostA/gpu0", "hostA/gpu1"]
    assert {w["job_id"] for w in row["workers"]} == {j.job_id for j in expected["running"]}
    assert all(w["epoch"] == 1.5 for w in row["workers"])
    assert [(f["job_id"], f["status"]) for f in row["failures"]] == [(expected["failed"].job_id, "failed")]

    text = runner.invoke(main, ["status", "--campaign", "mix", "--db", db_url]).output
    assert "[" + "#" * 8 in text and "25.0%" in text  # 3 of 12 done
    assert "hostA/gpu1" in text and "poison cell" in text and "weighted by cost" in text


def test_report_writes_nontrivial_pngs_and_html(db_engine, db_url, tmp_path):
    import matplotlib.image

    _mixed_campaign(db_engine)
    out = tmp_path / "report"
    result = CliRunner().invoke(main, ["report", "--campaign", "mix", "--out", str(out), "--db", db_url])
    assert result.exit_code == 0, result.output
    assert "3 result(s) of 12 job(s)" in result.output
    pngs = sorted(out.glob("*.png"))
    assert {p.name for p in pngs} == {
        "progress.png", "throughput.png", "accuracy_vs_parameters.png",
        "training_time_vs_parameters.png", "accuracy_by_budget.png", "best_cells.png",
        "budget_rank_correlation.png",  # cells done at 4 and 12 epochs
    }
    for png in pngs:
        pixels = matplotlib.image.imread(png)
        assert pixels.shape[0] > 200 and pixels.std() > 0.01, png.name  # a real picture, not blank
    page = (out / "index.html").read_text()
    assert all(p.name in page for p in pngs) and "mix" in page

    missing = CliRunner().invoke(main, ["report", "--campaign", "ghost", "--out", str(out), "--db", db_url])
    assert missing.exit_code == 2 and "unknown campaign 'ghost'" in missing.output
