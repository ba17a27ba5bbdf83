"""Campaigns in the database: the campaign row, its cells and its jobs, and reading them back.

:func:`open_campaign` opens one transaction on a campaign (created, or found with the same
settings) and hands back a :class:`CampaignWriter`, which writes the rows it is given -- cells and
jobs, as iterables, streamed -- and answers what is stored already: what is written through it
commits together or not at all (an import is one such transaction). ``nasfarm campaign create``
writes only the row this way and streams the jobs in committed batches (:mod:`db.enqueue`, which
says how a campaign is whole: ``enqueued_at``). Which cells, in which order, with which costs
and seeds is decided above this layer (``nasfarm.campaigns`` builds a campaign from the enumerated
space). On PostgreSQL the rows go in with COPY; on SQLite with executemany (:mod:`db.bulk`, chosen
by :mod:`db.dialect`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

import sqlalchemy as sa

from db.cell_ids import CellIds
from db.counts import counting_new_jobs
from db.dialect import Dialect, dialect_of
from db.engine import read_connection
from db.errors import CampaignConflict, UnknownCampaign, translating
from db.statements import campaigns as sql
from db.statements import enqueue as enqueue_sql
from db.statements import promotions as promotion_sql
from db.urls import redact
from farm.adaptive import PromotionRule

_COMPACT = (",", ":")  # JSON without spaces
# Above this many cells it is cheaper to read the whole cells table than to send an IN list.
_IN_LIST_MAX = 5000


@dataclass(frozen=True)
class CampaignSettings:
    """What a campaign row holds besides its name; creating it again must repeat them exactly."""

    profile: dict[str, Any]  # the training hyperparameters (TrainConfig.to_dict())
    epochs: tuple[int, ...]
    repeats: int
    seed: int
    order: str  # how its jobs were ordered (the composer's word: shuffled, cheap-first, ...)
    max_attempts: int
    source: str = "trained"  # or "imported": a published table, whose jobs nasfarm never trains
    dataset: str = "cifar10"
    data_fingerprint: dict[str, Any] | None = None  # of the copy the campaign was created with
    # An adaptive campaign (db.promotions): jobs at the first budget only, the rest by promotion.
    promote: PromotionRule | None = None

    def __post_init__(self) -> None:
        epochs = self.epochs
        if not epochs or any(int(e) <= 0 for e in epochs) or len(set(epochs)) != len(epochs):
            raise ValueError(f"epoch budgets must be distinct positive integers, got {list(epochs)}")
        if self.repeats < 1:
            raise ValueError(f"repeats must be at least 1, got {self.repeats}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.source not in ("trained", "imported"):
            raise ValueError(f"a campaign's source is 'trained' or 'imported', got {self.source!r}")
        if self.promote is not None and len(epochs) < 2:
            raise ValueError(f"an adaptive campaign needs at least two epoch budgets, got {list(epochs)}")
        if self.promote is not None and list(epochs) != sorted(epochs):
            raise ValueError(f"an adaptive campaign's budgets go from low to high, got {list(epochs)}")

    def columns(self) -> dict[str, Any]:
        """The campaigns row's columns (JSON as the schema stores it)."""
        return {
            "profile_name": str(self.profile.get("name", "custom")),
            "profile": json.dumps(self.profile, sort_keys=True),
            "epochs": json.dumps([int(e) for e in self.epochs]),
            "repeats": self.repeats,
            "seed": self.seed,
            "job_order": self.order,
            "max_attempts": self.max_attempts,
            "source": self.source,
            "dataset": self.dataset,
            "promote_numerator": self.promote.numerator if self.promote else None,
            "promote_denominator": self.promote.denominator if self.promote else None,
            "promote_mode": self.promote.mode if self.promote else None,
        }

    def first_budget_only(self) -> bool:
        """An adaptive campaign enqueues its first budget's jobs; promotions enqueue the rest."""
        return self.promote is not None

    def fingerprint_json(self) -> str | None:
        """The data fingerprint as stored (JSON text); not part of the settings compared on a
        repeated create: a campaign stays itself when its data directory moves."""
        if self.data_fingerprint is None:
            return None
        return json.dumps(self.data_fingerprint, sort_keys=True)


