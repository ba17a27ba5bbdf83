"""Campaigns: a set of cells x epoch budgets x repeats + one training profile, as queued jobs.

``create_campaign`` stores the cells (shared by all campaigns, with their NAS-Bench-101 parameter
count and FLOPs) and enqueues every (cell, epochs, repeat) job in ONE transaction: a campaign
exists with all of its jobs or not at all. Creating it again adds nothing; creating it again with
more cells adds only the new cells' jobs. On PostgreSQL the rows go in with COPY (the full space,
5,083,488 jobs, in well under a minute); on SQLite with executemany in the same transaction.
"""

from __future__ import annotations

import io
import itertools
import json
import random
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa

from db.engine import read_connection, redact
from db.errors import CampaignConflict, UnknownCampaign, translating

ORDERS = ("shuffled", "cheap-first", "as-given")
DEFAULT_EPOCHS = (4, 12, 36, 108)
_OPS_BY_LABEL = {0: "conv3x3-bn-relu", 1: "conv1x1-bn-relu", 2: "maxpool3x3"}
_SEED_MODULUS = 2**31
# Any constant: serialises the cell-storing part of concurrent create_campaign calls (PostgreSQL).
_PG_CELLS_LOCK = 7_310_102


class CellRow(NamedTuple):
    hash: str
    matrix: list[list[int]]
    labels: list[int]

    @property
    def ops(self) -> list[str]:
        return ["input"] + [_OPS_BY_LABEL[int(x)] for x in self.labels[1:-1]] + ["output"]


def _cell_row(cell: Any) -> CellRow:
    """Accept a ``farm.spec.Cell`` or a ``farm.space.EnumeratedCell`` (hash, matrix, labels)."""
    if isinstance(cell, tuple) and hasattr(cell, "labels"):  # EnumeratedCell: taken as it is
        return CellRow(cell.hash, cell.matrix, cell.labels)
    if hasattr(cell, "labels") and hasattr(cell, "matrix") and hasattr(cell, "hash"):  # Cell
        matrix = cell.matrix.tolist() if hasattr(cell.matrix, "tolist") else cell.matrix
        return CellRow(str(cell.hash), [[int(x) for x in row] for row in matrix], list(cell.labels))
    raise TypeError(f"not a cell: {cell!r}")


def job_seed(campaign_seed: int, cell_hash: str, repeat: int) -> int:
    """The training seed of a job: fixed by (campaign seed, cell, repeat).

    The same repeat of a cell starts from the same seed at every epoch budget, so budgets differ
    only in their length; different repeats and cells get unrelated seeds.
    """
    return (int(cell_hash[:8], 16) + 1_000_003 * repeat + 2_654_435_761 * campaign_seed) % _SEED_MODULUS


def _cost(row: CellRow) -> tuple[int | None, int | None]:
    """(trainable parameters, FLOPs) of the cell under the NB101 profile, if farm.cost is there."""
    try:
        from farm.cost import cost_from_labels
    except ImportError:
        return None, None
    params, flops = cost_from_labels(row.matrix, row.labels)
    return int(params), int(flops)


def _cell_record(row: CellRow) -> tuple:
    """The cells-table row: hash, matrix JSON, ops JSON, vertices, edges, parameters, FLOPs."""
    params, flops = _cost(row)
    return (row.hash, json.dumps(row.matrix), json.dumps(row.ops), len(row.matrix),
            sum(map(sum, row.matrix)), params, flops)


def _cell_copy_chunk(cells: list[tuple[str, list[list[int]], list[int]]]) -> str:
    """COPY text of the cells' rows (run in the helper process)."""
    return "".join(_copy_lines(_cell_record(CellRow(*cell)) for cell in cells))


# Above this many new cells (the full space has 423,624), a helper process computes their
# parameters/FLOPs and formats their rows while this one streams the jobs to PostgreSQL.
PARALLEL_CELLS_ABOVE = 20_000
_CELL_CHUNK = 20_000


