"""The farm end to end: real ``nasfarm run`` processes on a real Ray cluster and PostgreSQL, the
smoke profile on synthetic CIFAR-format data, and real faults (kill -9, SIGTERM, poison cells)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.fixtures_farm import kill_hard, worker_pid

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

FAST_RETRY = ("--retry-backoff", "0.5")


def assert_each_job_done_once(farm) -> None:
    jobs = farm.jobs()
    results = farm.results()
    assert [j["status"] for j in jobs] == ["done"] * len(jobs)
    assert sorted(r["job_id"] for r in results) == [j["id"] for j in jobs]
    done_events = Counter(e["job_id"] for e in farm.events("end") if e["status"] == "done")
    assert set(done_events.values()) == {1}


def starts(farm, job_id: int) -> list[float]:
    return [e["resumed_from_epoch"] for e in farm.events("start") if e["job_id"] == job_id]


def test_two_drivers_share_a_campaign_and_a_poison_job_fails_after_max_attempts(farm):
    hashes = farm.create_campaign("shared", 4, max_attempts=3)
    poison = hashes[2]
    env = {"NASFARM_FAILPOINTS": f"train.start=raise:cell={poison}"}
    runs = [farm.start_run("--campaign", "shared", "--max-workers", "1", *FAST_RETRY, env=env)
            for _ in range(2)]
    summaries = [farm.finish(run) for run in runs]

    jobs = {j["cell_hash"]: j for j in farm.jobs()}
    bad = jobs.pop(poison)
    assert bad["status"] == "failed"
    assert bad["attempts"] == 3
    assert "InjectedFault: injected fault at failpoint train.start" in bad["last_error"]
    assert 'File "' in bad["last_error"]  # the innermost frames of the traceback
    assert bad["error_signature"].startswith("InjectedFault: injected fault at failpoint train.start")
    # Exit 1 for a driver that handled the job that failed for good, 0 for one that did not.
    tried_by = {e["owner"] for e in farm.events("claim") if e["job_id"] == bad["id"]}
    assert [s["returncode"] for s in summaries] == [1 if s["owner"] in tried_by else 0 for s in summaries], \
        summaries[0]["stderr"][-3000:]
    assert {j["status"] for j in jobs.values()} == {"done"}
    results = farm.results()
    assert sorted(r["job_id"] for r in results) == sorted(j["id"] for j in jobs.values())
    assert all(r["final_validation_accuracy"] is not None for r in results)
    # Both drivers claimed work, and no job was claimed by both at once (one result each above).
    owners = {e["owner"] for e in farm.events("claim")}
    assert len(owners) == 2
    assert sum(s["done"] for s in summaries) == 3
    assert all(s["complete"] for s in summaries)


def test_killed_and_terminated_workers_resume_from_their_checkpoints(farm):
    farm.create_campaign("faults", 2, checkpoint_every_epochs=0.5)
    # One worker, so each fault hits a known job. A long TTL: the killed worker's job must come
    # back because the driver noticed, not because its lease expired.
    run = farm.start_run("--campaign", "faults", "--max-workers", "1", *FAST_RETRY, lease_ttl=600)
    (killed,) = farm.wait(farm.running_with_checkpoint, timeout=90, what="a job with a checkpoint")
    kill_hard(worker_pid(killed))
    (drained,) = farm.wait(lambda: [j for j in farm.running_with_checkpoint() if j["id"] != killed["id"]],
                           timeout=90, what="the other job with a checkpoint")
    os.kill(worker_pid(drained), signal.SIGTERM)
    summary = farm.finish(run)
    assert summary["returncode"] == 0, summary["stderr"][-3000:]
    assert summary["worker_deaths"] == 1

    assert_each_job_done_once(farm)
    jobs = {j["id"]: j for j in farm.jobs()}
    results = {r["job_id"]: r for r in farm.results()}
    # kill -9: the crash cost an attempt; the re-run resumed from the checkpoint.
    assert jobs[killed["id"]]["attempts"] == 2
    assert starts(farm, killed["id"])[0] == 0.0 and starts(farm, killed["id"])[1] >= 0.5
    assert results[killed["id"]]["resumed_from_epoch"] >= 0.5
    ends = [e for e in farm.events("end") if e["job_id"] == killed["id"]]
    assert ends[0]["status"] == "pending" and "worker lost" in ends[0]["error"]
    # SIGTERM to a worker: checkpoint + release, no attempt charged, resumed where it stopped.
    assert jobs[drained["id"]]["attempts"] == 1
    assert jobs[drained["id"]]["preemptions"] == 1
    assert starts(farm, drained["id"])[1] >= 0.5
    # Checkpoints are removed once results are committed.
    assert not any(Path(j["checkpoint_location"]).exists() for j in jobs.values())


def test_sigterm_to_run_releases_jobs_and_a_second_run_resumes_them(farm):
    """The second run uses the fast trainer: it resumes the faithful trainer's checkpoints (one
    format) and says so in each result's ``extra``."""
    farm.create_campaign("preempt", 2, checkpoint_every_epochs=0.5)
    run = farm.start_run("--campaign", "preempt", *FAST_RETRY)
    (first, *_) = farm.wait(farm.running_with_checkpoint, timeout=90, what="a job with a checkpoint")
    signalled = time.monotonic()
    run.send_signal(signal.SIGTERM)
    summary = farm.finish(run, timeout=60)
    assert time.monotonic() - signalled < 60
    assert summary["returncode"] == 128 + signal.SIGTERM, summary["stderr"][-3000:]
    assert summary["interrupted"] == "SIGTERM" and summary["abandoned"] == 0

    jobs = {j["id"]: j for j in farm.jobs()}
    assert "running" not in {j["status"] for j in jobs.values()}
    assert jobs[first["id"]]["status"] == "pending"  # 1.5 epochs were left when the signal came
    released = [j for j in jobs.values() if j["status"] == "pending" and j["preemptions"]]
    assert first["id"] in {j["id"] for j in released}
    for job in released:
        assert job["attempts"] == 0  # a preemption is not charged
        assert job["preemptions"] == 1
        assert Path(job["checkpoint_location"]).exists()

    second = farm.finish(farm.start_run("--campaign", "preempt", "--trainer", "fast", *FAST_RETRY))
    assert second["returncode"] == 0, second["stderr"][-3000:]
    assert_each_job_done_once(farm)
    results = {r["job_id"]: r for r in farm.results()}
    assert results[first["id"]]["resumed_from_epoch"] >= 0.5
    rerun = [job_id for job_id, job in jobs.items() if job["status"] == "pending"]
    assert first["id"] in rerun
    for job_id in rerun:
        result = results[job_id]
        extra = json.loads(result["extra"])
        assert (extra["trainer"], extra["cuda_graphs"]) == ("fast", False)  # a CPU cluster
        assert result["final_validation_accuracy"] is not None
    assert starts(farm, first["id"])[-1] >= 0.5


