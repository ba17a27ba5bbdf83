"""What every queue operation stands on: the engine, how a statement or a transaction is run on
each database, the campaigns cache, the event log, the backoff. See db.queue for the operations."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from db.dialect import dialect_of
from db.engine import autocommit_engine
from db.errors import UnknownCampaign
from db.statements import queue as q

MAX_ERROR_CHARS = 4000
# The lease TTL a claim writes when its caller names none (the default of `nasfarm run --lease-ttl`).
DEFAULT_LEASE_TTL_S = 120.0
# Seconds a lease written before lease_expires_at existed (schema 0003 or older) may stay silent.
DEFAULT_LEGACY_TTL_S = DEFAULT_LEASE_TTL_S


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Seconds before a job may run again after its ``attempt``-th try ended badly.

    Capped exponential (base, 2 base, 4 base, ... up to cap) with "equal jitter": a uniform draw
    in [d/2, d], so jobs that failed together (a node died) do not all come back at once.
    """
    if base <= 0:
        return 0.0
    delay = min(cap, base * 2.0 ** max(0, attempt - 1))
    return delay / 2 + rng.uniform(0, delay / 2)


def short_error(error: str) -> str:
    error = str(error)
    return error if len(error) <= MAX_ERROR_CHARS else error[: MAX_ERROR_CHARS - 3] + "..."


class QueueCore:
    """The engine and the ways to run SQL on it; the operations live in the classes built on it
    (db.queue_claims, db.queue_leases, db.queue_admin), assembled as :class:`db.queue.JobQueue`."""

    def __init__(
        self,
        engine: sa.Engine,
        *,
        backoff_base: float = 30.0,
        backoff_cap: float = 3600.0,
        rng: random.Random | None = None,
        durable_complete: bool = True,
    ):
        self.engine = engine
        self.durable_complete = durable_complete
        self.sql = dialect_of(engine)
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.rng = rng or random.Random()
        self._campaigns: dict[int, tuple[str, dict[str, Any]]] = {}
        self._campaign_id_by_name: dict[str, int] = {}
        self._enqueued: set[int] = set()  # campaigns whose creation finished (claims may take them)
        # PostgreSQL: single statements go through an autocommit pool (see _statements).
        self._autocommit = autocommit_engine(engine) if self.sql.autocommit_statements else None

    # --- running SQL -------------------------------------------------------------------------------
    def _sql(self, template: str, **fragments: str) -> sa.TextClause:
        """A statement to run inside :meth:`_transaction` (or to read)."""
        return self.sql.render(template, **fragments)

    def _statement(self, template: str, *, durable: bool = False, **fragments: str) -> sa.TextClause:
        """A statement to run in :meth:`_statements`: on an autocommit connection it carries its own
        ``SET LOCAL synchronous_commit TO OFF`` (the two run as one implicit transaction, whose
        commit then does not wait for the disk) unless ``durable``."""
        on_its_own = self._autocommit is not None  # else inside _transaction, which set it already
        return self.sql.render(template, async_commit=on_its_own and not durable, **fragments)

    @contextmanager
    def _transaction(self, *, durable: bool = False) -> Iterator[sa.Connection]:
        """One short transaction (BEGIN IMMEDIATE on SQLite, see db.engine); asynchronous commit
        on PostgreSQL unless ``durable`` (see :class:`db.queue.JobQueue`)."""
        with self.engine.begin() as conn:
            if not durable and self.sql.async_commit:
                conn.exec_driver_sql(self.sql.async_commit)
            yield conn

    @contextmanager
    def _statements(self, *, durable: bool = False) -> Iterator[sa.Connection]:
        """Where an operation's statements run (prepared by :meth:`_statement`).

        PostgreSQL: an autocommit connection -- each statement is its own transaction and costs one
        round trip (no BEGIN, no COMMIT); the operation is one statement, or several that each
        leave the database consistent. SQLite: one BEGIN IMMEDIATE transaction around them all.
        """
        if self._autocommit is None:
            with self._transaction(durable=durable) as conn:
                yield conn
        else:
            with self._autocommit.connect() as conn:
                yield conn

    def _one(
        self, template: str, params: dict[str, Any], *, durable: bool = False, **fragments: str
    ) -> tuple[list[Any], int]:
        """Run one statement as its own transaction; returns (rows, rowcount)."""
        with self._statements(durable=durable) as conn:
            result = conn.execute(self._statement(template, durable=durable, **fragments), params)
            return (list(result.mappings()) if result.returns_rows else []), result.rowcount

    def _delay(self, attempt: int) -> float:
        return backoff_delay(attempt, self.backoff_base, self.backoff_cap, self.rng)

    def _event(self, conn: sa.Connection, job_id: int, attempt: int, kind: str, **fields: Any) -> None:
        params = {
            "job_id": job_id, "attempt": attempt, "kind": kind, "owner": None, "node": None,
            "resumed_from_epoch": None, "status": None, "error": None, "fault": None,
        }
        params.update(fields)
        conn.execute(self._sql(q.INSERT_EVENT), params)

    # --- campaigns ---------------------------------------------------------------------------------
    def _campaign_ids(self, conn: sa.Connection, names: Sequence[str]) -> list[int]:
        """Campaign ids by name (cached: a campaign's id never changes; it is never deleted)."""
        missing = [name for name in names if name not in self._campaign_id_by_name]
        if missing:
            statement = self.sql.render(q.CAMPAIGN_IDS, expanding=("names",))
            found = {name: cid for cid, name in conn.execute(statement, {"names": missing})}
            unknown = [name for name in missing if name not in found]
            if unknown:
                raise UnknownCampaign(f"unknown campaign {unknown[0]!r}")
            self._campaign_id_by_name.update(found)
        return [self._campaign_id_by_name[name] for name in names]

    def _campaign_info(self, conn: sa.Connection, campaign_ids: Iterable[int]) -> None:
        """Cache the names and profiles of these campaigns (a claimed job carries them)."""
        wanted = sorted(set(campaign_ids) - set(self._campaigns))
        if not wanted:
            return
        statement = self.sql.render(q.CAMPAIGN_PROFILES, expanding=("ids",))
        for cid, name, profile in conn.execute(statement, {"ids": wanted}):
            self._campaigns[cid] = (name, json.loads(profile))