class _NewCells:
    """The rows of the cells new to the database: built now, or by a helper process (PostgreSQL,
    many cells, costs not needed for the job order) and collected when inserted."""

    def __init__(self, cells: list[CellRow], *, dialect: str, costs_first: bool):
        self.cells = cells
        self.dialect = dialect
        self._pool = None
        self._futures: list[Any] = []
        self._records: list[tuple] | None = None
        if dialect == "postgresql" and not costs_first and len(cells) > PARALLEL_CELLS_ABOVE:
            try:
                import multiprocessing
                from concurrent.futures import ProcessPoolExecutor

                from farm.procpool import without_the_callers_main

                # spawn, not fork: a forked child would share this process's database sockets. The
                # child starts (at the first submit) without the caller's __main__, which it would
                # otherwise run again: a script without a main guard would create its campaign twice.
                with without_the_callers_main():
                    self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
                    self._futures = [
                        self._pool.submit(_cell_copy_chunk, [tuple(c) for c in cells[i : i + _CELL_CHUNK]])
                        for i in range(0, len(cells), _CELL_CHUNK)
                    ]
            except (OSError, ImportError):  # no processes here: build them in line
                self.close()
        if self._pool is None:
            self._records = [_cell_record(row) for row in cells]

    def flops(self) -> dict[str, int | None]:
        assert self._records is not None, "costs_first=True computes the records in line"
        return {record[0]: record[6] for record in self._records}

    def insert(self, conn: sa.Connection) -> int:
        """Insert the rows (the caller holds the cells lock on PostgreSQL: they are still new)."""
        if not self.cells:
            return 0
        columns = "hash, matrix, ops, vertices, edges, trainable_parameters, flops"
        if self.dialect == "postgresql":
            if self._records is not None:
                lines = _copy_lines(iter(self._records))
            else:
                lines = (future.result() for future in self._futures)
            _copy(conn, f"cells ({columns})", lines)
            return len(self.cells)
        before = conn.execute(sa.text("SELECT COUNT(*) FROM cells")).scalar_one()
        conn.exec_driver_sql(
            f"INSERT INTO cells ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            self._records,
        )
        return conn.execute(sa.text("SELECT COUNT(*) FROM cells")).scalar_one() - before

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


def _validate(name: str, epochs: Sequence[int], repeats: int, order: str, max_attempts: int) -> None:
    if not name or len(name) > 200:
        raise ValueError("a campaign name must have 1 to 200 characters")
    if not epochs or any(int(e) <= 0 for e in epochs) or len(set(epochs)) != len(epochs):
        raise ValueError(f"epoch budgets must be distinct positive integers, got {list(epochs)}")
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r}; choose one of {', '.join(ORDERS)}")
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")


def _campaign_dict(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "profile_name": row.profile_name,
        "profile": json.loads(row.profile),
        "epochs": json.loads(row.epochs),
        "repeats": row.repeats,
        "seed": row.seed,
        "order": row.job_order,
        "max_attempts": row.max_attempts,
        "created_at": row.created_at,
    }


def create_campaign(
    engine: sa.Engine,
    name: str,
    cells: Iterable[Any],
    *,
    epochs: Sequence[int] = DEFAULT_EPOCHS,
    repeats: int = 3,
    profile: dict[str, Any],
    seed: int = 0,
    order: str = "shuffled",
    progress: bool = False,
    max_attempts: int = 3,
) -> dict[str, Any]:
    """Create (or complete) campaign ``name`` and enqueue its jobs; returns the campaign as a dict
    plus ``created`` (bool), ``cells_added``, ``jobs_added`` and ``seconds`` (timings).

    Raises :class:`CampaignConflict` when ``name`` exists with other settings.
    """
    epochs = [int(e) for e in epochs]
    _validate(name, epochs, repeats, order, max_attempts)
    rows: dict[str, CellRow] = {}
    for cell in cells:
        row = _cell_row(cell)
        rows.setdefault(row.hash, row)  # the first occurrence fixes the as-given order
    settings = {
        "profile_name": str(profile.get("name", "custom")),
        "profile": json.dumps(profile, sort_keys=True),
        "epochs": json.dumps(epochs),
        "repeats": repeats,
        "seed": seed,
        "job_order": order,
        "max_attempts": max_attempts,
    }
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    with translating(redact(engine.url)), engine.begin() as conn:
        campaign, created = _get_or_insert_campaign(conn, name, settings)
        if conn.dialect.name == "postgresql":
            # One creator at a time stores cells, so the new ones can be COPYed straight in.
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_CELLS_LOCK})
        known = _known_cells(conn, rows)
        new_cells = [row for h, row in rows.items() if h not in known]
        # cheap-first orders the jobs by FLOPs: it needs the costs before the jobs.
        new = _NewCells(new_cells, dialect=conn.dialect.name, costs_first=order == "cheap-first")
        try:
            flops = {h: known[h] for h in rows if h in known}
            if order == "cheap-first":
                flops.update(new.flops())
            # A campaign is created whole, so a cell it has has all its jobs: enqueue only the
            # cells it lacks (none when it is created again: no 5M-row conflict check).
            present = set() if created else _campaign_cells(conn, campaign["id"])
            wanted = [row for h, row in rows.items() if h not in present]
            ordered = _job_order(wanted, epochs, repeats, order, seed, flops)
            seconds["prepare"] = time.perf_counter() - clock
            jobs = _job_tuples(campaign["id"], ordered, seed, max_attempts)
            jobs_added = _insert_jobs(
                conn, jobs, len(ordered), fresh=created, progress=progress and sys.stderr.isatty()
            )
            if jobs_added:  # the status-change trigger does not see inserts: count them here
                conn.execute(
                    sa.text(
                        "INSERT INTO job_counts (campaign_id, status, n, busy_seconds)"
                        " VALUES (:campaign_id, 'pending', :n, 0.0)"
                    ),
                    {"campaign_id": campaign["id"], "n": jobs_added},
                )
            seconds["jobs"] = time.perf_counter() - clock - seconds["prepare"]
            cells_added = new.insert(conn)
            seconds["cells"] = time.perf_counter() - clock - seconds["prepare"] - seconds["jobs"]
        finally:
            new.close()
    seconds["total"] = time.perf_counter() - clock
    return {
        **campaign,
        "created": created,
        "cells_added": cells_added,
        "jobs_added": jobs_added,
        # where the time went: prepare (known cells, in-line cell rows and costs, job order),
        # jobs, cells (with whatever of the helper's work the jobs did not hide), total
        "seconds": seconds,
    }


