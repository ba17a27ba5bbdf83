"""Benchmark the job database on PostgreSQL and SQLite.

Prints, for each database:
- enqueue: jobs/s of create_campaign for ~1M jobs (cells already stored) and the full-space time
  that rate implies (5,083,488 jobs); with --full, the real full-space campaign (enumeration,
  cells with their parameter counts and FLOPs, 5,083,488 jobs) timed end to end;
- claim+complete cycles/s with 1 and 4 concurrent worker processes (each claims one job, then
  completes it; the 4-worker figure also with claims of 8, and with claim_groups taking a cell's
  3 repeats per claim as `nasfarm run --trainer fused` does), and the speed-ups over 1 worker and
  over single claims;
- the campaign_progress query time on the 5M-job table (with --full), against the baseline of
  counting the jobs table directly in the same process.

    python3 bench/queue_ops.py                       # both databases, 1M-job enqueue, no full space
    python3 bench/queue_ops.py --full --no-sqlite    # PostgreSQL with the real 5M-job campaign

PostgreSQL: a scratch database is created on --pg (default $NASFARM_TEST_PG_URL or the local
server) and dropped at the end. The machine's load average is printed with every figure.
"""

from __future__ import annotations

import os
import sys

# Run as a script, this file's directory comes first on sys.path, and this file (queue.py) would
# shadow the standard library's queue module that multiprocessing needs: use the repository root.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [os.path.dirname(_HERE)] + [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse  # noqa: E402
import multiprocessing  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

import sqlalchemy as sa  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

FULL_SPACE_JOBS = 423_624 * 4 * 3
DEFAULT_PG = os.environ.get("NASFARM_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")


def load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


def fake_result(job) -> dict:
    metrics = {name: 0.5 for name in (
        "total_time", "halfway_training_time", "halfway_train_accuracy", "halfway_validation_accuracy",
        "halfway_test_accuracy", "final_training_time", "final_train_accuracy",
        "final_validation_accuracy", "final_test_accuracy")}
    metrics["trainable_parameters"] = 1000
    return {"metrics": metrics, "evaluations": [{"epochs": job.epochs}], "resumed_from_step": 0}


def worker(url: str, campaign: str, batch: int, durable: bool, grouped: bool, start, out) -> None:
    from db.engine import make_engine
    from db.queue import JobQueue

    engine = make_engine(url)
    queue = JobQueue(engine, durable_complete=durable)
    queue.counts()  # connect before the start line
    start.wait()
    done = 0
    while True:
        owner = f"bench-{os.getpid()}"
        if grouped:  # --trainer fused: the repeats of a cell per claim (claims of `batch` groups)
            groups = queue.claim_groups(batch, owner, campaigns=[campaign], max_group=3)
            jobs = [job for group in groups for job in group]
        else:
            jobs = queue.claim(batch, owner, campaigns=[campaign])
        if not jobs:
            break
        for job in jobs:
            done += queue.complete(job.job_id, job.lease_token, fake_result(job))
    out.put((done, time.perf_counter()))
    engine.dispose()


def throughput(url: str, campaign: str, processes: int, batch: int, durable: bool, grouped: bool) -> float:
    context = multiprocessing.get_context("spawn")
    start, out = context.Event(), context.Queue()
    procs = [
        context.Process(target=worker, args=(url, campaign, batch, durable, grouped, start, out))
        for _ in range(processes)
    ]
    for p in procs:
        p.start()
    time.sleep(3.0)  # let every process import and connect
    t0 = time.perf_counter()
    start.set()
    reports = [out.get(timeout=1800) for _ in procs]
    for p in procs:
        p.join()
    total = sum(done for done, _ in reports)
    return total / (max(end for _, end in reports) - t0)