def test_kill_9_of_run_jobs_come_back_after_the_lease_ttl(farm):
    farm.create_campaign("orphans", 2)
    ttl = 6.0
    run = farm.start_run("--campaign", "orphans", *FAST_RETRY, lease_ttl=ttl)
    running = farm.wait(lambda: [j for j in farm.jobs() if j["status"] == "running" and j["lease_node"]],
                        timeout=90, what="a started job")
    run.kill()
    run.communicate()
    killed_at = time.monotonic()

    # The second run joins the cluster as `--address auto` does on a cluster node: via RAY_ADDRESS.
    second = farm.finish(farm.start_run("--campaign", "orphans", *FAST_RETRY, lease_ttl=ttl, address="auto",
                                        env={"RAY_ADDRESS": farm.ray_address}))
    assert second["returncode"] == 0, second["stderr"][-3000:]
    assert second["cluster"] == farm.ray_address  # joined the running cluster, started none
    assert_each_job_done_once(farm)
    # The orphaned leases expired (no heartbeat for the TTL) and were reaped, charging the attempt.
    reaps = {e["job_id"]: e for e in farm.events("reap")}
    assert {j["id"] for j in running} <= set(reaps)
    assert all("lease expired" in e["error"] for e in reaps.values())
    assert time.monotonic() - killed_at >= ttl
    jobs = {j["id"]: j for j in farm.jobs()}
    assert all(jobs[j["id"]]["attempts"] == 2 for j in running)


