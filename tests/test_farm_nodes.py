"""Losing a Ray node mid-job: its jobs are handed back at once and re-run on a node that joins.

A cluster of its own (``ray.cluster_utils.Cluster``): a head node with no CPUs, so every worker
runs on the one worker node; that node is killed (all its processes, SIGKILL) while jobs train,
and a fresh node joins. The pool must shrink to nothing, grow onto the new node, and the jobs must
come back without waiting for the (long) lease TTL.

The worker nodes declare one GPU each (Ray schedules declared GPUs; there is no CUDA here, so the
workers train on the CPU) and jobs ask for half a GPU: both jobs must run at once on one node.
"""

from __future__ import annotations

import pytest

from tests.fixtures_farm import start_ray_cluster

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_jobs_of_a_lost_node_rerun_on_a_node_that_joins(farm):
    cluster = start_ray_cluster(num_cpus=0)
    try:
        first = cluster.add_node(num_cpus=2, num_gpus=1)
        farm.create_campaign("nodes", 3)  # 3 jobs: two surely run at once
        run = farm.start_run("--campaign", "nodes", "--retry-backoff", "0.5", "--gpus-per-job", "0.5",
                             address=cluster.address, lease_ttl=600)

        def both_started():
            started = [j for j in farm.jobs() if j["status"] == "running" and j["lease_node"]]
            return started if len(started) >= 2 else None

        running = farm.wait(both_started, timeout=90, what="two jobs sharing the node's GPU")
        first_node_id = first.node_id[:12]
        assert all(first_node_id in j["lease_node"] for j in running)
        cluster.remove_node(first, allow_graceful=False)
        second = cluster.add_node(num_cpus=2, num_gpus=1)
        summary = farm.finish(run)
    finally:
        cluster.shutdown()
    assert summary["returncode"] == 0, summary["stderr"][-3000:]
    assert summary["worker_deaths"] == 2

    jobs = {j["id"]: j for j in farm.jobs()}
    assert {j["status"] for j in jobs.values()} == {"done"}
    assert sorted(r["job_id"] for r in farm.results()) == sorted(jobs)
    # Handed back by the driver (an "end" with a worker-lost error), never by the lease reaper.
    assert farm.events("reap") == []
    for job in running:
        ends = [e for e in farm.events("end") if e["job_id"] == job["id"]]
        assert ends[0]["status"] == "pending" and "worker lost" in ends[0]["error"]
        assert ends[-1]["status"] == "done"
        assert second.node_id[:12] in ends[-1]["node"]
        assert jobs[job["id"]]["attempts"] == 2
