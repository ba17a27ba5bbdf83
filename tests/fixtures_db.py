"""Database fixtures (loaded as a pytest plugin by tests/conftest.py).

- ``pg_url``: a FRESH, EMPTY PostgreSQL database for one test (CREATE DATABASE with a random
  name on the ``pg_base_url`` server; dropped afterwards, even if processes still hold it).
- ``sqlite_url``: an SQLite file under the test's tmp_path.
- ``db_url``: parametrised over both (test ids ``[sqlite]`` / ``[postgresql]``).
- ``db_engine``: an engine on ``db_url`` with the schema migrated to head.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url


@pytest.fixture
def pg_url(pg_base_url: str) -> Iterator[str]:
    base = make_url(pg_base_url)
    name = f"nasfarm_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'nasfarm.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request) -> str:
    return request.getfixturevalue("pg_url" if request.param == "postgresql" else "sqlite_url")


@pytest.fixture
def db_engine(db_url: str) -> Iterator[sa.Engine]:
    from db.engine import make_engine
    from db.migrate import upgrade

    engine = make_engine(db_url)
    upgrade(engine)
    yield engine
    engine.dispose()
