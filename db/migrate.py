"""Create or upgrade the schema (Alembic), and refuse to run on an outdated one."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from db.dialect import dialect_of
from db.engine import read_connection
from db.errors import SchemaOutdated, translating
from db.urls import redact

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def _config(connection: sa.Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "no migrations found"
    return head


def current_revision(engine: sa.Engine) -> str | None:
    """The database's schema revision; None for a database without the nasfarm schema."""
    with translating(redact(engine.url)), read_connection(engine) as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: sa.Engine, revision: str = "head") -> str:
    """Create the schema, or bring it up to ``revision``; returns the revision now in place."""
    dialect = dialect_of(engine)
    with (translating(redact(engine.url)), engine.connect() as conn, _foreign_keys_deferred(conn),
          conn.begin()):
        dialect.run(conn, dialect.lock_migrations)  # concurrent upgrades take turns
        command.upgrade(_config(conn), revision)
        return MigrationContext.configure(conn).get_current_revision() or ""


@contextmanager
def _foreign_keys_deferred(conn: sa.Connection) -> Iterator[None]:
    """SQLite: foreign-key enforcement off for the connection's migration transaction (it can
    only be switched outside a transaction). A migration that rebuilds a table others refer to
    (0008: jobs) drops the old table, which enforcement would refuse; it checks the references
    itself before it commits (PRAGMA foreign_key_check)."""
    if conn.dialect.name != "sqlite":
        yield
        return
    raw = conn.connection.dbapi_connection
    raw.execute("PRAGMA foreign_keys = OFF")
    try:
        yield
    finally:
        raw.execute("PRAGMA foreign_keys = ON")


def require_current(engine: sa.Engine) -> None:
    """Raise :class:`SchemaOutdated` unless the database is at this nasfarm's schema revision."""
    current = current_revision(engine)
    head = head_revision()
    if current == head:
        return
    where = redact(engine.url)
    if current is None:
        raise SchemaOutdated(
            f"{where} has no nasfarm schema: run nasfarm db init (or nasfarm db upgrade)"
        )
    known = {script.revision for script in ScriptDirectory.from_config(_config()).walk_revisions()}
    if current not in known:
        raise SchemaOutdated(
            f"{where} is at schema revision {current}, newer than this nasfarm knows ({head}): "
            "upgrade nasfarm"
        )
    raise SchemaOutdated(
        f"{where} is at schema revision {current}, this nasfarm needs {head}: run nasfarm db upgrade"
    )
