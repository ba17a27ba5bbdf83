"""Unattended at scale: a bad setting or a bad node stops itself and never burns the campaign.

Real ``nasfarm run`` processes on a real Ray cluster and PostgreSQL, real faults: a data set too
small for the profile, CUDA asked for on a CPU cluster, a node whose data copy is missing, storage
made immutable mid-run (``chattr +i``: refused even to root), a campaign whose every job fails the
same way, a corrupt checkpoint, and kill -9 of the driver. Each test prints what it measured
(docs/farm.md's fault matrix quotes them).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.fixtures_farm import start_ray_cluster

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

FAST_RETRY = ("--retry-backoff", "0.5")
EXIT_JOBS_FAILED, EXIT_PREFLIGHT, EXIT_BREAKER, EXIT_NO_HEALTHY_WORKER = 1, 3, 4, 5


def _untouched(farm) -> None:
    """No job changed: all pending, nothing charged, no history."""
    jobs = farm.jobs()
    assert {(j["status"], j["attempts"], j["preemptions"]) for j in jobs} == {("pending", 0, 0)}
    assert farm.events() == []


def test_a_data_set_too_small_for_the_profile_stops_the_run_before_any_claim(farm):
    from farm.config import NB101

    farm.create_campaign("too-small", 3, profile=NB101.to_dict())  # 40,000 training images needed
    started = time.monotonic()
    summary = farm.finish(farm.start_run("--campaign", "too-small"))
    took = time.monotonic() - started
    print(f"pre-flight (data too small): exit {summary['returncode']} after {took:.1f} s")
    assert summary["returncode"] == EXIT_PREFLIGHT, summary["stderr"][-3000:]
    assert "needs 40,000 train images, the data set has 1,024" in summary["stderr"]
    assert "nothing was claimed" in summary["stderr"]
    assert took < 60
    _untouched(farm)


def test_cuda_asked_for_on_a_cpu_cluster_stops_the_run_before_any_claim(farm):
    farm.create_campaign("no-gpu", 2)
    summary = farm.finish(farm.start_run("--campaign", "no-gpu", "--device", "cuda"))
    assert summary["returncode"] == EXIT_PREFLIGHT, summary["stderr"][-3000:]
    assert "--device cuda" in summary["stderr"] and "no usable CUDA GPU" in summary["stderr"]
    _untouched(farm)


def test_without_a_campaign_named_more_than_one_with_work_needs_all(farm):
    farm.create_campaign("first", 1)
    farm.create_campaign("second", 1, seed=3)
    refused = farm.finish(farm.start_run())
    assert refused["returncode"] == 2
    assert "2 campaigns have jobs to run (first, second)" in refused["stderr"]
    assert "--all" in refused["stderr"]
    _untouched(farm)
    both = farm.finish(farm.start_run("--all", *FAST_RETRY))
    assert both["returncode"] == 0, both["stderr"][-3000:]
    assert "working on first, second" in both["stderr"]
    assert {j["status"] for j in farm.jobs()} == {"done"}


def test_a_node_whose_data_copy_is_missing_is_drained_and_the_other_finishes(farm, tmp_path):
    """--data-from nodes: each worker reads its node's own copy (here: each node's NASFARM_DATA_DIR)."""
    cluster = start_ray_cluster(num_cpus=0)
    try:
        cluster.add_node(num_cpus=1, env_vars={"NASFARM_DATA_DIR": str(farm.data_dir)})
        bad = cluster.add_node(num_cpus=1, env_vars={"NASFARM_DATA_DIR": str(tmp_path / "missing")})
        farm.create_campaign("half-sick", 3)
        started = time.monotonic()
        summary = farm.finish(farm.start_run("--campaign", "half-sick", "--data-from", "nodes", *FAST_RETRY,
                                             address=cluster.address, data_dir=False))
        took = time.monotonic() - started
    finally:
        cluster.shutdown()
    print(f"node with a missing data copy: run took {took:.1f} s, drained {summary.get('drained_nodes')}")
    assert summary["returncode"] == 0, summary["stderr"][-3000:]
    assert len(summary["drained_nodes"]) == 1 and bad.node_id[:12] in summary["drained_nodes"][0]
    assert "drained" in summary["stderr"] and "CIFAR-10 not found" in summary["stderr"]
    jobs = farm.jobs()
    assert {j["status"] for j in jobs} == {"done"}
    assert {j["attempts"] for j in jobs} == {1}  # no attempt charged for the sick node
    assert all(bad.node_id[:12] not in (e["node"] or "") for e in farm.events())  # it took no job
    health = farm.query("SELECT * FROM worker_health")
    assert [(h["state"], h["environment_faults"]) for h in health if bad.node_id[:12] in h["node"]] \
        == [("drained", 1)]


def test_storage_that_becomes_unwritable_releases_jobs_uncharged_and_stops_the_run(farm):
    if shutil.which("chattr") is None:
        pytest.skip("chattr (e2fsprogs) is needed to make a directory immutable, even for root")
    farm.create_campaign("read-only", 2, checkpoint_every_epochs=0.5)
    run = farm.start_run("--campaign", "read-only", "--max-workers", "1", *FAST_RETRY)
    (job,) = farm.wait(farm.running_with_checkpoint, timeout=90, what="a job with a checkpoint")
    directory = Path(job["checkpoint_location"]).parent
    subprocess.run(["chattr", "+i", str(directory)], check=True)
    try:
        summary = farm.finish(run)
        jobs = farm.jobs()
        releases = [e for e in farm.events("release") if e["fault"] == "environment"]
    finally:
        subprocess.run(["chattr", "-i", str(directory)], check=True)
    print(f"unwritable storage: {len(releases)} environment release(s), exit {summary['returncode']}")
    assert summary["returncode"] == EXIT_NO_HEALTHY_WORKER, summary["stderr"][-3000:]
    assert "no healthy worker left" in summary["stderr"]
    assert releases and all("Operation not permitted" in e["error"] for e in releases)
    assert "failed" not in {j["status"] for j in jobs} and {j["attempts"] for j in jobs} == {0}
    assert summary["environment_faults"] == 3  # the third drained the only node
    # Fixed: the next run finishes the campaign from the checkpoints.
    again = farm.finish(farm.start_run("--campaign", "read-only", *FAST_RETRY))
    assert again["returncode"] == 0, again["stderr"][-3000:]
    assert {j["status"] for j in farm.jobs()} == {"done"}


def test_the_breaker_stops_a_campaign_whose_every_job_fails_the_same_way(farm):
    farm.create_campaign("doomed", 40, max_attempts=1)
    env = {"NASFARM_FAILPOINTS": "train.start=raise:retryable=no"}
    summary = farm.finish(farm.start_run("--campaign", "doomed", env=env))
    jobs = farm.jobs()
    failed = sum(j["status"] == "failed" for j in jobs)
    print(f"breaker: tripped after {failed} failed job(s) of {len(jobs)}")
    assert summary["returncode"] == EXIT_BREAKER, summary["stderr"][-3000:]
    assert "circuit breaker" in summary["stderr"] and "InjectedFault" in summary["stderr"]
    assert 16 <= failed < 25
    assert {j["status"] for j in jobs} <= {"failed", "pending"}
    signatures = {row["error_signature"] for row in farm.query("SELECT * FROM job_failures")}
    assert len(signatures) == 1 and signatures.pop().startswith("InjectedFault:")


def test_a_corrupt_checkpoint_is_moved_aside_and_the_job_restarts_from_zero(farm):
    from workers.storage import checkpoint_location

    (cell,) = farm.create_campaign("corrupt", 1)
    (job,) = farm.jobs()

    class Identity:
        campaign, cell_hash, epochs, repeat = "corrupt", cell, job["epochs"], job["repeat"]

    location = Path(checkpoint_location(str(farm.storage.resolve()), Identity))
    location.parent.mkdir(parents=True, exist_ok=True)
    location.write_bytes(b"NASFARM-CHECKPOINT-1\n" + b"0" * 64 + b"\nnot a checkpoint")
    summary = farm.finish(farm.start_run("--campaign", "corrupt", *FAST_RETRY))
    assert summary["returncode"] == 0, summary["stderr"][-3000:]
    (job,) = farm.jobs()
    assert (job["status"], job["attempts"]) == ("done", 1)
    kept = list(location.parent.glob(location.name + ".corrupt-*"))
    assert len(kept) == 1 and kept[0].read_bytes().endswith(b"not a checkpoint")
    (event,) = farm.events("ckpt_quarantine")
    assert "moved aside" in event["error"] and "restarting from epoch 0" in event["error"]
    assert [e["resumed_from_epoch"] for e in farm.events("start")] == [0.0]


def test_after_kill_9_of_the_driver_a_new_run_resumes_its_jobs_within_30_s(farm):
    farm.create_campaign("orphaned", 2, checkpoint_every_epochs=0.5)
    run = farm.start_run("--campaign", "orphaned", *FAST_RETRY, lease_ttl=600)  # the TTL would be 10 min
    farm.wait(lambda: len(farm.running_with_checkpoint()) == 2, timeout=90,
              what="both jobs running with a checkpoint")
    interrupted = {j["id"] for j in farm.jobs() if j["status"] == "running"}
    run.kill()
    run.communicate()
    farm.runs.remove(run)  # killed on purpose: not a run that "exited while waiting"
    started = time.time()  # the database's clock is this machine's (same host)
    summary = farm.finish(farm.start_run("--campaign", "orphaned", *FAST_RETRY, lease_ttl=600))
    assert summary["returncode"] == 0, summary["stderr"][-3000:]
    resumes = {e["job_id"]: e for e in farm.events("start")
               if e["at"] >= started and e["job_id"] in interrupted}
    assert set(resumes) == interrupted
    assert all(e["resumed_from_epoch"] >= 0.5 for e in resumes.values())  # from their checkpoints
    took = max(e["at"] for e in resumes.values()) - started
    print(f"kill -9 of the driver: {len(interrupted)} job(s) resumed within {took:.1f} s of the new run")
    assert took < 30
    reaps = [e for e in farm.events("reap") if e["job_id"] in interrupted]
    assert len(reaps) == 2 and all("is gone" in e["error"] for e in reaps)
    assert {j["status"] for j in farm.jobs()} == {"done"}
