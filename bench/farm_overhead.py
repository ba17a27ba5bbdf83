"""The farm's own overhead: jobs/s through ``run_campaigns`` with near-zero-work jobs, and the idle
gap between one job's end and the next job's start on a worker (p50, p99).

Goal: gap p50 < 100 ms and p99 < 1 s, so that a GPU never waits for the scheduler.

Baseline, in the same process: the same database calls a worker makes for one job (claim,
start_attempt, heartbeat, one metric, complete) in a plain loop without Ray. The farm's jobs/s is
printed as a ratio to it: what the scheduler, Ray dispatch and the worker bookkeeping cost on top
of the queue itself (with several workers the ratio can exceed 1).

    python3 bench/farm_overhead.py                       # temp SQLite database, local Ray
    python3 bench/farm_overhead.py --db postgresql+psycopg2://postgres@127.0.0.1:5432/bench
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder is sys.path[0], where a bench named like a standard module would shadow the
# standard library (torch and Ray import queue, for one).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402


class _Result:
    """What a near-zero-work job returns: TrainResult's shape with zero metrics."""

    def __init__(self) -> None:
        from farm.metrics import RUN_METRICS

        self.metrics = dict.fromkeys(RUN_METRICS, 0.0)

    def to_dict(self) -> dict:
        return {"metrics": self.metrics, "evaluations": [], "resumed_from_step": 0,
                "resumed_from_epoch": 0.0}


def near_zero_job(job, data, *, device, checkpoint_path, on_event, should_stop):
    """The injected job runner: one metric event, no training, no checkpoint."""
    on_event({"kind": "epoch", "epoch": 1.0, "step": 1, "loss": 0.0, "training_time": 0.0})
    return _Result()


def make_campaign(url: str, name: str, n_jobs: int) -> None:
    from db.engine import make_engine
    from db.migrate import upgrade
    from farm.config import SMOKE
    from farm.space import sample_cells
    from farm.spec import cell_from_labels
    from nasfarm.campaigns import create_campaign

    engine = make_engine(url)
    upgrade(engine)
    cells = [cell_from_labels(c.matrix, c.labels) for c in sample_cells(n_jobs, seed=5)]
    create_campaign(engine, name, cells, epochs=(1,), repeats=1, profile=SMOKE.to_dict())
    engine.dispose()


def baseline(url: str, name: str) -> tuple[int, float]:
    """The queue alone: a worker's database calls per job, in one loop, no Ray."""
    from db.engine import make_engine
    from db.queue import JobQueue

    engine = make_engine(url)
    queue = JobQueue(engine)
    started = time.perf_counter()
    n = 0
    while jobs := queue.claim(1, "baseline", campaigns=[name]):
        (job,) = jobs
        queue.start_attempt(job.job_id, job.lease_token, node="baseline", resumed_from_epoch=0.0)
        queue.heartbeat(job.job_id, job.lease_token, step=1, epoch=1.0)
        queue.record_metrics(job.job_id, job.lease_token, {"kind": "epoch", "epoch": 1.0, "step": 1})
        queue.complete(job.job_id, job.lease_token, _Result().to_dict())
        n += 1
    elapsed = time.perf_counter() - started
    engine.dispose()
    return n, elapsed


def steady_throughput(url: str, name: str) -> tuple[int, float]:
    """Jobs and seconds from the first attempt's start to the last one's end (database clock)."""
    import sqlalchemy as sa

    from db.engine import make_engine

    engine = make_engine(url)
    with engine.connect() as conn:
        first, last, n = conn.execute(sa.text(
            "SELECT min(e.at), max(e.at), sum(CASE WHEN e.kind = 'end' THEN 1 ELSE 0 END) "
            "FROM job_events e JOIN jobs j ON j.id = e.job_id JOIN campaigns c ON c.id = j.campaign_id "
            "WHERE c.name = :name AND e.kind IN ('start', 'end')"), {"name": name}).one()
    engine.dispose()
    return int(n), float(last - first)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", default=None, help="database URL (default: a temporary SQLite file)")
    parser.add_argument("--jobs", type=int, default=300, help="jobs through the farm (and the baseline)")
    parser.add_argument("--workers", type=int, default=2, help="worker actors (1 CPU each)")
    parser.add_argument("--address", default=None, help="Ray address (default: a local cluster)")
    args = parser.parse_args()

    from farm.data import write_synthetic_cifar10
    from scheduler.launch import run_campaigns
    from scheduler.options import RunOptions

    scratch = Path(tempfile.mkdtemp(prefix="nasfarm-bench-"))
    url = args.db or f"sqlite:///{scratch / 'bench.db'}"
    tag = uuid.uuid4().hex[:6]
    data_dir = write_synthetic_cifar10(scratch / "data", images_per_batch=256)

    make_campaign(url, f"baseline-{tag}", args.jobs)
    base_n, base_s = baseline(url, f"baseline-{tag}")
    base_rate = base_n / base_s

    farm_name = f"farm-{tag}"
    make_campaign(url, farm_name, args.jobs)
    summary = run_campaigns(url, [farm_name], RunOptions(
        address=args.address, cpus_per_job=1, max_workers=args.workers,
        storage=str(scratch / "checkpoints"), data_dir=str(data_dir), lease_ttl_s=60.0,
        retry_backoff_s=1.0, progress=False, job_runner=near_zero_job,
    ))
    n, span = steady_throughput(url, farm_name)
    rate = n / span
    p50, p99 = summary.idle_gap_percentile(50), summary.idle_gap_percentile(99)
    print(f"database: {url.split('://')[0]}, workers: {args.workers}, jobs: {n} "
          f"(done {summary.done}, failed {summary.failed}), load {os.getloadavg()[0]:.2f}")
    print(f"baseline (queue calls only, 1 process): {base_rate:8.1f} jobs/s "
          f"({base_n} jobs in {base_s:.2f} s)")
    print(f"farm (Ray driver + {args.workers} workers):      {rate:8.1f} jobs/s "
          f"({n} jobs in {span:.2f} s; whole run {summary.elapsed_s:.1f} s, worker start-up included)")
    print(f"ratio farm / baseline:                   {rate / base_rate:8.2f}")
    print(f"idle gap between jobs on a worker: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms "
          f"over {len(summary.idle_gaps_s)} gaps (goal: p50 < 100 ms, p99 < 1000 ms)")


if __name__ == "__main__":
    main()
