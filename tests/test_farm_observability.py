"""What an operator sees: the farm's metrics on the Ray node's Prometheus endpoint, and each
worker's torch threads sized to the CPUs Ray gave it (real nasfarm run processes, a real cluster)."""

from __future__ import annotations

import re
import signal
import urllib.request

import pytest

from tests.fixtures_farm import free_port

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def metrics_cluster():
    from ray.cluster_utils import Cluster

    port = free_port()
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "include_dashboard": False, "metrics_export_port": port,
        "_system_config": {"metrics_report_interval_ms": 500},
    })
    try:
        yield cluster.address, f"http://127.0.0.1:{port}/metrics"
    finally:
        cluster.shutdown()


def _samples(url: str) -> dict[str, float]:
    """``name{outcome="done",...}`` -> value for the nasfarm series (tags reduced to ours)."""
    body = urllib.request.urlopen(url, timeout=5).read().decode()
    out: dict[str, float] = {}
    for line in body.splitlines():
        match = re.match(r"(ray_nasfarm_\w+)(\{[^}]*\})?\s+([-0-9.e+]+)$", line)
        if not match:
            continue
        tags = dict(re.findall(r'(outcome|status|state|le)="([^"]*)"', match.group(2) or ""))
        key = match.group(1) + "".join(f"[{k}={v}]" for k, v in sorted(tags.items()))
        out[key] = out.get(key, 0.0) + float(match.group(3))
    return out


def test_the_farms_metrics_are_on_the_nodes_metrics_endpoint(farm, metrics_cluster):
    address, url = metrics_cluster
    farm.create_campaign("observed", 2)
    run = farm.start_run("--campaign", "observed", "--follow", address=address)

    def exported():
        samples = _samples(url)
        done = samples.get("ray_nasfarm_jobs_total[outcome=done]", 0)
        epochs = samples.get("ray_nasfarm_epoch_seconds_count", 0)
        # The queue gauges follow the outcomes at the driver's next count refresh.
        queued = samples.get("ray_nasfarm_queue_jobs[status=done]", 0)
        return samples if done == 2 and epochs >= 4 and queued == 2 else None

    samples = farm.wait(exported, timeout=120, what="the metrics of two finished jobs")
    run.send_signal(signal.SIGTERM)
    farm.finish(run, timeout=60)
    assert samples["ray_nasfarm_queue_jobs[status=done]"] == 2
    assert samples["ray_nasfarm_queue_jobs[status=pending]"] == 0
    assert samples["ray_nasfarm_nodes_drained"] == 0
    assert samples["ray_nasfarm_workers[state=idle]"] + samples["ray_nasfarm_workers[state=training]"] == 2
    assert samples["ray_nasfarm_epoch_seconds_count"] >= 4  # 2 jobs x 2 epochs (FARM_EPOCHS)
    assert samples["ray_nasfarm_epoch_seconds_sum"] > 0


def test_each_worker_runs_as_many_torch_threads_as_ray_gave_it_cpus(farm):
    farm.create_campaign("one-cpu", 2)
    one = farm.finish(farm.start_run("--campaign", "one-cpu"))
    assert one["returncode"] == 0, one["stderr"][-3000:]
    assert one["worker_threads"] == [1, 1]  # 2 CPUs, 1 per job (the default)
    farm.create_campaign("two-cpus", 1, seed=5)
    two = farm.finish(farm.start_run("--campaign", "two-cpus", "--cpus-per-job", "2"))
    assert two["returncode"] == 0, two["stderr"][-3000:]
    assert two["worker_threads"] == [2]