class CellRow(NamedTuple):
    """A row of the cells table, as stored (matrix and ops as JSON text)."""

    hash: str
    matrix: str
    ops: str
    vertices: int
    edges: int
    trainable_parameters: int | None
    flops: int | None


def cell_row(
    cell_hash: str, matrix: Sequence[Sequence[int]], ops: Sequence[str], *,
    trainable_parameters: int | None, flops: int | None,
) -> CellRow:
    """The stored row of a cell (pure: a helper process may build rows for the writer). Compact
    JSON: a 7-vertex cell's matrix is 113 bytes instead of 161, 423,624 times over."""
    return CellRow(cell_hash, json.dumps([[int(x) for x in row] for row in matrix], separators=_COMPACT),
                   json.dumps(list(ops), separators=_COMPACT), len(matrix), sum(map(sum, matrix)),
                   trainable_parameters, flops)


class JobRow(NamedTuple):
    """A job as the writer takes it; the campaign and its max_attempts fill the other columns."""

    cell_hash: str
    epochs: int
    repeat: int
    seed: int


class CampaignWriter:
    """Writes one campaign's rows inside the transaction :func:`open_campaign` holds."""

    def __init__(self, conn: sa.Connection, dialect: Dialect, campaign: dict[str, Any], created: bool):
        self.conn = conn
        self.dialect = dialect
        self.campaign = campaign  # the row, as :func:`get_campaign` returns it
        self.created = created  # False: it existed (with the same settings)
        self._jobs_written = False
        self.cell_ids = CellIds()  # of the cells stored, as this writer has seen them

    def stored_flops(self, hashes: Collection[str]) -> dict[str, int | None]:
        """hash -> FLOPs of those of ``hashes`` whose cells are stored already."""
        if not hashes:
            return {}
        if len(hashes) > _IN_LIST_MAX:
            wanted = set(hashes)
            rows = self.conn.execute(self.dialect.render(sql.ALL_STORED_CELLS))
            stored = [(h, cell_id, flops) for h, cell_id, flops in rows if h in wanted]
        else:
            statement = self.dialect.render(sql.STORED_CELLS, expanding=("hashes",))
            stored = self.conn.execute(statement, {"hashes": list(hashes)}).all()
        self.cell_ids.learn({h: cell_id for h, cell_id, _ in stored})
        return {h: flops for h, _, flops in stored}

    def cells_with_jobs(self) -> set[str]:
        """The cells this campaign has jobs for (all of their jobs: a campaign is created whole)."""
        if self.created and not self._jobs_written:
            return set()  # no query over a campaign that cannot have any
        statement = self.dialect.render(sql.CELLS_WITH_JOBS)
        return {h for (h,) in self.conn.execute(statement, {"campaign_id": self.campaign["id"]})}

    def add_jobs(self, jobs: Iterable[JobRow], *, on_progress: Callable[[int], None] | None = None) -> int:
        """Insert ``jobs`` in the order given (ids follow it, and the claim follows the ids),
        skipping any the campaign has; returns how many were added. Their cells must be stored
        first (:meth:`add_cells`): their FLOPs price the jobs in the monitoring aggregates."""
        with counting_new_jobs(self.conn, self.campaign["id"]):  # inserts are counted by the inserter
            added = self.dialect.load_jobs(
                self.conn, self.campaign["id"], self.campaign["max_attempts"],
                self.cell_ids.resolving(self.conn, jobs), cell_ids=self.cell_ids.ids,
                fresh=self.created and not self._jobs_written, on_progress=on_progress or _ignore,
            )
        self._jobs_written = True
        return added

    def promotions_decided(self) -> bool:
        """Whether this (adaptive) campaign has recorded a promotion or a round: cells added after
        that would never be ranked with the cells they compete with."""
        if self.created:
            return False
        statement = self.dialect.render(promotion_sql.ANY_DECISION)
        return self.conn.execute(statement, {"campaign_id": self.campaign["id"]}).first() is not None

    def add_cells(self, rows: Iterable[CellRow]) -> int:
        """Store cells that are not stored yet (see :meth:`stored_flops`; on PostgreSQL this
        transaction holds the cells lock, so they stay new); returns how many were added."""
        stored = self.dialect.load_cells(self.conn, rows)
        self.cell_ids.learn(stored.ids)
        return stored.added


