"""The full campaign at full speed, measured in one run (issue 16), on PostgreSQL and SQLite.

For each database, on a scratch database of its own:

1. **floor**: the same 5,083,488 job rows (the full space, shuffled, with their seeds) loaded raw
   into an empty migrated ``jobs`` table in this process -- PostgreSQL: one ``COPY`` per 250,000
   rows from text prepared beforehand (the server's work alone); SQLite: ``executemany`` in
   transactions of 250,000 rows (what SQLite can do from Python);
2. **create**: ``nasfarm campaign create --campaign full --cells all`` end to end through the real
   console entry point in a child process (enumeration, costs, cells, jobs, counts), its wall time
   and peak RSS (the main process's, and its largest waited-for child's): once on a scratch
   database with the enumeration cache off (a machine's first create hashes the whole space), then
   on another with the cache warm (every later one; the cache is this run's own, in a temporary
   folder, written by the enumeration the floors use);
3. the database's size (PostgreSQL: the jobs table with its indexes, the cells, the database;
   SQLite: the file);
4. a running farm's state (2,000 jobs claimed, 1,500 of them started, 1,000 done, 50 failed), then
   ``nasfarm status`` (what one refresh does, in process; and the command with Python's start-up)
   and each monitoring view against ``campaign_progress`` (the floor: a read of the aggregates);
5. **again**: the same create run again (nothing to add: the resume path's cost).

The machine's load averages (1, 5, 15 min) are printed beside every figure; the figures go to a
JSON file too (``--out``). Takes 10-25 minutes on a 2-core machine. (One file a little over our
usual module size on purpose: a benchmark is read top to bottom, next to its output.)

    python3 bench/campaign_scale.py                     # both databases, the full space
    python3 bench/campaign_scale.py --cells 20000       # a quick look (a seeded sample)
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import sqlalchemy as sa  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

DEFAULT_PG = os.environ.get("NASFARM_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
EPOCHS = (4, 12, 36, 108)
REPEATS = 3
BATCH = 250_000
# Runs the CLI in a child and reports its peak RSS: its own, and its largest waited-for child's.
RUNNER = """
import resource, sys
from nasfarm.cli import main
try:
    main(sys.argv[1:], standalone_mode=False)
