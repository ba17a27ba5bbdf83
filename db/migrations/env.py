"""Alembic environment for the nasfarm job database.

Run through :func:`db.migrate.upgrade` (which hands us an open connection in
``config.attributes["connection"]``), or with the alembic CLI from this directory:
``NASFARM_DB=... alembic -c db/migrations/alembic.ini upgrade head``.
"""

from __future__ import annotations

from alembic import context

from db.engine import make_engine
from db.schema import metadata


def run_migrations() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:  # alembic CLI: the URL comes from --db's environment variable
        engine = make_engine()
        with engine.begin() as connection:
            _run(connection)
        engine.dispose()
    else:
        _run(connection)


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite's ALTER TABLE is limited
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
