"""PostgreSQL restarted mid-run: the workers' writes wait and retry, the run completes, and every
result and every metric is in the database exactly once."""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.fixtures_farm import FARM_EPOCHS, Farm, PostgresServer, create_database

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

OUTAGE_S = 6.0


@pytest.fixture
def private_postgres():
    server = PostgresServer()
    try:
        yield server
    finally:
        server.destroy()


def test_database_restart_mid_run_loses_and_duplicates_nothing(
    private_postgres: PostgresServer, ray_address: str, synthetic_cifar_dir: Path, tmp_path: Path
):
    url = create_database(private_postgres.base_url)
    farm = Farm(db_url=url, storage=tmp_path / "checkpoints", data_dir=synthetic_cifar_dir,
                ray_address=ray_address)
    try:
        farm.create_campaign("outage", 3)
        # TTL 20 s (heartbeat every 5 s) outlives the outage: no lease may expire because of it.
        run = farm.start_run("--campaign", "outage", "--retry-backoff", "0.5", lease_ttl=20)
        farm.wait(lambda: sum(j["status"] == "running" and bool(j["lease_node"]) for j in farm.jobs()) >= 2,
                  timeout=90, what="two started jobs")
        farm.engine.dispose()
        private_postgres.stop()
        time.sleep(OUTAGE_S)
        private_postgres.start()
        summary = farm.finish(run)
        assert summary["returncode"] == 0, summary["stderr"][-3000:]
        # The outage was felt by the driver and by the workers (their lines come through Ray)...
        assert "database unavailable" in summary["stderr"]
        assert re.search(r"FarmWorker pid=\d+\).*job \d+: database unavailable", summary["stderr"])

        jobs = farm.jobs()
        assert {j["status"] for j in jobs} == {"done"}
        assert [j["attempts"] for j in jobs] == [1] * len(jobs)  # ...and cost no attempt
        results = farm.results()
        assert sorted(r["job_id"] for r in results) == [j["id"] for j in jobs]
        assert farm.events("reap") == []
        # The metric stream of every job is whole and has no duplicate: one row per epoch and per
        # evaluation (step 0, halfway, final), whatever was queued during the outage.
        metrics = Counter((m["job_id"], m["kind"]) for m in farm.query("SELECT * FROM job_metrics"))
        for job in jobs:
            assert metrics[(job["id"], "epoch")] == FARM_EPOCHS
            assert metrics[(job["id"], "evaluation")] == 3
    finally:
        farm.close()