finally:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(f"@@rss {own} {kids}", file=sys.stderr)
"""


def loads() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.1f}/{five:.1f}/{fifteen:.1f}"


def say(what: str, figure: str) -> None:
    print(f"  {what:<46} {figure:<34} {loads()}", flush=True)


class Results:
    def __init__(self) -> None:
        self.rows: list[dict] = []

    def add(self, database: str, what: str, value: float, unit: str, text: str | None = None) -> None:
        self.rows.append({"database": database, "what": what, "value": value, "unit": unit,
                          "loadavg": [round(x, 2) for x in os.getloadavg()]})
        say(what, text or f"{value:,.3f} {unit}")


# --- the cells and the job rows ---------------------------------------------------------------------

def plan_cells(n: int | None) -> list:
    from farm.space import enumerate_cells, sample_cells

    return enumerate_cells() if n is None else sample_cells(n, 0)


def job_rows(cells: list):
    """(cell id, epochs, repeat, seed) as the create writes them into a fresh database: shuffled
    cells, numbered in that order (the order the create stores them), seed 0."""
    from nasfarm.enqueue import job_seed

    order = list(cells)
    random.Random(0).shuffle(order)
    for cell_id, cell in enumerate(order, start=1):
        seeds = [job_seed(0, cell.hash, r) for r in range(REPEATS)]
        for epochs in EPOCHS:
            for r in range(REPEATS):
                yield cell_id, epochs, r, seeds[r]


def _floor_campaign(conn) -> None:
    conn.execute(sa.text(
        "INSERT INTO campaigns (id, name, profile_name, profile, epochs, repeats, seed, job_order,"
        " max_attempts, created_at, enqueued_at) VALUES (1, 'floor', 'nb101', '{}', '[4, 12, 36, 108]', 3,"
        " 0, 'shuffled', 3, 0, 0)"))


def floor_postgres(url: str, cells: list, results: Results) -> None:
    from db.engine import make_engine
    from db.migrate import upgrade

    engine = make_engine(url)
    upgrade(engine)
    with engine.begin() as conn:
        _floor_campaign(conn)
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        rows = job_rows(cells)
        while True:
            chunk = [f"1\t{h}\t{e}\t{r}\t{s}\t3\n" for h, e, r, s in _take(rows, BATCH)]
            if not chunk:
                break
            path = Path(tmp) / f"{len(files)}.tsv"
            path.write_text("".join(chunk))
            files.append(path)
        clock = time.perf_counter()
        for path in files:
            with engine.begin() as conn, path.open("rb") as source:
                conn.connection.dbapi_connection.cursor().copy_expert(COPY, source, size=1 << 20)
        seconds = time.perf_counter() - clock
    jobs = _scalar(engine, "SELECT COUNT(*) FROM jobs")
    results.add("postgresql", "floor: raw COPY of the job rows, text ready", seconds, "s",
                f"{seconds:.1f} s ({jobs:,} rows)")
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE jobs CASCADE"))  # job_events etc. are empty
    # The same rows made by Python as they stream (what any loader written in Python pays).
    clock = time.perf_counter()
    rows = job_rows(cells)
    while True:
        lines = [f"1\t{h}\t{e}\t{r}\t{s}\t3\n" for h, e, r, s in _take(rows, BATCH)]
        if not lines:
            break
        with engine.begin() as conn:
            conn.connection.dbapi_connection.cursor().copy_expert(COPY, _Lines(lines), size=1 << 20)
    seconds = time.perf_counter() - clock
    results.add("postgresql", "floor: raw COPY, rows made by Python", seconds, "s", f"{seconds:.1f} s")
    engine.dispose()


COPY = "COPY jobs (campaign_id, cell_id, epochs, repeat, seed, max_attempts) FROM STDIN"


class _Lines(io.RawIOBase):
    def __init__(self, lines: list[str]):
        self._lines = iter(lines)
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while len(self._buffer) < max(size, 1):
            chunk = "".join(_take(self._lines, 4096)).encode()
            if not chunk:
                break
            self._buffer += chunk
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out


def floor_sqlite(url: str, cells: list, results: Results) -> None:
    from db.engine import make_engine
    from db.migrate import upgrade

    engine = make_engine(url)
    upgrade(engine)
    with engine.begin() as conn:
        _floor_campaign(conn)
    rows = ((1, h, e, r, s, 3) for h, e, r, s in job_rows(cells))
    clock = time.perf_counter()
    while True:
        chunk = list(_take(rows, BATCH))
        if not chunk:
            break
        with engine.begin() as conn:
            conn.connection.dbapi_connection.cursor().executemany(
                "INSERT INTO jobs (campaign_id, cell_id, epochs, repeat, seed, max_attempts)"
                " VALUES (?, ?, ?, ?, ?, ?)", chunk)
    seconds = time.perf_counter() - clock
    jobs = _scalar(engine, "SELECT COUNT(*) FROM jobs")
    results.add("sqlite", "floor: raw executemany of the job rows", seconds, "s",
                f"{seconds:.1f} s ({jobs:,} rows)")
    engine.dispose()


def _take(iterator, n: int):
    for _ in range(n):
        try:
            yield next(iterator)
        except StopIteration:
            return


def _scalar(engine, sql: str):
    with engine.connect() as conn:
        return conn.execute(sa.text(sql)).scalar_one()


# --- the real create ----------------------------------------------------------------------------------

def create(url: str, database: str, cells_arg: str, results: Results, label: str,
           env_extra: dict[str, str] | None = None) -> None:
    args = ["campaign", "create", "--campaign", "full", "--cells", cells_arg, "--db", url]
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env_extra or {})}
    clock = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", RUNNER, *args], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - clock
    if done.returncode != 0:
        raise SystemExit(f"create failed:\n{done.stdout}\n{done.stderr[-3000:]}")
    own, kids = next(line.split()[1:] for line in done.stderr.splitlines() if line.startswith("@@rss"))
    results.add(database, f"{label}: nasfarm campaign create, end to end", seconds, "s",
                f"{seconds:.1f} s")
    results.add(database, f"{label}: peak RSS, main process", int(own) / 1024, "MiB",
                f"{int(own) / 1024:.0f} MiB (largest child {int(kids) / 1024:.0f} MiB)")
    print("    " + done.stdout.strip().splitlines()[-1])
    for line in done.stderr.splitlines():
        if line.startswith("campaign full:"):
            print("    " + line)


# Each table and index, as stored (PostgreSQL: the relation's pages; SQLite: dbstat's pages).
OBJECT_SIZES = {
    "postgresql": """SELECT c.relname, pg_relation_size(c.oid) FROM pg_class c
                     JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i')
                       AND pg_relation_size(c.oid) > 1000000
                     ORDER BY 2 DESC""",
    "sqlite": """SELECT name, SUM(pgsize) FROM dbstat GROUP BY name HAVING SUM(pgsize) > 1000000
                 ORDER BY 2 DESC""",
}


def sizes(url: str, database: str, results: Results) -> None:
    from db.engine import make_engine

    engine = make_engine(url)
    jobs = _scalar(engine, "SELECT COUNT(*) FROM jobs")
    if database == "postgresql":
        mb = _scalar(engine, "SELECT pg_database_size(current_database())") / 1e6
        results.add(database, "size: the database", mb, "MB", f"{mb:,.0f} MB")
    else:
        path = Path(make_url(url).database)
        mb = path.stat().st_size / 1e6
        results.add(database, "size: the file", mb, "MB", f"{mb:,.0f} MB")
    with engine.connect() as conn:
        for name, size in conn.execute(sa.text(OBJECT_SIZES[database])).all():
            print(f"    {name:<40} {size / 1e6:8,.0f} MB {size / jobs:6.1f} bytes per job")
    engine.dispose()


# --- a running farm's state, then status and the views ------------------------------------------------

def farm_state(url: str) -> None:
    from db.engine import make_engine
    from db.queue import JobQueue

    engine = make_engine(url)
    queue = JobQueue(engine)
    jobs = queue.claim(2000, "bench-driver", campaigns=["full"])
    for i, job in enumerate(jobs[:1500]):
        queue.start_attempt(job.job_id, job.lease_token, node=f"bench/gpu{i % 8}")
    metrics = {name: 0.5 for name in ("total_time", "halfway_training_time", "halfway_train_accuracy",
                                      "halfway_validation_accuracy", "halfway_test_accuracy",
                                      "final_training_time", "final_train_accuracy",
                                      "final_validation_accuracy", "final_test_accuracy")}
    for job in jobs[:1000]:
        queue.complete(job.job_id, job.lease_token, {"metrics": metrics, "evaluations": []})
    for job in jobs[1000:1050]:
        queue.fail(job.job_id, job.lease_token, "RuntimeError: bench", retryable=False, signature="bench")
    engine.dispose()


def timed(fn, repeat: int = 5) -> tuple[float, float]:
    fn()  # warm: connections, plans, caches
    seconds = []
    for _ in range(repeat):
        clock = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - clock)
    return statistics.median(seconds), max(seconds)


def status_and_views(url: str, database: str, results: Results) -> None:
    from db.engine import make_engine
    from db.views import VIEW_NAMES
    from nasfarm.cli.status import _render_campaign, _snapshot, format_table

    def one_refresh() -> None:
        rows, details = _snapshot(url, ())
        format_table(rows)
        for row in rows:
            _render_campaign(row, details[row["campaign"]])

    median, worst = timed(one_refresh)
    results.add(database, "status: one refresh, in process", median, "s",
                f"{median * 1000:.0f} ms (max {worst * 1000:.0f} ms)")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "nasfarm", "status", "--db", url]
    median, worst = timed(lambda: subprocess.run(command, capture_output=True, env=env, check=True), 3)
    results.add(database, "status: the command, with Python's start-up", median, "s",
                f"{median:.2f} s (max {worst:.2f} s)")
    engine = make_engine(url)
    for view in VIEW_NAMES:
        for where in ("", " WHERE campaign = 'full'"):  # status reads them per campaign
            if where and view == "worker_health":
                continue
            with engine.connect() as conn:
                def read(sql=f"SELECT * FROM {view}{where}", conn=conn) -> None:
                    conn.execute(sa.text(sql)).all()

                median, worst = timed(read, 3)
            results.add(database, f"view {view}{' (one campaign)' if where else ''}", median, "s",
                        f"{median * 1000:.1f} ms (max {worst * 1000:.1f})")
    engine.dispose()


# --- the run ---------------------------------------------------------------------------------------------

def run_database(
    database: str, url_of, cells: list, cells_arg: str, results: Results, skip_floor: bool
) -> None:
    from db.engine import make_engine
    from db.migrate import upgrade

    def migrated(url: str) -> str:
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        return url

    print(f"{database}:", flush=True)
    if not skip_floor:
        with url_of() as url:
            (floor_postgres if database == "postgresql" else floor_sqlite)(url, cells, results)
    if cells_arg == "all":  # a machine's first create: the space is enumerated (hashed) in it
        with url_of() as url:
            create(migrated(url), database, cells_arg, results, "create, no enumeration cache",
                   env_extra={"NASFARM_SPACE_CACHE": "off"})
    with url_of() as url:
        create(migrated(url), database, cells_arg, results, "create")
        sizes(url, database, results)
        farm_state(url)
        status_and_views(url, database, results)
        create(url, database, cells_arg, results, "again")


class _PgDatabase:
    def __init__(self, base: str):
        self.base = make_url(base)
        self.admin = sa.create_engine(self.base, isolation_level="AUTOCOMMIT")

    def __call__(self):
        return self

    def __enter__(self) -> str:
        self.name = f"nasfarm_bench_{uuid.uuid4().hex[:8]}"
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{self.name}"'))
        return self.base.set(database=self.name).render_as_string(hide_password=False)

    def __exit__(self, *exc) -> None:
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))


class _SqliteFile:
    def __init__(self, folder: str):
        self.folder = folder

    def __call__(self):
        return self

    def __enter__(self) -> str:
        self.path = Path(self.folder) / f"bench-{uuid.uuid4().hex[:8]}.db"
        return f"sqlite:///{self.path}"

    def __exit__(self, *exc) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL server URL (a scratch database is made)")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--no-floor", action="store_true", help="skip the raw-load floors")
    parser.add_argument("--cells", type=int, default=None, help="a seeded sample of N cells (default: all)")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the SQLite files go")
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args()
    cells_arg = "all" if args.cells is None else f"sample:{args.cells}"
    print(f"nasfarm campaign scale: {cells_arg} cells x {len(EPOCHS)} budgets x {REPEATS} repeats; "
          f"{os.cpu_count()} CPUs; {loads()}", flush=True)
    # The enumeration cache (farm.space_cache) of this run's own, in a folder of its own: cold at
    # first, then warm for every create but the one run without it.
    cache = tempfile.mkdtemp(prefix="nasfarm-bench-space-")
    os.environ["NASFARM_SPACE_CACHE"] = cache
    cells: list = []
    if args.cells is None:
        for state in ("cold: hashed, then written to the cache", "warm: read from the cache"):
            clock = time.perf_counter()
            cells = plan_cells(None)
            say(f"enumeration, {state}", f"{time.perf_counter() - clock:.1f} s, {len(cells):,} cells")
    elif not args.no_floor:
        cells = plan_cells(args.cells)
    results = Results()
    if not args.no_postgres:
        run_database("postgresql", _PgDatabase(args.pg), cells, cells_arg, results, args.no_floor)
    if not args.no_sqlite:
        run_database("sqlite", _SqliteFile(args.dir), cells, cells_arg, results, args.no_floor)
    shutil.rmtree(cache, ignore_errors=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"cells": cells_arg, "cpus": os.cpu_count(),
                                              "rows": results.rows}, indent=1) + "\n")
        print(f"figures written to {args.out}")


if __name__ == "__main__":
    main()