def _get_or_insert_campaign(
    conn: sa.Connection, name: str, settings: dict[str, Any]
) -> tuple[dict[str, Any], bool]:
    # ON CONFLICT DO NOTHING: a concurrent creator of the same name waits on the unique index,
    # then finds the row instead of failing.
    inserted = conn.execute(
        sa.text(
            "INSERT INTO campaigns (name, profile_name, profile, epochs, repeats, seed, job_order,"
            " max_attempts, created_at) VALUES (:name, :profile_name, :profile, :epochs, :repeats,"
            " :seed, :job_order, :max_attempts, :created_at) ON CONFLICT (name) DO NOTHING"
        ),
        {"name": name, **settings, "created_at": time.time()},
    ).rowcount
    row = conn.execute(sa.text("SELECT * FROM campaigns WHERE name = :name"), {"name": name}).one()
    if not inserted:
        different = [key for key, value in settings.items() if getattr(row, key) != value]
        if different:
            raise CampaignConflict(
                f"campaign {name!r} exists with a different {', '.join(different)}; "
                "choose another name"
            )
    return _campaign_dict(row), bool(inserted)


def _campaign_cells(conn: sa.Connection, campaign_id: int) -> set[str]:
    result = conn.execute(
        sa.text("SELECT DISTINCT cell_hash FROM jobs WHERE campaign_id = :id"), {"id": campaign_id}
    )
    return {h for (h,) in result}


def _known_cells(conn: sa.Connection, rows: dict[str, CellRow]) -> dict[str, int | None]:
    """hash -> flops of the given cells already stored."""
    if not rows:
        return {}
    if len(rows) > 5000:  # cheaper to read the whole table than to send a huge IN list
        result = conn.execute(sa.text("SELECT hash, flops FROM cells"))
        return {h: f for h, f in result if h in rows}
    result = conn.execute(
        sa.text("SELECT hash, flops FROM cells WHERE hash IN :hashes").bindparams(
            sa.bindparam("hashes", expanding=True)
        ),
        {"hashes": list(rows)},
    )
    return dict(result.all())


def _job_order(
    cells: list[CellRow],
    epochs: list[int],
    repeats: int,
    order: str,
    seed: int,
    flops: dict[str, int | None],
) -> list[tuple[str, int, int]]:
    """(cell hash, epochs, repeat) in claim order.

    shuffled: cells in a seeded random order, each cell's budgets and repeats together, so that
    any prefix of the finished jobs is an unbiased sample of the cells. cheap-first: by
    FLOPs x epochs. as-given: the cells' order, each cell's jobs together.
    """
    hashes = [row.hash for row in cells]
    if order == "shuffled":
        random.Random(seed).shuffle(hashes)
    jobs = [(h, e, r) for h in hashes for e in epochs for r in range(repeats)]
    if order == "cheap-first":
        position = {h: i for i, h in enumerate(hashes)}
        jobs.sort(key=lambda j: ((flops.get(j[0]) or 0) * j[1], position[j[0]], j[2]))
    return jobs