def timed(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench(url: str, label: str, args, cells) -> None:
    from db.engine import make_engine
    from db.migrate import upgrade
    from db.queue import JobQueue
    from db.views import compact_job_counts
    from farm.config import NB101, SMOKE
    from nasfarm.campaigns import create_campaign

    engine = make_engine(url)
    upgrade(engine)
    print(f"== {label}")
    n_cells = -(-args.jobs // 12)
    subset = cells[:n_cells]

    def report(what: str, made: dict) -> None:
        sec = made["seconds"]
        print(f"{what}: {made['jobs_added']:,} jobs, {made['cells_added']:,} new cells in "
              f"{sec['total']:.1f} s (prepare {sec['prepare']:.1f} s, cells and jobs in committed "
              f"batches {sec['enqueue']:.1f} s)  [{load()}]", flush=True)

    if args.full and (label == "postgresql" or args.full_sqlite):
        # The real thing first, on the fresh database: `nasfarm campaign create full --cells all`.
        report("full space, fresh database", create_campaign(engine, "full", cells, profile=NB101.to_dict()))
    else:
        report("store cells", create_campaign(engine, "cells", subset, epochs=(1,), repeats=1,
                                              profile=SMOKE.to_dict()))
    made = create_campaign(engine, "enqueue", subset, profile=SMOKE.to_dict())
    report("enqueue (cells already stored)", made)
    rate = made["jobs_added"] / made["seconds"]["total"]
    print(f"enqueue rate {rate:,.0f} jobs/s -> full space ({FULL_SPACE_JOBS:,} jobs) "
          f"~{FULL_SPACE_JOBS / rate:.0f} s  [{load()}]", flush=True)

    results = {}
    runs = [("1 worker", 1, 1, True, False), ("4 workers", 4, 1, True, False),
            ("4 workers, claims of 8", 4, 8, True, False),
            ("4 workers, claim_groups (a cell's 3 repeats per claim)", 4, 1, True, True)]
    if label == "postgresql":  # complete() committed without waiting for the WAL flush
        runs.append(("4 workers, durable_complete=False", 4, 1, False, False))
    for name, processes, batch, durable, grouped in runs:
        campaign = f"tp-{processes}-{batch}-{durable}-{grouped}"
        create_campaign(engine, campaign, cells[-(args.cycles // 12):], profile=SMOKE.to_dict(),
                        order="as-given")
        results[name] = throughput(url, campaign, processes, batch, durable, grouped)
        print(f"claim+complete, {name}: {results[name]:,.0f} cycles/s  [{load()}]", flush=True)
    print(f"4 workers / 1 worker: {results['4 workers'] / results['1 worker']:.2f}x")
    grouped_name = runs[3][0]
    print(f"claim_groups / claim, 4 workers: {results[grouped_name] / results['4 workers']:.2f}x")

    with engine.connect() as conn:
        total = conn.execute(sa.text("SELECT SUM(n) FROM job_counts")).scalar_one()
        deltas = conn.execute(sa.text("SELECT COUNT(*) FROM job_counts")).scalar_one()

        def view():
            conn.execute(sa.text("SELECT * FROM campaign_progress")).all()

        def baseline():
            conn.execute(sa.text("SELECT campaign_id, status, COUNT(*) FROM jobs GROUP BY 1, 2")).all()

        t_view = timed(view)
        t_base = timed(baseline, repeat=3)
        conn.rollback()
    print(f"campaign_progress on {int(total):,} jobs ({deltas:,} count rows): {t_view * 1000:.1f} ms; "
          f"baseline COUNT(*) GROUP BY over jobs: {t_base * 1000:.0f} ms ({t_base / t_view:.0f}x slower)  "
          f"[{load()}]")
    with engine.begin() as conn:
        compact_job_counts(conn)
    with engine.connect() as conn:
        t_view = timed(lambda: conn.execute(sa.text("SELECT * FROM campaign_progress")).all())
    print(f"campaign_progress after compaction: {t_view * 1000:.1f} ms")
    print(f"counts: {JobQueue(engine).counts()}")
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL server (a scratch database is created)")
    parser.add_argument("--no-pg", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--jobs", type=int, default=1_000_000, help="jobs in the enqueue measurement")
    parser.add_argument("--cycles", type=int, default=6_000, help="jobs per throughput measurement")
    parser.add_argument("--full", action="store_true", help="enqueue the whole space (5M jobs) on PostgreSQL")
    parser.add_argument("--full-sqlite", action="store_true", help="... and on SQLite")
    args = parser.parse_args()

    from farm.space import enumerate_cells

    t0 = time.perf_counter()
    cells = enumerate_cells()
    print(f"enumerate_cells: {len(cells):,} cells in {time.perf_counter() - t0:.1f} s  [{load()}]")

    if not args.no_pg:
        base = make_url(args.pg)
        name = f"nasfarm_bench_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            bench(base.set(database=name).render_as_string(hide_password=False), "postgresql", args, cells)
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            bench(f"sqlite:///{tmp}/bench.db", "sqlite", args, cells)


if __name__ == "__main__":
    main()