def test_cancelling_a_running_job_stops_its_worker_without_writing_a_result(farm):
    from db.queue import JobQueue

    farm.create_campaign("cancel", 1, checkpoint_every_epochs=0.5)
    run = farm.start_run("--campaign", "cancel", lease_ttl=4)  # heartbeat every second
    (job,) = farm.wait(farm.running_with_checkpoint, timeout=90, what="a job with a checkpoint")
    assert JobQueue(farm.engine).cancel(job_ids=[job["id"]]) == 1
    summary = farm.finish(run)
    assert summary["returncode"] == 0, summary["stderr"][-3000:]
    assert summary["lost"] == 1 and summary["done"] == 0
    assert farm.jobs()[0]["status"] == "cancelled"
    assert farm.results() == []
    assert "lease lost" in summary["stderr"]


def test_fused_trainer_trains_a_cells_repeats_together_through_a_drain_and_a_cancel(farm):
    """``--trainer fused``: the 3 repeats of a cell are claimed as one group and trained as one
    repeat-grouped network on one worker. SIGTERM to that worker checkpoints and releases all
    three, and they resume together from the same step. Cancelling one repeat of the next group
    stops that group without a write for the cancelled job; the other two go back uncharged and
    finish as a group of two."""
    from db.queue import JobQueue

    hashes = farm.create_campaign("fused", 2, repeats=3, checkpoint_every_epochs=0.5)
    run = farm.start_run("--campaign", "fused", "--trainer", "fused", "--max-workers", "1", *FAST_RETRY)

    def a_group_with_checkpoints(cell_hash=None):
        by_cell: dict[str, list] = {}
        for job in farm.running_with_checkpoint():
            by_cell.setdefault(job["cell_hash"], []).append(job)
        return next((jobs for cell, jobs in by_cell.items()
                     if len(jobs) == 3 and cell_hash in (None, cell)), None)

    drained = farm.wait(a_group_with_checkpoints, timeout=120, what="a cell's 3 repeats with checkpoints")
    assert len({j["lease_node"] for j in drained}) == 1  # one worker trains the three
    os.kill(worker_pid(drained[0]), signal.SIGTERM)
    (other_cell,) = set(hashes) - {drained[0]["cell_hash"]}
    cancelled_group = farm.wait(lambda: a_group_with_checkpoints(other_cell), timeout=120,
                                what="the other cell's 3 repeats with checkpoints")
    cancelled = cancelled_group[1]
    assert JobQueue(farm.engine).cancel(job_ids=[cancelled["id"]]) == 1
    summary = farm.finish(run)
    assert summary["returncode"] == 0, summary["stderr"][-3000:]
    assert (summary["done"], summary["lost"], summary["worker_deaths"]) == (5, 1, 0), summary

    jobs = {j["id"]: j for j in farm.jobs()}
    results = {r["job_id"]: r for r in farm.results()}
    assert jobs[cancelled["id"]]["status"] == "cancelled" and cancelled["id"] not in results
    assert sorted(results) == sorted(i for i, j in jobs.items() if j["status"] == "done")
    assert len(results) == 5
    for job in drained:  # drained: checkpointed and released uncharged, then resumed where it stopped
        assert jobs[job["id"]]["attempts"] == 1 and jobs[job["id"]]["preemptions"] == 1
        assert results[job["id"]]["resumed_from_epoch"] >= 0.5
        assert json.loads(results[job["id"]]["extra"])["fused_repeats"] == 3
    assert len({results[j["id"]]["resumed_from_step"] for j in drained}) == 1  # together, one step
    for job in cancelled_group:
        if job["id"] != cancelled["id"]:  # released uncharged, resumed from an epoch checkpoint
            assert jobs[job["id"]]["attempts"] == 1 and jobs[job["id"]]["preemptions"] == 1
            assert results[job["id"]]["resumed_from_epoch"] >= 0.5
            assert json.loads(results[job["id"]]["extra"])["fused_repeats"] == 2
    for result in results.values():
        assert json.loads(result["extra"])["trainer"] == "fast"
        assert result["final_validation_accuracy"] is not None
    # Each claim of a cell's jobs took all of its pending repeats in one statement (one database
    # clock reading): three at first, then the released ones again.
    for group in (drained, cancelled_group):
        ids = {j["id"] for j in group}
        claimed_at: dict[float, set[int]] = {}
        for event in farm.events("claim"):
            if event["job_id"] in ids:
                claimed_at.setdefault(event["at"], set()).add(event["job_id"])
        again = ids if group is drained else ids - {cancelled["id"]}
        assert list(claimed_at.values()) == [ids, again]