def _job_tuples(
    campaign_id: int, ordered: list[tuple[str, int, int]], seed: int, max_attempts: int
) -> Iterator[tuple[int, str, int, int, int, int]]:
    for cell_hash, epochs, repeat in ordered:
        yield (campaign_id, cell_hash, epochs, repeat, job_seed(seed, cell_hash, repeat), max_attempts)


def _copy_lines(rows: Iterator[tuple]) -> Iterator[str]:
    """COPY text format: tab-separated, \\N for NULL (our values hold no tabs or backslashes)."""
    for row in rows:
        yield "\t".join(r"\N" if v is None else str(v) for v in row) + "\n"


def _job_lines(jobs: Iterator[tuple[int, str, int, int, int, int]]) -> Iterator[str]:
    # The hot loop of a 5M-job enqueue: one f-string per job, no per-value dispatch.
    for campaign_id, cell_hash, epochs, repeat, seed, max_attempts in jobs:
        yield f"{campaign_id}\t{cell_hash}\t{epochs}\t{repeat}\t{seed}\t{max_attempts}\n"


_JOB_COLUMNS = "campaign_id, cell_hash, epochs, repeat, seed, max_attempts"


def _insert_jobs(
    conn: sa.Connection, jobs: Iterator[tuple], total: int, *, fresh: bool, progress: bool
) -> int:
    """Insert the jobs in order (ids follow it, and the claim follows the ids)."""
    if not total:
        return 0
    bar = _progress(total, progress)
    try:
        if conn.dialect.name == "postgresql":
            if fresh:  # a campaign created in this transaction has no jobs: COPY straight in
                _copy(conn, f"jobs ({_JOB_COLUMNS})", _job_lines(jobs), bar)
                return total
            conn.execute(
                sa.text(
                    "CREATE TEMP TABLE new_jobs (position bigserial, campaign_id int, cell_hash text,"
                    " epochs smallint, repeat smallint, seed bigint, max_attempts int) ON COMMIT DROP"
                )
            )
            _copy(conn, f"new_jobs ({_JOB_COLUMNS})", _job_lines(jobs), bar)
            return conn.execute(
                sa.text(
                    f"INSERT INTO jobs ({_JOB_COLUMNS}) SELECT {_JOB_COLUMNS} FROM new_jobs"
                    " ORDER BY position ON CONFLICT DO NOTHING"
                )
            ).rowcount
        added = 0
        statement = f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
        cursor = conn.connection.dbapi_connection.cursor()
        try:
            for chunk in _chunks(jobs, 50_000):
                cursor.executemany(statement, chunk)
                added += cursor.rowcount
                bar.update(len(chunk))
        finally:
            cursor.close()
        return added
    finally:
        bar.close()


def _chunks(items: Iterator[tuple], size: int) -> Iterator[list[tuple]]:
    chunk: list[tuple] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="job", unit_scale=True, desc="enqueue", file=sys.stderr)


class _CopySource(io.RawIOBase):
    """A file-like object streaming COPY lines without building one big string."""

    def __init__(self, lines: Iterator[str], bar: Any):
        self._lines = lines
        self._bar = bar
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def _fill(self, size: int) -> None:
        parts = list(itertools.islice(self._lines, max(1, size // 64)))
        self._bar.update(len(parts))
        self._buffer += "".join(parts).encode()

    def read(self, size: int = -1) -> bytes:
        size = size if size and size > 0 else 1 << 20
        if len(self._buffer) < size:
            self._fill(size)
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out


def _copy(conn: sa.Connection, target: str, lines: Iterator[str], bar: Any = None) -> None:
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.copy_expert(f"COPY {target} FROM STDIN", _CopySource(lines, bar or _NoBar()), size=1 << 20)
    finally:
        cursor.close()


def get_campaign(engine: sa.Engine, name: str) -> dict[str, Any]:
    """The campaign's settings; raises :class:`UnknownCampaign`."""
    with translating(redact(engine.url)), read_connection(engine) as conn:
        row = conn.execute(sa.text("SELECT * FROM campaigns WHERE name = :name"), {"name": name}).first()
    if row is None:
        raise UnknownCampaign(f"unknown campaign {name!r}")
    return _campaign_dict(row)


def list_campaigns(engine: sa.Engine) -> list[dict[str, Any]]:
    """Every campaign's settings, oldest first."""
    with translating(redact(engine.url)), read_connection(engine) as conn:
        rows = conn.execute(sa.text("SELECT * FROM campaigns ORDER BY id")).all()
    return [_campaign_dict(row) for row in rows]
