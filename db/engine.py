"""One place that turns a database URL into a configured SQLAlchemy engine.

PostgreSQL: psycopg2, ``pool_pre_ping`` (a pooled connection killed by a server restart is replaced
instead of failing the next statement), a connect timeout. SQLite: WAL (readers never block the
writer), a busy timeout, and -- because pysqlite's own deferred ``BEGIN`` lets two writers both start
reading and then fail with SQLITE_BUSY_SNAPSHOT, which the busy timeout does not retry -- we switch
pysqlite's transaction handling off and emit ``BEGIN IMMEDIATE`` ourselves (SQLAlchemy's documented
recipe). Read-only work can ask for a plain deferred ``BEGIN`` with the ``sqlite_begin`` execution
option (see :func:`read_connection`).
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url

from db.errors import BadDatabaseURL, MissingDatabase, translating
from db.statements.monitoring import PING
from db.urls import redact

DEFAULT_URL = "sqlite:///nasfarm.db"
ENV_VAR = "NASFARM_DB"
SQLITE_BUSY_TIMEOUT_MS = 60_000
PG_CONNECT_TIMEOUT_S = 10
_DRIVERS = {"sqlite": "pysqlite", "postgresql": "psycopg2"}
_EXAMPLES = "e.g. sqlite:///nasfarm.db or postgresql://user@host:5432/dbname"


def resolve_url(url: str | None = None) -> str:
    """The URL to use: the argument, else ``$NASFARM_DB``, else ``sqlite:///nasfarm.db``."""
    return url or os.environ.get(ENV_VAR) or DEFAULT_URL


def parse_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError:
        raise BadDatabaseURL(f"cannot parse database URL {redact(url)!r} ({_EXAMPLES})") from None
    if parsed.drivername.split("+")[0] == "postgres":  # the most common spelling (Heroku, psql docs)
        parsed = parsed.set(drivername=parsed.drivername.replace("postgres", "postgresql", 1))
    backend = parsed.get_backend_name()
    if backend not in _DRIVERS:
        raise BadDatabaseURL(
            f"unsupported database {backend!r} in {redact(parsed)!r}: "
            f"nasfarm runs on SQLite or PostgreSQL ({_EXAMPLES})"
        )
    # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; nasfarm's bulk load uses psycopg2.
    driver = parsed.get_driver_name() if "+" in parsed.drivername else _DRIVERS[backend]
    if driver != _DRIVERS[backend]:
        raise BadDatabaseURL(
            f"unsupported driver {parsed.drivername!r} in {redact(parsed)!r}: use "
            f"{backend}:// or {backend}+{_DRIVERS[backend]}://"
        )
    return parsed.set(drivername=f"{backend}+{driver}")


def sqlite_file(url: str | None) -> Path | None:
    """The file of a SQLite URL (None for PostgreSQL and for SQLite in memory)."""
    parsed = parse_url(resolve_url(url))
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def require_existing(url: str | None) -> None:
    """Refuse a SQLite URL whose file does not exist: a read-only command (status, export, ...)
    must not create an empty database for a typo. PostgreSQL databases are never created."""
    path = sqlite_file(url)
    if path is not None and not path.exists():
        _require_directory(parse_url(resolve_url(url)))  # the more precise reason, when it is the one
        raise MissingDatabase(f"no database at {path} (nasfarm db init creates one; check --db / {ENV_VAR})")


def make_engine(url: str | None = None) -> Engine:
    """A configured engine for ``url`` (see :func:`resolve_url`); raises :class:`BadDatabaseURL`.

    The engine connects lazily: an unreachable server shows up as
    :class:`db.errors.DatabaseUnavailable` on first use (see :func:`check_connection`).
    """
    parsed = parse_url(resolve_url(url))
    try:
        if parsed.get_backend_name() == "sqlite":
            return _sqlite_engine(parsed)
        return _postgres_engine(parsed)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as exc:
        raise BadDatabaseURL(f"bad database URL {redact(parsed)!r}: {exc}") from None


def _postgres_engine(url: URL, **options: Any) -> Engine:
    options.setdefault("pool_pre_ping", True)
    return sa.create_engine(
        url,
        pool_size=2,
        max_overflow=4,
        connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S, "application_name": "nasfarm"},
        **options,
    )


_AUTOCOMMIT_ENGINES: weakref.WeakKeyDictionary[Engine, Engine] = weakref.WeakKeyDictionary()


def autocommit_engine(engine: Engine) -> Engine:
    """A PostgreSQL engine like ``engine`` whose connections are always in autocommit mode.

    For single-statement operations (db.queue): no BEGIN/COMMIT round trips. A separate pool,
    because switching a pooled connection in and out of autocommit costs a round trip each way;
    one per engine, shared by every JobQueue on it, and gone with the engine.
    """
    if engine.dialect.name != "postgresql":
        raise ValueError("autocommit_engine is for PostgreSQL")
    sibling = _AUTOCOMMIT_ENGINES.get(engine)
    if sibling is None:
        sibling = _postgres_engine(engine.url, isolation_level="AUTOCOMMIT", pool_pre_ping=False)
        _ping_when_idle(sibling)
        _AUTOCOMMIT_ENGINES[engine] = sibling
        weakref.finalize(engine, sibling.dispose)
    return sibling


PING_AFTER_IDLE_S = 1.0


def _ping_when_idle(engine: Engine) -> None:
    """Pre-ping only connections that sat idle in the pool (SQLAlchemy's custom ping recipe).

    A worker's hot loop (claim, heartbeat, complete) then costs one round trip per operation
    instead of two. A connection that died while in constant use (a server restart under load)
    fails its next statement with DatabaseUnavailable -- which callers retry -- and SQLAlchemy
    then replaces the whole pool.
    """

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection, record) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection, record, _proxy) -> None:
        if time.monotonic() - record.info.get("idle_since", 0.0) < PING_AFTER_IDLE_S:
            return
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(PING)
        except Exception:
            # The pool discards this connection and checks out another (up to three tries).
            raise sa.exc.DisconnectionError() from None
        finally:
            with suppress(Exception):
                cursor.close()


def _require_directory(url: URL) -> None:
    """Refuse a SQLite file URL whose directory does not exist (SQLite would fail obscurely)."""
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        parent = Path(database).expanduser().resolve().parent
        if not parent.is_dir():
            raise BadDatabaseURL(
                f"cannot create SQLite database {redact(url)!r}: directory {parent} does not exist"
            )


def _sqlite_engine(url: URL) -> Engine:
    _require_directory(url)
    engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # Take transaction control away from pysqlite; _on_begin emits BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        # NORMAL is durable across application crashes in WAL mode (only an OS crash can lose
        # the last commits), and makes every commit far cheaper than FULL.
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        conn.exec_driver_sql("BEGIN" if mode == "DEFERRED" else "BEGIN IMMEDIATE")

    return engine


def is_sqlite(engine_or_conn: Engine | Connection) -> bool:
    return engine_or_conn.dialect.name == "sqlite"


@contextmanager
def read_connection(engine: Engine) -> Iterator[Connection]:
    """A connection for read-only work: on SQLite its transactions do not take the write lock."""
    with engine.connect() as conn:
        if is_sqlite(engine):
            conn = conn.execution_options(sqlite_begin="DEFERRED")
        yield conn


def check_connection(engine: Engine) -> None:
    """Connect once; raises a :class:`db.errors.DatabaseError` subclass saying why it failed."""
    with translating(redact(engine.url)), read_connection(engine) as conn:
        conn.execute(sa.text(PING))