@contextmanager
def open_campaign(
    engine: sa.Engine, name: str, settings: CampaignSettings, *, whole: bool = True
) -> Iterator[CampaignWriter]:
    """One transaction on campaign ``name``: created with ``settings``, or found with the same ones
    (:class:`CampaignConflict` otherwise). Everything written through the writer commits together
    when the block ends, or not at all. ``whole``: a campaign created here is complete when the
    block ends (``enqueued_at``); :mod:`db.enqueue` passes False and streams the jobs afterwards."""
    if not name or len(name) > 200:
        raise ValueError("a campaign name must have 1 to 200 characters")
    dialect = dialect_of(engine)
    with translating(redact(engine.url)), engine.begin() as conn:
        campaign, created = _get_or_insert_campaign(conn, dialect, name, settings.columns(),
                                                    settings.fingerprint_json())
        if created and settings.promote is not None:  # one row per budget, for its round's decision
            budgets = [int(e) for e in settings.epochs]
            for index, epochs in enumerate(budgets):
                conn.execute(dialect.render(promotion_sql.INSERT_ROUND), {
                    "campaign_id": campaign["id"], "epochs": epochs, "budget_index": index,
                    "next_epochs": budgets[index + 1] if index + 1 < len(budgets) else None})
        # Inserters of one campaign take turns (db.counts counts each one's new jobs by id).
        conn.execute(dialect.render(enqueue_sql.LOCK_CAMPAIGN), {"campaign_id": campaign["id"]})
        # PostgreSQL: one creator at a time stores cells, so the new ones can be COPYed straight in.
        dialect.run(conn, dialect.lock_cells)
        yield CampaignWriter(conn, dialect, campaign, created)
        if created and whole:
            now = time.time()
            conn.execute(dialect.render(enqueue_sql.SET_ENQUEUED),
                         {"campaign_id": campaign["id"], "now": now})
            campaign["enqueued_at"] = now


def get_campaign(engine: sa.Engine, name: str) -> dict[str, Any]:
    """The campaign's settings; raises :class:`UnknownCampaign`."""
    with translating(redact(engine.url)), read_connection(engine) as conn:
        row = conn.execute(dialect_of(conn).render(sql.CAMPAIGN), {"name": name}).first()
    if row is None:
        raise UnknownCampaign(f"unknown campaign {name!r}")
    return _campaign_dict(row)


def _get_or_insert_campaign(
    conn: sa.Connection, dialect: Dialect, name: str, columns: dict[str, Any], fingerprint: str | None
) -> tuple[dict[str, Any], bool]:
    inserted = conn.execute(
        dialect.render(sql.INSERT_CAMPAIGN),
        {"name": name, **columns, "data_fingerprint": fingerprint, "created_at": time.time()},
    ).rowcount
    row = conn.execute(dialect.render(sql.CAMPAIGN), {"name": name}).one()
    if not inserted:
        different = [key for key, value in columns.items() if getattr(row, key) != value]
        if different:
            raise CampaignConflict(
                f"campaign {name!r} exists with a different {', '.join(different)}; "
                "choose another name"
            )
    return _campaign_dict(row), bool(inserted)


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
        "source": row.source,
        "dataset": row.dataset,
        "data_fingerprint": json.loads(row.data_fingerprint) if row.data_fingerprint else None,
        # NULL while `campaign create` streams its jobs, or after it was interrupted (db.enqueue)
        "enqueued_at": row.enqueued_at,
        "promote": _promote_dict(row),
    }


def _promote_dict(row: Any) -> dict[str, Any] | None:
    """An adaptive campaign's rule (None for a plain campaign)."""
    if row.promote_denominator is None:
        return None
    rule = PromotionRule(row.promote_numerator, row.promote_denominator, row.promote_mode or "rounds")
    return {"numerator": rule.numerator, "denominator": rule.denominator, "fraction": rule.fraction,
            "mode": rule.mode}


def _ignore(_n: int) -> None:
    pass
